"""Every Numba kernel of the toolkit (this package): plain functions over arrays and scalars.

Notation follows ../shared/design/seed-equations.md; storage is row-major and chosen for gathers:
  emb    (N, M)  input -> hidden weights V, stored transposed: row w is column w of V (the embedding)
  rec    (M, M)  recurrent weights U, rec[j, h] = u[j, h] (to unit j from previous unit h)
  bh     (M,)    hidden bias theta_j
  out_w  (N, M)  hidden -> output weights W, out_w[k, j] = w[k, j]
  bo     (N,)    output bias theta_k (hierarchical softmax: out_w (N - 1, M), bo (N - 1,) are the
                 Huffman tree's internal nodes, see hsoftmax)
  cls_w  (C, M), bc (C,)  class layer of the class-factored softmax (C = 0: full softmax)
  direct (S,)    hashed direct n-gram connections (rnnlm-0.4b's -direct; S = 0: none), see below
Words are numbered so that every class is a contiguous id range class_starts[c] : class_starts[c+1].

Arguments: the public kernels take these arrays and the settings as named bundles (bundles.py,
typing.NamedTuples; Numba passes each as one argument and caches the kernels that take them):
  w: Weights(emb, rec, bh, out_w, bo, cls_w, bc, direct)   the arrays above
  g: Grads(emb, rec, bh, out_w, bo, cls_w, bc, direct)     dL/d of each (same fields, same shapes)
  tree: Tree(start, node, code)                            the hierarchical softmax's paths
  net: Net(word_class, class_starts, act, independent, eos, h_init, dorder)   the class layout and
       the recurrence's and direct connections' settings (make_net fixes the scalars' types)
  tr: Train(lr, beta, clip, block, use_bias, l2_every, drop_in, drop_out, drop_seed)   the per-word
       schedule's step (make_train)
  st: Stream(h, hist, hs, err, ng, istate)   the per-word schedule's carried state (stacked with a
       row per text shard for word.shard_run)
e.g. window_grad(x, y, h0, ng0, w, net, cost, g, h_out, ng_out, upd). threaded.classes_setup returns
its work arrays as a ClassesWork, which classes_worker takes (with a Clipping or None). Results are
returned as scalars or written into arrays passed in, never read back by position. Private helpers
inside the kernels take plain arrays and scalars.

Gradients are those of the loss L = -sum ln y_target (or the SSE), i.e. minus the seed equations'
deltas: a kernel *adds* dL/dparam into the gradient arrays it is given; the optimiser kernels
(`sgd_pieces`, `sgd_touched`) apply p -= lr * (scale * g + beta * p) and clear the gradient. Given
`upd` = (lr, scale, beta, bias) (a float64 vector; empty: no step), the window kernels of a class
softmax take that whole step themselves: each class's output rows as soon as dL/ds is formed, the
other weights once their gradient is complete; the gradient arrays are left clear.

Threads: no kernel here starts threads. Parallel loops compile slowly (Numba compiles a loop's body
three more times, in its wrappers), so the threaded paths run serial `nogil` kernels on Python
threads (rnnlm/training/threads.py): `threaded.classes_worker` (class softmax: one worker per thread for a
call of many windows, the output layer shared by classes balanced by work, the phases separated by
barriers, `sync._barrier`), `group_grad` (one group of streams of a full softmax per thread, each
with its own gradient buffer), `pieces_range` (an update's pieces in runs of equal work,
`piece_cuts`), `word.shard_run` / `word.merge_pieces` (the per-word schedule's text shards). Every
buffer a thread writes is its own or a disjoint part of a shared one, and partial results are
summed in a fixed order: the same thread count gives the same bits. BLAS is called single-threaded
(the callers limit it). Reassociation and contraction are allowed only in the dot-product helpers
(`FM` below), never where exp/log/softmax are computed.

Batched kernels take time-major id arrays x, y of shape (T, B): B parallel streams, T steps; x[t, b]
is the input word at step t, y[t, b] the word to predict. Hidden states live in H (T + 1, B, M) with
H[0] the carried-in state; token (t, b) is row t * B + b of the (T * B, M) view of H[1:].

Modules: bundles (the NamedTuples above), common (helpers, direct hashing, hidden forward), gemm
(the register-blocked small products of the recurrence and BPTT, no BLAS call), softmax (the output
layers), window (the batch schedule's window kernels, serial), threaded (the threaded class-softmax
step's setup and worker), sync (its workers' barrier), sgd (updates), word (rnnlm-0.4b's per-word
schedule, also on text shards), onestep (the next state and the next-word distribution, for sampling
and streaming scoring), hsoftmax (the hierarchical softmax: its per-word schedule, batch windows,
evaluation and one-step distributions), rnnlm04b (rnnlm-0.4b's exact test arithmetic for imported
models). No kernel module imports anything of rnnlm outside this package. The public batched kernels
and the bundles are re-exported here: `from rnnlm import kernels as K; K.window_grad`.

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

from rnnlm.kernels.common import (CE, P0P1, PRIMES, RELU, SIGMOID, SSE, TANH,  # noqa: F401
                                direct_hashes)
from rnnlm.kernels.bundles import (ClassesWork, Clipping, Grads, Net, Stream, Train, Tree, Weights,  # noqa: F401
                                   make_net, make_train)
from rnnlm.kernels.window import group_grad, window_grad, window_logprob, windows_grad  # noqa: F401
from rnnlm.kernels.sgd import (PIECE, clipped_pieces_range, piece_cuts, pieces_range, sgd_pieces,  # noqa: F401
                                 sgd_touched, sq_norm_dense, touched_pieces)
