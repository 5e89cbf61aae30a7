"""Kernels against the NumPy reference of the seed equations, and central-difference gradient checks."""
import itertools
import os

import numpy as np
import pytest

import reference as ref
from rnnlm.step import BatchStepper, param_args
from rnnlm import kernels as K
from tiny import ACT, tiny_classes, tiny_model, tiny_window

N, M = 11, 4
CONFIGS = [
    dict(act=a, C=c, T=t, B=b, cost=cost, indep=ind)
    for a, c, t, b, cost, ind in itertools.product(
        ["sigmoid", "tanh", "relu"], [0, 3], [1, 2, 5], [1, 3], ["ce", "sse"], [False, True])
    if not (cost == "sse" and c > 0)
]


def cid(c):
    return f"{c['act']}-C{c['C']}-T{c['T']}-B{c['B']}-{c['cost']}{'-indep' if c['indep'] else ''}"


def setup(c, seed=0):
    p = tiny_model(N, M, c["C"], c["act"], seed=seed)
    ci = tiny_classes(N, c["C"])
    x, y = tiny_window(N, c["T"], c["B"], seed=seed + 1)
    h0 = np.random.default_rng(seed + 2).uniform(0, 1, (c["B"], M))
    st = BatchStepper(p, ci, ACT[c["act"]], 0 if c["cost"] == "ce" else 1, c["indep"], 0, 0.7)
    return p, ci, x, y, h0, st


def ref_window(p, ci, x, y, h0, c):
    return ref.window(ref.from_kernel_layout(p), x, y, h0, act=c["act"], cost=c["cost"],
                      classes=ci.word_class if c["C"] else None, class_starts=ci.class_starts,
                      independent=c["indep"], eos=0, h_init=0.7)


@pytest.mark.parametrize("c", CONFIGS, ids=cid)
def test_window_matches_reference(c):
    p, ci, x, y, h0, st = setup(c)
    loss, h_out = st.gradient(x, y, h0)
    rloss, D = ref_window(p, ci, x, y, h0, c)
    assert loss == pytest.approx(rloss, rel=1e-10)
    g = st.g
    pairs = [(g.emb.T, D["V"]), (g.rec, D["U"]), (g.bh, D["th_j"]), (g.out_w, D["W"]), (g.bo, D["th_k"])]
    if c["C"]:
        pairs += [(g.cls_w, D["Wc"]), (g.bc, D["th_c"])]
    for mine, theirs in pairs:  # kernel gradients are -Delta
        np.testing.assert_allclose(mine, -theirs, rtol=1e-10, atol=1e-13)
    # final state is the state after the last step
    logp = np.empty(x.shape)
    h2 = np.empty_like(h0)
    K.window_logprob(x, y, h0, *param_args(p), ci.word_class, ci.class_starts, ACT[c["act"]],
                     c["indep"], 0, 0.7, logp, h2)
    np.testing.assert_array_equal(h_out, h2)
    if c["cost"] == "ce":
        assert -logp.sum() == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("C", [0, 3])
def test_update_matches_reference(beta, C):
    c = dict(act="sigmoid", C=C, T=5, B=3, cost="ce", indep=False)
    p, ci, x, y, h0, st = setup(c)
    P0 = ref.from_kernel_layout(p)
    _, D = ref_window(p, ci, x, y, h0, c)
    st.gradient(x, y, h0)
    st.apply(x, y, lr=0.2, beta=beta, clip=0.0, scale=1 / 3)
    touched = {"V": np.zeros(P0["V"].shape, bool)}
    touched["V"][:, np.unique(x)] = True
    if C:
        rows = st.touched_out_rows(y)
        touched["W"] = np.zeros(P0["W"].shape, bool); touched["W"][rows] = True
        touched["th_k"] = np.zeros(P0["th_k"].shape, bool); touched["th_k"][rows] = True
    P1 = ref.sgd(P0, D, 0.2, beta, scale=1 / 3, touched=touched)
    got = ref.from_kernel_layout(p)
    for k in P1:
        np.testing.assert_allclose(got[k], P1[k], rtol=1e-10, atol=1e-13, err_msg=k)
    assert not st.g.flat.any(), "gradient cleared after the update"


def test_clipping_bounds_update_norm():
    c = dict(act="tanh", C=0, T=5, B=2, cost="ce", indep=False)
    p, ci, x, y, h0, st = setup(c)
    before = p.flat.copy()
    st.gradient(x, y, h0)
    norm = st.apply(x, y, lr=1.0, beta=0.0, clip=0.01, scale=1.0)
    assert norm > 0.01
    assert np.linalg.norm(p.flat - before) == pytest.approx(0.01, rel=1e-9)


@pytest.mark.parametrize("c", CONFIGS, ids=cid)
def test_gradient_central_differences(c):
    p, ci, x, y, h0, st = setup(c, seed=3)
    st.gradient(x, y, h0)
    analytic = st.g.flat.copy()

    def loss():
        g = p.zeros_like()
        return K.window_grad(x, y, h0, *param_args(p), ci.word_class, ci.class_starts, ACT[c["act"]],
                             0 if c["cost"] == "ce" else 1, c["indep"], 0, 0.7,
                             g.emb, g.rec, g.bh, g.out_w, g.bo, g.cls_w, g.bc, np.empty_like(h0))

    eps = 1e-4  # truncation O(eps^2) and rounding O(1e-16 / eps) errors both ~1e-11 here
    numeric = np.zeros_like(analytic)
    for i in range(p.flat.size):
        old = p.flat[i]
        p.flat[i] = old + eps; lp = loss()
        p.flat[i] = old - eps; lm = loss()
        p.flat[i] = old
        numeric[i] = (lp - lm) / (2 * eps)
    for name in p.names:
        a, b = p.offsets[name]
        if a == b:
            continue
        ga, gn = analytic[a:b], numeric[a:b]
        rel = np.abs(ga - gn) / np.maximum(np.abs(ga) + np.abs(gn), 1e-6)
        assert rel.max() < 1e-6, f"{name}: max rel err {rel.max():.2e}, mean {rel.mean():.2e}"


@pytest.mark.parametrize("C,indep", [(0, False), (3, True), (3, False)])
def test_step_distribution_sums_to_one_and_matches_window(C, indep):
    from rnnlm.generate import Stepper
    from rnnlm.config import ModelConfig
    p = tiny_model(N, M, C, "tanh", seed=4)
    ci = tiny_classes(N, C)
    cfg = ModelConfig(vocab_size=N, hidden=M, classes=C, activation="tanh", dtype="float64")
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
    K.window_logprob(x, y, h0, *param_args(p), ci.word_class, ci.class_starts, 1, indep, 0,
                     cfg.reset_hidden, logp, np.empty_like(h0))
    np.testing.assert_allclose(got, logp[:, 0], rtol=1e-12)


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK") != "1", reason="runs only under NUMBA_BOUNDSCHECK=1 (CI)")
def test_boundscheck_is_active():
    """Proves the bounds-checked run really checks: an out-of-range word id must raise."""
    p = tiny_model(N, M, 3, "sigmoid")
    ci = tiny_classes(N, 3)
    x, y = tiny_window(N, 3, 2)
    x[2, 1] = N
    h0 = np.zeros((2, M))
    with pytest.raises(IndexError):
        K.window_logprob(x, y, h0, *param_args(p), ci.word_class, ci.class_starts, 0, False, 0, 1.0,
                         np.empty((3, 2)), np.empty_like(h0))
