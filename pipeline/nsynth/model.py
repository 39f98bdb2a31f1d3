"""The NSynth WaveNet autoencoder as a PyTorch network (Magenta's `h512_bo16` and its kin).

Parameters keep Magenta's checkpoint names and layouts (`dilatedconv_3/W` is `[1, k, in, out]`),
so a converted checkpoint, our own demo model and a fine-tune load through one path, and the
sizes of a model (widths, layer counts) are read from its weights' shapes. Only the dilation
cycle and the hop cannot be seen in the shapes; they travel in the model's JSON (default: 10, 512).

This file holds the parallel (whole-sequence) network: the encoder and the teacher-forced
decoder used for fidelity checks and training. Sample-by-sample generation is `generate.py`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import SoundspaceError

CLASSES = 256
# Allowed hyper-parameters beyond "a whole number from 1 to 65536": a dilation cycle longer than
# 20 layers would need ring buffers of 2**19 steps and more per layer.
LIMITS = {"stages": (1, 20), "ae_stages": (1, 20)}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one model; Magenta's released model is the default."""

    width: int = 512  # decoder residual channels
    skip_width: int = 256
    layers: int = 30
    stages: int = 10  # decoder layer i (0-based) has dilation 2 ** (i % stages)
    ae_width: int = 128  # encoder channels
    ae_layers: int = 30
    ae_stages: int = 10
    bottleneck: int = 16  # size of one embedding frame
    hop: int = 512  # samples per embedding frame (encoder pooling window)

    def dilation(self, i: int) -> int:
        return 2 ** (i % self.stages)

    def ae_dilation(self, i: int) -> int:
        return 2 ** (i % self.ae_stages)

    def decoder_reach(self) -> int:
        """How many earlier samples one decoder step depends on (each layer's taps reach 2
        dilations back, the start conv 2 samples): what rebuilds the decoder's histories."""
        return 2 + sum(2 * self.dilation(i) for i in range(self.layers))

    def ae_reach(self) -> int:
        """How many samples to either side one encoder output depends on."""
        return 1 + sum(self.ae_dilation(i) for i in range(self.ae_layers))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values) -> ModelConfig:
        """Hyper-parameters read from a file: every one a whole number in its range."""
        if not isinstance(values, dict):
            raise SoundspaceError(
                f"field config: expected an object of hyper-parameters, got "
                f"{json.dumps(values)[:40]}"
            )
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise SoundspaceError(
                f"unknown model hyper-parameters {sorted(unknown)}; "
                f"known: {sorted(cls.__dataclass_fields__)}"
            )
        for name, value in values.items():
            low, high = LIMITS.get(name, (1, 1 << 16))
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SoundspaceError(
                    f"field config.{name}: must be a whole number from {low} to "
                    f"{high}, got {json.dumps(value)[:40]}"
                )
        return cls(**values)

    @classmethod
    def from_shapes(
        cls, shapes: dict, stages: int = 10, ae_stages: int = 10, hop: int = 512
    ) -> ModelConfig:
        """Infer widths and layer counts from `{name: shape}` of Magenta-named variables."""

        def dim(name, axis):
            if name not in shapes:
                raise SoundspaceError(
                    f"the weights have no variable {name!r}: this is not an "
                    "NSynth WaveNet autoencoder checkpoint"
                )
            return int(shapes[name][axis])

        def count(prefix):
            found = {
                int(m.group(1)) for n in shapes if (m := re.fullmatch(prefix + r"_(\d+)/W", n))
            }
            if not found:
                raise SoundspaceError(f"the weights have no {prefix}_N layers")
            return max(found)

        config = cls(
            width=dim("startconv/W", 3),
            skip_width=dim("skip_start/W", 3),
            layers=count("dilatedconv"),
            stages=stages,
            ae_width=dim("ae_startconv/W", 3),
            ae_layers=count("ae_dilatedconv"),
            ae_stages=ae_stages,
            bottleneck=dim("ae_bottleneck/W", 3),
            hop=hop,
        )
        config.check_shapes(shapes)
        return config

    def expected_shapes(self) -> dict:
        """Every variable of a model of this size, `{name: (shape)}`, in Magenta's layout."""
        shapes: dict[str, tuple[int, ...]] = {}

        def layer(name, k, n_in, n_out):
            shapes[f"{name}/W"] = (1, k, n_in, n_out)
            shapes[f"{name}/biases"] = (n_out,)

        layer("ae_startconv", 3, 1, self.ae_width)
        for i in range(1, self.ae_layers + 1):
            layer(f"ae_dilatedconv_{i}", 3, self.ae_width, self.ae_width)
            layer(f"ae_res_{i}", 1, self.ae_width, self.ae_width)
        layer("ae_bottleneck", 1, self.ae_width, self.bottleneck)
        layer("startconv", 3, 1, self.width)
        layer("skip_start", 1, self.width, self.skip_width)
        for i in range(1, self.layers + 1):
            layer(f"dilatedconv_{i}", 3, self.width, 2 * self.width)
            layer(f"cond_map_{i}", 1, self.bottleneck, 2 * self.width)
            layer(f"res_{i}", 1, self.width, self.width)
            layer(f"skip_{i}", 1, self.width, self.skip_width)
        layer("out1", 1, self.skip_width, self.skip_width)
        layer("cond_map_out1", 1, self.bottleneck, self.skip_width)
        layer("logits", 1, self.skip_width, CLASSES)
        return shapes

    def check_shapes(self, shapes: dict) -> None:
        """Raise naming the first missing, unexpected and mis-shaped variables, and how many
        differ: one line, however many there are (a size off by one changes a hundred)."""
        expected = self.expected_shapes()
        problems = []
        missing = sorted(set(expected) - set(shapes))
        if missing:
            problems.append(
                f"{len(missing)} missing variable(s): {', '.join(missing[:8])}"
                + (" ..." if len(missing) > 8 else "")
            )
        extra = sorted(set(shapes) - set(expected))
        if extra:
            problems.append(
                f"{len(extra)} unexpected variable(s): {', '.join(extra[:8])}"
                + (" ..." if len(extra) > 8 else "")
            )
        shaped = [n for n in sorted(set(expected) & set(shapes)) if tuple(shapes[n]) != expected[n]]
        if shaped:
            first = shaped[0]
            problems.append(
                f"{len(shaped)} variable(s) of another shape, the first {first}: expected "
                f"{list(expected[first])}, found {list(shapes[first])}"
            )
        if problems:
            raise SoundspaceError(
                f"the weights do not form an NSynth model of size {self.describe()}: "
                + "; ".join(problems)
            )

    def describe(self) -> str:
        return (
            f"decoder {self.layers} layers x {self.width} (skip {self.skip_width}), "
            f"encoder {self.ae_layers} x {self.ae_width}, bottleneck {self.bottleneck}"
        )


# The demo model's size (models/n-synth/checkpoints/demo, the test suite's default model): what
# `soundspace train` builds when no size is given (well under an hour on two CPU cores) and what
# `soundspace bench` times beside the full-size model.
DEMO_CONFIG = ModelConfig(
    width=32, skip_width=32, layers=20, stages=5, ae_width=16, ae_layers=10, ae_stages=10
)


class Conv(nn.Module):
    """One Magenta conv layer: `W` is `[1, k, in, out]`, `y[t] = sum_j x[t + o_j] @ W[0, j] + b`."""

    def __init__(self, k: int, n_in: int, n_out: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(1, k, n_in, n_out))
        self.biases = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor, dilation: int = 1, causal: bool = False) -> torch.Tensor:
        """x is `[B, in, T]`; taps are t-2d, t-d, t (causal) or t-d, t, t+d (centred)."""
        if self.W.shape[1] == 1:  # a 1x1 layer is a plain product, faster than a convolution
            return torch.matmul(self.W[0, 0].t(), x).add_(self.biases[:, None])
        # Conv1d is a cross-correlation over [out, in, k]: the taps keep their order. Its own
        # (symmetric) zero padding is cheaper than padding the input; a causal layer pads both
        # sides and drops the outputs that saw the future.
        span = (self.W.shape[1] - 1) * dilation
        y = F.conv1d(
            x,
            self.W[0].permute(2, 1, 0),
            self.biases,
            dilation=dilation,
            padding=span if causal else span // 2,
        )
        return y[..., : x.shape[-1]] if causal else y


class Autoencoder(nn.Module):
    """Encoder (non-causal, mean-pooled to frames) and teacher-forced decoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        shapes = config.expected_shapes()
        self.convs = nn.ModuleDict(
            {name[:-2]: Conv(*shape[1:]) for name, shape in shapes.items() if name.endswith("/W")}
        )

    def load_magenta(self, weights: dict) -> None:
        """Copy `{Magenta name: array}` into the parameters (shapes already checked)."""
        with torch.no_grad():
            for name, value in weights.items():
                layer, kind = name.rsplit("/", 1)
                getattr(self.convs[layer], kind).copy_(torch.as_tensor(value))

    def magenta_state(self) -> dict:
        """`{Magenta name: tensor}` of every parameter."""
        return {
            f"{layer}/{kind}": p
            for layer, conv in self.convs.items()
            for kind, p in conv.named_parameters()
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Mu-law network input `[B, N]` -> per-sample bottleneck output `[B, bottleneck, N]`."""
        c, conv = self.config, self.convs
        en = conv["ae_startconv"](x[:, None, :])
        for i in range(c.ae_layers):
            h = conv[f"ae_dilatedconv_{i + 1}"](F.relu(en), dilation=c.ae_dilation(i))
            # In place: nothing saved for autograd is overwritten (conv and matmul keep their
            # inputs, ReLU its output), and each full-length pass over memory costs ~30 ms.
            en.add_(conv[f"ae_res_{i + 1}"](h.relu_()))
        return conv["ae_bottleneck"](en)

    def decode_logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder: inputs `[B, T]` (mu-law, x[t] is sample t-1) and
        conditioning `[B, bottleneck, T]` (one frame per sample) -> logits `[B, 256, T]`."""
        c, conv = self.config, self.convs
        layer_in = conv["startconv"](x[:, None, :], causal=True)
        skip = conv["skip_start"](layer_in)
        for i in range(1, c.layers + 1):
            g = conv[f"dilatedconv_{i}"](layer_in, dilation=c.dilation(i - 1), causal=True)
            g = g + conv[f"cond_map_{i}"](z)
            h = torch.sigmoid(g[:, : c.width]) * torch.tanh(g[:, c.width :])
            layer_in = layer_in + conv[f"res_{i}"](h)
            skip = skip + conv[f"skip_{i}"](h)
        s = F.relu(conv["out1"](F.relu(skip)) + conv["cond_map_out1"](z))
        return conv["logits"](s)
