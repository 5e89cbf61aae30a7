"""Sparse exchange of weights between the per-word schedule's text shards on separate processes
(rnnlm.distributed: Ray actors, one shard each).

A round of a shard changes few of the weights (the embedding rows of the words it read, the output
rows of the classes it met, the recurrent and class layers), so a worker ships only the blocks of
`block` consecutive weights of the flat buffer in which its replica differs from the weights the
round started from (`changed_blocks`, restricted to the pieces seq.changeable_pieces says the round
can change), as block indices and their values (`gather_blocks`). The driver writes them into its
copy of each shard's replica (`scatter_blocks`) and merges with the thread shards' own kernel
(seq.merge_pieces) over the union of the blocks: a weight no shard changed is left alone by that
merge anyway, so the merged weights are the thread shards' bit for bit.
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


@njit(cache=True)
def block_pieces(blocks, block, P, piece):
    """Ascending blocks as [start, end) pieces of the flat buffer (adjacent blocks joined, pieces at
    most `piece` long), for seq.merge_pieces."""
    out = np.empty((blocks.shape[0] * (block // piece + 2) + 1, 2), dtype=np.int64)
    n = 0
    i = 0
    m = blocks.shape[0]
    while i < m:
        j = i
        while j + 1 < m and blocks[j + 1] == blocks[j] + 1:
            j += 1
        s = blocks[i] * block
        e = min(P, (blocks[j] + 1) * block)
        while s < e:
            out[n, 0] = s
            out[n, 1] = min(e, s + piece)
            n += 1
            s = min(e, s + piece)
        i = j + 1
    return out[:n]
