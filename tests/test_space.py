"""Grid geometry and weightings."""
import numpy as np
import pytest

from pipeline import space


@pytest.mark.parametrize("weighting", space.WEIGHTINGS)
@pytest.mark.parametrize("labels", [space.LINE, space.SQUARE])
def test_corners_reproduce_the_inputs_exactly(labels, weighting):
    embeddings = np.random.default_rng(0).normal(size=(len(labels), 5, 16)).astype(np.float32)
    grid = space.cells(labels, 5, weighting)
    weights, index = space.unique_weights(grid)
    cells = space.interpolate(embeddings, weights)[index]
    last = 4
    ends = {"LEFT": (0, 0), "RIGHT": (last, 0), "NW": (0, 0), "NE": (last, 0), "SW": (0, last), "SE": (last, last)}
    for k, label in enumerate(labels):
        i = next(n for n, c in enumerate(grid) if (c.xi, c.yi) == ends[label])
        np.testing.assert_array_equal(cells[i], embeddings[k])


def test_bilinear_weights():
    """Literal values worked out by hand: NW (1-x)(1-y), NE x(1-y), SW (1-x)y, SE xy."""
    grid = space.cells(space.SQUARE, 4)
    assert len(grid) == 16 and [c.name for c in grid[:5]] == ["x00_y00", "x01_y00", "x02_y00", "x03_y00", "x00_y01"]
    by_name = {c.name: c for c in grid}
    expected = {"x00_y00": (1, 0, 0, 0), "x03_y00": (0, 1, 0, 0), "x00_y03": (0, 0, 1, 0),
                "x03_y03": (0, 0, 0, 1),
                "x01_y02": (2 / 9, 1 / 9, 4 / 9, 2 / 9),   # x = 1/3, y = 2/3
                "x02_y01": (2 / 9, 4 / 9, 1 / 9, 2 / 9),   # x = 2/3, y = 1/3
                "x01_y01": (4 / 9, 2 / 9, 2 / 9, 1 / 9)}
    for name, weights in expected.items():
        np.testing.assert_allclose(by_name[name].weights, weights, atol=1e-15)
    line = space.cells(space.LINE, 3)
    assert [c.weights for c in line] == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    assert [c.weights for c in space.cells(space.LINE, 5)][1] == (0.75, 0.25)


# Open NSynth Super's radial weights on its 9 x 9 grid, w_k = max(1 - distance to corner k, 0)
# normalised, worked out by hand (x = column / 8, y = row / 8), e.g. x01_y00: distances 0.125,
# 0.875, > 1, > 1 -> 0.875, 0.125, 0, 0; x02_y02: raw 1 - 0.25 sqrt 2 = 0.646447, twice
# 1 - sqrt 0.625 = 0.209431 and 0, over their sum 1.065309.
RADIAL_9 = {
    "x00_y00": (1.0, 0.0, 0.0, 0.0),
    "x01_y00": (0.875, 0.125, 0.0, 0.0),
    "x02_y02": (0.606816754701, 0.196591622649, 0.196591622649, 0.0),
    "x04_y01": (0.5, 0.5, 0.0, 0.0),
    "x03_y05": (0.240354046672, 0.102935757843, 0.416356148813, 0.240354046672),
    "x04_y04": (0.25, 0.25, 0.25, 0.25),
    "x00_y08": (0.0, 0.0, 1.0, 0.0),
}


def test_radial_matches_open_nsynth_super_with_its_four_duplicates():
    grid = space.cells(space.SQUARE, 9, "radial")
    by_name = {c.name: c for c in grid}
    for name, weights in RADIAL_9.items():
        np.testing.assert_allclose(by_name[name].weights, weights, atol=1e-11)
    weights, index = space.unique_weights(grid)
    assert len(weights) == 77
    repeated = sorted(c.name for n, c in enumerate(grid) if index.count(index[n]) > 1)
    assert repeated == sorted(["x04_y00", "x04_y01", "x00_y04", "x01_y04", "x07_y04", "x08_y04", "x04_y07", "x04_y08"])


def test_unknown_weighting():
    with pytest.raises(ValueError, match="unknown weighting"):
        space.cells(space.SQUARE, 3, "cubic")
