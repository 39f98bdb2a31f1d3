"""Every refusal of `soundspace generate`: a clear message naming the file, the field or the
sound, exit code 2, and nothing written (the output folder is never created)."""
import json
import os
import shutil

import numpy as np
import pytest
import soundfile

from pipeline.cli import main

from .pipeline_helpers import dataset, workflow


def refused(tmp_path, capsys, data, flow=None) -> str:
    flow = flow or workflow(tmp_path)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    assert not (tmp_path / "out").exists(), "a refused run wrote something"
    err = capsys.readouterr().err
    assert err.startswith("soundspace generate: error: ") and err.count("\n") == 1
    return err


def test_wrong_number_of_sounds(tmp_path, capsys):
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", labels=("NW", "NE", "SW")))
    assert "space.json" in err and "field sounds" in err and "got 3 sound(s)" in err
    assert "LEFT and RIGHT" in err and "NW, NE, SW, SE" in err
    err = refused(tmp_path, capsys, dataset(tmp_path / "e", labels=("LEFT", "NE")))
    assert "got 2 sound(s) named LEFT, NE" in err


def test_missing_file(tmp_path, capsys):
    data = dataset(tmp_path / "d")
    (data / "guitar.wav").unlink()
    assert "no such sound file" in refused(tmp_path, capsys, data) and "guitar.wav" in \
        refused(tmp_path, capsys, data)


@pytest.mark.parametrize("name", ["../elsewhere.wav", "/etc/hostname", "link/bass.wav"])
def test_file_outside_the_dataset(tmp_path, capsys, name):
    data = dataset(tmp_path / "d")
    (tmp_path / "out-of-dataset").mkdir()
    shutil.copy(data / "bass.wav", tmp_path / "out-of-dataset" / "bass.wav")
    shutil.copy(data / "bass.wav", tmp_path / "elsewhere.wav")
    (data / "link").symlink_to(tmp_path / "out-of-dataset")  # a folder link leading out
    space = json.loads((data / "space.json").read_text())
    space["sounds"]["NW"]["file"] = name
    (data / "space.json").write_text(json.dumps(space))
    err = refused(tmp_path, capsys, data)
    assert f"sounds.NW.file: refusing sound file {name!r}" in err and "name it relative" in err


def test_unreadable_file(tmp_path, capsys):
    data = dataset(tmp_path / "d")
    (data / "organ.wav").write_bytes(b"this is not a sound")
    err = refused(tmp_path, capsys, data)
    assert "cannot read" in err and "organ.wav" in err and "WAV, FLAC" in err


def test_empty_audio(tmp_path, capsys):
    data = dataset(tmp_path / "d")
    soundfile.write(data / "bass.wav", np.zeros(0, np.float32), 16000)
    assert "holds no audio samples" in refused(tmp_path, capsys, data)


def test_silent_audio(tmp_path, capsys):
    data = dataset(tmp_path / "d")
    soundfile.write(data / "bass.wav", np.zeros(16000, np.float32), 16000)
    err = refused(tmp_path, capsys, data)
    assert "bass.wav is silent" in err and "all zeros" in err
    late = np.zeros(48000, np.float32)
    late[40000:] = 0.5  # sound only after the space's 1 s
    soundfile.write(data / "bass.wav", late, 16000)
    assert "silent in its first 1 s" in refused(tmp_path, capsys, data)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_samples(tmp_path, capsys, bad):
    data = dataset(tmp_path / "d")
    audio = np.full(16000, 0.1, np.float32)
    audio[100] = bad
    soundfile.write(data / "keyboard.wav", audio, 16000, subtype="FLOAT")
    err = refused(tmp_path, capsys, data)
    assert "keyboard.wav holds NaN or infinite samples" in err


def test_resolution_below_two(tmp_path, capsys):
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", resolution=1))
    assert "field resolution" in err and "greater than or equal to 2" in err and "got 1" in err


def test_absurd_resolution_says_what_it_would_cost(tmp_path, capsys):
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", resolution=1000))
    assert "1,000,000 cells" in err and "278 hours of audio" in err and "lower the resolution" in err


def test_unknown_weighting(tmp_path, capsys):
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", weighting="cubic"))
    assert "field weighting" in err and "'bilinear' or 'radial'" in err and '"cubic"' in err


def test_bad_space_fields_and_json(tmp_path, capsys):
    data = dataset(tmp_path / "d", resolutoin=3)
    assert "field resolutoin: unknown field (misspelt?)" in refused(tmp_path, capsys, data)
    data = dataset(tmp_path / "e", name="../escape")
    assert "field name" in refused(tmp_path, capsys, data)
    data = dataset(tmp_path / "f", postprocess={"chain": "loud"})
    assert "field postprocess.chain" in refused(tmp_path, capsys, data)
    (data / "space.json").write_text("{\"name\": ")
    assert "not valid JSON" in refused(tmp_path, capsys, data)
    (data / "space.json").unlink()
    assert "holds no space.json, and no sub-folder does" in refused(tmp_path, capsys, data)
    assert "is not a folder" in refused(tmp_path, capsys, tmp_path / "nowhere")


def test_bad_workflow(tmp_path, capsys):
    data = dataset(tmp_path / "d")
    err = refused(tmp_path, capsys, data, workflow(tmp_path, device="gpu"))
    assert "workflow.json" in err and "field device: use cpu, cuda, cuda:N or auto" in err
    err = refused(tmp_path, capsys, data, workflow(tmp_path, backend="cloud"))
    assert "field backend" in err and "'local'" in err
    err = refused(tmp_path, capsys, data, workflow(tmp_path, models={"real": "nowhere",
                                                                      "test": "nowhere"}))
    assert "models.real" in err and "holds no model" in err and "soundspace convert" in err
    err = refused(tmp_path, capsys, data, workflow(tmp_path, api_key="secret"))
    assert "field api_key: unknown field" in err


def test_length_under_one_sample(tmp_path, capsys):
    """Item 10: a length that rounds to no sample at all was a raw numpy error."""
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", length=1e-9))
    assert "field length" in err and "less than one sample" in err


@pytest.mark.parametrize("inside", [".", "out", "deeper/out"])
def test_output_inside_the_dataset(tmp_path, capsys, inside):
    """Item 16: a space written into its dataset folder could overwrite an input sound."""
    data = dataset(tmp_path / "d")
    (data / "x00_y00.wav").write_bytes((data / "bass.wav").read_bytes())  # a sound named like a cell
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data),
                 "--output", str(data / inside)]) == 2
    err = capsys.readouterr().err
    assert "is inside the dataset folder" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def snapshot(folder):
    """Every file under `folder`, by path, with its bytes: nothing changed, nothing added."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_space_named_like_its_dataset_folder_is_not_written_over_its_sounds(tmp_path, capsys):
    """Issue 34: `--output x2` with the dataset x2/t of a space named t made the space's folder
    the dataset: both input sounds (named like cells) were replaced by decodes, exit 0."""
    data = dataset(tmp_path / "x2" / "t", labels=("LEFT", "RIGHT"), name="t", length=0.1)
    for label, cell in (("LEFT", "x00_y00.wav"), ("RIGHT", "x01_y00.wav")):
        space = json.loads((data / "space.json").read_text())
        (data / cell).write_bytes((data / space["sounds"][label]["file"]).read_bytes())
        space["sounds"][label] = cell
        (data / "space.json").write_text(json.dumps(space))
    before = snapshot(tmp_path / "x2")
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data),
                 "--output", str(tmp_path / "x2")]) == 2
    err = capsys.readouterr().err
    assert f"space's folder {tmp_path / 'x2' / 't'} is the dataset folder" in err
    assert err.count("\n") == 1
    assert snapshot(tmp_path / "x2") == before


def test_a_space_is_not_written_into_another_dataset_of_the_same_call(tmp_path, capsys):
    """Issue 34: two datasets under mv/, alpha's space named beta: alpha's space went into the
    dataset folder mv/beta."""
    alpha = dataset(tmp_path / "mv" / "alpha", name="beta", length=0.1)
    beta = dataset(tmp_path / "mv" / "beta", name="other", length=0.1)
    before = snapshot(tmp_path / "mv")
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(alpha),
                 str(beta), "--output", str(tmp_path / "mv")]) == 2
    err = capsys.readouterr().err
    assert f"is the dataset folder {beta}" in err and err.count("\n") == 1
    assert snapshot(tmp_path / "mv") == before


def test_a_space_folder_that_would_hold_the_dataset_is_refused(tmp_path, capsys):
    data = dataset(tmp_path / "out" / "space" / "inputs", length=0.1)
    before = snapshot(tmp_path / "out")
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data),
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"holds the dataset folder {data}" in err and err.count("\n") == 1
    assert snapshot(tmp_path / "out") == before


def test_a_library_is_not_written_into_its_dataset(tmp_path, capsys):
    """Issue 34: pads and .decodes/ went into the dataset folder of a library named like it."""
    from .test_library import small_library

    data = small_library(tmp_path / "o" / "lib")
    before = snapshot(tmp_path / "o")
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data),
                 "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"library's folder {data} is the dataset folder" in err and err.count("\n") == 1
    assert snapshot(tmp_path / "o") == before


def _model_with(tmp_path, **config):
    from .conftest import DEMO_MODEL

    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder, dirs_exist_ok=True)
    meta = json.loads((folder / "model.json").read_text())
    meta["config"] = None if config.get("config", 1) is None else {**meta["config"], **config}
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("config,field", [({"hop": 0}, "config.hop"), ({"hop": -512}, "config.hop"),
                                          ({"hop": "512"}, "config.hop"), ({"hop": True}, "config.hop"),
                                          ({"stages": 0}, "config.stages"),
                                          ({"config": None}, "field config")])
def test_bad_model_configuration(tmp_path, capsys, config, field):
    """Item 17: model.json's hyper-parameters are read from a file and checked like any config."""
    model = _model_with(tmp_path, **config)
    flow = workflow(tmp_path, models={"real": str(model), "test": str(model)})
    err = refused(tmp_path, capsys, dataset(tmp_path / "d"), flow)
    assert str(model / "model.json") in err and field in err


# Issue 34, item 6: what a JSON file says is taken exactly as written.

@pytest.mark.parametrize("fields,needle", [
    ({"resolution": "3"}, 'field resolution: give a whole number, without quotes (not a string, '
                          'not true or false) (got "3")'),
    ({"resolution": True}, "field resolution: give a whole number"),
    ({"resolution": 3.0}, "field resolution: give a whole number"),
    ({"seed": "1"}, "field seed: give a whole number"),
    ({"seed": False}, "field seed: give a whole number"),
    ({"length": "0.07"}, 'field length: give a number, without quotes'),
    ({"length": True}, "field length: give a number"),
    ({"postprocess": {"fade_ms": "5"}}, "field postprocess.fade_ms: give a number"),
])
def test_a_number_in_space_json_is_a_json_number(tmp_path, capsys, fields, needle):
    """"3" and true were taken as 3 and 1 (pydantic's lax mode): a typo'd type passed unseen."""
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", **{"length": 0.07, **fields}))
    assert needle in err and "space.json" in err


@pytest.mark.parametrize("fields,needle", [
    ({"decode_batch": "81"}, "field decode_batch: give a whole number"),
    ({"parallel_shards": True}, "field parallel_shards: give a whole number"),
    ({"ray": {"retries": "3"}}, "field ray.retries: give a whole number"),
])
def test_a_number_in_the_workflow_is_a_json_number(tmp_path, capsys, fields, needle):
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", length=0.07),
                  workflow(tmp_path, **fields))
    assert needle in err and "workflow.json" in err


def test_a_json_number_is_still_taken_where_a_fraction_is_allowed(tmp_path):
    """Strict types, not pedantry: a whole number is a number (length 1 means 1.0 s)."""
    from pipeline.config import load_space

    space, _ = load_space(dataset(tmp_path / "d", length=1, postprocess={"peak_dbfs": -3}))
    assert space.length == 1.0 and space.postprocess.peak_dbfs == -3.0


@pytest.mark.parametrize("text", [
    '{"name": "space", "resolution": 3, "resolution": 5}',
    '{"sounds": {"NW": "bass.wav", "NE": "guitar.wav", "SW": "keyboard.wav", "SE": "organ.wav", '
    '"NW": "organ.wav"}}',
])
def test_a_key_given_twice_in_space_json_is_refused(tmp_path, capsys, text):
    """json.loads kept the last of two values without a word: the user's first was ignored."""
    data = dataset(tmp_path / "d", length=0.07)
    space = json.loads((data / "space.json").read_text())
    given = json.loads(text)
    rest = json.dumps({k: v for k, v in space.items() if k not in given})[1:-1]
    (data / "space.json").write_text(text[:-1] + ", " + rest + "}")
    err = refused(tmp_path, capsys, data)
    assert "space.json: key" in err and "is given twice in one object" in err


def test_a_key_given_twice_in_the_workflow_is_refused(tmp_path, capsys):
    flow = workflow(tmp_path)
    flow.write_text(flow.read_text()[:-1] + ', "decode_batch": 4, "decode_batch": 81}')
    err = refused(tmp_path, capsys, dataset(tmp_path / "d", length=0.07), flow)
    assert 'workflow.json: key "decode_batch" is given twice in one object (4 and 81)' in err


def test_a_workflow_that_is_a_folder_is_named_as_such(tmp_path, capsys):
    """It said "no workflow config at FOLDER", as if nothing were there."""
    err = refused(tmp_path, capsys, dataset(tmp_path / "d"), tmp_path)
    assert f"--workflow {tmp_path} is a folder; give the workflow file itself" in err


def test_a_model_json_without_its_sha256_says_so(tmp_path, capsys):
    """It said the weights "do not match the sha256", which was never recorded."""
    model = _model_with(tmp_path)
    meta = json.loads((model / "model.json").read_text())
    del meta["weights_sha256"]
    (model / "model.json").write_text(json.dumps(meta))
    flow = workflow(tmp_path, models={"real": str(model), "test": str(model)})
    err = refused(tmp_path, capsys, dataset(tmp_path / "d"), flow)
    assert f"{model / 'model.json'} records no sha256 of weights.safetensors" in err
    assert "does not match" not in err and "convert or copy the model again" in err


def test_a_key_given_twice_in_model_json_is_refused(tmp_path, capsys):
    model = _model_with(tmp_path)
    text = (model / "model.json").read_text()
    (model / "model.json").write_text(text.replace('"config": {', '"config": {"hop": 256, ', 1))
    flow = workflow(tmp_path, models={"real": str(model), "test": str(model)})
    err = refused(tmp_path, capsys, dataset(tmp_path / "d"), flow)
    assert f'{model / "model.json"}: key "hop" is given twice in one object' in err


def test_a_fifo_as_a_sound_is_named_as_such(tmp_path, capsys):
    """It said "no such sound file" of a file that is there (a named pipe, which would block a
    read)."""
    data = dataset(tmp_path / "d")
    (data / "organ.wav").unlink()
    os.mkfifo(data / "organ.wav")
    err = refused(tmp_path, capsys, data)
    assert f"{data / 'organ.wav'} is a named pipe (FIFO), not a sound file" in err


def test_a_sound_whose_links_form_a_loop_is_one_line(tmp_path, capsys):
    """Issue 34, item 5: an internal error (pathlib's RuntimeError) before."""
    data = dataset(tmp_path / "d")
    (data / "bass.wav").unlink()
    (data / "bass.wav").symlink_to("other.wav")
    (data / "other.wav").symlink_to("bass.wav")
    assert main(["generate", "--workflow", str(workflow(tmp_path)), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    assert "refusing sound file 'bass.wav': its symbolic links form a loop" in err


@pytest.mark.parametrize("file", ["space.json", "workflow.json"])
def test_json_nested_a_hundred_thousand_deep_is_one_line(tmp_path, capsys, file):
    """Issue 34, item 5: RecursionError, an internal error, before."""
    data, flow = dataset(tmp_path / "d"), workflow(tmp_path)
    where = data / file if file == "space.json" else flow
    where.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["generate", "--workflow", str(flow), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    assert f"{where}: not valid JSON (nested too deeply" in err
