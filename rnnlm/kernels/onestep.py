"""One step at a time (B = 1), for sampling and streaming scoring: the next state, and the next-word
distribution (whole, or one word's probability with only its class block computed)."""
from __future__ import annotations

import numpy as np
from numba import njit

from rnnlm.kernels.common import _activate, _direct_add, _softmax_row, direct_hashes
from rnnlm.kernels.word import _affine, _shift_history


@njit(cache=True)
def step_state(w_in, h, ng, w, net, h_out):
    """One step of the network w (Weights), net (Net) from state h reading word w_in: the new state
    into h_out; the direct-connection history ng is advanced in place."""
    emb, rec, bh, act, h_init = w.emb, w.rec, w.bh, net.act, net.h_init
    M = rec.shape[0]
    reset = net.independent and w_in == net.eos
    _shift_history(ng, w_in, reset, net.eos)
    for j in range(M):
        acc = emb[w_in, j] + bh[j]
        for q in range(M):
            acc += rec[j, q] * (h_init if reset else h[q])
        h_out[j] = _activate(acc, act)


@njit(cache=True)
def next_distribution(h, ng, w, net, target, probs):
    """P(next word | state h, history ng) of the network w (Weights), net (Net: class_starts,
    dorder; a class softmax when w.cls_w has rows). With target < 0: the whole distribution into probs (N);
    with classes, probs[w] = P(c(w) | s) P(w | c(w), s) for every word (an exact distribution).
    With target >= 0: returns P(target) alone, computing only the class layer and the target's
    class block (probs is scratch space)."""
    out_w, bo, cls_w, bc, direct, class_starts = w.out_w, w.bo, w.cls_w, w.bc, w.direct, net.class_starts
    dorder = net.dorder
    N = out_w.shape[0]
    C = cls_w.shape[0]
    K = dorder if direct.shape[0] > 0 else 0
    size = direct.shape[0]
    hsd = np.zeros(max(K, 1), dtype=np.int64)
    zero = 0 * N            # run-time values, not literals (see word.rnnlm_train_stream)
    wrap = N >= 0
    if C == 0:
        _affine(out_w, bo, h, zero, N, probs)
        if K > 0:
            direct_hashes(ng, K, zero, size, hsd)
            _direct_add(probs, N, direct, hsd, K, wrap)
        _softmax_row(probs, N)
        return probs[target] if target >= 0 else 1.0
    pc = np.empty(C, dtype=np.float64)
    _affine(cls_w, bc, h, zero, C, pc)
    if K > 0:
        direct_hashes(ng, K, zero - 1, size, hsd)
        _direct_add(pc, C, direct, hsd, K, not wrap)
    _softmax_row(pc, C)
    c0, c1 = 0, C
    if target >= 0:
        for c in range(C):
            if class_starts[c] <= target < class_starts[c + 1]:
                c0, c1 = c, c + 1
    for c in range(c0, c1):
        lo = class_starts[c]
        hi = class_starts[c + 1]
        _affine(out_w, bo, h, lo, hi, probs[lo:hi])
        blk = probs[lo:hi]
        if K > 0:
            direct_hashes(ng, K, np.int64(c), size, hsd)
            _direct_add(blk, hi - lo, direct, hsd, K, wrap)
        _softmax_row(blk, hi - lo)
        for k in range(hi - lo):
            blk[k] *= pc[c]
    return probs[target] if target >= 0 else 1.0
