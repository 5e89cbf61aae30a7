"""Batched entry points: forward and truncated-BPTT backward over (T, B) windows (`window_grad`,
`windows_grad` for many windows in one call, `group_grad` for one group of streams of a Python
thread), and the forward-only `window_logprob` (a class softmax and a full softmax in kernels of
their own). The threaded class-softmax kernel, built from the pieces here, is in threaded.py.

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from rnnlm.kernels.bundles import Grads
from rnnlm.kernels.common import CE, _copy_rows, _fprime, _hidden_forward, _row_history
from rnnlm.kernels.gemm import _gemm
from rnnlm.kernels.sgd import _sgd_piece, sgd_touched
from rnnlm.kernels.softmax import _class_output, _output_layer


# ----------------------------------------------------------------------------- batched entry points

@njit(cache=True)
def _deltas(x, H, dS, rec, act, independent, eos, b0, b1, Delta):
    """Truncated BPTT for the streams b0 <= b < b1 given dL/ds of every token (dS (T * B, M)):
    Delta[t * B + b] = dL/dnet of stream b at step t."""
    T, B = x.shape
    M = rec.shape[0]
    carry = np.zeros((b1 - b0, M), dtype=dS.dtype)
    Df = Delta.reshape(Delta.shape[0] * M)
    for t in range(T - 1, -1, -1):
        s = H[t + 1]
        for b in range(b0, b1):
            r = t * B + b
            for j in range(M):
                Delta[r, j] = (dS[r, j] + carry[b - b0, j]) * _fprime(s[b, j], act)
        if t > 0:
            _gemm(Df, (t * B + b0) * M, M, M // M, rec.reshape(M * M), 0 * M, M, carry.reshape((b1 - b0) * M),
                  0 * M, M, b1 - b0, M, M)   # run-time 1 and 0, as in common._hidden_streams
            if independent:
                for b in range(b0, b1):
                    if x[t, b] == eos:
                        carry[b - b0, :] = 0.0


@njit(cache=True)
def _fold_recurrent(x, H, Delta, b0, b1, independent, eos, h_init, g_rec, g_bh, fresh):
    """The streams b0:b1's share of the folded gradients: g_rec += sum_t Delta(t)^T s(t - 1) (the
    constant h_init after a reset), g_bh += sum_t Delta(t); fresh: written instead of added (no
    clearing, no temporary)."""
    T, B = x.shape
    M = g_rec.shape[0]
    dt = Delta.dtype
    if b0 == 0 and b1 == B:
        D = Delta
        Hp = H[:T].reshape((T * B, M))
        if independent:
            Hp = Hp.copy()
    else:
        Bg = b1 - b0
        D = np.empty((T * Bg, M), dtype=dt)
        Hp = np.empty((T * Bg, M), dtype=dt)
        for t in range(T):
            _copy_rows(D[t * Bg:(t + 1) * Bg], Delta[t * B + b0:t * B + b1])
            _copy_rows(Hp[t * Bg:(t + 1) * Bg], H[t, b0:b1])
    if independent:
        for t in range(T):
            for b in range(b0, b1):
                if x[t, b] == eos:
                    Hp[t * (b1 - b0) + b - b0, :] = h_init
    if fresh:
        np.dot(D.T, Hp, g_rec)
        for j in range(M):
            g_bh[j] = 0.0
    else:
        gtmp = np.empty((M, M), dtype=dt)
        np.dot(D.T, Hp, gtmp)
        for j in range(M):
            for h in range(M):
                g_rec[j, h] += gtmp[j, h]
    for r in range(D.shape[0]):
        for j in range(M):
            g_bh[j] += D[r, j]


@njit(cache=True)
def _fold_embedding(x, Delta, g_emb, q, P):
    """g_emb[x(t, b)] += Delta[t * B + b] (the rows of the input words), in the order of (t, b), for
    the words w with w % P == q (share q of P: the shares write disjoint rows)."""
    T, B = x.shape
    M = g_emb.shape[1]
    for t in range(T):
        for b in range(B):
            w = x[t, b]
            if w % P != q:
                continue
            d = Delta[t * B + b]
            for j in range(M):
                g_emb[w, j] += d[j]


@njit(cache=True)
def _step_embedding(x, emb, g_emb, q, P, seen, upd):
    """The optimiser's step (sgd._sgd_piece; upd = lr, scale, beta, bias) on the embedding rows of
    the input words w with w % P == q, each once; their gradient rows cleared. seen (N,) False on
    entry for those words."""
    T, B = x.shape
    N, M = emb.shape
    e = emb.reshape(N * M)
    g = g_emb.reshape(N * M)
    for t in range(T):
        for b in range(B):
            w = x[t, b]
            if w % P != q or seen[w]:
                continue
            seen[w] = True
            _sgd_piece(e, g, w * M, (w + 1) * M, upd[0], upd[1], upd[2])


@njit(cache=True)
def _step_rows(W, Gb, k0, k1, upd):
    """SGD on rows k0 : k1 of W (R, M) with the gradient summed over the P buffers Gb (P, R, M) in
    order: W[k] -= lr * (scale * g + beta * W[k]) (upd = lr, scale, beta, bias; as the optimiser)."""
    lr, scale, beta = upd[0], upd[1], upd[2]
    M = W.shape[1]
    acc = np.empty(M, dtype=Gb.dtype)
    for k in range(k0, k1):
        for j in range(M):
            acc[j] = Gb[0, k, j]
        for p in range(1, Gb.shape[0]):
            for j in range(M):
                acc[j] += Gb[p, k, j]
        w = W[k]
        for j in range(M):
            w[j] -= lr * (scale * acc[j] + beta * w[j])


@njit(cache=True)
def _backward(x, H, dS, rec, act, independent, eos, h_init, g_emb, g_rec, g_bh):
    """Truncated BPTT through the window given dL/ds of every token (dS (T * B, M)): adds dL/dU,
    dL/dV (rows of the input words), dL/dtheta_j."""
    T, B = x.shape
    Delta = np.empty((T * B, rec.shape[0]), dtype=dS.dtype)
    _deltas(x, H, dS, rec, act, independent, eos, 0, B, Delta)
    _fold_recurrent(x, H, Delta, 0, B, independent, eos, h_init, g_rec, g_bh, B < 0)
    _fold_embedding(x, Delta, g_emb, 0 * B, 1 + 0 * B)


@njit(cache=True)
def _clear(a):
    """a[:] = 0 for a 2-D array (loops: see common._copy_rows)."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = 0.0


@njit(cache=True)
def _step_window(x, w, g, upd):
    """The SGD step of everything but the output rows from the accumulated gradient, which is
    cleared: the embedding rows of the input words, U, the class layer, the biases theta_j,
    theta_c (upd[3] != 0; else their gradient is dropped) and the direct connections with a nonzero
    gradient: the optimiser's own helpers (sgd._sgd_piece, sgd_touched), so the same bits (w:
    Weights, g: Grads)."""
    emb, rec, bh, cls_w, bc, direct = w.emb, w.rec, w.bh, w.cls_w, w.bc, w.direct
    g_emb, g_rec, g_bh, g_cls, g_bc, g_direct = g.emb, g.rec, g.bh, g.cls_w, g.bc, g.direct
    M = rec.shape[0]
    C = cls_w.shape[0]
    lr, scale, beta = upd[0], upd[1], upd[2]
    zero = 0 * M
    _step_embedding(x, emb, g_emb, zero, 1 + zero, np.zeros(emb.shape[0], dtype=np.bool_), upd)
    _sgd_piece(rec.reshape(M * M), g_rec.reshape(M * M), zero, M * M, lr, scale, beta)
    _sgd_piece(cls_w.reshape(C * M), g_cls.reshape(C * M), zero, C * M, lr, scale, beta)
    if upd[3] != 0.0:
        _sgd_piece(bh, g_bh, zero, M, lr, scale, beta)
        _sgd_piece(bc, g_bc, zero, C, lr, scale, beta)
    else:
        g_bh[:] = 0.0
        g_bc[:] = 0.0
    if direct.shape[0] > 0:
        sgd_touched(direct, g_direct, lr, scale, beta)


@njit(cache=True)
def window_grad(x, y, h0, ng0, w, net, cost, g, h_out, ng_out, upd):
    """Forward and truncated-BPTT backward over one (T, B) window of the network w (Weights), net
    (Net) with cost code `cost`; returns the summed loss.

    Adds dL/dparam into the arrays of g (Grads; dense, for emb only rows of the window's input words change)
    and writes the final hidden state into h_out (B, M). The loss is that of the truncated objective:
    h0 is a constant, gradients flow through the T steps of this window only. ng0 (B, Kh) is the
    direct-connection history carried in (Kh >= max(dorder - 1, 1)), ng_out the one carried out.
    upd (lr, scale, beta, bias; float64) or empty: a class softmax takes the whole SGD step of the
    window (L2 beta on the weights it touches, as kernels.sgd) instead of leaving its gradient:
    the output rows and their biases as soon as dL/ds is formed (softmax._word_layer; g.out_w, g.bo
    not written), the rest from the gradient once complete (_step_window), which is then cleared;
    T * B <= 1024 (one chunk of the output layer).
    """
    T, B = x.shape
    M = w.rec.shape[0]
    act, independent, eos, h_init = net.act, net.independent, net.eos, net.h_init
    H = _hidden_forward(x, h0, w.emb, w.rec, w.bh, act, independent, eos, h_init)
    S = H[1:].reshape((T * B, M))
    yv = y.reshape(T * B)
    Hist = np.empty((T * B, ng0.shape[1]), dtype=np.int64)
    _row_history(x, ng0, independent, eos, Hist, ng_out)
    K = net.dorder if w.direct.shape[0] > 0 else 0
    dS = np.zeros((T * B, M), dtype=w.emb.dtype)
    logp = np.empty(T * B, dtype=np.float64)
    # flags and sizes as run-time values (T >= 0 is True): literal constants would make Numba compile
    # the large output-layer helpers once more for every constant (a cold-start cost)
    loss = _output_layer(S, yv, Hist, w, K, net, cost, T >= 0, dS, g, logp, 1024 + 0 * T, upd)
    _backward(x, H, dS, w.rec, act, independent, eos, h_init, g.emb, g.rec, g.bh)
    if upd.shape[0] > 0:
        _step_window(x, w, g, upd)
    _copy_rows(h_out, H[T])
    return loss


@njit(cache=True)
def windows_grad(X, Y, h0, ng0, w, net, cost, g, h_out, ng_out, upd):
    """window_grad on the windows X[w], Y[w] (X, Y (nw, T, B)) one after the other, each from the
    state and history the one before left (the first from h0, ng0); returns their summed loss, the
    last state in h_out, ng_out. One call for many windows: no Python or dispatcher work between
    them (threads.window_grad_classes does the same on threads)."""
    h = h0.copy()
    ng = ng0.copy()
    total = 0.0
    for i in range(X.shape[0]):
        total += window_grad(X[i], Y[i], h, ng, w, net, cost, g, h_out, ng_out, upd)
        _copy_rows(h, h_out)
        _copy_rows(ng, ng_out)
    _copy_rows(h_out, h)
    _copy_rows(ng_out, ng)
    return total


@njit(cache=True)
def _forward_rows(x, h0, ng0, w, net, h_out, ng_out):
    """The forward pass of a window for the output layer: its states S (T * B, M) and the direct-
    connection history of each row; final state into h_out, carried history into ng_out."""
    T, B = x.shape
    H = _hidden_forward(x, h0, w.emb, w.rec, w.bh, net.act, net.independent, net.eos, net.h_init)
    Hist = np.empty((T * B, ng0.shape[1]), dtype=np.int64)
    _row_history(x, ng0, net.independent, net.eos, Hist, ng_out)
    _copy_rows(h_out, H[T])
    return H[1:].reshape((T * B, w.rec.shape[0])), Hist


@njit(cache=True)
def _no_grads(w):
    """Empty gradient arrays (Grads of the types of real ones) for the forward-only output layer."""
    M = w.rec.shape[0]
    d2 = np.empty((0, M), dtype=w.emb.dtype)
    d1 = np.empty(0, dtype=w.emb.dtype)
    return Grads(d2, d2, d1, d2, d1, d2, d1, d1)


@njit(cache=True)
def window_logprob_classes(x, y, h0, ng0, w, net, logp, h_out, ng_out):
    """window_logprob of a class softmax (its own kernel: the full softmax's code is not compiled)."""
    S, Hist = _forward_rows(x, h0, ng0, w, net, h_out, ng_out)
    dS = np.empty((0, w.rec.shape[0]), dtype=w.emb.dtype)
    _class_output(S, y.reshape(S.shape[0]), Hist, w, net.dorder if w.direct.shape[0] > 0 else 0, net,
                  S.shape[0] < 0, dS, _no_grads(w), logp.reshape(S.shape[0]), np.empty(0))


@njit(cache=True)
def window_logprob_full(x, y, h0, ng0, w, net, logp, h_out, ng_out):
    """window_logprob of a full softmax (rows in chunks of 512: the (rows, N) logits bound memory)."""
    S, Hist = _forward_rows(x, h0, ng0, w, net, h_out, ng_out)
    n = S.shape[0]
    dS = np.empty((0, w.rec.shape[0]), dtype=w.emb.dtype)
    _output_layer(S, y.reshape(n), Hist, w, net.dorder if w.direct.shape[0] > 0 else 0, net, CE + 0 * n, n < 0,
                  dS, _no_grads(w), logp.reshape(n), 512 + 0 * n, np.empty(0))


def window_logprob(x, y, h0, ng0, w, net, logp, h_out, ng_out):
    """Forward only: ln p(y[t, b] | history) of the network w (Weights), net (Net) into logp (T, B);
    final hidden state into h_out and direct-connection history into ng_out (see window_grad). Picks
    the class or full softmax kernel (so that evaluating a class model never compiles the full
    softmax)."""
    kernel = window_logprob_full if w.cls_w.shape[0] == 0 else window_logprob_classes
    kernel(x, y, h0, ng0, w, net, logp, h_out, ng_out)


@njit(cache=True, nogil=True)
def group_grad(q, G, x, y, h0, ng0, w, net, cost, Gbuf, offs, h_out, ng_out, losses):
    """window_grad of group q of G contiguous groups of the B streams, for one thread each
    (rnnlm.training.threads runs the groups; nogil: Python threads run it in parallel, and no parallel kernel
    has to be compiled, which is slow).

    Group q adds its gradient into its own flat buffer Gbuf[q] (the parameter layout; block i starts
    at offs[i]): no memory is shared between the groups, and each group's arithmetic is the same
    whichever thread runs it, so the result depends on G only. losses[q] gets group q's loss; its
    rows of h_out, ng_out as window_grad. Without direct connections only (w.direct.shape[0] == 0).
    """
    T, B = x.shape
    N, M = w.emb.shape
    C = w.cls_w.shape[0]
    b0 = q * B // G
    b1 = (q + 1) * B // G
    xq = np.ascontiguousarray(x[:, b0:b1])
    yq = np.ascontiguousarray(y[:, b0:b1])
    hq = np.ascontiguousarray(h0[b0:b1])
    nq = np.ascontiguousarray(ng0[b0:b1])
    ho = np.empty_like(hq)
    no = np.empty_like(nq)
    gb = Gbuf[q]
    g = Grads(gb[offs[0]:offs[1]].reshape((N, M)), gb[offs[1]:offs[2]].reshape((M, M)), gb[offs[2]:offs[3]],
              gb[offs[3]:offs[4]].reshape((N, M)), gb[offs[4]:offs[5]], gb[offs[5]:offs[6]].reshape((C, M)),
              gb[offs[6]:offs[7]], gb[offs[7]:offs[8]])
    losses[q] = window_grad(xq, yq, hq, nq, w, net, cost, g, ho, no, np.empty(0))
    _copy_rows(h_out[b0:b1], ho)
    _copy_rows(ng_out[b0:b1], no)
