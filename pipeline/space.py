"""Grid geometry: where the cells of a sound space lie and how much of each input sound they hold.

A line of R cells runs from LEFT (x = 0) to RIGHT (x = 1). A square of R x R cells has its
corners at NW (0, 0), NE (1, 0), SW (0, 1) and SE (1, 1): x grows to the east, y to the south,
so cell (xi, yi) is column xi and row yi counted from the north-west corner, and
x = xi / (R - 1), y = yi / (R - 1).

Weightings:
- `bilinear` (default): NW (1-x)(1-y), NE x(1-y), SW (1-x)y, SE xy; on a line 1-x and x.
- `radial`, Open NSynth Super's: w_k = max(1 - distance to corner k, 0), normalised to sum 1.
  Near an edge only two sounds mix, and on a 9 x 9 grid 4 cells repeat a neighbour's weights.

A cell's embedding is the weighted sum of the inputs' embeddings. Cells with the same weights
(to 9 decimals, far below any audible difference) are decoded once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LINE = ("LEFT", "RIGHT")
SQUARE = ("NW", "NE", "SW", "SE")
CORNERS = {
    "LEFT": (0.0, 0.0),
    "RIGHT": (1.0, 0.0),
    "NW": (0.0, 0.0),
    "NE": (1.0, 0.0),
    "SW": (0.0, 1.0),
    "SE": (1.0, 1.0),
}
WEIGHTINGS = ("bilinear", "radial")
CELL_NAME = re.compile(r"x[0-9]{2,3}_y[0-9]{2,3}")  # Cell.name: column and row, from NW or LEFT
# A library's decode (pipeline/library.py): pitch and a hash of its mix. Decodes are stored and
# made exactly as a space's cells are, so the shard runner takes either name.
DECODE_NAME = re.compile(r"d([0-9]{3})?-[0-9a-f]{16}")
WORK_NAME = re.compile(f"{CELL_NAME.pattern}|{DECODE_NAME.pattern}")


@dataclass(frozen=True)
class Cell:
    xi: int
    yi: int
    x: float
    y: float
    weights: tuple  # one per input sound, in the order of `labels`

    @property
    def name(self) -> str:
        return f"x{self.xi:02d}_y{self.yi:02d}"


def weights_at(x: float, y: float, labels: tuple, weighting: str) -> np.ndarray:
    if weighting == "bilinear":
        if labels == LINE:
            return np.array([1 - x, x])
        return np.array([(1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y])
    if weighting == "radial":
        distances = np.array([np.hypot(x - CORNERS[k][0], y - CORNERS[k][1]) for k in labels])
        raw = np.maximum(1 - distances, 0)
        return raw / raw.sum()
    raise ValueError(f"unknown weighting {weighting!r}; use one of {WEIGHTINGS}")


def cells(labels: tuple, resolution: int, weighting: str = "bilinear") -> list[Cell]:
    """Every cell of the space, row by row from the north-west (or left) end."""
    steps = [i / (resolution - 1) for i in range(resolution)]
    rows = [0] if labels == LINE else range(resolution)
    return [
        Cell(
            xi,
            yi,
            steps[xi],
            steps[yi] if labels != LINE else 0.0,
            tuple(
                float(w)
                for w in weights_at(
                    steps[xi], steps[yi] if labels != LINE else 0.0, labels, weighting
                )
            ),
        )
        for yi in rows
        for xi in range(resolution)
    ]


def unique_weights(grid: list[Cell]) -> tuple[np.ndarray, list[int]]:
    """The distinct weight sets `[U, sounds]` and, per cell, the index of its set."""
    keys: dict[tuple, int] = {}
    index: list[int] = []
    for cell in grid:
        key = tuple(round(w, 9) for w in cell.weights)
        index.append(keys.setdefault(key, len(keys)))
    return np.array(list(keys), dtype=np.float64), index


def interpolate(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`[sounds, frames, D]` embeddings and `[cells, sounds]` weights -> `[cells, frames, D]`."""
    return np.einsum("cs,sfd->cfd", weights, embeddings.astype(np.float64)).astype(np.float32)
