"""Incremental generation: the decoder run one sample at a time for a whole batch of sounds.

This is the hot path (a 4 s sound is 64,000 steps of a 30-layer network), so the work per step
is cut to what the step must do:

* Each layer keeps the history it needs (its inputs at t-d and t-2d) in a ring buffer
  `Q[t % d, sound, half]`; the half that `x[t]` goes into alternates every d steps, so writing a
  step never moves older entries, and the two halves of a row always hold `x[t-2d]` and `x[t-d]`
  in one of two orders, met by one of two stacked copies of the past-tap weights.
* The past taps (t-2d, t-d) of the next `b` steps are known once the layer's last d inputs exist,
  so they are computed `b` steps at a time as ONE matrix-matrix product `[b*B, 2C] x [2C, 2C]`
  (b <= d, a power of two). At small batches this reads each layer's past-tap weights once per
  block instead of once per step, which is what beats the memory wall; at large batches b is 1
  and the product is the plain per-step one.
* The conditioning of every layer (and the dilated conv's and cond_map's biases) is one product
  per 512-sample frame, added to the block of past-tap results, never recomputed per sample.
* Per step and layer what remains is the current tap (one product), the gate (one tanh over the
  whole `[B, 2C]`: sigmoid(a) = (1 + tanh(a / 2)) / 2, with the final 1/2 folded into the
  residual/skip weights), and the residual and skip outputs as one product.
* Sampling (softmax, cumulative sum, first bin reaching a uniform number, clamped to 255) runs
  where the network runs. The uniform numbers come from one seeded numpy generator per sound,
  drawn a frame at a time and moved to the device once per frame: the same seed gives the same
  audio bit for bit on the same device and math library, and nothing in the loop waits for the
  host on a GPU.

The same loop runs on two array libraries: numpy (its OpenBLAS is the fastest matrix library on
our CPUs, measured by `soundspace bench`) and torch (`cpu` or `cuda`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .model import CLASSES, ModelConfig
from .mulaw import inverse_mu_law, network_input

# Largest number of rows (steps x sounds) one block of past-tap products may hold. Past this,
# bigger blocks stop making the product faster and only cost memory (`soundspace bench`).
BLOCK_ROWS = 1024
# Up to this many sounds, numpy's per-step products run as one GEMV per sound (see step_matmul).
GEMV_ROWS = 4

# An array of the math library in use: np.ndarray with NumpyMath, torch.Tensor with TorchMath.
# The loop is written once for both (duck-typed), so its arrays are typed as either.
Array = Any


class NumpyMath:
    """The array operations the loop needs, on numpy (CPU)."""

    name = "numpy"

    def array(self, value) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        return np.ascontiguousarray(value, dtype=np.float32)

    def zeros(self, shape) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)

    def bins(self, shape) -> np.ndarray:
        return np.zeros(shape, dtype=np.int16)

    @staticmethod
    def bins_of(values) -> np.ndarray:
        return np.asarray(values, dtype=np.int16)

    concat = staticmethod(np.concatenate)
    matmul = staticmethod(np.matmul)
    tanh = staticmethod(np.tanh)
    mul = staticmethod(np.multiply)

    @staticmethod
    def step_matmul(a, w, out):
        """A per-step product `[B, K] x [K, N]`. OpenBLAS packs the whole weight matrix for
        every GEMM, which at 2-4 rows costs more than one GEMV per row (`soundspace bench`)."""
        if 1 < a.shape[0] <= GEMV_ROWS:
            for row in range(a.shape[0]):
                np.dot(a[row], w, out=out[row])
            return out
        return np.matmul(a, w, out=out)

    @staticmethod
    def relu(x, out):
        return np.maximum(x, 0, out=out)

    @staticmethod
    def softmax(logits):
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    @staticmethod
    def sample(probs, uniform):
        cdf = np.cumsum(probs, axis=1)
        return np.minimum((cdf < uniform[:, None]).sum(axis=1), CLASSES - 1)

    @staticmethod
    def as_input(bins):
        return (bins.astype(np.float32) - 128) / 128

    @staticmethod
    def to_numpy(x) -> np.ndarray:
        return x


class TorchMath:
    """The same operations on torch tensors, on any torch device (`cpu`, `cuda`)."""

    name = "torch"

    def __init__(self, device):
        self.device = torch.device(device)

    def array(self, value) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            value = value.detach()
        return torch.as_tensor(value, dtype=torch.float32).to(self.device).contiguous()

    def zeros(self, shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def bins(self, shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.int16, device=self.device)

    def bins_of(self, values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int16), device=self.device)

    @staticmethod
    def concat(arrays, axis):
        return torch.cat(arrays, dim=axis)

    matmul = step_matmul = staticmethod(torch.matmul)
    tanh = staticmethod(torch.tanh)
    mul = staticmethod(torch.mul)

    @staticmethod
    def relu(x, out):
        return torch.clamp(x, min=0, out=out)

    @staticmethod
    def softmax(logits):
        return torch.softmax(logits, dim=1)

    @staticmethod
    def sample(probs, uniform):
        cdf = torch.cumsum(probs, dim=1)
        return (cdf < uniform[:, None]).sum(dim=1).clamp_(max=CLASSES - 1)

    @staticmethod
    def as_input(bins):
        return (bins.to(torch.float32) - 128) / 128

    @staticmethod
    def to_numpy(x) -> np.ndarray:
        return x.cpu().numpy()


def math_for(device: str, math: str = "auto"):
    """numpy on CPU unless asked otherwise (it measures fastest here), torch elsewhere."""
    if math == "auto":
        math = "numpy" if torch.device(device).type == "cpu" else "torch"
    if math == "numpy":
        if torch.device(device).type != "cpu":
            raise ValueError(f"numpy math runs on the CPU only, not on {device!r}")
        return NumpyMath()
    if math == "torch":
        return TorchMath(device)
    raise ValueError(f"unknown math library {math!r}: use 'numpy', 'torch' or 'auto'")


def block_size(dilation: int, hop: int, batch: int, block_rows: int = BLOCK_ROWS) -> int:
    """Steps of past-tap products computed together: a power of two dividing the dilation and
    the hop (so a block never straddles a conditioning frame), with at most `block_rows` rows."""
    b = 1
    while dilation % (2 * b) == 0 and hop % (2 * b) == 0 and 2 * b * batch <= block_rows:
        b *= 2
    return b


@dataclass
class _Layer:
    dilation: int
    block: int
    past: tuple[Array, Array]  # [2C, 2C] weights for the two orders of the history halves
    current: Array  # [C, 2C] weights of the tap at t
    res_skip: Array  # [C, C + S], halved (the gate's 1/2)
    res_bias: Array  # [C]
    history: Array  # Q: [d, B, 2C]
    block_out: Array  # [b, B, 2C]: past taps + conditioning for the steps of this block
    cond: Array  # [B, 2C] view into the decoder's per-frame conditioning


class IncrementalDecoder:
    """Decoder state for a batch of `batch` sounds and one step of the network."""

    def __init__(
        self,
        state: dict,
        config: ModelConfig,
        batch: int,
        math,
        temperature: float = 1.0,
        block_rows: int = BLOCK_ROWS,
    ):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.config, self.batch, self.m = config, batch, math
        m, C, S, B = math, config.width, config.skip_width, batch

        def w(name, tap=0):
            return m.array(state[f"{name}/W"][0, tap])

        def bias(name):
            return m.array(state[f"{name}/biases"])

        # startconv sees the input ring X[:, t % 3]; W_start[r] orders its taps for t % 3 == r.
        taps = [w("startconv", j) for j in range(3)]
        self.start_w = [
            m.concat([taps[2 - (r - slot) % 3] for slot in range(3)], 0) for r in range(3)
        ]
        self.start_b = bias("startconv")
        self.skip_start_w = w("skip_start")
        # Every skip bias is a constant added to the skip sum: fold them into its start.
        self.skip_b = bias("skip_start") + sum(
            bias(f"skip_{i}") for i in range(1, config.layers + 1)
        )

        cond_w = [w(f"cond_map_{i}") for i in range(1, config.layers + 1)] + [w("cond_map_out1")]
        cond_b = [
            bias(f"cond_map_{i}") + bias(f"dilatedconv_{i}") for i in range(1, config.layers + 1)
        ] + [bias("cond_map_out1") + bias("out1")]
        self.cond_w, self.cond_b = m.concat(cond_w, 1), m.concat(cond_b, 0)
        self.cond = m.zeros((B, self.cond_w.shape[1]))

        self.layers = []
        for i in range(1, config.layers + 1):
            d = config.dilation(i - 1)
            b = block_size(d, config.hop, B, block_rows)
            kernel = state[f"dilatedconv_{i}/W"][0]
            self.layers.append(
                _Layer(
                    dilation=d,
                    block=b,
                    past=(
                        m.array(kernel[0:2].reshape(2 * C, 2 * C)),
                        m.concat([m.array(kernel[1]), m.array(kernel[0])], 0),
                    ),
                    current=m.array(kernel[2]),
                    res_skip=m.concat([w(f"res_{i}"), w(f"skip_{i}")], 1) * 0.5,
                    res_bias=bias(f"res_{i}"),
                    history=m.zeros((d, B, 2 * C)),
                    block_out=m.zeros((b, B, 2 * C)),
                    cond=self.cond[:, (i - 1) * 2 * C : i * 2 * C],
                )
            )
        self.cond_out = self.cond[:, config.layers * 2 * C :]
        self.out1_w = w("out1")
        self.logits_w, self.logits_b = w("logits") / temperature, bias("logits") / temperature

        self.inputs = m.zeros((B, 3))
        self.x = m.zeros((B, C))
        self.skip = m.zeros((B, S))
        self.gate = m.zeros((B, 2 * C))
        self.h = m.zeros((B, C))
        self.res_out = m.zeros((B, C + S))
        self.out = m.zeros((B, S))
        self.out2 = m.zeros((B, S))
        self.logits = m.zeros((B, CLASSES))

    def set_frame(self, z) -> None:
        """Conditioning frame `[B, bottleneck]` for the next `hop` steps."""
        self.m.matmul(z, self.cond_w, out=self.cond)
        self.cond += self.cond_b

    def step(self, t: int, sample) -> Array:
        """Feed the input of step t (previous sample as mu-law / 128, `[B]`); return logits."""
        m, C = self.m, self.config.width
        self.inputs[:, t % 3] = sample
        x, skip, gate, h, res_out = self.x, self.skip, self.gate, self.h, self.res_out
        m.matmul(self.inputs, self.start_w[t % 3], out=x)
        x += self.start_b
        m.matmul(x, self.skip_start_w, out=skip)
        skip += self.skip_b
        for layer in self.layers:
            d, b = layer.dilation, layer.block
            parity = (t // d) % 2
            if t % b == 0:
                rows = layer.history[t % d : t % d + b]
                out = layer.block_out
                m.matmul(
                    rows.reshape(b * self.batch, 2 * C),
                    layer.past[parity],
                    out=out.reshape(b * self.batch, 2 * C),
                )
                out += layer.cond
            m.step_matmul(x, layer.current, out=gate)
            gate += layer.block_out[t % b]
            gate[:, :C] *= 0.5
            m.tanh(gate, out=gate)
            gate[:, :C] += 1
            m.mul(gate[:, :C], gate[:, C:], out=h)
            layer.history[t % d, :, parity * C : (parity + 1) * C] = x
            m.step_matmul(h, layer.res_skip, out=res_out)
            x += res_out[:, :C]
            x += layer.res_bias
            skip += res_out[:, C:]
        m.relu(skip, out=self.out)
        m.matmul(self.out, self.out1_w, out=self.out2)
        self.out2 += self.cond_out
        m.relu(self.out2, out=self.out2)
        m.matmul(self.out2, self.logits_w, out=self.logits)
        self.logits += self.logits_b
        return self.logits


def sample_steps(decoder: IncrementalDecoder, t0: int, sample, uniform, bins):
    """Run steps t0 .. t0 + len(uniform) - 1, sampling each step's output with one uniform
    number per sound (`uniform[j]`, `[B]`) into `bins[:, t]`; return the next step's input."""
    math = decoder.m
    for j in range(len(uniform)):
        drawn = math.sample(math.softmax(decoder.step(t0 + j, sample)), uniform[j])
        bins[:, t0 + j] = drawn
        sample = math.as_input(drawn)
    return sample


def row_seeds(seed, batch: int) -> list:
    """One seed per sound: an int seed gives sound b the stream (seed, b)."""
    if isinstance(seed, (int, np.integer)):
        return [[int(seed), b] for b in range(batch)]
    seeds = list(seed)
    if len(seeds) != batch:
        raise ValueError(
            f"got {len(seeds)} seeds for {batch} sounds: give one per sound or one int"
        )
    return seeds


def replay(decoder: IncrementalDecoder, encoding, bins, frames: int) -> int:
    """Rebuild the decoder's state after `frames` frames from the samples drawn in them (`bins`):
    the histories are what the last `decoder_reach()` steps left, so those steps are run again
    from empty histories, each fed the sample drawn before it. Every value a later step reads is
    then computed by the same operations from the same operands as in the first run, so what
    follows is bit for bit the same. Returns the steps run."""
    config, math = decoder.config, decoder.m
    hop = config.hop
    first = max(0, frames - -(-config.decoder_reach() // hop))
    for f in range(first, frames):
        decoder.set_frame(math.array(encoding[:, f]))
        for t in range(f * hop, (f + 1) * hop):
            sample = math.as_input(bins[:, t - 1]) if t else math.zeros(decoder.batch)
            decoder.step(t, sample)
    return (frames - first) * hop


def generate(
    state: dict,
    config: ModelConfig,
    encoding: np.ndarray,
    seed=0,
    math=None,
    temperature: float = 1.0,
    progress=True,
    block_rows: int = BLOCK_ROWS,
    start: tuple[int, np.ndarray] | None = None,
    keep=None,
    keep_every: float = 0.0,
    steps=None,
) -> np.ndarray:
    """Sample audio `[B, F * hop]` for embeddings `[B, F, bottleneck]`. `progress`: True shows
    a bar, False none, a callable is called with the samples decoded (all rows) per frame.

    Resuming: `keep(frames, drawn)` is called at the end of a frame every `keep_every` seconds
    (0: never) and once more when the loop is interrupted (KeyboardInterrupt, SIGTERM included),
    with the frames done and the mu-law bins drawn in them (`uint8 [B, frames * hop]`): all a
    later call needs, as `start=(frames, drawn)`, to go on and give the same audio bit for bit
    (the random streams are advanced past the numbers drawn, the histories rebuilt by `replay`).
    `steps(n)` is told the decoder steps run, replayed ones included."""
    from tqdm.auto import tqdm

    math = math or NumpyMath()
    batch, frames, _ = encoding.shape
    hop = config.hop
    rngs = [np.random.default_rng(s) for s in row_seeds(seed, batch)]
    decoder = IncrementalDecoder(state, config, batch, math, temperature, block_rows)
    bins = math.bins((batch, frames * hop))
    sample = math.zeros(batch)
    done = 0
    if start is not None:
        done, drawn = start
        bins[:, : done * hop] = math.bins_of(drawn)
        for r in rngs:
            r.random(done * hop)  # the numbers those frames drew
        ran = replay(decoder, encoding, bins, done)
        if steps:
            steps(ran)
        sample = math.as_input(bins[:, done * hop - 1])
    kept_at = time.monotonic()
    # A caller's own bar is told the samples done; only `progress=True` makes a bar here (a bar
    # takes a multiprocessing lock, which a worker process killed mid-run would leak).
    report = progress if callable(progress) else None
    bar = (
        tqdm(
            total=frames * hop,
            unit="sample",
            unit_scale=True,
            smoothing=0.1,
            desc=f"decoding {batch} sound(s)",
        )
        if progress is True
        else None
    )
    try:
        for f in range(done, frames):
            decoder.set_frame(math.array(encoding[:, f]))
            uniform = math.array(np.stack([r.random(hop) for r in rngs], axis=1))
            sample = sample_steps(decoder, f * hop, sample, uniform, bins)
            done = f + 1
            if steps:
                steps(hop)
            if bar is not None:
                bar.update(hop)
            if report:
                report(hop * batch)
            if (
                keep
                and keep_every > 0
                and time.monotonic() - kept_at >= keep_every
                and done < frames
            ):
                keep(done, _drawn(math, bins, done * hop))
                kept_at = time.monotonic()
    except KeyboardInterrupt:
        if keep and done > (start[0] if start else 0):
            keep(done, _drawn(math, bins, done * hop))  # stopped: keep every finished frame
        raise
    finally:
        if bar is not None:
            bar.close()
    return inverse_mu_law(math.to_numpy(bins).astype(np.int32) - 128)


def _drawn(math, bins, samples: int) -> np.ndarray:
    """The mu-law bins drawn so far, `uint8 [B, samples]`, as a snapshot keeps them."""
    return math.to_numpy(bins[:, :samples]).astype(np.uint8)


def teacher_forced(
    state: dict,
    config: ModelConfig,
    audio: np.ndarray,
    encoding: np.ndarray,
    math=None,
    block_rows: int = BLOCK_ROWS,
) -> np.ndarray:
    """Probabilities `[B, T, 256]` from the incremental decoder fed the true previous samples:
    the check that generation computes exactly what the parallel network does."""
    math = math or NumpyMath()
    batch, steps = audio.shape
    inputs = np.zeros_like(audio, dtype=np.float32)
    inputs[:, 1:] = network_input(audio[:, :-1])
    decoder = IncrementalDecoder(state, config, batch, math, block_rows=block_rows)
    probs = np.zeros((batch, steps, CLASSES), dtype=np.float32)
    for t in range(steps):
        if t % config.hop == 0:
            decoder.set_frame(math.array(encoding[:, t // config.hop]))
        logits = decoder.step(t, math.array(inputs[:, t]))
        probs[:, t] = math.to_numpy(math.softmax(logits))
    return probs
