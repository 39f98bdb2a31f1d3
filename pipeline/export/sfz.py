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

from ..finished import Finished
from ..pads import place
from .zones import cells, key_ranges

SAMPLES = "samples"


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
    (start, end) as fractions of each sound's audible part (`zones`), or None. Returns the
    files written."""
    written = []
    keys = key_ranges(source.pitches, extend)
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
        for name, (lo_x, hi_x), y, zones in cells(source, pad, extend):
            condition = f"locc{cc_x}={lo_x} hicc{cc_x}={hi_x}"
            if y is not None:
                condition += f" locc{cc_y}={y[0]} hicc{cc_y}={y[1]}"
            lines += ["", f"<group> // cell {name}", condition]
            for zone in zones:
                place(zone.cell.path, out / folder / zone.cell.file)
                written.append(f"{folder}/{zone.cell.file}")
                region = (
                    f"<region> sample={zone.cell.file} pitch_keycenter={zone.pitch} "
                    f"lokey={zone.low} hikey={zone.high}"
                )
                looped = zone.loop(loop) if loop is not None else None
                if looped is not None:
                    region += (
                        f" loop_mode=loop_continuous loop_start={looped[0]} loop_end={looped[1]}"
                    )
                lines.append(region)
                bar.update()
        (out / f"{pad.name}.sfz").write_text("\n".join(lines) + "\n")
        written.append(f"{pad.name}.sfz")
    return written
