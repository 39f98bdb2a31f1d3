"""SFZ: every pad as a sampler instrument, played across the keyboard, the cell chosen by two
MIDI controllers.

One region per (cell, pitch). Keys: a region answers the keys nearest its pitch (a key halfway
between two pitches takes the lower one, as Open NSynth Super does) and plays its sound
resampled by the key's distance from `pitch_keycenter`; the lowest and highest pitches also
cover `extend` semitones beyond them. Cells: controller `cc_x` splits 0..127 evenly over the
columns (0 = west), `cc_y` over the rows (0 = south, 127 = north, as on an XY pad where up is
higher). Before any controller moves, the north-west cell plays (x starts at 0 and `set_cc`
starts y at 127). A line has only `cc_x`.
"""

from __future__ import annotations

from pathlib import Path

from ..audio import audible_samples
from ..finished import Finished, read_cell
from ..pads import place

SAMPLES = "samples"


def key_ranges(pitches, extend: int) -> list[tuple[int, int, int]]:
    """(lokey, hikey, pitch) per pitch, ascending, covering lowest - extend .. highest + extend."""
    pitches = sorted(pitches)
    ranges: list[tuple[int, int, int]] = []
    for i, pitch in enumerate(pitches):
        lo = max(0, pitch - extend) if i == 0 else ranges[-1][1] + 1
        hi = min(127, pitch + extend) if i == len(pitches) - 1 else (pitch + pitches[i + 1]) // 2
        ranges.append((lo, hi, pitch))
    return ranges


def cc_ranges(count: int) -> list[tuple[int, int]]:
    """0..127 split into `count` bands as even as whole values allow, from the lowest."""
    return [(i * 128 // count, (i + 1) * 128 // count - 1) for i in range(count)]


def write(
    source: Finished,
    out: Path,
    bar,
    cc_x: int = 1,
    cc_y: int = 2,
    extend: int = 12,
    attack: float = 0.005,
    release: float = 0.15,
    loop: tuple | None = None,
) -> list[str]:
    """Write `out/<pad>.sfz` and its samples under `out/samples/<pad>/` for every pad; `loop` is
    (start, end) as fractions of each sound's audible part (`audio.audible_samples`: a loop in
    the silence after a short sound would hold a key silent), or None. Returns the files
    written."""
    written = []
    keys = key_ranges(source.pitches, extend)
    columns, rows = cc_ranges(source.resolution), cc_ranges(source.rows)
    for pad in source.pads:
        folder = f"{SAMPLES}/{pad.name}"
        corners = ", ".join(
            f"{label} {i.label} ({i.name})"
            for label, i in zip(source.labels, pad.corners, strict=True)
        )
        lines = [
            f"// {pad.name}.sfz: a soundspace {source.kind} played as a sampler instrument",
            f"// made by soundspace from {source.kind} {source.name}"
            + (f", pad {pad.name}" if source.kind == "library" else ""),
            f"// corners: {corners}",
            f"// model {source.model}, seed {source.seed}, {source.resolution} points per axis, "
            f"{source.weighting} weights, pitches {' '.join(map(str, source.pitches))}",
            f"// x: CC {cc_x} (0 = west, 127 = east)"
            + ("" if source.line else f"; y: CC {cc_y} (0 = south, 127 = north)")
            + f"; keys {keys[0][0]}-{keys[-1][1]} play the nearest generated pitch, resampled",
            "",
            "<control>",
            f"default_path={folder}/",
            f"label_cc{cc_x}=Space x (west-east)",
        ]
        if not source.line:
            lines += [f"set_cc{cc_y}=127", f"label_cc{cc_y}=Space y (south-north)"]
        lines += ["", "<global>", f"ampeg_attack={attack:g}", f"ampeg_release={release:g}"]
        for row in range(source.rows):
            for column in range(source.resolution):
                name = f"x{column:02d}_y{row:02d}"
                lo_x, hi_x = columns[column]
                condition = f"locc{cc_x}={lo_x} hicc{cc_x}={hi_x}"
                if not source.line:
                    lo_y, hi_y = rows[source.rows - 1 - row]
                    condition += f" locc{cc_y}={lo_y} hicc{cc_y}={hi_y}"
                lines += ["", f"<group> // cell {name}", condition]
                for lo, hi, pitch in keys:
                    cell = pad.cells[(column, row, pitch)]
                    samples = read_cell(cell)[1]  # checked before it is linked
                    place(cell.path, out / folder / cell.file)
                    written.append(f"{folder}/{cell.file}")
                    region = (
                        f"<region> sample={cell.file} pitch_keycenter={pitch} lokey={lo} hikey={hi}"
                    )
                    if loop is not None:
                        audible = max(audible_samples(samples), 2)
                        start, end = (round(f * audible) for f in loop)
                        region += (
                            f" loop_mode=loop_continuous loop_start={start} loop_end={end - 1}"
                        )
                    lines.append(region)
                    bar.update()
        (out / f"{pad.name}.sfz").write_text("\n".join(lines) + "\n")
        written.append(f"{pad.name}.sfz")
    return written
