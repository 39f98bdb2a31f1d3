"""Training: the whole autoencoder, teacher-forced, on random crops of a few sounds.

Each step takes `batch` random crops (a whole number of frames) from the sounds, encodes them,
and scores the decoder's prediction of every sample given the true previous samples and the
crop's own embedding: cross-entropy over the 256 mu-law bins, Adam, cosine learning-rate decay
to a tenth. The run is checkpointed every `checkpoint_every` steps to `train-state.pt` (model,
optimizer, step and both random generators) and to a model folder, both replaced atomically;
starting the same command again resumes from the last checkpoint and continues the same random
streams, so an interrupted run ends where an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import SoundspaceError
from ..files import atomic_file
from . import NSynth, checkpoint
from .model import Autoencoder, ModelConfig
from .mulaw import mu_law, network_input
from .random_weights import make_weights

STATE_FILE = "train-state.pt"


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 2000
    batch: int = 8
    crop: int = 4096  # samples per crop, a multiple of the hop
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 100
    # Std of Gaussian noise added to the decoder's input samples (network scale, one mu-law bin
    # is 1/128). A decoder trained only on clean inputs can predict them well yet drift once it
    # feeds on its own samples; noisy inputs push it to lean on the conditioning instead.
    input_noise: float = 0.0
    # If set, the noise falls from `input_noise` to this along the learning rate's cosine: early
    # on a noisy past teaches the decoder to take pitch and timbre from the embedding; late, a
    # cleaner past lets it sharpen its predictions (a decoder kept unsure samples hiss).
    input_noise_end: float | None = None
    # Fraction of crops that start at a sound's first sample. Generation always starts there,
    # from silence, and the first periods it draws set the pitch it then sustains; a random crop
    # starts at the onset almost never, so the decoder learns to continue whatever period it
    # hears rather than to choose one from the embedding.
    onset_crops: float = 0.0
    # Crops start on frame boundaries and the encoder sees the audio around them (its whole
    # receptive field, zeros beyond the sound's ends), so each crop is trained on the very
    # embedding frames generation will use: a lone crop's embedding differs near its edges,
    # where the encoder meets zero padding mid-sound.
    encoder_context: bool = False
    # Fraction of the decoder's input samples replaced by its own draws (parallel scheduled
    # sampling): a first, gradient-free pass predicts every sample from the true past, one draw
    # is taken from each prediction, and the scored pass sees those draws in place of the true
    # samples at random positions. Generation feeds the decoder nothing but its own draws; this
    # noise is shaped like the model's own mistakes, so it shrinks where the model is sure
    # instead of keeping every prediction as wide as a fixed Gaussian does.
    self_feed: float = 0.0
    # Fraction of the run before self-feeding starts. An untrained decoder's draws are noise, and
    # the gradient-free pass makes each step ~1.5x slower; its own mistakes are worth learning
    # from once it makes few, so a run can spend its first steps learning plainly (scheduled
    # sampling likewise raises the share of the model's own samples as training goes on).
    self_feed_from: float = 0.0


def loss_on(
    net: Autoencoder,
    crops: torch.Tensor,
    input_noise: float | torch.Tensor = 0.0,
    context: torch.Tensor | None = None,
    at: torch.Tensor | None = None,
    self_feed: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy (nats per sample) of the decoder on `crops` `[B, L]` of raw audio.

    `context` `[B, W]`, if given, is what the encoder reads instead: a stretch of each crop's
    sound, in which the crop starts at `at` `[B]`. A tensor `input_noise` (0-d) is a level that
    changes from step to step, passed as a tensor so that a compiled step is not recompiled.
    `self_feed` is `TrainOptions.self_feed`."""
    hop = net.config.hop
    device = next(net.parameters()).device
    x = torch.from_numpy(network_input(crops.numpy())).to(device)
    # A full-scale sample (1.0) is bin 128 in mu-law; as a class it is the top one, 255.
    target = torch.from_numpy(np.minimum(mu_law(crops.numpy()) + 128, 255)).long().to(x.device)
    if context is None:
        z = net.encode(x)
    else:
        assert at is not None, "a context comes with where the crop starts in it (`at`)"
        z = net.encode(torch.from_numpy(network_input(context.numpy())).to(device))
        where = (at.to(device)[:, None] + torch.arange(crops.shape[1], device=device))[:, None, :]
        z = z.gather(2, where.expand(-1, z.shape[1], -1))
    z = z.reshape(z.shape[0], z.shape[1], -1, hop).mean(-1).repeat_interleave(hop, dim=2)
    inputs = F.pad(x[:, :-1], (1, 0))  # the input at step t is sample t-1
    if isinstance(input_noise, torch.Tensor) or input_noise:
        inputs = inputs + input_noise * torch.randn_like(inputs)
    if self_feed:
        with torch.no_grad():  # one draw per sample (Gumbel-max), as the bin generation feeds
            logits = net.decode_logits(inputs, z.detach())
            gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(min=1e-20)))
            drawn = ((logits + gumbel).argmax(1) - 128).float() / 128  # the draw for sample t
        drawn = F.pad(drawn[:, :-1], (1, 0))  # ... is the input at step t + 1
        inputs = torch.where(torch.rand_like(inputs) < self_feed, drawn, inputs)
    return F.cross_entropy(net.decode_logits(inputs, z), target)


def _check_data(sounds: dict, options: TrainOptions, hop: int) -> None:
    if not sounds:
        raise SoundspaceError("no sounds to train on")
    for flag, value in (
        ("--input-noise", options.input_noise),
        ("--input-noise-end", options.input_noise_end),
    ):
        if value is not None and not 0 <= value < 1:
            raise SoundspaceError(
                f"{flag} {value:g} must be from 0 to below 1 (one mu-law bin is 1/128)"
            )
    if not 0 <= options.self_feed <= 1:
        raise SoundspaceError(f"--self-feed {options.self_feed:g} must be a fraction from 0 to 1")
    if not 0 <= options.self_feed_from < 1:
        raise SoundspaceError(
            f"--self-feed-from {options.self_feed_from:g} must be a fraction of the "
            "run from 0 to below 1"
        )
    if options.self_feed_from and not options.self_feed:
        raise SoundspaceError(
            "--self-feed-from says when self-feeding starts, but --self-feed is 0: "
            "give --self-feed F too, or drop --self-feed-from"
        )
    if not 0 <= options.onset_crops <= 1:
        raise SoundspaceError(
            f"--onset-crops {options.onset_crops:g} must be a fraction from 0 to 1"
        )
    if options.crop <= 0 or options.crop % hop:
        raise SoundspaceError(
            f"--crop {options.crop} must be a positive multiple of the hop ({hop})"
        )
    short = [f"{name} ({len(a)} samples)" for name, a in sounds.items() if len(a) < options.crop]
    if short:
        raise SoundspaceError(
            f"sounds shorter than one crop of {options.crop} samples: "
            f"{', '.join(short)}; use a smaller --crop or longer sounds"
        )
    for name, audio in sounds.items():
        if not np.abs(audio).max() > 0:
            raise SoundspaceError(f"{name} is silent: there is nothing to learn from it")


def train(
    sounds: dict,
    out_dir,
    config: ModelConfig | None = None,
    init: NSynth | None = None,
    options: TrainOptions = TrainOptions(),
    device: str = "cpu",
    progress: bool = True,
    compile: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train on `{name: float32 16 kHz audio}`; write a model folder to `out_dir`; return it.

    `compile` runs the step through `torch.compile`: about a minute of compiling first, then
    each step ~1.4x faster on CPU (the gated layers' elementwise work is fused).
    A model already in `out_dir` is replaced only with `overwrite` (training then starts from
    step 0): without the training state that would resume it, it may be a model that took a
    download and a conversion to get.
    """
    from tqdm.auto import tqdm

    if init is not None:
        if config is not None and config != init.config:
            raise SoundspaceError(
                f"--init model is {init.config.describe()}, but the size asked "
                f"for is {config.describe()}: drop the size options to "
                "fine-tune it, or drop --init to train a new model"
            )
        config = init.config
    config = config or ModelConfig()
    _check_data(sounds, options, config.hop)
    out = Path(out_dir)
    state_path = out / STATE_FILE
    if overwrite:
        state_path.unlink(missing_ok=True)
    elif not state_path.is_file():
        held = [f for f in (checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE) if (out / f).exists()]
        if held:
            raise SoundspaceError(
                f"{out} already holds a model ({', '.join(held)}) and no training run to "
                "resume; train into another --out, or add --overwrite to replace it"
            )
    out.mkdir(parents=True, exist_ok=True)

    net = Autoencoder(config)
    net.load_magenta(
        {n: p.detach().cpu().numpy() for n, p in init.net.magenta_state().items()}
        if init is not None
        else make_weights(options.seed, config)
    )
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=options.lr)
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    step = 0
    if state_path.is_file():
        saved = torch.load(state_path, map_location=device, weights_only=False)
        if saved["config"] != config.to_dict() or saved["options"] != asdict(options):
            raise SoundspaceError(
                f"{out} holds a training run with other settings "
                f"({saved['options']}, {saved['config']}); resume it with the "
                "same options, or train into another --out"
            )
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        step = saved["step"]
        print(f"resuming from step {step} of {options.steps} ({state_path})")

    names = sorted(sounds)
    audio = [torch.from_numpy(np.ascontiguousarray(sounds[n], dtype=np.float32)) for n in names]
    # Generation encodes a sound cut to whole frames, in chunks with `margin` samples (whole
    # frames, the encoder's reach) of the sound on either side.
    whole = [len(a) // config.hop * config.hop for a in audio]
    margin = -(-config.ae_reach() // config.hop) * config.hop
    window = options.crop + 2 * margin
    if options.encoder_context and min(whole) < window:
        short = names[whole.index(min(whole))]
        raise SoundspaceError(
            f"--encoder-context needs sounds of at least {window} samples (a crop "
            f"and the encoder's reach on both sides); {short} has {min(whole)}: "
            "use a smaller --crop or drop --encoder-context"
        )

    def save(loss: float) -> None:
        with atomic_file(state_path) as tmp:
            torch.save(
                {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "config": config.to_dict(),
                    "options": asdict(options),
                },
                tmp,
            )
        weights = {n: p.detach().cpu().numpy() for n, p in net.magenta_state().items()}
        checkpoint.save_model(
            weights,
            config,
            out,
            {
                "trained_on": names,
                "steps": step,
                "loss": loss,
                "options": asdict(options),
                "init": init.identity if init is not None else None,
            },
        )

    step_loss = torch.compile(loss_on) if compile else loss_on
    loss_value = float("nan")
    with tqdm(
        total=options.steps, initial=step, disable=not progress, unit="step", desc="training"
    ) as bar:
        while step < options.steps:
            fall = 1 + math.cos(math.pi * step / options.steps)  # a cosine from 2 down to 0
            for group in optimizer.param_groups:  # from lr to lr / 10
                group["lr"] = options.lr * (0.1 + 0.45 * fall)
            noise: float | torch.Tensor = options.input_noise
            if options.input_noise_end is not None:  # from input_noise to input_noise_end
                noise = torch.tensor(
                    options.input_noise_end + (noise - options.input_noise_end) * 0.5 * fall,
                    dtype=torch.float32,
                    device=device,
                )
            picks = rng.integers(len(audio), size=options.batch)
            if options.encoder_context:
                starts = [
                    config.hop * int(rng.integers((len(audio[k]) - options.crop) // config.hop + 1))
                    for k in picks
                ]
            else:
                starts = [int(rng.integers(len(audio[k]) - options.crop + 1)) for k in picks]
            if options.onset_crops:
                starts = [
                    0 if onset else s
                    for s, onset in zip(
                        starts, rng.random(options.batch) < options.onset_crops, strict=True
                    )
                ]
            crops = torch.stack(
                [audio[k][s : s + options.crop] for k, s in zip(picks, starts, strict=True)]
            )
            context = at = None
            if options.encoder_context:
                # `margin` of the sound on either side of the crop, the window moved inwards at
                # the sound's ends: there the encoder's padding falls where generation's does.
                cuts = [
                    min(max(0, s - margin), whole[k] - window)
                    for k, s in zip(picks, starts, strict=True)
                ]
                context = torch.stack(
                    [audio[k][c : c + window] for k, c in zip(picks, cuts, strict=True)]
                )
                at = torch.tensor([s - c for s, c in zip(starts, cuts, strict=True)])
            feed = options.self_feed if step >= options.self_feed_from * options.steps else 0.0
            loss = step_loss(net, crops, noise, context, at, feed)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = loss.item()
            bar.set_postfix(loss=f"{loss_value:.3f}")
            bar.update()
            if step % options.checkpoint_every == 0 or step == options.steps:
                save(loss_value)
    if not (out / checkpoint.WEIGHTS_FILE).is_file():
        save(loss_value)
    return out
