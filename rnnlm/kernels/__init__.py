"""Every Numba kernel of the toolkit (this package): plain functions over arrays and scalars.

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
(`sgd_pieces`, `sgd_touched`) apply p -= lr * (scale * g + beta * p) and clear the gradient. Given
`upd` = (lr, scale, beta, bias), the window kernels of a class softmax take that whole step
themselves: each class's output rows as soon as dL/ds is formed, the other weights once their
gradient is complete; the gradient arrays are left clear.

Threads: `window_grad_classes` (class softmax: the output layer shared among threads by classes,
balanced by work; one parallel loop per call, its phases separated by barriers) is the parallel gradient
kernel; `sgd_pieces_par` shares its update's pieces in runs of equal work (`piece_cuts`). Work in large
pieces runs serial `nogil` kernels on Python threads instead (rnnlm/threads.py: `group_grad`, one group
of streams of a full softmax per thread, each with its own gradient buffer, and `pieces_range` for its
update; `seq.shard_run` / `seq.merge_pieces`, the per-word schedule's text shards), because parallel
kernels compile slowly. Every buffer a thread writes is its own or a disjoint part of a shared one, and
partial results are summed in a fixed order: the same thread count gives the same bits. BLAS is called
single-threaded (the callers limit it). Reassociation and contraction are allowed only in the
dot-product helpers (`FM` below), never where exp/log/softmax are computed.

Batched kernels take time-major id arrays x, y of shape (T, B): B parallel streams, T steps; x[t, b]
is the input word at step t, y[t, b] the word to predict. Hidden states live in H (T + 1, B, M) with
H[0] the carried-in state; token (t, b) is row t * B + b of the (T * B, M) view of H[1:].

Modules: core (helpers, direct hashing, hidden forward), gemm (the register-blocked small products
of the recurrence and BPTT, no BLAS call), output (softmax layers), batch (window kernels, serial),
parallel (the threaded class-softmax window kernel), sync (its workers' barrier), optim (updates),
seq (rnnlm-0.4b's per-word schedule, one-step distributions, per-word training on threads), rnnlm04b
(rnnlm-0.4b's exact test arithmetic for imported models). The public batched kernels are re-exported
here: `from rnnlm import kernels as K; K.window_grad`.

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

import os
import time



def _cpu_times():
    with open("/proc/stat", encoding="ascii") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return sum(v), v[3] + (v[4] if len(v) > 4 else 0)   # total, idle + iowait


def _others_running() -> bool:
    """Whether other processes keep at least half a core busy: the machine's CPU time over 50 ms
    (Linux /proc/stat) minus this process's own (its imports may leave threads busy for a moment).
    A single look at the run queue is not enough: it also counts BLAS threads that spin for a moment
    after a product. False where /proc is missing."""
    try:
        t0, i0 = _cpu_times()
        p0, w0 = time.process_time(), time.perf_counter()
        time.sleep(0.05)
        t1, i1 = _cpu_times()
        p1, w1 = time.process_time(), time.perf_counter()
    except (OSError, ValueError, IndexError):
        return False
    if t1 <= t0 or w1 <= w0:
        return False
    busy = (1.0 - (i1 - i0) / (t1 - t0)) * (os.cpu_count() or 1)   # cores busy, this process included
    return busy - (p1 - p0) / (w1 - w0) > 0.5


# OpenMP wait policy of Numba's threads (read when the OpenMP runtime starts, hence decided on import;
# the user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins). The parallel kernels run a few short regions per
# window, a few tens of microseconds of Python apart. On idle cores, threads must spin across those
# gaps: libgomp's default spins only about 0.1 ms and then sleeps, which cost all of the 2-thread gain
# at hidden 100 (measured: 243,000 words/s against 401,000 with longer spinning), so we spin up to
# GOMP_SPINCOUNT = 3,000,000 iterations (milliseconds) before sleeping. But when other processes share
# the cores, spinning threads starve the thread a region waits for and training runs up to 100x
# slower, so then they sleep at once (PASSIVE). Only speed depends on this, never the results.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    if _others_running():
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        os.environ["GOMP_SPINCOUNT"] = "3000000"

from rnnlm.kernels.core import (CE, P0P1, PRIMES, RELU, SIGMOID, SSE, TANH,  # noqa: E402,F401
                                direct_hashes)
from rnnlm.kernels.batch import group_grad, window_grad, window_logprob, windows_grad  # noqa: E402,F401
from rnnlm.kernels.parallel import window_grad_classes  # noqa: E402,F401
from rnnlm.kernels.optim import (PIECE, piece_cuts, pieces_range, sgd_pieces, sgd_pieces_par,  # noqa: E402,F401
                                 sgd_touched, sq_norm_dense, touched_pieces)
