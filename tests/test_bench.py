"""`soundspace bench` runs its workers and prints its figures (timing goals are not tested)."""
import pytest

from pipeline.cli import main


@pytest.mark.full
def test_bench_prints_step_time_bare_products_and_memory(capsys):
    assert main(["bench", "--batches", "2", "--math", "numpy", "--frames", "1", "--no-encode"]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("numpy"))
    math, batch, step_ms, bare_ms, ratio, per_second, peak_mb, magenta = row
    assert batch == "2" and float(step_ms) > 0 and float(bare_ms) > 0 and float(peak_mb) > 200
    assert abs(float(ratio) - float(step_ms) / float(bare_ms)) < 0.01
    assert "goals:" in out
