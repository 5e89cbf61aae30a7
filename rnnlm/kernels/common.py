"""Shared pieces of the batched kernels: a vectorisable exp, activations, softmax rows, rnnlm-0.4b's
direct n-gram hashing, dot-product helpers (reassociation allowed only there) and the hidden-layer
forward pass.

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic, overload

from rnnlm.kernels.gemm import _gemm

SIGMOID, TANH, RELU = 0, 1, 2
CE, SSE = 0, 1


# ----------------------------------------------------------------------------- exp

@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma.f64): an exact operation, not a fast-math licence."""
    if not (a == types.float64 and b == types.float64 and c == types.float64):
        return None
    return types.float64(types.float64, types.float64, types.float64), lambda ctx, b, sig, args: b.fma(*args)


@intrinsic
def _bits(typingctx, x):
    """The bits of a float64, as int64."""
    if x != types.float64:
        return None
    return types.int64(types.float64), lambda ctx, b, sig, args: b.bitcast(args[0], ir.IntType(64))


@intrinsic
def _from_bits(typingctx, i):
    """The float64 with bits i (int64)."""
    if i != types.int64:
        return None
    return types.float64(types.int64), lambda ctx, b, sig, args: b.bitcast(args[0], ir.DoubleType())


LOG2E = 1.4426950408889634
SHIFTER = 6755399441055744.0            # 1.5 * 2^52: x + SHIFTER rounds x to an integer, kept in the low bits
SHIFTER_BITS = 0x4338000000000000
LN2_HI = 6.93147180369123816490e-01     # ln 2 in two parts; n * LN2_HI is exact for |n| < 2^11
LN2_LO = 1.90821492927058770002e-10
EXP_LO, EXP_HI = -708.0, 709.0          # outside: 0 and inf (2^n stays a normal float64 inside)
EXP_C = (1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320, 1.0 / 362880,
         1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800)
C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13 = EXP_C   # compile-time constants


@njit(cache=True, inline="always")
def _exp_reduce(x):
    """x (clamped to [EXP_LO, EXP_HI]) = n ln 2 + r, |r| <= ln 2 / 2: (r, n)."""
    xc = EXP_LO if x < EXP_LO else x
    xc = EXP_HI if xc > EXP_HI else xc
    t = _fma(xc, LOG2E, SHIFTER)
    fn = t - SHIFTER
    return (xc - fn * LN2_HI) - fn * LN2_LO, _bits(t) - SHIFTER_BITS


@njit(cache=True, inline="always")
def _exp_scale(x, p, n):
    """p 2^n, with the edges: NaN stays NaN, x below EXP_LO gives 0, above EXP_HI inf."""
    v = p * _from_bits((n + 1023) << 52)
    v = 0.0 if x < EXP_LO else v
    return np.inf if x > EXP_HI else v


@njit(cache=True, inline="always")
def _exp_tail(p, r):
    """The last seven Horner steps of e^r's Taylor polynomial: ((p r + 1/6!) r + ... + 1) r + 1."""
    p = _fma(p, r, C6)
    p = _fma(p, r, C5)
    p = _fma(p, r, C4)
    p = _fma(p, r, C3)
    p = _fma(p, r, C2)
    p = _fma(p, r, C1)
    return _fma(p, r, C0)


@njit(cache=True, inline="always")
def _exp(x):
    """e^x in float64 (within 1 ulp of libm's), as straight-line arithmetic that the compiler
    vectorises in loops (libm's exp is a call per element; there is no vector math library here):
    x = n ln 2 + r, e^r by its Taylor polynomial of degree 13 (error below 1e-17), 2^n assembled in
    the exponent bits. Constants, not divisions, in the body: a division would carry a zero check
    that stops the vectorisation."""
    r, n = _exp_reduce(x)
    p = _fma(C13, r, C12)
    p = _fma(p, r, C11)
    p = _fma(p, r, C10)
    p = _fma(p, r, C9)
    p = _fma(p, r, C8)
    p = _fma(p, r, C7)
    return _exp_scale(x, _exp_tail(p, r), n)


@njit(cache=True, inline="always")
def _exp_f32(x):
    """_exp with the polynomial of degree 7 (relative error below 7.5e-9, an eighth of a float32 ulp):
    for results that are rounded to float32."""
    r, n = _exp_reduce(x)
    return _exp_scale(x, _exp_tail(C7, r), n)


def _is_float32(proto):
    """Whether proto (a scalar or an array) is float32: a compile-time constant (see the overload)."""
    raise NotImplementedError("only inside compiled code")


@overload(_is_float32, inline="always")
def _is_float32_impl(proto):
    dt = proto.dtype if isinstance(proto, types.Array) else proto
    if dt == types.float32:
        return lambda proto: True
    return lambda proto: False


@njit(cache=True, error_model="numpy")
def _sigmoid(v):
    """1 / (1 + e^-v), computed in float64 (the exp's polynomial sized to v's precision); the numpy
    error model: no zero check on the division (the denominator is at least 1), so that loops
    over it vectorise."""
    if _is_float32(v):
        return 1.0 / (1.0 + _exp_f32(-np.float64(v)))
    return 1.0 / (1.0 + _exp(-np.float64(v)))


# ----------------------------------------------------------------------------- small helpers

@njit(cache=True)
def _activate(v, act):
    if act == SIGMOID:
        return _sigmoid(v)
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
def _row_max(z, n):
    mx = z[0]
    for k in range(1, n):
        if z[k] > mx:
            mx = z[k]
    return mx


@njit(cache=True)
def _exp_sum(z, n, mx):
    """In place: z[:n] <- exp(z[:n] - mx) (the difference in float64); returns their sum, in float64,
    in four fixed lanes (k mod 4, then (0 + 1) + (2 + 3)): the same order on every machine."""
    if _is_float32(z):
        for k in range(n):
            z[k] = _exp_f32(np.float64(z[k]) - mx)
    else:
        for k in range(n):
            z[k] = _exp(np.float64(z[k]) - mx)
    t0 = t1 = t2 = t3 = 0.0
    k = 0
    while k + 4 <= n:
        t0 += z[k]
        t1 += z[k + 1]
        t2 += z[k + 2]
        t3 += z[k + 3]
        k += 4
    while k < n:
        t0 += z[k]
        k += 1
    return (t0 + t1) + (t2 + t3)


@njit(cache=True)
def _softmax_row(z, n):
    """In place: z[:n] <- softmax(z[:n]) computed stably; returns ln(sum exp(z - max)) + max."""
    mx = np.float64(_row_max(z, n))
    tot = _exp_sum(z, n, mx)
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


@njit(cache=True)
def _copy_rows(dst, src):
    """dst[:] = src for 2-D arrays of the same shape, as loops: a slice assignment would compile
    Numba's shape-mismatch error formatting into every kernel (seconds of cold start)."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = src[i, j]


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
def _rows_step(Wm, bias, lo, n, Zr, m, S, order, o0, dS, acc, upd):
    """_rows_backprop and the SGD step at once, for m rows (row i: dL/dz in Zr[i * n:(i + 1) * n],
    input s_i = S[order[o0 + i]]): dS[r_i] += sum_k dz_i[k] Wm[lo + k] with the old weights, then
    Wm[lo + k] -= lr * (scale * sum_i dz_i[k] s_i + beta * Wm[lo + k]) and the bias likewise when
    upd[3] != 0 (upd = lr, scale, beta, bias). The gradient is never stored (acc: (M,) work row)."""
    lr, scale, beta = upd[0], upd[1], upd[2]
    M = acc.shape[0]
    for k in range(n):
        w = Wm[lo + k]
        for j in range(M):
            acc[j] = 0.0
        gb = 0.0
        for i in range(m):
            d = Zr[i * n + k]
            r = order[o0 + i]
            s = S[r]
            ds = dS[r]
            for j in range(M):
                ds[j] += d * w[j]
                acc[j] += d * s[j]
            gb += d
        for j in range(M):
            w[j] -= lr * (scale * acc[j] + beta * w[j])
        if upd[3] != 0.0:
            bias[lo + k] -= lr * (scale * gb + beta * bias[lo + k])


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
    (z[:n] is work space: it is left holding exp(z + bias - max))."""
    b = bias[off:off + n]
    for k in range(n):
        z[k] += b[k]
    mx = np.float64(_row_max(z, n))
    zt = np.float64(z[tgt])
    return (zt - mx) - math.log(_exp_sum(z, n, mx))


# ----------------------------------------------------------------------------- forward (hidden)

SMALL_BATCH = 4   # below this many streams the recurrent product is a loop of dot products, no _gemm


@njit(cache=True)
def _rec_t(rec, streams):
    """U^T, contiguous (the right operand of the recurrent product of _hidden_streams), for a group of
    at least SMALL_BATCH streams; else empty (not needed)."""
    if streams >= SMALL_BATCH:
        return np.ascontiguousarray(rec.T)
    return np.empty((0, 0), dtype=rec.dtype)


@njit(cache=True)
def _reset_input(rec, h_init, independent):
    """U @ (h_init * 1): the recurrent input of a step that starts from the constant state (only
    independent sentences restart; else empty, and the M x M sum is skipped)."""
    u_init = np.zeros(rec.shape[0] if independent else 0, dtype=rec.dtype)
    _refresh_rows(rec, h_init, 0 * u_init.shape[0], u_init.shape[0], rec[:0], u_init)
    return u_init


@njit(cache=True)
def _refresh_rows(rec, h_init, j0, j1, recT, u_init):
    """Rows j0:j1 of U have changed: their columns of recT (_rec_t's U^T, unless empty) and their
    entries of u_init (_reset_input's U @ (h_init * 1), unless empty) again."""
    M = rec.shape[0]
    for j in range(j0, j1):
        if recT.shape[0] > 0:
            for h in range(M):
                recT[h, j] = rec[j, h]
        if u_init.shape[0] > 0:
            acc = 0.0
            for h in range(M):
                acc += rec[j, h]
            u_init[j] = acc * h_init


@njit(cache=True)
def _hidden_streams(x, H, b0, b1, emb, rec, recT, bh, act, independent, eos, u_init):
    """H[t + 1, b] = f(V x(t) + U H[t, b] + theta_j) for the streams b0 <= b < b1 (H[0] given;
    recT = _rec_t(rec, b1 - b0))."""
    T, B = x.shape
    M = rec.shape[0]
    Hf = H.reshape(H.shape[0] * B * M)
    for t in range(T):
        cur = H[t + 1, b0:b1]
        if b1 - b0 < SMALL_BATCH:
            for b in range(b1 - b0):
                _matvec(rec, H[t, b0 + b], cur[b])
        else:
            _gemm(Hf, (t * B + b0) * M, M, M // M, recT.reshape(M * M), 0 * M, M, Hf, ((t + 1) * B + b0) * M, M,
                  b1 - b0, M, M)   # (run-time 1 and 0: literals would compile _gemm once more)
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
    _copy_rows(H[0], h0)
    _hidden_streams(x, H, 0 * B, B, emb, rec, _rec_t(rec, B), bh, act, independent, eos,
                    _reset_input(rec, h_init, independent))
    return H
