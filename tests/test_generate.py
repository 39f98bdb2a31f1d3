"""Incremental generation: it must compute what the parallel network computes, and sample right."""
import numpy as np
import pytest
import torch

from pipeline import SoundspaceError
from pipeline.nsynth import generate as gen
from pipeline.nsynth.model import ModelConfig
from pipeline.nsynth.mulaw import inverse_mu_law, mu_law

from .conftest import exact_float32, small_model, tf32_flags, tone


def sounds(model, batch, seconds=0.1):
    audio = np.stack([tone(seconds, 110 * (k + 1)) for k in range(batch)])
    return audio, model.encode(audio)


# SMALL's dilations are 1, 2, 4, 8, 1, 2, 4, 8. A block is the largest power of two dividing the
# dilation with 2 * block * batch <= block_rows, so these are worked out by hand per case.
@pytest.mark.parametrize("math", ["numpy", "torch"])
@pytest.mark.parametrize("batch,block_rows,blocks", [
    (1, 1, [1, 1, 1, 1, 1, 1, 1, 1]),       # row-wise GEMV path everywhere
    (1, 1024, [1, 2, 4, 8, 1, 2, 4, 8]),    # each layer's whole dilation
    (3, 8, [1, 2, 2, 2, 1, 2, 2, 2]),       # 2 * 2 * 3 = 12 > 8 stops at 2
    (2, 8, [1, 2, 4, 4, 1, 2, 4, 4]),       # 2 * 4 * 2 = 16 > 8 stops at 4
    (5, 16, [1, 2, 2, 2, 1, 2, 2, 2]),
])
def test_incremental_equals_parallel(math, batch, block_rows, blocks, monkeypatch):
    """Every block size and the row-wise GEMV path, over three conditioning frames; the decoder
    the check runs really uses the block sizes the case names."""
    used = []

    class Recording(gen.IncrementalDecoder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            used.append([layer.block for layer in self.layers])

    monkeypatch.setattr(gen, "IncrementalDecoder", Recording)
    model = small_model()
    audio, z = sounds(model, batch)
    audio = audio[:, :3 * 512]
    parallel = model.probabilities(audio, z)
    incremental = model.teacher_forced_incremental(audio, z, math=math, block_rows=block_rows)
    assert used == [blocks]
    np.testing.assert_allclose(incremental, parallel, rtol=0, atol=2e-6)
    assert np.abs(np.log(incremental) - np.log(parallel)).max() < 1e-4


def test_dilations_longer_than_a_frame_and_another_hop():
    """Blocks must never straddle a conditioning frame, even when d > hop."""
    config = ModelConfig(width=8, skip_width=8, layers=8, stages=8, ae_width=4, ae_layers=2,
                         ae_stages=2, bottleneck=16, hop=32)
    model = small_model(config)
    audio, z = sounds(model, 2, seconds=0.04)  # 640 samples: 20 frames of 32
    np.testing.assert_allclose(model.teacher_forced_incremental(audio, z),
                               model.probabilities(audio, z), rtol=0, atol=2e-6)


def test_block_sizes():
    assert gen.block_size(512, 512, 1, 1024) == 512
    assert gen.block_size(512, 512, 81, 1024) == 8
    assert gen.block_size(1, 512, 1, 1024) == 1
    assert gen.block_size(64, 32, 1, 1024) == 32  # capped by the hop
    assert gen.block_size(512, 512, 2000, 1024) == 1


@pytest.mark.parametrize("math", [gen.NumpyMath(), gen.TorchMath("cpu")], ids=["numpy", "torch"])
def test_sampling_takes_the_first_bin_reaching_the_draw_and_clamps(math):
    probs = np.zeros((3, 256), np.float32)
    probs[:, 10], probs[:, 20] = 0.25, 0.75
    short = probs.copy()
    short[2] *= 0.999  # a float32 sum can end just under 1: a draw above it must give bin 255
    uniform = np.array([0.1, 0.25, 0.9999], np.float32)
    drawn = math.to_numpy(math.sample(math.array(short), math.array(uniform)))
    assert drawn.tolist() == [10, 10, 255]
    drawn = math.to_numpy(math.sample(math.array(probs), math.array(np.array([0.3, 0.0, 0.5]))))
    assert drawn.tolist() == [20, 0, 20]  # bins before 10 have cdf 0 == u: 0 is the first reaching 0


def test_same_seed_same_audio_other_seed_other_audio():
    model = small_model()
    _, z = sounds(model, 3)
    a = model.generate(z, seed=7, progress=False)
    assert a.shape == (3, 3 * 512) and a.dtype == np.float32
    assert np.array_equal(a, model.generate(z, seed=7, progress=False))
    assert np.array_equal(a, model.generate(z, seed=[[7, 0], [7, 1], [7, 2]], progress=False))
    b = model.generate(z, seed=8, progress=False)
    assert np.mean(a != b) > 0.5
    # Every output sample sits on a mu-law bin centre.
    np.testing.assert_array_equal(inverse_mu_law(mu_law(a)), a)


def test_numpy_and_torch_sample_the_same_stream():
    """Both libraries draw from the same seeded numbers; their probabilities agree to float
    rounding, so they pick the same bins until a draw falls within rounding of a bin edge."""
    model = small_model()
    _, z = sounds(model, 2)
    # One frame of embedding is enough to compare the two samplers' streams, at a fraction of the work.
    a = model.generate(z[:, :1], seed=3, progress=False, math="numpy")
    b = model.generate(z[:, :1], seed=3, progress=False, math="torch")
    assert np.array_equal(a[:, :256], b[:, :256])


def test_samples_follow_the_models_distribution():
    """Averaged over many steps, log p(sampled bin) matches minus the entropy at that step:
    sampling the wrong bin (off by one, or ignoring the draw) breaks the equality."""
    model = small_model()
    _, z = sounds(model, 8)
    audio = model.generate(z, seed=1, progress=False)
    probs = model.probabilities(audio, z)
    bins = mu_law(audio) + 128
    logp = np.log(np.take_along_axis(probs, bins[..., None], axis=-1))[..., 0]
    neg_entropy = (probs * np.log(probs)).sum(-1)
    assert abs(logp.mean() - neg_entropy.mean()) < 0.05
    assert neg_entropy.mean() < -2  # the distributions are broad, so the check has teeth


def test_low_temperature_picks_the_most_likely_bin():
    model = small_model()
    _, z = sounds(model, 2)
    # The random model's top two log-probabilities are ~3e-3 apart: only a very low temperature
    # turns that into certainty.
    audio = model.generate(z, seed=0, temperature=1e-7, progress=False)
    probs = model.probabilities(audio, z)
    assert np.mean(probs.argmax(-1) == mu_law(audio) + 128) > 0.999
    assert not np.array_equal(audio, model.generate(z, seed=0, progress=False))


def test_generate_refuses_bad_arguments():
    model = small_model()
    _, z = sounds(model, 2)
    with pytest.raises(SoundspaceError, match="temperature must be > 0"):
        model.generate(z, temperature=0, progress=False)
    with pytest.raises(SoundspaceError, match="3 seeds for 2 sounds"):
        model.generate(z, seed=[1, 2, 3], progress=False)
    with pytest.raises(SoundspaceError, match="NaN"):
        model.generate(np.full_like(z, np.nan), progress=False)
    with pytest.raises(SoundspaceError, match="no frames"):
        model.generate(z[:, :0], progress=False)
    with pytest.raises(SoundspaceError, match="unknown math library"):
        model.generate(z, math="jax", progress=False)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_torch_device_incremental_equals_parallel(device):
    """The GPU code path (torch math on a torch device), on the CPU everywhere and on CUDA where
    there is one, with float32 products kept exact (no TF32) only for the duration of the test."""
    with exact_float32():
        model = small_model()
        model.net.to(device)
        audio, z = sounds(model, 3)
        audio = audio[:, :1024]
        np.testing.assert_allclose(model.teacher_forced_incremental(audio, z, math="torch"),
                                   model.probabilities(audio, z), rtol=0, atol=2e-6)
        a = model.generate(z, seed=2, progress=False, math="torch")
        assert np.array_equal(a, model.generate(z, seed=2, progress=False, math="torch"))


def test_exact_float32_restores_the_global_flags():
    saved = tf32_flags()
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with exact_float32():
            assert tf32_flags() == (False, False)
        assert tf32_flags() == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("math", ["numpy", "torch"])
def test_a_decode_resumed_from_what_it_kept_is_bit_for_bit_the_same(math):
    """Issue 30: `keep` hands out the samples drawn so far; a later call started from them
    replays only the decoder's reach and goes on to the same audio as the run that never
    stopped. Dilations of 1 to 1024 (a reach of 8 frames of 256) and 3 sounds with their own
    seeds; resumed from early, middle and late frames."""
    config = ModelConfig(width=8, skip_width=8, layers=11, stages=11, ae_width=8, ae_layers=2,
                         ae_stages=2, bottleneck=4, hop=256)
    model = small_model(config)
    z = np.random.default_rng(3).normal(size=(3, 12, 4)).astype(np.float32)
    seeds = [[0, 0], [0, 4], [9, 1]]
    kept = []
    whole = model.generate(z, seed=seeds, progress=False, math=math,
                           keep=lambda frames, drawn: kept.append((frames, drawn.copy())),
                           keep_every=1e-9)
    assert [frames for frames, _ in kept] == list(range(1, 12))  # every frame but the last
    assert config.decoder_reach() == 2 + 2 * (2 ** 11 - 1)  # 4096 samples: 16 frames of 256
    for frames, drawn in (kept[0], kept[5], kept[10]):
        assert drawn.dtype == np.uint8 and drawn.shape == (3, frames * 256)
        steps = []
        again = model.generate(z, seed=seeds, progress=False, math=math, start=(frames, drawn),
                               steps=steps.append)
        np.testing.assert_array_equal(again, whole)
        assert sum(steps) == 12 * 256  # all replayed: the reach is longer than what was done
    small = ModelConfig(width=8, skip_width=8, layers=4, stages=2, ae_width=8, ae_layers=2,
                        ae_stages=2, bottleneck=4, hop=256)  # a reach of 8: one frame replayed
    model, kept = small_model(small), []
    whole = model.generate(z, seed=seeds, progress=False, math=math,
                           keep=lambda frames, drawn: kept.append((frames, drawn.copy())),
                           keep_every=1e-9)
    steps = []
    again = model.generate(z, seed=seeds, progress=False, math=math, start=kept[8],
                           steps=steps.append)
    np.testing.assert_array_equal(again, whole)
    assert sum(steps) == (1 + 12 - 9) * 256


def test_an_interrupted_decode_keeps_its_finished_frames():
    model = small_model()
    z = np.random.default_rng(4).normal(size=(2, 6, model.config.bottleneck)).astype(np.float32)
    whole = model.generate(z, seed=1, progress=False)
    kept, calls = [], []

    def stop_in_frame_four(samples):
        calls.append(samples)
        if len(calls) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.generate(z, seed=1, progress=stop_in_frame_four,
                       keep=lambda frames, drawn: kept.append((frames, drawn.copy())))
    assert [frames for frames, _ in kept] == [4]  # never on time (keep_every 0), once when stopped
    again = model.generate(z, seed=1, progress=False, start=kept[0])
    np.testing.assert_array_equal(again, whole)
