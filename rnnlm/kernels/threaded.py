"""The kernels of the class softmax's threaded window step (rnnlm.training.threads.window_grad_classes): the
recurrence and BPTT by groups of streams, the output layer by bins of classes dealt by work, the
updates by blocks of rows, in phases separated by barriers. `classes_setup` prepares a call's
windows (its work arrays: bundles.ClassesWork), `classes_worker` is one worker's share (nogil, one
Python thread each). Its serial pieces are window.py's.

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from rnnlm.kernels.bundles import ClassesWork
from rnnlm.kernels.window import (_clear, _deltas, _fold_embedding, _fold_recurrent, _step_embedding,
                                 _step_rows)
from rnnlm.kernels.common import (_copy_rows, _hidden_streams, _rec_t, _refresh_rows, _reset_input, _row_history,
                                _sq_sum)
from rnnlm.kernels.sgd import _sgd_piece
from rnnlm.kernels.softmax import _class_layer, _group_rows, _word_layer
from rnnlm.kernels.sync import TIMEOUT_CYCLES, _barrier


@njit(cache=True)
def _class_work(m, size):
    """Estimated word-layer work of a class met by m rows of the window: the products (m x class size,
    forward, dL/ds and dL/dW; m x 8 for the rest of each row) and, once per class met, the pass that
    updates its rows (about as much as one product row)."""
    if m == 0:
        return 0.0
    return m * (size + 8.0) + size


@njit(cache=True)
def _class_bins(cnt, class_starts, G, bins):
    """Classes dealt to G bins of about equal word-layer work (_class_work): bin q is the run of
    classes whose cumulative work falls in [q, q + 1) / G of the total (ranges cut by load, not by
    class count: rare-word classes are much larger). bins[c] for every class."""
    C = class_starts.shape[0] - 1
    total = 0.0
    for c in range(C):
        total += _class_work(cnt[c + 1] - cnt[c], class_starts[c + 1] - class_starts[c])
    acc = 0.0
    for c in range(C):
        w = _class_work(cnt[c + 1] - cnt[c], class_starts[c + 1] - class_starts[c])
        q = int((acc + 0.5 * w) * G / total) if total > 0 else 0   # where the class's middle falls
        bins[c] = min(q, G - 1)
        acc += w


@njit(cache=True, inline="always")
def _owned_ranges(q, Gs, x, bins, cnt, class_starts, M, C, step_bias, seen, mark, rg):
    """The weights part q owns in the clipped step (its classes' output rows; for q < Gs a block of
    the class layer, rows of U and the input words v % Gs == q, each once) as ranges of the flat
    blocks 0 emb, 1 rec, 2 bh, 3 out_w, 4 bo, 5 cls_w, 6 bc: rg[i] = block, start, end (within the
    block), and 1 for a step or 0 for a gradient only cleared (the biases without step_bias). Words
    taken: with mark those not yet seen (then marked), else those seen (then unmarked). Returns the
    count. (Inlined into the worker: a function of its own costs about half a second of cold
    start.)"""
    nr = 0
    for c in range(class_starts.shape[0] - 1):
        if bins[c] == q and cnt[c + 1] > cnt[c]:
            for i in range(2):   # the class's rows of W, then of theta_k
                w = M if i == 0 else 1
                rg[nr, 0] = 3 + i
                rg[nr, 1] = class_starts[c] * w
                rg[nr, 2] = class_starts[c + 1] * w
                rg[nr, 3] = 1 if i == 0 or step_bias else 0
                nr += 1
    if q < Gs:
        for i in range(4):       # the blocks of W_c, theta_c, U, theta_j
            R = C if i < 2 else M
            w = M if i % 2 == 0 else 1
            rg[nr, 0] = (5, 6, 1, 2)[i]
            rg[nr, 1] = q * R // Gs * w
            rg[nr, 2] = (q + 1) * R // Gs * w
            rg[nr, 3] = 1 if i % 2 == 0 or step_bias else 0
            nr += 1
        T, B = x.shape
        for t in range(T):
            for b in range(B):
                v = x[t, b]
                if v % Gs == q and seen[v] != mark:
                    seen[v] = mark
                    rg[nr, 0] = 0
                    rg[nr, 1] = v * M
                    rg[nr, 2] = (v + 1) * M
                    rg[nr, 3] = 1
                    nr += 1
    return nr


@njit(cache=True)
def classes_setup(X, Y, h0, ng0, w, net, G, steps, ng_out):
    """The serial part of window_grad_classes before its workers start (w: Weights, net: Net): the
    work arrays, U^T (recT) and the reset input (u_init), and every window's setup (its rows'
    history, the rows grouped by class, the classes dealt to the parts: bins). Returns them as a
    ClassesWork, which classes_worker takes; the last window's history goes to ng_out."""
    nw, T, B = X.shape
    rec = w.rec
    M = rec.shape[0]
    n = T * B
    C = w.cls_w.shape[0]
    dt = w.emb.dtype
    independent, eos = net.independent, net.eos
    Gs = min(G, B)
    # work arrays, each cleared (or written whole) by the task that uses it, in every window
    H = np.empty((T + 1, B, M), dtype=dt)
    dSc = np.empty((n, M), dtype=dt)
    dSw = np.empty((n, M), dtype=dt)   # one array for all parts: each row's class is in one bin
    logc = np.empty(n, dtype=np.float64)
    logw = np.empty(n, dtype=np.float64)
    Gcls = np.empty((G, C, M), dtype=dt)
    Gbc = np.empty((G, C), dtype=dt)
    Delta = np.empty((n, M), dtype=dt)
    Grec = np.empty((Gs, M, M), dtype=dt)
    Gbh = np.empty((Gs, M), dtype=dt)
    seen = np.zeros(w.emb.shape[0] if steps else 0, dtype=np.bool_)
    Nsq = np.zeros(G)                         # the clipped step's squared norm of each part's weights
    losses = np.zeros(nw)
    bar = np.zeros(16, dtype=np.int64)        # the barrier's counter, bar[0]
    recT = _rec_t(rec, (B + Gs - 1) // Gs)    # the largest group; kept up to date by the U step
    u_init = _reset_input(rec, net.h_init, independent)
    Hist = np.empty((nw, n, ng0.shape[1]), dtype=np.int64)
    order = np.empty((nw, n), dtype=np.int64)
    cnt = np.empty((nw, C + 1), dtype=np.int64)
    bins = np.empty((nw, C), dtype=np.int64)
    ng = ng0.copy()
    for i in range(nw):
        _row_history(X[i], ng, independent, eos, Hist[i], ng_out)
        _copy_rows(ng, ng_out)
        _group_rows(Y[i].reshape(n), net.word_class, order[i], cnt[i])
        _class_bins(cnt[i], net.class_starts, G, bins[i])
    _copy_rows(H[T], h0)
    return ClassesWork(H, dSc, dSw, logc, logw, Gcls, Gbc, Delta, Grec, Gbh, seen, Nsq, losses, bar, recT, u_init,
                       Hist, order, cnt, bins)


@njit(cache=True, nogil=True)
def classes_worker(p, P, X, Y, w, net, G, g, upd, step_bias, clipping, work):
    """Worker p of P (threads that run at once) of window_grad_classes: the tasks p, p + P, ... of
    every phase of every window, meeting the other workers at a barrier (sync._barrier) after each
    phase; the network w (Weights), net (Net), gradients g (Grads; g.direct unused). work: the
    ClassesWork of classes_setup; step_bias: upd given and the biases in use. clipping: None, or
    (with upd) a Clipping (clip, p_flat, g_flat, offs) for the clipped step: the gradient is formed
    as without upd, each part adds up the squared norm of what it owns (Nsq), and a fifth phase
    takes the step of those weights, scaled to a global norm of at most clip, on the flat buffers
    p_flat, g_flat whose blocks (emb, rec, bh, out_w, bo, cls_w, bc; block i at offs[i]) the other
    arguments are. Its code sits in branches on `clipping is None`, which Numba prunes when
    compiling for None: the step without clipping compiles none of it (cold start).
    nogil: the workers are Python threads (rnnlm.training.threads.window_grad_classes)."""
    emb, rec, bh, out_w, bo, cls_w, bc, direct = w
    g_emb, g_rec, g_bh, g_out, g_bo, g_cls, g_bc = g.emb, g.rec, g.bh, g.out_w, g.bo, g.cls_w, g.bc
    word_class, class_starts = net.word_class, net.class_starts
    act, independent, eos, h_init = net.act, net.independent, net.eos, net.h_init
    (H, dSc, dSw, logc, logw, Gcls, Gbc, Delta, Grec, Gbh, seen, Nsq, losses, bar, recT, u_init, Hist, order, cnt,
     bins) = work
    nw, T, B = X.shape
    M = rec.shape[0]
    n = T * B
    C = cls_w.shape[0]
    Gs = min(G, B)
    fused = upd.shape[0] > 0      # the step taken as the gradient is formed
    nph = 4                       # phases per window
    top3 = Gs                     # tasks of phase 3 (with clipping every part sums its norm)
    if clipping is not None:
        fused = False
        nph = 5
        top3 = G
    layer_upd = upd if fused else np.empty(0)
    no_direct = 0 * n      # run-time values, not literals: the helpers' serial builds are reused
    grad = n >= 0
    S = H[1:].reshape((n, M))
    take = np.empty(C, dtype=np.bool_)   # the classes of the worker's bin
    scale = 0.0
    rg = np.empty((2 * C + 4 + n, 4), dtype=np.int64)   # ranges of a part's weights (clipping)
    for f in range(nph * nw):
        wi = f // nph
        phase = f % nph
        x = X[wi]
        yv = Y[wi].reshape(n)
        if clipping is not None:
            if phase == 4:   # the clipped step: the gradient's norm from every part's sums, in order
                sq = 0.0
                for q in range(G):
                    sq += Nsq[q]
                scale = upd[1]
                norm = np.sqrt(sq) * scale
                if norm > clipping.clip:
                    scale = scale * clipping.clip / norm
        for q in range(p, G if phase == 1 or phase == 4 else (top3 if phase == 3 else Gs), P):
            b0 = q * B // Gs
            b1 = (q + 1) * B // Gs
            j0 = q * M // Gs
            j1 = (q + 1) * M // Gs
            k0 = q * C // Gs
            k1 = (q + 1) * C // Gs
            if phase == 0:     # the recurrence of stream group q, from where its streams ended
                _copy_rows(H[0, b0:b1], H[T, b0:b1])
                _hidden_streams(x, H, b0, b1, emb, rec, recT, bh, act, independent, eos, u_init)
                for t in range(T):
                    _clear(dSw[t * B + b0:t * B + b1])
                    for r in range(t * B + b0, t * B + b1):
                        logw[r] = 0.0
            elif phase == 1:   # part q of the output layer: the class layer of the q-th block of
                r0 = q * n // G    # rows, the word layer of the classes of bin q
                r1 = (q + 1) * n // G
                _clear(Gcls[q])
                _clear(Gbc[q:q + 1])
                _class_layer(S[r0:r1], yv[r0:r1], Hist[wi, r0:r1], cls_w, bc, direct, no_direct,
                             word_class, grad, dSc[r0:r1], Gcls[q], Gbc[q], direct, logc[r0:r1])
                for c in range(C):
                    take[c] = bins[wi, c] == q
                _word_layer(S, yv, Hist[wi], out_w, bo, direct, no_direct, class_starts, order[wi],
                            cnt[wi], take, grad, dSw, g_out, g_bo, direct, logw, layer_upd)
            elif phase == 2:   # BPTT of stream group q; the step of the q-th block of the class layer
                if q == 0:
                    loss = 0.0   # the window's loss, then their sum: the bits of one call per window
                    for r in range(n):
                        loss -= logc[r] + logw[r]
                    losses[wi] = loss
                for t in range(T):
                    for r in range(t * B + b0, t * B + b1):
                        for j in range(M):
                            dSc[r, j] += dSw[r, j]
                _deltas(x, H, dSc, rec, act, independent, eos, b0, b1, Delta)
                _fold_recurrent(x, H, Delta, b0, b1, independent, eos, h_init, Grec[q], Gbh[q], B >= 0)
                if fused:
                    _step_rows(cls_w, Gcls, k0, k1, upd)
                    if step_bias:
                        _step_rows(bc.reshape((C, 1 + 0 * C)), Gbc.reshape((G, C, 1 + 0 * C)), k0, k1, upd)
                else:
                    for k in range(k0, k1):   # in part order, as one thread would
                        for part in range(G):
                            g_bc[k] += Gbc[part, k]
                            for j in range(M):
                                g_cls[k, j] += Gcls[part, k, j]
            elif phase == 3 and not fused:   # the gradients of rows j0:j1 of U and of the words v % Gs == q
                if q < Gs:
                    for j in range(j0, j1):   # in group order, as one thread would
                        for gi in range(Gs):
                            g_bh[j] += Gbh[gi, j]
                            for h in range(M):
                                g_rec[j, h] += Grec[gi, j, h]
                    _fold_embedding(x, Delta, g_emb, q, Gs)
                if clipping is not None:   # the squared norm of part q's weights, now complete
                    g_flat = clipping.g_flat
                    offs = clipping.offs
                    nr = _owned_ranges(q, Gs, x, bins[wi], cnt[wi], class_starts, M, C, step_bias, seen, True, rg)
                    sq = 0.0
                    for i in range(nr):
                        if rg[i, 3] != 0:
                            sq += _sq_sum(g_flat[offs[rg[i, 0]] + rg[i, 1]:offs[rg[i, 0]] + rg[i, 2]])
                    Nsq[q] = sq
            elif phase == 3:   # the step of rows j0:j1 of U and of the words v % Gs == q
                _step_rows(rec, Grec, j0, j1, upd)
                _refresh_rows(rec, h_init, j0, j1, recT, u_init)
                if step_bias:
                    _step_rows(bh.reshape((M, 1 + 0 * M)), Gbh.reshape((Gs, M, 1 + 0 * M)), j0, j1, upd)
                _fold_embedding(x, Delta, g_emb, q, Gs)
                _step_embedding(x, emb, g_emb, q, Gs, seen, upd)
                for t in range(T):   # seen is all False again for the next window
                    for b in range(B):
                        if x[t, b] % Gs == q:
                            seen[x[t, b]] = False
            elif clipping is not None:   # the clipped step of what part q owns (seen cleared)
                g_flat = clipping.g_flat
                offs = clipping.offs
                nr = _owned_ranges(q, Gs, x, bins[wi], cnt[wi], class_starts, M, C, step_bias, seen, False, rg)
                for i in range(nr):
                    a = offs[rg[i, 0]] + rg[i, 1]
                    e = offs[rg[i, 0]] + rg[i, 2]
                    if rg[i, 3] != 0:
                        _sgd_piece(clipping.p_flat, g_flat, a, e, upd[0], scale, upd[2])
                    else:
                        g_flat[a:e] = 0.0
                if q < Gs:
                    _refresh_rows(rec, h_init, j0, j1, recT, u_init)
        if f + 1 < nph * nw:
            _barrier(bar, (f + 1) * P, TIMEOUT_CYCLES)
