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
    grid = space.cells(space.SQUARE, 4)
    assert len(grid) == 16 and [c.name for c in grid[:5]] == ["x00_y00", "x01_y00", "x02_y00", "x03_y00", "x00_y01"]
    for c in grid:
        x, y = c.x, c.y
        np.testing.assert_allclose(c.weights, [(1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y], atol=1e-15)
        assert abs(sum(c.weights) - 1) < 1e-12
    line = space.cells(space.LINE, 3)
    assert [c.weights for c in line] == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]


def test_radial_matches_open_nsynth_super_with_its_four_duplicates():
    grid = space.cells(space.SQUARE, 9, "radial")
    for c in grid:
        raw = [max(1 - np.hypot(c.x - cx, c.y - cy), 0) for cx, cy in [(0, 0), (1, 0), (0, 1), (1, 1)]]
        np.testing.assert_allclose(c.weights, np.array(raw) / sum(raw), atol=1e-12)
    weights, index = space.unique_weights(grid)
    assert len(weights) == 77
    repeated = sorted(c.name for n, c in enumerate(grid) if index.count(index[n]) > 1)
    assert repeated == sorted(["x04_y00", "x04_y01", "x00_y04", "x01_y04", "x07_y04", "x08_y04", "x04_y07", "x04_y08"])
    centre = grid[4 * 9 + 4]
    np.testing.assert_allclose(centre.weights, [0.25] * 4)


def test_unknown_weighting():
    with pytest.raises(ValueError, match="unknown weighting"):
        space.cells(space.SQUARE, 3, "cubic")
