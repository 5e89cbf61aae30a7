"""Numba kernels that reproduce rnnlm-0.4b's test-time arithmetic bit for bit (see rnnlm/interop/rnnlm04b/files.py).

The reference is rnnlm-0.4b as the fixtures' binary was built: g++ 12 -O3 -funroll-loops -ffast-math
-march=znver2 (AMD Zen 2/3, AVX2 + FMA), `-D WEIGHTTYPE=float`. Its results depend on that build, and
these kernels follow it operation by operation:

* every exp is fastapprox's `fasterexp` (2^(p log2 e) read off the bits of a float; ~3% error,
  quantised to steps of 2^-17 relative), denormal results flushed to zero (-ffast-math's FTZ/DAZ);
* matrixXvector's dot products for rows in its groups of 8 are vectorised by GCC: eight float32 FMA
  lanes, folded to four lanes, one four-lane FMA step, a pairwise reduction, then scalar FMAs (the
  last element is always scalar: GCC peels it because `neuron` interleaves ac and er); the leftover
  rows (count mod 8) are summed in order with separate multiply and add, as written;
* the sigmoid of the vectorised hidden units divides with RCPPS and one Newton step (AMD's
  reciprocal table, below), the others with a true division; outside [-50, 50] it is constant;
* softmax normalisers are double sums in the vectoriser's order, then one reciprocal and products.

`rnnlm04b_direct_hashes` is rnnlm-0.4b's hashing of n-gram histories into syn_d alone (class features
in the first half, word features in the second), for reuse by native kernels.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.core.extending import intrinsic

# rnnlm-0.4b's PRIMES (rnnlmlib.h), as unsigned 64-bit for the hash arithmetic.
PRIMES = np.array([
    108641969, 116049371, 125925907, 133333309, 145678979, 175308587, 197530793, 234567803,
    251851741, 264197411, 330864029, 399999781, 407407183, 459258997, 479012069, 545678687,
    560493491, 607407037, 629629243, 656789717, 716048933, 718518067, 725925469, 733332871,
    753085943, 755555077, 782715551, 790122953, 812345159, 814814293, 893826581, 923456189,
    940740127, 953085797, 985184539, 990122807], dtype=np.uint64)
MAX_NGRAM_ORDER = 20
# PRIMES[0] * PRIMES[1] is computed in 32-bit unsigned arithmetic in rnnlm-0.4b and wraps.
P0P1 = np.uint64((108641969 * 116049371) & 0xFFFFFFFF)   # 2913883755
_M32 = np.uint64(0xFFFFFFFF)
_N_PRIMES = np.uint64(36)
_FLT_MAX = np.float32(3.4028234663852886e38)
_FLT_MIN = np.float32(1.1754943508222875e-38)

# AMD Zen's RCPPS: for an input with mantissa bits m (23 bits) the result's mantissa is
# RCP12[m >> 11] << 11 (exponent 253 - input exponent). RCP12[0] = 4094 and each digit below is
# RCP12[i] - RCP12[i + 1]. Read off the instruction on an AMD EPYC; it reproduces the fixtures.
_RCP_STEPS = (
    "212222222122222421222222212222232122222221222224212222222122222221222222212222232122222221222223"
    "212222222122222221222222212222222122222221222222212222222122222221222222212222212122222221222221"
    "212222222122222121222222212222212122222221222221212222222122222212212212212212231221221221221223"
    "122122122122122212212212212212231221221221221222122122122122122212212212212212221221221221221222"
    "122122122122122212212212212212211221221221221221122122122122122112212212212212211221221221221221"
    "122122122122122012212212212212221211212121212123121121212121212312112121212121231211212121212122"
    "121121212121212312112121212121221211212121212122121121212121212212112121212121221211212121212121"
    "121121212121212212112121212121211211212121212121121121212121212112112121212121211211212121212122"
    "112112112112112211211211211211231121121121121122112112112112112211211211211211221121121121121122"
    "112112112112112211211211211211211121121121121122112112112112112111211211211211211121121121121121"
    "112112112112112111211211211211211121121121121120112112112112112211112111211112121111211121111212"
    "111121112111121211112111211112121111211121111212111121112111121211112111211112111111211121111212"
    "111121112111121111112111211112121111211121111211111121112111121111112111211112111111211121111211"
    "111121112111121011112111211112111121111111121111112111111112111211211111111211111121111111121111"
    "112111111112111111211111111211111121111111121111112111111112111111211111111211101121111111121111"
    "112111111112111011211111111211111121111111121110112111111112111011211111111211101121111111121111"
    "111111111111111211111111111111111111111111111112111111111111111211111111111111111111111111111111"
    "111111111111111211111111111111111111111111111111111111111111111111111111111111111111111111111111"
    "111111111111111011111111111111111111111111111111111111111111111111111011111111111111101111111112"
    "111110111111111111111011111111111111101111111111111110111111111111111011111111111111101111111111"
    "111110111111111111111011111111101111101111111111111110111111111011111011111111111111101111111110"
    "111110111111111111111011111111101101111110111111110111111011111211011111101111111101111110111110"
    "110111111011111111011111101111111101111110111111110111111011111011011111101111111101111110111111"
    "110111111011111011011111101111101101111110111111110111111011111011011111101111101101111110111111"
    "101111011110111110111101111011111011110111101111101111011110111010111101111011111011110111101111"
    "101111011110111110111101111011101011110111101111101111011110111010111101111011111011110111101110"
    "101111011110111010111101111011111011110111101110101111011110111011011011101110111101101110111011"
    "110110111011101111011011101110111101101110111011110110111011101111011011101110101101101110111011"
    "110110111011101111011011101110101101101110111011110110111011101011011011101110111101101110111010"
    "110110111011101011011011101110111011011011011011101101101101101110110110110110111011011011011011"
    "101101101101101110110110110110111011011011011011101101101101101110110110110110111011011011011011"
    "101101101101101010110110110110111011011011011010101101101101101110110110110110111011011011011011"
    "011010110110101101101011011010110110101101101012011010110110101101101011011010110110101101101011"
    "011010110110101101101011011010120110101101101011011010110110101101101011011010110110101101101010"
    "011010110110101101101011011010110110101101101011011010110110101101101011010110100110101101011011"
    "011010110101101101101011010110100110101101011011011010110101101001101011010110110110101101011010"
    "011010110101101101101011010110100110101101011010011010110101101001101011010110110110101101011010"
    "011010110101101001101011010110110101010110101011010101011010101101010101101010110101010110101011"
    "010101011010101101010101101010100101010110101011010101011010101101010101101010110101010110101011"
    "010101011010101001010101101010110101010110101011010101011010101001010101101010110101010110101010"
    "010101101010101101010110101010100101011010101011010101101010101001010110101010100101011010101011"
    "010101101010101001010110101010100101011010101010010101101010101101010110101010100101011010101010"
    "010101101010101001010110101010100101011010101010010101101010101"
)

RCP12 = np.concatenate([[4094], 4094 - np.cumsum([int(c) for c in "".join(_RCP_STEPS)])]).astype(np.int64)


@intrinsic
def fma32(typingctx, a, b, c):
    """float32 fused multiply-add, rounded once (LLVM's llvm.fma.f32)."""
    if not (a == types.float32 and b == types.float32 and c == types.float32):
        return None
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return sig, codegen


@njit(cache=True)
def fasterexp(p):
    """rnnlm-0.4b's exp: fastapprox `fasterexp` in float32, denormal results flushed to zero.

    fasterpow2(x) reinterprets the bits (uint32)(2^23 * (max(x, -126) + 126.94269504f)) as a float;
    fasterexp(p) = fasterpow2(1.442695040f * p).
    """
    x = np.float32(1.442695040) * np.float32(p)
    if x < np.float32(-126.0):
        x = np.float32(-126.0)
    y = np.float32(8388608.0) * (x + np.float32(126.94269504))
    i = np.int64(y)                      # C's (uint32) conversion truncates toward zero
    e = i >> 23
    if e == 0:                           # a denormal: zero under FTZ/DAZ (-ffast-math)
        return np.float32(0.0)
    return np.float32(math.ldexp(np.float64(8388608 | (i & 8388607)), e - 150))


@njit(cache=True)
def rcp_amd(d):
    """RCPPS of a positive normal float32 as AMD Zen computes it (12-bit table, no interpolation)."""
    m, e = math.frexp(np.float64(d))             # d = m 2^e, m in [0.5, 1)
    bits = np.int64(m * 16777216.0) - 8388608    # the 23 mantissa bits
    return np.float32(math.ldexp(np.float64(4096 + RCP12[bits >> 11]), -e - 12))


@njit(cache=True)
def rnnlm04b_direct_hashes(history, order, direct_size, cls, out):
    """Indices into syn_d of the n-gram features of orders 0 .. order-1, as rnnlm-0.4b hashes them.

    history[k] is the word k+1 steps back (history[0] = the current input word; -1 = none/OOV);
    cls < 0: features of the class layer (first half of syn_d); cls >= 0: features of the words of
    class cls (second half). out[o] = 0 marks an absent feature: order o and every higher order
    stop at the first history word that is -1. The caller walks each index forwards (+1 per class
    output; per word output +1 modulo direct_size), stopping at the first 0, like computeNet.
    Returns the number of orders hashed.
    """
    half = np.uint64(direct_size // 2)
    for a in range(order):
        out[a] = 0
    n = 0
    for a in range(order):
        if a > 0 and history[a - 1] == -1:
            break
        if cls < 0:
            h = P0P1
        else:
            h = P0P1 * np.uint64(cls + 1)
        for b in range(1, a + 1):
            k = ((np.uint64(a) * PRIMES[b]) & _M32)
            k = ((k + np.uint64(b)) & _M32) % _N_PRIMES
            h += PRIMES[k] * np.uint64(history[b - 1] + 1)
        h = h % half
        if cls >= 0:
            h += half
        out[a] = h
        n += 1
    return n




# ----------------------------------------------------------------------------- rnnlm-0.4b's arithmetic

@njit(cache=True)
def _ftz(v):
    """Flush a denormal float32 result to zero (-ffast-math sets FTZ/DAZ)."""
    if -_FLT_MIN < v < _FLT_MIN:
        return np.float32(0.0)
    return v


@njit(cache=True)
def _dot_grouped(x, w, n):
    """sum_a x[a] w[a] as GCC vectorised matrixXvector's grouped rows (see the module doc)."""
    m = n - 1
    k8 = (m // 8) * 8 if m > 0 else 0
    v0 = v1 = v2 = v3 = np.float32(0.0)
    if k8 > 0:
        lanes = np.zeros(8, dtype=np.float32)
        for j in range(0, k8, 8):
            for i in range(8):
                lanes[i] = fma32(x[j + i], w[j + i], lanes[i])
        v0 = lanes[0] + lanes[4]
        v1 = lanes[1] + lanes[5]
        v2 = lanes[2] + lanes[6]
        v3 = lanes[3] + lanes[7]
    start = k8
    if m - k8 >= 4:
        v0 = fma32(x[k8], w[k8], v0)
        v1 = fma32(x[k8 + 1], w[k8 + 1], v1)
        v2 = fma32(x[k8 + 2], w[k8 + 2], v2)
        v3 = fma32(x[k8 + 3], w[k8 + 3], v3)
        start = k8 + 4
    s = (v0 + v2) + (v1 + v3)
    for a in range(start, n):
        s = fma32(x[a], w[a], s)
    return s


@njit(cache=True)
def _dot_plain(x, w, n):
    """sum_a x[a] w[a] in order, each product rounded (matrixXvector's leftover rows)."""
    s = np.float32(0.0)
    for a in range(n):
        s += x[a] * w[a]
    return s


@njit(cache=True)
def _matvec(W, x, lo, hi, out):
    """out[r] = W[r] . x for rows lo:hi, grouped by 8 from lo like matrixXvector."""
    n = x.shape[0]
    g = lo + ((hi - lo) // 8) * 8
    for r in range(lo, hi):
        out[r] = _dot_grouped(x, W[r], n) if r < g else _dot_plain(x, W[r], n)


@njit(cache=True)
def _vector_count(n, gaps):
    """How many of n loop iterations GCC's AVX2 code runs in 8- and 4-wide vectors (the rest are
    scalar); with `gaps` (stride-2 `neuron` loads) the last iteration is always scalar."""
    m = n - 1 if gaps else n
    if m <= 0:
        return 0
    k8 = (m // 8) * 8
    return k8 + 4 if m - k8 >= 4 else k8


@njit(cache=True)
def _sigmoid(v, vector):
    """1 / (1 + fasterexp(-v)) with rnnlm-0.4b's clamp at +-50, as compiled."""
    if v > np.float32(50.0):
        return np.float32(1.0)
    if v < np.float32(-50.0):
        return np.float32(1.0) / (np.float32(1.0) + fasterexp(np.float32(50.0)))
    d = np.float32(1.0) + fasterexp(-v)
    if not vector:
        return np.float32(1.0) / d
    r = rcp_amd(d)
    return (r + r) - r * (d * r)


@njit(cache=True)
def _softmax(z, idx0, n, gaps, prob):
    """prob[k] = softmax(z[idx0 + k]) for k < n as compiled: float32 max, fasterexp, a double sum in
    the vectoriser's order, one reciprocal, products rounded to float32."""
    mx = -_FLT_MAX
    for k in range(n):
        if z[idx0 + k] > mx:
            mx = z[idx0 + k]
    nv = _vector_count(n, gaps)
    k8 = (nv // 8) * 8
    acc = np.zeros(4, dtype=np.float64)
    for j in range(0, k8, 8):
        for i in range(4):
            acc[i] += (np.float64(fasterexp(z[idx0 + j + i] - mx))
                       + np.float64(fasterexp(z[idx0 + j + i + 4] - mx)))
    b0 = acc[0] + acc[2]
    b1 = acc[1] + acc[3]
    if nv > k8:
        b0 += np.float64(fasterexp(z[idx0 + k8] - mx)) + np.float64(fasterexp(z[idx0 + k8 + 2] - mx))
        b1 += np.float64(fasterexp(z[idx0 + k8 + 1] - mx)) + np.float64(fasterexp(z[idx0 + k8 + 3] - mx))
    s = b0 + b1
    for k in range(nv, n):
        s += np.float64(fasterexp(z[idx0 + k] - mx))
    inv = 1.0 / s
    for k in range(n):
        prob[k] = _ftz(np.float32(np.float64(fasterexp(z[idx0 + k] - mx)) * inv))


@njit(cache=True)
def rnnlm04b_stream(ids, emb, rec, out_w, cls_w, direct, direct_order, word_class, class_starts,
                    independent, ctx, hist, probs):
    """rnnlm-0.4b's testNet over word ids (-1 = OOV), float32, operation by operation.

    emb (V, H): syn0's word columns, transposed; rec (H, H): syn0's recurrent columns; out_w (V, H)
    and cls_w (C, H): syn1's word and class rows; direct: syn_d; word_class (V,), class_starts
    (C + 1,): contiguous classes (empty ones allowed). State, updated in place: ctx (H,) the context
    (at the start of a text: the hidden activation saved in the model file, or 1.0 everywhere with
    `independent`) and hist (>= max(direct_order - 1, 1)) the n-gram history, most recent first (0 =
    </s>, -1 = OOV). Each call starts after </s>: the first word is predicted from input </s>.
    An OOV word is not scored (probs = 0) but advances the state with no input word next; with
    `independent` the state restarts at 1.0 after every </s>. probs[t] = P(class) P(word | class),
    the float rnnlm-0.4b prints.
    """
    n = ids.shape[0]
    V, H = emb.shape
    C = cls_w.shape[0]
    ds = direct.shape[0]
    nh = hist.shape[0]
    hid = np.empty(H, dtype=np.float32)
    zc = np.empty(C, dtype=np.float32)
    pc = np.empty(C, dtype=np.float32)
    zw = np.empty(V, dtype=np.float32)
    pw = np.empty(V, dtype=np.float32)
    hashes = np.zeros(max(direct_order, 1), dtype=np.uint64)
    hv = _vector_count(H, True)
    last = 0
    for t in range(n):
        word = ids[t]
        _matvec(rec, ctx, 0, H, hid)
        if last != -1:
            for b in range(H):
                hid[b] += emb[last, b]
        for b in range(H):
            hid[b] = _sigmoid(hid[b], b < hv)
        _matvec(cls_w, hid, 0, C, zc)
        if ds > 0:
            rnnlm04b_direct_hashes(hist, direct_order, ds, -1, hashes)
            for j in range(C):
                for o in range(direct_order):
                    if hashes[o] == 0:
                        break
                    zc[j] += direct[hashes[o]]
                    hashes[o] += np.uint64(1)
        _softmax(zc, 0, C, True, pc)
        if word >= 0:
            c = word_class[word]
            lo = class_starts[c]
            hi = class_starts[c + 1]
            _matvec(out_w, hid, lo, hi, zw)
            if ds > 0:
                rnnlm04b_direct_hashes(hist, direct_order, ds, c, hashes)
                for w in range(lo, hi):
                    for o in range(direct_order):
                        if hashes[o] == 0:
                            break
                        zw[w] += direct[hashes[o]]
                        hashes[o] = (hashes[o] + np.uint64(1)) % np.uint64(ds)
            _softmax(zw, lo, hi - lo, False, pw)
            probs[t] = _ftz(pc[c] * pw[word - lo])
        else:
            probs[t] = np.float32(0.0)
        for a in range(H):
            ctx[a] = hid[a]
        last = word
        for k in range(nh - 1, 0, -1):
            hist[k] = hist[k - 1]
        hist[0] = word
        if independent and word == 0:
            for a in range(H):
                ctx[a] = np.float32(1.0)
            for k in range(nh):
                hist[k] = 0


@njit(cache=True)
def _ln_of_log10f(probs, ids, out):
    """out[t] = log10f(probs[t]) (float32, as rnnlm-0.4b sums them) times ln 10; NaN for OOV ids."""
    for t in range(probs.shape[0]):
        if ids[t] < 0:
            out[t] = np.nan
        elif probs[t] > np.float32(0.0):
            out[t] = np.float64(math.log10(probs[t])) * 2.302585092994046
        else:
            out[t] = -np.inf


# ----------------------------------------------------------------------------- evaluation glue
