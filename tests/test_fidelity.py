"""Fidelity against Magenta itself on the full-size network (seeded random weights).

Runs on every reference in tests/fixtures/nsynth/ and, where SOUNDSPACE_NSYNTH_REFERENCES
names a folder, on every `*.npz` in it (held-out seeds and sounds made the same way).
"""
import os
from pathlib import Path

import numpy as np
import pytest

from . import fidelity
from .conftest import FIXTURES

REFERENCES = sorted(FIXTURES.glob("reference_seed*.npz"))
if os.environ.get("SOUNDSPACE_NSYNTH_REFERENCES"):
    REFERENCES += sorted(Path(os.environ["SOUNDSPACE_NSYNTH_REFERENCES"]).glob("*.npz"))


@pytest.fixture(scope="module")
def models():
    return {}


@pytest.mark.parametrize("path", REFERENCES, ids=lambda p: p.stem)
def test_within_magentas_tolerances(path, models):
    ref = np.load(path)
    model = models.setdefault(path, fidelity.reference_model(ref))
    # Every step, on both the numpy loop (the CPU decoder) and the torch loop (the GPU code path,
    # run here on the CPU): about 45 s for the torch loop on two cores.
    results = fidelity.check(ref, model)
    assert set(results) == {"encode", "teacher-forced", "incremental (numpy)", "incremental (torch)"}
    assert not fidelity.failures(results), results


def test_the_bounds_catch_a_dropped_bias(models):
    """A bug that moves probabilities by < 1e-4 must still fail: one cond_map bias dropped."""
    ref = np.load(REFERENCES[0])
    model = models.setdefault(REFERENCES[0], fidelity.reference_model(ref))
    bias = model.net.convs["cond_map_7"].biases
    saved = bias.detach().clone()
    try:
        bias.data.zero_()
        errors = fidelity.probability_errors(
            model.probabilities(ref["tf_audio"], ref["tf_encoding"]), ref["probs"])
    finally:
        bias.data.copy_(saved)
    assert errors["max_dlogp"] > 10 * fidelity.TOLERANCES["max_dlogp"]
