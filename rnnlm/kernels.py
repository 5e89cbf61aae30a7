"""Every Numba kernel of the toolkit: plain functions over arrays and scalars.

Notation follows ../shared/design/seed-equations.md; storage is row-major and chosen for gathers:
  emb    (N, M)  input -> hidden weights V, stored transposed: row w is column w of V (the embedding)
  rec    (M, M)  recurrent weights U, rec[j, h] = u[j, h] (to unit j from previous unit h)
  bh     (M,)    hidden bias theta_j
  out_w  (N, M)  hidden -> output weights W, out_w[k, j] = w[k, j]
  bo     (N,)    output bias theta_k
  cls_w  (C, M), bc (C,)  class layer of the class-factored softmax (C = 0: full softmax)
  direct (S,)    hashed direct n-gram connections (rnnlm-0.4b's -direct; S = 0: none), see below
Words are numbered so that every class is a contiguous id range class_starts[c] : class_starts[c+1].

Gradients are those of the loss L = -sum ln y_target (or the SSE), i.e. minus the seed equations'
deltas: a kernel *adds* dL/dparam into the gradient arrays it is given; the optimiser kernels
(`sgd_dense`, `sgd_rows`) apply p -= lr * (scale * g + beta * p) and clear the gradient.

Batched kernels take time-major id arrays x, y of shape (T, B): B parallel streams, T steps; x[t, b]
is the input word at step t, y[t, b] the word to predict. Hidden states live in H (T + 1, B, M) with
H[0] the carried-in state; token (t, b) is row t * B + b of the (T * B, M) view of H[1:].

Word-at-a-time kernels (rnnlm-0.4b's per-word schedule, one-step distributions) are in kernels_seq.py.

Direct connections (rnnlm-0.4b's maximum-entropy features, its exact hashing): the input words of
the last K - 1 steps (K = `dorder`; hist[0] is the current input word, hist[k] the input k steps
back) select, for each order o < K, a base index into `direct`: class features in the first half of
the table, word features (which also depend on the target's class) in the second; output unit i of
the block gets direct[base_o + i] added to its logit for every order until the first absent one.
The history is per stream, starts as end-of-sentence ids, and is reset to them with `independent`.

Activation codes: 0 sigmoid, 1 tanh, 2 relu. Cost codes: 0 cross-entropy, 1 summed squared error
(full softmax only). With `independent`, a step whose input is the end-of-sentence id starts from the
constant state h_init (no gradient flows to earlier steps), as rnnlm-0.4b's -independent.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

SIGMOID, TANH, RELU = 0, 1, 2
CE, SSE = 0, 1


# ----------------------------------------------------------------------------- small helpers

@njit(cache=True)
def _activate(v, act):
    if act == SIGMOID:
        return 1.0 / (1.0 + math.exp(-v))
    if act == TANH:
        return math.tanh(v)
    return v if v > 0.0 else 0.0


@njit(cache=True)
def _fprime(s, act):
    """f'(net) written in terms of s = f(net) (exact for all three activations)."""
    if act == SIGMOID:
        return s * (1.0 - s)
    if act == TANH:
        return 1.0 - s * s
    return 1.0 if s > 0.0 else 0.0


@njit(cache=True)
def _softmax_row(z, n):
    """In place: z[:n] <- softmax(z[:n]) computed stably; returns ln(sum exp(z - max)) + max."""
    mx = z[0]
    for k in range(1, n):
        if z[k] > mx:
            mx = z[k]
    tot = 0.0
    for k in range(n):
        e = math.exp(z[k] - mx)
        z[k] = e
        tot += e
    inv = 1.0 / tot
    for k in range(n):
        z[k] *= inv
    return mx + math.log(tot)


@njit(cache=True)
def _biased_softmax_row(z, bias, off, n):
    """z[:n] <- softmax(z[:n] + bias[off:off + n]), in place."""
    for k in range(n):
        z[k] += bias[off + k]
    _softmax_row(z, n)


# ----------------------------------------------------------------------------- direct n-gram hashing

PRIMES = np.array([108641969, 116049371, 125925907, 133333309, 145678979, 175308587, 197530793, 234567803,
                   251851741, 264197411, 330864029, 399999781, 407407183, 459258997, 479012069, 545678687,
                   560493491, 607407037, 629629243, 656789717, 716048933, 718518067, 725925469, 733332871,
                   753085943, 755555077, 782715551, 790122953, 812345159, 814814293, 893826581, 923456189,
                   940740127, 953085797, 985184539, 990122807], dtype=np.uint64)
P0P1 = np.uint64((108641969 * 116049371) % 2 ** 32)   # rnnlm-0.4b multiplies these in 32 bits


@njit(cache=True)
def direct_hashes(hist, K, cls, size, out):
    """rnnlm-0.4b's hash of the n-gram features of orders 0..K-1 into out[:K].

    hist: input words, hist[0] the most recent (-1 = absent: that order and all higher get 0);
    cls = -1 for the class features (first half of the table), else the target's class (word
    features, second half). Arithmetic exactly as rnnlm-0.4b: unsigned 64 bits, with the index into
    PRIMES computed in 32 bits. A zero entry means "absent": the application loops stop there.
    """
    half = np.uint64(size // 2)
    mask32 = np.uint64(0xFFFFFFFF)
    for o in range(K):
        if o > 0 and hist[o - 1] < 0:
            for q in range(o, K):
                out[q] = 0
            return
        h = P0P1
        if cls >= 0:
            h = h * np.uint64(cls + 1)
        for k in range(1, o + 1):
            idx = ((np.uint64(o) * PRIMES[k] + np.uint64(k)) & mask32) % np.uint64(36)
            h = h + PRIMES[idx] * np.uint64(hist[k - 1] + 1)
        h = h % half
        if cls >= 0:
            h = h + half
        out[o] = np.int64(h)


@njit(cache=True)
def _direct_add(z, n, direct, hs, K, wrap):
    """z[i] += direct features of output i = 0..n-1 of a block (rnnlm-0.4b's loop: for each unit,
    orders in turn until a zero index; each order's index then moves on by one, modulo the table
    size for words (wrap), not for classes). hs (K) is advanced in place."""
    size = direct.shape[0]
    for i in range(n):
        for o in range(K):
            if hs[o] == 0:
                break
            z[i] += direct[hs[o]]
            hs[o] += 1
            if wrap and hs[o] == size:
                hs[o] = 0


@njit(cache=True)
def _direct_grad(dz, n, g_direct, hs, K, wrap):
    """g_direct += dL/dz through the same features (the transpose of _direct_add)."""
    size = g_direct.shape[0]
    for i in range(n):
        for o in range(K):
            if hs[o] == 0:
                break
            g_direct[hs[o]] += dz[i]
            hs[o] += 1
            if wrap and hs[o] == size:
                hs[o] = 0


@njit(cache=True)
def _row_history(x, ng0, independent, eos, Hist, ng_out):
    """Direct-connection history of every token of a (T, B) window: Hist[t * B + b] = the input words
    of stream b at steps t, t-1, ... (ng0 (B, Kh): the carried history; ng_out: the new one)."""
    T, B = x.shape
    Kh = ng0.shape[1]
    ng_out[:, :] = ng0
    for t in range(T):
        for b in range(B):
            w = x[t, b]
            if independent and w == eos:
                for k in range(Kh):
                    ng_out[b, k] = eos
            else:
                for k in range(Kh - 1, 0, -1):
                    ng_out[b, k] = ng_out[b, k - 1]
                ng_out[b, 0] = w
            Hist[t * B + b, :] = ng_out[b]


# ----------------------------------------------------------------------------- forward (hidden)

@njit(cache=True)
def _hidden_forward(x, h0, emb, rec, bh, act, independent, eos, h_init):
    """States H (T + 1, B, M) of a window: H[0] = h0, H[t + 1] = f(V x(t) + U H[t] + theta_j)."""
    T, B = x.shape
    M = rec.shape[0]
    H = np.empty((T + 1, B, M), dtype=emb.dtype)
    H[0] = h0
    recT = rec.T
    u_init = np.zeros(M, dtype=rec.dtype)  # U @ (h_init * 1): the recurrent input of a reset step
    for j in range(M):
        acc = 0.0
        for h in range(M):
            acc += rec[j, h]
        u_init[j] = acc * h_init
    for t in range(T):
        cur = H[t + 1]
        np.dot(H[t], recT, cur)
        for b in range(B):
            w = x[t, b]
            if independent and w == eos:
                for j in range(M):
                    cur[b, j] = u_init[j]
            for j in range(M):
                cur[b, j] = _activate(cur[b, j] + emb[w, j] + bh[j], act)
    return H


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
    for r in range(n):
        z = Z[r]
        if K > 0:
            direct_hashes(Hist[r], K, 0, direct.shape[0], hs)
            _direct_add(z, N, direct, hs, K, True)
        _biased_softmax_row(z, bo, 0, N)
        tgt = yv[r]
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
            direct_hashes(Hist[r], K, 0, direct.shape[0], hs)
            _direct_grad(z, N, g_direct, hs, K, True)
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


@njit(cache=True)
def _class_output(S, yv, Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts, want_grad,
                  dS, g_out, g_bo, g_cls, g_bc, g_direct, logp):
    """Class-factored softmax P(w|s) = P(c(w)|s) P(w|c(w),s) for the rows of S (n, M), CE cost.

    Rows are grouped by the class of their target so that each class block is one matrix product.
    """
    n, M = S.shape
    C = cls_w.shape[0]
    dt = S.dtype
    Zc = np.empty((n, C), dtype=dt)
    np.dot(S, cls_w.T, Zc)
    size = direct.shape[0]
    hs = np.zeros(max(K, 1), dtype=np.int64)
    loss = 0.0
    for r in range(n):
        z = Zc[r]
        if K > 0:
            direct_hashes(Hist[r], K, -1, size, hs)
            _direct_add(z, C, direct, hs, K, False)
        _biased_softmax_row(z, bc, 0, C)
        c = word_class[yv[r]]
        logp[r] = math.log(z[c])
        if want_grad:
            z[c] -= 1.0
            if K > 0:
                direct_hashes(Hist[r], K, -1, size, hs)
                _direct_grad(z, C, g_direct, hs, K, False)
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
    # group rows by target class (counting sort, stable)
    cnt = np.zeros(C + 1, dtype=np.int64)
    for r in range(n):
        cnt[word_class[yv[r]] + 1] += 1
    for c in range(C):
        cnt[c + 1] += cnt[c]
    order = np.empty(n, dtype=np.int64)
    pos = cnt[:C].copy()
    maxsz = 0
    for c in range(C):
        sz = class_starts[c + 1] - class_starts[c]
        if sz > maxsz:
            maxsz = sz
    for r in range(n):
        c = word_class[yv[r]]
        order[pos[c]] = r
        pos[c] += 1
    Sg_buf = np.empty(n * M, dtype=dt)
    dg_buf = np.empty(n * M, dtype=dt)
    Z_buf = np.empty(n * maxsz, dtype=dt)
    gw_buf = np.empty(maxsz * M, dtype=dt)
    for c in range(C):
        lo = cnt[c]
        m = cnt[c + 1] - lo
        if m == 0:
            continue
        cs = class_starts[c]
        sz = class_starts[c + 1] - cs
        Wc = out_w[cs:cs + sz]
        Sg = Sg_buf[:m * M].reshape((m, M))
        for i in range(m):
            Sg[i, :] = S[order[lo + i]]
        Z = Z_buf[:m * sz].reshape((m, sz))
        np.dot(Sg, Wc.T, Z)
        for i in range(m):
            r = order[lo + i]
            z = Z[i]
            if K > 0:
                direct_hashes(Hist[r], K, c, size, hs)
                _direct_add(z, sz, direct, hs, K, True)
            _biased_softmax_row(z, bo, cs, sz)
            tk = yv[r] - cs
            lp = math.log(z[tk])
            logp[r] += lp
            loss -= logp[r]
            if want_grad:
                z[tk] -= 1.0
                if K > 0:
                    direct_hashes(Hist[r], K, c, size, hs)
                    _direct_grad(z, sz, g_direct, hs, K, True)
        if want_grad:
            gw = gw_buf[:sz * M].reshape((sz, M))
            np.dot(Z.T, Sg, gw)
            for k in range(sz):
                for j in range(M):
                    g_out[cs + k, j] += gw[k, j]
            for i in range(m):
                for k in range(sz):
                    g_bo[cs + k] += Z[i, k]
            dg = dg_buf[:m * M].reshape((m, M))
            np.dot(Z, Wc, dg)
            for i in range(m):
                r = order[lo + i]
                for j in range(M):
                    dS[r, j] += dg[i, j]
    return loss


@njit(cache=True)
def _output_layer(S, yv, Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts, cost, want_grad,
                  dS, g_out, g_bo, g_cls, g_bc, g_direct, logp, chunk):
    """Output layer over rows of S in chunks of `chunk` rows (bounds the full-softmax buffer)."""
    n, M = S.shape
    N = out_w.shape[0]
    full = cls_w.shape[0] == 0
    loss = 0.0
    Z = np.empty((min(chunk, n) if full else 0, N), dtype=S.dtype)
    gtmp = np.empty((N if (full and want_grad) else 0, M), dtype=S.dtype)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        if full:
            loss += _full_output(S[lo:hi], yv[lo:hi], Hist[lo:hi], out_w, bo, direct, K, cost, want_grad,
                                 Z[:hi - lo], dS[lo:hi], g_out, g_bo, g_direct, gtmp, logp[lo:hi])
        else:
            loss += _class_output(S[lo:hi], yv[lo:hi], Hist[lo:hi], out_w, bo, cls_w, bc, direct, K,
                                  word_class, class_starts, want_grad, dS[lo:hi], g_out, g_bo, g_cls,
                                  g_bc, g_direct, logp[lo:hi])
    return loss


# ----------------------------------------------------------------------------- batched entry points

@njit(cache=True)
def window_grad(x, y, h0, ng0, emb, rec, bh, out_w, bo, cls_w, bc, direct, word_class, class_starts,
                act, cost, independent, eos, h_init, dorder,
                g_emb, g_rec, g_bh, g_out, g_bo, g_cls, g_bc, g_direct, h_out, ng_out):
    """Forward and truncated-BPTT backward over one (T, B) window; returns the summed loss.

    Adds dL/dparam into the g_* arrays (dense; for emb only rows of the window's input words change)
    and writes the final hidden state into h_out (B, M). The loss is that of the truncated objective:
    h0 is a constant, gradients flow through the T steps of this window only. ng0 (B, Kh) is the
    direct-connection history carried in (Kh >= max(dorder - 1, 1)), ng_out the one carried out.
    """
    T, B = x.shape
    M = rec.shape[0]
    dt = emb.dtype
    H = _hidden_forward(x, h0, emb, rec, bh, act, independent, eos, h_init)
    S = H[1:].reshape((T * B, M))
    yv = y.reshape(T * B)
    Hist = np.empty((T * B, ng0.shape[1]), dtype=np.int64)
    _row_history(x, ng0, independent, eos, Hist, ng_out)
    K = dorder if direct.shape[0] > 0 else 0
    dS = np.zeros((T * B, M), dtype=dt)
    logp = np.empty(T * B, dtype=np.float64)
    loss = _output_layer(S, yv, Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts, cost, True,
                         dS, g_out, g_bo, g_cls, g_bc, g_direct, logp, 1024)
    # backward through time
    carry = np.zeros((B, M), dtype=dt)
    delta = np.empty((B, M), dtype=dt)
    gtmp = np.empty((M, M), dtype=dt)
    for t in range(T - 1, -1, -1):
        s = H[t + 1]
        for b in range(B):
            r = t * B + b
            for j in range(M):
                delta[b, j] = (dS[r, j] + carry[b, j]) * _fprime(s[b, j], act)
        for b in range(B):
            for j in range(M):
                g_bh[j] += delta[b, j]
        np.dot(delta.T, H[t], gtmp)
        for j in range(M):
            for h in range(M):
                g_rec[j, h] += gtmp[j, h]
        for b in range(B):
            w = x[t, b]
            for j in range(M):
                g_emb[w, j] += delta[b, j]
            if independent and w == eos:  # the previous state was the constant h_init
                for j in range(M):
                    for h in range(M):
                        g_rec[j, h] += delta[b, j] * (h_init - H[t, b, h])
        if t > 0:
            np.dot(delta, rec, carry)
            if independent:
                for b in range(B):
                    if x[t, b] == eos:
                        carry[b, :] = 0.0
    h_out[:, :] = H[T]
    return loss


@njit(cache=True)
def window_logprob(x, y, h0, ng0, emb, rec, bh, out_w, bo, cls_w, bc, direct, word_class, class_starts,
                   act, independent, eos, h_init, dorder, logp, h_out, ng_out):
    """Forward only: ln p(y[t, b] | history) into logp (T, B); final hidden state into h_out and
    direct-connection history into ng_out (see window_grad)."""
    T, B = x.shape
    M = rec.shape[0]
    dt = emb.dtype
    H = _hidden_forward(x, h0, emb, rec, bh, act, independent, eos, h_init)
    S = H[1:].reshape((T * B, M))
    Hist = np.empty((T * B, ng0.shape[1]), dtype=np.int64)
    _row_history(x, ng0, independent, eos, Hist, ng_out)
    K = dorder if direct.shape[0] > 0 else 0
    dummy2 = np.empty((0, M), dtype=dt)
    dummy1 = np.empty(0, dtype=dt)
    _output_layer(S, y.reshape(T * B), Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts, CE,
                  False, dummy2, dummy2, dummy1, dummy2, dummy1, dummy1, logp.reshape(T * B), 512)
    h_out[:, :] = H[T]


# ----------------------------------------------------------------------------- optimiser

@njit(cache=True)
def sq_norm_dense(g):
    acc = 0.0
    for v in g.ravel():
        acc += v * v
    return acc


@njit(cache=True)
def sq_norm_rows(g, rows):
    acc = 0.0
    for r in rows:
        for v in g[r]:
            acc += v * v
    return acc


@njit(cache=True)
def sgd_dense(p, g, lr, scale, beta):
    """p -= lr * (scale * g + beta * p); g <- 0. p and g are flat contiguous arrays."""
    for i in range(p.shape[0]):
        p[i] -= lr * (scale * g[i] + beta * p[i])
        g[i] = 0.0


@njit(cache=True)
def sgd_touched(p, g, lr, scale, beta):
    """The same update on the entries with a nonzero gradient only (sparse blocks: direct
    connections, where L2 acts on the features an update used); g <- 0."""
    for i in range(p.shape[0]):
        if g[i] != 0.0:
            p[i] -= lr * (scale * g[i] + beta * p[i])
            g[i] = 0.0


@njit(cache=True)
def sgd_rows(p, g, rows, lr, scale, beta):
    """The same update restricted to the given (unique) rows of 2-D p and g; those rows of g <- 0."""
    for r in rows:
        for j in range(p.shape[1]):
            p[r, j] -= lr * (scale * g[r, j] + beta * p[r, j])
            g[r, j] = 0.0
