"""`soundspace bench`: speed and memory of the engine on the full-size network (random weights).

Each measurement runs in a fresh worker process, so its peak memory (max RSS) is its own and two
libraries never compute at once. For each batch size a worker builds the full-size model, then
times decoding steps exactly as `generate` runs them (softmax and sampling included), a frame
(`hop` steps, the period of the block schedule) at a time, and reports the median over frames.
In the same process and with the same math library it times the bare matrix products of one
plain step (per layer the 3-tap product `[B, 3C] x [3C, 2C]` and the residual+skip product, plus
the small start and output products): the floor a step cannot go below without skipping work.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

# Magenta 2.1.4's generator on this project's 2-core machine (docs: prior art), ms per step.
MAGENTA_STEP_MS = {1: 24.0, 16: 44.0, 81: 98.0}
GOALS = (
    "B = 81 step <= 1.25 x its bare matrix products; B = 1 step <= 12 ms; "
    "peak memory at B = 81 < 2 GB; four 4 s sounds encoded in < 1.5 s; "
    "snapshots at most 2 % of the decode"
)


def _model(device: str):
    from .nsynth import NSynth
    from .nsynth.random_weights import make_weights

    return NSynth.from_weights(make_weights(0), device=device)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bare_products_ms(decoder, batch: int, repeats: int = 15) -> float:
    """Median time of one plain step's matrix products, with the model's own weights."""
    m, c = decoder.m, decoder.config
    taps = [m.concat([layer.past[0], layer.current], 0) for layer in decoder.layers]
    operands = [
        (m.zeros((batch, 3)), decoder.start_w[0]),
        (m.zeros((batch, c.width)), decoder.skip_start_w),
    ]
    for layer, w in zip(decoder.layers, taps, strict=True):
        operands += [
            (m.zeros((batch, 3 * c.width)), w),
            (m.zeros((batch, c.width)), layer.res_skip),
        ]
    operands += [
        (m.zeros((batch, c.skip_width)), decoder.out1_w),
        (m.zeros((batch, c.skip_width)), decoder.logits_w),
    ]
    outs = [m.zeros((batch, w.shape[1])) for _, w in operands]
    times = []
    for _ in range(repeats):
        _sync(m)
        start = time.perf_counter()
        for (a, w), out in zip(operands, outs, strict=True):
            m.matmul(a, w, out=out)
        _sync(m)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _sync(math) -> None:
    if math.name == "torch" and math.device.type == "cuda":
        import torch

        torch.cuda.synchronize(math.device)


def _decode_worker(batch: int, frames: int, math_name: str, device: str) -> dict:
    import torch

    from .nsynth.generate import IncrementalDecoder, math_for, sample_steps

    model = _model(device)
    math = math_for(device, math_name)
    cfg = model.config
    with torch.no_grad():
        decoder = IncrementalDecoder(model.net.magenta_state(), cfg, batch, math)
        rng = np.random.default_rng(0)
        bins = math.bins((batch, (frames + 1) * cfg.hop))
        sample = math.zeros(batch)
        per_frame = []
        for f in range(frames + 1):  # frame 0 warms up
            decoder.set_frame(math.array(rng.normal(0, 0.1, (batch, cfg.bottleneck))))
            uniform = math.array(rng.random((cfg.hop, batch)))
            _sync(math)
            start = time.perf_counter()
            sample = sample_steps(decoder, f * cfg.hop, sample, uniform, bins)
            _sync(math)
            per_frame.append((time.perf_counter() - start) / cfg.hop * 1e3)
        bare = _bare_products_ms(decoder, batch)
    return {
        "batch": batch,
        "math": math.name,
        "step_ms": float(np.median(per_frame[1:])),
        "bare_ms": bare,
        "peak_mb": _peak_mb(),
    }


SNAPSHOT_SOUND_SECONDS = 4.0  # the length the snapshot of a sound is priced at
SNAPSHOT_INTERVAL = 60.0  # the workflow's default snapshot_seconds


def _snapshot_worker(size: str, batch: int, math_name: str, device: str) -> dict:
    """What a snapshot costs for `batch` 4 s sounds of the `size` ("demo" or "full") model: its
    bytes and write time (atomic, synced), against the decoding time between two snapshots at the
    default interval; and what a resume costs before its first new sample: reading and checking
    the snapshot, advancing the random streams, replaying the decoder's reach (timed for one
    frame, times the frames of the reach)."""
    import tempfile
    from pathlib import Path

    import torch

    from . import snapshots
    from .nsynth import NSynth
    from .nsynth.generate import IncrementalDecoder, math_for, replay
    from .nsynth.model import DEMO_CONFIG, ModelConfig
    from .nsynth.random_weights import make_weights

    config = DEMO_CONFIG if size == "demo" else ModelConfig()
    model = NSynth.from_weights(
        make_weights(0, config), device=device, stages=config.stages, hop=config.hop
    )
    math, hop = math_for(device, math_name), config.hop
    frames = int(SNAPSHOT_SOUND_SECONDS * 16000) // hop
    done = frames - 1  # the largest snapshot of the sound: all but its last frame
    drawn = np.random.default_rng(0).integers(0, 256, (batch, done * hop), dtype=np.uint8)
    reach = -(-config.decoder_reach() // hop)
    encoding = np.random.default_rng(1).normal(0, 0.1, (batch, frames, config.bottleneck))
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        store, key = Path(tmp), "0" * 64
        writes = []
        for _ in range(5):
            start = time.perf_counter()
            snapshots.save(store, key, done, drawn)
            writes.append(time.perf_counter() - start)
        size_bytes = snapshots.path(store, key).stat().st_size
        start = time.perf_counter()
        loaded = snapshots.load(store, key, batch, frames, hop)
        load_s = time.perf_counter() - start
        assert loaded is not None
        start = time.perf_counter()
        for b in range(batch):
            np.random.default_rng([0, b]).random(done * hop)
        streams_s = time.perf_counter() - start
        decoder = IncrementalDecoder(model.net.magenta_state(), config, batch, math)
        bins = math.bins_of(drawn)
        replay(decoder, encoding, bins, 1)  # warm-up: a first frame
        _sync(math)
        start = time.perf_counter()
        replay(decoder, encoding, bins, 1)
        _sync(math)
        frame_s = time.perf_counter() - start
    write_s = float(np.median(writes))
    return {
        "model": size,
        "batch": batch,
        "math": math.name,
        "snapshot_bytes": size_bytes,
        "write_ms": write_s * 1e3,
        "overhead_percent": 100 * write_s / SNAPSHOT_INTERVAL,
        "reach_frames": reach,
        "resume_s": load_s + streams_s + reach * frame_s,
        "replay_frame_s": frame_s,
    }


def _encode_worker(sounds: int, seconds: float, device: str) -> dict:
    model = _model(device)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = np.stack(
        [0.5 * np.sin(2 * np.pi * 110 * (k + 1) * t) * np.exp(-t) for k in range(sounds)]
    )
    model.encode(audio[:, :16000])  # warm up the convolution kernels
    times = []
    for _ in range(2):
        start = time.perf_counter()
        model.encode(audio)
        times.append(time.perf_counter() - start)
    return {
        "sounds": sounds,
        "seconds": seconds,
        "encode_s": float(min(times)),
        "peak_mb": _peak_mb(),
    }


def _in_worker(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.bench", "--worker", *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(
    batches=(1, 16, 81),
    maths=("numpy", "torch"),
    frames: int = 2,
    device: str = "cpu",
    encode: bool = True,
    echo=print,
    snapshots: bool = True,
) -> dict:
    """Run every measurement and print a table; return the figures."""
    echo(
        f"soundspace bench: full-size NSynth decoder (random weights), device {device}, "
        f"{frames} timed frame(s) of 512 steps per row after one warm-up frame"
    )
    echo(
        f"{'math':<6} {'batch':>5} {'ms/step':>8} {'bare mm':>8} {'ratio':>6} "
        f"{'samples/s':>10} {'peak MB':>8} {'Magenta ms/step':>16}"
    )
    rows = []
    for math in maths:
        for batch in batches:
            r = _in_worker(["decode", str(batch), str(frames), math, device])
            rows.append(r)
            magenta = MAGENTA_STEP_MS.get(batch)
            echo(
                f"{math:<6} {batch:>5} {r['step_ms']:>8.2f} {r['bare_ms']:>8.2f} "
                f"{r['step_ms'] / r['bare_ms']:>6.2f} {batch * 1000 / r['step_ms']:>10.0f} "
                f"{r['peak_mb']:>8.0f} {magenta if magenta else '-':>16}"
            )
    result: dict[str, object] = {"decode": rows}
    if encode:
        enc = _in_worker(["encode", "4", "4.0", device])
        result["encode"] = enc
        echo(
            f"encode: four 4 s sounds in {enc['encode_s']:.2f} s "
            f"({4 * 4.0 / enc['encode_s']:.1f} s of audio per s), peak {enc['peak_mb']:.0f} MB"
        )
    if snapshots:
        echo(
            f"snapshots of {SNAPSHOT_SOUND_SECONDS:g} s sounds (all but the last frame drawn), "
            f"one per {SNAPSHOT_INTERVAL:g} s of decoding; resume = read and check it, advance "
            "the streams, replay the reach (one timed frame x its frames)"
        )
        echo(
            f"{'model':<6} {'math':<6} {'batch':>5} {'snapshot KB':>12} {'write ms':>9} "
            f"{'overhead %':>11} {'reach':>6} {'resume s':>9}"
        )
        shots = []
        for size in ("demo", "full"):
            for batch in batches:
                r = _in_worker(["snapshot", size, str(batch), maths[0], device])
                shots.append(r)
                echo(
                    f"{size:<6} {r['math']:<6} {batch:>5} {r['snapshot_bytes'] / 1e3:>12.0f} "
                    f"{r['write_ms']:>9.1f} {r['overhead_percent']:>11.3f} "
                    f"{r['reach_frames']:>6} {r['resume_s']:>9.2f}"
                )
        result["snapshots"] = shots
    echo(f"goals: {GOALS}")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs="+", required=True)
    args = parser.parse_args(argv)
    kind, *rest = args.worker
    if kind == "decode":
        batch, frames, math, device = rest
        print(json.dumps(_decode_worker(int(batch), int(frames), math, device)))
    elif kind == "snapshot":
        size, batch, math, device = rest
        print(json.dumps(_snapshot_worker(size, int(batch), math, device)))
    else:
        sounds, seconds, device = rest
        print(json.dumps(_encode_worker(int(sounds), float(seconds), device)))


if __name__ == "__main__":
    main()
