"""Work on several cores from Python threads running `nogil` Numba kernels.

The threaded paths whose pieces are large (the full softmax's groups of streams, the per-word
schedule's text shards) run serial kernels on a small pool of Python threads instead of compiling
parallel kernels: Numba's parallel loops compile slowly (several seconds each on a cold start), and
each piece here takes milliseconds, so the thread hand-off costs nothing measurable. Each piece
writes only memory of its own (or a disjoint range of a shared array), and partial results are
combined in a fixed order, so the result depends on the number of pieces, never on scheduling.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


def run_pieces(fn, n: int) -> None:
    """fn(0), ..., fn(n - 1), at once on n threads (this one runs piece 0); re-raises the first error."""
    global _POOL, _POOL_SIZE
    if n <= 1:
        fn(0)
        return
    if _POOL is None or _POOL_SIZE < n - 1:
        if _POOL is not None:
            _POOL.shutdown(wait=True)
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="rnnlm"), n - 1
    futures = [_POOL.submit(fn, q) for q in range(1, n)]
    try:
        fn(0)
    finally:
        for f in futures:
            f.result()


def rnnlm_train_shards(X, Y, lens, sync, base, reps, N, M, C, S, word_class, class_starts, act, lr, beta,
                       clip, block, independent, eos, h_init, dorder, use_bias, l2_every, drop_in, drop_out,
                       drop_seed, H, HIST, HS, ERR, NG, IST, LOGP) -> None:
    """rnnlm-0.4b's per-word schedule on T = X.shape[0] shards of the text at once, one thread each.

    Shard t trains its own replica reps[t] (T, P) of the flat parameters `base` (P) on X[t, :lens[t]]
    (targets Y), with its own stream state (H[t], HIST[t], ... as kernels.seq.rnnlm_train_stream).
    After every `sync` words of each shard the replicas are merged, weight by weight, over the weights
    the round can have changed (kernels.seq.changeable_pieces, merge_pieces): a weight only one shard
    changed takes that shard's value (rare words' rows keep their whole update); a weight several
    shards changed moves by the mean of their changes (adding them up, as faster-rnnlm's lock-free
    threads do, was unstable with merges this far apart).
    Every replica then restarts from the merged weights. Deterministic: the result depends on T only.
    With T = 1 this is exactly rnnlm_train_stream. ln p of every word goes to LOGP.
    """
    from rnnlm import kernels as K
    from rnnlm.kernels import seq as KS
    T = X.shape[0]
    longest = int(lens.max()) if T else 0
    for a in range(0, longest, sync):
        pieces = _changeable(X, lens, HIST, a, sync, N, M, base.shape[0])
        cuts = K.piece_cuts(pieces, T).tolist()
        run_pieces(lambda t: KS.shard_run(t, a, sync, X, Y, lens, reps, N, M, C, S, word_class, class_starts,
                                          act, lr, beta, clip, block, independent, eos, h_init, dorder,
                                          use_bias, l2_every, drop_in, drop_out, drop_seed,
                                          H, HIST, HS, ERR, NG, IST, LOGP), T)
        run_pieces(lambda q: KS.merge_pieces(pieces, cuts[q], cuts[q + 1], base, reps), T)


def _changeable(X, lens, HIST, a, sync, N, M, P) -> np.ndarray:
    """kernels.seq.changeable_pieces (the weights a round can change), in pieces of PIECE weights."""
    from rnnlm import kernels as K
    from rnnlm.kernels import seq as KS
    return KS.changeable_pieces(X, lens, HIST, a, sync, N, M, P, K.PIECE)


def reduce_pieces_threads(g, Gbuf, pieces, n: int) -> None:
    """g += sum_q Gbuf[q] (groups in order) and Gbuf <- 0 on the pieces, on n Python threads."""
    from rnnlm import kernels as K
    m = pieces.shape[0]
    cuts = K.piece_cuts(pieces, n).tolist()
    partial = np.empty(m)
    run_pieces(lambda q: K.pieces_range(g, g, Gbuf, pieces, cuts[q], cuts[q + 1], 1, 0.0, 0.0, 0.0, partial), n)


def window_grad_groups(x, y, h0, ng0, emb, rec, bh, out_w, bo, cls_w, bc, direct, word_class, class_starts,
                       act, cost, independent, eos, h_init, dorder, Gbuf, offs, h_out, ng_out,
                       losses: np.ndarray) -> None:
    """kernels.window_grad with the B streams split into G = Gbuf.shape[0] contiguous groups, one per
    thread (kernels.batch.group_grad: group q's gradient goes into its own buffer Gbuf[q], its loss
    into losses[q])."""
    from rnnlm import kernels as K
    G = Gbuf.shape[0]
    run_pieces(lambda q: K.group_grad(q, G, x, y, h0, ng0, emb, rec, bh, out_w, bo, cls_w, bc, direct,
                                      word_class, class_starts, act, cost, independent, eos, h_init, dorder,
                                      Gbuf, offs, h_out, ng_out, losses), G)


def sgd_pieces_threads(p, g, Gbuf, pieces, lr, scale, beta, clip, extra_sq, partial, n: int):
    """kernels.sgd_pieces with the pieces shared among n Python threads (the same bits): used where
    the gradient came from Python threads too, so that no OpenMP thread spins beside them."""
    import math
    from rnnlm import kernels as K
    m = pieces.shape[0]
    cuts = K.piece_cuts(pieces, n).tolist()
    if clip > 0:
        run_pieces(lambda q: K.pieces_range(p, g, Gbuf, pieces, cuts[q], cuts[q + 1], 1, lr, scale, beta,
                                            partial), n)
        norm = math.sqrt(_ordered_sq(partial, m, extra_sq)) * scale
        if norm > clip:
            scale = scale * clip / norm
        run_pieces(lambda q: K.pieces_range(p, g, Gbuf, pieces, cuts[q], cuts[q + 1], 2, lr, scale, beta,
                                            partial), n)
        return norm, scale
    run_pieces(lambda q: K.pieces_range(p, g, Gbuf, pieces, cuts[q], cuts[q + 1], 0, lr, scale, beta,
                                        partial), n)
    return math.sqrt(_ordered_sq(partial, m, extra_sq)) * scale, scale


def _ordered_sq(partial, m, extra_sq) -> float:
    """extra_sq + partial[0] + ... + partial[m - 1], added in order (as kernels.optim._norm)."""
    sq = float(extra_sq)
    for v in partial[:m].tolist():
        sq += v
    return sq
