"""The on-disk id cache: int32 ``.npy`` files written chunk by chunk, with per-block checksums.

Writing (:func:`write_ids`): the ids arrive in chunks of any size; they go to a temporary file
after a reserved 128-byte header, a CRC-32 is computed for every block of `BLOCK` ids (4 MB), and
when the last chunk is in, the ``.npy`` header with the final length is written at the front, the
file fsynced and renamed into place: memory stays bounded and a reader never sees a half file.

Checking (:class:`IdChecks`): the checksums live in the split's JSON sidecar. When a cache entry is
opened, its structure is checked (header, dtype, length, file size) and the CRC of every block is
verified if the array has at most `FULL_CHECK_BLOCKS` blocks (64 MB, about 30 ms), otherwise the CRCs
of the first, the last and `SAMPLE_BLOCKS` evenly spread blocks; a mismatch makes ``prepare`` rebuild
the entry (with a note). The other blocks of a large array are verified the first time training
reads them (:meth:`IdChecks.ensure`, called by the trainer before a chunk's ids are used); a
mismatch there is a one-line error, and the damaged file is removed so that the next run rebuilds
it. Nothing is ever trained on ids that failed their checksum.

The text-change key (:func:`file_fingerprint`): path, size, mtime_ns and a SHA-256 of `SAMPLES`
blocks of 64 KiB spread evenly over the file (the whole file when it is smaller than that), so an
unchanged multi-GB corpus is recognised without reading it all.
"""
from __future__ import annotations

import hashlib
import io
import os
import zlib
from dataclasses import dataclass, field

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.data.text import atomic_write

BLOCK = 1 << 20            # ids per checksummed block (4 MB)
FULL_CHECK_BLOCKS = 16     # arrays of at most this many blocks are fully verified when opened
SAMPLE_BLOCKS = 6          # otherwise: the first, the last and this many blocks in between
SAMPLES = 16               # sampled 64 KiB pieces in a text file's fingerprint
SAMPLE_BYTES = 1 << 16
HEADER_BYTES = 128


def file_fingerprint(path: str) -> dict:
    """Cheap identity of a file's contents: size, mtime_ns and a hash of sampled blocks."""
    st = os.stat(path)
    size = st.st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= SAMPLES * SAMPLE_BYTES:
            h.update(fh.read())
        else:
            step = (size - SAMPLE_BYTES) // (SAMPLES - 1)
            for i in range(SAMPLES):
                fh.seek(i * step)
                h.update(fh.read(SAMPLE_BYTES))
    return {"path": os.path.abspath(path), "size": size, "mtime_ns": st.st_mtime_ns,
            "sampled_sha256": h.hexdigest()}


def _header(n: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i4", "fortran_order": False, "shape": (n,)})
    head = buf.getvalue()
    if len(head) != HEADER_BYTES:   # cannot happen below 10**60 ids; refuse rather than misplace data
        raise RnnlmError(f"id cache: unexpected .npy header size {len(head)}")
    return head


def _crc(a: np.ndarray, value: int = 0) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(a, dtype="<i4")).cast("B"), value)


@dataclass
class IdChecks:
    """Block checksums of one cached id array and which blocks were verified in this process."""
    n: int
    block: int
    crc32: list
    path: str = ""
    source: str = ""                       # the text it was made from (for messages)
    verified: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        if self.verified is None:
            self.verified = np.zeros(len(self.crc32), dtype=bool)

    @property
    def n_blocks(self) -> int:
        return len(self.crc32)

    def to_json(self) -> dict:
        return {"n": self.n, "block": self.block, "crc32": list(self.crc32)}

    @classmethod
    def from_json(cls, d: dict, path: str = "", source: str = "") -> "IdChecks":
        n, block, crcs = int(d["n"]), int(d["block"]), [int(c) for c in d["crc32"]]
        if block < 1 or len(crcs) != -(-n // block):
            raise ValueError("checksum list does not match the length")
        return cls(n, block, crcs, path, source)

    def fingerprint(self) -> str:
        """A digest of the contents (length + every block's CRC), cheap to compute."""
        return hashlib.sha256(repr((self.n, self.block, self.crc32)).encode()).hexdigest()[:16]

    def _bad_blocks(self, arr, blocks) -> list:
        bad = []
        for k in blocks:
            if not self.verified[k]:
                if _crc(arr[k * self.block:(k + 1) * self.block]) != self.crc32[k]:
                    bad.append(int(k))
                else:
                    self.verified[k] = True
        return bad

    def check_at_open(self, arr) -> list:
        """Verify every block (small arrays) or a sample; returns the blocks that fail."""
        return self._bad_blocks(arr, blocks_checked_at_open(self.n_blocks))

    def ensure(self, arr, lo: int, hi: int | None = None, *, starts=None) -> None:
        """Verify (once per process) the blocks holding ids lo : hi, or, with `starts` (an array of
        offsets), ids s + lo : s + hi for every s; a mismatch removes the file and raises a one-line
        error."""
        if self.verified.all():
            return
        hi = lo + 1 if hi is None else hi
        if hi <= lo:
            return
        offs = np.zeros(1, np.int64) if starts is None else np.asarray(starts, np.int64)
        first = np.maximum(offs + lo, 0) // self.block
        last = np.minimum((offs + hi - 1) // self.block, self.n_blocks - 1)
        need = set()
        for f, l in zip(first.tolist(), last.tolist()):
            for k in range(f, l + 1):
                if not self.verified[k]:
                    need.add(k)
        bad = self._bad_blocks(arr, sorted(need))
        if bad:
            raise self.damaged(bad)

    def verify_all(self, arr) -> None:
        self.ensure(arr, 0, self.n)

    def damaged(self, bad) -> RnnlmError:
        """The error for blocks that fail their checksum; the cache entry is removed."""
        removed = ""
        if self.path:
            for p in (self.path, os.path.splitext(self.path)[0] + ".json"):
                try:
                    os.unlink(p)
                    removed = "; it was removed, run the command again to rebuild it"
                except OSError:
                    pass
            if self.source:
                removed += f" from {self.source}"
        return RnnlmError(f"{self.path or 'id array'}: damaged id cache (block {bad[0]} of "
                          f"{self.n_blocks} fails its checksum){removed}")


def blocks_checked_at_open(nb: int) -> list:
    """Every block when there are at most FULL_CHECK_BLOCKS, else the first, the last and
    SAMPLE_BLOCKS evenly spread between them."""
    if nb <= FULL_CHECK_BLOCKS:
        return list(range(nb))
    return sorted({0, nb - 1, *np.linspace(0, nb - 1, SAMPLE_BLOCKS + 2).astype(int).tolist()})


def checks_for_array(arr: np.ndarray, block: int | None = None) -> IdChecks:
    """IdChecks computed from an in-memory array (every block marked verified)."""
    arr, block = np.asarray(arr), block or BLOCK
    crcs = [_crc(arr[i:i + block]) for i in range(0, len(arr), block)]
    ch = IdChecks(len(arr), block, crcs)
    ch.verified[:] = True
    return ch


def write_ids(path, chunks, block: int | None = None) -> IdChecks:
    """Write int32 `chunks` (an iterable of 1-D arrays) as one ``.npy`` at `path`, atomically,
    in bounded memory; returns the block checksums (blocks of `block`, default `BLOCK`, ids)."""
    block = block or BLOCK
    crcs: list = []
    state = {"n": 0, "crc": 0, "fill": 0}

    def write(fh):
        fh.write(b"\0" * HEADER_BYTES)
        for chunk in chunks:
            a = np.ascontiguousarray(chunk, dtype="<i4")
            i = 0
            while i < len(a):   # feed the running block CRC, closing blocks at their boundaries
                take = min(len(a) - i, block - state["fill"])
                state["crc"] = _crc(a[i:i + take], state["crc"])
                state["fill"] += take
                i += take
                if state["fill"] == block:
                    crcs.append(state["crc"])
                    state["crc"] = state["fill"] = 0
            fh.write(memoryview(a).cast("B"))
            state["n"] += len(a)
        if state["fill"]:
            crcs.append(state["crc"])
        fh.seek(0)
        fh.write(_header(state["n"]))

    atomic_write(path, write)
    return IdChecks(state["n"], block, crcs, str(path))


def open_ids(path, checks: IdChecks) -> np.ndarray:
    """Memory-map a cache file written by `write_ids`; ValueError if its structure or a checked
    block is wrong (the caller rebuilds it)."""
    size = os.path.getsize(path)
    if size != HEADER_BYTES + 4 * checks.n:
        raise ValueError(f"size {size} does not match {checks.n} ids")
    if checks.n == 0:
        arr = np.load(path, allow_pickle=False)
    else:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.dtype != np.int32 or arr.ndim != 1 or len(arr) != checks.n:
        raise ValueError("stale cache entry")
    bad = checks.check_at_open(arr)
    if bad:
        raise ValueError(f"block {bad[0]} of {checks.n_blocks} fails its checksum")
    return arr
