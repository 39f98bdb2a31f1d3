"""Fidelity against Magenta itself: reference outputs of Magenta's own code on seeded random
weights (`tests/fixtures/nsynth/reference_seed*.npz`, made by the recipe in
`pipeline/nsynth/random_weights.py`). Used by tests/test_fidelity.py and scripts/nsynth-fidelity.

Probabilities are compared both absolutely and in log space: they average ~0.004, so an
absolute bound alone lets real bugs through (a dropped bias moves them by < 1e-4 but moves
log p by > 2e-3).
"""
from __future__ import annotations

import numpy as np

from pipeline.nsynth import NSynth
from pipeline.nsynth.random_weights import make_weights

TOLERANCES = {"encoding_rel": 1e-4, "max_dp": 1e-5, "max_dlogp": 1e-4}


def probability_errors(probs: np.ndarray, ref: np.ndarray) -> dict:
    return {"max_dp": float(np.abs(probs - ref).max()),
            "max_dlogp": float(np.abs(np.log(probs) - np.log(ref)).max())}


def reference_model(ref) -> NSynth:
    """The model Magenta's reference was computed with."""
    return NSynth.from_weights(make_weights(int(ref["seed"]), logits_scale=float(ref["logits_scale"])))


def check(ref, model: NSynth | None = None, maths=("numpy", "torch")) -> dict:
    """Every comparison for one reference, each over every step: `{check name: {metric: value}}`."""
    model = model or reference_model(ref)
    encoding = model.encode(ref["audio"])
    scale = float(np.abs(ref["encoding"]).max())
    results = {"encode": {"encoding_rel": float(np.abs(encoding - ref["encoding"]).max()) / scale}}
    results["teacher-forced"] = probability_errors(
        model.probabilities(ref["tf_audio"], ref["tf_encoding"]), ref["probs"])
    for math in maths:
        probs = model.teacher_forced_incremental(ref["tf_audio"], ref["tf_encoding"], math)
        results[f"incremental ({math})"] = probability_errors(probs, ref["probs"])
    return results


def failures(results: dict) -> list[str]:
    return [f"{name}: {metric} = {value:.3g} >= {TOLERANCES[metric]:g}"
            for name, metrics in results.items() for metric, value in metrics.items()
            if not value < TOLERANCES[metric]]
