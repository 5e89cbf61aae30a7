"""Small matrix products without a BLAS call: the recurrence and BPTT multiply a few rows (the streams
of one thread) by U at every step, where OpenBLAS spends more time packing U than multiplying
(measured on the development VM, float32, one thread: 16 x 100 by 100 x 100 takes 5.6 us in sgemm,
3.1 us here; 16 x 200 by 200 x 200, 21.4 against 11.1; dev/gemm_bench.py). The time here grows
with the number of rows and has no fixed part, so two threads with half the streams each take half
the time. Matrices smaller than a block are computed element by element (`_chains`).

`_gemm` tiles C into blocks of 4 rows x 2 vectors (16 float32 or 8 float64 columns), each computed
by a register-blocked micro-kernel (`_blocks`, LLVM IR: eight vector accumulators, a broadcast of A
and two vector loads of B per step of the inner dimension). Every element of C is one chain of fused
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


def _counted_loop(builder, n, body, loop_id):
    """for i in range(n): body(i) (i64), the back edge tagged with loop metadata loop_id."""
    li64 = ir.IntType(64)
    pre = builder.block
    cond_bb = builder.append_basic_block("loop.cond")
    body_bb = builder.append_basic_block("loop.body")
    end_bb = builder.append_basic_block("loop.end")
    builder.branch(cond_bb)
    builder.position_at_end(cond_bb)
    i = builder.phi(li64)
    i.add_incoming(ir.Constant(li64, 0), pre)
    builder.cbranch(builder.icmp_signed("<", i, n), body_bb, end_bb)
    builder.position_at_end(body_bb)
    body(i)
    i.add_incoming(builder.add(i, ir.Constant(li64, 1)), builder.block)
    builder.branch(cond_bb).set_metadata("llvm.loop", loop_id)
    builder.position_at_end(end_bb)


def _operands(c, a, b, ints):
    """The signature shared by _blocks and _chains, or None for other argument types."""
    if not all(isinstance(t, types.Array) and t.ndim == 1 and t.dtype in (types.float32, types.float64)
               for t in (c, a, b)) or not c.dtype == a.dtype == b.dtype:
        return None
    if not all(t == types.int64 for t in ints):
        return None
    i64 = types.int64
    return types.void(c, i64, i64, a, i64, i64, i64, b, i64, i64, i64, i64, i64)


def _unpack(context, builder, sig, args):
    """The data pointers of C, A, B and the ten int64 arguments of a product intrinsic, in its order."""
    C, A, B = (context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 3, 7))
    return (C, A, B) + tuple(args[i] for i in (1, 2, 4, 5, 6, 8, 9, 10, 11, 12))


def _no_unroll_id(mod):
    """A fresh loop id carrying llvm.loop.unroll.disable."""
    no_unroll = mod.add_metadata([ir.MetaDataString(mod, "llvm.loop.unroll.disable")])
    node = mod.add_metadata([no_unroll, ir.MetaDataString(mod, "rnnlm.gemm.%d" % len(mod.metadata))])
    node.operands = (node, no_unroll)      # a loop id refers to itself
    return node


@intrinsic
def _blocks(typingctx, c, ci, ldc, a, ai, sar, sak, b, bi, ldb, m, n, kk):
    """The blocked product for m >= ROWS, n >= 2 W (W elements per 32-byte vector): C[ci + i ldc + j] =
    sum_k A[ai + i sar + k sak] B[bi + k ldb + j] (i < m, j < n, k < kk), in blocks of ROWS x 2 W,
    each a chain of fused multiply-adds in k order per element (vector accumulators); the last block
    of a row or column range overlaps the one before. c, a, b: 1-D arrays of one float dtype, the
    rest int64; no bounds checks (the caller's).

    LLVM IR written here rather than Numba loops: the loops carry llvm.loop.unroll.disable. Unrolled
    (by LLVM's default), the code grew threefold and every kernel that calls it took seconds longer
    to compile; unrolling gained nothing measurable."""
    sig = _operands(c, a, b, (ci, ldc, ai, sar, sak, bi, ldb, m, n, kk))
    if sig is None:
        return None
    f32 = c.dtype == types.float32

    def codegen(context, builder, sig, args):
        C, A, B, ci, ldc, ai, sar, sak, bi, ldb, m, n, kk = _unpack(context, builder, sig, args)
        size = 4 if f32 else 8
        W = VECTOR_BYTES // size
        vty = ir.VectorType(ir.FloatType() if f32 else ir.DoubleType(), W)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                             "llvm.fma.v%d%s" % (W, "f32" if f32 else "f64"))
        li64 = ir.IntType(64)
        i32 = ir.IntType(32)

        def const(v):
            return ir.Constant(li64, v)

        undef = ir.Constant(vty, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, W), [0] * W)
        zero = ir.Constant(vty, [0.0] * W)
        mod = builder.module

        def loop_id():
            return _no_unroll_id(mod)

        # accumulators in entry-block allocas: LLVM keeps them in registers
        acc = [[cgutils.alloca_once_value(builder, zero) for v in range(2)] for r in range(ROWS)]

        def vptr(base, idx):
            return builder.bitcast(builder.gep(base, [idx]), vty.as_pointer())

        def last_start(idx, step, total, width):   # min(idx * step, total - width)
            start = builder.mul(idx, const(step))
            edge = builder.sub(total, const(width))
            return builder.select(builder.icmp_signed("<", start, edge), start, edge)

        def block(i0, j0):
            for r in range(ROWS):
                for v in range(2):
                    builder.store(zero, acc[r][v])
            arow = builder.add(ai, builder.mul(i0, sar))
            bcol = builder.add(bi, j0)

            def step(k):
                brow = builder.add(bcol, builder.mul(k, ldb))
                bv = [builder.load(vptr(B, builder.add(brow, const(v * W))), align=size) for v in range(2)]
                acol = builder.add(arow, builder.mul(k, sak))
                for r in range(ROWS):
                    s = builder.load(builder.gep(A, [builder.add(acol, builder.mul(const(r), sar))]))
                    sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
                    for v in range(2):
                        builder.store(builder.call(fma, [sv, bv[v], builder.load(acc[r][v])]), acc[r][v])

            _counted_loop(builder, kk, step, loop_id())
            crow0 = builder.add(ci, builder.add(builder.mul(i0, ldc), j0))
            for r in range(ROWS):
                crow = builder.add(crow0, builder.mul(const(r), ldc))
                for v in range(2):
                    builder.store(builder.load(acc[r][v]), vptr(C, builder.add(crow, const(v * W))), align=size)

        # ceil(m / ROWS) row blocks, ceil(n / 2W) column blocks
        rows_blocks = builder.sdiv(builder.add(m, const(ROWS - 1)), const(ROWS))
        col_blocks = builder.sdiv(builder.add(n, const(2 * W - 1)), const(2 * W))
        _counted_loop(builder, rows_blocks,
                      lambda ib: _counted_loop(builder, col_blocks,
                                               lambda jb: block(last_start(ib, ROWS, m, ROWS),
                                                                last_start(jb, 2 * W, n, 2 * W)), loop_id()),
                      loop_id())
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _chains(typingctx, c, ci, ldc, a, ai, sar, sak, b, bi, ldb, m, n, kk):
    """The product element by element (the small matrices the blocks do not fit: fewer than ROWS rows
    or 2 W columns), each one chain of fused multiply-adds in k order from 0, as a lane of a block:
    the same bits. Arguments as _blocks; scalar loops, not unrolled (small code)."""
    sig = _operands(c, a, b, (ci, ldc, ai, sar, sak, bi, ldb, m, n, kk))
    if sig is None:
        return None
    f32 = c.dtype == types.float32

    def codegen(context, builder, sig, args):
        C, A, B, ci, ldc, ai, sar, sak, bi, ldb, m, n, kk = _unpack(context, builder, sig, args)
        ety = ir.FloatType() if f32 else ir.DoubleType()
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ety, [ety, ety, ety]),
                                             "llvm.fma.f32" if f32 else "llvm.fma.f64")
        acc = cgutils.alloca_once_value(builder, ir.Constant(ety, 0.0))
        mod = builder.module

        def element(i, j):
            builder.store(ir.Constant(ety, 0.0), acc)
            arow = builder.add(ai, builder.mul(i, sar))
            bcol = builder.add(bi, j)

            def step(k):
                x = builder.load(builder.gep(A, [builder.add(arow, builder.mul(k, sak))]))
                y = builder.load(builder.gep(B, [builder.add(bcol, builder.mul(k, ldb))]))
                builder.store(builder.call(fma, [x, y, builder.load(acc)]), acc)

            _counted_loop(builder, kk, step, _no_unroll_id(mod))
            builder.store(builder.load(acc), builder.gep(C, [builder.add(ci, builder.add(builder.mul(i, ldc), j))]))

        _counted_loop(builder, m, lambda i: _counted_loop(builder, n, lambda j: element(i, j), _no_unroll_id(mod)),
                      _no_unroll_id(mod))
        return context.get_dummy_value()

    return sig, codegen


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
        _chains(Cf, ci, ldc, Af, ai, sar, sak, Bf, bi, ldb, m, n, K)
        return
    _blocks(Cf, ci, ldc, Af, ai, sar, sak, Bf, bi, ldb, m, n, K)
