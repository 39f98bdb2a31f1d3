"""`soundspace encode` / `decode` end to end with the tiny model, and their refusals."""
import numpy as np
import pytest
import soundfile
import torch

from pipeline.cli import main

from .conftest import DEMO_MODEL, tone


@pytest.fixture
def sounds(tmp_path):
    t = np.arange(22050) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1) * 0.4
    soundfile.write(tmp_path / "tone.wav", stereo, 44100)  # 0.5 s, 44.1 kHz stereo
    soundfile.write(tmp_path / "pluck.flac", tone(0.3, 330), 16000)
    return tmp_path


def test_encode_then_decode(sounds, tmp_path):
    """With the demo model, the test suite's default."""
    emb = tmp_path / "emb"
    assert main(["encode", str(sounds / "tone.wav"), str(sounds / "pluck.flac"),
                 "--model", str(DEMO_MODEL), "--out", str(emb)]) == 0
    tone_z, pluck_z = np.load(emb / "tone.npy"), np.load(emb / "pluck.npy")
    assert tone_z.shape == (8000 // 512, 16) and pluck_z.shape == (4800 // 512, 16)
    assert main(["encode", str(sounds / "pluck.flac"), "--keep-partial-frame",
                 "--model", str(DEMO_MODEL), "--out", str(tmp_path / "emb2")]) == 0
    assert np.load(tmp_path / "emb2" / "pluck.npy").shape == (10, 16)

    out = tmp_path / "wav"
    args = [str(emb / "tone.npy"), str(emb / "pluck.npy"), "--model", str(DEMO_MODEL), "--seed", "4"]
    assert main(["decode", *args, "--out", str(out)]) == 0
    audio, rate = soundfile.read(out / "tone.wav", dtype="int16")
    assert rate == 16000 and len(audio) == 15 * 512  # frames from the file, never padded
    assert len(soundfile.read(out / "pluck.wav")[0]) == 9 * 512
    assert sorted(p.name for p in out.iterdir()) == ["pluck.wav", "tone.wav"]  # no temp files

    assert main(["decode", *args[:-1], "5", "--out", str(tmp_path / "other")]) == 0
    assert (out / "tone.wav").read_bytes() != (tmp_path / "other" / "tone.wav").read_bytes()


def test_a_sound_decodes_the_same_alone_or_in_a_batch(sounds, tmp_path):
    """Sound i draws from the stream (seed, i) whatever batch it lands in: two embeddings of the
    same length, decoded together (one batch of 2) and with --batch 1 (two batches of 1)."""
    emb = tmp_path / "emb"
    z = np.random.default_rng(0).normal(0, 1, (2, 6, 16)).astype(np.float32)
    emb.mkdir()
    np.save(emb / "a.npy", z[0])
    np.save(emb / "b.npy", z[1])
    args = [str(emb / "a.npy"), str(emb / "b.npy"), "--model", str(DEMO_MODEL), "--seed", "4"]
    assert main(["decode", *args, "--out", str(tmp_path / "together")]) == 0
    assert main(["decode", *args, "--out", str(tmp_path / "alone"), "--batch", "1"]) == 0
    for name in ("a.wav", "b.wav"):
        assert (tmp_path / "together" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()
    together = {n: (tmp_path / "together" / n).read_bytes() for n in ("a.wav", "b.wav")}
    assert together["a.wav"] != together["b.wav"]


def test_decode_accepts_a_batched_embedding_of_one(tiny_model_dir, tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((1, 2, 16), np.float32))
    assert main(["decode", str(tmp_path / "z.npy"), "--model", str(tiny_model_dir),
                 "--out", str(tmp_path / "o")]) == 0
    assert len(soundfile.read(tmp_path / "o" / "z.wav")[0]) == 1024


def run_error(capsys, args):
    assert main(args) == 2
    return capsys.readouterr().err


def test_refusals(sounds, tiny_model_dir, tmp_path, capsys):
    model = ["--model", str(tiny_model_dir), "--out", str(tmp_path / "o")]
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    assert "cannot read" in run_error(capsys, ["encode", str(tmp_path / "bad.wav"), *model])
    assert "no such sound file" in run_error(capsys, ["encode", str(tmp_path / "none.wav"), *model])
    soundfile.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    assert "holds no audio" in run_error(capsys, ["encode", str(tmp_path / "empty.wav"), *model])
    soundfile.write(tmp_path / "nan.wav", np.full(2048, np.nan, np.float32), 16000, subtype="FLOAT")
    assert "NaN" in run_error(capsys, ["encode", str(tmp_path / "nan.wav"), *model])
    soundfile.write(tmp_path / "short.wav", np.zeros(300), 16000)
    assert "shorter than one frame" in run_error(capsys, ["encode", str(tmp_path / "short.wav"), *model])
    (tmp_path / "d").mkdir()
    soundfile.write(tmp_path / "d" / "tone.wav", tone(0.1), 16000)
    assert "would both be written" in run_error(
        capsys, ["encode", str(sounds / "tone.wav"), str(tmp_path / "d" / "tone.wav"), *model])
    assert "not a soundspace model folder" in run_error(
        capsys, ["encode", str(sounds / "tone.wav"), "--model", str(tmp_path), "--out", str(tmp_path / "o")])
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in run_error(
        capsys, ["encode", str(sounds / "tone.wav"), "--model", str(tiny_model_dir), "--out", str(tmp_path / "file")])

    np.save(tmp_path / "wide.npy", np.zeros((4, 8), np.float32))
    assert "[frames, 16]" in run_error(capsys, ["decode", str(tmp_path / "wide.npy"), *model])
    (tmp_path / "junk.npy").write_bytes(b"junk")
    assert "cannot read" in run_error(capsys, ["decode", str(tmp_path / "junk.npy"), *model])
    np.save(tmp_path / "inf.npy", np.full((3, 16), np.inf, np.float32))
    assert "NaN or infinite" in run_error(capsys, ["decode", str(tmp_path / "inf.npy"), *model])
    np.save(tmp_path / "ok.npy", np.zeros((2, 16), np.float32))
    assert "temperature must be > 0" in run_error(
        capsys, ["decode", str(tmp_path / "ok.npy"), *model, "--temperature", "-1"])
    if not torch.cuda.is_available():
        assert "no usable CUDA" in run_error(capsys, ["decode", str(tmp_path / "ok.npy"), *model, "--device", "cuda"])
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path, capsys, monkeypatch):
    """A bug still ends in one line and exit 2; SOUNDSPACE_DEBUG=1 shows its traceback."""
    from pipeline import cli

    def broken(args):
        raise RuntimeError("something the program did not expect")

    monkeypatch.setattr(cli, "cmd_explore", broken)
    monkeypatch.delenv("SOUNDSPACE_DEBUG", raising=False)
    assert cli.main(["explore", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == ("soundspace explore: internal error: RuntimeError: something the program did "
                   "not expect (please report it; SOUNDSPACE_DEBUG=1 shows the traceback)\n")
    monkeypatch.setenv("SOUNDSPACE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["explore", str(tmp_path)])


@pytest.mark.parametrize("args,needle", [
    (["serve", "--port", "70000"], "--port 70000: a TCP port is 1 to 65535"),
    (["serve", "--port", "-1"], "--port -1: a TCP port is 1 to 65535"),
    (["train", "--lr", "nan"], "--lr nan: the learning rate must be a number above 0"),
    (["train", "--lr", "-1"], "--lr -1.0: the learning rate must be a number above 0"),
    (["train", "--batch", "0"], "--batch 0: a step needs at least 1 crop"),
])
def test_values_out_of_range_are_one_line_not_an_internal_error(tmp_path, capsys, args, needle):
    """Issue 34, item 5: these ended in "internal error ... please report it"."""
    (tmp_path / "data").mkdir()
    where = {"serve": [str(tmp_path)],
             "train": ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "m")]}[args[0]]
    assert main([args[0], *where, *args[1:]]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "internal error" not in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1", "many"])
def test_explore_embed_max_mb_takes_a_size(tmp_path, capsys, value):
    """Issue 34, item 5: nan, inf and 1e308 ended in an internal error."""
    with pytest.raises(SystemExit) as ended:
        main(["explore", str(tmp_path), "--embed-max-mb", value])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage" not in err, err
    assert err.startswith(f"soundspace explore: error: argument --embed-max-mb: '{value}': give "
                          "the size in MB from 0 to 2000")


@pytest.mark.parametrize("args", [["decode", "z.npy", "--model", "m", "--out", "o", "--batch", "-1"],
                                  ["export", "--format", "onss", "s", "--out", "o", "--pitch", "200"],
                                  ["decode", "z.npy"]])
def test_a_mistake_on_the_command_line_is_one_line_without_the_usage_block(capsys, args):
    """Issue 34, item 5: argparse printed its usage block before the line saying what is wrong."""
    with pytest.raises(SystemExit) as ended:
        main(args)
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not err.startswith("usage"), err
    assert err.startswith(f"soundspace {args[0]}: error: ")
    assert err.endswith(f"; `soundspace {args[0]} --help` lists the options\n")


def test_a_model_json_that_disagrees_with_its_weights_is_one_line(tmp_path, capsys):
    """Issue 34, item 5: 144 lines, one per variable. A decoder of width 48 instead of 32 changes
    7 variables in each of the 20 layers (dilatedconv W and biases, cond_map W and biases, res W
    and biases, skip W) and 3 more (startconv W and biases, skip_start W): 143."""
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, model)
    meta = json.loads((model / "model.json").read_text())
    meta["config"]["width"] = 48
    (model / "model.json").write_text(json.dumps(meta))
    np.save(tmp_path / "z.npy", np.zeros((2, 16), np.float32))
    assert main(["decode", str(tmp_path / "z.npy"), "--model", str(model), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{model}: the weights do not form an NSynth model of size decoder 20 layers x 48" in err
    assert "143 variable(s) of another shape, the first cond_map_1/W: expected [1, 1, 16, 96], " \
        "found [1, 1, 16, 64]" in err
    assert "convert or copy the model again" in err


def test_control_characters_from_a_file_are_escaped_in_messages(tmp_path, capsys):
    """Issue 34, item 5: a file name in space.json reached the terminal raw (an escape sequence
    recolours it, a bell rings, a newline breaks the one line)."""
    import json

    from .pipeline_helpers import dataset, workflow

    data = dataset(tmp_path / "d", labels=("LEFT", "RIGHT"))
    space = json.loads((data / "space.json").read_text())
    space["sounds"]["LEFT"]["file"] = "bass\x1b[31m\x07\n.wav"
    (data / "space.json").write_text(json.dumps(space))
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\x07" not in err, repr(err)
    assert "bass\\x1b[31m\\x07\\n.wav" in err


@pytest.mark.parametrize("values", [np.zeros((2, 16), np.complex64) + 1j,
                                    np.zeros((2, 16), bool)])
def test_decode_refuses_an_embedding_that_is_not_real_numbers(tiny_model_dir, tmp_path, capsys,
                                                              values):
    """Issue 34, item 6: a complex .npy was decoded with its imaginary part dropped."""
    np.save(tmp_path / "z.npy", values)
    err = run_error(capsys, ["decode", str(tmp_path / "z.npy"), "--model", str(tiny_model_dir),
                             "--out", str(tmp_path / "o")])
    assert err == (f"soundspace decode: error: {tmp_path / 'z.npy'} holds {values.dtype} values; "
                   "an embedding is real numbers (float32) as `soundspace encode` writes it\n")
    assert not (tmp_path / "o").exists()


def test_train_takes_every_model_size_and_defaults_to_the_bundled_demo_model():
    """The parser names the sizes without importing torch, so it must list ModelConfig's fields
    exactly; the default size is the one the bundled demo model was trained at."""
    import json

    from pipeline.cli import MODEL_SIZES
    from pipeline.nsynth.model import DEMO_CONFIG, ModelConfig

    assert MODEL_SIZES == tuple(ModelConfig.__dataclass_fields__)
    bundled = json.loads((DEMO_MODEL / "model.json").read_text())["config"]
    assert DEMO_CONFIG.to_dict() == bundled


def test_generate_finds_the_local_workflow_by_itself_and_says_so(tmp_path):
    """Issue 31, item 6: --workflow may be left out where config-workflow-local.json is."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from .pipeline_helpers import dataset, workflow

    root = Path(__file__).resolve().parent.parent
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    data = dataset(tmp_path / "d", length=0.05, resolution=2)
    argv = [sys.executable, "-m", "pipeline.cli", "generate", "--dataset", str(data)]
    alone = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert alone.returncode == 2 and alone.stderr.count("\n") == 1, alone.stderr
    assert "no --workflow given, and no config-workflow-local.json in" in alone.stderr
    flow = workflow(tmp_path / "w")
    (tmp_path / "config-workflow-local.json").write_text(flow.read_text())
    found = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert "using the workflow config-workflow-local.json" in found.stdout
    made = json.loads((tmp_path / "w" / "out" / "space" / "manifest.json").read_text())
    assert made["status"] == "complete"


def test_every_option_says_what_it_does_and_its_default(capsys):
    """Issue 31, item 6: each option of each command has a help line, and one with a default
    shows it in `--help`; --format takes its choices in any case; --version answers."""
    import argparse

    from pipeline.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        text = command.format_help().split("\noptions:\n", 1)[1]
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            if action.default is not None and action.default is not False:
                line = text.split(action.option_strings[-1], 1)[1].split("\n  -", 1)[0]
                assert "default" in line, (name, action.option_strings, line)
    assert parser.parse_args(["export", "x", "--format", "SFZ", "--out", "o"]).format == "sfz"
    with pytest.raises(SystemExit):
        parser.parse_args(["--version"])
    assert capsys.readouterr().out.startswith("soundspace ")


def test_a_first_hours_mistakes_get_advice_that_works(tmp_path, capsys):
    """Issue 31, item 6: `"model": "demo"` is the test model; a missing real model says how to
    try the demo model; serve on a dataset folder says to generate it first."""
    import json

    from pipeline.config import load_space

    from .pipeline_helpers import dataset, workflow

    data = dataset(tmp_path / "d", length=0.05, resolution=2, model="demo")
    assert load_space(data)[0].model == "test"
    config = json.loads((data / "space.json").read_text())
    (data / "space.json").write_text(json.dumps({**config, "model": "real"}))
    flow = json.loads(workflow(tmp_path / "w").read_text())
    flow["models"]["real"] = str(tmp_path / "no-model")
    (tmp_path / "w" / "workflow.json").write_text(json.dumps(flow))
    assert main(["generate", "--workflow", str(tmp_path / "w" / "workflow.json"),
                 "--dataset", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'set "model": "demo" in the dataset\'s space.json' in err, err
    assert main(["serve", str(data), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"soundspace generate --dataset {data}" in err, err
