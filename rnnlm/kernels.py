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
(`sgd_pieces`, `sgd_touched`) apply p -= lr * (scale * g + beta * p) and clear the gradient.

Threads: `window_grad_classes` (class softmax: the output layer shared among threads by classes,
balanced by work) and `window_grad_groups` (full softmax: one group of streams per thread, each with
its own gradient buffer) are the only parallel kernels; `sgd_pieces_par` / `reduce_pieces_par` share
an update's pieces. Every buffer a thread writes is its own or a disjoint part of a shared one, and
partial results are summed in a fixed order: the same thread count gives the same bits. BLAS is
called single-threaded (the callers limit it). Reassociation/contraction are allowed only in the
dot-product helpers (`FM` below), never where exp/log/softmax are computed.

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
import os



def _others_running() -> bool:
    """Whether another task is running right now (Linux /proc/loadavg: running tasks, this one
    included); False where that cannot be read."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return int(fh.read().split()[3].split("/")[0]) > 1
    except (OSError, ValueError, IndexError):
        return False


# OpenMP wait policy of Numba's threads (read when Numba starts them, hence decided on import; the
# user's OMP_WAIT_POLICY wins). The parallel kernels run a few short regions per window: on idle
# cores, threads that spin between regions start the next one at once (sleeping ones cost a wake-up
# per region: no gain at all at hidden 100); but when other processes share the cores, spinning
# threads starve the thread a region waits for and training runs up to 100x slower. So: sleep when
# another process is running at start-up, spin (the runtime's default) otherwise. Only speed
# depends on it, never the results.
if "OMP_WAIT_POLICY" not in os.environ and _others_running():
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

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
    b = bias[off:off + n]
    for k in range(n):
        z[k] += b[k]
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
    for b in range(B):
        for k in range(Kh):
            ng_out[b, k] = ng0[b, k]
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
            for k in range(Kh):
                Hist[t * B + b, k] = ng_out[b, k]


# ----------------------------------------------------------------------------- dot-product helpers
# The only functions compiled with reassociation and FMA contraction: dot products, row
# accumulations and sums of squares, i.e. the freedom any BLAS call takes. Nothing here (and no
# caller inherits the flags) evaluates exp, log, tanh or a softmax.

FM = {"reassoc", "contract"}


@njit(cache=True, fastmath=FM)
def _dot(a, b):
    """sum_i a[i] * b[i] in the arrays' own precision (1-D, same length >= 1)."""
    acc = a[0] * b[0]
    for i in range(1, a.shape[0]):
        acc += a[i] * b[i]
    return acc


@njit(cache=True, fastmath=FM)
def _matvec(A, v, out):
    """out[j] = A[j] . v (A row-major (n, m), v (m,))."""
    for j in range(A.shape[0]):
        out[j] = _dot(A[j], v)


@njit(cache=True, fastmath=FM)
def _rows_dot(Wm, lo, n, s, z):
    """z[k] = Wm[lo + k] . s for k < n: the logits (without bias) of a block of output units."""
    for k in range(n):
        z[k] = _dot(Wm[lo + k], s)


@njit(cache=True, fastmath=FM)
def _rows_backprop(Wm, gW, lo, n, dz, s, ds):
    """Backward through the block of units lo : lo + n given dL/dz = dz[:n]: gW[lo + k] += dz[k] s
    (the weights' gradient) and ds += sum_k dz[k] Wm[lo + k] (the gradient of the input s)."""
    M = s.shape[0]
    for k in range(n):
        d = dz[k]
        w = Wm[lo + k]
        g = gW[lo + k]
        for j in range(M):
            g[j] += d * s[j]
            ds[j] += d * w[j]


@njit(cache=True, fastmath=FM)
def _sq_sum(g):
    """sum of g[i]^2, accumulated in float64 (g 1-D)."""
    acc = 0.0
    for i in range(g.shape[0]):   # loops from 0 over views: no negative-index checks, vectorised
        v = g[i]
        acc += v * v
    return acc


@njit(cache=True)
def _biased_logprob(z, bias, off, n, tgt):
    """ln softmax(z[:n] + bias[off:off + n])[tgt], computed stably without normalising the row
    (z[:n] gets the bias added in place)."""
    b = bias[off:off + n]
    for k in range(n):
        z[k] += b[k]
    mx = z[0]
    for k in range(1, n):
        if z[k] > mx:
            mx = z[k]
    tot = 0.0
    for k in range(n):
        tot += math.exp(z[k] - mx)
    return (z[tgt] - mx) - math.log(tot)


# ----------------------------------------------------------------------------- forward (hidden)

SMALL_BATCH = 4   # below this many streams the recurrent product is a loop, not a BLAS call


@njit(cache=True)
def _reset_input(rec, h_init):
    """U @ (h_init * 1): the recurrent input of a step that starts from the constant state."""
    M = rec.shape[0]
    u_init = np.zeros(M, dtype=rec.dtype)
    for j in range(M):
        acc = 0.0
        for h in range(M):
            acc += rec[j, h]
        u_init[j] = acc * h_init
    return u_init


@njit(cache=True)
def _hidden_streams(x, H, b0, b1, emb, rec, bh, act, independent, eos, u_init):
    """H[t + 1, b] = f(V x(t) + U H[t, b] + theta_j) for the streams b0 <= b < b1 (H[0] given)."""
    T = x.shape[0]
    M = rec.shape[0]
    recT = rec.T
    for t in range(T):
        cur = H[t + 1, b0:b1]
        if b1 - b0 < SMALL_BATCH:
            for b in range(b1 - b0):
                _matvec(rec, H[t, b0 + b], cur[b])
        else:
            np.dot(H[t, b0:b1], recT, cur)
        for b in range(b1 - b0):
            w = x[t, b0 + b]
            if independent and w == eos:
                for j in range(M):
                    cur[b, j] = u_init[j]
            for j in range(M):
                cur[b, j] = _activate(cur[b, j] + emb[w, j] + bh[j], act)


@njit(cache=True)
def _hidden_forward(x, h0, emb, rec, bh, act, independent, eos, h_init):
    """States H (T + 1, B, M) of a window: H[0] = h0, H[t + 1] = f(V x(t) + U H[t] + theta_j)."""
    T, B = x.shape
    M = rec.shape[0]
    H = np.empty((T + 1, B, M), dtype=emb.dtype)
    H[0] = h0
    _hidden_streams(x, H, 0, B, emb, rec, bh, act, independent, eos, _reset_input(rec, h_init))
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
        tgt = yv[r]
        if not want_grad and cost == CE:
            logp[r] = _biased_logprob(z, bo, 0, N, tgt)
            loss -= logp[r]
            continue
        _biased_softmax_row(z, bo, 0, N)
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
    for r in range(n):
        z = Zc[r]
        if K > 0:
            direct_hashes(Hist[r], K, -1, size, hs)
            _direct_add(z, C, direct, hs, K, False)
        c = word_class[yv[r]]
        if not want_grad:
            logp[r] = _biased_logprob(z, bc, 0, C, c)
            continue
        _biased_softmax_row(z, bc, 0, C)
        logp[r] = math.log(z[c])
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


@njit(cache=True)
def _group_by_class(yv, word_class, C):
    """Rows grouped by the class of their target (counting sort, stable): rows order[cnt[c]:cnt[c+1]]
    have class c."""
    n = yv.shape[0]
    cnt = np.zeros(C + 1, dtype=np.int64)
    for r in range(n):
        cnt[word_class[yv[r]] + 1] += 1
    for c in range(C):
        cnt[c + 1] += cnt[c]
    order = np.empty(n, dtype=np.int64)
    pos = cnt[:C].copy()
    for r in range(n):
        c = word_class[yv[r]]
        order[pos[c]] = r
        pos[c] += 1
    return order, cnt


@njit(cache=True)
def _word_layer(S, yv, Hist, out_w, bo, direct, K, class_starts, order, cnt, take, want_grad,
                dS, g_out, g_bo, g_direct, logp):
    """The word factor P(w|c(w),s) for the rows of the classes c with take[c] (rows grouped by
    `_group_by_class`): adds its log into logp[r] and, with want_grad, dL/ds into dS[r] and dL/dW,
    dL/dtheta_k (rows of those classes only) into g_out, g_bo. Returns minus the summed logp of the
    rows (their loss, both factors). A class with at least GEMM_ROWS rows is one matrix product per
    pass (BLAS), one with fewer is done row by row (dot products and row updates, no call overhead)."""
    M = S.shape[1]
    C = class_starts.shape[0] - 1
    dt = S.dtype
    size = direct.shape[0]
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
                zsize = max(zsize, sz)
    Z_buf = np.empty(zsize, dtype=dt)
    Sg_buf = np.empty(maxm * M, dtype=dt)
    dg_buf = np.empty(maxm * M if want_grad else 0, dtype=dt)
    gw_buf = np.empty(maxsz * M if want_grad else 0, dtype=dt)
    loss = 0.0
    for c in range(C):
        lo = cnt[c]
        m = cnt[c + 1] - lo
        if m == 0 or not take[c]:
            continue
        cs = class_starts[c]
        sz = class_starts[c + 1] - cs
        if m < GEMM_ROWS:
            z = Z_buf[:sz]
            for i in range(m):
                r = order[lo + i]
                s = S[r]
                _rows_dot(out_w, cs, sz, s, z)
                if K > 0:
                    direct_hashes(Hist[r], K, c, size, hs)
                    _direct_add(z, sz, direct, hs, K, True)
                tk = yv[r] - cs
                if not want_grad:
                    logp[r] += _biased_logprob(z, bo, cs, sz, tk)
                    loss -= logp[r]
                    continue
                _biased_softmax_row(z, bo, cs, sz)
                logp[r] += math.log(z[tk])
                loss -= logp[r]
                z[tk] -= 1.0
                if K > 0:
                    direct_hashes(Hist[r], K, c, size, hs)
                    _direct_grad(z, sz, g_direct, hs, K, True)
                _rows_backprop(out_w, g_out, cs, sz, z, s, dS[r])
                gb = g_bo[cs:cs + sz]
                for k in range(sz):
                    gb[k] += z[k]
            continue
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
            tk = yv[r] - cs
            if not want_grad:
                logp[r] += _biased_logprob(z, bo, cs, sz, tk)
                loss -= logp[r]
                continue
            _biased_softmax_row(z, bo, cs, sz)
            logp[r] += math.log(z[tk])
            loss -= logp[r]
            z[tk] -= 1.0
            if K > 0:
                direct_hashes(Hist[r], K, c, size, hs)
                _direct_grad(z, sz, g_direct, hs, K, True)
        if want_grad:
            gw = gw_buf[:sz * M].reshape((sz, M))
            np.dot(Z.T, Sg, gw)
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
    return loss


@njit(cache=True)
def _class_output(S, yv, Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts, want_grad,
                  dS, g_out, g_bo, g_cls, g_bc, g_direct, logp):
    """Class-factored softmax P(w|s) = P(c(w)|s) P(w|c(w),s) for the rows of S (n, M), CE cost.

    The class layer is one matrix product over all rows; the word layer works class by class on the
    rows grouped by their target's class. Without want_grad only ln p(target) is formed (a
    log-sum-exp per block, no normalised rows).
    """
    C = cls_w.shape[0]
    _class_layer(S, yv, Hist, cls_w, bc, direct, K, word_class, want_grad, dS, g_cls, g_bc, g_direct, logp)
    order, cnt = _group_by_class(yv, word_class, C)
    take = np.ones(C, dtype=np.bool_)
    return _word_layer(S, yv, Hist, out_w, bo, direct, K, class_starts, order, cnt, take, want_grad,
                       dS, g_out, g_bo, g_direct, logp)


@njit(cache=True)
def _output_layer(S, yv, Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts, cost, want_grad,
                  dS, g_out, g_bo, g_cls, g_bc, g_direct, logp, chunk):
    """Output layer over rows of S in (nearly equal) chunks of at most `chunk` rows (bounds the
    work buffers: the full softmax's (rows, N) logits)."""
    n, M = S.shape
    N = out_w.shape[0]
    full = cls_w.shape[0] == 0
    loss = 0.0
    pieces = max(1, (n + chunk - 1) // chunk)
    step = (n + pieces - 1) // pieces
    Z = np.empty((min(step, n) if full else 0, N), dtype=S.dtype)
    gtmp = np.empty((N if (full and want_grad) else 0, M), dtype=S.dtype)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
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
def _deltas(x, H, dS, rec, act, independent, eos, b0, b1, Delta):
    """Truncated BPTT for the streams b0 <= b < b1 given dL/ds of every token (dS (T * B, M)):
    Delta[t * B + b] = dL/dnet of stream b at step t."""
    T, B = x.shape
    M = rec.shape[0]
    carry = np.zeros((b1 - b0, M), dtype=dS.dtype)
    for t in range(T - 1, -1, -1):
        s = H[t + 1]
        for b in range(b0, b1):
            r = t * B + b
            for j in range(M):
                Delta[r, j] = (dS[r, j] + carry[b - b0, j]) * _fprime(s[b, j], act)
        if t > 0:
            np.dot(Delta[t * B + b0:t * B + b1], rec, carry)
            if independent:
                for b in range(b0, b1):
                    if x[t, b] == eos:
                        carry[b - b0, :] = 0.0


@njit(cache=True)
def _fold_recurrent(x, H, Delta, b0, b1, independent, eos, h_init, g_rec, g_bh):
    """The streams b0:b1's share of the folded gradients: g_rec += sum_t Delta(t)^T s(t - 1) (the
    constant h_init after a reset), g_bh += sum_t Delta(t)."""
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
            D[t * Bg:(t + 1) * Bg] = Delta[t * B + b0:t * B + b1]
            Hp[t * Bg:(t + 1) * Bg] = H[t, b0:b1]
    if independent:
        for t in range(T):
            for b in range(b0, b1):
                if x[t, b] == eos:
                    Hp[t * (b1 - b0) + b - b0, :] = h_init
    gtmp = np.empty((M, M), dtype=dt)
    np.dot(D.T, Hp, gtmp)
    for j in range(M):
        for h in range(M):
            g_rec[j, h] += gtmp[j, h]
    for r in range(D.shape[0]):
        for j in range(M):
            g_bh[j] += D[r, j]


@njit(cache=True)
def _fold_embedding(x, Delta, g_emb):
    """g_emb[x(t, b)] += Delta[t * B + b] (the rows of the input words)."""
    T, B = x.shape
    M = g_emb.shape[1]
    for t in range(T):
        for b in range(B):
            w = x[t, b]
            d = Delta[t * B + b]
            for j in range(M):
                g_emb[w, j] += d[j]


@njit(cache=True)
def _backward(x, H, dS, rec, act, independent, eos, h_init, g_emb, g_rec, g_bh):
    """Truncated BPTT through the window given dL/ds of every token (dS (T * B, M)): adds dL/dU,
    dL/dV (rows of the input words), dL/dtheta_j."""
    T, B = x.shape
    Delta = np.empty((T * B, rec.shape[0]), dtype=dS.dtype)
    _deltas(x, H, dS, rec, act, independent, eos, 0, B, Delta)
    _fold_recurrent(x, H, Delta, 0, B, independent, eos, h_init, g_rec, g_bh)
    _fold_embedding(x, Delta, g_emb)


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
    # flags and sizes as run-time values (T >= 0 is True): literal constants would make Numba compile
    # the large output-layer helpers once more for every constant (a cold-start cost)
    loss = _output_layer(S, yv, Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts, cost, T >= 0,
                         dS, g_out, g_bo, g_cls, g_bc, g_direct, logp, 1024 + 0 * T)
    _backward(x, H, dS, rec, act, independent, eos, h_init, g_emb, g_rec, g_bh)
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
    chunk = 512 if cls_w.shape[0] == 0 else 4096
    _output_layer(S, y.reshape(T * B), Hist, out_w, bo, cls_w, bc, direct, K, word_class, class_starts,
                  CE + 0 * T, T < 0, dummy2, dummy2, dummy1, dummy2, dummy1, dummy1, logp.reshape(T * B), chunk)
    h_out[:, :] = H[T]


@njit(cache=True)
def _class_bins(cnt, class_starts, G):
    """Classes dealt to G bins of about equal word-layer work (rows x (class size + 8)): bin q is the
    run of classes whose cumulative work falls in [q, q + 1) / G of the total (ranges cut by load, not
    by class count: rare-word classes are much larger). bin[c] for every class."""
    C = class_starts.shape[0] - 1
    total = 0.0
    for c in range(C):
        total += (cnt[c + 1] - cnt[c]) * (class_starts[c + 1] - class_starts[c] + 8.0)
    bins = np.empty(C, dtype=np.int64)
    acc = 0.0
    for c in range(C):
        w = (cnt[c + 1] - cnt[c]) * (class_starts[c + 1] - class_starts[c] + 8.0)
        q = int((acc + 0.5 * w) * G / total) if total > 0 else 0   # where the class's middle falls
        bins[c] = min(q, G - 1)
        acc += w
    return bins


@njit(cache=True)
def _output_part(q, G, S, yv, Hist, out_w, bo, cls_w, bc, direct, word_class, class_starts, order, cnt, bins,
                 dSc, dSw, g_out, g_bo, Gcls, Gbc, logc, logw):
    """Part q of G of a class softmax's output layer (see window_grad_classes)."""
    n = S.shape[0]
    r0 = q * n // G
    r1 = (q + 1) * n // G
    no_direct = 0 * n           # run-time values, not literals: the helpers' serial builds are reused
    grad = n >= 0
    _class_layer(S[r0:r1], yv[r0:r1], Hist[r0:r1], cls_w, bc, direct, no_direct, word_class, grad, dSc[r0:r1],
                 Gcls[q], Gbc[q], direct, logc[r0:r1])
    take = bins == q
    _word_layer(S, yv, Hist, out_w, bo, direct, no_direct, class_starts, order, cnt, take, grad, dSw[q], g_out, g_bo,
                direct, logw[q])


@njit(cache=True)
def _classes_task(phase, q, G, Gs, x, H, emb, rec, bh, act, independent, eos, h_init, u_init, S, yv, Hist,
                  out_w, bo, cls_w, bc, direct, word_class, class_starts, order, cnt, bins, dSc, dSw, g_out, g_bo,
                  Gcls, Gbc, logc, logw, Delta, Grec, Gbh):
    """Task q of a phase of window_grad_classes: 0 the recurrence of stream group q (of Gs), 1 part q
    (of G) of the output layer, 2 BPTT of stream group q (dL/ds in dSc)."""
    B = x.shape[1]
    b0 = q * B // Gs
    b1 = (q + 1) * B // Gs
    if phase == 0:
        _hidden_streams(x, H, b0, b1, emb, rec, bh, act, independent, eos, u_init)
    elif phase == 1:
        _output_part(q, G, S, yv, Hist, out_w, bo, cls_w, bc, direct, word_class, class_starts, order, cnt, bins,
                     dSc, dSw, g_out, g_bo, Gcls, Gbc, logc, logw)
    else:
        _deltas(x, H, dSc, rec, act, independent, eos, b0, b1, Delta)
        _fold_recurrent(x, H, Delta, b0, b1, independent, eos, h_init, Grec[q], Gbh[q])


@njit(cache=True, parallel=True)
def _classes_phase(phase, tasks, G, Gs, x, H, emb, rec, bh, act, independent, eos, h_init, u_init, S, yv, Hist,
                   out_w, bo, cls_w, bc, direct, word_class, class_starts, order, cnt, bins, dSc, dSw, g_out, g_bo,
                   Gcls, Gbc, logc, logw, Delta, Grec, Gbh):
    """The one parallel loop of window_grad_classes (kept tiny: parallel kernels compile slowly)."""
    for i in prange(tasks):
        q = np.int64(i)   # the loop index is unsigned in the compiled loop: callees typed once, as int64
        _classes_task(phase, q, G, Gs, x, H, emb, rec, bh, act, independent, eos, h_init, u_init, S, yv, Hist,
                      out_w, bo, cls_w, bc, direct, word_class, class_starts, order, cnt, bins, dSc, dSw, g_out,
                      g_bo, Gcls, Gbc, logc, logw, Delta, Grec, Gbh)


@njit(cache=True)
def window_grad_classes(x, y, h0, ng0, emb, rec, bh, out_w, bo, cls_w, bc, direct, word_class, class_starts,
                        act, independent, eos, h_init, G,
                        g_emb, g_rec, g_bh, g_out, g_bo, g_cls, g_bc, h_out, ng_out):
    """window_grad of a class softmax (cross-entropy, no direct connections) on G threads, in three
    parallel phases. The recurrence and BPTT: min(G, B) groups of streams (their dL/dU, dL/dtheta_j
    in buffers of their own, summed in order). The output layer: part q takes the q-th block of rows
    for the class layer (its dL/dW_c in a buffer of its own, summed in order) and a bin of classes for
    the word layer (classes dealt by work, rows x class size; every row of W, theta_k written by one
    part only, each part's dL/ds and ln p in arrays of its own). The same G gives the same bits."""
    T, B = x.shape
    M = rec.shape[0]
    n = T * B
    C = cls_w.shape[0]
    dt = emb.dtype
    Gs = min(G, B)
    H = np.empty((T + 1, B, M), dtype=dt)
    H[0] = h0
    u_init = _reset_input(rec, h_init)
    S = H[1:].reshape((n, M))
    yv = y.reshape(n)
    Hist = np.empty((n, ng0.shape[1]), dtype=np.int64)
    _row_history(x, ng0, independent, eos, Hist, ng_out)
    order, cnt = _group_by_class(yv, word_class, C)
    bins = _class_bins(cnt, class_starts, G)
    dSc = np.empty((n, M), dtype=dt)
    dSw = np.zeros((G, n, M), dtype=dt)
    logc = np.empty(n, dtype=np.float64)
    logw = np.zeros((G, n), dtype=np.float64)
    Gcls = np.zeros((G, C, M), dtype=dt)
    Gbc = np.zeros((G, C), dtype=dt)
    Delta = np.empty((n, M), dtype=dt)
    Grec = np.zeros((Gs, M, M), dtype=dt)
    Gbh = np.zeros((Gs, M), dtype=dt)
    for phase in range(3):
        tasks = Gs
        if phase == 1:
            tasks = G
        _classes_phase(phase, tasks, G, Gs, x, H, emb, rec, bh, act, independent, eos, h_init,
                       u_init, S, yv, Hist, out_w, bo, cls_w, bc, direct, word_class, class_starts, order, cnt,
                       bins, dSc, dSw, g_out, g_bo, Gcls, Gbc, logc, logw, Delta, Grec, Gbh)
        if phase == 1:   # sum the parts in order: loss, dL/dW_c, dL/dtheta_c, dL/ds (into dSc)
            loss = 0.0
            for r in range(n):
                lw = 0.0
                for q in range(G):
                    lw += logw[q, r]
                loss -= logc[r] + lw
            for q in range(G):
                for k in range(C):
                    g_bc[k] += Gbc[q, k]
                    for j in range(M):
                        g_cls[k, j] += Gcls[q, k, j]
            for q in range(G):
                for r in range(n):
                    for j in range(M):
                        dSc[r, j] += dSw[q, r, j]
    for q in range(Gs):
        for j in range(M):
            g_bh[j] += Gbh[q, j]
            for h in range(M):
                g_rec[j, h] += Grec[q, j, h]
    _fold_embedding(x, Delta, g_emb)
    h_out[:, :] = H[T]
    return loss


@njit(cache=True, parallel=True)
def window_grad_groups(x, y, h0, ng0, emb, rec, bh, out_w, bo, cls_w, bc, direct, word_class, class_starts,
                       act, cost, independent, eos, h_init, dorder, Gbuf, offs, h_out, ng_out, losses):
    """window_grad with the B streams split into G = Gbuf.shape[0] contiguous groups, one per thread.

    Group q adds its gradient into its own flat buffer Gbuf[q] (the parameter layout; block q starts
    at offs[q]): no memory is shared between the groups, and each group's arithmetic is the same
    whichever thread runs it, so the result depends on G only. losses[q] gets group q's loss;
    h_out, ng_out as window_grad. Without direct connections only (direct.shape[0] == 0).
    """
    G = Gbuf.shape[0]
    T, B = x.shape
    N, M = emb.shape
    C = cls_w.shape[0]
    for i in prange(G):
        q = np.int64(i)
        b0 = q * B // G
        b1 = (q + 1) * B // G
        xq = np.ascontiguousarray(x[:, b0:b1])
        yq = np.ascontiguousarray(y[:, b0:b1])
        hq = np.ascontiguousarray(h0[b0:b1])
        nq = np.ascontiguousarray(ng0[b0:b1])
        ho = np.empty_like(hq)
        no = np.empty_like(nq)
        gb = Gbuf[q]
        losses[q] = window_grad(xq, yq, hq, nq, emb, rec, bh, out_w, bo, cls_w, bc, direct, word_class,
                                class_starts, act, cost, independent, eos, h_init, dorder,
                                gb[offs[0]:offs[1]].reshape((N, M)), gb[offs[1]:offs[2]].reshape((M, M)),
                                gb[offs[2]:offs[3]], gb[offs[3]:offs[4]].reshape((N, M)), gb[offs[4]:offs[5]],
                                gb[offs[5]:offs[6]].reshape((C, M)), gb[offs[6]:offs[7]], gb[offs[7]:offs[8]],
                                ho, no)
        h_out[b0:b1] = ho
        ng_out[b0:b1] = no


# ----------------------------------------------------------------------------- optimiser
# An update touches pieces of the flat parameter buffer: [start, end) index ranges of at most PIECE
# entries (dense blocks, embedding rows of the input words, output rows of the targets' classes).
# The gradient's squared norm is summed per piece and then over the pieces in order, so it is the
# same however the pieces are shared among threads.

PIECE = 4096


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
def touched_pieces(x, y, word_class, class_starts, full, offs, M, dense_bias, out_bias, piece):
    """The pieces of the flat parameter buffer an update of window (x, y) touches, ascending: the
    embedding rows of the input words, the recurrent weights, the hidden bias (dense_bias), the output
    rows of the targets' classes (all rows for a full softmax) with their biases (out_bias), the class
    layer and its bias (dense_bias). offs: start of each block (emb, rec, bh, out_w, bo, cls_w, bc,
    direct) and the end of the buffer."""
    N = (offs[1] - offs[0]) // M
    C = class_starts.shape[0] - 1
    words = np.zeros(N, dtype=np.bool_)
    for v in x.ravel():
        words[v] = True
    cls = np.zeros(max(C, 1), dtype=np.bool_)
    if full:
        cls[0] = True
    else:
        for v in y.ravel():
            cls[word_class[v]] = True
    nseg = N + 2 * C + 8
    out = np.empty((offs[8] // piece + nseg + 8, 2), dtype=np.int64)
    n = 0
    w = 0
    while w < N:                                   # embedding rows, adjacent rows merged
        if not words[w]:
            w += 1
            continue
        e = w
        while e < N and words[e]:
            e += 1
        n = _add_segment(out, n, offs[0] + w * M, offs[0] + e * M, piece)
        w = e
    n = _add_segment(out, n, offs[1], offs[2], piece)
    if dense_bias:
        n = _add_segment(out, n, offs[2], offs[3], piece)
    for block in range(2):                        # output rows, then their biases
        width = M if block == 0 else 1
        base = offs[3] if block == 0 else offs[4]
        if block == 1 and not out_bias:
            break
        if full:
            n = _add_segment(out, n, base, base + N * width, piece)
            continue
        c = 0
        while c < C:
            if not cls[c]:
                c += 1
                continue
            e = c
            while e < C and cls[e]:
                e += 1
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


@njit(cache=True, parallel=True)
def sgd_pieces_par(p, g, Gbuf, pieces, lr, scale, beta, clip, extra_sq, partial):
    """sgd_pieces with the pieces shared among threads (the same result, bit for bit)."""
    n = pieces.shape[0]
    if clip > 0:
        for ii in prange(n):
            i = np.int64(ii)
            partial[i] = _reduce_piece(g, Gbuf, pieces[i, 0], pieces[i, 1])
        norm = _norm(partial, extra_sq, scale)
        if norm > clip:
            scale = scale * clip / norm
        for ii in prange(n):
            i = np.int64(ii)
            _sgd_piece(p, g, pieces[i, 0], pieces[i, 1], lr, scale, beta)
        return norm, scale
    for ii in prange(n):    # no clipping: one sweep, each piece reduced and updated while in cache
        i = np.int64(ii)
        partial[i] = _reduce_piece(g, Gbuf, pieces[i, 0], pieces[i, 1])
        _sgd_piece(p, g, pieces[i, 0], pieces[i, 1], lr, scale, beta)
    return _norm(partial, extra_sq, scale), scale


@njit(cache=True, parallel=True)
def reduce_pieces_par(g, Gbuf, pieces):
    """g += sum_q Gbuf[q] and Gbuf <- 0 on the pieces (threads share the pieces)."""
    for ii in prange(pieces.shape[0]):
        i = np.int64(ii)
        _reduce_piece(g, Gbuf, pieces[i, 0], pieces[i, 1])


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
