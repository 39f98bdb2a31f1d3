"""Shared fixtures: the reference data folder, small random models and a converted tiny model."""
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.nsynth import NSynth
from pipeline.nsynth.checkpoint import save_model
from pipeline.nsynth.model import ModelConfig
from pipeline.nsynth.random_weights import make_weights

# What a test needs (markers registered in pyproject.toml); `scripts/test --fast` leaves these out.
RESOURCES = ("docker", "browser", "ray", "root")


def needs(*resources: str):
    """Says what a fixture needs: every test that uses it, directly or through other fixtures,
    is marked with those markers (pytest_collection_modifyitems below). Apply it under
    @pytest.fixture."""
    unknown = set(resources) - set(RESOURCES)
    assert not unknown, f"not a resource marker: {unknown}"

    def mark(function):
        function.soundspace_needs = resources
        return function
    return mark


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        for name in getattr(item, "fixturenames", ()):
            for definition in definitions.get(name, ()):
                for resource in getattr(definition.func, "soundspace_needs", ()):
                    item.add_marker(resource)


FIXTURES = Path(__file__).parent / "fixtures" / "nsynth"
# The committed demo model: the default model of the test space and of these tests.
DEMO_MODEL = Path(__file__).resolve().parent.parent / "models" / "n-synth" / "checkpoints" / "demo"

# Small enough to decode thousands of steps in a second, deep enough that dilations reach 8.
SMALL = ModelConfig(width=16, skip_width=8, layers=8, stages=4, ae_width=8, ae_layers=6,
                    ae_stages=3, bottleneck=16, hop=512)


def small_model(config: ModelConfig = SMALL, seed: int = 5) -> NSynth:
    return NSynth.from_weights(make_weights(seed, config), stages=config.stages,
                               ae_stages=config.ae_stages, hop=config.hop)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny checkpoint's expected weights saved as a model folder (no TensorFlow needed)."""
    expected = np.load(FIXTURES / "tiny_expected.npz")
    weights = {name: expected[name] for name in expected.files}
    config = ModelConfig.from_shapes({n: v.shape for n, v in weights.items()})
    return save_model(weights, config, tmp_path_factory.mktemp("tiny") / "model",
                      {"checkpoint": "tiny_expected.npz"})


# Reference spaces several tests compare against ("equals the local one"), made once per session
# with the local backend and a default workflow. Read-only: a test that changes one copies it
# first (the session ends with an error if a reference changed).

def _reference(folder: Path, data: Path):
    from .pipeline_helpers import generate_space, workflow

    result = generate_space(data, workflow(folder), progress=False, log=lambda _: None)
    return result, _contents(result.space_dir)


def _contents(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "lock"}


@pytest.fixture(scope="session")
def local_test_space(tmp_path_factory):
    """The test dataset's space made by the local backend: its RunResult (space_dir, decoded...)."""
    from .pipeline_helpers import TEST_DATASET

    result, contents = _reference(tmp_path_factory.mktemp("reference-test-space"), TEST_DATASET)
    yield result
    assert _contents(result.space_dir) == contents, "a test changed the shared reference space"


@pytest.fixture(scope="session")
def local_small_library(tmp_path_factory):
    """tests/test_library.py's small library (2 pads, 2 pitches, 26 decodes) made by the local
    backend: its RunResult."""
    from .test_library import small_library

    folder = tmp_path_factory.mktemp("reference-small-library")
    result, contents = _reference(folder, small_library(folder / "data"))
    yield result
    assert _contents(result.space_dir) == contents, "a test changed the shared reference library"


def tone(seconds: float, freq: float = 220.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.6 * np.sin(2 * np.pi * freq * t) * np.exp(-2 * t)).astype(np.float32)


def tf32_flags() -> tuple:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@contextmanager
def exact_float32():
    """TF32 off (exact float32 products on a GPU) inside the block, the global flags as they
    were after it."""
    saved = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
