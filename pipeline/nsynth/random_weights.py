"""Seeded random weights for any model size, by the recipe Magenta's reference data was made with.

Each variable has its own generator seeded by `crc32(f"{seed}:{name}")`, so a variable's value
does not depend on which others exist: kernels are uniform in +-sqrt(3 / fan_in), biases
normal(0, 0.05), the logits layer scaled by `logits_scale` (0.1 keeps the output distributions
broad). Drawn in float64, cast to float32 once. Tests and `soundspace bench` use it, so the
full-size network can be checked and timed without the 1 GB checkpoint.
"""

import zlib

import numpy as np

from .model import ModelConfig


def make_weights(seed: int, config: ModelConfig = ModelConfig(), logits_scale: float = 0.1) -> dict:
    weights = {}
    for name, shape in config.expected_shapes().items():
        rng = np.random.default_rng(zlib.crc32(f"{seed}:{name}".encode()))
        if name.endswith("/W"):
            bound = np.sqrt(3.0 / (shape[1] * shape[2]))
            value = rng.uniform(-bound, bound, size=shape)
        else:
            value = rng.normal(0.0, 0.05, size=shape)
        if name.startswith("logits/"):
            value = value * logits_scale
        weights[name] = value.astype(np.float32)
    return weights
