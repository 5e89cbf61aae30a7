"""Synchronisation of threads through int64 counters, from atomic operations written as LLVM IR
(Numba has none of its own): `signal` (add to a counter), `wait_for` (spin until a count is reached)
and the spin barrier `_barrier`.

The class softmax's window step (rnnlm.training.threads.window_grad_classes) starts its P workers once per
call of many windows and meets them at a barrier between phases, a fraction of a microsecond, where
waking a sleeping thread costs 20-30 us on the development VM. The barrier relies on the P workers
running at once (P threads, no more than the cores). rnnlm.training.threads' pool hands work to its threads
through `signal` and `wait_for` too, spinning for a moment before it sleeps.

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
GRACE_CYCLES = 10000             # 2-4 us: how long a thread that was handed work waits before it takes the
                                 # GIL (to call its kernel), so that the thread handing it over, still in
                                 # Python until it enters its own kernel, has let go of the GIL by then
class BarrierTimeout(RuntimeError):
    """A worker waited TIMEOUT_CYCLES at a barrier for another that never came."""


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _counter(context, builder, sig, args):
    """A pointer to the int64 counter arr[0] of an intrinsic's first argument."""
    aty = sig.args[0]
    a = context.make_array(aty)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, aty, a, [ir.Constant(ir.IntType(64), 0)])


@intrinsic
def _add(typingctx, arr, v):
    """arr[0] += v, atomically (sequentially consistent: the writes before it are visible to a thread
    that sees the new value); returns the old value."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1 and v == types.int64):
        return None

    def codegen(context, builder, sig, args):
        return builder.atomic_rmw("add", _counter(context, builder, sig, args), args[1], "seq_cst")
    return types.int64(arr, v), codegen


@intrinsic
def _count(typingctx, arr):
    """arr[0], read atomically (sequentially consistent, never hoisted out of a wait loop)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_counter(context, builder, sig, args), "seq_cst", 8)
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
def wait_for(sig, target, timeout):
    """Wait until sig[0] (an int64 counter that only grows) reaches `target`: spin with `pause`,
    yielding the core every SPINS_BEFORE_YIELD spins (more threads than cores). False after
    `timeout` cycles of waiting."""
    if _count(sig) >= target:
        return True
    start = _relax(0 * target)
    spins = 0
    while _count(sig) < target:
        spins += 1
        now = _relax(-1 if spins % SPINS_BEFORE_YIELD == 0 else 0 * target)
        if now - start > timeout:
            return False
    return True


@njit(cache=True, nogil=True)
def signal(sig, v):
    """sig[0] += v, atomically (the writes before it are visible to a thread that sees the new
    value); returns the old value."""
    return _add(sig, v)


@njit(cache=True, nogil=True)
def signal_and_wait(done, sleepers, sig, target, timeout):
    """signal(done, 1); then, unless sleepers[0] > 0 (someone sleeps until `done` grows: returns 2,
    wake them), wait_for(sig, target, timeout) and GRACE_CYCLES more (returns 1 if reached, else 0).
    In one call: a thread that ends its work and waits for more never holds the GIL in between (a
    thread waiting for the GIL sleeps, and waking it costs tens of microseconds). Either this call
    sees the sleeper, or the sleeper, which counts itself in sleepers before it looks at `done`, sees
    the new count."""
    _add(done, 1 + 0 * target)
    if _count(sleepers) > 0:
        return 2
    if not wait_for(sig, target, timeout):
        return 0
    start = _relax(0 * target)
    while _relax(0 * target) - start < GRACE_CYCLES:
        pass
    return 1


@njit(cache=True, nogil=True)
def _barrier(bar, target, timeout):
    """Arrive at a barrier and wait until bar[0] (zero when the workers started; every arrival adds
    one) reaches `target` (the k-th barrier of P workers: k * P), as wait_for. Raises BarrierTimeout
    after `timeout` cycles of waiting (TIMEOUT_CYCLES in the kernel): a worker has died (an
    exception) or the workers do not run at once."""
    _add(bar, 1 + 0 * target)
    if not wait_for(bar, target, timeout):
        raise BarrierTimeout("rnnlm threads: a worker did not reach the barrier (an error in another, or "
                             "more workers than cores)")
