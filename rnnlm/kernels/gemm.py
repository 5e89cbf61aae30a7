"""Small matrix products without a BLAS call: the recurrence and BPTT multiply a few rows (the streams
of one thread) by U at every step, where OpenBLAS spends more time packing U than multiplying
(measured on the development VM, float32, one thread: 16 x 100 by 100 x 100 takes 5.6 us in sgemm,
3.2 us here; 16 x 200 by 200 x 200, 21.4 against 11.8; see the README). The time here grows with the
number of rows and has no fixed part, so two threads with half the streams each take half the time.

`_gemm` tiles C into blocks of 4 rows x 2 vectors (16 float32 or 8 float64 columns) computed by one
register-blocked micro-kernel (`_mk`, LLVM IR: eight vector accumulators, a broadcast of A and two
vector loads of B per step of the inner dimension). Every element of C is one chain of fused
multiply-adds in the order of the inner dimension, so the result does not depend on the tiling:
edges are covered by blocks that overlap the previous ones and write the same bits again.

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic

ROWS = 4          # rows of C per micro-kernel block (8 vector accumulators: half the AVX2 registers)
VECTOR_BYTES = 32


@intrinsic
def _mk(typingctx, c, ci, ldc, a, ai, sar, sak, b, bi, ldb, kk):
    """One block: C[ci + r ldc + j] = sum_k A[ai + r sar + k sak] B[bi + k ldb + j] for r < ROWS and
    j < 2 W (W elements per 32-byte vector), k < kk, as fused multiply-adds in k order. c, a, b are
    1-D arrays of one float dtype, the rest int64; no bounds checks (the caller's)."""
    if not all(isinstance(t, types.Array) and t.ndim == 1 and t.dtype in (types.float32, types.float64)
               for t in (c, a, b)) or not c.dtype == a.dtype == b.dtype:
        return None
    if not all(t == types.int64 for t in (ci, ldc, ai, sar, sak, bi, ldb, kk)):
        return None
    i64 = types.int64
    sig = types.void(c, i64, i64, a, i64, i64, i64, b, i64, i64, i64)
    f32 = c.dtype == types.float32

    def codegen(context, builder, sig, args):
        C, A, B = (context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 3, 7))
        ci, ldc, ai, sar, sak, bi, ldb, kk = (args[i] for i in (1, 2, 4, 5, 6, 8, 9, 10))
        size = 4 if f32 else 8
        W = VECTOR_BYTES // size
        ety = ir.FloatType() if f32 else ir.DoubleType()
        vty = ir.VectorType(ety, W)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                             "llvm.fma.v%d%s" % (W, "f32" if f32 else "f64"))
        li64 = ir.IntType(64)
        i32 = ir.IntType(32)
        undef = ir.Constant(vty, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, W), [0] * W)
        # accumulators in entry-block allocas: LLVM keeps them in registers
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * W)) for v in range(2)]
               for r in range(ROWS)]

        def vptr(base, idx):
            return builder.bitcast(builder.gep(base, [idx]), vty.as_pointer())

        with cgutils.for_range(builder, kk) as loop:
            k = loop.index
            brow = builder.add(bi, builder.mul(k, ldb))
            bv = [builder.load(vptr(B, builder.add(brow, ir.Constant(li64, v * W))), align=size) for v in range(2)]
            acol = builder.add(ai, builder.mul(k, sak))
            for r in range(ROWS):
                s = builder.load(builder.gep(A, [builder.add(acol, builder.mul(ir.Constant(li64, r), sar))]))
                sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
                for v in range(2):
                    builder.store(builder.call(fma, [sv, bv[v], builder.load(acc[r][v])]), acc[r][v])
        for r in range(ROWS):
            crow = builder.add(ci, builder.mul(ir.Constant(li64, r), ldc))
            for v in range(2):
                builder.store(builder.load(acc[r][v]), vptr(C, builder.add(crow, ir.Constant(li64, v * W))),
                              align=size)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _fma_any(typingctx, a, b, c):
    """a * b + c rounded once, for float32 or float64 (llvm.fma), as the micro-kernel's lanes."""
    if not (a in (types.float32, types.float64) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        t = args[0].type
        name = "llvm.fma.f32" if isinstance(t, ir.FloatType) else "llvm.fma.f64"
        return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t, t]), name), args)

    return a(a, a, a), codegen


@njit(cache=True)
def _gemm(Af, ai, sar, sak, Bf, bi, ldb, Cf, ci, ldc, m, n, K):
    """C = A B, written (not added): C[i, j] = Cf[ci + i ldc + j] for i < m, j < n, A[i, k] =
    Af[ai + i sar + k sak], B[k, j] = Bf[bi + k ldb + j] (k < K); flat 1-D arrays of one dtype, C
    not overlapping A or B. Each element is a chain of fused multiply-adds in k order (the blocks'
    and the small-matrix loop's alike)."""
    ai, sar, sak, bi, ldb, ci, ldc = (np.int64(ai), np.int64(sar), np.int64(sak), np.int64(bi), np.int64(ldb),
                                      np.int64(ci), np.int64(ldc))
    m, n, K = np.int64(m), np.int64(n), np.int64(K)
    if m <= 0 or n <= 0:
        return
    # the micro-kernel reads and writes unchecked: every index it can reach must lie in its array
    bad = min(ai, ci, bi, sar, sak, ldb, ldc) < 0 or ci + (m - 1) * ldc + n > Cf.shape[0]
    if K > 0:
        bad = bad or ai + (m - 1) * sar + (K - 1) * sak >= Af.shape[0] or bi + (K - 1) * ldb + n > Bf.shape[0]
    if bad:
        raise IndexError("_gemm: operand out of range")
    nb = 2 * (VECTOR_BYTES // Cf.itemsize)     # columns per block
    if m < ROWS or n < nb:
        for i in range(m):
            c0 = ci + i * ldc
            for j in range(n):
                Cf[c0 + j] = 0.0
            for k in range(K):
                a = Af[ai + i * sar + k * sak]
                b0 = bi + k * ldb
                for j in range(n):
                    Cf[c0 + j] = _fma_any(a, Bf[b0 + j], Cf[c0 + j])
        return
    for i in range(0, m, ROWS):
        i0 = min(i, m - ROWS)      # the last block overlaps the one before: same bits written twice
        for j in range(0, n, nb):
            j0 = min(j, n - nb)
            _mk(Cf, ci + i0 * ldc + j0, ldc, Af, ai + i0 * sar, sar, sak, Bf, bi + j0, ldb, K)
