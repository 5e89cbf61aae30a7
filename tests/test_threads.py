"""The batch schedule on several threads: stream groups with their own gradient buffers.

Two threads must give the gradient of one thread (up to rounding: 1e-10 in float64), the same bits
every run, and updates equal to those of the summed gradient. Windows here are large enough for
every code path of the kernels: the recurrent product as a BLAS call (>= 4 streams per group) and as
a loop (fewer), class blocks as one matrix product (>= GEMM_ROWS rows) and row by row.
"""
import numba
import numpy as np
import pytest

import reference as ref
from rnnlm import kernels as K
from rnnlm.kernels.bundles import make_net
from rnnlm.model.layout import grads, weights
from rnnlm.training.batch_step import BatchStepper
from rnnlm.training.threads import run_pieces, sgd_pieces_threads, window_grad_classes
from tiny import ACT, tiny_classes, tiny_model

N, M = 23, 5
TWO = min(2, numba.config.NUMBA_NUM_THREADS)


@pytest.fixture(autouse=True)
def _two_numba_threads():
    old = numba.get_num_threads()
    numba.set_num_threads(TWO)
    yield
    numba.set_num_threads(old)


def make(C, act="tanh", T=6, B=9, indep=False, seed=0):
    p = tiny_model(N, M, C, act, seed=seed, dtype="float64", scale=0.4)
    ci = tiny_classes(N, C)
    rng = np.random.default_rng(seed + 1)
    x = rng.integers(0, N, size=(T, B)).astype(np.int32)
    # targets concentrated on a few words: class blocks with many rows (the matrix-product path)
    y = np.where(rng.random((T, B)) < 0.7, rng.integers(0, 4, (T, B)), rng.integers(0, N, (T, B))).astype(np.int32)
    x[1, 0] = 0
    x[T - 1, B - 1] = 0
    h0 = rng.uniform(0, 1, (B, M))
    ng0 = np.zeros((B, 2), np.int32)
    return p, ci, x, y, h0, ng0


def stepper(p, ci, act, indep, threads):
    return BatchStepper(p, ci, ACT[act], 0, indep, 0, 0.7, threads=threads)


CASES = [(C, act, T, B, indep) for C in (0, 3) for act in ("sigmoid", "tanh") for T, B in ((6, 9), (3, 5))
         for indep in (False, True)]


@pytest.mark.parametrize("C,act,T,B,indep", CASES)
def test_two_threads_same_gradient_as_one(C, act, T, B, indep):
    p, ci, x, y, h0, ng0 = make(C, act, T, B, indep)
    one, two = stepper(p, ci, act, indep, 1), stepper(p, ci, act, indep, 2)
    l1, h1, n1 = one.gradient(x, y, h0, ng0)
    l2, h2, n2 = two.gradient(x, y, h0, ng0)
    assert l2 == pytest.approx(l1, rel=1e-12)
    np.testing.assert_allclose(h2, h1, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(n2, n1)
    np.testing.assert_allclose(two.g.flat, one.g.flat, rtol=1e-10, atol=1e-13)
    assert not two._groups.any(), "group buffers are cleared once summed"
    # and both are the reference gradient of the window
    rloss, D = ref.window(ref.from_kernel_layout(p), x, y, h0, act=act, cost="ce",
                          classes=ci.word_class if C else None, class_starts=ci.class_starts,
                          independent=indep, eos=0, h_init=0.7, dorder=3, ng0=ng0)
    assert l2 == pytest.approx(rloss, rel=1e-10)
    g = two.g
    for mine, theirs in [(g.emb.T, D["V"]), (g.rec, D["U"]), (g.bh, D["th_j"]), (g.out_w, D["W"]),
                         (g.bo, D["th_k"])] + ([(g.cls_w, D["Wc"]), (g.bc, D["th_c"])] if C else []):
        np.testing.assert_allclose(mine, -theirs, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("C", [0, 3])
@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_update_with_two_threads_equals_one(C, clip):
    """apply() straight from the group buffers (fused) = apply() of the summed gradient."""
    p1, ci, x, y, h0, ng0 = make(C)
    p2 = p1.copy()
    one, two = stepper(p1, ci, "tanh", False, 1), stepper(p2, ci, "tanh", False, 2)
    for _ in range(3):
        one.gradient(x, y, h0, ng0)
        two.gradient(x, y, h0, ng0)
        n1 = one.apply(x, y, lr=0.3, beta=0.01, clip=clip, scale=1 / 9)
        n2 = two.apply(x, y, lr=0.3, beta=0.01, clip=clip, scale=1 / 9)
        assert n2 == pytest.approx(n1, rel=1e-10)
        np.testing.assert_allclose(p2.flat, p1.flat, rtol=1e-10, atol=1e-13)
    assert not two._groups.any() and not two.g.flat.any() and not one.g.flat.any()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias,direct,dtype", [(True, 0, "float32"), (False, 0, "float32"), (True, 0, "float64"),
                                               (True, 40, "float64")])
def test_step_fuses_the_update(threads, bias, direct, dtype, monkeypatch):
    """step() (a class softmax without clipping: the whole SGD step inside the gradient kernel, the
    output rows as soon as their dL/ds is formed, the gradient never stored) ends where gradient()
    + apply() do, up to rounding (1e-12 in float64), over several windows, with and without biases,
    with direct connections, on one and two threads; it did take the fused path, and it is
    deterministic."""
    base = tiny_model(N, M, 3, "sigmoid", seed=6, dtype=dtype, scale=0.4, direct=direct)
    if not bias:
        base = type(base)(base.cfg.__class__(**{**base.cfg.to_dict(), "bias": False}), base.flat.copy())
        for name in ("bh", "bo", "bc"):
            base.block(name)[...] = 0.0
    ci = tiny_classes(N, 3)
    rng = np.random.default_rng(8)
    wins = [(rng.integers(0, N, (5, 8)).astype(np.int32),
             np.where(rng.random((5, 8)) < 0.7, rng.integers(0, 4, (5, 8)),
                      rng.integers(0, N, (5, 8))).astype(np.int32)) for _ in range(4)]
    applied = []
    real_apply = BatchStepper.apply

    def spy(self, *a, **k):
        applied.append(len(runs))
        return real_apply(self, *a, **k)

    monkeypatch.setattr(BatchStepper, "apply", spy)
    runs = []
    for fused in (False, True):
        p = base.copy()
        st = stepper(p, ci, "sigmoid", False, threads)
        h = np.full((8, M), 0.3, dtype=p.flat.dtype)
        ng = np.zeros((8, 2), np.int32)
        losses = []
        for x, y in wins:
            if fused:
                loss, h, ng = st.step(x, y, h, ng, 0.4, 1e-3, 0.0, 1 / 8)
            else:
                loss, h, ng = st.gradient(x, y, h, ng)
                st.apply(x, y, lr=0.4, beta=1e-3, clip=0.0, scale=1 / 8)
            losses.append(loss)
        assert not st.g.flat.any(), "the gradient buffers are left clear"
        runs.append((p.flat.copy(), h.copy(), losses))
    tol = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=tol, atol=tol)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=tol, atol=tol)
    np.testing.assert_allclose(runs[1][2], runs[0][2], rtol=tol)
    assert applied == [0] * 4, "the fused path takes its whole step in the kernel: no call to apply()"
    assert np.abs(runs[0][0] - base.flat).max() > 1e-3, "the updates moved the weights"
    p = base.copy()   # the fused path again: the same bits
    st = stepper(p, ci, "sigmoid", False, threads)
    h, ng = np.full((8, M), 0.3, dtype=p.flat.dtype), np.zeros((8, 2), np.int32)
    for x, y in wins:
        _, h, ng = st.step(x, y, h, ng, 0.4, 1e-3, 0.0, 1 / 8)
    assert p.flat.tobytes() == runs[1][0].tobytes()


def _train(C, threads, dtype="float32", windows=6):
    p, ci, x, y, h0, ng0 = make(C, T=5, B=8, seed=4)
    if dtype == "float32":
        p = type(p)(p.cfg.__class__(**{**p.cfg.to_dict(), "dtype": "float32"}), p.flat.astype(np.float32))
        h0 = h0.astype(np.float32)
    st = stepper(p, ci, "sigmoid", False, threads)
    rng = np.random.default_rng(7)
    h, ng = h0, ng0
    for _ in range(windows):
        xw = rng.integers(0, N, size=x.shape).astype(np.int32)
        yw = rng.integers(0, N, size=y.shape).astype(np.int32)
        _, h, ng = st.gradient(xw, yw, h, ng)
        st.apply(xw, yw, lr=0.5, beta=1e-4, clip=1.0, scale=1 / 8)
    return p.flat.tobytes()


@pytest.mark.parametrize("C", [0, 3])
def test_same_threads_same_bytes(C):
    assert _train(C, 2) == _train(C, 2)
    assert _train(C, 1) == _train(C, 1)


def _uneven_pieces(P):
    """Many small pieces (embedding rows), then few large ones (output rows), as a window's update."""
    small = [[a, a + 100] for a in range(0, 20_000, 200)]
    large = [[a, min(P, a + 4096)] for a in range(20_000, P, 4096)]
    return np.array(small + large, np.int64)


def test_threaded_update_is_bit_identical_to_serial():
    rng = np.random.default_rng(3)
    P = 50_000
    p = rng.standard_normal(P).astype(np.float32)
    g = rng.standard_normal(P).astype(np.float32)
    G = rng.standard_normal((2, P)).astype(np.float32)
    for pieces in (np.array([[a, min(P, a + 1000)] for a in range(0, P, 1500)], np.int64), _uneven_pieces(P)):
        for clip in (0.0, 5.0):
            a = (p.copy(), g.copy(), G.copy())
            ra = K.sgd_pieces(*a, pieces, 0.1, 0.5, 1e-3, clip, 2.0, np.empty(len(pieces)))
            for threads in (1, 2, 3, 7):
                b = (p.copy(), g.copy(), G.copy())
                rb = sgd_pieces_threads(*b, pieces, 0.1, 0.5, 1e-3, clip, 2.0, np.empty(len(pieces)), threads)
                assert ra == rb
                for u, v in zip(a, b):
                    assert u.tobytes() == v.tobytes()


def test_piece_cuts_share_work_not_piece_count():
    pieces = _uneven_pieces(50_000)
    sizes = pieces[:, 1] - pieces[:, 0]
    for G in (1, 2, 3, 4):
        cuts = K.piece_cuts(pieces, G)
        assert cuts[0] == 0 and cuts[-1] == len(pieces) and (np.diff(cuts) >= 0).all()
        work = [sizes[cuts[q]:cuts[q + 1]].sum() for q in range(G)]
        # each run is within one piece of an equal share (a count split gives run 0 only small pieces)
        assert max(abs(w - sizes.sum() / G) for w in work) <= sizes.max()
    assert K.piece_cuts(pieces[:0], 2).tolist() == [0, 0, 0]


def test_eval_kernel_long_stream_matches_reference():
    """window_logprob on one long stream (the evaluation path: large class blocks, a loop for the
    recurrent product) against the reference distribution, in float64."""
    for C in (0, 3):
        p, ci, _, _, _, _ = make(C, seed=5)
        rng = np.random.default_rng(9)
        T = 200
        x = rng.integers(0, N, size=(T, 1)).astype(np.int32)
        y = np.where(rng.random((T, 1)) < 0.7, rng.integers(0, 4, (T, 1)), rng.integers(0, N, (T, 1))).astype(np.int32)
        h0 = np.full((1, M), 0.1)
        ng0 = np.zeros((1, 2), np.int32)
        logp = np.empty((T, 1))
        K.window_logprob(x, y, h0, ng0, weights(p), make_net(ci.word_class, ci.class_starts, 0, False, 0, 1.0, 3),
                         logp, np.empty_like(h0), np.empty_like(ng0))
        rloss, _ = ref.window(ref.from_kernel_layout(p), x, y, h0, act="sigmoid", cost="ce",
                              classes=ci.word_class if C else None, class_starts=ci.class_starts,
                              independent=False, eos=0, h_init=1.0, dorder=3, ng0=ng0)
        assert -logp.sum() == pytest.approx(rloss, rel=1e-10)


def test_run_pieces_runs_each_piece_once_and_reraises():
    from rnnlm.training.threads import run_pieces
    seen = []
    run_pieces(seen.append, 3)
    assert sorted(seen) == [0, 1, 2]

    def bad(q):
        if q == 1:
            raise ValueError("piece 1")
    with pytest.raises(ValueError, match="piece 1"):
        run_pieces(bad, 2)


@pytest.mark.parametrize("C", [0, 3])
def test_touched_pieces_cover_exactly_the_touched_weights(C):
    """touched_pieces: disjoint pieces of at most `piece` weights whose union is exactly
    the embedding rows of the inputs, the dense blocks, and the output rows (and biases) of the
    targets' classes (all of them for a full softmax), each part switched by its flag."""
    p = tiny_model(N, 7, C, "sigmoid", seed=1)
    ci = tiny_classes(N, C)
    offs = np.array([p.offsets[n][0] for n in p.names] + [p.flat.size], np.int64)
    rng = np.random.default_rng(2)
    for trial in range(12):
        x = rng.integers(0, N, (3, 4)).astype(np.int32)
        if trial % 3 == 0:
            x[0, :] = [5, 6, 7, 9]       # adjacent rows (one run) and a gap
        y = rng.integers(0, N, (3, 4)).astype(np.int32)
        dense, rows, bias = trial % 2 == 0, trial % 4 < 2, trial % 3 != 1
        piece = (5, 16, 4096)[trial % 3]
        got = K.touched_pieces(x, y, ci.word_class, ci.class_starts, C == 0, offs, 7, dense, rows, bias, piece)
        assert (got[:, 1] > got[:, 0]).all() and (got[:, 1] - got[:, 0] <= piece).all()
        srt = got[np.argsort(got[:, 0])]
        assert (srt[1:, 0] >= srt[:-1, 1]).all(), "disjoint"
        mask = np.zeros(p.flat.size, bool)
        for a, b in got:
            mask[a:b] = True
        want = np.zeros_like(mask)
        view = lambda name: want[p.offsets[name][0]:p.offsets[name][1]]
        view("emb").reshape(N, 7)[np.unique(x)] = True
        view("rec")[:] = True
        view("cls_w")[:] = True
        if dense:
            view("bh")[:] = True
            view("bc")[:] = True
        out_words = np.arange(N) if C == 0 else np.isin(ci.word_class, ci.word_class[y.ravel()]).nonzero()[0]
        if rows:
            view("out_w").reshape(N, 7)[out_words] = True
        if bias:
            view("bo")[out_words] = True
        np.testing.assert_array_equal(mask, want)


def test_class_bins_share_word_layer_work():
    """Classes are dealt to the threads in contiguous runs of about equal estimated work (within one
    class of an equal share), however uneven the class sizes and row counts."""
    from rnnlm.kernels.threaded import _class_bins, _class_work
    rng = np.random.default_rng(3)
    C = 60
    sizes = np.sort(rng.integers(1, 400, C))            # rare-word classes are the large ones
    class_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    rows = rng.integers(0, 6, C) * (rng.random(C) < 0.7)  # some classes unmet in the window
    cnt = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    work = np.array([_class_work(r, s) for r, s in zip(rows, sizes)])
    assert work[rows == 0].sum() == 0 and (work[rows > 0] > rows[rows > 0] * sizes[rows > 0]).all()
    for G in (1, 2, 3, 5):
        bins = np.empty(C, np.int64)
        _class_bins(cnt, class_starts, G, bins)
        assert bins.min() >= 0 and bins.max() < G and (np.diff(bins) >= 0).all()
        share = np.bincount(bins, weights=work, minlength=G)
        assert np.abs(share - work.sum() / G).max() <= work.max()


def _random_windows(seed, nw, T, B, C=4):
    """A float64 model with C classes and nw random (T, B) windows of inputs X and targets Y."""
    base = tiny_model(N, M, C, "sigmoid", seed=seed, dtype="float64", scale=0.4)
    rng = np.random.default_rng(seed + 1)
    X = rng.integers(0, N, (nw, T, B)).astype(np.int32)
    Y = rng.integers(0, N, (nw, T, B)).astype(np.int32)
    return base, tiny_classes(N, C), X, Y


def _fresh_run(base, B):
    """A copy of the weights, clear gradients, a start state and history for B streams."""
    p = base.copy()
    return p, p.zeros_like(), np.full((B, M), 0.3), np.zeros((B, 2), np.int32)


@pytest.mark.parametrize("G,P,B,indep", [(2, TWO, 8, False), (3, TWO, 2, True), (5, TWO, 4, False), (2, 1, 8, True)])
def test_parallel_step_kernel_matches_serial(G, P, B, indep):
    """window_grad_classes taking the whole step (upd) for G parts on P workers, also more parts
    than streams (fewer stream groups than parts) and than workers: the same weights, loss and state
    as the serial kernel's step (1e-12 in float64), the gradient arrays left clear, over several
    windows."""
    C, T = 4, 3
    base = tiny_model(N, M, C, "sigmoid", seed=11, dtype="float64", scale=0.4)
    ci = tiny_classes(N, C)
    rng = np.random.default_rng(12)
    wins = [(rng.integers(0, N, (T, B)).astype(np.int32), rng.integers(0, N, (T, B)).astype(np.int32))
            for _ in range(3)]
    upd = np.array([0.4, 1 / B, 1e-3, 1.0])
    out = []
    for parallel in (False, True):
        p, g, h, ng = _fresh_run(base, B)
        losses = []
        for x, y in wins:
            ho, no = np.empty_like(h), np.empty_like(ng)
            if parallel:
                loss = window_grad_classes(x[None], y[None], h, ng, weights(p),
                                           make_net(ci.word_class, ci.class_starts, ACT["sigmoid"], indep, 0, 0.7, 3),
                                           grads(g), G, P, ho, no, upd)
            else:
                loss = K.window_grad(x, y, h, ng, weights(p),
                                     make_net(ci.word_class, ci.class_starts, ACT["sigmoid"], indep, 0, 0.7, 3), 0,
                                     grads(g), ho, no, upd)
            losses.append(loss)
            h, ng = ho, no
            assert not g.flat.any(), "the gradient arrays are left clear"
        out.append((p.flat.copy(), h, losses))
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[1][2], out[0][2], rtol=1e-12)
    assert np.abs(out[0][0] - base.flat).max() > 1e-3, "the steps moved the weights"


@pytest.mark.parametrize("G,indep", [(1, False), (2, True), (3, False)])
def test_many_windows_in_one_call_give_the_same_bits(G, indep):
    """Four windows in one kernel call (windows_grad for one thread, window_grad_classes for G parts
    on two workers, never more than Numba's threads: they wait for each other) give the weights,
    final state, history and summed loss of one call per window (on one worker), bit for bit; the
    state of each window starts where the one before ended."""
    T, B = 3, 4
    base, ci, X, Y = _random_windows(21, 4, T, B)
    upd = np.array([0.4, 1 / B, 1e-3, 1.0])
    net = make_net(ci.word_class, ci.class_starts, ACT["sigmoid"], indep, 0, 0.7, 3)

    def call(p, g, Xs, Ys, h, ng, ho, no, P):
        if G == 1:
            return K.windows_grad(Xs, Ys, h, ng, weights(p), net, 0, grads(g), ho, no, upd)
        return window_grad_classes(Xs, Ys, h, ng, weights(p), net, grads(g), G, P, ho, no, upd)

    out = []
    for together in (False, True):
        p, g, h, ng = _fresh_run(base, B)
        ho, no = np.empty_like(h), np.empty_like(ng)
        if together:
            loss = call(p, g, X, Y, h, ng, ho, no, TWO)
            h, ng = ho, no
        else:
            loss = 0.0
            for w in range(X.shape[0]):
                loss += call(p, g, X[w:w + 1], Y[w:w + 1], h, ng, ho, no, 1)
                h, ng = ho.copy(), no.copy()
        out.append((p.flat.copy(), h.copy(), ng.copy(), loss))
        assert not g.flat.any(), "the gradient arrays are left clear"
    assert np.array_equal(out[0][0], out[1][0])
    assert np.array_equal(out[0][1], out[1][1])
    assert np.array_equal(out[0][2], out[1][2])
    assert out[0][3] == out[1][3]
    assert np.abs(out[1][0] - base.flat).max() > 1e-3, "the steps moved the weights"


def test_parallel_kernel_bits_do_not_depend_on_the_workers():
    """window_grad_classes for G = 3 parts on one worker and on two (fewer workers than parts), with
    and without the step, and with the clipped step (also for fewer streams than parts): the same
    bits."""
    for B, upd, clip in ((6, np.array([0.4, 1 / 6, 1e-3, 1.0]), 0.0), (6, np.empty(0), 0.0),
                         (6, np.array([0.4, 1 / 6, 1e-3, 1.0]), 0.05), (2, np.array([0.4, 1 / 2, 1e-3, 0.0]), 0.05)):
        base, ci, X, Y = _random_windows(31, 3, 3, B)
        out = []
        for P in (1, TWO):
            p, g, h, ng = _fresh_run(base, B)
            ho, no = np.empty_like(h), np.empty_like(ng)
            loss = window_grad_classes(X, Y, h, ng, weights(p),
                                       make_net(ci.word_class, ci.class_starts, ACT["sigmoid"], True, 0, 0.7, 3),
                                       grads(g), 3, P, ho, no, upd, clip, (p.flat, g.flat, _offsets(p)))
            out.append((p.flat.copy(), g.flat.copy(), ho, no, loss))
        for o in out[1:]:
            for a, b in zip(o, out[0]):
                assert np.array_equal(a, b)
        assert np.abs(out[0][0] - base.flat).max() > 1e-3 if upd.size else np.abs(out[0][1]).max() > 1e-3


def test_concurrent_workers_never_exceed_the_cores():
    """The class-softmax workers wait for each other: never more of them than cores to run them."""
    import os

    from rnnlm.training.batch_step import concurrent_workers
    assert concurrent_workers(1) == 1
    assert concurrent_workers(5) == min(5, len(os.sched_getaffinity(0)))


def test_barrier_waits_for_every_worker_and_times_out():
    """sync._barrier: P workers (Python threads, as the class-softmax step runs them) pass the k-th
    barrier only when all P arrived (a worker's writes before it are seen after it); one that waits
    for a worker that never comes raises after its timeout instead of hanging, and run_pieces
    re-raises it once every worker is done."""
    from numba import njit

    from rnnlm.kernels.sync import BarrierTimeout, _barrier

    @njit(nogil=True)
    def rounds(i, P, R, out, bar, timeout):
        for r in range(R):
            out[r, i] = r + 1                      # each worker's value for round r ...
            _barrier(bar, (2 * r + 1) * P, timeout)
            s = 0
            for q in range(P):                     # ... seen by every worker after the barrier
                s += out[r, q]
            out[r, P + i] = s
            _barrier(bar, (2 * r + 2) * P, timeout)

    P, R = 2, 200
    out = np.zeros((R, 2 * P), np.int64)
    bar = np.zeros(16, np.int64)
    run_pieces(lambda i: rounds(i, P, R, out, bar, 1 << 40), P, pin=True)   # each on a CPU of its own
    assert bar[0] == 2 * R * P
    np.testing.assert_array_equal(out[:, P:], np.repeat(np.arange(1, R + 1)[:, None] * P, P, axis=1))
    with pytest.raises(RuntimeError, match="did not reach the barrier"):
        _barrier(np.zeros(16, np.int64), 2, 1 << 20)   # the second worker never arrives
    bar[0] = 0
    with pytest.raises(BarrierTimeout, match="did not reach the barrier"):   # worker 1 stops after round 0
        run_pieces(lambda i: rounds(i, P, R if i == 0 else 1, out, bar, 1 << 27), P)   # ~50 ms: room for a loaded machine
    assert bar[0] == 2 * P + 1   # worker 0 arrived once more, and gave up

    def fails_first(i):
        if i == 1:
            raise ValueError("worker 1 failed")
        rounds(i, P, R, out, bar, 1 << 22)

    bar[0] = 0
    with pytest.raises(ValueError, match="worker 1 failed"):   # the cause, not worker 0's timeout
        run_pieces(fails_first, P)


def test_pool_threads_that_slept_still_take_and_report_their_pieces():
    """run_pieces when the threads stop spinning: a helper whose piece outlasts the caller's spin
    (the caller sleeps until woken), a helper that slept between runs (woken by the next run), an
    error in a helper (re-raised once the others are done), and runs of more pieces than before."""
    import time

    out = []

    def piece(q, slow):
        if q == slow:
            time.sleep(0.02)
        out.append(q)

    for n, slow in ((2, 1), (2, 0), (3, 2), (2, -1)):
        out.clear()
        run_pieces(lambda q: piece(q, slow), n)
        assert sorted(out) == list(range(n))
        time.sleep(0.02)   # longer than the threads spin: they sleep before the next run

    def failing(q):
        if q == 1:
            raise ValueError("piece 1 failed")
        out.append(q)

    out.clear()
    with pytest.raises(ValueError, match="piece 1 failed"):
        run_pieces(failing, 3)
    assert sorted(out) == [0, 2]
    out.clear()
    run_pieces(lambda q: out.append(q), 3)   # the pool still works
    assert sorted(out) == [0, 1, 2]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_pool_works_in_a_forked_child():
    """A child forked after the pool has started has none of its threads: it gets a pool of its own
    (run_pieces would otherwise wait for helpers that do not exist)."""
    import os

    out = []
    run_pieces(lambda q: out.append(q), 2)
    pid = os.fork()
    if pid == 0:   # the child: exit code 0 only if both pieces ran
        import signal
        signal.alarm(30)   # a child that waits for helpers it does not have dies instead of hanging
        res = []
        try:
            run_pieces(lambda q: res.append(q), 2)
        finally:
            os._exit(0 if sorted(res) == [0, 1] else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(out) == [0, 1]


def _offsets(p):
    """Where each block of p starts in p.flat (BatchStepper._offs)."""
    return np.array([p.offsets[n][0] for n in p.names] + [p.flat.size], np.int64)


def _no_bias(p):
    """p without biases (ModelConfig bias=False, the bias blocks zero)."""
    q = type(p)(p.cfg.__class__(**{**p.cfg.to_dict(), "bias": False}), p.flat.copy())
    for name in ("bh", "bo", "bc"):
        q.block(name)[...] = 0.0
    return q


@pytest.mark.parametrize("bias,indep,B", [(True, False, 8), (False, True, 8), (True, True, 2)])
def test_parallel_clipped_step_matches_serial(bias, indep, B, monkeypatch):
    """A clipped step (--clip) of a class softmax on two threads is taken inside the kernel
    (window_grad_classes' fifth phase; no call to apply()) and ends where one thread's gradient() +
    apply() does (1e-12 in float64), over several windows, with and without biases, with one stream
    per group too (B = 2); the clipping did act (the
    weights differ from the unclipped step's), a clip above every norm gives the unclipped step,
    and step_windows (one kernel call) gives the bits of one step() per window."""
    T, C = 3, 4
    base, ci, X, Y = _random_windows(41, 4, T, B, C)
    if not bias:
        base = _no_bias(base)
    applied = []
    real_apply = BatchStepper.apply

    def spy(self, *a, **k):
        applied.append(self._threads())
        return real_apply(self, *a, **k)

    monkeypatch.setattr(BatchStepper, "apply", spy)

    def run(threads, clip, together=False):
        p = base.copy()
        st = BatchStepper(p, ci, ACT["sigmoid"], 0, indep, 0, 0.7, threads=threads)
        h, ng = np.full((B, M), 0.3), np.zeros((B, 2), np.int32)
        if together:
            loss, h, ng = st.step_windows(X, Y, h, ng, 0.5, 1e-3, clip, 1 / B)
            losses = [loss]
        else:
            losses = []
            for w in range(X.shape[0]):
                loss, h, ng = st.step(X[w], Y[w], h, ng, 0.5, 1e-3, clip, 1 / B)
                losses.append(loss)
        assert not st.g.flat.any(), "the gradient buffers are left clear"
        return p.flat.copy(), h, losses

    serial = run(1, 0.05)
    assert applied and set(applied) == {1}
    applied.clear()
    two = run(TWO, 0.05)
    if TWO > 1:
        assert not applied, "two threads take the clipped step in the kernel"
    np.testing.assert_allclose(two[0], serial[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(two[1], serial[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(two[2], serial[2], rtol=1e-12)
    unclipped = run(TWO, 0.0)
    assert np.abs(unclipped[0] - two[0]).max() > 1e-3, "the clipping acted"
    np.testing.assert_allclose(run(TWO, 1e9)[0], unclipped[0], rtol=1e-12, atol=1e-13)
    together = run(TWO, 0.05, together=True)
    assert together[0].tobytes() == two[0].tobytes() and together[1].tobytes() == two[1].tobytes()
    assert together[2][0] == sum(two[2])
    if not bias:
        for name, (a, b) in base.offsets.items():
            if name in ("bh", "bo", "bc"):
                assert not two[0][a:b].any(), "no bias moves without biases"


def test_parallel_clipped_kernel_with_more_parts_than_streams():
    """window_grad_classes' clipped step for G = 3 parts over B = 2 streams (a part that owns output
    rows only) ends where one thread's gradient() + apply() does (1e-12 in float64)."""
    B, C = 2, 4
    base, ci, X, Y = _random_windows(51, 3, 3, B, C)
    upd = np.array([0.5, 1 / B, 1e-3, 1.0])
    p1 = base.copy()
    st = BatchStepper(p1, ci, ACT["sigmoid"], 0, False, 0, 0.7, threads=1)
    p2, g, h2, ng2 = _fresh_run(base, B)
    h1, ng1 = h2.copy(), ng2.copy()
    norms = []
    for w in range(X.shape[0]):
        _, h1, ng1 = st.gradient(X[w], Y[w], h1, ng1)
        norms.append(st.apply(X[w], Y[w], lr=0.5, beta=1e-3, clip=0.05, scale=1 / B))
        ho, no = np.empty_like(h2), np.empty_like(ng2)
        window_grad_classes(X[w:w + 1], Y[w:w + 1], h2, ng2, weights(p2),
                            make_net(ci.word_class, ci.class_starts, ACT["sigmoid"], False, 0, 0.7, 3), grads(g), 3,
                            TWO, ho, no, upd, 0.05, (p2.flat, g.flat, _offsets(p2)))
        h2, ng2 = ho, no
        assert not g.flat.any()
    assert min(norms) > 0.05, "every step was clipped"
    np.testing.assert_allclose(p2.flat, p1.flat, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h2, h1, rtol=1e-12, atol=1e-14)


def test_clipped_kernel_step_is_refused_where_it_cannot_be_taken():
    """The kernel's clipped step needs the flat buffers, and BatchStepper.gradient does not take
    one on a single thread (its kernel would step unclipped)."""
    B = 4
    base, ci, X, Y = _random_windows(61, 1, 3, B)
    p, g, h, ng = _fresh_run(base, B)
    upd = np.array([0.5, 1 / B, 1e-3, 1.0])
    with pytest.raises(ValueError, match="flat"):
        window_grad_classes(X, Y, h, ng, weights(p),
                            make_net(ci.word_class, ci.class_starts, ACT["sigmoid"], False, 0, 0.7, 3), grads(g), 2, 1,
                            np.empty_like(h), np.empty_like(ng), upd, 0.05)
    st = BatchStepper(p, ci, ACT["sigmoid"], 0, False, 0, 0.7, threads=1)
    with pytest.raises(ValueError, match="several threads"):
        st.gradient(X[0], Y[0], h, ng, upd, 0.05)
    assert np.array_equal(p.flat, base.flat), "nothing moved"
