"""Model folders: Magenta's TensorFlow checkpoint in, the project's own format out and back.

A model folder holds `weights.safetensors` (float32, Magenta's variable names and shapes) and
`model.json` (format, hyper-parameters, sha256 of the weights file, where the weights came
from). Loading checks the sha256. The model's identity, which manifests record and every cell's
key includes, covers the weights *and* the hyper-parameters: the same weights with another hop or
dilation cycle make other sounds.

Conversion reads the checkpoint with TensorFlow's own reader (the optional `convert` extra), takes
the plain variables Magenta's generator restores and skips optimizer slots, moving averages and
`global_step` (or, on request, takes the moving averages in place of the plain values).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from .. import SoundspaceError
from ..files import DuplicateKey, atomic_file, atomic_write, parse_json, sha256_file
from .model import ModelConfig

FORMAT = "soundspace-nsynth-1"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "model.json"
EMA_SUFFIX = "/ExponentialMovingAverage"
# Entries a training checkpoint carries beside the weights (Adam slots and powers, the step).
_TRAINING_EXTRAS = re.compile(
    r"(.*/(Adam|Adam_1|ExponentialMovingAverage)|global_step|beta[12]_power)"
)
TF_INSTALL = "pip install 'soundspace[convert]'   (or: pip install tensorflow-cpu)"


def identity(weights_sha256: str, config: ModelConfig) -> str:
    """The model's name: sha256 of its weights' sha256 and its hyper-parameters."""
    text = json.dumps(
        {"weights_sha256": weights_sha256, "config": config.to_dict()}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint prefix (`.../model.ckpt-200000`) or the folder holding one -> the prefix."""
    path = Path(path)
    if Path(f"{path}.index").is_file():
        return path
    if path.is_dir():
        indexes = sorted(path.glob("*.index"))
        state = path / "checkpoint"
        if state.is_file():  # TensorFlow's pointer to the latest checkpoint in the folder
            match = re.search(r'^model_checkpoint_path:\s*"(.+)"', state.read_text(), re.M)
            if match and Path(f"{path / match.group(1)}.index").is_file():
                return path / match.group(1)
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        if indexes:
            raise SoundspaceError(
                f"{path} holds {len(indexes)} checkpoints "
                f"({', '.join(i.stem for i in indexes)}): pass one prefix, "
                f"e.g. --checkpoint {indexes[-1].with_suffix('')}"
            )
        raise SoundspaceError(
            f"{path} holds no TensorFlow checkpoint (no *.index file); "
            "pass the folder of wavenet-ckpt.tar or a prefix like "
            ".../model.ckpt-200000"
        )
    if path.name.endswith((".index", ".meta")) or ".data-" in path.name:
        hint = re.sub(r"(\.index|\.meta|\.data-\d+-of-\d+)$", "", str(path))
        raise SoundspaceError(f"{path} is one file of a checkpoint: pass its prefix {hint}")
    raise SoundspaceError(
        f"no TensorFlow checkpoint at {path}: neither {path}.index nor a folder holding one exists"
    )


def read_tf_checkpoint(path, moving_averages: bool = False) -> tuple[dict, dict]:
    """Read the weights of a Magenta checkpoint -> (`{name: float32 array}`, source info)."""
    prefix = resolve_checkpoint(path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up chatter is not ours
    try:
        import tensorflow as tf
    except ImportError:
        raise SoundspaceError(
            "reading a TensorFlow checkpoint needs TensorFlow, which is not "
            f"installed; install it with: {TF_INSTALL}"
        ) from None
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as error:  # TF raises several internal error types for damaged files
        raise SoundspaceError(
            f"TensorFlow could not read the checkpoint {prefix}: {str(error).splitlines()[0]}"
        ) from None
    shapes = reader.get_variable_to_shape_map()
    plain = sorted(n for n in shapes if not _TRAINING_EXTRAS.fullmatch(n))
    weights, averaged = {}, 0
    for name in plain:
        source = name
        if moving_averages and name + EMA_SUFFIX in shapes:
            source, averaged = name + EMA_SUFFIX, averaged + 1
        weights[name] = np.asarray(reader.get_tensor(source), dtype=np.float32)
    step = int(reader.get_tensor("global_step")) if "global_step" in shapes else None
    info = {
        "checkpoint": prefix.name,
        "global_step": step,
        "index_sha256": sha256_file(Path(f"{prefix}.index")),
        "moving_averages": moving_averages,
        "variables_from_moving_averages": averaged,
        "skipped_training_entries": len(shapes) - len(plain),
    }
    return weights, info


def save_model(weights: dict, config: ModelConfig, out_dir, source: dict) -> Path:
    """Write a model folder; files appear under their final names only when complete."""
    from safetensors.numpy import save_file

    config.check_shapes({n: v.shape for n, v in weights.items()})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / WEIGHTS_FILE) as tmp:
        save_file({n: np.ascontiguousarray(v, dtype=np.float32) for n, v in weights.items()}, tmp)
        umask = os.umask(0)  # safetensors creates its file private (0600); give it the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        meta = {
            "format": FORMAT,
            "config": config.to_dict(),
            "weights_sha256": sha256_file(tmp),
            "parameters": int(sum(v.size for v in weights.values())),
            "source": source,
        }
    atomic_write(out / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return out


def load_model(path, verify: bool = True) -> tuple[dict, ModelConfig, dict]:
    """Read a model folder -> (`{name: float32 array}`, config, metadata)."""
    from safetensors.numpy import load_file

    folder = Path(path)
    if folder.name == CONFIG_FILE:
        folder = folder.parent
    meta_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise SoundspaceError(f"no model folder at {folder}")
    for needed in (meta_path, weights_path):
        if not needed.is_file():
            hint = (
                (
                    " (a TensorFlow checkpoint? convert it first: soundspace convert "
                    f"--checkpoint {folder} --out MODEL_DIR)"
                )
                if list(folder.glob("*.index"))
                else ""
            )
            raise SoundspaceError(
                f"{folder} is not a soundspace model folder: {needed.name} is missing{hint}"
            )
    try:
        meta = parse_json(meta_path.read_text())
    except DuplicateKey as error:
        raise SoundspaceError(f"{meta_path}: {error}; give it once") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SoundspaceError(f"{meta_path} is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise SoundspaceError(f"{meta_path} has format {found!r}, expected {FORMAT!r}")
    recorded = meta.get("weights_sha256")
    if not isinstance(recorded, str) or not re.fullmatch(r"[0-9a-f]{64}", recorded):
        # The sha256 is what loading checks and what names the model in every manifest.
        raise SoundspaceError(
            f"{meta_path} records no sha256 of {WEIGHTS_FILE} (field weights_sha256, got "
            f"{json.dumps(recorded)[:70]}), so the weights cannot be checked; convert or copy "
            "the model again (soundspace convert and train write it)"
        )
    if verify and sha256_file(weights_path) != recorded:
        raise SoundspaceError(
            f"{weights_path} does not match the sha256 in {meta_path}: the "
            "file is damaged or was replaced; convert or copy the model again"
        )
    try:
        config = ModelConfig.from_dict(meta.get("config"))
    except SoundspaceError as error:
        raise SoundspaceError(f"{meta_path}: {error}") from None
    try:
        weights = load_file(weights_path)
    except Exception as error:  # safetensors raises its own error type for damaged headers
        raise SoundspaceError(f"cannot read {weights_path}: {error}") from None
    try:
        config.check_shapes({n: v.shape for n, v in weights.items()})
    except SoundspaceError as error:
        raise SoundspaceError(
            f"{folder}: {error}; its {CONFIG_FILE} does not describe its {WEIGHTS_FILE}: "
            "convert or copy the model again"
        ) from None
    return weights, config, meta
