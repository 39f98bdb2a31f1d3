"""What a decode costs before it runs: hours of audio, CPU hours and GPU hours, for the model
the run will use (`soundspace plan`, and the refusal of a library too large to make unasked).

The decoder's work per sample grows with its size: per layer a dilated product (2 taps of
`width` to 2 x `width`), the conditioning (`bottleneck` to 2 x `width`), the residual and skip
products, then the output stack. Two sizes were timed with `soundspace bench` on this project's
2-core machine, numpy, batch 81: Magenta's full-size model, 53 ms a step (0.65 ms per sample of
one sound), and the demo model, 1.14 ms a step (0.014 ms per sample). A model of another size is
placed on the power law through these two points by its multiply-adds per sample (a small model
costs more than its arithmetic: the per-step work around the products weighs more). The GPU
figure is Open NSynth Super's measured rate with Magenta's generator (8 K80s, batch 512: about
120,000 sounds of 64,000 samples in 36 hours; an upper bound for this engine, not measured with
it), scaled from the full-size model by the same law.
"""

from __future__ import annotations

import math
from pathlib import Path

from . import SoundspaceError
from .audio import SAMPLE_RATE
from .files import parse_json

FULL_SECONDS_PER_SAMPLE = 0.053 / 81  # Magenta's model, per sample of one sound (batch 81)
DEMO_SECONDS_PER_SAMPLE = 1.135e-3 / 81  # the demo model (models/n-synth/checkpoints/demo)
GPU_SECONDS_PER_SAMPLE = 36 * 8 * 3600 / (120_000 * 64_000)  # Magenta's model on K80s


def multiply_adds(config) -> int:
    """The decoder's multiply-adds for one sample of one sound."""
    w, s = config.width, config.skip_width
    per_layer = 2 * w * 2 * w + config.bottleneck * 2 * w + w * w + w * s
    return config.layers * per_layer + s * s + s * 256


def seconds_per_sample(config) -> float:
    """CPU seconds per sample of one sound for a model of this size (module docstring)."""
    from .nsynth.model import DEMO_CONFIG, ModelConfig

    full, demo = multiply_adds(ModelConfig()), multiply_adds(DEMO_CONFIG)
    power = math.log(FULL_SECONDS_PER_SAMPLE / DEMO_SECONDS_PER_SAMPLE) / math.log(full / demo)
    return FULL_SECONDS_PER_SAMPLE * (multiply_adds(config) / full) ** power


def model_at(folder: Path) -> tuple:
    """The size of the model in `folder` (its model.json; the weights are not read) and what to
    call it; Magenta's model's size where the folder holds none (not converted yet)."""
    from .nsynth.checkpoint import CONFIG_FILE
    from .nsynth.model import ModelConfig

    try:
        stored = parse_json((folder / CONFIG_FILE).read_text())
        return ModelConfig.from_dict(stored["config"]), f"the model in {folder}"
    except FileNotFoundError:
        return None, f"Magenta's full-size model (assumed: {folder} holds no model yet)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SoundspaceError) as error:
        why = str(error) if isinstance(error, SoundspaceError) else type(error).__name__
        return None, (
            f"Magenta's full-size model (assumed: {folder / CONFIG_FILE} is not a model's: "
            f"{why[:120]})"
        )


def estimate(samples: int, config, model: str) -> dict:
    """What decoding `samples` samples with a model of size `config` (None: Magenta's model, not
    known otherwise) costs; `model` says which model that is, for the assumptions line."""
    from .nsynth.model import ModelConfig

    config = config or ModelConfig()
    cpu = seconds_per_sample(config)
    ratio = cpu / FULL_SECONDS_PER_SAMPLE
    return {
        "audio_hours": samples / SAMPLE_RATE / 3600,
        "cpu_hours": samples * cpu / 3600,
        "gpu_hours": samples * GPU_SECONDS_PER_SAMPLE * ratio / 3600,
        "model": model,
        "assumptions": (
            f"{model}: decoder {config.layers} layers x {config.width}, "
            f"{multiply_adds(config) / 1e6:,.2f} M multiply-adds per sample; cpu_hours: "
            f"{cpu * 1e3:.3g} ms per sample of one sound on this engine, 2 CPU cores, batch 81 "
            "(timed with soundspace bench for Magenta's model and the demo model, other sizes "
            "placed between by their multiply-adds); gpu_hours: Open NSynth Super's measured "
            "rate with Magenta's generator on K80 GPUs, scaled the same way (an upper bound, "
            "not measured with this engine)"
        ),
    }
