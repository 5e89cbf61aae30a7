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
(`sgd_pieces`, `sgd_touched`) apply p -= lr * (scale * g + beta * p) and clear the gradient.

Threads: `window_grad_classes` (class softmax: the output layer shared among threads by classes,
balanced by work) is the parallel gradient kernel; `sgd_pieces_par` / `reduce_pieces_par` share an
update's pieces. Work in large pieces runs serial `nogil` kernels on Python threads instead
(rnnlm/threads.py: `group_grad`, one group of streams of a full softmax per thread, each with its own
gradient buffer; `seq.shard_run` / `seq.merge_shards`, the per-word schedule's text shards), because
parallel kernels compile slowly. Every buffer a thread writes is its own or a disjoint part of a shared one, and
partial results are summed in a fixed order: the same thread count gives the same bits. BLAS is
called single-threaded (the callers limit it). Reassociation/contraction are allowed only in the
dot-product helpers (`FM` below), never where exp/log/softmax are computed.

Batched kernels take time-major id arrays x, y of shape (T, B): B parallel streams, T steps; x[t, b]
is the input word at step t, y[t, b] the word to predict. Hidden states live in H (T + 1, B, M) with
H[0] the carried-in state; token (t, b) is row t * B + b of the (T * B, M) view of H[1:].

Modules: core (helpers, direct hashing, hidden forward), output (softmax layers), batch (window
kernels, serial and threaded), optim (updates), seq (rnnlm-0.4b's per-word schedule, one-step
distributions, per-word training on threads), rnnlm04b (rnnlm-0.4b's exact test arithmetic for imported
models). The public batched kernels are re-exported here: `from rnnlm import kernels as K; K.window_grad`.

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

from rnnlm.kernels.core import (CE, P0P1, PRIMES, RELU, SIGMOID, SSE, TANH,  # noqa: E402,F401
                                direct_hashes)
from rnnlm.kernels.batch import (group_grad, window_grad, window_grad_classes,  # noqa: E402,F401
                                 window_logprob)
from rnnlm.kernels.optim import (PIECE, reduce_pieces_par, sgd_pieces, sgd_pieces_par,  # noqa: E402,F401
                                 sgd_touched, sq_norm_dense, touched_pieces)
