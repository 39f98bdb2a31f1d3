"""The bundled datasets are exactly what scripts/make-datasets renders."""
import json
import os
import shutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from pipeline.config import load_space

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"dataset": 4.0, "dataset-test": 1.0}

needs_fluidsynth = pytest.mark.skipif(
    not shutil.which("fluidsynth") and not os.environ.get("SOUNDSPACE_REQUIRE_FLUIDSYNTH"),
    reason="FluidSynth is not installed (scripts/install-system-deps)")


@needs_fluidsynth
def test_the_committed_datasets_match_a_fresh_render():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make-datasets"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("folder", DATASETS)
def test_each_dataset_defines_a_square_space_of_its_sounds(folder):
    base = ROOT / "models" / "n-synth" / folder
    space = json.loads((base / "space.json").read_text())
    assert sorted(space["sounds"]) == ["NE", "NW", "SE", "SW"]
    for sound in space["sounds"].values():
        info = soundfile.info(base / sound["file"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == DATASETS[folder] * 16000
        assert sound["label"]
    assert (base / "README.md").is_file()
    validated, _ = load_space(base)  # the pipeline's own schema accepts it
    assert validated.model == ("test" if folder == "dataset-test" else "real")


def test_the_test_library_is_two_sounds_per_corner_at_three_pitches():
    from pipeline.config import LibraryConfig
    from pipeline.library import plan_library

    base = ROOT / "models" / "n-synth" / "library-test"
    library, folder = load_space(base)
    assert isinstance(library, LibraryConfig) and library.model == "test"
    assert [len(library.sounds[c]) for c in ("NW", "NE", "SW", "SE")] == [2, 2, 2, 2]
    assert library.pitches == [48, 55, 60] and library.resolution == 3 and library.length == 1.0
    plan = plan_library(library, folder)
    assert len(plan.pads) == 16 and not any(i.semitones for i in plan.inputs.values())
    for item in plan.inputs.values():
        info = soundfile.info(base / item.file)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
    # The four instruments of the test space, at its note, are the same files.
    for name in ("bass", "guitar", "keyboard", "organ"):
        assert (base / f"{name}_48.wav").read_bytes() == (ROOT / "models/n-synth/dataset-test" / f"{name}.wav").read_bytes()


SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


@needs_fluidsynth
def test_soundspace_inputs_renders_the_test_librarys_notes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                             str(SOUNDFONT), "--program", "56", "--pitches", "48", "55", "60",
                             "--length", "1", "--name", "trumpet", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for pitch in (48, 55, 60):
        made = tmp_path / f"trumpet_{pitch}.wav"
        assert made.read_bytes() == (ROOT / "models/n-synth/library-test" / made.name).read_bytes()


@needs_fluidsynth
def test_one_inputs_call_renders_several_instruments_each_under_its_name(tmp_path):
    """Issue 31, item 3: programs by number or by the name --list prints (any case), each named
    by its preset unless --name says otherwise; each instrument's notes are what rendering it
    alone gives (the test library's trumpet is program 56)."""
    from pipeline.soundfont import presets

    names = presets(SOUNDFONT)
    out = tmp_path / "four"
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                             str(SOUNDFONT), "--program", "40", "12", names[(0, 71)].upper(),
                             "56", "--pitches", "48", "55", "60", "--length", "1", "--out",
                             str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = [re.sub(r"[^a-z0-9.-]+", "-", names[(0, p)].lower()).strip("-.")
                for p in (40, 12, 71, 56)]
    assert sorted(f.name for f in out.iterdir()) == sorted(
        f"{n}_{p}.wav" for n in expected for p in (48, 55, 60))
    assert "wrote 12 note(s) of 4 instrument(s)" in result.stdout
    for pitch in (48, 55, 60):
        trumpet = ROOT / "models/n-synth/library-test" / f"trumpet_{pitch}.wav"
        assert (out / f"{expected[3]}_{pitch}.wav").read_bytes() == trumpet.read_bytes()
    named = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                            str(SOUNDFONT), "--program", "56", "40", "--name", "tp", "vn",
                            "--pitches", "48", "--length", "0.5", "--out", str(tmp_path / "two")],
                           cwd=ROOT, capture_output=True, text=True)
    assert named.returncode == 0, named.stderr
    assert sorted(f.name for f in (tmp_path / "two").iterdir()) == ["tp_48.wav", "vn_48.wav"]


@needs_fluidsynth
def test_the_preset_table_agrees_with_fluidsynths_own_listing():
    """FluidSynth's shell lists a soundfont's presets as `BBB-PPP Name`: the reader of the
    preset table must find the same ones."""
    from pipeline.soundfont import presets

    listing = subprocess.run(["fluidsynth", "-n", "-a", "file", "-o", "audio.file.name=/dev/null",
                              str(SOUNDFONT)], input="inst 1\nquit\n", capture_output=True,
                             text=True, timeout=120).stdout
    theirs = {}
    for line in listing.splitlines():
        head, _, name = line.strip().partition(" ")
        if len(head) == 7 and head[3] == "-" and head.replace("-", "").isdigit():
            theirs[(int(head[:3]), int(head[4:]))] = name.strip()
    assert len(theirs) > 100
    assert presets(SOUNDFONT) == theirs
    # and `inputs --list` shows the user the same, percussion kits (bank 128) marked
    listed = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                             str(SOUNDFONT), "--list"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    ours = {}
    for line in listed.stdout.splitlines():
        numbers, _, name = line.strip().partition(" ")
        bank, program = map(int, numbers.split(":"))
        ours[(bank, program)] = name.strip().removesuffix(" (percussion)" if bank == 128 else "")
    assert ours == theirs and any(bank == 128 for bank, _ in ours)


@pytest.mark.parametrize("args, needle", [
    (["--program", "33", "--bank", "9"], "has no preset at bank 9 program 33"),
    (["--program", "128"], "--program takes a whole number from 0 to 127"),
    (["--program", "33", "--pitches", "48", "48"], "names a pitch twice"),
    (["--program", "no such preset"], "has no preset named 'no such preset' in bank 0"),
    (["--program", "piano"], "presets with that in their name: "),
    (["--program", "33", "34"], "--name gives 1 name(s) for 2 --program(s)"),
])
def test_inputs_refuses_what_it_cannot_render(tmp_path, args, needle):
    argv = ["inputs", "--soundfont", str(SOUNDFONT), "--pitches", "48", "--name", "x",
            "--out", str(tmp_path / "out"), *args]
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_inputs_refuses_a_file_that_is_not_a_soundfont(tmp_path):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                             str(fake), "--program", "0", "--pitches", "60", "--name", "x",
                             "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "is not a SoundFont 2 file" in result.stderr


# --- issue 34, item 6: percussion, and a preset table that does not fit its file ---------------

def above(audio, hz: float) -> float:
    """The share of the sound's energy above `hz`."""
    import numpy as np

    power = np.abs(np.fft.rfft(audio)) ** 2
    return float(power[np.fft.rfftfreq(len(audio), 1 / 16000) > hz].sum() / power.sum())


@needs_fluidsynth
def test_a_percussion_kit_in_bank_128_is_rendered(tmp_path):
    """FluidSynth lists FluidR3's drum kits at bank 128, but `--bank 128` was refused, and bank 128
    sent as a bank select played the melodic preset of the same number (a piano for kit 0). In
    every General MIDI kit note 42 is a closed hi-hat: most of its energy lies above 3 kHz, where
    the piano's same note has almost none."""
    from pipeline.soundfont import presets

    assert presets(SOUNDFONT)[(128, 0)] == "Standard"
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                             str(SOUNDFONT), "--bank", "128", "--program", "0", "--pitches", "42",
                             "--length", "0.5", "--name", "kit", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    hihat, _ = soundfile.read(tmp_path / "kit_42.wav")
    assert above(hihat, 3000) > 0.5
    from pipeline.soundfont import render_note

    assert above(render_note(SOUNDFONT, 0, 0, 42, 0.5), 3000) < 0.05  # the piano


def soundfont_with(table: bytes, declared: int, after: bytes = b"") -> bytes:
    """A SoundFont 2 file whose preset table (phdr) holds `table` and declares `declared`
    bytes; `after` follows it inside the pdta list (another chunk, as in a real file)."""
    import struct

    phdr = b"phdr" + struct.pack("<I", declared) + table
    pdta = b"LIST" + struct.pack("<I", 4 + len(phdr) + len(after)) + b"pdta" + phdr + after
    return b"RIFF" + struct.pack("<I", 4 + len(pdta)) + b"sfbk" + pdta


def preset_record(name: str, program: int, bank: int) -> bytes:
    import struct

    return struct.pack("<20sHHHIII", name.encode(), program, bank, 0, 0, 0, 0)


TWO = preset_record("Lead", 5, 0) + preset_record("EOP", 0, 0)
PBAG = b"pbag" + (8).to_bytes(4, "little") + bytes(8)


def test_a_preset_table_that_fits_its_file_is_read(tmp_path):
    from pipeline.soundfont import presets

    (tmp_path / "ok.sf2").write_bytes(soundfont_with(TWO, len(TWO), PBAG))
    assert presets(tmp_path / "ok.sf2") == {(0, 5): "Lead"}


PMOD = b"pmod" + (30).to_bytes(4, "little") + bytes(30)


@pytest.mark.parametrize("declared,after,why", [
    (3 * 38, PBAG + PMOD, "says it is 114 bytes, which ends it where no pbag chunk starts"),
    (3 * 38, PBAG, "says it is 114 bytes, more than the file holds after it"),
    (2 * 38 - 10, b"", "is 66 bytes, not 38-byte presets and the end record"),
    (38, b"", "is 38 bytes, not 38-byte presets and the end record"),
], ids=["into-the-next-chunk", "beyond-the-file", "a-preset-cut-short", "no-preset"])
def test_a_preset_table_that_lies_about_its_size_is_reported_damaged(tmp_path, declared, after,
                                                                       why):
    """A table declaring more bytes than follow it was read on into the next chunk (its bytes
    taken for presets), and one declaring fewer cut a preset in two."""
    from pipeline import SoundspaceError
    from pipeline.soundfont import presets

    path = tmp_path / "lies.sf2"
    path.write_bytes(soundfont_with(TWO[:declared] if declared < len(TWO) else TWO, declared,
                                    after))
    with pytest.raises(SoundspaceError) as refused:
        presets(path)
    assert str(refused.value) == (f"{path}: its preset table (phdr chunk) {why}: a damaged or "
                                  "truncated SoundFont 2 file; get the soundfont again")


def test_a_preset_name_is_one_preset_or_the_numbers_to_choose_from(tmp_path):
    """Two presets may share a name in a bank: the name alone is refused with their numbers;
    a name that is all digits is a program number."""
    from pipeline import SoundspaceError
    from pipeline.soundfont import choose

    table = (preset_record("Pad", 3, 0) + preset_record("Pad", 7, 0)
             + preset_record("Lead", 5, 0) + preset_record("EOP", 0, 0))
    (tmp_path / "two.sf2").write_bytes(soundfont_with(table, len(table), PBAG))
    assert choose(tmp_path / "two.sf2", ["lead", "05"], 0) == [(5, "Lead"), (5, "Lead")]
    with pytest.raises(SoundspaceError, match=r"2 presets named 'pad' in bank 0 \(programs 3, 7\)"):
        choose(tmp_path / "two.sf2", ["pad"], 0)


@needs_fluidsynth
def test_a_listing_cut_short_by_its_reader_ends_quietly():
    """`soundspace inputs --list | head`: the reader goes away (here before the listing is
    written); no error line, exit 0."""
    listing = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "inputs", "--soundfont",
                                str(SOUNDFONT), "--list"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    listing.stdout.close()
    assert listing.wait(60) == 0 and listing.stderr.read() == ""
