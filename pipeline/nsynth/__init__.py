"""The NSynth WaveNet autoencoder: load a model, encode sounds, decode embeddings.

    from pipeline.nsynth import NSynth
    model = NSynth.load("models/n-synth/checkpoints/wavenet")    # a model folder
    z = model.encode(audio)                # float32 [B, N] at 16 kHz -> [B, N // 512, 16]
    p = model.probabilities(audio, z)      # teacher-forced p(sample t | samples < t) [B, T, 256]
    y = model.generate(z, seed=0)          # sampled audio [B, F * 512]

Everything takes and returns numpy arrays. This package knows nothing of configs or backends.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .. import SoundspaceError
from . import checkpoint
from . import generate as _generate
from .model import Autoencoder, ModelConfig
from .mulaw import network_input

__all__ = ["NSynth", "ModelConfig"]

# Samples of one encoder forward pass (sounds x time). It bounds memory (~70 MB per activation at
# the default width) and one 4 s sound per pass runs faster than several (cache); longer or more
# sounds are encoded in overlapping chunks.
ENCODE_CHUNK_SAMPLES = 1 << 17


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise SoundspaceError(
            f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SoundspaceError(
            f"device {device!r} asked for, but this torch has no usable CUDA "
            "GPU; use --device cpu (or auto)"
        )
    return resolved


def _audio_batch(audio, what="audio") -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise SoundspaceError(f"{what} must be [sounds, samples], got shape {list(audio.shape)}")
    if not np.isfinite(audio).all():
        raise SoundspaceError(f"{what} holds NaN or infinite samples")
    return audio


class NSynth:
    """A loaded model on one device; see the module docstring for the calls."""

    def __init__(
        self, net: Autoencoder, identity: str, meta: dict | None = None, source: str = "weights"
    ):
        self.net = net.eval().requires_grad_(False)
        self.config: ModelConfig = net.config
        self.identity = identity  # of weights and hyper-parameters: the model's name in manifests
        self.meta = meta or {}
        self.source = source  # where the weights came from, for messages: the model folder

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @classmethod
    def load(cls, path, device: str = "cpu") -> NSynth:
        """Load a model folder (`weights.safetensors` + `model.json`)."""
        weights, config, meta = checkpoint.load_model(path)
        identity = checkpoint.identity(meta["weights_sha256"], config)
        return cls._build(weights, config, identity, meta, device, source=f"model {path}")

    @classmethod
    def from_weights(
        cls,
        weights: dict,
        device: str = "cpu",
        stages: int = 10,
        ae_stages: int = 10,
        hop: int = 512,
    ) -> NSynth:
        """Build from `{Magenta variable name: array}`; sizes are read from the shapes."""
        config = ModelConfig.from_shapes(
            {n: np.shape(v) for n, v in weights.items()},
            stages=stages,
            ae_stages=ae_stages,
            hop=hop,
        )
        digest = hashlib.sha256()
        for name in sorted(weights):
            digest.update(name.encode() + np.ascontiguousarray(weights[name], np.float32).tobytes())
        return cls._build(
            weights, config, checkpoint.identity(digest.hexdigest(), config), {}, device
        )

    @classmethod
    def _build(cls, weights, config, identity, meta, device, source="weights") -> NSynth:
        net = Autoencoder(config)
        net.load_magenta(weights)
        return cls(net.to(resolve_device(device)), identity, meta, source)

    @torch.no_grad()
    def encode(self, audio, drop_partial: bool = True) -> np.ndarray:
        """Audio `[B, N]` (16 kHz, [-1, 1]) -> embeddings `[B, frames, bottleneck]`.

        Magenta's framing: the input is cut to whole hops first and the partial last frame is
        dropped (16000 samples -> 31 frames). `drop_partial=False` zero-pads it to a full frame.
        Long inputs are encoded in chunks with enough context that the result is unchanged."""
        audio = _audio_batch(audio)
        hop = self.config.hop
        frames = audio.shape[1] // hop if drop_partial else -(-audio.shape[1] // hop)
        if frames == 0:
            raise SoundspaceError(
                f"audio of {audio.shape[1]} samples is shorter than one "
                f"frame ({hop} samples, {hop / 16000 * 1000:.0f} ms)"
            )
        padded = np.zeros((audio.shape[0], frames * hop), np.float32)
        usable = min(audio.shape[1], frames * hop)
        padded[:, :usable] = network_input(audio[:, :usable])
        x = torch.from_numpy(padded).to(self.device)
        # One side of the encoder's receptive field, in whole frames.
        context = -(-self.config.ae_reach() // hop)
        per_chunk = max(1, ENCODE_CHUNK_SAMPLES // hop - 2 * context)
        rows = max(1, ENCODE_CHUNK_SAMPLES // ((min(per_chunk, frames) + 2 * context) * hop))
        out = np.zeros((x.shape[0], frames, self.config.bottleneck), np.float32)
        for b0 in range(0, x.shape[0], rows):
            for f0 in range(0, frames, per_chunk):
                f1 = min(frames, f0 + per_chunk)
                lo, hi = max(0, f0 - context), min(frames, f1 + context)
                z = self.net.encode(x[b0 : b0 + rows, lo * hop : hi * hop])
                z = z[:, :, (f0 - lo) * hop : (f1 - lo) * hop]
                pooled = z.reshape(z.shape[0], z.shape[1], f1 - f0, hop).mean(-1)
                out[b0 : b0 + rows, f0:f1] = pooled.transpose(1, 2).cpu().numpy()
        if not np.isfinite(out).all():  # the inputs were checked finite: the weights are not
            raise SoundspaceError(
                f"the {self.source} gives NaN or infinite embeddings: its weights are damaged "
                "(or its training diverged); convert or train it again, or use another model"
            )
        return out

    def _check_encoding(self, encoding) -> np.ndarray:
        encoding = np.asarray(encoding, dtype=np.float32)
        if encoding.ndim == 2:
            encoding = encoding[None]
        if encoding.ndim != 3 or encoding.shape[2] != self.config.bottleneck:
            raise SoundspaceError(
                f"embeddings must be [sounds, frames, {self.config.bottleneck}],"
                f" got shape {list(encoding.shape)}"
            )
        if encoding.shape[1] == 0:
            raise SoundspaceError("embeddings have no frames")
        if not np.isfinite(encoding).all():
            raise SoundspaceError("embeddings hold NaN or infinite values")
        return encoding

    @torch.no_grad()
    def probabilities(self, audio, encoding) -> np.ndarray:
        """Teacher-forced `p(sample t | samples < t, embedding)`: `[B, T]`, `[B, F, 16]` ->
        `[B, T, 256]`. The input at step t is sample t-1 (0 at t = 0); frame t // hop
        conditions step t. One parallel pass over the whole sequence."""
        audio, encoding = _audio_batch(audio), self._check_encoding(encoding)
        batch, steps = audio.shape
        if encoding.shape[0] != batch or encoding.shape[1] * self.config.hop < steps:
            raise SoundspaceError(
                f"{steps} samples of {batch} sound(s) need embeddings "
                f"[{batch}, >= {-(-steps // self.config.hop)}, "
                f"{self.config.bottleneck}], got {list(encoding.shape)}"
            )
        inputs = np.zeros_like(audio)
        inputs[:, 1:] = network_input(audio[:, :-1])
        z = torch.from_numpy(encoding).to(self.device).transpose(1, 2)
        z = z.repeat_interleave(self.config.hop, dim=2)[:, :, :steps]
        logits = self.net.decode_logits(torch.from_numpy(inputs).to(self.device), z)
        return torch.softmax(logits, dim=1).transpose(1, 2).cpu().numpy()

    def math_library(self, math: str = "auto") -> str:
        """The array library `generate(math=...)` runs on here: `numpy` or `torch`."""
        return self._math(math).name

    def _math(self, math: str):
        try:
            return _generate.math_for(str(self.device), math)
        except ValueError as error:
            raise SoundspaceError(str(error)) from None

    @torch.no_grad()
    def generate(
        self,
        encoding,
        seed=0,
        temperature: float = 1.0,
        progress=True,
        math: str = "auto",
        start=None,
        keep=None,
        keep_every: float = 0.0,
        steps=None,
    ) -> np.ndarray:
        """Sample audio `[B, F * hop]` from embeddings `[B, F, bottleneck]`, all in one batch.

        `seed` is an int (sound b draws from the stream (seed, b)) or one seed per sound.
        `progress`: True shows a bar; a callable instead receives the samples done (all rows).
        Same seed, same audio, bit for bit, on the same device and math library. `start`,
        `keep`, `keep_every`, `steps`: resuming a decode, see generate.generate."""
        encoding = self._check_encoding(encoding)
        if not temperature > 0:
            raise SoundspaceError(
                f"temperature must be > 0 (1.0 samples as Magenta does), got {temperature}"
            )
        try:
            _generate.row_seeds(seed, encoding.shape[0])
        except (ValueError, TypeError) as error:
            raise SoundspaceError(f"bad seed: {error}") from None
        return _generate.generate(
            self.net.magenta_state(),
            self.config,
            encoding,
            seed,
            self._math(math),
            temperature,
            progress,
            start=start,
            keep=keep,
            keep_every=keep_every,
            steps=steps,
        )

    @torch.no_grad()
    def teacher_forced_incremental(
        self, audio, encoding, math: str = "auto", block_rows: int = _generate.BLOCK_ROWS
    ) -> np.ndarray:
        """`probabilities()` computed by the incremental generator step by step (for checks);
        `block_rows` bounds the rows of the past-tap products (see generate.block_size)."""
        audio, encoding = _audio_batch(audio), self._check_encoding(encoding)
        return _generate.teacher_forced(
            self.net.magenta_state(), self.config, audio, encoding, self._math(math), block_rows
        )
