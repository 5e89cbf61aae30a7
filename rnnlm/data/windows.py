"""Token streams and truncated-BPTT windows (pure NumPy).

A corpus is one flat int32 array: each line's ids followed by the end-of-sentence id. The model reads
the previous token and predicts the next one; the very first token is predicted from `</s>`, as in
rnnlm-0.4b, so every token of the text (every `</s>` included) is predicted exactly once.
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
