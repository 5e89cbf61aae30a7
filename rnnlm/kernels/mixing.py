"""Sparse exchange of weights between the per-word schedule's text shards on separate processes
(rnnlm.training.distributed: Ray actors, one shard each).

A round of a shard changes few of the weights (the embedding rows of the words it read, the output
rows of the classes it met, the recurrent and class layers), so a worker ships only the blocks of
`block` consecutive weights of the flat buffer in which its replica differs from the weights the
round started from (`changed_blocks`, restricted to the pieces word.changeable_pieces says the round
can change), as block indices and their values (`gather_blocks`). The driver merges them
(`merge_sent`) with the arithmetic of the thread shards' merge (word.merge_pieces) over the union of
the blocks: a weight no shard changed is left alone by that merge anyway, and a shard that did not
send a block had not changed it, so the merged weights are the thread shards' bit for bit. The
workers take the merged blocks back (`scatter_blocks`).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def changed_blocks(base, rep, pieces, block):
    """Ascending indices k of the blocks [k * block, (k + 1) * block) that hold a weight where rep
    differs from base, looking only at the ascending [start, end) ranges `pieces`."""
    P = base.shape[0]
    out = np.empty((P + block - 1) // block, dtype=np.int64)
    n = 0
    last = -1
    for p in range(pieces.shape[0]):
        s = pieces[p, 0]
        e = pieces[p, 1]
        k = s // block
        while k * block < e:
            if k > last:
                lo = max(s, k * block)
                hi = min(e, (k + 1) * block)
                for i in range(lo, hi):
                    if rep[i] != base[i]:
                        out[n] = k
                        n += 1
                        last = k
                        break
            k += 1
    return out[:n]


@njit(cache=True, nogil=True)
def gather_blocks(src, blocks, block):
    """The weights of blocks `blocks` of src, one after the other (the last block of the buffer may
    be shorter than `block`)."""
    P = src.shape[0]
    total = 0
    for k in blocks:
        total += min(P, (k + 1) * block) - k * block
    out = np.empty(total, dtype=src.dtype)
    o = 0
    for k in blocks:
        for i in range(k * block, min(P, (k + 1) * block)):
            out[o] = src[i]
            o += 1
    return out


@njit(cache=True, nogil=True)
def scatter_blocks(dst, blocks, block, values):
    """The inverse of gather_blocks: dst's blocks `blocks` take `values`."""
    P = dst.shape[0]
    o = 0
    for k in blocks:
        for i in range(k * block, min(P, (k + 1) * block)):
            dst[i] = values[o]
            o += 1


@njit(cache=True, nogil=True)
def merge_sent(base, union, block, sent_blocks, sent_values, block_offs, value_offs):
    """word.merge_pieces on the blocks the shards sent: shard t sent blocks
    sent_blocks[block_offs[t]:block_offs[t + 1]] (ascending) with their values
    sent_values[value_offs[t]:value_offs[t + 1]] (gather_blocks of its replica); union is the
    ascending union of the shards' blocks. The weights of base in those blocks are merged as
    word._merge_range merges the dense replicas (a shard that did not send a block has its replica
    equal to base there: no change), with the same arithmetic, so the same bits; returns the
    merged blocks' weights (gather_blocks of the new base)."""
    P = base.shape[0]
    T = block_offs.shape[0] - 1
    ptr = block_offs[:T].copy()
    vptr = value_offs[:T].copy()
    total = 0
    for k in union:
        total += min(P, (k + 1) * block) - k * block
    out = np.empty(total, dtype=base.dtype)
    acc = np.empty(block, dtype=np.float64)
    cnt = np.empty(block, dtype=np.int32)
    last = np.empty(block, dtype=base.dtype)
    o = 0
    for k in union:
        lo = k * block
        n = min(P, lo + block) - lo
        bv = base[lo:lo + n]
        for j in range(n):
            acc[j] = 0.0
            cnt[j] = 0
            last[j] = bv[j]
        for t in range(T):
            if ptr[t] < block_offs[t + 1] and sent_blocks[ptr[t]] == k:
                rv = sent_values[vptr[t]:vptr[t] + n]
                for j in range(n):
                    d = rv[j] - bv[j]
                    changed = d != 0.0
                    acc[j] += d
                    cnt[j] += 1 if changed else 0
                    last[j] = rv[j] if changed else last[j]
                ptr[t] += 1
                vptr[t] += n
        for j in range(n):
            c = cnt[j]
            v = bv[j] + acc[j] / (c if c > 1 else 1)
            v = last[j] if c == 1 else v
            bv[j] = bv[j] if c == 0 else v
            out[o + j] = bv[j]
        o += n
    return out
