"""Checkpoint conversion (TensorFlow's reader) and the project's model folders."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

from pipeline import SoundspaceError
from pipeline.cli import main
from pipeline.nsynth import NSynth
from pipeline.nsynth.checkpoint import load_model, read_tf_checkpoint, resolve_checkpoint, save_model

from .conftest import FIXTURES

TINY = FIXTURES / "tiny_tf_checkpoint"
EMA_VARIABLES = ["ae_bottleneck/W", "ae_startconv/biases", "dilatedconv_1/W", "res_30/biases", "logits/W"]

# CI installs the `convert` extra and sets this, so the converter tests cannot silently skip.
if os.environ.get("SOUNDSPACE_REQUIRE_TF"):
    import tensorflow as tf  # noqa: F401
else:
    tf = pytest.importorskip("tensorflow")


def expected():
    data = np.load(FIXTURES / "tiny_expected.npz")
    return {name: data[name] for name in data.files}


def write_checkpoint(prefix, variables: dict):
    """A real TF1-style checkpoint holding exactly `variables` under their names."""
    graph = tf.Graph()
    with graph.as_default():
        tf_vars = {n: tf.compat.v1.Variable(v, name=n.replace("/", "_")) for n, v in variables.items()}
        saver = tf.compat.v1.train.Saver(var_list=tf_vars)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix))
    return prefix


def test_tiny_checkpoint_converts_exactly(tmp_path, capsys):
    assert main(["convert", "--checkpoint", str(TINY / "model.ckpt-10"), "--out", str(tmp_path / "m")]) == 0
    assert "skipped 18 training entries" in capsys.readouterr().out
    weights, config, meta = load_model(tmp_path / "m")
    want = expected()
    assert sorted(weights) == sorted(want)
    for name in want:
        assert weights[name].dtype == np.float32
        np.testing.assert_array_equal(weights[name], want[name], err_msg=name)
    assert meta["source"]["global_step"] == 10 and meta["source"]["checkpoint"] == "model.ckpt-10"
    assert (config.width, config.skip_width, config.ae_width) == (8, 4, 4)


def test_the_converted_model_loads_and_runs(tmp_path):
    assert main(["convert", "--checkpoint", str(TINY), "--out", str(tmp_path / "m")]) == 0  # folder
    model = NSynth.load(tmp_path / "m")
    audio = np.sin(np.linspace(0, 300, 2048, dtype=np.float32))[None] * 0.5
    z = model.encode(audio)
    assert z.shape == (1, 4, 16)
    out = model.generate(z[:, :2], seed=1, progress=False)
    assert out.shape == (1, 1024) and np.isfinite(out).all()


def test_moving_averages_on_request(tmp_path):
    weights, info = read_tf_checkpoint(TINY, moving_averages=True)
    want = expected()
    assert info["variables_from_moving_averages"] == len(EMA_VARIABLES)
    for name in EMA_VARIABLES:
        assert not np.array_equal(weights[name], want[name])
        assert np.abs(weights[name] - want[name]).max() < 0.1  # plain + N(0, 0.01)
    np.testing.assert_array_equal(weights["res_1/W"], want["res_1/W"])


def test_missing_and_misshapen_variables_are_named(tmp_path):
    variables = expected()
    del variables["cond_map_4/biases"]
    variables["res_2/W"] = np.zeros((1, 1, 8, 9), np.float32)
    write_checkpoint(tmp_path / "broken" / "model.ckpt-1", variables)
    assert main(["convert", "--checkpoint", str(tmp_path / "broken"), "--out", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m").exists()  # nothing half-written


def test_error_messages(tmp_path, capsys):
    variables = expected()
    del variables["cond_map_4/biases"]
    variables["res_2/W"] = np.zeros((1, 1, 8, 9), np.float32)
    write_checkpoint(tmp_path / "broken" / "model.ckpt-1", variables)
    main(["convert", "--checkpoint", str(tmp_path / "broken"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert "missing variable(s): cond_map_4/biases" in err
    assert "the first res_2/W: expected [1, 1, 8, 8], found [1, 1, 8, 9]" in err

    assert main(["convert", "--checkpoint", str(tmp_path / "nope" / "model.ckpt-5"), "--out", str(tmp_path / "m")]) == 2
    assert "no TensorFlow checkpoint at" in capsys.readouterr().err
    main(["convert", "--checkpoint", str(TINY / "model.ckpt-10.index"), "--out", str(tmp_path / "m")])
    assert f"pass its prefix {TINY / 'model.ckpt-10'}" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    main(["convert", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "m")])
    assert "holds no TensorFlow checkpoint" in capsys.readouterr().err


def test_overwriting_a_model_needs_force(tmp_path, capsys):
    out = str(tmp_path / "m")
    assert main(["convert", "--checkpoint", str(TINY), "--out", out]) == 0
    assert main(["convert", "--checkpoint", str(TINY), "--out", out]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["convert", "--checkpoint", str(TINY), "--out", out, "--force"]) == 0


def test_without_tensorflow_the_error_gives_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
    assert main(["convert", "--checkpoint", str(TINY), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "needs TensorFlow" in err and "pip install 'soundspace[convert]'" in err


def test_a_folder_with_several_checkpoints_follows_tensorflows_pointer(tmp_path):
    folder = tmp_path / "ckpts"
    shutil.copytree(TINY, folder)
    for f in TINY.iterdir():
        if f.name.startswith("model.ckpt-10"):
            shutil.copy(f, folder / f.name.replace("ckpt-10", "ckpt-5"))
    assert resolve_checkpoint(folder) == folder / "model.ckpt-10"
    (folder / "checkpoint").unlink()
    with pytest.raises(SoundspaceError, match="holds 2 checkpoints"):
        resolve_checkpoint(folder)


def test_model_folder_errors(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    data = bytearray((broken / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (broken / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(SoundspaceError, match="does not match the sha256"):
        NSynth.load(broken)
    meta = json.loads((broken / "model.json").read_text())
    meta["format"] = "other"
    (broken / "model.json").write_text(json.dumps(meta))
    with pytest.raises(SoundspaceError, match="has format 'other'"):
        NSynth.load(broken)
    (broken / "model.json").write_text("{")
    with pytest.raises(SoundspaceError, match="not valid JSON"):
        NSynth.load(broken)
    (broken / "model.json").unlink()
    with pytest.raises(SoundspaceError, match="model.json is missing"):
        NSynth.load(broken)
    with pytest.raises(SoundspaceError, match="convert it first"):
        NSynth.load(TINY)
    with pytest.raises(SoundspaceError, match="no model folder"):
        NSynth.load(tmp_path / "nothing")


def test_a_saved_model_round_trips(tiny_model_dir, tmp_path):
    """A model folder's weights written again by save_model (what convert and train call) load
    back as the same model, in files as readable as any the user writes."""
    model = NSynth.load(tiny_model_dir)
    weights, config, meta = load_model(tiny_model_dir)
    save_model(weights, config, tmp_path / "copy", meta["source"])
    again = NSynth.load(tmp_path / "copy")
    assert again.identity == model.identity and again.config == model.config
    umask = os.umask(0)
    os.umask(umask)
    for name in ("weights.safetensors", "model.json"):  # readable like any file the user writes
        assert (tmp_path / "copy" / name).stat().st_mode & 0o777 == 0o666 & ~umask
