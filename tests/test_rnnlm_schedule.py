"""rnnlm-0.4b's per-word schedule: kernel against the reference, and its sweep against the exact
gradient of its own truncated objective."""
import itertools

import numpy as np
import pytest

import reference as ref
from rnnlm.kernels import word as KS
from rnnlm.training.threads import rnnlm_train_shards
from rnnlm.kernels.bundles import Stream, make_net, make_train
from rnnlm.model.layout import weights
from tiny import ACT, tiny_classes, tiny_model

N, M = 11, 4


DORDER = 3


def fresh_state(D, h_init, dtype=np.float64):
    return (np.full(M, h_init, dtype), np.full(D + 1, -1, np.int32), np.zeros((D + 1, M), dtype),
            np.zeros((D + 1, M), dtype), np.zeros(DORDER - 1, np.int32), np.zeros(2, np.int64))


def run(p, ci, x, y, act, lr, beta, D, block, indep, state, clip=0.0, h_init=0.7, use_bias=True, l2_every=1,
        drop_in=0.0, drop_out=0.0, drop_seed=0):
    logp = np.empty(len(x))
    loss = KS.rnnlm_train_stream(x, y, weights(p), make_net(ci.word_class, ci.class_starts, ACT[act], indep, 0,
                                                            h_init, DORDER),
                                 make_train(lr, beta, clip, block, use_bias, l2_every, drop_in, drop_out, drop_seed),
                                 Stream(*state), logp)
    return loss, logp


def stream(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N, n).astype(np.int32)
    y[[i for i in (4, 11, 12) if i < n]] = 0
    x = np.concatenate([[0], y[:-1]]).astype(np.int32)
    return x, y


VARIANTS = [dict(direct=0, use_bias=True, l2_every=1), dict(direct=40, use_bias=True, l2_every=1),
            dict(direct=0, use_bias=False, l2_every=3), dict(direct=40, use_bias=False, l2_every=3),
            dict(direct=0, use_bias=True, l2_every=1, drop_in=0.3, drop_out=0.4, drop_seed=17),
            dict(direct=40, use_bias=False, l2_every=3, drop_in=0.0, drop_out=0.5, drop_seed=5)]


def _vid(v):
    out = f"direct{v['direct']}-bias{int(v['use_bias'])}-l2every{v['l2_every']}"
    return out + (f"-drop{v['drop_in']}-{v['drop_out']}" if "drop_out" in v else "")


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("v", VARIANTS, ids=_vid)
@pytest.mark.parametrize("act,C,indep,beta", list(itertools.product(
    ["sigmoid", "tanh", "relu"], [0, 3], [False, True], [0.0, 0.05])))
def test_schedule_matches_reference(act, C, indep, beta, v, tie):
    """The kernel against the reference. Tied (--tie): the kernel is handed emb as out_w (one
    array), the reference takes V = W^T as one matrix."""
    if v["direct"] == 0 and v["use_bias"] is False and beta == 0.0:
        pytest.skip("l2_every has no effect without L2")
    p = tiny_model(N, M, C, act, seed=5, direct=v["direct"], dorder=DORDER, tie=tie)
    if tie:
        assert p.out_w is p.emb and p.flat.size == tiny_model(N, M, C, act, direct=v["direct"]).flat.size - N * M
    ci = tiny_classes(N, C)
    x, y = stream(23, 6)
    P0 = ref.from_kernel_layout(p)
    D, block = 6, 4
    st = fresh_state(D, 0.7)
    kw = {k: v[k] for k in v if k != "direct"}
    # two calls, split mid-block: the carried state must make this equal to one pass
    _, lp1 = run(p, ci, x[:9], y[:9], act, 0.3, beta, D, block, indep, st, **kw)
    _, lp2 = run(p, ci, x[9:], y[9:], act, 0.3, beta, D, block, indep, st, **kw)
    P1, rlogp = ref.rnnlm_schedule(P0, x, y, D, block, 0.3, beta, act, ci.word_class if C else None,
                                   ci.class_starts, indep, 0, 0.7, DORDER, tie=tie, **kw)
    np.testing.assert_allclose(np.concatenate([lp1, lp2]), rlogp, rtol=1e-10)
    got = ref.from_kernel_layout(p)
    for k in P1:
        np.testing.assert_allclose(got[k], P1[k], rtol=1e-10, atol=1e-13, err_msg=k)
    if not v["use_bias"]:
        for k in ("th_j", "th_k", "th_c"):
            np.testing.assert_array_equal(got[k], P0[k])
    if v["direct"]:
        assert np.abs(got["dir"] - P0["dir"]).max() > 1e-3
    if tie:   # one matrix, and not where the untied schedule from the same start ends
        np.testing.assert_array_equal(P1["V"], P1["W"].T)
        P2, _ = ref.rnnlm_schedule(P0, x, y, D, block, 0.3, beta, act, ci.word_class if C else None,
                                   ci.class_starts, indep, 0, 0.7, DORDER, **kw)
        assert np.abs(P2["W"] - P1["W"]).max() > 1e-6


@pytest.mark.parametrize("act,C,direct,drop", list(itertools.product(
    ["sigmoid", "tanh", "relu"], [0, 3], [0, 40], [(0.0, 0.0), (0.3, 0.4)])))
def test_sweep_is_gradient_of_truncated_objective(act, C, direct, drop):
    """Run block 1 with lr = 0 (state only), then block 2 with lr = +-eps: d(params)/d(lr) at 0 is
    minus the gradient of block 2's loss with the state D steps back held constant (and, with
    dropout, with each step's masks held fixed)."""
    D, block = 6, 5
    x, y = stream(2 * block, 7)
    ci = tiny_classes(N, C)
    p = tiny_model(N, M, C, act, seed=8, direct=direct, dorder=DORDER)
    st = fresh_state(D, 0.7)
    dk = dict(drop_in=drop[0], drop_out=drop[1], drop_seed=23)
    run(p, ci, x[:block], y[:block], act, 0.0, 0.0, D, block, False, st, **dk)
    eps = 1e-6
    moved = []
    for lr in (eps, -eps):
        q = p.copy()
        s2 = tuple(a.copy() for a in st)
        run(q, ci, x[block:], y[block:], act, lr, 0.0, D, block, False, s2, **dk)
        moved.append(q.flat.copy())
    dparams = (moved[0] - moved[1]) / (2 * eps)
    # the truncated objective: steps t_e - D + 1 .. t_e from the constant state s(t_e - D)
    P = ref.from_kernel_layout(p)
    t_e = 2 * block - 1
    lo = t_e - D + 1
    h = np.full(M, 0.7)
    mi = np.array([ref.dropout_factors(23, t, M, drop[0]) for t in range(2 * block)])
    mo = np.array([ref.dropout_factors(23, t, M, drop[1], 2 ** 32) for t in range(2 * block)])
    for t in range(lo):  # forward with the unchanged weights up to s(t_e - D)
        h = ref.f(P["V"][:, x[t]] * mi[t] + P["U"] @ h + P["th_j"], act)
    xs, ys = x[lo:].reshape(-1, 1), y[lo:].reshape(-1, 1)
    mask = np.zeros((D, 1), bool); mask[-block:] = True
    ng0 = np.array([[x[lo - 1 - k] for k in range(DORDER - 1)]])  # direct history before step lo
    kw = dict(act=act, classes=ci.word_class if C else None, class_starts=ci.class_starts, mask=mask,
              dorder=DORDER, ng0=ng0, drop_in=mi[lo:, None], drop_out=mo[lo:, None])

    def cost(flat):
        q = p.copy(); q.flat[:] = flat
        return ref.window_cost(ref.from_kernel_layout(q), xs, ys, h[None, :], **kw)

    h_eps = 1e-5
    numeric = np.zeros_like(p.flat)
    for i in range(p.flat.size):
        e = np.zeros_like(p.flat); e[i] = h_eps
        numeric[i] = (cost(p.flat + e) - cost(p.flat - e)) / (2 * h_eps)
    np.testing.assert_allclose(dparams, -numeric, rtol=1e-5, atol=1e-8)
    assert np.abs(numeric).max() > 1e-3


def test_shards_kernel_with_one_shard_is_the_stream_kernel():
    """rnnlm_train_shards with T = 1 (any sync interval) gives exactly rnnlm_train_stream."""
    p = tiny_model(N, M, 3, "sigmoid", seed=5, direct=40, dorder=DORDER)
    q = p.copy()
    ci = tiny_classes(N, 3)
    x, y = stream(23, 6)
    D, block = 6, 4
    st = fresh_state(D, 0.7)
    _, lp = run(p, ci, x, y, "sigmoid", 0.3, 0.05, D, block, False, st, l2_every=3)
    st2 = [a[None].copy() for a in fresh_state(D, 0.7)]
    reps = q.flat[None].copy()
    logp = np.zeros((1, len(x)))
    rnnlm_train_shards(x[None], y[None], np.array([len(x)]), 5, q.flat, reps, N, M, 3, 40,
                       make_net(ci.word_class, ci.class_starts, 0, False, 0, 0.7, DORDER),
                       make_train(0.3, 0.05, 0.0, block, True, 3, 0.0, 0.0, 0), Stream(*st2), logp)
    np.testing.assert_array_equal(q.flat, p.flat)
    np.testing.assert_array_equal(logp[0], lp)


def test_shards_merge_the_changes_of_each_shard():
    """Two shards, one sync round: a weight one shard changed takes its change, a weight both
    changed the mean of the two changes."""
    p = tiny_model(N, M, 3, "tanh", seed=2)
    ci = tiny_classes(N, 3)
    x, y = stream(20, 3)
    X, Y = np.stack([x[:10], x[10:]]), np.stack([y[:10], y[10:]])
    D, block = 6, 4
    moved = []
    for s in range(2):
        q = p.copy()
        run(q, ci, X[s], Y[s], "tanh", 0.2, 0.0, D, block, False, fresh_state(D, 0.7))
        moved.append(q.flat - p.flat)
    b = p.copy()
    st2 = [np.stack([a, a]) for a in fresh_state(D, 0.7)]
    rnnlm_train_shards(X, Y, np.array([10, 10]), 10, b.flat, np.stack([p.flat, p.flat]), N, M, 3, 0,
                       make_net(ci.word_class, ci.class_starts, 1, False, 0, 0.7, DORDER),
                       make_train(0.2, 0.0, 0.0, block, True, 1, 0.0, 0.0, 0), Stream(*st2), np.zeros((2, 10)))
    both = (moved[0] != 0) & (moved[1] != 0)
    want = np.where(both, p.flat + (moved[0] + moved[1]) / 2, p.flat + moved[0] + moved[1])
    assert both.any() and (~both & ((moved[0] != 0) | (moved[1] != 0))).any()
    np.testing.assert_allclose(b.flat, want, rtol=1e-12, atol=1e-14)


def test_dropout_draws_match_the_reference_and_the_rate():
    """The kernels' counter-based masks are the reference's, drop a fraction p of units, and scale
    the kept ones by 1 / (1 - p); the output mask is a different draw from the input mask."""
    M_ = 4000
    for p in (0.1, 0.5):
        want = ref.dropout_factors(99, 12345, M_, p)
        got = np.array([KS._dropout_factor(99, 12345, j, p) for j in range(M_)])
        np.testing.assert_array_equal(got, want)
        assert abs((got == 0).mean() - p) < 0.03
        np.testing.assert_allclose(got[got != 0], 1.0 / (1.0 - p))
        out = ref.dropout_factors(99, 12345, M_, p, 2 ** 32)
        assert (out != want).mean() > 0.1
        assert (ref.dropout_factors(99, 12346, M_, p) != want).mean() > 0.1


def test_shards_with_dropout_one_shard_is_the_stream_kernel():
    p = tiny_model(N, M, 3, "sigmoid", seed=5)
    q = p.copy()
    ci = tiny_classes(N, 3)
    x, y = stream(23, 6)
    D, block = 6, 4
    _, lp = run(p, ci, x, y, "sigmoid", 0.3, 0.0, D, block, False, fresh_state(D, 0.7), drop_in=0.2,
                drop_out=0.3, drop_seed=7)
    st2 = [a[None].copy() for a in fresh_state(D, 0.7)]
    logp = np.zeros((1, len(x)))
    rnnlm_train_shards(x[None], y[None], np.array([len(x)]), 5, q.flat, q.flat[None].copy(), N, M, 3, 0,
                       make_net(ci.word_class, ci.class_starts, 0, False, 0, 0.7, DORDER),
                       make_train(0.3, 0.0, 0.0, block, True, 1, 0.2, 0.3, 7), Stream(*st2), logp)
    np.testing.assert_array_equal(q.flat, p.flat)
    np.testing.assert_array_equal(logp[0], lp)


def test_merge_kernel_rule_exactly_on_a_range():
    """merge_pieces on float32 replicas of 3 shards, over ranges that are not a whole number of its
    blocks: one change -> that shard's value (bit for bit), several -> base + mean of the changes
    (float64 arithmetic), none -> base; every replica gets the merged value; outside the range
    nothing moves."""
    rng = np.random.default_rng(4)
    P, T = 3 * KS.MERGE_BLOCK + 77, 3
    base = rng.standard_normal(P).astype(np.float32)
    reps = np.tile(base, (T, 1))
    for t in range(T):
        m = rng.random(P) < 0.4
        reps[t, m] += (rng.standard_normal(m.sum()) * 0.01).astype(np.float32)
    i0, i1 = 5, P - 3
    b, r = base.copy(), reps.copy()
    KS.merge_pieces(np.array([[i0, 700], [700, i1]], np.int64), 0, 2, b, r)
    d = reps.astype(np.float64) - base.astype(np.float64)
    k = (reps != base).sum(0)
    only = np.where(k == 1, reps[np.argmax(reps != base, axis=0), np.arange(P)], base)
    mean = (base + np.where(k > 1, d.sum(0) / np.maximum(k, 1), 0.0)).astype(np.float32)
    want = np.where(k == 1, only, np.where(k > 1, mean, base))
    assert (k[i0:i1] == 0).any() and (k[i0:i1] == 1).any() and (k[i0:i1] > 1).any()
    np.testing.assert_array_equal(b[i0:i1], want[i0:i1])
    np.testing.assert_array_equal(b[:i0], base[:i0])
    np.testing.assert_array_equal(b[i1:], base[i1:])
    for t in range(T):
        np.testing.assert_array_equal(r[t, i0:i1], want[i0:i1])
        np.testing.assert_array_equal(r[t, :i0], reps[t, :i0])


@pytest.mark.parametrize("indep,drop", [(False, 0.0), (True, 0.3)])
def test_shards_merge_only_changeable_weights_same_bits(indep, drop, monkeypatch):
    """The merge after each round skips the embedding rows of words no shard could have used (not in
    any history or input of the round). Training ends with the very bits of merging every weight,
    and every replica equals the merged weights (no changed weight was skipped)."""
    from rnnlm.training import threads as TH
    Nb, C, D, block, sync = 60, 4, 5, 3, 7
    p = tiny_model(Nb, M, C, "sigmoid", seed=3)
    ci = tiny_classes(Nb, C)
    rng = np.random.default_rng(5)
    lens = np.array([30, 30, 26])
    X = rng.integers(0, Nb, (3, 30)).astype(np.int32)
    X[:, [0, 9, 17]] = 0
    Y = np.concatenate([X[:, 1:], rng.integers(0, Nb, (3, 1))], axis=1).astype(np.int32)
    real = TH._changeable
    sizes = []

    def spy(X_, lens_, HIST, a, sync_, N_, M_, P):
        out = real(X_, lens_, HIST, a, sync_, N_, M_, P)
        emb = out[out[:, 0] < N_ * M_]
        sizes.append(int((np.minimum(emb[:, 1], N_ * M_) - emb[:, 0]).sum()) // M_)   # rows merged
        return out

    def everything(X_, lens_, HIST, a, sync_, N_, M_, P):
        return np.array([[0, P]], np.int64)

    results = []
    for fn in (spy, everything):
        monkeypatch.setattr(TH, "_changeable", fn)
        b = p.copy()
        reps = np.stack([p.flat] * 3)
        st = [np.stack([v] * 3) for v in fresh_state(D, 0.7)]
        logp = np.zeros((3, 30))
        rnnlm_train_shards(X, Y, lens, sync, b.flat, reps, Nb, M, C, 0,
                           make_net(ci.word_class, ci.class_starts, 0, indep, 0, 0.7, DORDER),
                           make_train(0.3, 1e-3, 0.0, block, True, 1, drop, drop, 7), Stream(*st), logp)
        assert (reps == b.flat).all(), "every replica holds the merged weights"
        results.append(b.flat.tobytes() + logp.tobytes())
    assert results[0] == results[1]
    assert len(sizes) == 5 and 0 < min(sizes) and max(sizes) < Nb, "each round merged some rows, skipped others"
