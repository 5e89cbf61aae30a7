"""Smoothed n-gram baselines over integer token-id streams (NumPy only).

The stream is a flat array of token ids: the words of each sentence followed by the
end-of-sentence id.  Token ``i`` is conditioned on the ``order - 1`` tokens before it; the
stream is left-padded with ``pad_id`` (use the ``</s>`` id, so the context at the start of the
stream is the same as at every other sentence start).

* :class:`KneserNey` -- interpolated modified Kneser-Ney (Chen & Goodman 1999), orders 1-3+,
  interpolated down to the uniform distribution, so every id in ``range(vocab_size)`` gets
  positive probability and each conditional distribution sums to one exactly.
* :class:`AddK` -- add-k (Lidstone) smoothing of the maximum-likelihood n-gram estimate.

n-grams are encoded as int64 keys ``((w1 * V) + w2) * V + w3`` and looked up with
``np.unique`` / ``np.searchsorted``, so fitting and scoring 1M tokens takes about a second. When
``V ** order`` does not fit in int64 (a 5-gram over 10,000 words), the same keys are exact Python
integers in object arrays: the same results, several times slower.

>>> model = KneserNey.fit(train_ids, vocab_size=V, order=3, pad_id=eos_id)
>>> model.perplexity(test_ids), model.logprob(test_ids)[:5]
"""
from __future__ import annotations

import numpy as np

__all__ = ["NGramModel", "KneserNey", "AddK"]


def _check_ids(ids, vocab_size: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError("ids must be a 1-D integer array")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size})")
    return ids


def _key_dtype(vocab_size: int, order: int):
    """int64 when every key fits in it, else object (exact Python integers)."""
    return np.int64 if float(vocab_size) ** order < 2.0 ** 63 else object


def _encode(padded: np.ndarray, start: int, length: int, k: int, vocab_size: int, dtype=np.int64) -> np.ndarray:
    """Keys of the k-grams ``padded[j-k+1 .. j]`` for j in ``start .. start+length-1``."""
    key = np.zeros(length, dtype=dtype)
    for off in range(k - 1, -1, -1):
        key = key * vocab_size + padded[start - off:start - off + length].astype(dtype)
    return key


def _lookup(table: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each key in the sorted unique ``table`` and whether it was found."""
    if table.size == 0:
        return np.zeros(keys.shape, np.int64), np.zeros(keys.shape, bool)
    idx = np.searchsorted(table, keys)
    idx = np.minimum(idx, table.size - 1)
    return idx, table[idx] == keys


class NGramModel:
    """Common scoring interface; subclasses set ``order``, ``vocab_size``, ``pad_id`` and
    implement ``_prob`` (probabilities of ``padded[start:start+length]`` given their contexts)."""

    order: int
    vocab_size: int
    pad_id: int

    def _prob(self, padded: np.ndarray, start: int, length: int) -> np.ndarray:
        raise NotImplementedError

    def _setup(self, ids, vocab_size: int, order: int, pad_id: int) -> np.ndarray:
        """Validate the arguments of ``fit``, store them and return the padded id stream."""
        if order < 1:
            raise ValueError("order must be >= 1")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must lie in [0, {vocab_size})")
        self.order, self.vocab_size, self.pad_id = int(order), int(vocab_size), int(pad_id)
        self.key_dtype = _key_dtype(self.vocab_size, self.order)
        ids = _check_ids(ids, vocab_size)
        if ids.size == 0:
            raise ValueError("cannot fit on an empty stream")
        return self._padded(ids)

    def _padded(self, ids: np.ndarray) -> np.ndarray:
        pad = np.full(self.order - 1, self.pad_id, dtype=np.int64)
        return np.concatenate([pad, ids])

    def prob(self, ids) -> np.ndarray:
        """Probability of every token of the stream given its ``order - 1`` predecessors."""
        ids = _check_ids(ids, self.vocab_size)
        return self._prob(self._padded(ids), self.order - 1, ids.size)

    def logprob(self, ids) -> np.ndarray:
        """Natural-log probability of every token of the stream (float64 array, len(ids))."""
        return np.log(self.prob(ids))

    def perplexity(self, ids) -> float:
        """``exp(-mean logprob)`` over all tokens of the stream."""
        lp = self.logprob(ids)
        return float(np.exp(-lp.mean())) if lp.size else float("nan")

    def distribution(self, context) -> np.ndarray:
        """``P(w | context)`` for every id w (array of length ``vocab_size``).

        ``context`` holds the preceding tokens (most recent last); only the last ``order - 1``
        are used, and a shorter context is left-padded with ``pad_id``.
        """
        ctx = _check_ids(np.asarray(context, dtype=np.int64).reshape(-1), self.vocab_size)
        k = self.order - 1
        ctx = ctx[ctx.size - k:] if k else ctx[:0]
        ctx = np.concatenate([np.full(k - ctx.size, self.pad_id, np.int64), ctx])
        V = self.vocab_size
        # Lay out V copies of [ctx, w]; position k + j*(k+1) is the word slot of copy j.
        rows = np.empty((V, k + 1), dtype=np.int64)
        rows[:, :k] = ctx
        rows[:, k] = np.arange(V)
        flat = rows.reshape(-1)
        probs = self._prob(flat, k, flat.size - k)
        return probs[:: k + 1]


class KneserNey(NGramModel):
    """Interpolated modified Kneser-Ney; build with :meth:`KneserNey.fit`."""

    @classmethod
    def fit(cls, ids, vocab_size: int, order: int = 3, pad_id: int = 0) -> "KneserNey":
        """Count the n-grams of ``ids`` (1-D int array, ids < ``vocab_size``) and estimate
        discounts.  ``pad_id`` is the context before the first token (the ``</s>`` id)."""
        self = cls()
        padded = self._setup(ids, vocab_size, order, pad_id)
        V, n = self.vocab_size, padded.size - (order - 1)
        keys, counts = np.unique(_encode(padded, order - 1, n, order, V, self.key_dtype), return_counts=True)
        # levels[k-1] describes k-grams: keys, (adjusted) counts, discounts, context tables.
        self.levels = [None] * order
        for k in range(order, 0, -1):
            self.levels[k - 1] = self._level(keys, counts.astype(np.float64), k)
            if k > 1:   # continuation counts: number of distinct left extensions of each (k-1)-gram
                keys, counts = np.unique(keys % V ** (k - 1), return_counts=True)
        return self

    def _level(self, keys: np.ndarray, counts: np.ndarray, k: int) -> dict:
        V = self.vocab_size
        disc = self.discounts(counts)
        d_of = disc[np.minimum(counts, 3).astype(np.int64)]
        level = {"keys": keys, "disc_counts": counts - d_of, "discounts": disc}
        ctx = keys // V
        ctx_keys, first = np.unique(ctx, return_index=True)
        level["ctx_keys"] = ctx_keys
        level["ctx_total"] = np.add.reduceat(counts, first)
        level["ctx_gamma"] = np.add.reduceat(d_of, first) / level["ctx_total"]
        return level

    @staticmethod
    def discounts(counts: np.ndarray) -> np.ndarray:
        """``[0, D1, D2, D3+]`` from counts-of-counts (Chen & Goodman); falls back to one
        plain-KN discount ``n1 / (n1 + 2 n2)`` (or 0.5) when a count-of-count is zero."""
        n = [np.count_nonzero(counts == c) for c in (1, 2, 3, 4)]
        y = n[0] / (n[0] + 2.0 * n[1]) if n[0] and n[1] else 0.5
        if min(n) == 0:
            return np.array([0.0, y, y, y])
        disc = np.array([0.0, 1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]])
        return np.clip(disc, 0.0, [0.0, 1.0, 2.0, 3.0])   # D(c) <= c keeps counts non-negative

    def _prob(self, padded: np.ndarray, start: int, length: int) -> np.ndarray:
        V = self.vocab_size
        p = np.full(length, 1.0 / V)
        for k in range(1, self.order + 1):
            lev = self.levels[k - 1]
            key = _encode(padded, start, length, k, V, self.key_dtype)
            idx, found = _lookup(lev["keys"], key)
            num = np.where(found, lev["disc_counts"][idx], 0.0)
            cidx, cfound = _lookup(lev["ctx_keys"], key // V)
            total = np.where(cfound, lev["ctx_total"][cidx], 1.0)
            gamma = np.where(cfound, lev["ctx_gamma"][cidx], 1.0)
            p = num / total + gamma * p
        return p


class AddK(NGramModel):
    """Add-k smoothing: ``P(w | h) = (c(h, w) + k) / (c(h) + k V)``."""

    @classmethod
    def fit(cls, ids, vocab_size: int, order: int = 2, k: float = 0.1, pad_id: int = 0) -> "AddK":
        """Count the n-grams of ``ids``; ``k > 0`` is the pseudo-count added to every n-gram."""
        if not k > 0:
            raise ValueError("k must be > 0")
        self = cls()
        padded = self._setup(ids, vocab_size, order, pad_id)
        self.k = float(k)
        keys = _encode(padded, order - 1, padded.size - (order - 1), order, self.vocab_size, self.key_dtype)
        self.keys, self.counts = np.unique(keys, return_counts=True)
        self.ctx_keys, first = np.unique(self.keys // self.vocab_size, return_index=True)
        self.ctx_total = np.add.reduceat(self.counts, first)
        return self

    def _prob(self, padded: np.ndarray, start: int, length: int) -> np.ndarray:
        V = self.vocab_size
        key = _encode(padded, start, length, self.order, V, self.key_dtype)
        idx, found = _lookup(self.keys, key)
        c = np.where(found, self.counts[idx], 0).astype(np.float64)
        cidx, cfound = _lookup(self.ctx_keys, key // V)
        total = np.where(cfound, self.ctx_total[cidx], 0).astype(np.float64)
        return (c + self.k) / (total + self.k * V)
