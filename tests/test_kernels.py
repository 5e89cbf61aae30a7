"""Kernels against the NumPy reference of the seed equations, and central-difference gradient checks."""
import itertools
import os

import numpy as np
import pytest

import reference as ref
from rnnlm.kernels.bundles import make_net
from rnnlm.model.layout import grads, weights
from rnnlm.training.batch_step import BatchStepper
from rnnlm import kernels as K
from tiny import ACT, tiny_classes, tiny_model, tiny_window

N, M = 11, 4
DIRECT, DORDER = 40, 3   # a tiny direct-connection table: hashes collide and wrap
CONFIGS = [
    dict(act=a, C=c, T=t, B=b, cost=cost, indep=ind, direct=0)
    for a, c, t, b, cost, ind in itertools.product(
        ["sigmoid", "tanh", "relu"], [0, 3], [1, 2, 5], [1, 3], ["ce", "sse"], [False, True])
    if not (cost == "sse" and c > 0)
] + [
    dict(act=a, C=c, T=t, B=b, cost=cost, indep=ind, direct=DIRECT)
    for a, c, t, b, cost, ind in itertools.product(
        ["sigmoid", "tanh", "relu"], [0, 3], [1, 5], [1, 3], ["ce", "sse"], [False, True])
    if not (cost == "sse" and (c > 0 or t == 1))
]


def cid(c):
    return (f"{c['act']}-C{c['C']}-T{c['T']}-B{c['B']}-{c['cost']}{'-indep' if c['indep'] else ''}"
            f"{'-direct' if c['direct'] else ''}")


def setup(c, seed=0):
    p = tiny_model(N, M, c["C"], c["act"], seed=seed, direct=c["direct"], dorder=DORDER)
    ci = tiny_classes(N, c["C"])
    x, y = tiny_window(N, c["T"], c["B"], seed=seed + 1)
    h0 = np.random.default_rng(seed + 2).uniform(0, 1, (c["B"], M))
    st = BatchStepper(p, ci, ACT[c["act"]], 0 if c["cost"] == "ce" else 1, c["indep"], 0, 0.7)
    ng0 = np.random.default_rng(seed + 3).integers(0, N, (c["B"], DORDER - 1)).astype(np.int32)
    return p, ci, x, y, h0, st, ng0


def ref_window(p, ci, x, y, h0, c, ng0):
    return ref.window(ref.from_kernel_layout(p), x, y, h0, act=c["act"], cost=c["cost"],
                      classes=ci.word_class if c["C"] else None, class_starts=ci.class_starts,
                      independent=c["indep"], eos=0, h_init=0.7, dorder=DORDER, ng0=ng0)


@pytest.mark.parametrize("c", CONFIGS, ids=cid)
def test_window_matches_reference(c):
    p, ci, x, y, h0, st, ng0 = setup(c)
    loss, h_out, ng_out = st.gradient(x, y, h0, ng0)
    rloss, D = ref_window(p, ci, x, y, h0, c, ng0)
    assert loss == pytest.approx(rloss, rel=1e-10)
    g = st.g
    pairs = [(g.emb.T, D["V"]), (g.rec, D["U"]), (g.bh, D["th_j"]), (g.out_w, D["W"]), (g.bo, D["th_k"])]
    if c["C"]:
        pairs += [(g.cls_w, D["Wc"]), (g.bc, D["th_c"])]
    if c["direct"]:
        pairs += [(g.direct, D["dir"])]
        assert np.abs(D["dir"]).max() > 1e-3
    for mine, theirs in pairs:  # kernel gradients are -Delta
        np.testing.assert_allclose(mine, -theirs, rtol=1e-10, atol=1e-13)
    # final state is the state after the last step
    logp = np.empty(x.shape)
    h2 = np.empty_like(h0)
    ng2 = np.empty_like(ng0)
    K.window_logprob(x, y, h0, ng0, weights(p), make_net(ci.word_class, ci.class_starts, ACT[c["act"]], c["indep"],
                                                          0, 0.7, DORDER), logp, h2, ng2)
    np.testing.assert_array_equal(h_out, h2)
    np.testing.assert_array_equal(ng_out, ng2)
    want = ref.histories(x, ng0, DORDER, c["indep"], 0)[-1]
    np.testing.assert_array_equal(ng_out, np.array(want))
    if c["cost"] == "ce":
        assert -logp.sum() == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("C", [0, 3])
def test_update_matches_reference(beta, C):
    c = dict(act="sigmoid", C=C, T=5, B=3, cost="ce", indep=False, direct=DIRECT)
    p, ci, x, y, h0, st, ng0 = setup(c)
    P0 = ref.from_kernel_layout(p)
    _, D = ref_window(p, ci, x, y, h0, c, ng0)
    st.gradient(x, y, h0, ng0)
    st.apply(x, y, lr=0.2, beta=beta, clip=0.0, scale=1 / 3)
    touched = {"V": np.zeros(P0["V"].shape, bool)}
    touched["V"][:, np.unique(x)] = True
    if C:
        rows = st.touched_out_rows(y)
        touched["W"] = np.zeros(P0["W"].shape, bool); touched["W"][rows] = True
        touched["th_k"] = np.zeros(P0["th_k"].shape, bool); touched["th_k"][rows] = True
    touched["dir"] = D["dir"] != 0      # L2 on the direct features the window used
    P1 = ref.sgd(P0, D, 0.2, beta, scale=1 / 3, touched=touched)
    got = ref.from_kernel_layout(p)
    for k in P1:
        np.testing.assert_allclose(got[k], P1[k], rtol=1e-10, atol=1e-13, err_msg=k)
    assert not st.g.flat.any(), "gradient cleared after the update"


def test_clipping_bounds_update_norm():
    c = dict(act="tanh", C=0, T=5, B=2, cost="ce", indep=False, direct=DIRECT)
    p, ci, x, y, h0, st, ng0 = setup(c)
    before = p.flat.copy()
    st.gradient(x, y, h0, ng0)
    norm = st.apply(x, y, lr=1.0, beta=0.0, clip=0.01, scale=1.0)
    assert norm > 0.01
    assert np.linalg.norm(p.flat - before) == pytest.approx(0.01, rel=1e-9)


def central(p, loss, eps):
    """d loss / d p.flat[i] for every i by central differences of step eps."""
    out = np.zeros(p.flat.size)
    for i in range(p.flat.size):
        old = p.flat[i]
        p.flat[i] = old + eps; lp = loss()
        p.flat[i] = old - eps; lm = loss()
        p.flat[i] = old
        out[i] = (lp - lm) / (2 * eps)
    return out


@pytest.mark.parametrize("c", CONFIGS, ids=cid)
def test_gradient_central_differences(c):
    p, ci, x, y, h0, st, ng0 = setup(c, seed=3)
    st.gradient(x, y, h0, ng0)
    analytic = st.g.flat.copy()

    def loss():
        g = p.zeros_like()
        return K.window_grad(x, y, h0, ng0, weights(p), make_net(ci.word_class, ci.class_starts, ACT[c["act"]],
                                                                 c["indep"], 0, 0.7, DORDER),
                             0 if c["cost"] == "ce" else 1, grads(g), np.empty_like(h0), np.empty_like(ng0),
                             np.empty(0))

    numeric = central(p, loss, 1e-4)   # truncation O(eps^2) and rounding O(1e-16 / eps) both ~1e-11 here
    for name in p.names:
        a, b = p.offsets[name]
        if a == b:
            continue
        ga, gn = analytic[a:b], numeric[a:b]
        rel = np.abs(ga - gn) / np.maximum(np.abs(ga) + np.abs(gn), 1e-6)
        assert rel.max() < 1e-6, f"{name}: max rel err {rel.max():.2e}, mean {rel.mean():.2e}"


TIED = [c for c in CONFIGS if c["cost"] == "ce" and c["B"] == 3 and c["T"] in (1, 5)]


@pytest.mark.parametrize("c", TIED, ids=cid)
def test_tied_gradient_central_differences(c):
    """Weight tying: the window kernel handed emb as out_w and one gradient array for both adds both
    paths' gradients into it, and that sum is the derivative of the loss (central differences in
    float64 over the stored weights, the tied matrix once)."""
    p = tiny_model(N, M, c["C"], c["act"], seed=3, direct=c["direct"], dorder=DORDER, tie=True)
    ci = tiny_classes(N, c["C"])
    x, y = tiny_window(N, c["T"], c["B"], seed=4)
    h0 = np.random.default_rng(5).uniform(0, 1, (c["B"], M))
    ng0 = np.random.default_rng(6).integers(0, N, (c["B"], DORDER - 1)).astype(np.int32)
    net = make_net(ci.word_class, ci.class_starts, ACT[c["act"]], c["indep"], 0, 0.7, DORDER)

    def loss(g=None):
        g = p.zeros_like() if g is None else g
        return K.window_grad(x, y, h0, ng0, weights(p), net, 0, grads(g), np.empty_like(h0), np.empty_like(ng0),
                             np.empty(0))

    g = p.zeros_like()
    assert g.out_w is g.emb
    loss(g)
    analytic = g.flat.copy()

    # a tied weight feeds both the hidden and the output layer, so the loss curves more along it:
    # Richardson's extrapolation removes the eps^2 term of the central difference
    numeric = (4 * central(p, loss, 5e-5) - central(p, loss, 1e-4)) / 3
    rel = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-6)
    assert rel.max() < 1e-6, f"max rel err {rel.max():.2e}"
    a, b = p.offsets["emb"]
    assert np.abs(numeric[a:b]).max() > 1e-3


@pytest.mark.parametrize("C,indep,direct", [(0, False, 0), (3, True, 0), (3, False, 0), (0, False, DIRECT),
                                            (3, True, DIRECT)])
def test_step_distribution_sums_to_one_and_matches_window(C, indep, direct):
    from rnnlm.use.sample import Stepper
    p = tiny_model(N, M, C, "tanh", seed=4, direct=direct, dorder=DORDER)
    ci = tiny_classes(N, C)
    cfg = p.cfg
    x, y = tiny_window(N, 7, 1, seed=9)
    y[:-1, 0] = x[1:, 0]
    st = Stepper(cfg, p, ci, eos=0, independent=indep)
    got = []
    for t in range(7):
        probs = st.feed(x[t, 0])
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        got.append(np.log(probs[y[t, 0]]))
    logp = np.empty((7, 1))
    h0 = np.full((1, M), cfg.init_hidden)
    ng0 = np.zeros((1, DORDER - 1), np.int32)
    K.window_logprob(x, y, h0, ng0, weights(p), make_net(ci.word_class, ci.class_starts, 1, indep, 0,
                                                          cfg.reset_hidden, DORDER),
                     logp, np.empty_like(h0), np.empty_like(ng0))
    np.testing.assert_allclose(got, logp[:, 0], rtol=1e-12)


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK") != "1", reason="runs only under NUMBA_BOUNDSCHECK=1 (CI)")
def test_boundscheck_is_active():
    """Proves the bounds-checked run really checks: an out-of-range word id must raise."""
    p = tiny_model(N, M, 3, "sigmoid")
    ci = tiny_classes(N, 3)
    x, y = tiny_window(N, 3, 2)
    x[2, 1] = N
    h0 = np.zeros((2, M))
    ng0 = np.zeros((2, 2), np.int32)
    with pytest.raises(IndexError):
        K.window_logprob(x, y, h0, ng0, weights(p), make_net(ci.word_class, ci.class_starts, 0, False, 0, 1.0, 3),
                         np.empty((3, 2)), np.empty_like(h0), np.empty_like(ng0))
