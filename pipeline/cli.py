"""The `soundspace` command.

Every failure ends in one line on stderr and a non-zero exit, never a traceback: a problem the
user can fix (SoundspaceError) and a file-system error (the path, the cause, what to do) exit 2;
Ctrl-C exits 130 and SIGTERM 143, both keeping every finished cell. Anything else is a bug: one
line too, and SOUNDSPACE_DEBUG=1 shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import SoundspaceError, printable, signals
from .files import made_folder


def _unique_stems(paths) -> None:
    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.stem in seen:
            raise SoundspaceError(
                f"{seen[p.stem]} and {p} would both be written as {p.stem}.*: "
                "rename one or run them separately"
            )
        seen[p.stem] = p


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    from .files import atomic_write

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(path, buffer.getvalue())


# The workflow `generate` and `plan` use when --workflow is left out, in the folder they run in.
LOCAL_WORKFLOW = "config-workflow-local.json"


def _workflow(given: str | None, say=print) -> str | None:
    """--workflow, else this folder's local workflow (said, so that nobody wonders: on stdout,
    where an error's one line is not), else None."""
    if given is not None:
        return given
    if Path(LOCAL_WORKFLOW).is_file():
        say(f"using the workflow {LOCAL_WORKFLOW} (--workflow chooses another)")
        return LOCAL_WORKFLOW
    return None


def cmd_generate(args) -> None:
    from .run import generate_spaces

    workflow = _workflow(args.workflow)
    if workflow is None:
        raise SoundspaceError(
            f"no --workflow given, and no {LOCAL_WORKFLOW} in {Path.cwd()}: give --workflow FILE "
            "(the repository's config-workflow-local.json runs on this machine)"
        )
    generate_spaces(
        args.dataset,
        workflow,
        force=args.force,
        output_dir=args.output,
        pictures=not args.no_pictures,
        wait=args.wait,
        yes=args.yes,
    )


def cmd_plan(args) -> None:
    from .config import LibraryConfig, load_space, load_workflow
    from .cost import model_at
    from .library import describe_cost, plan_library
    from .plan_space import space_cost

    space, folder = load_space(args.dataset)
    workflow_path = _workflow(args.workflow, say=lambda _: None)  # the plan names the model
    if workflow_path is None:
        config, model = None, "Magenta's full-size model (assumed: no --workflow says which)"
    else:
        workflow, base = load_workflow(workflow_path)
        config, model = model_at(base / getattr(workflow.models, space.model))
    cost = (
        plan_library(space, folder).cost(config, model)
        if isinstance(space, LibraryConfig)
        else space_cost(space, config, model)
    )
    print(json.dumps(cost, indent=1) if args.json else describe_cost(cost))


def cmd_explore(args) -> None:
    from . import explorer, output
    from .explorer import library
    from .pads import DECODES, LIBRARY_MANIFEST

    space = Path(args.space)
    is_library = (space / LIBRARY_MANIFEST).is_file()
    # Not while a run writes the space (a folder without the state of a run has no lock to take).
    state = space / DECODES if is_library else space
    lock = output.lock(state, args.wait) if (state / output.STATE).is_dir() else None
    try:
        embed = round(args.embed_max_mb * 1e6)
        if is_library:
            written = library.write(space, embed_bytes=embed, pictures_too=not args.no_pictures)
        else:
            written = explorer.write(space, pictures_too=not args.no_pictures, embed_bytes=embed)
    finally:
        if lock is not None:
            lock.release()
    print(f"wrote {len(written)} file(s) in {space}/: open {space / 'index.html'}")


def cmd_serve(args) -> None:
    from .explorer.serve import serve

    if not 0 <= args.port <= 65535:
        raise SoundspaceError(
            f"--port {args.port}: a TCP port is 1 to 65535 (0 picks a free one); try 8765"
        )
    serve(args.space, args.port)


def cmd_render_shard(args) -> None:
    from .shards import render_shard_folder

    render_shard_folder(args.spec, args.out, model=args.model, device=args.device)


def cmd_convert(args) -> None:
    from .nsynth import checkpoint
    from .nsynth.model import ModelConfig

    out = Path(args.out)
    if (out / checkpoint.WEIGHTS_FILE).exists() and not args.force:
        raise SoundspaceError(f"{out} already holds a model; pass --force to overwrite it")
    weights, source = checkpoint.read_tf_checkpoint(args.checkpoint, args.moving_averages)
    try:
        config = ModelConfig.from_shapes(
            {n: v.shape for n, v in weights.items()}, stages=args.stages, ae_stages=args.stages
        )
    except SoundspaceError as error:
        raise SoundspaceError(f"{args.checkpoint}: {error}") from None
    with made_folder(out):
        checkpoint.save_model(weights, config, out, source)
    print(
        f"converted {source['checkpoint']} (step {source['global_step']}): {len(weights)} "
        f"variables, {sum(v.size for v in weights.values()):,} parameters, "
        f"{config.describe()}; skipped {source['skipped_training_entries']} training entries"
        + (
            f"; {source['variables_from_moving_averages']} taken from moving averages"
            if args.moving_averages
            else ""
        )
        + f"\nwrote {out}/"
    )


def cmd_encode(args) -> None:
    from tqdm.auto import tqdm

    from .audio import load_audio
    from .nsynth import NSynth

    _unique_stems(args.inputs)
    sounds = {p: load_audio(p) for p in args.inputs}
    model = NSynth.load(args.model, device=args.device)
    by_length = defaultdict(list)
    for path, audio in sounds.items():
        by_length[len(audio)].append(path)
    with (
        made_folder(args.out) as out,
        tqdm(total=len(sounds), unit="sound", desc="encoding") as bar,
    ):
        for paths in by_length.values():
            embeddings = model.encode(
                np.stack([sounds[p] for p in paths]), drop_partial=not args.keep_partial_frame
            )
            for path, embedding in zip(paths, embeddings, strict=True):
                _save_npy(out / f"{Path(path).stem}.npy", embedding)
                bar.update()
    print(
        f"wrote {len(sounds)} embedding(s) of {model.config.bottleneck} values per "
        f"{model.config.hop} samples to {out}/"
    )


def _load_embedding(path, bottleneck: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise SoundspaceError(f"no such embedding file: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # numpy raises several types for files that are not .npy
        raise SoundspaceError(f"cannot read {path} as a .npy array ({error})") from None
    if array.dtype.kind not in "fiu":  # complex, bool, text: astype would drop or invent values
        raise SoundspaceError(
            f"{path} holds {array.dtype} values; an embedding is real numbers (float32) "
            "as `soundspace encode` writes it"
        )
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape[1] != bottleneck or array.shape[0] == 0:
        raise SoundspaceError(
            f"{path} has shape {list(array.shape)}; an embedding is "
            f"[frames, {bottleneck}] as `soundspace encode` writes it"
        )
    if not np.isfinite(array).all():
        raise SoundspaceError(f"{path} holds NaN or infinite values")
    return array.astype(np.float32)


def cmd_decode(args) -> None:
    from .audio import write_wav
    from .nsynth import NSynth

    _unique_stems(args.inputs)
    model = NSynth.load(args.model, device=args.device)
    embeddings = [_load_embedding(p, model.config.bottleneck) for p in args.inputs]
    # Sound i draws its noise from (seed, i) whatever batch it lands in. Frame counts come from
    # the files; sounds of equal length are decoded together, `--batch` at a time.
    by_frames = defaultdict(list)
    for i, embedding in enumerate(embeddings):
        by_frames[len(embedding)].append(i)
    start = time.perf_counter()
    with made_folder(args.out) as out:
        for indices in by_frames.values():
            for b0 in range(0, len(indices), args.batch or len(indices)):
                chunk = indices[b0 : b0 + (args.batch or len(indices))]
                audio = model.generate(
                    np.stack([embeddings[i] for i in chunk]),
                    seed=[[args.seed, i] for i in chunk],
                    temperature=args.temperature,
                    math=args.math,
                )
                for i, sound in zip(chunk, audio, strict=True):
                    write_wav(out / f"{Path(args.inputs[i]).stem}.wav", sound)
    seconds = sum(len(e) for e in embeddings) * model.config.hop / 16000
    print(
        f"decoded {len(embeddings)} sound(s), {seconds:.1f} s of audio, in "
        f"{time.perf_counter() - start:.1f} s; wrote {out}/"
    )


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3"}


# The hyper-parameters `soundspace train` takes as options: the fields of nsynth.ModelConfig, named
# here so that building the parser does not import torch (1.6 s on every command).
MODEL_SIZES = (
    "width",
    "skip_width",
    "layers",
    "stages",
    "ae_width",
    "ae_layers",
    "ae_stages",
    "bottleneck",
    "hop",
)


def cmd_train(args) -> None:
    from .audio import load_audio
    from .nsynth import NSynth
    from .nsynth.model import DEMO_CONFIG, ModelConfig
    from .nsynth.train import TrainOptions, train

    if not (math.isfinite(args.lr) and args.lr > 0):
        raise SoundspaceError(f"--lr {args.lr}: the learning rate must be a number above 0")
    if args.batch < 1:
        raise SoundspaceError(f"--batch {args.batch}: a step needs at least 1 crop")
    data = Path(args.data)
    if not data.is_dir():
        raise SoundspaceError(f"--data {data} is not a folder of sounds")
    out_at, data_at = Path(args.out).resolve(), data.resolve()
    if out_at == data_at or data_at in out_at.parents:
        raise SoundspaceError(
            f"--out {args.out} is the training data folder {data} or lies inside it, where the "
            "model would be mixed with the sounds; choose a model folder outside it"
        )
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SoundspaceError(f"{data} holds no sound files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    sounds = {p.name: load_audio(p) for p in files}
    sizes = {k: getattr(args, k) for k in MODEL_SIZES if getattr(args, k) is not None}
    init = NSynth.load(args.init) if args.init else None
    config = None
    if sizes or init is None:
        base = init.config.to_dict() if init is not None else DEMO_CONFIG.to_dict()
        config = ModelConfig.from_dict({**base, **sizes})
    options = TrainOptions(
        steps=args.steps,
        batch=args.batch,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        input_noise=args.input_noise,
        input_noise_end=args.input_noise_end,
        onset_crops=args.onset_crops,
        encoder_context=args.encoder_context,
        self_feed=args.self_feed,
        self_feed_from=args.self_feed_from,
    )
    with made_folder(args.out):
        out = train(
            sounds,
            args.out,
            config=config,
            init=init,
            options=options,
            device=args.device,
            compile=args.compile,
            overwrite=args.overwrite,
        )
    print(f"trained on {len(sounds)} sound(s); model folder: {out}/")


def cmd_inputs(args) -> None:
    from tqdm.auto import tqdm

    from .soundfont import PERCUSSION_BANK, choose, file_name, presets, render_notes

    if args.list:
        for (bank, program), name in sorted(presets(args.soundfont).items()):
            kit = " (percussion)" if bank == PERCUSSION_BANK else ""
            print(f"{bank:3d}:{program:<3d} {printable(name)}{kit}")
        return
    needed = [f"--{k}" for k in ("program", "pitches", "out") if getattr(args, k) is None]
    if needed:
        raise SoundspaceError(
            f"rendering notes needs {', '.join(needed)} too (--list shows the soundfont's presets)"
        )
    if not 0 < args.length <= 60:
        raise SoundspaceError(
            f"--length {args.length:g}: give the note length in seconds, more than 0 and at most 60"
        )
    if len(set(args.pitches)) < len(args.pitches):
        raise SoundspaceError(f"--pitches {' '.join(map(str, args.pitches))} names a pitch twice")
    if args.name is not None and len(args.name) != len(args.program):
        raise SoundspaceError(
            f"--name gives {len(args.name)} name(s) for {len(args.program)} --program(s): give "
            "one per program, or leave --name out to name each by its preset"
        )
    if Path(args.out).exists() and not Path(args.out).is_dir():  # found before the rendering
        raise SoundspaceError(f"--out {args.out} exists and is not a folder; choose another --out")
    chosen = choose(args.soundfont, args.program, args.bank)
    names = args.name or [file_name(preset) for _, preset in chosen]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SoundspaceError(
            f"two instruments would be named {', '.join(twice)}: give each its own --name"
        )
    described = ", ".join(f"{n} ({printable(p)})" for n, (_, p) in zip(names, chosen, strict=True))
    with tqdm(
        total=len(args.pitches) * len(chosen),
        unit="note",
        desc=f"rendering {described}"[:120],
        file=sys.stderr,
    ) as bar:
        written = render_notes(
            args.soundfont,
            args.bank,
            [(program, name) for (program, _), name in zip(chosen, names, strict=True)],
            args.pitches,
            args.length,
            args.out,  # made once every note is rendered
            velocity=args.velocity,
            progress=lambda pitch: bar.update(),
        )
    print(
        f"wrote {len(written)} note(s) of {len(chosen)} instrument(s) ({described}): "
        f"{', '.join(p.name for p in written)} in {args.out}/"
    )


def cmd_export(args) -> None:
    from .export import export

    loop = None
    if args.loop or args.loop_start is not None or args.loop_end is not None:
        loop = (
            0.2 if args.loop_start is None else args.loop_start,
            0.41 if args.loop_end is None else args.loop_end,
        )
    marker = export(
        args.source,
        args.format,
        args.out,
        pitch=args.pitch,
        length=args.length,
        data_directory=args.data_directory,
        cc_x=args.cc_x,
        cc_y=args.cc_y,
        extend=args.extend,
        attack=args.attack,
        release=args.release,
        loop=loop,
    )
    pads = len(marker["pads"])
    where = Path(args.out)
    if args.format == "onss":
        print(
            f"exported {pads} pad(s) for Open NSynth Super to {where}/: copy {where}/pads/ to the "
            f"device's {marker['options']['data_directory']} and merge "
            f"{where}/settings-fragment.json into its settings.json"
        )
        loop = marker["device_loop"]
        print(
            f"device loop: {loop['loopStart']:g} to {loop['loopEnd']:g} of each sound "
            f"({loop['why']})"
            if loop["looping"]
            else f"device loop: off ({loop['why']})"
        )
    elif args.format == "multisample":
        print(
            f"exported {pads} multisample(s) to {where}/: drop a .multisample on Bitwig's "
            "Sampler; its Select walks the cells row by row from the north-west"
        )
    else:
        what = "SFZ instrument(s)" if args.format == "sfz" else "Decent Sampler preset(s)"
        first = next(f for f in marker["files"] if f.endswith((".sfz", ".dspreset")))
        print(
            f"exported {pads} {what} to {where}/: open {where}/{first} in "
            f"{'a sampler' if args.format == 'sfz' else 'Decent Sampler'}; "
            f"CC {marker['options']['cc_x']} moves x"
            + (f", CC {marker['options']['cc_y']} moves y" if len(marker["labels"]) == 4 else "")
        )


def cmd_bench(args) -> None:
    from . import bench

    def ints(text):
        return tuple(int(v) for v in text.split(","))

    bench.run(
        batches=ints(args.batches),
        maths=tuple(args.math.split(",")),
        frames=args.frames,
        device=args.device,
        encode=not args.no_encode,
        snapshots=not args.no_snapshots,
    )


def _batch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a whole number of sounds per batch, 1 or more (0 = all at once)"
        )
    return value


# A page holding more than this in sounds is more than a browser opens comfortably.
MAX_EMBED_MB = 2000


def _embed_megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_EMBED_MB:  # NaN fails this too
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the size in MB from 0 to {MAX_EMBED_MB} (0 leaves every sound out "
            "of the page, to be played over soundspace serve)"
        )
    return value


def _midi_number(option: str, low: int = 0, high: int = 127):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {option} takes a whole number from {low} to {high}"
            )
        return value

    return parse


def _preset(text: str) -> str:
    """A program number 0-127, or a preset's name (checked against the soundfont later)."""
    if text.isascii() and text.isdigit() and not 0 <= int(text) <= 127:
        raise argparse.ArgumentTypeError(f"{text!r}: --program takes a whole number from 0 to 127")
    if not text.strip():
        raise argparse.ArgumentTypeError("--program: give a number or a preset's name")
    return text


def _sound_name(text: str) -> str:
    from .config import SOUND_NAME

    if not re.fullmatch(SOUND_NAME, text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use letters, digits, '.' or '-' (at most "
            "40, starting with a letter or digit)"
        )
    return text


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one its help does not state."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            action.option_strings
            and action.default is not None
            and action.default is not False
            and action.default != argparse.SUPPRESS
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """A mistake on the command line is one line too, with where to look (not the usage block,
    which buried the line that says what is wrong)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(
            2, f"{self.prog}: error: {printable(message)}; `{self.prog} --help` lists the options\n"
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("soundspace")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "(not installed: scripts/install)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="soundspace", description=__doc__)
    parser.add_argument("--version", action="version", version=f"soundspace {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="make a sound space from a dataset folder (resumes)")
    p.add_argument(
        "--workflow",
        help=f"workflow config: backend, device, models (default: {LOCAL_WORKFLOW} in the "
        "folder it runs in)",
    )
    p.add_argument(
        "--dataset",
        required=True,
        nargs="+",
        help="dataset folder(s) holding space.json and their sounds, or a folder of "
        "them; all their shards are scheduled together",
    )
    p.add_argument("--output", help="folder for the space (default: the workflow's output)")
    p.add_argument(
        "--force",
        action="store_true",
        help="make every cell again instead of keeping finished ones",
    )
    p.add_argument(
        "--no-pictures", action="store_true", help="skip space.png and the thumbnails (huge spaces)"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for another run writing the same space instead of refusing",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="make a library of more than 16,641 distinct decodes (see `plan`)",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("plan", help="count and price a space or library without decoding")
    p.add_argument("--dataset", required=True, help="dataset folder holding space.json")
    p.add_argument(
        "--workflow",
        help=f"the workflow whose model prices the decode (default: {LOCAL_WORKFLOW} here, "
        "else Magenta's full-size model is assumed)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "explore",
        help="(re)write the explorer of a space (index.html, pictures) or a library (index.html)",
    )
    p.add_argument(
        "space",
        metavar="FOLDER",
        help="a space or library folder that generate made (OUTPUT/<name>)",
    )
    p.add_argument("--no-pictures", action="store_true", help="skip space.png and the thumbnails")
    p.add_argument(
        "--wait", action="store_true", help="wait for a run writing the space instead of refusing"
    )
    p.add_argument(
        "--embed-max-mb",
        type=_embed_megabytes,
        default=8.0,
        help="sounds go into the page (to play from file://) only up to this size; "
        "above it the page fetches them over soundspace serve",
    )
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser(
        "serve", help="serve a space's or library's page on 127.0.0.1, also while it is being made"
    )
    p.add_argument(
        "space",
        metavar="FOLDER",
        help="a space or library folder that generate made or is making (OUTPUT/<name>)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=8765,
        help="TCP port on 127.0.0.1 (0: any free one, printed)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("render-shard", help="make the cells of one saved shard (what a job runs)")
    p.add_argument("spec", help="shard folder: shard.json + embeddings.npy")
    p.add_argument("--out", required=True, help="folder for the finished cells")
    p.add_argument(
        "--model",
        help="model folder or zip to use instead of the spec's path "
        "(e.g. under /storage); its identity must match",
    )
    p.add_argument("--device", help="device instead of the spec's (cpu, cuda, auto)")
    p.set_defaults(func=cmd_render_shard)

    p = sub.add_parser("convert", help="convert Magenta's TensorFlow checkpoint to a model folder")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint prefix (.../model.ckpt-200000) or the folder holding it",
    )
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument(
        "--moving-averages",
        action="store_true",
        help="take the exponential moving averages instead of the plain weights",
    )
    p.add_argument(
        "--stages",
        type=int,
        default=10,
        help="dilation cycle (layers per stage; 10 for Magenta's model)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing model folder")
    p.set_defaults(func=cmd_convert)

    def model_args(p):
        p.add_argument("--model", required=True, help="model folder (soundspace convert/train)")
        p.add_argument("--out", required=True, help="folder to write into")
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")

    p = sub.add_parser("encode", help="encode sounds to embeddings (.npy of [frames, 16])")
    p.add_argument("inputs", nargs="+", metavar="IN", help="sound files (any rate, channels)")
    model_args(p)
    p.add_argument(
        "--keep-partial-frame",
        action="store_true",
        help="zero-pad the last partial frame instead of dropping it (Magenta drops)",
    )
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode embeddings (.npy) to 16 kHz WAVs")
    p.add_argument("inputs", nargs="+", metavar="EMB", help=".npy embeddings [frames, 16]")
    model_args(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same audio)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="softmax temperature (1.0 samples as Magenta does)",
    )
    p.add_argument("--batch", type=_batch, default=0, help="sounds per batch (default: all)")
    p.add_argument(
        "--math",
        default="auto",
        choices=("auto", "numpy", "torch"),
        help="matrix library of the decoding loop (auto: numpy on CPU)",
    )
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("train", help="train (or fine-tune) a model on a folder of sounds")
    p.add_argument("--data", required=True, help="folder of sounds (wav, flac, ogg, aiff, mp3)")
    p.add_argument("--out", required=True, help="model folder; a run there is resumed")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a model already in --out (otherwise refused), starting from step 0",
    )
    p.add_argument("--init", help="start from this model folder (fine-tune), same size")
    p.add_argument("--steps", type=int, default=2000, help="training steps")
    p.add_argument("--batch", type=int, default=8, help="crops per step")
    p.add_argument("--crop", type=int, default=4096, help="samples per crop (multiple of 512)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, noise and weights")
    p.add_argument(
        "--checkpoint-every", type=int, default=100, help="steps between two saved checkpoints"
    )
    p.add_argument(
        "--input-noise",
        type=float,
        default=0.0,
        help="std of noise on the decoder's input samples (1/128 = one mu-law bin)",
    )
    p.add_argument(
        "--input-noise-end",
        type=float,
        help="let the noise fall from --input-noise to this along the learning rate's cosine",
    )
    p.add_argument(
        "--onset-crops",
        type=float,
        default=0.0,
        help="fraction of crops that start at a sound's first sample (0..1)",
    )
    p.add_argument(
        "--self-feed",
        type=float,
        default=0.0,
        help="fraction of the decoder's input samples replaced by its own draws (0..1)",
    )
    p.add_argument(
        "--self-feed-from",
        type=float,
        default=0.0,
        help="fraction of the run trained without self-feeding first (0..<1)",
    )
    p.add_argument(
        "--encoder-context",
        action="store_true",
        help="crops on frame boundaries, encoded with the audio around them as in generation",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the training step (a minute first, then ~1.4x faster on CPU)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    for field in MODEL_SIZES:
        p.add_argument(
            f"--{field.replace('_', '-')}",
            type=int,
            dest=field,
            help="model size (default: the demo model's, models/n-synth/checkpoints/demo)",
        )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("inputs", help="render NSynth-style notes from a soundfont (library inputs)")
    p.add_argument("--soundfont", required=True, help="a SoundFont 2 file (.sf2)")
    p.add_argument(
        "--list", action="store_true", help="list the soundfont's presets (bank:program name)"
    )
    p.add_argument(
        "--program",
        nargs="+",
        type=_preset,
        help="one or more presets: numbers 0-127 as the soundfont counts (General MIDI's list "
        "counts from 1: its program 34, Fingered bass, is 33 here) or names as --list prints them",
    )
    p.add_argument(
        "--bank",
        type=_midi_number("--bank", high=128),
        default=0,
        help="preset bank 0-127, or 128 for the percussion kits",
    )
    p.add_argument(
        "--pitches",
        nargs="+",
        type=_midi_number("--pitches"),
        help="MIDI notes to render (60 = middle C)",
    )
    p.add_argument(
        "--length",
        type=float,
        default=4.0,
        help="seconds per note: held for 3/4, then released (NSynth: 4)",
    )
    p.add_argument(
        "--velocity", type=_midi_number("--velocity", low=1), default=100, help="MIDI velocity"
    )
    p.add_argument(
        "--name",
        nargs="+",
        type=_sound_name,
        help="each program's sound name, files written as NAME_PITCH.wav (default: the preset's "
        "name, e.g. nylon-string-guitar)",
    )
    p.add_argument("--out", help="folder for the notes (a library's dataset)")
    p.set_defaults(func=cmd_inputs)

    p = sub.add_parser(
        "export",
        help="a space or library as an instrument: SFZ, Decent Sampler, Bitwig multisample or "
        "Open NSynth Super pads",
    )
    p.add_argument(
        "source",
        metavar="FOLDER",
        help="a space or library folder that generate made (OUTPUT/<name>)",
    )
    p.add_argument(
        "--format",
        required=True,
        type=str.lower,
        choices=("sfz", "decent", "multisample", "onss"),
        help="sfz (any SFZ sampler), decent (Decent Sampler), multisample (Bitwig, PreSonus) "
        "or onss (Open NSynth Super's pads); any case",
    )
    p.add_argument("--out", required=True, help="export folder (new, empty or an earlier export)")
    p.add_argument(
        "--pitch",
        type=_midi_number("--pitch"),
        help="MIDI note of a space's sounds (default: its space.json's pitch, else 60); "
        "a library knows its pitches",
    )
    p.add_argument("--length", type=int, help="onss: samples per sound at 16 kHz (default 60000)")
    p.add_argument(
        "--data-directory", help="onss: the pads folder on the device (default /home/pi/pads)"
    )
    p.add_argument(
        "--cc-x", type=_midi_number("--cc-x"), help="sfz, decent: controller for x (default 1)"
    )
    p.add_argument(
        "--cc-y", type=_midi_number("--cc-y"), help="sfz, decent: controller for y (default 2)"
    )
    p.add_argument(
        "--extend",
        type=int,
        help="sfz, decent, multisample: semitones played beyond the lowest and highest pitch "
        "(default 12)",
    )
    p.add_argument("--attack", type=float, help="sfz, decent: attack in seconds (default 0.005)")
    p.add_argument("--release", type=float, help="sfz, decent: release in seconds (default 0.15)")
    p.add_argument(
        "--loop",
        action="store_true",
        help="sfz, decent, multisample: loop while a key is held, from 20 %% to 41 %% of the "
        "sound's audible part",
    )
    p.add_argument(
        "--loop-start", type=float, help="loop start, a fraction of the audible part (default 0.2)"
    )
    p.add_argument(
        "--loop-end", type=float, help="loop end, a fraction of the audible part (default 0.41)"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="time the engine on the full-size network")
    p.add_argument("--batches", default="1,16,81", help="comma-separated batch sizes")
    p.add_argument("--math", default="numpy,torch", help="math libraries to compare")
    p.add_argument("--frames", type=int, default=2, help="timed frames of 512 steps per row")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--no-encode", action="store_true", help="skip the encoding timing")
    p.add_argument(
        "--no-snapshots", action="store_true", help="skip the snapshot and resume timings"
    )
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    from .files import describe

    args = build_parser().parse_args(argv)
    kept = (
        "; finished cells are kept: run the same command again to continue"
        if args.command in ("generate", "render-shard")
        else ""
    )
    try:
        with signals.as_exceptions():
            args.func(args)
    except SoundspaceError as error:
        print(f"soundspace {args.command}: error: {printable(str(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader has gone (`soundspace inputs --list | head`): quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        # The advice names the option that says where this command writes.
        out = "--output" if args.command == "generate" else "--out" if "out" in args else "folder"
        line = printable(describe(error, out=out))
        print(f"soundspace {args.command}: error: {line}", file=sys.stderr)
        return 2
    except signals.Terminated:
        print(f"soundspace {args.command}: stopped by SIGTERM{kept}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"soundspace {args.command}: interrupted{kept}", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, the traceback on request
        if os.environ.get("SOUNDSPACE_DEBUG"):
            raise
        print(
            f"soundspace {args.command}: internal error: {type(error).__name__}: "
            f"{printable(str(error))} "
            "(please report it; SOUNDSPACE_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
