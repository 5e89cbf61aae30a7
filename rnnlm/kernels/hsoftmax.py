"""Hierarchical softmax (`--softmax hs`, faster-rnnlm's): the output layer as a binary tree whose
V - 1 internal nodes own the rows of out_w and bo (rnnlm/model/huffman.py builds the tree).

Word w's path, root first, is node[start[w]:start[w + 1]] with branch codes code[...]; at node n
with z = out_w[n] . s + bo[n] the branch of code 0 has probability sigmoid(z), that of code 1
sigmoid(-z), and p(w | s) is the product over the path. Loss L = -ln p(w | s), so
dL/dz = sigmoid(z) - (1 - code) at each node of the path and dL/ds = sum_path dL/dz * out_w[n]:
a word costs O(depth * M) instead of O(V * M) (the depth of a Huffman tree is about log2 V, less
for frequent words). Log-probabilities are computed in float64 with a stable log-sigmoid; no
fastmath here except in the dot products (common._dot).

Kernels: `hs_train_stream` (rnnlm-0.4b's per-word schedule with this output layer: the node rows
of the target's path updated every word, the hidden error kept for the BPTT sweep, the same
helpers as word.rnnlm_train_stream; `hs_shard_run` runs it on one text shard of the threaded
per-word schedule), `hs_windows_grad` (the batch schedule's windows: gradient, or
gradient and SGD step of each window on the touched node rows only), `hs_window_logprob`
(evaluation) and `hs_distribution` (one step's distribution over all words, or one word's
probability). No direct connections (the tree has no class to key them by), cross-entropy only.
Storage and the other conventions as in rnnlm/kernels/__init__.py: the kernels take the model's
Weights (out_w, bo the tree's internal nodes; cls_w, bc, direct empty), the Tree and a Net (its
class layout and dorder unused), as the others.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from rnnlm.kernels.bundles import Weights
from rnnlm.kernels.window import _backward, _step_embedding
from rnnlm.kernels.common import _copy_rows, _dot, _hidden_forward
from rnnlm.kernels.sgd import _sgd_piece
from rnnlm.kernels.word import DROP_OUT_SALT, _bptt_update, _dropout_factor, _shard_stream, _shard_train, _word_forward


@njit(cache=True)
def _log_sigmoid(v):
    """ln sigmoid(v) = -ln(1 + e^-v), stable for any float64 v."""
    if v >= 0.0:
        return -math.log1p(math.exp(-v))
    return v - math.log1p(math.exp(v))


@njit(cache=True)
def _max_depth(start):
    d = 1
    for w in range(start.shape[0] - 1):
        d = max(d, start[w + 1] - start[w])
    return d


@njit(cache=True)
def _path_forward(s, out_w, bo, start, node, code, w, gz):
    """ln p(w | s); gz[i] = dL/dz at the i-th node of w's path (sigmoid(z) - (1 - code))."""
    a = start[w]
    lp = 0.0
    for i in range(start[w + 1] - a):
        n = node[a + i]
        z = np.float64(bo[n] + _dot(out_w[n], s))
        c = code[a + i]
        lp += _log_sigmoid(z if c == 0 else -z)
        gz[i] = 1.0 / (1.0 + math.exp(-z)) - (1 - c)
    return lp


# ----------------------------------------------------------------------------- per-word schedule

@njit(cache=True)
def hs_train_stream(x, y, w, tree, net, tr, st, logp):
    """word.rnnlm_train_stream with the hierarchical softmax of tree (Tree) (the same state, st.ng
    unused; the same forward step, dropout and BPTT update): every word the rows of
    the target's path move by -lr * (scale * dL/dz * s + beta * row) (L2 every `l2_every` words,
    `clip` bounds the output gradient's norm as there), its hidden error sum_path dL/dz * out_w[n]
    (before the update) is kept for the sweep. Returns the loss; ln p(y[i]) into logp[i]."""
    emb, rec, bh, out_w, bo = w.emb, w.rec, w.bh, w.out_w, w.bo
    start, node, code = tree
    act, independent, eos, h_init = net.act, net.independent, net.eos, net.h_init
    lr, beta, clip, block, use_bias, l2_every, drop_in, drop_out, drop_seed = tr
    h, hist, hs, err, istate = st.h, st.hist, st.hs, st.err, st.istate
    n = x.shape[0]
    M = rec.shape[0]
    D = hist.shape[0] - 1
    dt = emb.dtype
    znet = np.empty(M, dtype=dt)
    e = np.empty(M, dtype=dt)
    so = np.empty(M, dtype=dt)
    mo = np.ones(M, dtype=dt)
    delta = np.empty(M, dtype=dt)
    gU = np.zeros((M, M), dtype=dt)
    gbh = np.zeros(M, dtype=dt)
    gV = np.zeros((D + 1, M), dtype=dt)
    gz = np.empty(_max_depth(start), dtype=dt)
    loss = 0.0
    for i in range(n):
        w_in = x[i]
        tgt = y[i]
        _word_forward(w_in, independent and w_in == eos, h_init, h, hist, hs, err, istate, emb, rec, bh, act,
                      drop_in, drop_seed, znet)
        if drop_out > 0.0:
            for j in range(M):
                mo[j] = _dropout_factor(drop_seed, istate[0], j + DROP_OUT_SALT, drop_out)
                so[j] = hs[0, j] * mo[j]
        else:
            for j in range(M):
                so[j] = hs[0, j]
        lp = _path_forward(so, out_w, bo, start, node, code, tgt, gz)
        logp[i] = lp
        loss -= lp
        a = start[tgt]
        L = start[tgt + 1] - a
        scale = 1.0
        if clip > 0.0:
            gg = 0.0
            for k in range(L):
                gg += gz[k] * gz[k]
            ss = 1.0
            for j in range(M):
                ss += so[j] * so[j]
            nrm = math.sqrt(gg * ss)
            if nrm > clip:
                scale = clip / nrm
        b2 = beta if (l2_every <= 1 or (istate[0] + 1) % l2_every == 0) else 0.0
        for j in range(M):
            e[j] = 0.0
        for k in range(L):   # hidden error with the row before its update, then the update
            nd = node[a + k]
            g = gz[k]
            gs = g * scale
            row = out_w[nd]
            for j in range(M):
                wv = row[j]
                e[j] += g * wv
                row[j] = wv - lr * (gs * so[j] + b2 * wv)
            if use_bias:
                bo[nd] -= lr * (gs + b2 * bo[nd])
        for j in range(M):
            err[0, j] = e[j] * mo[j]
            h[j] = hs[0, j]
        istate[0] += 1
        if istate[0] % block == 0 or (independent and tgt == eos):
            _bptt_update(istate, hist, hs, err, rec, bh, emb, act, lr, beta, clip, use_bias, l2_every,
                         drop_in, drop_seed, e, delta, gU, gbh, gV)
    return loss


@njit(cache=True, nogil=True)
def hs_shard_run(t, a, sync, X, Y, lens, reps, N, M, tree, net, tr, streams, LOGP):
    """word.shard_run with the hierarchical softmax: words a : a + sync of shard t (hs_train_stream
    on replica reps[t], whose blocks are emb, rec, bh, out_w (N - 1, M), bo (N - 1), in the order
    of model.param_shapes; nogil, for one Python thread per shard, rnnlm.training.threads.rnnlm_train_shards)."""
    lo = min(a, lens[t])
    hi = min(a + sync, lens[t])
    if hi > lo:
        f = reps[t]
        o = N * M
        emb = f[:o].reshape((N, M))
        rec = f[o:o + M * M].reshape((M, M))
        o += M * M
        bh = f[o:o + M]
        o += M
        out_w = f[o:o + (N - 1) * M].reshape((N - 1, M))
        o += (N - 1) * M
        bo = f[o:o + N - 1]
        none2 = f[:0].reshape((0, M))
        w = Weights(emb, rec, bh, out_w, bo, none2, f[:0], f[:0])
        hs_train_stream(X[t, lo:hi], Y[t, lo:hi], w, tree, net, _shard_train(tr, t), _shard_stream(streams, t),
                        LOGP[t, lo:hi])


# ----------------------------------------------------------------------------- batch schedule

@njit(cache=True)
def _hs_output(S, x, y, out_w, bo, start, node, code, dS, g_out, g_bo, gz, mark, touched):
    """The output layer of a window's rows S (T * B, M): adds dL/dW, dL/dtheta of the path nodes
    into g_out, g_bo, writes dL/ds into dS; lists the nodes it touched in touched (marking them in
    mark); returns (loss, number of touched nodes)."""
    T, B = x.shape
    M = S.shape[1]
    loss = 0.0
    nt = 0
    for r in range(T * B):
        tgt = y[r // B, r % B]
        s = S[r]
        loss -= _path_forward(s, out_w, bo, start, node, code, tgt, gz)
        a = start[tgt]
        ds = dS[r]
        for k in range(start[tgt + 1] - a):
            nd = node[a + k]
            g = gz[k]
            row = out_w[nd]
            gr = g_out[nd]
            for j in range(M):
                ds[j] += g * row[j]
                gr[j] += g * s[j]
            g_bo[nd] += g
            if not mark[nd]:
                mark[nd] = True
                touched[nt] = nd
                nt += 1
    return loss, nt


@njit(cache=True)
def _hs_step(x, emb, rec, bh, out_w, bo, g_emb, g_rec, g_bh, g_out, g_bo, touched, nt, wseen, upd):
    """The SGD step of a window from its gradient (upd = lr, scale, beta, bias, clip), as the
    optimiser takes it (sgd._sgd_piece): the touched node rows, the embedding rows of the input
    words, U and the biases (bias != 0; else their gradient is dropped); with clip > 0 the scale is
    first cut so that the norm of scale * gradient over those weights is at most clip. The gradient
    arrays are left clear. wseen (N,) False on entry and exit."""
    M = rec.shape[0]
    lr, scale, beta, bias, clip = upd[0], upd[1], upd[2], upd[3] != 0.0, upd[4]
    T, B = x.shape
    if clip > 0.0:
        sq = 0.0
        for i in range(nt):
            nd = touched[i]
            for j in range(M):
                sq += g_out[nd, j] * g_out[nd, j]
            if bias:
                sq += g_bo[nd] * g_bo[nd]
        for j in range(M):
            for q in range(M):
                sq += g_rec[j, q] * g_rec[j, q]
            if bias:
                sq += g_bh[j] * g_bh[j]
        for t in range(T):
            for b in range(B):
                w = x[t, b]
                if not wseen[w]:
                    wseen[w] = True
                    for j in range(M):
                        sq += g_emb[w, j] * g_emb[w, j]
        for t in range(T):
            for b in range(B):
                wseen[x[t, b]] = False
        nrm = math.sqrt(sq) * scale
        if nrm > clip:
            scale *= clip / nrm
    for i in range(nt):
        nd = touched[i]
        row = out_w[nd]
        gr = g_out[nd]
        for j in range(M):
            row[j] -= lr * (scale * gr[j] + beta * row[j])
            gr[j] = 0.0
        if bias:
            bo[nd] -= lr * (scale * g_bo[nd] + beta * bo[nd])
        g_bo[nd] = 0.0
    zero = 0 * M
    _step_embedding(x, emb, g_emb, zero, 1 + zero, wseen, np.array([lr, scale, beta]))
    for t in range(T):
        for b in range(B):
            wseen[x[t, b]] = False
    _sgd_piece(rec.reshape(M * M), g_rec.reshape(M * M), zero, M * M, lr, scale, beta)
    if bias:
        _sgd_piece(bh, g_bh, zero, M, lr, scale, beta)
    else:
        g_bh[:] = 0.0


@njit(cache=True)
def hs_windows_grad(X, Y, h0, w, tree, net, g, h_out, upd):
    """The windows X[w], Y[w] (X, Y (nw, T, B)) one after the other, each from the state the one
    before left (the first from h0 (B, M)): forward, hierarchical softmax, truncated BPTT (as
    window.window_grad). upd empty: the gradient of the summed loss is added into the arrays of g
    (Grads; dense). upd = (lr, scale, beta, bias, clip): each window's SGD step is taken (_hs_step)
    and g is left clear. Returns the summed loss; the last state into h_out."""
    emb, rec, bh, out_w, bo = w.emb, w.rec, w.bh, w.out_w, w.bo
    start, node, code = tree
    act, independent, eos, h_init = net.act, net.independent, net.eos, net.h_init
    g_emb, g_rec, g_bh, g_out, g_bo = g.emb, g.rec, g.bh, g.out_w, g.bo
    nw, T, B = X.shape
    M = rec.shape[0]
    dt = emb.dtype
    mark = np.zeros(out_w.shape[0], dtype=np.bool_)
    wseen = np.zeros(emb.shape[0], dtype=np.bool_)
    maxd = _max_depth(start)
    touched = np.empty(T * B * maxd, dtype=np.int64)
    gz = np.empty(maxd, dtype=dt)
    h = h0.copy()
    dS = np.empty((T * B, M), dtype=dt)
    total = 0.0
    for wi in range(nw):
        x = X[wi]
        H = _hidden_forward(x, h, emb, rec, bh, act, independent, eos, h_init)
        for r in range(T * B):
            for j in range(M):
                dS[r, j] = 0.0
        loss, nt = _hs_output(H[1:].reshape((T * B, M)), x, Y[wi], out_w, bo, start, node, code, dS, g_out, g_bo,
                              gz, mark, touched)
        total += loss
        for i in range(nt):
            mark[touched[i]] = False
        _backward(x, H, dS, rec, act, independent, eos, h_init, g_emb, g_rec, g_bh)
        if upd.shape[0] > 0:
            _hs_step(x, emb, rec, bh, out_w, bo, g_emb, g_rec, g_bh, g_out, g_bo, touched, nt, wseen, upd)
        _copy_rows(h, H[T])
    _copy_rows(h_out, h)
    return total


# ----------------------------------------------------------------------------- evaluation, one step

@njit(cache=True)
def hs_window_logprob(x, y, h0, w, tree, net, logp, h_out):
    """Forward only: ln p(y[t, b] | history) into logp (T, B), the final state into h_out (B, M)."""
    T, B = x.shape
    H = _hidden_forward(x, h0, w.emb, w.rec, w.bh, net.act, net.independent, net.eos, net.h_init)
    gz = np.empty(_max_depth(tree.start), dtype=w.emb.dtype)
    for t in range(T):
        for b in range(B):
            logp[t, b] = _path_forward(H[t + 1, b], w.out_w, w.bo, tree.start, tree.node, tree.code, y[t, b], gz)
    _copy_rows(h_out, H[T])


@njit(cache=True)
def hs_distribution(h, w, tree, target, probs):
    """P(next word | state h) of the network w (Weights), tree (Tree): with target >= 0 returns
    P(target) (its path only; probs untouched); else writes every word's probability into probs (N)
    (each node's two branch log-probabilities once, then each word's path summed: they add up to 1)
    and returns 1."""
    out_w, bo = w.out_w, w.bo
    start, node, code = tree
    if target >= 0:
        gz = np.empty(_max_depth(start), dtype=out_w.dtype)
        return math.exp(_path_forward(h, out_w, bo, start, node, code, target, gz))
    nn = out_w.shape[0]
    lz = np.empty((nn, 2), dtype=np.float64)
    for n in range(nn):
        z = np.float64(bo[n] + _dot(out_w[n], h))
        lz[n, 0] = _log_sigmoid(z)
        lz[n, 1] = _log_sigmoid(-z)
    for v in range(start.shape[0] - 1):
        acc = 0.0
        for i in range(start[v], start[v + 1]):
            acc += lz[node[i], code[i]]
        probs[v] = math.exp(acc)
    return 1.0
