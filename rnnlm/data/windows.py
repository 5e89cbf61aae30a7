"""Token streams and truncated-BPTT windows (pure NumPy).

A corpus is one flat int32 array: each line's ids followed by the end-of-sentence id. The model reads
the previous token and predicts the next one; the very first token is predicted from `</s>`, as in
rnnlm-0.4b, so every token of the text (every `</s>` included) is predicted exactly once.

The training text may be a read-only memory map of any size: `shifted` and `Streams` read only the
ids a chunk or window needs (small writable copies), never the whole array.
"""
from __future__ import annotations

import numpy as np

from rnnlm.errors import RnnlmError


def inputs_targets(ids: np.ndarray, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """x[i] = ids[i - 1] (x[0] = eos), y[i] = ids[i]; both int32, contiguous and writable (a read-only
    array, e.g. a memory-mapped cache, would make Numba compile every kernel a second time)."""
    y = np.require(ids, np.int32, ["C", "W"])
    x = np.empty_like(y)
    if len(y):
        x[0] = eos
        x[1:] = y[:-1]
    return x, y


def shifted(ids: np.ndarray, eos: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """`inputs_targets(ids, eos)` restricted to positions a : b, read from `ids` alone: x[i] =
    ids[i - 1] (eos before the first token), y[i] = ids[i]; small writable int32 copies."""
    y = np.array(ids[a:b], dtype=np.int32)
    x = np.empty_like(y)
    if len(y):
        x[0] = eos if a == 0 else ids[a - 1]
        x[1:] = y[:-1]
    return x, y


class Streams:
    """`streams(ids, eos, batch)` without copying the text: B contiguous streams of L = len // B
    tokens, windows cut from `ids` (e.g. a memory map) when asked for. ``starts[b]`` is stream b's
    first position in `ids`; ``dropped`` tokens at the end are not used."""

    def __init__(self, ids: np.ndarray, eos: int, batch: int):
        n = len(ids)
        L = n // batch
        if L == 0:
            raise RnnlmError(f"training text of {n} tokens is shorter than --batch-size {batch}")
        self.ids, self.eos, self.batch, self.L = ids, int(eos), int(batch), L
        self.dropped = n - L * batch
        self.starts = np.arange(batch, dtype=np.int64) * L
        self.shape = (batch, L)

    def columns(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """x, y of steps start : end of every stream: (B, end - start) contiguous copies, equal to
        ``xs[:, start:end]``, ``ys[:, start:end]`` of `streams`."""
        end = min(end, self.L)
        B, L, ids = self.batch, self.L, self.ids
        y2 = ids[:B * L].reshape(B, L)
        y = np.array(y2[:, start:end], dtype=np.int32)
        x = np.empty_like(y)
        if end > start:
            if start > 0:
                x[:] = y2[:, start - 1:end - 1]
            else:
                x[:, 1:] = y[:, :-1]
                x[0, 0] = self.eos
                if B > 1:
                    x[1:, 0] = ids[self.starts[1:] - 1]
        return x, y

    def window(self, start: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """`window(xs, ys, start, steps)` of `streams`' arrays."""
        x, y = self.columns(start, start + steps)
        return np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)

    def windows(self, start: int, count: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """`windows(xs, ys, start, count, steps)` of `streams`' arrays."""
        x, y = self.columns(start, start + count * steps)
        B = self.batch
        return (np.ascontiguousarray(x.reshape(B, count, steps).transpose(1, 2, 0)),
                np.ascontiguousarray(y.reshape(B, count, steps).transpose(1, 2, 0)))


def streams(ids: np.ndarray, eos: int, batch: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Cut the text into `batch` contiguous streams of equal length L = len // batch.

    Returns x, y of shape (batch, L) and the number of tokens dropped at the end (< batch).
    """
    x, y = inputs_targets(ids, eos)
    L = len(y) // batch
    if L == 0:
        raise RnnlmError(f"training text of {len(y)} tokens is shorter than --batch-size {batch}")
    used = L * batch
    return x[:used].reshape(batch, L), y[:used].reshape(batch, L), len(y) - used


def window(xs: np.ndarray, ys: np.ndarray, start: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The (T, B) time-major window of steps start : start + steps (shorter at the end)."""
    return (np.ascontiguousarray(xs[:, start:start + steps].T),
            np.ascontiguousarray(ys[:, start:start + steps].T))


def windows(xs: np.ndarray, ys: np.ndarray, start: int, count: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` whole windows from step `start`, stacked: (count, steps, B) arrays, window w the
    (T, B) window of steps start + w * steps : start + (w + 1) * steps."""
    B = xs.shape[0]
    end = start + count * steps
    return (np.ascontiguousarray(xs[:, start:end].reshape(B, count, steps).transpose(1, 2, 0)),
            np.ascontiguousarray(ys[:, start:end].reshape(B, count, steps).transpose(1, 2, 0)))


def num_windows(length: int, steps: int) -> int:
    return (length + steps - 1) // steps
