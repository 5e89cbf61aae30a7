"""Guarding the files a command writes: never an input, one writer at a time, writable before work.

- `refuse_inputs(out, inputs)`: an output path that is, or resolves to (symlinks, `..`, hard links),
  one of the command's inputs is refused in one line, with or without --force.
- `OutputLock(path)`: an advisory lock (flock) on `PATH.lock` beside the resolved output path, held
  while a command writes PATH and its companions (`.ckpt`, `.log.jsonl`, `.png`); a second writer
  gets a one-line error instead of interleaving with the first. The lock file is removed on release.
- `check_writable(path)`: the directory that will receive `path` (through its symlink, if any; or
  its nearest existing ancestor, where the directories are still to be made) accepts a new file;
  checked before hours of training rather than after them.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rnnlm.errors import RnnlmError

try:   # POSIX; elsewhere the lock is a no-op (documented in docs/reliability.md)
    import fcntl
except ImportError:   # pragma: no cover
    fcntl = None


def resolve(path: str | os.PathLike) -> Path:
    """The path a write to `path` lands on: symlinks followed, made absolute."""
    return Path(os.path.realpath(os.fspath(path)))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if writing `a` would replace `b` (same resolved path, or the same existing inode)."""
    ra, rb = resolve(a), resolve(b)
    if ra == rb:
        return True
    try:
        return os.path.samefile(ra, rb)
    except OSError:
        return False


def refuse_inputs(out, inputs, what: str = "output") -> None:
    """Raise a one-line RnnlmError if `out` is any of `inputs` (None and '-' entries are ignored)."""
    if out is None:
        return
    for inp in inputs:
        if inp is None or os.fspath(inp) == "-":
            continue
        if same_file(out, inp):
            extra = "" if os.fspath(out) == os.fspath(inp) else f" (it resolves to {inp})"
            raise RnnlmError(f"{out}: the {what} is also an input of this command{extra}; "
                             f"refusing to overwrite it (choose another file)")


def check_writable(path: str | os.PathLike) -> None:
    """Raise a one-line RnnlmError unless a new file can be created where `path` will be written."""
    target = resolve(path)
    parent = target.parent
    while not parent.exists() and parent != parent.parent:   # directories still to be made
        parent = parent.parent
    if not parent.is_dir():
        raise RnnlmError(f"{path}: {parent} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".probe")
    except OSError as exc:
        raise RnnlmError(f"{path}: cannot write in {parent}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)


class OutputLock:
    """`with OutputLock(model_path):` holds an exclusive advisory lock on `MODEL.lock` (resolved
    through symlinks, so two names of one file share the lock). Non-blocking: a second holder gets
    RnnlmError at once. Re-entrant within a process is not supported (and not needed)."""

    def __init__(self, path: str | os.PathLike, what: str = "model"):
        self.path = os.fspath(path)
        self.what = what
        self.lock_path = str(resolve(path)) + ".lock"
        self._fd = None

    def acquire(self) -> "OutputLock":
        if fcntl is None:   # pragma: no cover
            return self
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RnnlmError(f"{self.path}: cannot create the lock file {self.lock_path}: "
                                 f"{exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f" (process {holder})" if holder else ""
                raise RnnlmError(f"{self.path}: another rnnlm process{who} is writing this {self.what} "
                                 f"(lock {self.lock_path}); wait for it or choose another file") from None
            # the previous holder may have removed the file between our open and flock: retry then
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.lock_path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        s = os.read(fd, 32).decode("ascii", "replace").strip()
        return s if s.isdigit() else ""
    except OSError:
        return ""
