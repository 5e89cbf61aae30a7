"""A spin barrier for the workers of one parallel loop (`_barrier`), from atomic operations written as
LLVM IR (Numba has none of its own).

window_grad_classes runs its phases inside one parallel loop, one iteration per worker, and waits
at a barrier between phases instead of starting a parallel loop per phase: a loop's start and end
cost about 1.5 us each on the development VM, a barrier a fraction of that. It relies on the P
iterations running at once on P threads, which holds for Numba's OpenMP and workqueue threading
layers when P <= numba.get_num_threads() (each thread takes one chunk of the iteration space);
the caller passes P = 1 under TBB, whose scheduler does not promise it.

Notation and conventions: see rnnlm/kernels/__init__.py.
"""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic

SPINS_BEFORE_YIELD = 4096        # pauses before a waiting worker gives its core to the scheduler
TIMEOUT_CYCLES = 1 << 35         # 7-11 s at 3-5 GHz (a phase takes well under 1 ms): a worker that never
                                 # arrives is an error, not a hang
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _counter(context, builder, sig, args):
    """A pointer to the int64 counter arr[0] of an intrinsic's first argument."""
    aty = sig.args[0]
    a = context.make_array(aty)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, aty, a, [ir.Constant(ir.IntType(64), 0)])


@intrinsic
def _arrive(typingctx, arr):
    """arr[0] += 1, atomically (sequentially consistent: the writes before it are visible to a worker
    that sees the new count); returns the old value."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        return None

    def codegen(context, builder, sig, args):
        return builder.atomic_rmw("add", _counter(context, builder, sig, args), ir.Constant(ir.IntType(64), 1),
                                  "seq_cst")
    return types.int64(arr), codegen


@intrinsic
def _count(typingctx, arr):
    """arr[0], read atomically with acquire ordering (never hoisted out of a wait loop)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_counter(context, builder, sig, args), "acquire", 8)
    return types.int64(arr), codegen


@intrinsic
def _relax(typingctx, cycles):
    """A spin-wait hint (x86 `pause`; nothing elsewhere) or, with cycles < 0, sched_yield(); returns
    the cycle counter (llvm.readcyclecounter)."""
    if cycles != types.int64:
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        with builder.if_else(builder.icmp_signed("<", args[0], ir.Constant(i64, 0))) as (give, spin):
            with give:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                    "sched_yield")
                builder.call(fn, [])
            with spin:
                if _X86:
                    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                        "llvm.x86.sse2.pause")
                    builder.call(fn, [])
        clock = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, []), "llvm.readcyclecounter")
        return builder.call(clock, [])
    return types.int64(types.int64), codegen


@njit(cache=True, nogil=True)
def _barrier(bar, target, timeout):
    """Arrive at a barrier and wait until bar[0] (zero when the loop started; every arrival adds one)
    reaches `target` (the k-th barrier of P workers: k * P). A worker spins with `pause` and yields
    its core every SPINS_BEFORE_YIELD spins (more threads than cores). Raises RuntimeError after
    `timeout` cycles of waiting (TIMEOUT_CYCLES in the kernel): a worker has died (an exception in
    another iteration) or the iterations do not run at once."""
    _arrive(bar)
    if _count(bar) >= target:
        return
    start = _relax(0 * target)
    spins = 0
    while _count(bar) < target:
        spins += 1
        now = _relax(-1 if spins % SPINS_BEFORE_YIELD == 0 else 0 * target)
        if now - start > timeout:
            raise RuntimeError("window_grad_classes: a worker did not reach the barrier")
