"""Streaming text input: validated lines read in chunks (bounded memory), with progress reports.

:class:`TextStream` applies exactly the policy of :func:`rnnlm.data.text.decode_lines` (universal
newlines, a leading UTF-8 byte-order mark dropped, lines stripped, blank lines skipped and counted)
and raises the same one-line errors with the same byte offsets (invalid UTF-8, NUL bytes, UTF-16,
an empty file, a text of blank lines only), but reads the file `CHUNK_BYTES` at a time: memory is
bounded by the chunk size plus the longest line, whatever the size of the file. The file can be
iterated several times (one pass counts the vocabulary, the next encodes it); standard input is
first copied to a temporary file (see :func:`spool_stdin`).

Errors that need the whole text (nothing but blank lines) are raised at the end of a pass; bytes
that are not UTF-8 are reported when the pass reaches them.

Progress (:class:`Progress`): a tqdm bar on stderr when stderr is a terminal, otherwise one plain
line on stderr every `RNNLM_PROGRESS_SECONDS` (default 30) seconds, and nothing for short jobs.

Example::

    >>> ts = TextStream("train.txt")                  # doctest: +SKIP
    >>> sum(1 for _ in ts.lines()), ts.n_blank        # doctest: +SKIP
    (42068, 0)
"""
from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time

from rnnlm.errors import RnnlmError
from rnnlm.data.text import STDIN, check_path, decode_block, display_name

CHUNK_BYTES = 1 << 22          # bytes read at a time
LINES_PER_BATCH = 1 << 14      # lines handed on at a time by `batches`


def batched(lines, n: int = LINES_PER_BATCH):
    """Lists of up to `n` consecutive items of the iterable `lines`."""
    it = iter(lines)
    while batch := list(itertools.islice(it, n)):
        yield batch


def _tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of a job measured in `unit`s (bytes by default) out of `total`.

    On a terminal: a tqdm bar on stderr. Otherwise: a plain line on stderr every `every` seconds
    (``$RNNLM_PROGRESS_SECONDS``, default 30), so logs of long jobs show they are alive and short
    jobs print nothing. `enabled=False` silences it."""

    def __init__(self, desc: str, total: int | None, *, unit: str = "B", enabled: bool = True,
                 every: float | None = None, bar: bool | None = None):
        """`bar`: True/False forces the tqdm bar on/off (then plain lines), None: on a terminal."""
        self.desc, self.total, self.unit, self.done = desc, total, unit, 0
        self.t0 = self.last = time.monotonic()
        env = os.environ.get("RNNLM_PROGRESS_SECONDS", "")
        try:
            self.every = float(every if every is not None else (env or 30.0))
        except ValueError:
            self.every = 30.0
        self.bar = None
        self.enabled = enabled
        if enabled and (_tty(sys.stderr) if bar is None else bar):
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
                            file=sys.stderr, dynamic_ncols=True)

    def _fmt(self, n: float) -> str:
        if self.unit == "B":
            for u in ("B", "KB", "MB", "GB", "TB"):
                if n < 1000 or u == "TB":
                    return f"{n:.0f} {u}" if u == "B" else f"{n:.1f} {u}"
                n /= 1000
        return f"{n:,.0f} {self.unit}"

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            of = f" of {self._fmt(self.total)}" if self.total else ""
            print(f"rnnlm: {self.desc}: {self._fmt(self.done)}{of}{pct}, {now - self.t0:.0f} s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def spool_stdin(directory=None) -> str:
    """Copy standard input to a temporary file (the caller removes it); returns its path."""
    fd, tmp = tempfile.mkstemp(prefix="rnnlm-stdin-", suffix=".txt", dir=directory)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, CHUNK_BYTES)
    return tmp


class TextStream:
    """A validated one-sentence-per-line text file, read in chunks; iterable many times.

    After a complete pass ``n_lines`` (non-blank lines), ``n_blank`` and ``n_bytes`` hold that
    pass's counts. `display` is the name used in messages (default: the path as given)."""

    def __init__(self, path, display: str | None = None, *, chunk_bytes: int = CHUNK_BYTES):
        self.path = str(path)
        self.name = display or check_path(path)
        if display:
            check_path(path)
        self.size = os.path.getsize(self.path)
        if self.size == 0:
            raise RnnlmError(f"{self.name}: empty file")
        self.chunk_bytes = int(chunk_bytes)
        self.n_lines = self.n_blank = self.n_bytes = 0

    def _blocks(self, progress: Progress | None):
        """Yield (file offset, bytes) blocks that end right after a line break (the last one: at
        the end of the file). A line is never split, so each block decodes on its own."""
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise RnnlmError(f"{self.name}: cannot read: {exc.strerror or exc}") from None
        with fh:
            rest, base = b"", 0
            while True:
                try:
                    data = fh.read(self.chunk_bytes)
                except OSError as exc:
                    raise RnnlmError(f"{self.name}: cannot read: {exc.strerror or exc}") from None
                if progress is not None and data:
                    progress.update(len(data))
                if not data:
                    if rest:
                        yield base, rest
                    return
                buf = rest + data if rest else data
                cut = buf.rfind(b"\n") + 1
                cr = buf.rfind(b"\r", 0, len(buf) - 1) + 1   # a lone CR ends a line too (not one last)
                cut = max(cut, cr)
                if cut == 0:
                    rest = buf          # no line break yet: a long line keeps growing
                    continue
                yield base, buf[:cut]
                base += cut
                rest = buf[cut:]

    def batches(self, progress: Progress | None = None, lines_per_batch: int = LINES_PER_BATCH):
        """Yield lists of non-blank stripped lines (at most about `lines_per_batch` each)."""
        try:
            yield from self._batches(progress, lines_per_batch)
        finally:
            if progress is not None:
                progress.close()

    def _batches(self, progress, lines_per_batch):
        n_lines = n_blank = 0
        first = b""
        for base, block in self._blocks(progress):
            if base == 0:
                first = block[:4]
            text = decode_block(block, self.name, base, first)
            if base == 0 and text.startswith("\ufeff"):
                text = text[1:]
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            raw = text.split("\n")
            if raw and raw[-1] == "":
                raw.pop()
            out = []
            for row in raw:
                s = row.strip()
                if s:
                    out.append(s)
                else:
                    n_blank += 1
            n_lines += len(out)
            for i in range(0, len(out), lines_per_batch):
                yield out[i:i + lines_per_batch]
        self.n_lines, self.n_blank, self.n_bytes = n_lines, n_blank, self.size
        if not n_lines:
            if n_blank:
                raise RnnlmError(f"{self.name}: no text: all {n_blank} lines are blank")
            raise RnnlmError(f"{self.name}: empty file")

    def lines(self, progress: Progress | None = None):
        """Yield the non-blank stripped lines one by one."""
        for batch in self.batches(progress):
            yield from batch

    def progress(self, verb: str, enabled: bool = True) -> Progress:
        """A byte-counting Progress for one pass over this file (`verb`: "counting", ...)."""
        return Progress(f"{verb} {self.name}", self.size, enabled=enabled)

    def __repr__(self) -> str:
        return f"TextStream({self.name!r}, {self.size:,} bytes)"


def open_text(path) -> tuple[TextStream, str | None]:
    """A TextStream for `path`; ``-`` (stdin) is spooled to a temporary file first, whose path is
    returned as the second item for the caller to remove (None for a real file)."""
    if str(path) == STDIN:
        tmp = spool_stdin()
        try:
            return TextStream(tmp, display_name(path)), tmp
        except BaseException:
            os.unlink(tmp)
            raise
    return TextStream(path), None
