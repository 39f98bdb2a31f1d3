"""Decoder snapshots: a decode resumed inside its sounds, not from the start of its shard.

While a batch of a shard decodes, what it has drawn so far is kept every `snapshot_seconds` of
decoding, and at once when the run is stopped (Ctrl-C, SIGTERM), in
`.soundspace/snapshots/<batch key>.snapshot`: one line of JSON saying whose it is, then the
mu-law samples of every sound of the batch, one byte each. That is the whole state: the random
streams are advanced past what was drawn, and the layer histories are rebuilt by replaying the
decoder's reach (`nsynth.generate.replay`), so the resumed batch ends bit for bit as if it had
never stopped. A second of a sound costs 16 kB, whatever the model's size.

A snapshot is read back from disk, so it is checked like any input: its key (model, embeddings,
seeds, lengths, batch, math library, device type) must be the batch's, its frame count inside the
decode, its samples as many as it says and with the sha256 it records. Anything else (truncated,
another batch's, another version's, garbage) is renamed `*.set-aside` with a one-line warning,
and the batch starts from its beginning. A batch's snapshot goes when its cells are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import numpy as np

from . import SoundspaceError, signals, warn
from .audio import SAMPLE_RATE
from .files import atomic_write, inside, parse_json, real_folder
from .output import STATE, cell_wav

FOLDER = STATE / "snapshots"
PARTIAL = STATE / "partial"  # each cell in flight's audio so far, to listen to while it is made
FADE = 160  # samples (10 ms) faded out at a partial sound's cut, so that it ends without a click
FORMAT = "soundspace-snapshot-1"
SUFFIX = ".snapshot"
SET_ASIDE = ".set-aside"
_HEADER_BYTES = 4096  # the JSON line is far shorter; a longer one is not a snapshot


def batch_key(spec, batch: list[int], math: str, device: str) -> str:
    """What a batch's audio depends on, hashed: a snapshot is this batch's only when it says so.
    (The cell keys cover the model, the inputs, the weights, seeds, lengths and post-processing;
    the embeddings, batch composition, math library and device type decide the bits of the
    decode itself.) `math` and `device`: those the decode runs with, resolved."""
    fields = {
        "format": FORMAT,
        "model": spec.model["identity"],
        "points": [spec.points[i]["key"] for i in batch],
        "seeds": [spec.points[i]["seed"] for i in batch],
        "frames": int(spec.embeddings.shape[1]),
        "hop": spec.model["hop"],
        "math": math,
        "device": device.split(":")[0],
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(spec.embeddings[batch], np.float32).tobytes())
    return digest.hexdigest()


def path(store: Path, key: str) -> Path:
    return Path(store) / FOLDER / f"{key}{SUFFIX}"


def save(store: Path, key: str, frames: int, drawn: np.ndarray) -> None:
    """Keep a batch's samples drawn in its first `frames` frames (atomically: a kill during the
    write leaves the previous snapshot)."""
    data = np.ascontiguousarray(drawn, np.uint8)
    header = {
        "format": FORMAT,
        "key": key,
        "frames": frames,
        "shape": list(data.shape),
        "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
    }
    with signals.held():  # a second signal must not cut the snapshot the first one asked for
        real_folder(store, FOLDER.as_posix())
        atomic_write(path(store, key), json.dumps(header).encode() + b"\n" + data.tobytes())


def restore(store: Path, key, data) -> None:
    """Put a snapshot received from elsewhere (a lost Ray task's) where `load` looks for it: it
    is checked there like any other; only its name is checked here, as it becomes a file name."""
    if not (
        isinstance(key, str) and re.fullmatch(r"[0-9a-f]{64}", key) and isinstance(data, bytes)
    ):
        raise SoundspaceError(f"refusing snapshot {str(key)[:70]!r}: not a batch key and bytes")
    real_folder(store, FOLDER.as_posix())
    atomic_write(path(store, key), data)


def load(store: Path, key: str, batch: int, frames: int, hop: int) -> tuple[int, np.ndarray] | None:
    """The batch's snapshot as `(frames done, drawn)`, or None: none there, or one set aside."""
    where = path(store, key)
    try:  # not through a link, not a FIFO or device, not more than a snapshot of it can hold
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        _set_aside(where, f"cannot be read ({error.strerror})")
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _HEADER_BYTES + batch * frames * hop:
            _set_aside(where, "not a snapshot file, or larger than one of this batch")
            return None
        try:
            data = f.read(_HEADER_BYTES + batch * frames * hop)
        except OSError as error:
            _set_aside(where, f"cannot be read ({error.strerror})")
            return None
    found = parse(data, key, batch, frames, hop)
    if isinstance(found, str):
        _set_aside(where, found)
        return None
    return found


def parse(data: bytes, key: str, batch: int, frames: int, hop: int) -> tuple[int, np.ndarray] | str:
    """A snapshot's bytes as `(frames done, drawn)` when they are the batch's snapshot `key`
    (module docstring), else why not."""
    line, _, body = data.partition(b"\n")
    try:
        header = parse_json(line[:_HEADER_BYTES])
    except ValueError as error:  # not JSON: not a snapshot
        return f"not a snapshot ({type(error).__name__})"
    if len(line) >= _HEADER_BYTES or not isinstance(header, dict):
        return "not a snapshot"
    if header.get("format") != FORMAT:
        return "not a snapshot of this version"
    if header.get("key") != key:
        return "another batch's snapshot"
    done = header.get("frames")
    if type(done) is not int or not 0 < done < frames:
        return f"its frame count {str(done)[:20]} is not inside the decode"
    if header.get("shape") != [batch, done * hop] or len(body) != batch * done * hop:
        return "truncated, or of another size than it says"
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        return "its samples are not the ones it recorded (damaged)"
    return done, np.frombuffer(body, np.uint8).reshape(batch, done * hop)


def _set_aside(where: Path, why: str) -> None:
    aside = where.with_name(where.name + SET_ASIDE)
    try:
        os.replace(where, aside)
    except OSError:
        aside = where  # cannot be moved: it is left, and still not used
    warn(f"{where}: {why}; set aside as {aside.name}, and this batch decodes from its beginning")
    return None


def save_partial(store: Path, cells: list[list[str]], drawn: np.ndarray) -> None:
    """With each snapshot: every cell of the batch gets its audio so far (`cells[b]`: the cells
    of sound b) as `.soundspace/partial/<cell>.wav`, raw from the decoder, faded at the cut."""
    from .audio import wav_bytes
    from .nsynth.mulaw import inverse_mu_law

    folder = real_folder(store, PARTIAL.as_posix())
    for names, bins in zip(cells, drawn, strict=True):
        audio = inverse_mu_law(bins.astype(np.int32) - 128)
        fade = min(FADE, len(audio))
        audio[len(audio) - fade :] *= np.linspace(1, 0, fade, dtype=audio.dtype)
        data = wav_bytes(audio)
        for name in names:
            cell_wav(store, name)  # a cell's name, nothing else, becomes a file name
            atomic_write(folder / f"{name}.wav", data)


def partial_seconds(store: Path, names: set) -> dict:
    """How many seconds of each of these cells its last snapshot holds (its partial WAV's
    length); the folder is listed, as it holds only the cells in flight."""
    found: dict[str, float] = {}
    try:  # the folder itself must lie inside the store (a link out is not followed)
        entries = list(os.scandir(inside(Path(store), PARTIAL.as_posix(), "partial folder")))
    except (OSError, SoundspaceError):
        return found
    for entry in entries:
        name = entry.name.removesuffix(".wav")
        if name in names and entry.name.endswith(".wav"):
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            found[name] = round(max(0, size - 44) / 2 / SAMPLE_RATE, 3)
    return dict(sorted(found.items()))


def remove(store: Path, key: str) -> None:
    """The batch is written: its snapshot (and any set aside for it) is no longer needed."""
    where = path(store, key)
    where.unlink(missing_ok=True)
    where.with_name(where.name + SET_ASIDE).unlink(missing_ok=True)


def clear(store: Path) -> None:
    """`--force`: the snapshots and partial audio of every decode in flight go too."""
    for folder in (FOLDER, PARTIAL):
        for path in (Path(store) / folder).glob("*"):
            if not path.is_dir() or path.is_symlink():
                path.unlink()


def forget_partial(store: Path) -> None:
    """A run has planned: the partial WAVs of earlier runs go (a cell now made with another seed
    would play the old sound as its progress); a batch that resumes writes its own again from
    its snapshot at once (`shards.render_shard`)."""
    for path in (Path(store) / PARTIAL).glob("*.wav"):
        if not path.is_dir():
            path.unlink(missing_ok=True)


def remove_partial(store: Path, names) -> None:
    """The cells are written: their partial audio goes."""
    for name in names:
        (Path(store) / PARTIAL / f"{name}.wav").unlink(missing_ok=True)
