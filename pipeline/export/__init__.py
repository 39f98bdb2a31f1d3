"""Exports: a finished space or library as something an instrument loads.

    soundspace export SPACE_OR_LIBRARY --format sfz|decent|multisample|onss --out DIR

`sfz` writes an SFZ instrument per pad with its samples (`sfz.py`), `decent` a Decent Sampler
bundle of presets (`decent.py`), `multisample` a Bitwig multisample per pad (`multisample.py`),
`onss` Open NSynth Super's pad files and settings (`onss.py`); all read the source through
`pipeline.finished`, which trusts nothing in it. The export is built in a temporary folder beside
DIR and renamed into place (`files.atomic_folder`), so DIR holds the previous export or the new one,
never half of one, and running the command again rebuilds it. DIR may be new, empty, or an earlier
export that holds nothing but what its `export.json` lists; any other folder (a note or a DAW
project added to an export included) is refused, since replacing it would delete what it holds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .. import SoundspaceError, warn
from ..files import atomic_folder, is_temp, parse_json
from ..finished import read
from . import decent, multisample, onss, sfz

FORMATS = ("sfz", "decent", "multisample", "onss")
MARKER = "export.json"
# Each format's options and their defaults; an option of the other format is refused.
OPTIONS: dict[str, dict[str, object]] = {
    "onss": {"length": onss.DEVICE_LENGTH, "data_directory": onss.DEVICE_DATA_DIRECTORY},
    "sfz": {"cc_x": 1, "cc_y": 2, "extend": 12, "attack": 0.005, "release": 0.15, "loop": None},
    "decent": {"cc_x": 1, "cc_y": 2, "extend": 12, "attack": 0.005, "release": 0.15, "loop": None},
    "multisample": {"extend": 12, "loop": None},
}


def export(
    source_dir, fmt: str, out, pitch: int | None = None, progress: bool = True, **given
) -> dict:
    """Export the space or library in `source_dir` as `fmt` into `out`; returns export.json."""
    from tqdm.auto import tqdm

    if fmt not in FORMATS:
        raise SoundspaceError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    given = {k: v for k, v in given.items() if v is not None}
    other = sorted(set(given) - set(OPTIONS[fmt]))
    if other:
        raise SoundspaceError(
            f"{', '.join('--' + o.replace('_', '-') for o in other)}: not an "
            f"option of --format {fmt}"
        )
    options = {**OPTIONS[fmt], **given}
    _check_options(fmt, options)
    source = read(source_dir, pitch)
    out = Path(out)
    _check_out(source.folder, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onss":
        onss.check(source, out.parent, options["length"])
    if fmt == "multisample":
        multisample.check(source)

    for leftover in out.parent.glob(f".{out.name}.*"):  # what a killed export left behind
        if is_temp(leftover) and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    with atomic_folder(out) as building:
        total = len(source.pads) * source.resolution * source.rows * len(source.pitches)
        with tqdm(total=total, unit="sound", desc=f"export {fmt}", disable=not progress) as bar:
            extra = {}
            if fmt == "onss":
                files, extra["device_loop"] = onss.write(source, building, bar, **options)
            else:
                writer = {"sfz": sfz, "decent": decent, "multisample": multisample}[fmt]
                files = writer.write(source, building, bar, **options)
        marker = {
            "format": fmt,
            "source": str(source.folder.resolve()),
            "kind": source.kind,
            "name": source.name,
            "labels": list(source.labels),
            "model": source.model,
            "seed": source.seed,
            "resolution": source.resolution,
            "pitches": list(source.pitches),
            "pads": [p.name for p in source.pads],
            "options": options,
            "files": files,
            **extra,
        }
        (building / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    if source.assumed_pitch and fmt != "onss":  # said once the export is made, not before a refusal
        field = '"pitch" (a MIDI note)' if source.kind == "space" else '"pitches"'
        warn(
            f"{source.folder} does not say which note its sounds are: they are mapped to MIDI "
            f"{source.pitches[0]} (C4); give the note with --pitch, or set {field} in its "
            "space.json and run generate again"
        )
    return marker


def _check_options(fmt: str, o: dict) -> None:
    if "length" in o and not 1 <= o["length"] <= 60 * 16000:
        raise SoundspaceError(
            f"--length {o['length']}: the device length in samples at "
            "16 kHz, from 1 to 960000 (the device's default is 60000)"
        )
    low = 1 if fmt == "decent" else 0  # Decent Sampler's CC ranges take controllers 1 to 127
    for name in ("cc_x", "cc_y"):
        if name in o and not low <= o[name] <= 127:
            raise SoundspaceError(
                f"--{name.replace('_', '-')} {o[name]}: a MIDI controller number from {low} "
                f"to 127{' for --format decent' if low else ''}"
            )
    if "cc_x" in o and o["cc_x"] == o["cc_y"]:
        raise SoundspaceError(f"--cc-x and --cc-y are both {o['cc_x']}: give two controllers")
    if "extend" in o and not 0 <= o["extend"] <= 127:
        raise SoundspaceError(
            f"--extend {o['extend']}: semitones beyond the outer pitches, 0 to 127"
        )
    for name in ("attack", "release"):
        if name in o and not 0 <= o[name] <= 10:
            raise SoundspaceError(f"--{name} {o[name]:g}: seconds, from 0 to 10")
    if o.get("loop") is not None and not 0 <= o["loop"][0] < o["loop"][1] <= 1:
        raise SoundspaceError(
            f"--loop-start {o['loop'][0]:g} --loop-end {o['loop'][1]:g}: "
            "fractions of the sound with 0 <= start < end <= 1"
        )


def _check_out(source: Path, out: Path) -> None:
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise SoundspaceError(
            f"--out {out} is inside the source {source}: choose a folder outside it"
        )
    if dst in src.parents:
        raise SoundspaceError(
            f"--out {out} holds the source {source}, which replacing it "
            "would delete: choose another folder"
        )
    if out.is_symlink():
        raise SoundspaceError(
            f"--out {out} is a symbolic link, which the export would replace with a folder: "
            f"give the folder it names ({os.path.realpath(out)}) or a new one"
        )
    if out.exists() and not out.is_dir():
        raise SoundspaceError(f"--out {out} is a file: choose a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    others = _not_exported(out)
    if others is None:
        raise SoundspaceError(
            f"--out {out} is a folder with other files in it and no readable "
            f"{MARKER}: choose a new or empty folder (an earlier export there "
            "is replaced)"
        )
    if others:
        shown = ", ".join(repr(name) for name in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise SoundspaceError(
            f"--out {out} holds an earlier export and files it did not write ({shown}{more}), "
            "which replacing it would delete: move them away or choose another folder"
        )


def _not_exported(out: Path) -> list[str] | None:
    """What in `out` the earlier export there did not write (its export.json lists its files;
    an empty folder counts too, since the export makes none), or None when `out` holds no
    readable export.json. Links are listed, never followed."""
    try:
        listed = parse_json((out / MARKER).read_text())["files"]
        if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
            return None
    except (OSError, ValueError, TypeError, KeyError):
        return None
    own, others = {MARKER, *listed}, []
    for folder, folders, names in os.walk(out):
        here = Path(folder).relative_to(out)
        for name in sorted(names) + sorted(f for f in folders if (Path(folder) / f).is_symlink()):
            if (here / name).as_posix() not in own:
                others.append((here / name).as_posix())
        if not names and not folders and here != Path("."):
            others.append(here.as_posix() + "/")
    return sorted(others)
