"""The optimiser: SGD with L2 on the touched weights, global-norm clipping, over flat pieces of the
parameter buffer (serially, or in pieces for Python threads: pieces_range).

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from rnnlm.kernels.common import _sq_sum
from rnnlm.kernels.sync import TIMEOUT_CYCLES, _barrier


# ----------------------------------------------------------------------------- optimiser
# An update touches pieces of the flat parameter buffer: [start, end) index ranges of at most PIECE
# entries (dense blocks, embedding rows of the input words, output rows of the targets' classes).
# The gradient's squared norm is summed per piece and then over the pieces in order, so it is the
# same however the pieces are shared among threads.

PIECE = 4096


@njit(cache=True)
def _next_run(mask, i, n):
    """(a, e): the next run of set entries mask[a:e] at or after i ((n, n) if none)."""
    while i < n and not mask[i]:
        i += 1
    e = i
    while e < n and mask[e]:
        e += 1
    return i, e


@njit(cache=True)
def _add_segment(out, n, a, b, piece):
    """Append [a, b) cut into pieces of at most `piece` entries to out[n:]; returns the new count."""
    while a < b:
        e = min(b, a + piece)
        out[n, 0] = a
        out[n, 1] = e
        n += 1
        a = e
    return n


@njit(cache=True)
def touched_pieces(x, y, word_class, class_starts, full, offs, M, dense_bias, out_rows, out_bias, piece):
    """The disjoint pieces of the flat parameter buffer an update of window (x, y) touches: the
    embedding rows of the input words (in order of first use), then ascending the recurrent weights,
    the hidden bias (dense_bias), the output rows of the targets' classes (all rows for a full
    softmax; out_rows) with their biases (out_bias), the class layer and its bias (dense_bias). offs:
    start of each block (emb, rec, bh, out_w, bo, cls_w, bc, direct) and the end of the buffer."""
    N = (offs[1] - offs[0]) // M
    C = class_starts.shape[0] - 1
    cls = np.zeros(max(C, 1), dtype=np.bool_)
    if full:
        cls[0] = True
    else:
        for v in y.ravel():
            cls[word_class[v]] = True
    nseg = x.size * (1 + M // piece) + 2 * C + 8
    out = np.empty(((offs[8] - offs[1]) // piece + nseg + 8, 2), dtype=np.int64)
    n = np.int64(0)   # not a literal: the helpers below are compiled once, for int64
    seen = np.zeros(N, dtype=np.bool_)
    for v in x.ravel():           # the input words' rows in order of first use (no scan of the vocabulary)
        if not seen[v]:
            seen[v] = True
            n = _add_segment(out, n, offs[0] + v * M, offs[0] + (v + 1) * M, piece)
    n = _add_segment(out, n, offs[1], offs[2], piece)
    if dense_bias:
        n = _add_segment(out, n, offs[2], offs[3], piece)
    for block in range(2):                        # output rows, then their biases
        width = M if block == 0 else 1
        base = offs[3] if block == 0 else offs[4]
        if (block == 0 and not out_rows) or (block == 1 and not out_bias):
            continue
        if full:
            n = _add_segment(out, n, base, base + N * width, piece)
            continue
        c = np.int64(0)
        while c < C:
            c, e = _next_run(cls, c, C)
            if c < C:
                n = _add_segment(out, n, base + class_starts[c] * width, base + class_starts[e] * width, piece)
            c = e
    n = _add_segment(out, n, offs[5], offs[6], piece)
    if dense_bias:
        n = _add_segment(out, n, offs[6], offs[7], piece)
    return out[:n]


@njit(cache=True)
def _reduce_piece(g, Gbuf, a, b):
    """g[a:b] += sum_q Gbuf[q, a:b] (groups in order); Gbuf[:, a:b] <- 0. Returns sum g[a:b]^2."""
    gv = g[a:b]
    for q in range(Gbuf.shape[0]):
        gq = Gbuf[q, a:b]
        for i in range(gv.shape[0]):
            gv[i] += gq[i]
            gq[i] = 0.0
    return _sq_sum(gv)


@njit(cache=True)
def _sgd_piece(p, g, a, b, lr, scale, beta):
    """p[a:b] -= lr * (scale * g[a:b] + beta * p[a:b]); g[a:b] <- 0."""
    pv = p[a:b]
    gv = g[a:b]
    for i in range(pv.shape[0]):
        pv[i] -= lr * (scale * gv[i] + beta * pv[i])
        gv[i] = 0.0


@njit(cache=True)
def _norm(partial, extra_sq, scale):
    sq = extra_sq
    for i in range(partial.shape[0]):
        sq += partial[i]
    return math.sqrt(sq) * scale


@njit(cache=True)
def sgd_pieces(p, g, Gbuf, pieces, lr, scale, beta, clip, extra_sq, partial):
    """SGD on the given pieces of the flat buffers: g += the group gradients Gbuf (G, P) (G may be
    0), then p -= lr * (scale * g + beta * p), g and Gbuf cleared there. With clip > 0 the scale is
    first reduced so that the gradient's global norm (its squared norm over the pieces plus
    `extra_sq`, times scale) is at most clip. Returns (norm before clipping, scale used)."""
    n = pieces.shape[0]
    if clip > 0:
        for i in range(n):
            partial[i] = _reduce_piece(g, Gbuf, pieces[i, 0], pieces[i, 1])
        norm = _norm(partial, extra_sq, scale)
        if norm > clip:
            scale = scale * clip / norm
        for i in range(n):
            _sgd_piece(p, g, pieces[i, 0], pieces[i, 1], lr, scale, beta)
        return norm, scale
    for i in range(n):    # no clipping: one sweep, each piece reduced and updated while in cache
        partial[i] = _reduce_piece(g, Gbuf, pieces[i, 0], pieces[i, 1])
        _sgd_piece(p, g, pieces[i, 0], pieces[i, 1], lr, scale, beta)
    return _norm(partial, extra_sq, scale), scale


@njit(cache=True, nogil=True)
def pieces_range(p, g, Gbuf, pieces, i0, i1, mode, lr, scale, beta, partial):
    """Pieces i0 : i1 of sgd_pieces for one Python thread (rnnlm/training/threads.py): mode 0 reduces the
    group gradients into g (partial[i] = its squared norm) and applies the update, mode 1 only
    reduces, mode 2 only applies. The same arithmetic per piece as sgd_pieces, so the same bits."""
    for i in range(i0, i1):
        if mode != 2:
            partial[i] = _reduce_piece(g, Gbuf, pieces[i, 0], pieces[i, 1])
        if mode != 1:
            _sgd_piece(p, g, pieces[i, 0], pieces[i, 1], lr, scale, beta)


@njit(cache=True, nogil=True)
def clipped_pieces_range(p, g, Gbuf, pieces, i0, i1, n, lr, scale, beta, clip, extra_sq, partial, bar, out):
    """Pieces i0 : i1 of sgd_pieces with clipping (clip > 0), for one of n Python threads: reduce
    them, wait at a barrier (bar) until every thread has, work out the norm and the clipped scale
    from all the pieces (in order: every thread gets the same), then apply. out = (norm, scale)."""
    pieces_range(p, g, Gbuf, pieces, i0, i1, 1, lr, scale, beta, partial)
    _barrier(bar, n, TIMEOUT_CYCLES)
    norm = _norm(partial, extra_sq, scale)
    if norm > clip:
        scale = scale * clip / norm
    pieces_range(p, g, Gbuf, pieces, i0, i1, 2, lr, scale, beta, partial)
    out[0] = norm
    out[1] = scale


@njit(cache=True)
def piece_cuts(pieces, G):
    """Cut the pieces into G contiguous runs of about equal work (entries, not piece count: a window's
    embedding rows are many small pieces, its output rows few large ones): run q is
    pieces[cuts[q]:cuts[q + 1]]."""
    n = pieces.shape[0]
    total = 0
    for i in range(n):
        total += pieces[i, 1] - pieces[i, 0]
    cuts = np.empty(G + 1, dtype=np.int64)
    cuts[0] = 0
    i = 0
    acc = 0
    for q in range(1, G):
        target = total * q // G
        while i < n and acc + (pieces[i, 1] - pieces[i, 0]) // 2 < target:   # the piece's middle
            acc += pieces[i, 1] - pieces[i, 0]
            i += 1
        cuts[q] = i
    cuts[G] = n
    return cuts


@njit(cache=True)
def sq_norm_dense(g):
    acc = 0.0
    for v in g.ravel():
        acc += v * v
    return acc


@njit(cache=True)
def sgd_touched(p, g, lr, scale, beta):
    """The same update on the entries with a nonzero gradient only (sparse blocks: direct
    connections, where L2 acts on the features an update used); g <- 0."""
    for i in range(p.shape[0]):
        if g[i] != 0.0:
            p[i] -= lr * (scale * g[i] + beta * p[i])
            g[i] = 0.0
