"""The network's shape inference, its checks, and encoding."""
import json

import numpy as np
import pytest

from pipeline import SoundspaceError
from pipeline.nsynth import NSynth
from pipeline.nsynth.model import ModelConfig
from pipeline.nsynth.random_weights import make_weights

from .conftest import FIXTURES, SMALL, small_model, tone


def test_full_size_variables_match_magentas_checkpoint():
    magenta = {name: tuple(shape) for name, shape in json.loads((FIXTURES / "variables.json").read_text())}
    assert ModelConfig().expected_shapes() == magenta
    assert sum(np.prod(s) for s in magenta.values()) == 61_804_048


def test_sizes_are_read_from_the_shapes():
    expected = np.load(FIXTURES / "tiny_expected.npz")
    config = ModelConfig.from_shapes({n: expected[n].shape for n in expected.files})
    assert (config.width, config.skip_width, config.ae_width, config.layers, config.ae_layers) == (8, 4, 4, 30, 30)
    config = ModelConfig.from_shapes(SMALL.expected_shapes(), stages=4, ae_stages=3)
    assert config == SMALL


def test_recipe_matches_the_documented_checksum():
    import zlib
    weights = make_weights(1)
    crc, total = 0, 0.0
    for name in sorted(weights):
        crc = zlib.crc32(name.encode() + weights[name].tobytes(), crc)
        total += float(weights[name].sum(dtype=np.float64))
    assert crc == 0x2F79BAB5 and abs(total - -20.822969430) < 1e-8


def test_shape_errors_name_the_variable_and_both_shapes():
    shapes = SMALL.expected_shapes()
    shapes["res_3/W"] = (1, 1, 16, 17)
    del shapes["cond_map_2/biases"]
    shapes["mystery/W"] = (1,)
    with pytest.raises(SoundspaceError) as error:
        ModelConfig.from_shapes(shapes, stages=4, ae_stages=3)
    message = str(error.value)
    assert "1 variable(s) of another shape, the first res_3/W: expected [1, 1, 16, 16], found " \
        "[1, 1, 16, 17]" in message and "\n" not in message
    assert "missing variable(s): cond_map_2/biases" in message
    assert "unexpected variable(s): mystery/W" in message


def test_weights_of_another_network_are_refused():
    with pytest.raises(SoundspaceError, match="no variable 'startconv/W'"):
        NSynth.from_weights({"dense/W": np.zeros((1, 1, 2, 2))})


def test_encoding_drops_the_partial_frame_or_pads_it():
    model = small_model()
    audio = np.stack([tone(0.2), tone(0.2, 330)])  # 3200 samples: 6 whole frames + 128
    z = model.encode(audio)
    assert z.shape == (2, 6, 16) and z.dtype == np.float32
    padded = model.encode(audio, drop_partial=False)
    assert padded.shape == (2, 7, 16)
    # Magenta cuts the input to whole frames BEFORE the network: the kept frames do not see the
    # dropped samples. So the first frames agree with encoding only the whole-frame prefix.
    np.testing.assert_array_equal(model.encode(audio[:, :3072]), z)
    assert not np.allclose(padded[:, :6], z, atol=1e-7)  # the padded tail is in their field


def test_long_inputs_encode_in_chunks_with_the_same_result(monkeypatch):
    import pipeline.nsynth as nsynth

    model = small_model()
    audio = np.stack([tone(1.3), tone(1.3, 97), tone(1.3, 440)])
    whole = model.encode(audio)
    monkeypatch.setattr(nsynth, "ENCODE_CHUNK_SAMPLES", 8 * 512)  # chunks of a few frames
    chunked = model.encode(audio)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6 * np.abs(whole).max())


def test_encode_refuses_unusable_audio():
    model = small_model()
    with pytest.raises(SoundspaceError, match="shorter than one frame"):
        model.encode(np.zeros((1, 511)))
    with pytest.raises(SoundspaceError, match="NaN or infinite"):
        model.encode(np.full((1, 2048), np.nan))
    with pytest.raises(SoundspaceError, match=r"\[sounds, samples\]"):
        model.encode(np.zeros((1, 2, 2048)))


def test_probabilities_are_distributions_and_refuse_short_embeddings():
    model = small_model()
    audio = tone(0.1)[None, :1536]
    z = model.encode(audio)
    p = model.probabilities(audio, z)
    assert p.shape == (1, 1536, 256)
    np.testing.assert_allclose(p.sum(-1), 1, atol=1e-5)
    with pytest.raises(SoundspaceError, match="need embeddings"):
        model.probabilities(tone(0.2)[None], z)
    with pytest.raises(SoundspaceError, match="embeddings must be"):
        model.probabilities(audio, z[..., :8])


def test_unknown_device_is_refused():
    with pytest.raises(SoundspaceError, match="unknown device"):
        NSynth.from_weights(make_weights(0, SMALL), stages=4, ae_stages=3, device="tpu")
