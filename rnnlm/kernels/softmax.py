"""The output layer of the batched kernels: full softmax and class-factored softmax (rows grouped by
class so that each class block is one matrix product), their losses and gradients.

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from rnnlm.kernels.common import (CE, SSE, _biased_logprob, _biased_softmax_row, _direct_add,
                                _direct_grad, _rows_backprop, _rows_dot, _rows_step, direct_hashes)


# ----------------------------------------------------------------------------- output layer

@njit(cache=True)
def _full_output(S, yv, Hist, out_w, bo, direct, K, cost, want_grad, Z, dS, g_out, g_bo, g_direct, gtmp, logp):
    """Full softmax over all N words for the rows of S (n, M); Z is an (n, N) work buffer.

    Direct connections (K > 0) use the word features of class 0 (all words form one block).

    Writes ln p(target) per row into logp; returns the loss of these rows (CE or SSE). With want_grad,
    adds dL/dW, dL/dtheta_k into g_out, g_bo and writes dL/ds into dS (n, M).
    """
    n = S.shape[0]
    N = out_w.shape[0]
    np.dot(S, out_w.T, Z)
    hs = np.zeros(max(K, 1), dtype=np.int64)
    loss = 0.0
    # run-time values, not literals, for the helpers' flags and offsets: each literal would make Numba
    # compile another copy of them (a cold-start cost)
    zero = 0 * n
    wrap = n >= 0
    for r in range(n):
        z = Z[r]
        if K > 0:
            direct_hashes(Hist[r], K, zero, direct.shape[0], hs)
            _direct_add(z, N, direct, hs, K, wrap)
        tgt = np.int64(yv[r])
        if not want_grad and cost == CE:
            logp[r] = _biased_logprob(z, bo, zero, N, tgt)
            loss -= logp[r]
            continue
        _biased_softmax_row(z, bo, zero, N)
        logp[r] = math.log(z[tgt])
        if cost == CE:
            loss -= logp[r]
            if want_grad:
                z[tgt] -= 1.0
        else:
            dot = 0.0
            for k in range(N):
                e = z[k] - (1.0 if k == tgt else 0.0)
                loss += 0.5 * e * e
                dot += e * z[k]
            if want_grad:
                for k in range(N):
                    e = z[k] - (1.0 if k == tgt else 0.0)
                    z[k] = z[k] * (e - dot)
        if want_grad and K > 0:
            direct_hashes(Hist[r], K, zero, direct.shape[0], hs)
            _direct_grad(z, N, g_direct, hs, K, wrap)
    if want_grad:
        np.dot(Z.T, S, gtmp)
        for k in range(N):
            for j in range(S.shape[1]):
                g_out[k, j] += gtmp[k, j]
        for r in range(n):
            for k in range(N):
                g_bo[k] += Z[r, k]
        np.dot(Z, out_w, dS)
    return loss


GEMM_ROWS = 12   # a class block with at least this many rows is one BLAS product, else row loops


@njit(cache=True)
def _class_layer(S, yv, Hist, cls_w, bc, direct, K, word_class, want_grad, dS, g_cls, g_bc, g_direct, logp):
    """The class factor P(c(w)|s) for the rows of S (n, M): logp[r] = its log (written, not added);
    with want_grad, dL/ds of this factor is written into dS and dL/dW_c, dL/dtheta_c are added."""
    n, M = S.shape
    C = cls_w.shape[0]
    dt = S.dtype
    Zc = np.empty((n, C), dtype=dt)
    np.dot(S, cls_w.T, Zc)
    size = direct.shape[0]
    hs = np.zeros(max(K, 1), dtype=np.int64)
    zero = 0 * n            # run-time values, not literals (see _full_output)
    no_class = zero - 1
    no_wrap = n < 0         # class features do not wrap around the table
    for r in range(n):
        z = Zc[r]
        if K > 0:
            direct_hashes(Hist[r], K, no_class, size, hs)
            _direct_add(z, C, direct, hs, K, no_wrap)
        c = np.int64(word_class[yv[r]])
        if not want_grad:
            logp[r] = _biased_logprob(z, bc, zero, C, c)
            continue
        _biased_softmax_row(z, bc, zero, C)
        logp[r] = math.log(z[c])
        z[c] -= 1.0
        if K > 0:
            direct_hashes(Hist[r], K, no_class, size, hs)
            _direct_grad(z, C, g_direct, hs, K, no_wrap)
    if want_grad:
        gtmp = np.empty((C, M), dtype=dt)
        np.dot(Zc.T, S, gtmp)
        for k in range(C):
            for j in range(M):
                g_cls[k, j] += gtmp[k, j]
        for r in range(n):
            for k in range(C):
                g_bc[k] += Zc[r, k]
        np.dot(Zc, cls_w, dS)


@njit(cache=True)
def _group_by_class(yv, word_class, C):
    """Rows grouped by the class of their target (counting sort, stable): rows order[cnt[c]:cnt[c+1]]
    have class c."""
    order = np.empty(yv.shape[0], dtype=np.int64)
    cnt = np.empty(C + 1, dtype=np.int64)
    _group_rows(yv, word_class, order, cnt)
    return order, cnt


@njit(cache=True)
def _group_rows(yv, word_class, order, cnt):
    """_group_by_class into given arrays order (n), cnt (C + 1)."""
    C = cnt.shape[0] - 1
    for c in range(C + 1):
        cnt[c] = 0
    for r in range(yv.shape[0]):
        cnt[word_class[yv[r]] + 1] += 1
    for c in range(C):
        cnt[c + 1] += cnt[c]
    for r in range(yv.shape[0]):   # cnt[c] is where class c's next row goes ...
        c = word_class[yv[r]]
        order[cnt[c]] = r
        cnt[c] += 1
    for c in range(C, 0, -1):      # ... and is now where class c + 1 starts
        cnt[c] = cnt[c - 1]
    cnt[0] = 0


@njit(cache=True)
def _word_row(z, sz, r, c, cs, yv, Hist, bo, direct, K, want_grad, g_direct, hs):
    """Row r of class c's block (logits z[:sz]): adds its direct features and returns ln P(target |
    class); with want_grad, z becomes dL/dz (softmax minus one-hot) and the direct features'
    gradient is added into g_direct."""
    size = direct.shape[0]
    wrap = sz >= 0          # run-time values, not literals (see _full_output)
    c = np.int64(c)
    cs = np.int64(cs)
    if K > 0:
        direct_hashes(Hist[r], K, c, size, hs)
        _direct_add(z, sz, direct, hs, K, wrap)
    tk = np.int64(yv[r]) - cs
    if not want_grad:
        return _biased_logprob(z, bo, cs, sz, tk)
    _biased_softmax_row(z, bo, cs, sz)
    lp = math.log(z[tk])
    z[tk] -= 1.0
    if K > 0:
        direct_hashes(Hist[r], K, c, size, hs)
        _direct_grad(z, sz, g_direct, hs, K, wrap)
    return lp


@njit(cache=True)
def _word_layer(S, yv, Hist, out_w, bo, direct, K, class_starts, order, cnt, take, want_grad,
                dS, g_out, g_bo, g_direct, logp, upd):
    """The word factor P(w|c(w),s) for the rows of the classes c with take[c] (rows grouped by
    `_group_by_class`): adds its log into logp[r] and, with want_grad, dL/ds into dS[r] and dL/dW,
    dL/dtheta_k (rows of those classes only) into g_out, g_bo. Returns minus the summed logp of the
    rows (their loss, both factors). A class with at least GEMM_ROWS rows is one matrix product per
    pass (BLAS), one with fewer is done row by row (dot products and row updates, no call overhead).

    upd = (lr, scale, beta, bias) (or empty), with want_grad: instead of storing dL/dW, dL/dtheta_k,
    each class's rows take their SGD step as soon as its dL/ds is formed (_rows_step, _block_step: one
    pass over the weights instead of three); g_out, g_bo are not touched. Valid when each class is met
    once per update and nothing after reads these rows; the caller's update leaves them out."""
    M = S.shape[1]
    C = class_starts.shape[0] - 1
    dt = S.dtype
    size = direct.shape[0]
    fused = want_grad and upd.shape[0] > 0
    hs = np.zeros(max(K, 1), dtype=np.int64)
    zsize = 0      # work buffers sized by the largest block actually met (rows x class size)
    maxm = 0
    maxsz = 0
    for c in range(C):
        m = cnt[c + 1] - cnt[c]
        sz = class_starts[c + 1] - class_starts[c]
        if take[c] and m > 0:
            if m >= GEMM_ROWS:
                zsize = max(zsize, m * sz)
                maxm = max(maxm, m)
                maxsz = max(maxsz, sz)
            else:
                zsize = max(zsize, (m if fused else 1) * sz)
    Z_buf = np.empty(zsize, dtype=dt)
    Sg_buf = np.empty(maxm * M, dtype=dt)
    dg_buf = np.empty(maxm * M if want_grad else 0, dtype=dt)
    gw_buf = np.empty(maxsz * M if want_grad else 0, dtype=dt)
    acc = np.empty(M if fused else 0, dtype=dt)
    loss = 0.0
    for c in range(C):
        lo = cnt[c]
        m = cnt[c + 1] - lo
        if m == 0 or not take[c]:
            continue
        cs = class_starts[c]
        sz = class_starts[c + 1] - cs
        if m < GEMM_ROWS:
            for i in range(m):
                r = order[lo + i]
                s = S[r]
                z = Z_buf[i * sz:(i + 1) * sz] if fused else Z_buf[:sz]
                _rows_dot(out_w, cs, sz, s, z)
                logp[r] += _word_row(z, sz, r, c, cs, yv, Hist, bo, direct, K, want_grad, g_direct, hs)
                loss -= logp[r]
                if not want_grad or fused:
                    continue
                _rows_backprop(out_w, g_out, cs, sz, z, s, dS[r])
                gb = g_bo[cs:cs + sz]
                for k in range(sz):
                    gb[k] += z[k]
            if fused:
                _rows_step(out_w, bo, cs, sz, Z_buf, m, S, order, lo, dS, acc, upd)
            continue
        Wc = out_w[cs:cs + sz]
        Sg = Sg_buf[:m * M].reshape((m, M))
        for i in range(m):
            r = order[lo + i]
            for j in range(S.shape[1]):
                Sg[i, j] = S[r, j]
        Z = Z_buf[:m * sz].reshape((m, sz))
        np.dot(Sg, Wc.T, Z)
        for i in range(m):
            r = order[lo + i]
            logp[r] += _word_row(Z[i], sz, r, c, cs, yv, Hist, bo, direct, K, want_grad, g_direct, hs)
            loss -= logp[r]
        if want_grad:
            gw = gw_buf[:sz * M].reshape((sz, M))
            np.dot(Z.T, Sg, gw)
            if not fused:
                go = g_out[cs:cs + sz]
                for k in range(sz):
                    for j in range(M):
                        go[k, j] += gw[k, j]
                gb = g_bo[cs:cs + sz]
                for i in range(m):
                    for k in range(sz):
                        gb[k] += Z[i, k]
            dg = dg_buf[:m * M].reshape((m, M))
            np.dot(Z, Wc, dg)
            for i in range(m):
                r = order[lo + i]
                for j in range(M):
                    dS[r, j] += dg[i, j]
            if fused:
                _block_step(out_w, bo, cs, sz, gw, Z, upd)
    return loss


@njit(cache=True)
def _block_step(out_w, bo, cs, sz, gw, Z, upd):
    """SGD on output rows cs : cs + sz given their gradient gw (sz, M) and the block's dL/dz Z (m,
    sz) for the biases: w -= lr * (scale * g + beta * w), as the optimiser (kernels.sgd); upd =
    (lr, scale, beta, bias), the biases only with bias != 0."""
    lr, scale, beta = upd[0], upd[1], upd[2]
    M = out_w.shape[1]
    for k in range(sz):
        w = out_w[cs + k]
        for j in range(M):
            w[j] -= lr * (scale * gw[k, j] + beta * w[j])
    if upd[3] != 0.0:
        for k in range(sz):
            g = 0.0
            for i in range(Z.shape[0]):
                g += Z[i, k]
            bo[cs + k] -= lr * (scale * g + beta * bo[cs + k])


@njit(cache=True)
def _class_output(S, yv, Hist, w, K, net, want_grad, dS, g, logp, upd):
    """Class-factored softmax P(w|s) = P(c(w)|s) P(w|c(w),s) for the rows of S (n, M), CE cost, of
    the network w (Weights), net (Net: the class layout); gradients into g (Grads).

    The class layer is one matrix product over all rows; the word layer works class by class on the
    rows grouped by their target's class. Without want_grad only ln p(target) is formed (a
    log-sum-exp per block, no normalised rows).
    """
    C = w.cls_w.shape[0]
    _class_layer(S, yv, Hist, w.cls_w, w.bc, w.direct, K, net.word_class, want_grad, dS, g.cls_w, g.bc, g.direct,
                 logp)
    order, cnt = _group_by_class(yv, net.word_class, C)
    take = np.ones(C, dtype=np.bool_)
    return _word_layer(S, yv, Hist, w.out_w, w.bo, w.direct, K, net.class_starts, order, cnt, take, want_grad,
                       dS, g.out_w, g.bo, g.direct, logp, upd)


@njit(cache=True)
def _output_layer(S, yv, Hist, w, K, net, cost, want_grad, dS, g, logp, chunk, upd):
    """Output layer of the network w (Weights), net (Net), gradients into g (Grads) with want_grad,
    over rows of S in (nearly equal) chunks of at most `chunk` rows (bounds the
    work buffers: the full softmax's (rows, N) logits). upd: the class softmax's fused update of the
    output rows (_word_layer); only with one chunk (n <= chunk)."""
    n, M = S.shape
    N = w.out_w.shape[0]
    full = w.cls_w.shape[0] == 0
    loss = 0.0
    pieces = max(1, (n + chunk - 1) // chunk)
    step = (n + pieces - 1) // pieces
    Z = np.empty((min(step, n) if full else 0, N), dtype=S.dtype)
    gtmp = np.empty((N if (full and want_grad) else 0, M), dtype=S.dtype)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        if full:
            loss += _full_output(S[lo:hi], yv[lo:hi], Hist[lo:hi], w.out_w, w.bo, w.direct, K, cost, want_grad,
                                 Z[:hi - lo], dS[lo:hi], g.out_w, g.bo, g.direct, gtmp, logp[lo:hi])
        else:
            loss += _class_output(S[lo:hi], yv[lo:hi], Hist[lo:hi], w, K, net, want_grad, dS[lo:hi], g,
                                  logp[lo:hi], upd)
    return loss
