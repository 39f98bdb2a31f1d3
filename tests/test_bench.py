"""`soundspace bench` runs its workers and prints its figures (timing goals are not tested).

Its figures are checked against oracles outside the bench: the test's own clock (the timed
steps and products happened while the command ran) and memory sizes (the full-size network's
weights, which the worker holds, and the machine's RAM, which no process's peak exceeds)."""
import time
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.nsynth.model import Autoencoder, ModelConfig


def _full_size_weights_mb() -> float:
    with torch.device("meta"):  # shapes only, nothing allocated
        net = Autoencoder(ModelConfig())
    return sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20


def _ram_mb() -> float:
    line = next(line for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:"))
    return int(line.split()[1]) / 1024


@pytest.mark.full
@pytest.mark.timeout(900)  # a loaded 2-core machine takes minutes for 1,024 full-size steps
def test_bench_prints_step_time_bare_products_and_memory(capsys):
    start = time.perf_counter()
    assert main(["bench", "--batches", "2", "--math", "numpy", "--frames", "1", "--no-encode"]) == 0
    wall_ms = (time.perf_counter() - start) * 1e3
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("numpy"))
    math, batch, step_ms, bare_ms, ratio, per_second, peak_mb, magenta = row
    step_ms, bare_ms, peak_mb = float(step_ms), float(bare_ms), float(peak_mb)
    assert batch == "2" and step_ms > 0 and bare_ms > 0
    # ms per decoding step, not per frame: the timed frame's 512 steps and (at least) one run of
    # the bare products fit in the time the whole command took, warm-up and start-up included.
    assert 512 * step_ms + bare_ms < wall_ms, (step_ms, bare_ms, wall_ms)
    # Peak memory in MB: the worker holds the full-size network, and no process outgrows RAM.
    weights_mb = _full_size_weights_mb()
    assert 200 < weights_mb < peak_mb < _ram_mb(), (weights_mb, peak_mb)
    assert "goals:" in out


def test_the_snapshot_bench_prices_a_snapshot_of_two_4_s_sounds():
    """Issue 30: a 4 s sound is 125 frames of 512; its largest snapshot holds 124 of them, a
    byte per sample, plus one line of JSON; the resume replays the demo model's reach (250
    samples: one frame)."""
    from pipeline import bench

    r = bench._in_worker(["snapshot", "demo", "2", "numpy", "cpu"])
    assert 2 * 124 * 512 < r["snapshot_bytes"] < 2 * 124 * 512 + 4096
    assert r["reach_frames"] == 1 and r["resume_s"] >= r["replay_frame_s"] > 0
    assert 0 < r["overhead_percent"] == pytest.approx(100 * r["write_ms"] / 1e3 / 60)
