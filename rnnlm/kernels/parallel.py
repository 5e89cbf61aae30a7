"""The kernels of the class softmax's threaded window step (rnnlm.threads.window_grad_classes): the
recurrence and BPTT by groups of streams, the class layer by blocks of rows, the word layer by
classes taken in turn by whichever worker is free, the updates by blocks of rows, in phases
separated by barriers. `classes_setup` prepares a call's windows, `classes_worker` is one worker's
share (nogil, one Python thread each). Its serial pieces are batch.py's.

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from rnnlm.kernels.batch import (_clear, _deltas, _fold_embedding, _fold_recurrent, _step_embedding,
                                 _step_rows)
from rnnlm.kernels.core import _copy_rows, _hidden_streams, _rec_t, _refresh_rows, _reset_input, _row_history
from rnnlm.kernels.output import _class_layer, _group_rows, _word_buffers, _word_class, _word_sizes
from rnnlm.kernels.sync import TIMEOUT_CYCLES, _add, _barrier


TASK_SHARE = 1.0 / 64    # classes with less of a window's word-layer work than this share go in tasks of
                         # at least that much: the workers' last tasks end within about this much apart


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


@njit(cache=True)
def _class_tasks(cnt, class_starts, P, tasks, cuts, first):
    """The word layer's tasks of a window for P workers: worker p's own are tasks first[p] to
    first[p + 1] - 1, the classes of its bin (_class_bins: a run of classes, so that a class's rows of
    W tend to stay with one worker from window to window) that the window's rows meet (cnt, as
    output._group_by_class), by decreasing work (_class_work): those with at least TASK_SHARE of the
    total one per task, the rest together in runs of at least that much. Task k is classes
    tasks[cuts[k]:cuts[k + 1]]; returns the number of tasks. A worker that has done its own tasks
    takes the others' last ones (classes_worker)."""
    C = class_starts.shape[0] - 1
    work = np.empty(C)
    total = 0.0
    for c in range(C):
        work[c] = _class_work(cnt[c + 1] - cnt[c], class_starts[c + 1] - class_starts[c])
        total += work[c]
    bins = np.empty(C, dtype=np.int64)
    _class_bins(cnt, class_starts, P, bins)
    by_work = np.empty(C, dtype=np.int64)   # the met classes by decreasing work (ties: by class),
    met = 0                                 # an insertion sort (np.argsort compiles for seconds)
    for c in range(C):
        if work[c] > 0.0:
            i = met
            while i > 0 and work[by_work[i - 1]] < work[c]:
                by_work[i] = by_work[i - 1]
                i -= 1
            by_work[i] = c
            met += 1
    nt = 0
    i = 0
    cuts[0] = 0
    for b in range(P):
        first[b] = nt
        acc = 0.0
        for j in range(met):
            c = by_work[j]
            if bins[c] != b:
                continue
            tasks[i] = c
            i += 1
            acc += work[c]
            if acc >= TASK_SHARE * total:
                nt += 1
                cuts[nt] = i
                acc = 0.0
        if cuts[nt] < i:   # the bin's last classes
            nt += 1
            cuts[nt] = i
    first[P] = nt
    return nt


@njit(cache=True)
def _transpose_into(a, out):
    """out <- a^T (square), reading a's rows in order (another thread wrote them: one pass over
    each), writing into out's columns (this thread's own copy)."""
    M = a.shape[0]
    for j in range(M):
        r = a[j]
        for h in range(M):
            out[h, j] = r[h]


@njit(cache=True)
def classes_setup(X, Y, h0, ng0, emb, rec, cls_w, word_class, class_starts, independent, eos, h_init, G, P,
                  fused, ng_out):
    """The serial part of window_grad_classes before its workers start: the work arrays, a copy of
    U^T for each group of streams (recT: after a step of U each group's thread makes its own again
    before its recurrence, rather than both threads writing columns of one, and reading the other's)
    and the reset input (u_init), and every window's setup (its rows' history, the rows grouped by
    class, the word layer's tasks: _class_tasks). Returns the arrays classes_worker takes after upd;
    the last window's history goes to ng_out."""
    nw, T, B = X.shape
    M = rec.shape[0]
    n = T * B
    C = cls_w.shape[0]
    dt = emb.dtype
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
    seen = np.zeros((Gs, emb.shape[0] if fused else 0), dtype=np.bool_)   # one row per share of the words
    losses = np.zeros(nw)
    bar = np.zeros(16, dtype=np.int64)        # the barrier's counter, bar[0]
    rt = _rec_t(rec, (B + Gs - 1) // Gs)      # for the largest group (or empty: not needed)
    recT = np.empty((Gs,) + rt.shape, dtype=dt)   # each group's own copy, refreshed by its thread
    for g in range(Gs):
        _copy_rows(recT[g], rt)
    u_init = _reset_input(rec, h_init, independent)
    Hist = np.empty((nw, n, ng0.shape[1]), dtype=np.int64)
    order = np.empty((nw, n), dtype=np.int64)
    cnt = np.empty((nw, C + 1), dtype=np.int64)
    tasks = np.empty((nw, C), dtype=np.int64)
    cuts = np.empty((nw, C + 1), dtype=np.int64)
    first = np.empty((nw, P + 1), dtype=np.int64)
    taken = np.zeros((nw, P, 8), dtype=np.int64)   # worker p's tasks taken in window w: taken[w, p, 0]
                                                   # (a cache line each)
    ng = ng0.copy()
    for w in range(nw):
        _row_history(X[w], ng, independent, eos, Hist[w], ng_out)
        _copy_rows(ng, ng_out)
        _group_rows(Y[w].reshape(n), word_class, order[w], cnt[w])
        _class_tasks(cnt[w], class_starts, P, tasks[w], cuts[w], first[w])
    _copy_rows(H[T], h0)
    return (H, dSc, dSw, logc, logw, Gcls, Gbc, Delta, Grec, Gbh, seen, losses, bar, recT, u_init, Hist, order, cnt,
            tasks, cuts, first, taken)


@njit(cache=True, nogil=True)
def classes_worker(p, P, X, Y, emb, rec, bh, out_w, bo, cls_w, bc, direct, word_class, class_starts, act,
                   independent, eos, h_init, G, g_emb, g_rec, g_bh, g_out, g_bo, g_cls, g_bc, upd, step_bias,
                   H, dSc, dSw, logc, logw, Gcls, Gbc, Delta, Grec, Gbh, seen, losses, bar, recT, u_init, Hist,
                   order, cnt, tasks, cuts, first, taken):
    """Worker p of P (threads that run at once) of window_grad_classes: the tasks p, p + P, ... of
    every phase of every window, meeting the other workers at a barrier (sync._barrier) after each
    phase. The arrays after step_bias come from classes_setup; step_bias: upd given and the biases
    in use. nogil: the workers are Python threads (rnnlm.threads.window_grad_classes)."""
    nw, T, B = X.shape
    M = rec.shape[0]
    n = T * B
    C = cls_w.shape[0]
    Gs = min(G, B)
    fused = upd.shape[0] > 0
    S = H[1:].reshape((n, M))
    no_direct = 0 * n      # run-time values, not literals: the helpers' serial builds are reused
    grad = n >= 0
    every = np.ones(C, dtype=np.bool_)   # the word layer's buffers, for any class of any window
    zsize = maxm = maxsz = 0
    for wi in range(nw):
        zs, ms, ss = _word_sizes(cnt[wi], class_starts, every, fused)
        zsize, maxm, maxsz = max(zsize, zs), max(maxm, ms), max(maxsz, ss)
    Z_buf, Sg_buf, dg_buf, gw_buf, acc = _word_buffers(zsize, maxm, maxsz, M, grad, fused, emb[0, :0])
    hs = np.zeros(1, dtype=np.int64)
    one = 1 + 0 * n
    for f in range(4 * nw):
        wi = f // 4
        phase = f % 4
        x = X[wi]
        yv = Y[wi].reshape(n)
        for q in range(p, G if phase == 1 else Gs, P):
            b0 = q * B // Gs
            b1 = (q + 1) * B // Gs
            j0 = q * M // Gs
            j1 = (q + 1) * M // Gs
            if phase == 0:     # the recurrence of stream group q, from where its streams ended
                _copy_rows(H[0, b0:b1], H[T, b0:b1])
                if fused and wi > 0 and recT.shape[1] > 0:   # U changed: the group's own U^T again
                    _transpose_into(rec, recT[q])
                _hidden_streams(x, H, b0, b1, emb, rec, recT[q], bh, act, independent, eos, u_init)
                for t in range(T):
                    _clear(dSw[t * B + b0:t * B + b1])
                    for r in range(t * B + b0, t * B + b1):
                        logw[r] = 0.0
            elif phase == 1:   # the class layer of the q-th block of rows
                r0 = q * n // G
                r1 = (q + 1) * n // G
                _clear(Gcls[q])
                _clear(Gbc[q:q + 1])
                _class_layer(S[r0:r1], yv[r0:r1], Hist[wi, r0:r1], cls_w, bc, direct, no_direct, word_class, grad,
                             dSc[r0:r1], Gcls[q], Gbc[q], direct, logc[r0:r1])
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
                k0 = q * C // Gs
                k1 = (q + 1) * C // Gs
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
            elif not fused:    # the gradients of rows j0:j1 of U and of the words of share q
                for j in range(j0, j1):   # in group order, as one thread would
                    for g in range(Gs):
                        g_bh[j] += Gbh[g, j]
                        for h in range(M):
                            g_rec[j, h] += Grec[g, j, h]
                _fold_embedding(x, Delta, g_emb, q, Gs)
            else:              # the step of rows j0:j1 of U and of the words of share q
                _step_rows(rec, Grec, j0, j1, upd)
                _refresh_rows(rec, h_init, j0, j1, rec[:0], u_init)
                if step_bias:
                    _step_rows(bh.reshape((M, 1 + 0 * M)), Gbh.reshape((Gs, M, 1 + 0 * M)), j0, j1, upd)
                _fold_embedding(x, Delta, g_emb, q, Gs)
                _step_embedding(x, emb, g_emb, q, Gs, seen[q], upd)
                for t in range(T):   # seen is all False again for the next window
                    for b in range(B):
                        seen[q, x[t, b]] = False
        for v in range(P if phase == 1 else 0):   # then the word layer: the worker's own tasks, then
            own = (p + v) % P                      # what is left of the others' (taken one at a time)
            k = first[wi, own] + _add(taken[wi, own], one)
            while k < first[wi, own + 1]:
                for i in range(cuts[wi, k], cuts[wi, k + 1]):
                    _word_class(tasks[wi, i], S, yv, Hist[wi], out_w, bo, direct, no_direct, class_starts,
                                order[wi], cnt[wi], grad, dSw, g_out, g_bo, direct, logw, upd, Z_buf, Sg_buf,
                                dg_buf, gw_buf, acc, hs)
                k = first[wi, own] + _add(taken[wi, own], one)
        if f + 1 < 4 * nw:
            _barrier(bar, (f + 1) * P, TIMEOUT_CYCLES)
