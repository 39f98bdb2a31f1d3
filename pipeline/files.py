"""Files on disk, safely: paths from untrusted places, atomic writes, a lock per folder, and
file-system errors as one line a user can act on.

Every relative path read from a file, a server or a worker that this run did not just write
(a cell name in a manifest or a shard spec, a record's `file`, a requested URL) goes through
`inside()`, the one place that decides "this name stays inside this folder". Every file is written
under a temporary name unique to its writer and renamed, so two writers never share a temporary
file and a file under its final name is always whole.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from . import SoundspaceError

TEMP_SUFFIX = ".tmp"


class DuplicateKey(ValueError):
    """A JSON object that gives one key twice (the message names it and both values)."""


def _unique_keys(pairs: list) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(
                f"key {json.dumps(key)[:60]} is given twice in one object ("
                f"{json.dumps(seen[key])[:30]} and {json.dumps(value)[:30]})"
            )
        seen[key] = value
    return seen


def parse_json(text: str | bytes):
    """JSON as `json.loads` reads it, except that an object giving a key twice is refused
    (DuplicateKey, a ValueError): `json.loads` keeps the last value without a word, so a user
    who wrote a field twice would get the one they did not mean. Every JSON file the package
    reads back (configurations, manifests, records, model folders, shard specs) comes here."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:  # the parser recurses once per level of nesting
        raise json.JSONDecodeError(
            "nested too deeply",
            text if isinstance(text, str) else "",
            0,
        ) from None


def inside(root, relative, what: str = "path") -> Path:
    """`root / relative`, refused unless `relative` is a plain relative path that stays inside
    `root`: not absolute, no `..`, no empty or odd parts, and no symbolic link leading out."""
    if not isinstance(relative, str) or not relative or "\0" in relative or "\\" in relative:
        raise SoundspaceError(f"refusing {what} {relative!r}: not a plain relative file name")
    parts = relative.split("/")
    if any(part in ("..", ".", "") for part in parts):  # also an absolute path's leading ""
        raise SoundspaceError(f"refusing {what} {relative!r}: it must stay inside {root}")
    root = Path(root)
    path = root.joinpath(*parts)
    # Without `..` the name can only leave `root` through a symbolic link among its own parts, so
    # only those are looked at (one lstat each, not a resolve of the whole path: a run checks
    # every one of a library's hundred thousand names), and a link only where it leads.
    probe = root
    for part in parts:
        probe = probe / part
        try:
            if not stat.S_ISLNK(os.lstat(probe).st_mode):
                continue
        except OSError:  # not there (yet), or not a folder: nothing further to follow
            break
        try:
            resolved_root, resolved = root.resolve(), path.resolve()
        except RuntimeError:  # Python 3.11 reports a loop of links so (3.13: OSError ELOOP)
            raise SoundspaceError(
                f"refusing {what} {relative!r}: its symbolic links form a loop"
            ) from None
        if resolved_root != resolved and resolved_root not in resolved.parents:
            raise SoundspaceError(
                f"refusing {what} {relative!r}: it leads out of {root} (a symbolic link?)"
            )
        break
    return path


def real_folder(root, relative: str) -> Path:
    """`root / relative` (parts joined by "/") as real folders, each made where missing. A
    symbolic link in the place of one, or a file, is refused before anything is written into
    it: a link there would carry the run's files outside `root` (`root` itself, the folder the
    user named, may be a link)."""
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    for part in relative.split("/"):
        if part in ("", ".", "..") or "\0" in part:
            raise SoundspaceError(f"refusing folder name {relative!r}: it must stay inside {root}")
        path = path / part
        try:
            path.mkdir()
            continue
        except FileExistsError:
            mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise SoundspaceError(
                f"{path} is a symbolic link where soundspace keeps a folder of its own; remove "
                "the link (nothing is written through one)"
            )
        if not stat.S_ISDIR(mode):
            raise SoundspaceError(f"{path} is a file where soundspace keeps a folder; move it away")
    return path


def remove_own(root, relative: str) -> None:
    """Remove `root / relative` (parts joined by "/"), a file the run wrote earlier, where it is
    still there; never through a symbolic link in the place of one of its folders, which would
    delete a file elsewhere (refused as `real_folder` refuses it)."""
    path = Path(root)
    *folders, name = relative.split("/")
    for part in folders:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise SoundspaceError(
                f"{path} is a symbolic link where soundspace keeps a folder of its own; remove "
                "the link (nothing is written through one)"
            )
    (path / name).unlink(missing_ok=True)


def open_own(path: Path, mode: str):
    """Open a file of the run's own for writing (a lock), never through a symbolic link put in
    its place: that would write into whatever file the link names."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if mode == "w" else os.O_APPEND)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SoundspaceError(
                f"{path} is a symbolic link where soundspace keeps a file of its own; remove "
                "the link (nothing is written through one)"
            ) from None
        raise
    return os.fdopen(fd, mode)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def megabytes(size: int) -> str:
    """A size for messages about disk room."""
    return f"{size / 1e6:,.1f} MB"


def temp_path(path: Path) -> Path:
    """A temporary name beside `path`, unique to this writer (`.NAME.PID-RANDOM.tmp`)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextmanager
def atomic_file(path, sync: bool = True):
    """A temporary path beside `path` for the block to write (by any means: a library's own
    writer, a hard link); renamed to `path` when the block ends without error, removed otherwise.
    `sync`: the bytes reach the disk before the rename, so the file survives a power loss."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, flushed to disk, and a rename."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


@contextmanager
def atomic_folder(path, keep_existing: bool = False):
    """A temporary folder beside `path` for the block to fill; when the block ends without error
    it replaces `path` (by two renames: a reader sees the old folder or the new one, whole), or,
    with `keep_existing`, is dropped where `path` exists (another writer finished first and the
    contents are the same). Removed on error."""
    path = Path(path)
    building = temp_path(path)
    building.mkdir()
    try:
        yield building
        if keep_existing and path.exists():
            shutil.rmtree(building, ignore_errors=True)
            return
        if path.exists():
            old = temp_path(path)
            os.rename(path, old)
            os.rename(building, path)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(building, path)
        except OSError:
            if not (keep_existing and path.exists()):  # else another writer renamed first
                raise
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def first_missing(path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (`path` itself when only it is
    missing), or None: what making `path` would create."""
    path, missing = Path(path), None
    while not os.path.lexists(path) and path != path.parent:
        missing, path = path, path.parent
    return missing


@contextmanager
def made_folder(path):
    """Make the output folder `path` (and its missing parents) for the block; if the block fails
    or is interrupted, remove again those it made that are still empty: a failed command leaves
    no empty folder behind, but never removes a file it wrote."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SoundspaceError(f"--out {path} exists and is not a folder; choose another --out")
    top = first_missing(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if top is not None:
            made = [path, *path.parents]
            for folder in made[: made.index(top) + 1]:
                try:
                    folder.rmdir()
                except OSError:
                    break  # not empty: what is in it stays
        raise


def is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


# What to do about each error; {out} is where the command was told to write.
_HINTS = {
    errno.EROFS: "the file system is read-only: choose a writable {out}",
    errno.ENOSPC: "free some space or choose another {out}",
    errno.EDQUOT: "free some space or choose another {out}",
    errno.EACCES: "make it writable for this user or choose another {out}",
    errno.EPERM: "make it writable for this user or choose another {out}",
    errno.ENOTDIR: "a part of this path is a file, not a folder: move that file away or choose "
    "another {out}",
    errno.EISDIR: "a folder stands where a file should be: move that folder away",
    errno.EEXIST: "a file stands where a folder should be: move that file away or choose "
    "another {out}",
    errno.ENAMETOOLONG: "choose a shorter {out}",
}


def describe(error: OSError, hint: bool = True, out: str = "--output") -> str:
    """One line for a file-system error: the path, the cause and (`hint`) what to do, naming
    `out`, the option (or "folder") that says where the command writes."""
    where = "" if error.filename is None else f"{error.filename}: "
    if error.filename2 is not None:
        where = f"{error.filename} -> {error.filename2}: "
    cause = error.strerror or str(error) or type(error).__name__
    advice = _HINTS.get(error.errno) if hint and error.errno is not None else None
    return f"{where}{cause}" + (f"; {advice.format(out=out)}" if advice else "")


def _names_a_live_process(line: str) -> bool:
    """Whether a lock file's line ("process PID on HOST (since ...)") may name a running process:
    false only for a process of this machine that has ended."""
    words = line.split()
    if (
        len(words) < 4
        or words[0] != "process"
        or not words[1].isdigit()
        or words[3] != socket.gethostname()
    ):
        return True
    try:
        os.kill(int(words[1]), 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process, or no process id at all: shown as written
    return True


_HELD_HERE: set[str] = set()  # the locks this process holds (a second flock of its own would fail)


class FolderLock:
    """An exclusive lock on a folder (`flock` on a file in it), held by one process at a time and
    released by the kernel when that process ends, even by `kill -9`. The file names the holder,
    so a second run can say who it is waiting for."""

    def __init__(self, path: Path, what: str):
        self.path, self.what, self.held = Path(path), what, False
        self.file: TextIO | None = None

    def holder(self, patience: float = 1.0) -> str:
        """Who holds the lock, as the holder wrote it. A holder writes its line just after it
        takes the lock, so a file that is empty or names a process of this machine that has
        ended (a run killed before it could clear its line) belongs to a run that started a
        moment earlier: it is read again for up to `patience` seconds before the holder goes
        unnamed."""
        deadline = time.monotonic() + patience
        while True:
            try:
                text = self.path.read_text().strip()
            except OSError:
                return "another process"
            if text and _names_a_live_process(text):
                return text
            if time.monotonic() > deadline:
                return "another process"
            time.sleep(0.01)

    def held_elsewhere(self) -> str | None:
        """Who holds the lock now (see `holder`), or None when no process does: a reader's
        question, which neither creates the file nor keeps the lock."""
        if os.path.realpath(self.path) in _HELD_HERE:
            return None
        return self.holder() if self.taken() else None

    def taken(self) -> bool:
        """Whether some process holds the lock now: a probe that waits for nothing (not for a
        FIFO put where the lock file goes either)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False  # no lock file (or not one of ours): nobody holds it
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock taken just to ask
        return False

    def acquire(self, wait: bool = False, log=print) -> FolderLock:
        self.file = file = open_own(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = self.holder()
                self.release()
                raise SoundspaceError(
                    f"{self.what} is being written by {holder}; wait for that "
                    "run to end (or pass --wait to wait for it)"
                ) from None
            log(f"waiting for {self.holder()} to finish with {self.what} ...")
            fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        file.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        file.write(f"process {os.getpid()} on {socket.gethostname()} (since {started})\n")
        file.flush()
        self.held = True
        _HELD_HERE.add(os.path.realpath(self.path))
        return self

    def release(self) -> None:
        if self.file is not None:
            if self.held:  # leave no name behind for the next run to report
                _HELD_HERE.discard(os.path.realpath(self.path))
                try:
                    self.file.truncate(0)
                    self.file.flush()
                except OSError:
                    pass  # a stale name is only read back after checking that it lives
            self.file.close()  # closing drops the flock
            self.held = False
            self.file = None
