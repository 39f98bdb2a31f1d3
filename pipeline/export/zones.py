"""Where each cell sits in a sampler instrument, the same for every export that has zones (SFZ,
Decent Sampler, Bitwig multisample): keys, controller bands and loop points.

Keys: a pitch's zone answers the keys nearest it (a key halfway between two pitches takes the
lower one, as Open NSynth Super does), and the lowest and highest pitches also cover `extend`
semitones beyond them. Controllers: 0..127 split into as many even bands as there are columns
(x, from the west) or rows (y, from the south: an XY pad's up is higher). Loops: fractions of a
sound's audible part (`audio.audible_samples`), so that a loop never holds a key over the
silence after a short sound.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..audio import audible_samples
from ..finished import Cell, Finished, read_cell


def xml_text(text: str) -> str:
    """A name or label as XML may hold it in text, attributes and comments: no control
    characters (XML 1.0 has no escape for them) and no run of hyphens (`--` ends a comment)."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)
    return re.sub(r"-{2,}", "-", text)


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


MIN_LOOP = 16  # frames (1 ms): a shorter loop would buzz rather than sustain


@dataclass
class Zone:
    """One cell at one pitch: its keys, the cell and its WAV (checked by `read_cell`: its bytes
    and int16 samples)."""

    low: int
    high: int
    pitch: int
    cell: Cell
    data: bytes
    samples: np.ndarray

    def loop(self, fractions: tuple) -> tuple[int, int] | None:
        """The loop's first and last frame, `fractions` of the audible part; None where that
        is under MIN_LOOP (a silent or all but silent cell: the zone plays once)."""
        audible = audible_samples(self.samples)
        start, end = (round(f * audible) for f in fractions)
        return (start, end - 1) if end - start >= MIN_LOOP else None


def cells(source: Finished, pad, extend: int) -> Iterator[tuple[str, tuple, tuple | None, list]]:
    """Each cell of the pad, rows from the north and columns from the west, as (name, x band,
    y band or None for a line, its zones from the lowest pitch)."""
    keys = key_ranges(source.pitches, extend)
    columns, rows = cc_ranges(source.resolution), cc_ranges(source.rows)
    for row in range(source.rows):
        for column in range(source.resolution):
            zones = []
            for lo, hi, pitch in keys:
                cell = pad.cells[(column, row, pitch)]
                zones.append(Zone(lo, hi, pitch, cell, *read_cell(cell)))
            y = None if source.line else rows[source.rows - 1 - row]
            yield f"x{column:02d}_y{row:02d}", columns[column], y, zones
