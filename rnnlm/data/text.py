"""Validated reading of one-sentence-per-line UTF-8 text files.

Every problem a user can fix becomes a one-line :class:`~rnnlm.errors.RnnlmError` naming the file:
missing file, a directory, an empty corpus, bytes that are not UTF-8 (with the byte offset of the
first bad byte) and NUL bytes (with their byte offset).

Line policy (shared by every reader in the package, including the `datasets` code path):
newlines are universal (``\\n``, ``\\r\\n`` and a lone ``\\r`` all end a line, as in Python's text
mode), a leading UTF-8 byte-order mark is dropped, each line is stripped of surrounding
whitespace, and blank (whitespace-only) lines are skipped and counted in ``TextLines.n_blank``.

Example::

    >>> from rnnlm.data.text import read_lines
    >>> lines = read_lines("train.txt")          # doctest: +SKIP
    >>> len(lines), lines.n_blank                # doctest: +SKIP
    (42068, 0)
"""
from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from rnnlm.errors import RnnlmError

STDIN = "-"


class TextLines(list):
    """A list of non-blank, stripped lines plus where they came from.

    Attributes: ``source`` (the file name as given, ``<stdin>`` for ``-``) and ``n_blank``
    (how many blank or whitespace-only lines were skipped).
    """

    def __init__(self, lines: Iterable[str] = (), *, source: str = "<text>", n_blank: int = 0):
        super().__init__(lines)
        self.source = source
        self.n_blank = n_blank

    def __repr__(self) -> str:
        return f"TextLines(source={self.source!r}, lines={len(self)}, n_blank={self.n_blank})"


def display_name(path: str | os.PathLike) -> str:
    """How a path is shown in messages: ``-`` becomes ``<stdin>``, otherwise the path as given."""
    return "<stdin>" if str(path) == STDIN else str(path)


def check_path(path) -> str:
    """The one-line errors for a text file's path (a directory, missing, unreadable), without reading
    it; returns the name to show."""
    name = display_name(path)
    p = Path(path)
    if p.is_dir():
        raise RnnlmError(f"{name}: is a directory, expected a text file")
    if not p.exists():
        raise RnnlmError(f"{name}: no such file")
    if not os.access(p, os.R_OK):
        raise RnnlmError(f"{name}: cannot read: Permission denied")
    return name


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a whole file (``-`` = standard input) as bytes, with one-line errors.

    >>> read_bytes("missing.txt")                 # doctest: +SKIP
    RnnlmError: missing.txt: no such file
    """
    if str(path) == STDIN:
        return sys.stdin.buffer.read()
    name = check_path(path)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise RnnlmError(f"{name}: cannot read: {exc.strerror or exc}") from None


def check_text_bytes(data: bytes, name: str) -> str:
    """Decode `data` as UTF-8 text or raise RnnlmError naming the first bad byte offset.

    >>> check_text_bytes(b"ok\\n", "a.txt")
    'ok\\n'
    """
    return decode_block(data, name)


def decode_block(block: bytes, name: str, base: int = 0, first: bytes | None = None) -> str:
    """`block`, the bytes of a file from offset `base` on, decoded as UTF-8, or the one-line error
    naming the first bad byte's file offset (a NUL, UTF-16 judged by the file's `first` bytes, or
    bytes that are not UTF-8). The whole-file reader and the streaming one share it."""
    first = block[:2] if first is None else first
    nul = block.find(b"\x00")
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        if nul != -1 and nul < exc.start:
            raise RnnlmError(f"{name}: NUL byte at byte {base + nul} (binary file?)") from None
        if base + exc.start == 0 and first[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise RnnlmError(f"{name}: UTF-16 text (byte-order mark 0x{first[:2].hex()} at byte 0); "
                             "re-encode the file as UTF-8") from None
        raise RnnlmError(f"{name}: not UTF-8 at byte {base + exc.start} "
                         f"(byte 0x{block[exc.start]:02x}); re-encode the file as UTF-8") from None
    if nul != -1:
        raise RnnlmError(f"{name}: NUL byte at byte {base + nul} (binary file?)")
    return text


def clean_lines(raw: Iterable[str], name: str, *, allow_empty: bool = False) -> TextLines:
    """Strip lines, drop and count blank ones; error if nothing is left (unless `allow_empty`).

    Lines may still contain newline characters (e.g. rows of a `datasets` column); they are
    split further so that every reader yields the same lines.

    >>> clean_lines(["a b\\r\\n", "  ", "c"], "x")
    TextLines(source='x', lines=2, n_blank=1)
    """
    out: list[str] = []
    n_blank = 0
    for row in raw:
        if row is None:
            n_blank += 1
            continue
        if "\r" in row or "\n" in row:
            row = row.replace("\r\n", "\n").replace("\r", "\n")
            parts = row.split("\n")
            if parts and parts[-1] == "":
                parts.pop()  # a trailing line break ends the line, it does not start a new one
        else:
            parts = [row]
        for part in parts:
            s = part.strip()
            if s:
                out.append(s)
            else:
                n_blank += 1
    if not out and not allow_empty:
        if n_blank:
            raise RnnlmError(f"{name}: no text: all {n_blank} lines are blank")
        raise RnnlmError(f"{name}: empty file")
    return TextLines(out, source=name, n_blank=n_blank)


def decode_lines(data: bytes, name: str, *, allow_empty: bool = False) -> TextLines:
    """Validate and split raw bytes into :class:`TextLines` (see the module doc for the policy).

    >>> decode_lines(b"\\xef\\xbb\\xbfa b\\r\\n\\r\\nc\\n", "t.txt")
    TextLines(source='t.txt', lines=2, n_blank=1)
    """
    if not data and not allow_empty:
        raise RnnlmError(f"{name}: empty file")
    text = check_text_bytes(data, name)
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    raw = text.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    return clean_lines(raw, name, allow_empty=allow_empty)


def read_lines(path: str | os.PathLike, *, allow_empty: bool = False) -> TextLines:
    """Read a one-sentence-per-line UTF-8 file (``-`` = stdin) into validated :class:`TextLines`.

    >>> lines = read_lines("corpora/synthetic/train.txt")   # doctest: +SKIP
    >>> lines[0], lines.n_blank                             # doctest: +SKIP
    ('the cat sat', 0)
    """
    name = display_name(path)
    return decode_lines(read_bytes(path), name, allow_empty=allow_empty)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call `write(fh)` on a temp file next to `path`, fsync, then os.replace (readers never see
    halves; on any failure the old file is untouched and the temp file removed).

    A symlink at `path` is kept: its target is replaced. The new file keeps the permission bits of
    the file it replaces, else gets the usual 0666 minus the umask (not mkstemp's 0600)."""
    shown = Path(path)
    if shown.is_dir():
        raise RnnlmError(f"{shown}: is a directory")
    p = Path(os.path.realpath(path)) if shown.is_symlink() else shown
    try:
        mode = stat.S_IMODE(os.stat(p).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise RnnlmError(f"{shown}: cannot write: {exc.strerror or exc}") from None
    try:  # make the rename itself durable
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is a set-and-get)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))
