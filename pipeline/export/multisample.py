"""Bitwig (and PreSonus) multisample: every pad as a `.multisample`, a zip of `multisample.xml`
and its WAVs, as the format's reference (public repository bitwig/multisample) writes it: every
entry stored uncompressed (players stream samples from the zip), the XML first, each sample's
`file` the name of its entry.

The format has one dimension besides key and velocity to choose a zone by: `select`. The cells
take it in turn, row by row from the north-west (the order of the space's file names): cell i
of n answers the select values `zones.cc_ranges(n)[i]` of 0..127, so one controller (Bitwig's
Sampler modulates Select) walks the whole space and velocity stays the player's. A space of more
than 128 cells per pad cannot give each its own value and is refused (the SFZ and Decent Sampler
exports choose cells by two controllers). Keys as in the SFZ export (`zones`). Each row
is a `group`, which only sorts zones in an editor.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .. import SoundspaceError
from ..finished import Finished
from .zones import cc_ranges, cells, xml_text

XML = "multisample.xml"
MAX_CELLS = 128  # distinct select values


def check(source: Finished) -> None:
    cells = source.resolution * source.rows
    if cells > MAX_CELLS:
        raise SoundspaceError(
            f"{source.folder} has {cells:,} cells per pad, more than the {MAX_CELLS} a "
            "multisample's one select dimension can tell apart: use --format sfz or decent "
            "(two controllers), or a lower resolution"
        )


def write(
    source: Finished, out: Path, bar, extend: int = 12, loop: tuple | None = None
) -> list[str]:
    """Write `out/<pad>.multisample` for every pad; returns the files written."""
    check(source)
    bands = cc_ranges(source.resolution * source.rows)
    written = []
    for pad in source.pads:
        samples, sounds = [], {}
        for i, (_, _, _, zones) in enumerate(cells(source, pad, extend)):
            low, high = bands[i]
            row = i // source.resolution
            for zone in zones:
                sounds[zone.cell.file] = zone.data
                looped = '    <loop mode="off"/>'
                bounds = zone.loop(loop) if loop is not None else None
                if bounds is not None:  # `stop` is exclusive: one past the last frame
                    looped = f'    <loop mode="loop" start="{bounds[0]}" stop="{bounds[1] + 1}"/>'
                samples += [
                    f'  <sample file={quoteattr(zone.cell.file)} group="{row}">',
                    f'    <key root="{zone.pitch}" low="{zone.low}" high="{zone.high}" track="1"/>',
                    "    <velocity/>",
                    f'    <select low="{low}" high="{high}"/>',
                    looped,
                    "  </sample>",
                ]
                bar.update()
        corners = ", ".join(
            f"{label} {i.label}" for label, i in zip(source.labels, pad.corners, strict=True)
        )
        title = xml_text(f"{source.name} {pad.name}" if source.kind == "library" else source.name)
        xml = "\n".join(
            [
                '<?xml version="1.0" encoding="UTF-8"?>',
                f"<multisample name={quoteattr(title)}>",
                "  <generator>soundspace</generator>",
                "  <category>Sound space</category>",
                "  <creator>soundspace</creator>",
                f"  <description>{escape(xml_text(_description(source, corners)))}</description>",
                "  <keywords><keyword>soundspace</keyword><keyword>NSynth</keyword></keywords>",
                *(
                    f'  <group name="row y{row:02d}" color="{_colour(row, source.rows)}"/>'
                    for row in range(source.rows)
                ),
                *samples,
                "</multisample>",
                "",
            ]
        )
        name = f"{pad.name}.multisample"
        with zipfile.ZipFile(out / name, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(XML, xml)
            for file, data in sounds.items():
                archive.writestr(file, data)
        written.append(name)
    return written


def _description(source: Finished, corners: str) -> str:
    return (
        f"A soundspace {source.kind}: corners {corners}; model {source.model}, seed "
        f"{source.seed}. Select walks the cells row by row from the north-west "
        f"({source.resolution} per row); keys play the nearest generated pitch."
    )


def _colour(row: int, rows: int) -> str:
    """A row's colour in an editor: from the page's pink (north) towards blue (south)."""
    t = row / max(rows - 1, 1)
    red, green, blue = round(255 - 200 * t), round(79 + 40 * t), round(139 + 116 * t)
    return f"{red:02x}{green:02x}{blue:02x}"
