"""Training: it learns, it resumes exactly, and it refuses bad input."""
import shutil

import numpy as np
import pytest
import soundfile
import torch

from pipeline import SoundspaceError
from pipeline.cli import main
from pipeline.nsynth import NSynth
from pipeline.nsynth import train as training
from pipeline.nsynth.model import Autoencoder, ModelConfig
from pipeline.nsynth.mulaw import mu_law, network_input
from pipeline.nsynth.random_weights import make_weights

from .conftest import tone

TINY = ModelConfig(width=8, skip_width=8, layers=4, stages=2, ae_width=4, ae_layers=2,
                   ae_stages=2, bottleneck=16, hop=512)
OPTIONS = training.TrainOptions(steps=12, batch=2, crop=1024, lr=1e-2, seed=3, checkpoint_every=4)


def data():
    return {"low.wav": tone(0.3, 131), "high.wav": tone(0.3, 262)}


def test_a_few_steps_lower_the_loss(tmp_path):
    crops = torch.from_numpy(np.stack([tone(0.3, 131)[:1024], tone(0.3, 262)[1024:2048]]))
    net = Autoencoder(TINY)
    net.load_magenta(make_weights(OPTIONS.seed, TINY))
    with torch.no_grad():
        before = training.loss_on(net, crops).item()
    out = training.train(data(), tmp_path / "m", TINY, options=OPTIONS, progress=False)
    trained = NSynth.load(out)
    with torch.no_grad():
        after = training.loss_on(trained.net, crops).item()
    assert after < before - 0.5, (before, after)
    assert trained.meta["source"]["steps"] == OPTIONS.steps


def test_an_interrupted_run_resumes_and_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch, capsys):
    whole = NSynth.load(training.train(data(), tmp_path / "whole", TINY, options=OPTIONS, progress=False))

    real_loss, calls = training.loss_on, []

    def dies_at_step_7(net, crops, *rest):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_loss(net, crops, *rest)

    monkeypatch.setattr(training, "loss_on", dies_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        training.train(data(), tmp_path / "cut", TINY, options=OPTIONS, progress=False)
    assert NSynth.load(tmp_path / "cut").meta["source"]["steps"] == 4  # the last checkpoint
    monkeypatch.setattr(training, "loss_on", real_loss)
    resumed = NSynth.load(training.train(data(), tmp_path / "cut", TINY, options=OPTIONS, progress=False))
    assert "resuming from step 4 of 12" in capsys.readouterr().out
    for name, p in whole.net.magenta_state().items():
        torch.testing.assert_close(resumed.net.magenta_state()[name], p, rtol=0, atol=1e-6)


def test_resuming_with_other_settings_is_refused(tmp_path):
    training.train(data(), tmp_path / "m", TINY, options=OPTIONS, progress=False)
    other = training.TrainOptions(**{**OPTIONS.__dict__, "lr": 5e-3})
    with pytest.raises(SoundspaceError, match="training run with other settings"):
        training.train(data(), tmp_path / "m", TINY, options=other, progress=False)


def test_bad_training_data_is_refused(tmp_path):
    with pytest.raises(SoundspaceError, match="shorter than one crop"):
        training.train({"a.wav": tone(0.05)}, tmp_path / "m", TINY, options=OPTIONS, progress=False)
    with pytest.raises(SoundspaceError, match="silent"):
        training.train({"a.wav": np.zeros(4096, np.float32)}, tmp_path / "m", TINY, options=OPTIONS, progress=False)
    bad_crop = training.TrainOptions(**{**OPTIONS.__dict__, "crop": 1000})
    with pytest.raises(SoundspaceError, match="multiple of the hop"):
        training.train(data(), tmp_path / "m", TINY, options=bad_crop, progress=False)


def cli_error(capsys, args):
    assert main(args) == 2
    return capsys.readouterr().err


def test_train_command_refusals(tmp_path, tiny_model_dir, capsys):
    out = ["--out", str(tmp_path / "m"), "--steps", "2"]
    (tmp_path / "empty").mkdir()
    assert "holds no sound files" in cli_error(capsys, ["train", "--data", str(tmp_path / "empty"), *out])
    assert "is not a folder" in cli_error(capsys, ["train", "--data", str(tmp_path / "none"), *out])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"RIFF nonsense")
    assert "cannot read" in cli_error(capsys, ["train", "--data", str(tmp_path / "bad"), *out])
    (tmp_path / "ok").mkdir()
    soundfile.write(tmp_path / "ok" / "a.wav", tone(0.5), 16000)
    err = cli_error(capsys, ["train", "--data", str(tmp_path / "ok"), *out, "--init", str(tiny_model_dir),
                             "--width", "16", "--crop", "1024"])
    assert "--init model is decoder 30 layers x 8" in err and "drop the size options" in err


def test_train_command_fine_tunes_a_model(tmp_path, tiny_model_dir):
    (tmp_path / "ok").mkdir()
    soundfile.write(tmp_path / "ok" / "a.wav", tone(0.5), 16000)
    assert main(["train", "--data", str(tmp_path / "ok"), "--out", str(tmp_path / "m"), "--steps", "2",
                 "--crop", "1024", "--batch", "1", "--init", str(tiny_model_dir)]) == 0
    tuned = NSynth.load(tmp_path / "m")
    assert tuned.config == NSynth.load(tiny_model_dir).config
    assert tuned.meta["source"]["init"] == NSynth.load(tiny_model_dir).identity


def test_onset_crops_start_where_generation_starts(tmp_path, monkeypatch):
    sounds = data()
    starts = [s[:OPTIONS.crop] for s in sounds.values()]

    def onsets(fraction, out) -> int:
        real_loss, seen = training.loss_on, []

        def spy(net, crops, *rest):
            seen.extend(crops.numpy())
            return real_loss(net, crops, *rest)

        monkeypatch.setattr(training, "loss_on", spy)
        options = training.TrainOptions(**{**OPTIONS.__dict__, "onset_crops": fraction,
                                           "batch": 8, "steps": 4})
        training.train(sounds, tmp_path / out, TINY, options=options, progress=False)
        monkeypatch.setattr(training, "loss_on", real_loss)
        assert len(seen) == 32
        return sum(any(np.array_equal(c, s) for s in starts) for c in seen)

    assert onsets(1.0, "all") == 32  # every crop is a sound's first 1024 samples
    assert onsets(0.0, "none") <= 1  # a random start is 0 once in 3,777
    assert 6 <= onsets(0.5, "half") <= 26  # binomial(32, 0.5): mean 16, sd 2.8
    bad = training.TrainOptions(**{**OPTIONS.__dict__, "onset_crops": 1.5})
    with pytest.raises(SoundspaceError, match="--onset-crops 1.5 must be a fraction"):
        training.train(sounds, tmp_path / "bad", TINY, options=bad, progress=False)


def test_encoder_context_trains_each_crop_on_the_embedding_generation_uses(tmp_path, monkeypatch):
    """With --encoder-context, every crop starts on a frame boundary and its loss is the one
    computed with the frames NSynth.encode (generation's chunked encoder) makes of the whole
    sound at that place."""
    config = ModelConfig(**{**TINY.__dict__, "ae_layers": 4, "ae_stages": 4})  # reach 16 samples
    sounds = {"low.wav": tone(0.5, 131), "high.wav": tone(0.45, 262)}  # 15 and 14 whole frames
    options = training.TrainOptions(**{**OPTIONS.__dict__, "batch": 8, "steps": 6, "checkpoint_every": 6,
                                       "onset_crops": 0.25, "encoder_context": True})
    real_loss, places = training.loss_on, set()

    def spy(net, crops, noise, context, at, *rest):
        got = real_loss(net, crops, noise, context, at, *rest)
        model = NSynth.from_weights({n: p.detach().numpy().copy() for n, p in net.magenta_state().items()},
                                    stages=config.stages, ae_stages=config.ae_stages)
        frames = []
        for crop in crops.numpy():
            name, start = next((n, s) for n, a in sounds.items() for s in range(0, len(a) - 1023, 512)
                               if np.array_equal(a[s:s + 1024], crop))
            frames.append(model.encode(sounds[name][None])[0, start // 512:start // 512 + 2])
            places.add((name, start))
        z = torch.from_numpy(np.stack(frames)).transpose(1, 2).repeat_interleave(512, dim=2)
        x = torch.from_numpy(network_input(crops.numpy()))
        with torch.no_grad():
            logits = net.decode_logits(torch.nn.functional.pad(x[:, :-1], (1, 0)), z)
        want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(mu_law(crops.numpy()) + 128).long())
        assert abs(got.item() - want.item()) < 1e-5, (got.item(), want.item())
        return got

    monkeypatch.setattr(training, "loss_on", spy)
    training.train(sounds, tmp_path / "m", config, options=options, progress=False)
    assert {("low.wav", 0), ("low.wav", 6656), ("high.wav", 6144)} & places  # a sound's edge
    assert len(places) > 10


def test_encoder_context_refuses_sounds_too_short_for_it(tmp_path):
    options = training.TrainOptions(**{**OPTIONS.__dict__, "encoder_context": True})
    with pytest.raises(SoundspaceError, match="--encoder-context needs sounds of at least 2048 samples"):
        training.train({"a.wav": tone(0.1)}, tmp_path / "m", TINY, options=options, progress=False)


@pytest.mark.full
def test_a_compiled_training_step_learns_what_the_plain_one_does(tmp_path):
    options = training.TrainOptions(**{**OPTIONS.__dict__, "steps": 3})
    plain = NSynth.load(training.train(data(), tmp_path / "plain", TINY, options=options, progress=False))
    fast = NSynth.load(training.train(data(), tmp_path / "fast", TINY, options=options, progress=False,
                                      compile=True))
    for name, p in plain.net.magenta_state().items():
        torch.testing.assert_close(fast.net.magenta_state()[name], p, rtol=1e-4, atol=1e-5)


def test_input_noise_falls_along_the_cosine_to_its_end_level(tmp_path, monkeypatch):
    """--input-noise-end: step 0 trains at the start level, the middle step half way, the last
    step a hair above the end level (cos(pi * 11/12) = -0.966); each level is what the decoder's
    inputs actually carry."""
    real_loss, levels = training.loss_on, []

    def spy(net, crops, noise, *rest):
        decode, fed = net.decode_logits, []
        net.decode_logits = lambda inputs, z: fed.append(inputs) or decode(inputs, z)
        got = real_loss(net, crops, noise, *rest)
        del net.decode_logits
        clean = torch.nn.functional.pad(torch.from_numpy(network_input(crops.numpy()))[:, :-1], (1, 0))
        levels.append((float(noise), (fed[0] - clean).std().item()))
        return got

    monkeypatch.setattr(training, "loss_on", spy)
    options = training.TrainOptions(**{**OPTIONS.__dict__, "input_noise": 0.05, "input_noise_end": 0.01})
    training.train(data(), tmp_path / "m", TINY, options=options, progress=False)
    assert len(levels) == 12
    for level, measured in levels:  # 2,048 noise samples a step: their std within 10 %
        assert measured == pytest.approx(level, rel=0.1)
    levels = [level for level, _ in levels]
    assert levels[0] == pytest.approx(0.05) and levels[6] == pytest.approx(0.03)
    assert levels[11] == pytest.approx(0.01 + 0.04 * (1 - 0.9659258) / 2)
    assert all(a > b for a, b in zip(levels, levels[1:]))
    for flag, bad in (("input_noise", -0.1), ("input_noise_end", 1.5)):
        options = training.TrainOptions(**{**OPTIONS.__dict__, "input_noise": 0.05, flag: bad})
        with pytest.raises(SoundspaceError, match=f"--{flag.replace('_', '-')} {bad:g} must be from 0"):
            training.train(data(), tmp_path / "bad", TINY, options=options, progress=False)


def test_a_sound_at_full_scale_trains(tmp_path):
    """A sample of exactly 1.0 is mu-law bin 128, one past the last of the 256 classes: it is
    scored as the top class rather than crashing the run."""
    loud = {"loud.wav": np.clip(2 * tone(0.3, 131), -1, 1)}
    assert (loud["loud.wav"] == 1.0).any()
    out = training.train(loud, tmp_path / "m", TINY, options=OPTIONS, progress=False)
    assert NSynth.load(out).meta["source"]["steps"] == OPTIONS.steps


def test_self_feed_puts_the_decoders_own_draws_one_step_later(tmp_path):
    """--self-feed: a first pass whose predictions are certain (a spike on a known bin at each
    step) must show up, one step later and as that bin's network input, at the replaced
    positions of the scored pass; the true previous sample stays everywhere else."""
    crops = torch.from_numpy(np.stack([tone(0.3, 131)[:1024], tone(0.3, 262)[1024:2048]]))
    net = Autoencoder(TINY)
    net.load_magenta(make_weights(OPTIONS.seed, TINY))
    decode, fed = net.decode_logits, []
    spike = torch.full((2, 256, 1024), -1e4)
    bins = (torch.arange(1024) * 7) % 256  # the class predicted at step t
    spike[:, bins, torch.arange(1024)] = 0.0

    def spy(inputs, z):
        fed.append(inputs.detach().clone())
        return spike if len(fed) == 1 else decode(inputs, z)

    net.decode_logits = spy
    clean = torch.nn.functional.pad(torch.from_numpy(network_input(crops.numpy()))[:, :-1], (1, 0))
    own = torch.nn.functional.pad(((bins[:-1] - 128) / 128.0).expand(2, -1), (1, 0))
    for fraction in (1.0, 0.5):
        fed.clear()
        torch.manual_seed(0)
        training.loss_on(net, crops, self_feed=fraction)
        assert len(fed) == 2
        assert torch.equal(fed[0], clean)
        is_own, is_clean = fed[1] == own, fed[1] == clean
        assert bool((is_own | is_clean).all())
        replaced = (is_own & ~is_clean).float().mean().item()
        assert replaced == pytest.approx(fraction * (is_own != is_clean).float().mean().item(), abs=0.04)
    assert torch.equal(fed[1][:, 0], torch.zeros(2))  # nothing before the first sample
    fed.clear()
    training.loss_on(net, crops)
    assert len(fed) == 1  # no extra pass unless asked for
    bad = training.TrainOptions(**{**OPTIONS.__dict__, "self_feed": 1.5})
    with pytest.raises(SoundspaceError, match="--self-feed 1.5 must be a fraction"):
        training.train(data(), tmp_path / "bad", TINY, options=bad, progress=False)


def test_self_feed_from_starts_self_feeding_part_way_through_the_run(tmp_path, monkeypatch):
    """--self-feed-from 0.25 on an 8-step run: steps 0 and 1 train plainly (one decoder pass),
    steps 2 to 7 self-feed (two passes); a value with no --self-feed, or of 1, is refused."""
    real_loss, feeds = training.loss_on, []

    def spy(net, crops, noise, context, at, self_feed):
        decode, passes = net.decode_logits, []
        net.decode_logits = lambda inputs, z: passes.append(1) or decode(inputs, z)
        got = real_loss(net, crops, noise, context, at, self_feed)
        del net.decode_logits
        feeds.append((self_feed, len(passes)))
        return got

    monkeypatch.setattr(training, "loss_on", spy)
    options = training.TrainOptions(**{**OPTIONS.__dict__, "steps": 8, "self_feed": 0.5,
                                       "self_feed_from": 0.25})
    training.train(data(), tmp_path / "m", TINY, options=options, progress=False)
    assert feeds == [(0.0, 1)] * 2 + [(0.5, 2)] * 6
    for bad, message in (({"self_feed": 0.0}, "--self-feed is 0"), ({"self_feed": 0.5, "self_feed_from": 1.0},
                                                                    "--self-feed-from 1 must be a fraction")):
        bad_options = training.TrainOptions(**{**OPTIONS.__dict__, "self_feed_from": 0.5, **bad})
        with pytest.raises(SoundspaceError, match=message):
            training.train(data(), tmp_path / "bad", TINY, options=bad_options, progress=False)
        assert not (tmp_path / "bad").exists()


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_training_into_a_folder_that_holds_a_model_is_refused_without_overwrite(
        tmp_path, tiny_model_dir, capsys):
    """Issue 34: `train --out` onto a model folder (a converted Magenta model, say) silently
    replaced it. Refused; --overwrite replaces it, starting from step 0."""
    (tmp_path / "ok").mkdir()
    soundfile.write(tmp_path / "ok" / "a.wav", tone(0.5), 16000)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = files_of(model)
    args = ["train", "--data", str(tmp_path / "ok"), "--out", str(model), "--steps", "2",
            "--crop", "1024", "--batch", "1", "--width", "8", "--layers", "2", "--stages", "2"]
    err = cli_error(capsys, args)
    assert f"{model} already holds a model (model.json, weights.safetensors)" in err
    assert "--overwrite" in err and err.count("\n") == 1
    assert files_of(model) == before
    assert main([*args, "--overwrite"]) == 0
    replaced = NSynth.load(model)
    assert replaced.meta["source"]["steps"] == 2 and replaced.config.layers == 2
    assert files_of(model)["weights.safetensors"] != before["weights.safetensors"]
    # The run that is there now is resumed as before, without --overwrite.
    assert main(args) == 0


@pytest.mark.parametrize("inside", [".", "models/new"])
def test_training_into_the_data_folder_is_refused(tmp_path, capsys, inside):
    data_dir = tmp_path / "ok"
    data_dir.mkdir()
    soundfile.write(data_dir / "a.wav", tone(0.5), 16000)
    before = files_of(data_dir)
    err = cli_error(capsys, ["train", "--data", str(data_dir), "--out", str(data_dir / inside),
                             "--steps", "2", "--crop", "1024", "--batch", "1"])
    assert "is the training data folder" in err and err.count("\n") == 1
    assert files_of(data_dir) == before and sorted(p.name for p in data_dir.iterdir()) == ["a.wav"]
