"""Exports for instruments: Open NSynth Super pad files read back with numpy in the device's row
order, SFZ instruments played by a real SFZ engine (sfizz, from the pysfizz package), and every
refusal with nothing written."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile
import soxr

from pipeline.cli import main
from pipeline.postprocess import open_nsynth_super_chain
from .pipeline_helpers import generate_space

from .pipeline_helpers import dataset, workflow
from .test_library import small_library

SFIZZ = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
    / "site-packages" / "bin" / "sfizz_render"
CORNERS = {"NW": 0, "NE": 1, "SW": 2, "SE": 3}  # the device's corner order


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A 4-sound space (default post-processing, 0.2 s), a line, and a 2-pad 2-pitch library made
    with Open NSynth Super's chain (0.1 s), all with the demo model."""
    root = tmp_path_factory.mktemp("export")
    quiet = {"progress": False, "log": lambda _: None, "pictures": False}
    generate_space(dataset(root / "square", length=0.2), workflow(root), **quiet)
    generate_space(dataset(root / "line", labels=("LEFT", "RIGHT"), name="line", length=0.1),
                   workflow(root), **quiet)
    generate_space(small_library(root / "lib", postprocess={"chain": "open-nsynth-super"}),
                   workflow(root), **quiet)
    return {"root": root, "space": root / "out" / "space", "line": root / "out" / "line",
            "library": root / "out" / "lib"}


def export(*args) -> int:
    return main(["export", *map(str, args)])


def int16(path: Path) -> np.ndarray:
    return soundfile.read(path, dtype="int16")[0]


def cells_by_weights(manifest: dict) -> dict:
    return {json.dumps(c["weights"], sort_keys=True): c for c in manifest["cells"]}


def test_onss_rows_of_a_library_are_its_cells_in_device_order(made, tmp_path):
    out = tmp_path / "onss"
    assert export(made["library"], "--format", "onss", "--out", out, "--length", 1600) == 0
    pitches, res = [48, 55], 3
    for pad in ("bass_guitar_keyboard_organ", "trumpet_guitar_keyboard_organ"):
        rows = np.fromfile(out / "pads" / f"{pad}.bin", dtype="<i2")
        assert rows.size == res * res * len(pitches) * 1600
        rows = rows.reshape(-1, 1600)
        manifest = json.loads((made["library"] / pad / "manifest.json").read_text())
        for cell in manifest["cells"]:  # made with the device's chain at this length: verbatim
            row = (cell["row"] * res + cell["column"]) * len(pitches) + pitches.index(cell["pitch"])
            assert np.array_equal(rows[row], int16(made["library"] / pad / cell["file"])), cell["file"]
    settings = json.loads((out / "settings-fragment.json").read_text())
    loop = {k: settings["nsynth"].pop(k) for k in ("looping", "loopStart", "loopEnd")}
    assert settings["nsynth"] == {"dataDirectory": "/home/pi/pads", "resolution": 3,
                                  "pitches": [48, 55], "length": 1600, "sampleRate": 16000}
    assert loop["looping"] and loop["loopEnd"] < 0.41  # these 0.1 s sounds fade before 41 %
    names = [[i["name"] for i in corner["instruments"]] for corner in settings["corners"]]
    assert names == [["bass", "trumpet"], ["guitar"], ["keyboard"], ["organ"]]
    trumpet = settings["corners"][0]["instruments"][1]
    assert trumpet == {"name": "trumpet", "display": "TRUMPET", "abbr": "TR"}
    marker = json.loads((out / "export.json").read_text())
    assert marker["format"] == "onss" and sorted(marker["pads"]) == [
        "bass_guitar_keyboard_organ", "trumpet_guitar_keyboard_organ"]


def test_onss_of_a_space_pins_the_corner_order_and_applies_the_device_chain(made, tmp_path):
    out = tmp_path / "onss"
    assert export(made["space"], "--format", "onss", "--out", out, "--length", 4000) == 0
    manifest = json.loads((made["space"] / "manifest.json").read_text())
    files = {label: s["file"][:-4] for label, s in manifest["inputs"].items()}
    # The device joins the corner names top-left, top-right, bottom-left, bottom-right.
    name = "_".join(files[label] for label in ("NW", "NE", "SW", "SE"))
    assert [p.name for p in (out / "pads").iterdir()] == [f"{name}.bin"]
    rows = np.fromfile(out / "pads" / f"{name}.bin", dtype="<i2").reshape(9, 4000)
    by_weights = cells_by_weights(manifest)
    # Four different sounds at the corners; each sits where the device's touch grid has it.
    device_row = {"NW": 0, "NE": 2, "SW": 6, "SE": 8}
    for label, row in device_row.items():
        corner = by_weights[json.dumps({k: float(k == label) for k in CORNERS}, sort_keys=True)]
        wav = int16(made["space"] / corner["file"]).astype(np.float32) / 32768
        expected = open_nsynth_super_chain(wav, 4000)  # cut, trimmed, -12 dBFS, 8-sample fades
        assert np.abs(rows[row] / 32768 - expected).max() <= 1 / 32768, label
        assert abs(np.abs(rows[row]).max() - 32768 * 10 ** (-12 / 20)) <= 1  # -12 dBFS peak
        assert not rows[row][3200:].any()  # 0.2 s of sound, zero-padded to the device length
    assert len({rows[r].tobytes() for r in device_row.values()}) == 4
    settings = json.loads((out / "settings-fragment.json").read_text())
    assert [c["instruments"][0]["name"] for c in settings["corners"]] == name.split("_")
    assert settings["nsynth"]["pitches"] == [60]


def test_onss_loop_of_a_short_library_holds_sound_not_padding(local_small_library, tmp_path,
                                                               capsys):
    """Issue 31, item 4: 0.1 s sounds padded to the device's 60,000 samples. The device's own
    loop (20 % to 41 %: samples 12,000 to 24,600) would hold a key over silence; the exported
    loop lies where every sound still sounds: within its first 1,600 samples, and in every row
    the looped part carries sound (its RMS above 1 % of the row's peak)."""
    out = tmp_path / "onss"
    assert export(local_small_library.space_dir, "--format", "onss", "--out", out) == 0
    printed = capsys.readouterr().out
    device = json.loads((out / "settings-fragment.json").read_text())["nsynth"]
    assert device["looping"] and device["length"] == 60_000
    start, end = round(device["loopStart"] * 60_000), round(device["loopEnd"] * 60_000)
    print(f"device loop: samples {start} to {end} of 60,000")
    assert 0 < start < end <= 1_600
    assert f"device loop: {device['loopStart']:g} to {device['loopEnd']:g} of each sound" in printed
    for pad in (out / "pads").iterdir():
        for row in np.fromfile(pad, dtype="<i2").reshape(-1, 60_000).astype(np.float64):
            assert not row[1_600:].any()  # padding
            looped = row[start:end]
            assert np.sqrt(np.mean(looped ** 2)) > 0.01 * np.abs(row).max(), pad.name


def test_device_display_names_fit_its_8_characters():
    from pipeline.export.onss import display

    assert display("Fingered bass") == ("FING BAS", "FB")  # the longest word gives way first
    assert display("Reed organ") == ("REED ORG", "RO")
    assert display("Vibraphone") == ("VIBRAPHO", "VI")
    assert display("E. piano (soft)") == ("E PIA SO", "EP")
    assert display("Distorted electric guitar x2") == ("DIS ELE", "DE")
    assert display("!!") == ("?", "?")


def render(sfz: Path, note: int, ccs: dict, seconds: float, out: Path) -> np.ndarray:
    """`note` held for `seconds` with controllers `ccs`, through sfizz at 16 kHz; mono.

    Rendered in one block of 4096 frames (these notes are shorter): at sfizz_render's default
    1024-frame blocks a voice slips one sample at the block boundary (its output after frame
    ~1024 is the sample one frame late), which costs a sound with strong high partials, such as
    the demo model's trumpet at G3 with its sharp peak at 62 ms, 0.02 of its correlation."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000))  # 960 ticks per second
    for control, value in ccs.items():
        track.append(mido.Message("control_change", control=control, value=value, time=0))
    track.append(mido.Message("note_on", note=note, velocity=127, time=0))
    track.append(mido.Message("note_off", note=note, velocity=0, time=round(seconds * 960)))
    track.append(mido.MetaMessage("end_of_track", time=480))
    midi.save(out.with_suffix(".mid"))
    result = subprocess.run([str(SFIZZ), "--sfz", str(sfz), "--midi", str(out.with_suffix(".mid")),
                             "--wav", str(out), "-s", "16000", "-b", "4096", "--use-eot"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    audio, rate = soundfile.read(out)
    assert rate == 16000
    return audio.mean(axis=1)


def similarity(rendered: np.ndarray, sound: np.ndarray) -> float:
    """Normalised cross-correlation of `sound` with the rendering, best lag up to 20 ms."""
    best = -1.0
    for lag in range(0, 320):
        part = rendered[lag:lag + len(sound)]
        if len(part) < len(sound):
            break
        best = max(best, float(part @ sound / np.sqrt((part @ part) * (sound @ sound))))
    return best


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 1 << 16))
    return float(np.argmax(spectrum)) * 16000 / (1 << 16)


@pytest.mark.skipif(not SFIZZ.is_file() and not os.environ.get("SOUNDSPACE_REQUIRE_SFIZZ"),
                    reason="sfizz_render comes with the test extras (pysfizz)")
def test_sfz_plays_each_cell_by_controllers_and_the_nearest_pitch_in_sfizz(made, tmp_path):
    out = tmp_path / "sfz"
    assert export(made["library"], "--format", "sfz", "--out", out) == 0
    pad = "trumpet_guitar_keyboard_organ"
    sfz = out / f"{pad}.sfz"
    text = sfz.read_text()
    assert "pitch_keycenter=48 lokey=36 hikey=51" in text and "lokey=52 hikey=67" in text
    sounds = {(c, r, p): soundfile.read(made["library"] / pad / f"p{p}/x{c:02d}_y{r:02d}.wav")[0]
              for c in range(3) for r in range(3) for p in (48, 55)}
    # CC 1 (x) 0..127 over 3 columns: 0-41, 42-84, 85-127; CC 2 (y) counts from the south row.
    for (column, row, pitch), (x, y) in {(0, 0, 55): (0, 127), (2, 0, 48): (127, 100),
                                         (1, 1, 55): (60, 64), (0, 2, 48): (10, 0),
                                         (2, 2, 55): (90, 20)}.items():
        played = render(sfz, pitch, {1: x, 2: y}, 0.1, tmp_path / f"{column}{row}{pitch}.wav")
        scores = {key: similarity(played, s) for key, s in sounds.items()}
        assert max(scores, key=scores.get) == (column, row, pitch)
        assert scores[(column, row, pitch)] > 0.99, scores[(column, row, pitch)]
    # Key 52 lies between the generated 48 and 55, nearer 55: it plays 55, 3 semitones down.
    played = render(sfz, 52, {1: 0, 2: 127}, 0.15, tmp_path / "between.wav")
    down = soxr.resample(sounds[(0, 0, 55)], 16000, 16000 * 2 ** (3 / 12))
    up = soxr.resample(sounds[(0, 0, 48)], 16000, 16000 / 2 ** (4 / 12))
    # (sfizz's own resampler differs a little from soxr's: 0.98, not 0.99.)
    assert similarity(played, down) > 0.98 and similarity(played, up) < 0.9
    ratio = peak_hz(played[:len(down)]) / peak_hz(sounds[(0, 0, 55)])
    assert abs(12 * np.log2(ratio) + 3) < 0.5, ratio  # transposed by -3 semitones
    # Before any controller moves, the instrument plays the north-west cell.
    played = render(sfz, 55, {}, 0.1, tmp_path / "default.wav")
    assert similarity(played, sounds[(0, 0, 55)]) > 0.99


def test_sfz_of_a_line_uses_one_controller_and_options(made, tmp_path):
    out = tmp_path / "sfz"
    assert export(made["line"], "--format", "sfz", "--out", out, "--pitch", 48, "--cc-x", 74,
                  "--extend", 5, "--loop") == 0
    text = (out / "line.sfz").read_text()
    assert "locc74=0 hicc74=41\n" in text and "locc74=85 hicc74=127\n" in text
    assert "cc2" not in text and "lokey=43 hikey=53" in text
    # --loop: Open NSynth Super's 20 % to 41 % of each sound's audible part (issue 31, item 4),
    # at most of its 1600 samples, and what it loops carries sound.
    assert text.count("loop_mode=loop_continuous") == 3
    for line in text.splitlines():
        if line.startswith("<region>"):
            sample = line.split("sample=")[1].split()[0]
            assert (out / "samples" / "line" / sample).read_bytes() == (made["line"] / sample).read_bytes()
            start = int(line.split("loop_start=")[1].split()[0])
            end = int(line.split("loop_end=")[1].split()[0])
            sound = int16(made["line"] / sample).astype(np.float64)
            assert 0 < start < end < 1600 * 0.41
            assert np.sqrt(np.mean(sound[start:end] ** 2)) > 0.01 * np.abs(sound).max()


def test_export_again_replaces_the_earlier_export_whole(made, tmp_path, capsys):
    out = tmp_path / "sfz"
    assert export(made["space"], "--format", "sfz", "--out", out, "--pitch", 48) == 0
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "space.sfz").write_text("damaged")
    assert export(made["space"], "--format", "sfz", "--out", out, "--pitch", 48) == 0
    again = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert again == first
    assert [p.name for p in tmp_path.iterdir()] == ["sfz"]  # no temporary folder left


@pytest.mark.parametrize("fmt,source", [("sfz", "space"), ("onss", "library")])
def test_export_again_keeps_files_the_user_added_to_the_earlier_export(made, tmp_path, capsys,
                                                                      fmt, source):
    """Issue 34: a second export to the same --out deleted the notes and DAW project the user
    had put there. Refused, naming them; the export is replaced once they are moved away."""
    out = tmp_path / fmt
    assert export(made[source], "--format", fmt, "--out", out) == 0
    capsys.readouterr()
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "notes.txt").write_text("keep me")
    (out / "project").mkdir()
    (out / "project" / "song.als").write_bytes(b"a DAW project")
    (out / "empty-folder").mkdir()
    assert export(made[source], "--format", fmt, "--out", out) == 2
    err = capsys.readouterr().err
    assert "holds an earlier export and files it did not write" in err
    assert "'empty-folder/', 'notes.txt', 'project/song.als'" in err and err.count("\n") == 1
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "project" / "song.als").read_bytes() == b"a DAW project"
    for added in ("notes.txt", "project/song.als"):
        (out / added).unlink()
    (out / "project").rmdir()
    (out / "empty-folder").rmdir()
    assert export(made[source], "--format", fmt, "--out", out) == 0
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    # An export.json that lists a user's file does not make the export's own files the only
    # ones: the file the export did not write is still named.
    marker = json.loads((out / "export.json").read_text())
    (out / "export.json").write_text(json.dumps(dict(marker, files=marker["files"][1:])))
    assert export(made[source], "--format", fmt, "--out", out) == 2
    assert repr(marker["files"][0]) in capsys.readouterr().err


def refused(capsys, tmp_path, out, *args, needle) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    assert export(*args, "--out", out) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("soundspace export: error: ") and needle in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_refusals_write_nothing(made, tmp_path, capsys):
    out = tmp_path / "out"
    refused(capsys, tmp_path, out, made["root"] / "square", "--format", "sfz",
            needle="is not a space or library folder")
    with pytest.raises(SystemExit) as ended:  # argparse: the choices, in one line
        export(made["space"], "--format", "wav", "--out", out)
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.count("\n") == 1, err
    assert "invalid choice: 'wav' (choose from 'sfz', 'decent', 'multisample', 'onss')" in err
    assert not out.exists()
    refused(capsys, tmp_path, out, made["line"], "--format", "onss",
            needle="Open NSynth Super plays a square")
    refused(capsys, tmp_path, made["space"] / "exported", made["space"], "--format", "sfz",
            needle="is inside the source")
    assert not (made["space"] / "exported").exists()
    refused(capsys, tmp_path, out, made["library"], "--format", "sfz", "--pitch", 40,
            needle="drop --pitch")
    refused(capsys, tmp_path, out, made["space"], "--format", "onss", "--cc-x", 3,
            needle="--cc-x: not an option of --format onss")
    refused(capsys, tmp_path, out, made["library"] / "bass_guitar_keyboard_organ", "--format",
            "sfz", needle="is one pad of the library")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    refused(capsys, tmp_path, busy, made["space"], "--format", "sfz", needle="no readable export.json")
    # A link as --out: refused, and no temporary link or folder is left beside it.
    elsewhere = tmp_path.parent / (tmp_path.name + "-elsewhere")
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere)
    refused(capsys, tmp_path, tmp_path / "linked", made["space"], "--format", "sfz",
            needle="is a symbolic link")
    assert list(elsewhere.iterdir()) == []
    assert (busy / "mine.txt").read_text() == "keep me"


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_changed_or_hostile_source_is_refused(made, tmp_path, capsys):
    space = copy_tree(made["space"], tmp_path / "space")
    (space / "x01_y01.wav").write_bytes((space / "x00_y00.wav").read_bytes())
    refused(capsys, tmp_path, tmp_path / "o", space, "--format", "sfz",
            needle="is not the file the run wrote")

    space = copy_tree(made["space"], tmp_path / "space2")
    manifest = json.loads((space / "manifest.json").read_text())
    manifest["cells"][0]["file"] = "../../etc/passwd"
    (space / "manifest.json").write_text(json.dumps(manifest))
    refused(capsys, tmp_path, tmp_path / "o", space, "--format", "onss",
            needle="it should be x00_y00.wav")

    manifest["cells"][0]["file"] = "x00_y00.wav"
    (space / "manifest.json").write_text(json.dumps({**manifest, "cells": manifest["cells"][1:]}))
    refused(capsys, tmp_path, tmp_path / "o", space, "--format", "sfz",
            needle="lists 8 cells, 1 fewer than the grid has")

    manifest["status"] = "incomplete"
    (space / "manifest.json").write_text(json.dumps(manifest))
    refused(capsys, tmp_path, tmp_path / "o", space, "--format", "sfz", needle="not complete")

    library = copy_tree(made["library"], tmp_path / "lib")
    manifest = json.loads((library / "library.json").read_text())
    manifest["pads"][0]["name"] = "../space"
    (library / "library.json").write_text(json.dumps(manifest))
    refused(capsys, tmp_path, tmp_path / "o", library, "--format", "sfz", needle="should be named")


def test_a_bad_pad_manifest_is_refused_once_by_the_reader_for_export_and_the_page(made, tmp_path, capsys):
    from pipeline import SoundspaceError, finished

    library = copy_tree(made["library"], tmp_path / "lib")
    pad = library / "trumpet_guitar_keyboard_organ" / "manifest.json"
    manifest = json.loads(pad.read_text())
    manifest["cells"][3]["file"] = "../../bass_guitar_keyboard_organ/p48/x00_y00.wav"
    pad.write_text(json.dumps(manifest))
    with pytest.raises(SoundspaceError) as refused_by_reader:
        finished.read(library)
    line = str(refused_by_reader.value)
    assert line.startswith(f"{pad}: cell x00_y01 does not describe its own WAV file") \
        and "it should be p48/x00_y01.wav at column 0, row 1" in line
    refused(capsys, tmp_path, tmp_path / "o", library, "--format", "onss", needle=line)
    page = (library / "index.html").read_bytes()
    assert main(["explore", str(library)]) == 2
    assert capsys.readouterr().err == f"soundspace explore: error: {line}\n"
    assert (library / "index.html").read_bytes() == page


def test_a_small_or_full_disk_ends_in_one_line_and_leaves_nothing(made, tmp_path, capsys):
    from .test_run_failures import tmpfs

    with tmpfs(tmp_path / "small", "size=256k") as small:
        # 9 rows of 60000 int16 samples need 1.08 MB: refused before writing.
        refused(capsys, small, small / "onss", made["space"], "--format", "onss",
                needle="the pad files take 1.1 MB and 0.3 MB is free")
        with open(small / "filler", "wb") as f:  # leave less room than the samples need
            f.write(b"\0" * (256 * 1024 - 32 * 1024))
        # Another file system: the samples are copied, and the disk fills up on the way.
        refused(capsys, small, small / "sfz", made["space"], "--format", "sfz", "--pitch", 48,
                needle="No space left on device")


# --- issue 34, item 6: messages that say what was meant -------------------------------------------

def test_a_file_system_error_of_an_export_names_its_option_out(made, tmp_path, capsys):
    """The advice said "choose another --output", an option export does not have."""
    (tmp_path / "file").write_text("a file where a folder of --out goes")
    assert export(made["space"], "--format", "sfz", "--out", tmp_path / "file" / "sfz") == 2
    assert capsys.readouterr().err == (
        f"soundspace export: error: {tmp_path / 'file'}: File exists; a file stands where a "
        "folder should be: move that file away or choose another --out\n")


def test_a_deleted_pad_folder_says_a_rerun_restores_it(made, tmp_path, capsys):
    """It said only "cannot read .../manifest.json: No such file or directory"."""
    library = copy_tree(made["library"], tmp_path / "lib")
    shutil.rmtree(library / "trumpet_guitar_keyboard_organ")
    refused(capsys, tmp_path, tmp_path / "o", library, "--format", "sfz",
            needle=f"its folder {library / 'trumpet_guitar_keyboard_organ'} is missing "
                   "(deleted?): run the same generate command again to restore it")


PAD = "bass_guitar_keyboard_organ"


@pytest.mark.parametrize("key,weights", [
    ("corner_weights", {"NW": 0.5, "NE": 0.5, "SW": 0.0, "SE": 0.0}),
    ("weights", {"bass": 0.5, "guitar": 0.5}),
    ("weights", {"bass": 0.25, "guitar": 0.25, "keyboard": 0.25, "organ": 0.25, "flute": 0.0}),
])
def test_a_pad_cell_whose_recorded_weights_are_not_its_places_is_refused(made, tmp_path, capsys,
                                                                        key, weights):
    """A cell's manifest says what it was decoded from; the page and the exports showed the
    grid's weights whatever it said. The centre of a 3 x 3 bilinear grid is a quarter of each
    corner (the four sounds of this pad)."""
    library = copy_tree(made["library"], tmp_path / "lib")
    pad = library / PAD / "manifest.json"
    manifest = json.loads(pad.read_text())
    centre = next(c for c in manifest["cells"] if c["name"] == "x01_y01")
    assert centre["corner_weights"] == {"NW": 0.25, "NE": 0.25, "SW": 0.25, "SE": 0.25}
    assert centre["weights"] == {"bass": 0.25, "guitar": 0.25, "keyboard": 0.25, "organ": 0.25}
    centre[key] = weights
    pad.write_text(json.dumps(manifest))
    refused(capsys, tmp_path, tmp_path / "o", library, "--format", "onss",
            needle=f"{pad}: cell x01_y01 records {key} ")


def midi_note(audio: np.ndarray) -> float:
    """The median pitch of a sound by pYIN (librosa's), as a MIDI note."""
    import librosa

    f0, voiced, _ = librosa.pyin(audio.astype(np.float64), fmin=50, fmax=1000, sr=16000,
                                 frame_length=2048)
    return float(np.median(librosa.hz_to_midi(f0[voiced])))


@pytest.mark.skipif(not SFIZZ.is_file() and not os.environ.get("SOUNDSPACE_REQUIRE_SFIZZ"),
                    reason="sfizz_render comes with the test extras (pysfizz)")
def test_the_test_space_plays_at_its_own_note_in_sfizz(local_test_space, tmp_path, capsys):
    """Issue 31, item 1: the test dataset says its sounds are C3 (`"pitch": 48`), so its SFZ
    maps them to key 48: key 48 sounds MIDI 48 and key 60 an octave higher (pYIN), where the
    export used to assume 60 and key 48 sounded MIDI 36."""
    out = tmp_path / "sfz"
    assert export(local_test_space.space_dir, "--format", "sfz", "--out", out) == 0
    assert "warning" not in capsys.readouterr().err
    sfz = out / "demo-test-space.sfz"
    assert sfz.read_text().count("pitch_keycenter=48 ") == 9
    north_west = {1: 0, 2: 127}  # the bass corner, as decoded
    for key in (48, 60):
        played = render(sfz, key, north_west, 0.9, tmp_path / f"{key}.wav")
        print(f"sfizz key {key}: pYIN median MIDI {midi_note(played):.2f}")
        assert abs(midi_note(played) - key) < 0.5, (key, midi_note(played))


def test_a_space_that_does_not_say_its_note_is_exported_at_60_with_a_warning(made, tmp_path,
                                                                            capsys):
    assert export(made["space"], "--format", "sfz", "--out", tmp_path / "a") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "mapped to MIDI 60 (C4)" in warnings[0], warnings
    assert '--pitch, or set "pitch" (a MIDI note) in its space.json' in warnings[0]
    assert "pitch_keycenter=60 " in (tmp_path / "a" / "space.sfz").read_text()
    assert export(made["space"], "--format", "sfz", "--out", tmp_path / "b", "--pitch", 50) == 0
    assert "warning" not in capsys.readouterr().err
    assert "pitch_keycenter=50 " in (tmp_path / "b" / "space.sfz").read_text()
    assert export(made["space"], "--format", "onss", "--out", tmp_path / "c") == 0
    assert "warning" not in capsys.readouterr().err  # the device does not map notes


SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "samplers"


def schema(name: str):
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def exact_case(root: Path, relative: str) -> bool:
    """Whether `relative` names a file under `root` with exactly this case, part by part (a
    sampler on Linux finds nothing else)."""
    folder = root
    for part in relative.split("/"):
        if part not in os.listdir(folder):
            return False
        folder = folder / part
    return folder.is_file()


def one_each(zones, axes: dict) -> dict:
    """For every combination of the axes' values 0..127 (by axis, each zone a (lo, hi) per axis),
    the zone it plays: each combination must reach at most one zone; returns zone -> hits."""
    import itertools

    hits: dict = {}
    names = list(axes)
    for values in itertools.product(*(range(128) for _ in names)):
        found = [z for z in zones if all(axes[a](z)[0] <= v <= axes[a](z)[1]
                                         for a, v in zip(names, values))]
        assert len(found) <= 1, (values, found)
        for z in found:
            hits[z] = hits.get(z, 0) + 1
    return hits


def test_decent_sampler_bundle_validates_and_plays_each_cell_by_one_setting(made, tmp_path):
    """Issue 31, item 7: the library as a Decent Sampler bundle. Every preset is valid by the
    schema, every sample is there with its exact case and is the pad's own WAV, and every
    (x controller, y controller) setting plays exactly one cell, each key at most one of its
    samples: the bands of the SFZ export, so all 9 cells x 2 pitches are reachable."""
    from lxml import etree

    out = tmp_path / "decent"
    assert export(made["library"], "--format", "DECENT", "--out", out) == 0
    bundle = out / "lib.dsbundle"
    assert etree.parse(str(bundle / "DSLibraryInfo.xml")).getroot().get("name") == "lib"
    validator = schema("DecentSampler.xsd")
    for pad in ("bass_guitar_keyboard_organ", "trumpet_guitar_keyboard_organ"):
        preset = etree.parse(str(bundle / f"{pad}.dspreset"))
        assert validator.validate(preset), validator.error_log
        groups = preset.findall("groups/group")
        assert [g.get("name") for g in groups] == [f"x{c:02d}_y{r:02d}" for r in range(3)
                                                   for c in range(3)]
        cc = {g: ((int(g.get("loCC1")), int(g.get("hiCC1"))), (int(g.get("loCC2")),
                                                               int(g.get("hiCC2"))))
              for g in groups}
        import itertools

        reached = {}
        for x, y in itertools.product(range(128), range(128)):
            found = [g for g, ((lx, hx), (ly, hy)) in cc.items() if lx <= x <= hx and ly <= y <= hy]
            assert len(found) == 1, (x, y, found)
            reached.setdefault(found[0].get("name"), (x, y))
        assert len(reached) == 9
        assert reached["x00_y02"] == (0, 0) and reached["x02_y00"] == (85, 85)  # y 0 is south; bands 0-41, 42-84, 85-127
        for group in groups:
            samples = group.findall("sample")
            for key in range(128):
                playing = [s for s in samples
                           if int(s.get("loNote")) <= key <= int(s.get("hiNote"))]
                assert len(playing) == (1 if 36 <= key <= 67 else 0), (key, playing)
            for sample in samples:
                path = sample.get("path")
                assert exact_case(bundle, path), path
                pitch = int(sample.get("rootNote"))
                own = made["library"] / pad / f"p{pitch}" / f"{group.get('name')}.wav"
                assert (bundle / path).read_bytes() == own.read_bytes()
        # the knobs on the page follow CC 1 and CC 2 (UI positions count the labels too)
        controls = list(preset.find("ui/tab"))
        for cc_number in (1, 2):
            binding = preset.find(f"midi/cc[@number='{cc_number}']/binding")
            knob = controls[int(binding.get("position"))]
            assert knob.tag == "labeled-knob" and f"CC {cc_number}" in knob.get("label")
    assert export(made["space"], "--format", "decent", "--out", tmp_path / "bad", "--cc-x", 0) == 2


def test_bitwig_multisample_validates_and_plays_each_cell_by_one_select_value(made, tmp_path):
    """Issue 31, item 7: one .multisample per pad, a zip whose entries are all stored (players
    stream from it), multisample.xml first and valid by the format's schema, every sample an
    entry holding the pad's own WAV; every (select value, key) plays at most one sample, and
    every cell and pitch is reached."""
    import zipfile

    from lxml import etree

    out = tmp_path / "multisample"
    assert export(made["library"], "--format", "multisample", "--out", out) == 0
    validator = schema("multisample.xsd")
    for pad in ("bass_guitar_keyboard_organ", "trumpet_guitar_keyboard_organ"):
        with zipfile.ZipFile(out / f"{pad}.multisample") as archive:
            entries = archive.infolist()
            assert entries[0].filename == "multisample.xml"
            assert all(e.compress_type == zipfile.ZIP_STORED for e in entries)
            xml = etree.fromstring(archive.read("multisample.xml"))
            assert validator.validate(xml), validator.error_log
            samples = xml.findall("sample")
            assert len(samples) == 18 and len(entries) == 19
            for sample in samples:
                own = made["library"] / pad / sample.get("file")
                assert archive.read(sample.get("file")) == own.read_bytes()
        zones = [(s.get("file"), (int(s.find("select").get("low")), int(s.find("select").get("high"))),
                  (int(s.find("key").get("low")), int(s.find("key").get("high")))) for s in samples]
        hits = one_each(zones, {"select": lambda z: z[1], "key": lambda z: z[2]})
        assert sorted(z[0] for z in hits) == sorted(z[0] for z in zones)  # each reached
        first = next(z for z in zones if z[0] == "p48/x00_y00.wav")
        assert first[1][0] == 0 and first[2] == (36, 51)  # select 0 plays the north-west cell


def test_a_multisample_of_more_cells_than_select_values_is_refused(made, tmp_path, capsys):
    from dataclasses import replace

    from pipeline import SoundspaceError
    from pipeline.export import multisample
    from pipeline.finished import read

    many = replace(read(made["space"]), resolution=12)  # 144 cells
    with pytest.raises(SoundspaceError, match="144 cells per pad, more than the 128"):
        multisample.check(many)


def test_names_and_labels_xml_cannot_hold_are_made_safe(tmp_path):
    """Hyphen runs (`--` ends an XML comment) and control characters (XML has no escape for
    them) in a space's name and labels: the presets and multisample.xml still parse and pass
    their schemas."""
    from lxml import etree
    import zipfile

    data = dataset(tmp_path / "d", length=0.05, resolution=2, name="a---b")
    config = json.loads((data / "space.json").read_text())
    config["sounds"]["NW"]["label"] = "Bass--->Tone & <Co> \u00e9\u0001"
    (data / "space.json").write_text(json.dumps(config))
    space = generate_space(data, workflow(tmp_path), progress=False, log=lambda _: None,
                           pictures=False).space_dir
    assert export(space, "--format", "decent", "--out", tmp_path / "ds", "--loop") == 0
    preset = etree.parse(str(tmp_path / "ds" / "a---b.dsbundle" / "a---b.dspreset"))
    assert schema("DecentSampler.xsd").validate(preset)
    assert "Bass->Tone & <Co> \u00e9" in preset.find("ui/tab/label[2]").get("text")
    assert export(space, "--format", "multisample", "--out", tmp_path / "ms") == 0
    with zipfile.ZipFile(tmp_path / "ms" / "a---b.multisample") as archive:
        assert schema("multisample.xsd").validate(etree.fromstring(archive.read("multisample.xml")))


def test_a_silent_or_near_silent_zone_is_not_looped():
    from pipeline.export.zones import Zone

    silent = Zone(0, 127, 60, None, b"", np.zeros(1600, np.int16))
    blip = Zone(0, 127, 60, None, b"", np.r_[np.full(3, 9000), np.zeros(1597)].astype(np.int16))
    held = Zone(0, 127, 60, None, b"", np.full(1600, 9000, np.int16))
    assert silent.loop((0.5, 0.6)) is None and blip.loop((0.2, 0.41)) is None
    assert held.loop((0.2, 0.41)) == (320, 655)  # 20 % to 41 % of 1600 frames, its last one 655
