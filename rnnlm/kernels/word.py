"""Word-at-a-time Numba kernels (B = 1): rnnlm-0.4b's per-word training schedule, on one thread and
on text shards. Storage and notation as in rnnlm/kernels/__init__.py; the one-step distribution used
for sampling and streaming scoring is in onestep.py.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from rnnlm.kernels.bundles import Stream, Train, Weights
from rnnlm.kernels.common import _activate, _direct_add, _fprime, _softmax_row, direct_hashes
from rnnlm.kernels.sgd import _add_segment, _next_run


@njit(cache=True, fastmath={"reassoc", "contract"})
def _affine(Wm, b, s, lo, hi, out):
    """out[k - lo] = b[k] + Wm[k] . s for k in lo : hi (logits of a block of output units)."""
    for k in range(lo, hi):
        acc = b[k]
        for j in range(s.shape[0]):
            acc += Wm[k, j] * s[j]
        out[k - lo] = acc


# ----------------------------------------------------------------------------- rnnlm-0.4b schedule

DROP_OUT_SALT = 1 << 32   # unit j's output-dropout draw is keyed by j + DROP_OUT_SALT, its input draw by j


@njit(cache=True)
def _dropout_factor(seed, t, j, p):
    """Inverted dropout of unit j at word t of an epoch: 0 with probability p, else 1 / (1 - p).
    A counter-based draw (splitmix64 of seed, t, j), so the mask of any past step can be recomputed
    in the BPTT sweep and a resumed run draws the same masks (tests/reference.py has the same)."""
    z = (np.uint64(seed) + np.uint64(t) * np.uint64(0x9E3779B97F4A7C15)
         + np.uint64(j) * np.uint64(0xD1B54A32D192ED03))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return 0.0 if u < p else 1.0 / (1.0 - p)


@njit(cache=True)
def _shift_history(ng, w_in, reset, eos):
    """Direct-connection history: shift in the new input word, or restart (all end of sentence)."""
    if reset:
        ng[:] = eos
    else:
        for k in range(ng.shape[0] - 1, 0, -1):
            ng[k] = ng[k - 1]
        ng[0] = w_in


@njit(cache=True)
def _direct_update(z, n, direct, hsd, K, wrap, lr, scale, beta):
    """direct[f] -= lr * (scale * dL/dz_i + beta * direct[f]) for each feature f of each unit i of a
    block, in rnnlm-0.4b's order (L2 on every use)."""
    size = direct.shape[0]
    for i in range(n):
        g = z[i] * scale
        for o in range(K):
            f = hsd[o]
            if f == 0:
                break
            direct[f] -= lr * (g + beta * direct[f])
            hsd[o] = f + 1
            if wrap and hsd[o] == size:
                hsd[o] = 0


@njit(cache=True, fastmath={"reassoc", "contract"})
def _sweep(depth, rec, hs, err, act, e, delta, gU, gbh, gV):
    """Back through `depth` steps from the newest: delta(t-k) = f'(net(t-k)) * (err(t-k) +
    U^T delta(t-k+1)); accumulates dL/dU into gU, dL/dtheta_j into gbh, and delta(t-k) into gV[k]
    (the gradient of the input word's embedding)."""
    M = rec.shape[0]
    for j in range(M):
        e[j] = err[0, j]
    for k in range(depth):
        for j in range(M):
            delta[j] = e[j] * _fprime(hs[k, j], act)
            gbh[j] += delta[j]
            gV[k, j] = delta[j]
            dj = delta[j]
            for q in range(M):
                gU[j, q] += dj * hs[k + 1, q]
        if k + 1 < depth:
            for q in range(M):
                e[q] = err[k + 1, q]
            for j in range(M):
                dj = delta[j]
                for q in range(M):
                    e[q] += dj * rec[j, q]


@njit(cache=True)
def _word_forward(w_in, reset, h_init, h, hist, hs, err, istate, emb, rec, bh, act, drop_in, drop_seed, net):
    """The per-word schedule's forward step reading w_in from state h (h_init after a reset): the
    histories hist, hs, err shifted by one step, the new state into hs[0] (net: work array (M))."""
    M = rec.shape[0]
    D = hist.shape[0] - 1
    if reset:
        h[:] = h_init
        istate[1] = 0
    for k in range(D, 0, -1):
        hist[k] = hist[k - 1]
        for j in range(M):   # loops, not slice assignments (see common._copy_rows)
            hs[k, j] = hs[k - 1, j]
            err[k, j] = err[k - 1, j]
    hist[0] = w_in
    for j in range(M):
        hs[1, j] = h[j]
    if istate[1] < D:
        istate[1] += 1
    # forward: net_j = V x + U s(t-1) + theta_j
    _affine(rec, bh, h, np.int64(0), M, net)   # not a literal: _affine compiled once
    if drop_in > 0.0:
        for j in range(M):
            net[j] += emb[w_in, j] * _dropout_factor(drop_seed, istate[0], j, drop_in)
    else:
        for j in range(M):
            net[j] += emb[w_in, j]
    for j in range(M):
        hs[0, j] = _activate(net[j], act)


@njit(cache=True)
def _bptt_update(istate, hist, hs, err, rec, bh, emb, act, lr, beta, clip, use_bias, l2_every, drop_in,
                 drop_seed, e, delta, gU, gbh, gV):
    """The per-word schedule's BPTT step (after istate[0] words): the stored output errors err are
    propagated back through the last istate[1] steps, delta(t-k) = f'(net(t-k)) * (err(t-k) +
    U^T delta(t-k+1)), U, theta_j and the embedding rows of the inputs hist[k] updated once (clipped
    to norm `clip`, L2 every `l2_every` words), err cleared. Work arrays e, delta (M), gU (M, M),
    gbh (M), gV (D + 1, M) (gU, gbh clear on entry and exit)."""
    M = rec.shape[0]
    D = hist.shape[0] - 1
    depth = istate[1]
    _sweep(depth, rec, hs, err, act, e, delta, gU, gbh, gV)
    if drop_in > 0.0:   # the embedding row of step t - k was read through its mask
        for k in range(depth):
            for j in range(M):
                gV[k, j] *= _dropout_factor(drop_seed, istate[0] - 1 - k, j, drop_in)
    scale = 1.0
    if clip > 0.0:
        gg = 0.0
        for j in range(M):
            gg += gbh[j] * gbh[j]
            for q in range(M):
                gg += gU[j, q] * gU[j, q]
        for k in range(depth):
            for j in range(M):
                gg += gV[k, j] * gV[k, j]
        nrm = math.sqrt(gg)
        if nrm > clip:
            scale = clip / nrm
    b2 = beta if (l2_every <= 1 or istate[0] % l2_every == 0) else 0.0
    for j in range(M):
        for q in range(M):
            rec[j, q] -= lr * (scale * gU[j, q] + b2 * rec[j, q])
            gU[j, q] = 0.0
        if use_bias:
            bh[j] -= lr * (scale * gbh[j] + b2 * bh[j])
        gbh[j] = 0.0
    if b2 > 0.0:  # L2 once on each distinct input word of the sweep
        for k in range(depth):
            first = True
            for k2 in range(k):
                if hist[k2] == hist[k]:
                    first = False
            if first:
                for j in range(M):
                    emb[hist[k], j] -= lr * b2 * emb[hist[k], j]
    for k in range(depth):
        for j in range(M):
            emb[hist[k], j] -= lr * scale * gV[k, j]
    for k in range(D + 1):
        for j in range(M):
            err[k, j] = 0.0


@njit(cache=True)
def rnnlm_train_stream(x, y, w, net, tr, st, logp):
    """rnnlm-0.4b's per-word SGD over one stream (B = 1) of inputs x and targets y (1-D), of the
    network w (Weights, updated in place), net (Net), with the settings tr (Train) from the stream
    state st (Stream, advanced in place).

    Every word: forward one step, output-layer update (class layer and the target's class block),
    and its hidden error sum_k delta_k w_kj stored for BPTT. Every `block` words (and, with
    `independent`, at each end of sentence) the stored errors are propagated back through the last
    D = len(hist) - 1 steps and U, V, theta_j updated once (weights folded). This is the exact
    gradient of the block's loss with the state D steps back held constant (see tests).
    State carried between calls (and saved in checkpoints), the fields of st: h (M) current state;
    hist (D + 1) input words, hist[k] of step t - k (-1: none); hs (D + 1, M) states s(t - k); err
    (D + 1, M) stored output errors; ng (Kh) the direct-connection history; istate = [words
    processed, steps available for BPTT]. ln p(y[i]) is written to logp[i]. Full softmax (no classes) is supported too.
    As in rnnlm-0.4b, L2 acts on the output and hidden weights only when the word count is a multiple
    of `l2_every` (10 there) and on the direct connections at every use; `use_bias` False leaves the
    biases untouched (rnnlm-0.4b has none).
    Dropout (inverted, on the non-recurrent connections only): the input word's embedding row is
    multiplied by a mask drawn with rate `drop_in`, the state fed to the output layer by one with rate
    `drop_out`; the recurrence sees the undropped state. Masks are keyed by (drop_seed, istate[0], unit)
    (_dropout_factor). Rates 0 draw nothing and give exactly the plain schedule.
    """
    emb, rec, bh, out_w, bo, cls_w, bc, direct = w
    word_class, class_starts, act, independent, eos, h_init, dorder = net
    lr, beta, clip, block, use_bias, l2_every, drop_in, drop_out, drop_seed = tr
    h, hist, hs, err, ng, istate = st
    n = x.shape[0]
    M = rec.shape[0]
    N = out_w.shape[0]
    C = cls_w.shape[0]
    D = hist.shape[0] - 1
    dt = emb.dtype
    net = np.empty(M, dtype=dt)
    zc = np.empty(max(C, 1), dtype=dt)
    zw = np.empty(N, dtype=dt)
    e = np.empty(M, dtype=dt)
    so = np.empty(M, dtype=dt)
    mo = np.ones(M, dtype=dt)
    delta = np.empty(M, dtype=dt)
    gU = np.zeros((M, M), dtype=dt)
    gbh = np.zeros(M, dtype=dt)
    gV = np.zeros((D + 1, M), dtype=dt)
    K = dorder if direct.shape[0] > 0 else 0
    size = direct.shape[0]
    hsd = np.zeros(max(K, 1), dtype=np.int64)
    no_class = -1 + 0 * n   # run-time values, not literals: each literal flag or class would make
    wrap = n >= 0           # Numba compile another copy of the helpers (a cold-start cost)
    no_wrap = n < 0
    loss = 0.0
    for i in range(n):
        w_in = x[i]
        tgt = y[i]
        reset = independent and w_in == eos
        _shift_history(ng, w_in, reset, eos)
        _word_forward(w_in, reset, h_init, h, hist, hs, err, istate, emb, rec, bh, act, drop_in, drop_seed, net)
        # the output layer reads s = the state, dropped out with rate drop_out
        if drop_out > 0.0:
            for j in range(M):
                mo[j] = _dropout_factor(drop_seed, istate[0], j + DROP_OUT_SALT, drop_out)
                so[j] = hs[0, j] * mo[j]
        else:
            for j in range(M):
                so[j] = hs[0, j]
        s = so
        # output distribution and deltas (dL/dnet = y - d)
        if C > 0:
            c = np.int64(word_class[tgt])
            _affine(cls_w, bc, s, np.int64(0), C, zc)
            if K > 0:
                direct_hashes(ng, K, no_class, size, hsd)
                _direct_add(zc, C, direct, hsd, K, no_wrap)
            _softmax_row(zc, C)
            lp = math.log(zc[c])
            zc[c] -= 1.0
            lo = class_starts[c]
            hi = class_starts[c + 1]
        else:
            c = no_class + 1
            lp = 0.0
            lo = 0
            hi = N
        _affine(out_w, bo, s, lo, hi, zw)
        if K > 0:
            direct_hashes(ng, K, c, size, hsd)
            _direct_add(zw, hi - lo, direct, hsd, K, wrap)
        _softmax_row(zw, hi - lo)
        lp += math.log(zw[tgt - lo])
        zw[tgt - lo] -= 1.0
        logp[i] = lp
        loss -= lp
        # hidden error from the output layer, with the weights before this word's update
        for j in range(M):
            e[j] = 0.0
        for k in range(C):
            g = zc[k]
            for j in range(M):
                e[j] += g * cls_w[k, j]
        for k in range(lo, hi):
            g = zw[k - lo]
            for j in range(M):
                e[j] += g * out_w[k, j]
        for j in range(M):
            err[0, j] = e[j] * mo[j]
        # output-layer update (clipped to norm `clip`), L2 on the touched rows
        scale = 1.0
        if clip > 0.0:
            gg = 0.0
            for k in range(C):
                gg += zc[k] * zc[k]
            for k in range(hi - lo):
                gg += zw[k] * zw[k]
            ss = 1.0
            for j in range(M):
                ss += s[j] * s[j]
            nrm = math.sqrt(gg * ss)
            if nrm > clip:
                scale = clip / nrm
        if K > 0:  # direct connections first (words, then classes), as rnnlm-0.4b
            direct_hashes(ng, K, c, size, hsd)
            _direct_update(zw, hi - lo, direct, hsd, K, wrap, lr, scale, beta)
            if C > 0:
                direct_hashes(ng, K, no_class, size, hsd)
                _direct_update(zc, C, direct, hsd, K, no_wrap, lr, scale, beta)
        b2 = beta if (l2_every <= 1 or (istate[0] + 1) % l2_every == 0) else 0.0
        for k in range(C):
            g = zc[k] * scale
            for j in range(M):
                cls_w[k, j] -= lr * (g * s[j] + b2 * cls_w[k, j])
            if use_bias:
                bc[k] -= lr * (g + b2 * bc[k])
        for k in range(lo, hi):
            g = zw[k - lo] * scale
            for j in range(M):
                out_w[k, j] -= lr * (g * s[j] + b2 * out_w[k, j])
            if use_bias:
                bo[k] -= lr * (g + b2 * bo[k])
        for j in range(M):
            h[j] = hs[0, j]
        istate[0] += 1
        if istate[0] % block == 0 or (independent and tgt == eos):
            _bptt_update(istate, hist, hs, err, rec, bh, emb, act, lr, beta, clip, use_bias, l2_every,
                         drop_in, drop_seed, e, delta, gU, gbh, gV)
    return loss


# ----------------------------------------------------------------------------- per-word schedule on threads
# (driven by rnnlm.training.threads.rnnlm_train_shards)

SHARD_SEED_STEP = 0x5851F42D

@njit(cache=True)
def _block_views(f, N, M, C, S):
    """The named blocks of one flat parameter buffer (order of model.param_shapes), as Weights."""
    o = 0
    emb = f[o:o + N * M].reshape((N, M))
    o += N * M
    rec = f[o:o + M * M].reshape((M, M))
    o += M * M
    bh = f[o:o + M]
    o += M
    out_w = f[o:o + N * M].reshape((N, M))
    o += N * M
    bo = f[o:o + N]
    o += N
    cls_w = f[o:o + C * M].reshape((C, M))
    o += C * M
    bc = f[o:o + C]
    o += C
    direct = f[o:o + S]
    return Weights(emb, rec, bh, out_w, bo, cls_w, bc, direct)


@njit(cache=True, nogil=True)
def shard_run(t, a, sync, X, Y, lens, reps, N, M, C, S, net, tr, streams, LOGP):
    """Words a : a + sync of shard t of rnnlm.training.threads.rnnlm_train_shards (the per-word schedule on
    replica reps[t], whose blocks are the N, M, C, S model's, with the shard's own stream state
    streams[t]: a Stream of arrays with one row per shard; net: Net, tr: Train; nogil, for one Python
    thread per shard). Shard t draws its dropout masks with seed tr.drop_seed + t * SHARD_SEED_STEP."""
    lo = min(a, lens[t])
    hi = min(a + sync, lens[t])
    if hi > lo:
        rnnlm_train_stream(X[t, lo:hi], Y[t, lo:hi], _block_views(reps[t], N, M, C, S), net,
                           _shard_train(tr, t), _shard_stream(streams, t), LOGP[t, lo:hi])


@njit(cache=True)
def _shard_train(tr, t):
    """The settings of shard t: its own dropout seed."""
    return Train(tr.lr, tr.beta, tr.clip, tr.block, tr.use_bias, tr.l2_every, tr.drop_in, tr.drop_out,
                 tr.drop_seed + t * SHARD_SEED_STEP)


@njit(cache=True)
def _shard_stream(streams, t):
    """Row t of the shards' stacked stream state."""
    return Stream(streams.h[t], streams.hist[t], streams.hs[t], streams.err[t], streams.ng[t], streams.istate[t])


MERGE_BLOCK = 512   # weights the merge takes at a time (its work arrays stay in L1)


@njit(cache=True)
def changeable_pieces(X, lens, HIST, a, sync, N, M, P, piece):
    """The weights a round of the shards (words a : a + sync of each) can change, as ascending
    [start, end) pieces of the flat buffer (at most `piece` long): the embedding rows of the words in
    the shards' BPTT histories at its start (HIST, -1 for none) and of their inputs in the round (the
    per-word schedule changes no other embedding row: N * M of the P weights, most of them untouched
    in a round), then every weight after the embedding."""
    used = np.zeros(N, dtype=np.bool_)
    for v in HIST.ravel():
        if v >= 0:
            used[v] = True
    for t in range(X.shape[0]):
        for i in range(min(a, lens[t]), min(a + sync, lens[t])):
            used[X[t, i]] = True
    out = np.empty((N + (P - N * M) // piece + 2, 2), dtype=np.int64)
    n = np.int64(0)   # not literals: the helpers are compiled once, for int64
    w = np.int64(0)
    while w < N:                                   # embedding rows, adjacent rows merged
        w, e = _next_run(used, w, N)
        if w < N:
            n = _add_segment(out, n, w * M, e * M, piece)
        w = e
    n = _add_segment(out, n, N * M, P, piece)
    return out[:n]


@njit(cache=True, nogil=True)
def merge_pieces(pieces, p0, p1, base, reps):
    """Merge the weights of ranges pieces[p] = (start, end), p0 <= p < p1 (one thread's share of the
    weights a round can have changed, see rnnlm.training.threads.rnnlm_train_shards) of the shards' replicas
    into base and back into every replica: a weight only one shard changed takes that shard's value
    (a row only one shard used keeps its whole change); a weight several changed moves by the mean of
    their changes (summed in float64, shards in order)."""
    acc = np.empty(MERGE_BLOCK, dtype=np.float64)
    last = np.empty(MERGE_BLOCK, dtype=base.dtype)
    cnt = np.empty(MERGE_BLOCK, dtype=np.int32)
    for p in range(p0, p1):
        _merge_range(pieces[p, 0], pieces[p, 1], base, reps, acc, last, cnt)


@njit(cache=True, nogil=True)
def _merge_range(i0, i1, base, reps, acc, last, cnt):
    """merge_pieces on weights i0 : i1, in blocks of MERGE_BLOCK (work arrays acc, last, cnt of that
    size), each pass over a block a branch-free loop (selects instead of branches), so that the
    compiler vectorises it: the merge runs between every `sync` words of the shards and was a quarter
    of their time as a scalar loop."""
    T = reps.shape[0]
    for a in range(i0, i1, MERGE_BLOCK):
        n = min(MERGE_BLOCK, i1 - a)
        bv = base[a:a + n]
        for j in range(n):
            acc[j] = 0.0
            cnt[j] = 0
            last[j] = bv[j]
        for t in range(T):
            rv = reps[t, a:a + n]
            for j in range(n):
                d = rv[j] - bv[j]
                changed = d != 0.0
                acc[j] += d                    # d is 0 where unchanged: the sum of the changes
                cnt[j] += 1 if changed else 0
                last[j] = rv[j] if changed else last[j]
        for j in range(n):
            c = cnt[j]
            v = bv[j] + acc[j] / (c if c > 1 else 1)
            v = last[j] if c == 1 else v
            bv[j] = bv[j] if c == 0 else v
        for t in range(T):
            rv = reps[t, a:a + n]
            for j in range(n):
                rv[j] = bv[j]
