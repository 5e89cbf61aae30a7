"""Hierarchical softmax (--softmax hs): the Huffman tree, the kernels against the NumPy reference and
central differences (both schedules), and the command line end to end."""
import itertools

import numpy as np
import pytest

import reference as ref
from rnnlm.model.config import ModelConfig
from rnnlm.errors import RnnlmError
from rnnlm.model.huffman import build_tree
from rnnlm.kernels import hsoftmax as KH
from rnnlm.kernels.bundles import Stream, Tree, make_net, make_train
from rnnlm.model.layout import grads, weights
from rnnlm.model.file import Params
from tiny import ACT, tiny_window

N, M = 11, 4
COUNTS = np.array([40, 17, 9, 9, 6, 5, 5, 3, 2, 1, 1])


def hs_net(act, indep, h_init=0.7):
    """The kernels' Net of the tiny tree models (no classes, no direct connections; eos 0)."""
    return make_net(np.zeros(N, np.int32), np.array([0, N], np.int32), ACT[act], indep, 0, h_init, 0)


def hs_model(act="sigmoid", seed=0, N=N, M=M):
    cfg = ModelConfig(vocab_size=N, hidden=M, classes=0, softmax="hs", activation=act, dtype="float64",
                      init_scale=0.5)
    rng = np.random.default_rng(seed)
    p = Params.init(cfg, rng)
    for name in ("bh", "bo"):
        blk = p.block(name)
        blk[...] = rng.uniform(-0.3, 0.3, blk.shape)
    return p


TREE = build_tree(COUNTS)


# ----------------------------------------------------------------------------- the tree

def test_huffman_tree_is_a_prefix_code_with_probabilities_summing_to_one():
    rng = np.random.default_rng(0)
    for counts in (COUNTS, [0, 0], [3, 3, 3, 3, 3], rng.integers(0, 50, 200), rng.zipf(1.5, 1000)):
        t = build_tree(counts)
        V = len(counts)
        codes = sorted("".join(map(str, t.path(w)[1])) for w in range(V))
        assert all(not b.startswith(a) for a, b in zip(codes, codes[1:]))          # a prefix code
        assert sum(2.0 ** -len(c) for c in codes) == pytest.approx(1.0, abs=1e-12)   # a full tree
        assert sorted(set(t.node.tolist())) == list(range(V - 1))                    # every node used
        assert (t.path(0)[0][:1] == V - 2).all()                                     # the root first
        c, d = np.asarray(counts), np.diff(t.start)
        assert not ((c[:, None] > c[None, :]) & (d[:, None] > d[None, :])).any()     # Huffman: no
        # more frequent word sits deeper
        # probabilities of all words sum to 1 for random weights
        p = hs_model(N=V, seed=V)
        s = np.random.default_rng(1).uniform(-1, 1, M)
        probs = np.empty(V)
        KH.hs_distribution(s, weights(p), Tree(*t.kernel_args()), -1, probs)
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        if V <= 200:
            np.testing.assert_allclose(probs, ref.hs_distribution(ref.from_kernel_layout(p), s,
                                                                  t.kernel_args()), rtol=1e-12)
        assert KH.hs_distribution(s, weights(p), Tree(*t.kernel_args()), V - 1, probs[:0]) == \
            pytest.approx(probs[V - 1], rel=1e-12)


def test_huffman_tree_is_deterministic_with_ties_by_id():
    t = build_tree([5, 3, 3, 1, 0, 7])
    assert [t.path(w)[1].tolist() for w in range(6)] == [[1, 0], [0, 1, 1], [0, 0], [0, 1, 0, 1],
                                                          [0, 1, 0, 0], [1, 1]]
    a, b = build_tree(COUNTS), build_tree(COUNTS.copy())
    assert a.fingerprint() == b.fingerprint()
    with pytest.raises(RnnlmError):
        build_tree([4])
    with pytest.raises(RnnlmError):
        build_tree([4, -1, 2])


# ----------------------------------------------------------------------------- batch schedule

CASES = list(itertools.product(["sigmoid", "tanh", "relu"], [False, True]))


def batch_grad(p, x, y, h0, act, indep, upd=np.empty(0)):
    g = p.zeros_like()
    h_out = np.empty_like(h0)
    loss = KH.hs_windows_grad(x[None], y[None], h0, weights(p), Tree(*TREE.kernel_args()), hs_net(act, indep),
                              grads(g), h_out, upd)
    return loss, g, h_out


@pytest.mark.parametrize("act,indep", CASES)
def test_batch_window_matches_reference_and_central_differences(act, indep):
    p = hs_model(act, seed=3)
    x, y = tiny_window(N, 5, 3, seed=4)
    h0 = np.random.default_rng(5).uniform(0, 1, (3, M))
    loss, g, h_out = batch_grad(p, x, y, h0, act, indep)
    rloss, D = ref.window(ref.from_kernel_layout(p), x, y, h0, act=act, independent=indep, eos=0, h_init=0.7,
                          tree=TREE.kernel_args())
    assert loss == pytest.approx(rloss, rel=1e-10)
    for a, b in ((g.emb.T, D["V"]), (g.rec, D["U"]), (g.bh, D["th_j"]), (g.out_w, D["W"]), (g.bo, D["th_k"])):
        np.testing.assert_allclose(a, -b, rtol=1e-10, atol=1e-12)
    logp = np.empty(x.shape)
    h2 = np.empty_like(h0)
    KH.hs_window_logprob(x, y, h0, weights(p), Tree(*TREE.kernel_args()), hs_net(act, indep), logp, h2)
    assert -logp.sum() == pytest.approx(loss, rel=1e-12)
    np.testing.assert_array_equal(h2, h_out)
    eps = 1e-5
    numeric = np.zeros(p.flat.size)
    for i in range(p.flat.size):
        old = p.flat[i]
        p.flat[i] = old + eps
        lp = batch_grad(p, x, y, h0, act, indep)[0]
        p.flat[i] = old - eps
        lm = batch_grad(p, x, y, h0, act, indep)[0]
        p.flat[i] = old
        numeric[i] = (lp - lm) / (2 * eps)
    rel = np.abs(g.flat - numeric) / np.maximum(np.abs(g.flat) + np.abs(numeric), 1e-6)
    assert rel.max() < 1e-6
    assert np.abs(numeric).max() > 1e-2


@pytest.mark.parametrize("bias,clip", [(True, 0.0), (False, 0.0), (True, 0.05)])
def test_batch_step_is_the_optimisers_update(bias, clip):
    """The kernel's own SGD step: p -= lr * (scale * g + beta * p) on the touched weights (the path
    nodes, the input words' embedding rows, U, the biases), clipped to the global norm."""
    p = hs_model("tanh", seed=6)
    x, y = tiny_window(N, 4, 2, seed=7)
    h0 = np.full((2, M), 0.7)
    _, g, _ = batch_grad(p, x, y, h0, "tanh", False)
    lr, scale, beta = 0.3, 0.5, 0.01
    touched = p.zeros_like()
    touched.emb[np.unique(x)] = 1
    touched.rec[...] = 1
    used = np.unique(np.concatenate([TREE.path(w)[0] for w in y.ravel()]))
    touched.out_w[used] = 1
    if bias:
        touched.bh[...] = 1
        touched.bo[used] = 1
    gm = g.flat * touched.flat
    sc = scale
    if clip:
        nrm = np.linalg.norm(gm) * scale
        assert nrm > clip
        sc = scale * clip / nrm
    expect = p.flat - lr * (sc * gm + beta * p.flat * touched.flat)
    q = p.copy()
    _, g2, _ = batch_grad(q, x, y, h0, "tanh", False, np.array([lr, scale, beta, float(bias), clip]))
    np.testing.assert_allclose(q.flat, expect, rtol=1e-12, atol=1e-15)
    assert not g2.flat.any()
    if clip:
        assert np.linalg.norm(q.flat - p.flat + lr * beta * p.flat * touched.flat) == pytest.approx(lr * clip)


# ----------------------------------------------------------------------------- per-word schedule

DORDER = 3


def stream(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N, n).astype(np.int32)
    y[[i for i in (4, 11, 12) if i < n]] = 0
    x = np.concatenate([[0], y[:-1]]).astype(np.int32)
    return x, y


def fresh_state(D, h_init=0.7):
    return (np.full(M, h_init), np.full(D + 1, -1, np.int32), np.zeros((D + 1, M)), np.zeros((D + 1, M)),
            np.zeros(2, np.int64))


def run(p, x, y, act, lr, beta, D, block, indep, state, use_bias=True, l2_every=1, drop_in=0.0, drop_out=0.0,
        drop_seed=0, clip=0.0):
    logp = np.empty(len(x))
    h, hist, hs, err, istate = state
    loss = KH.hs_train_stream(x, y, weights(p), Tree(*TREE.kernel_args()), hs_net(act, indep),
                              make_train(lr, beta, clip, block, use_bias, l2_every, drop_in, drop_out, drop_seed),
                              Stream(h, hist, hs, err, np.zeros(2, np.int32), istate), logp)
    return loss, logp


@pytest.mark.parametrize("act,indep,v", [
    ("sigmoid", False, dict()), ("tanh", True, dict(use_bias=False, l2_every=3)),
    ("relu", False, dict(drop_in=0.3, drop_out=0.4, drop_seed=17)), ("sigmoid", True, dict(l2_every=3))])
def test_per_word_schedule_matches_reference(act, indep, v):
    p = hs_model(act, seed=5)
    x, y = stream(23, 6)
    P0 = ref.from_kernel_layout(p)
    D, block, beta = 6, 4, 0.05
    st = fresh_state(D)
    _, lp1 = run(p, x[:9], y[:9], act, 0.3, beta, D, block, indep, st, **v)   # split mid-block
    _, lp2 = run(p, x[9:], y[9:], act, 0.3, beta, D, block, indep, st, **v)
    P1, rlogp = ref.rnnlm_schedule(P0, x, y, D, block, 0.3, beta, act, None, None, indep, 0, 0.7, DORDER,
                                   tree=TREE.kernel_args(), **v)
    np.testing.assert_allclose(np.concatenate([lp1, lp2]), rlogp, rtol=1e-10)
    got = ref.from_kernel_layout(p)
    for k in ("V", "U", "th_j", "W", "th_k"):
        np.testing.assert_allclose(got[k], P1[k], rtol=1e-10, atol=1e-13, err_msg=k)
    if not v.get("use_bias", True):
        for k in ("th_j", "th_k"):
            np.testing.assert_array_equal(got[k], P0[k])


@pytest.mark.parametrize("act,drop", [("sigmoid", (0.0, 0.0)), ("tanh", (0.3, 0.4)), ("relu", (0.0, 0.0))])
def test_per_word_sweep_is_gradient_of_truncated_objective(act, drop):
    """As tests/test_rnnlm_schedule.py: block 1 with lr 0, block 2 with lr = +-eps; d(params)/d(lr)
    at 0 is minus the gradient of block 2's loss with the state D steps back held constant."""
    D, block = 6, 5
    x, y = stream(2 * block, 7)
    p = hs_model(act, seed=8)
    st = fresh_state(D)
    dk = dict(drop_in=drop[0], drop_out=drop[1], drop_seed=23)
    run(p, x[:block], y[:block], act, 0.0, 0.0, D, block, False, st, **dk)
    eps = 1e-6
    moved = []
    for lr in (eps, -eps):
        q = p.copy()
        s2 = tuple(a.copy() for a in st)
        run(q, x[block:], y[block:], act, lr, 0.0, D, block, False, s2, **dk)
        moved.append(q.flat.copy())
    dparams = (moved[0] - moved[1]) / (2 * eps)
    P = ref.from_kernel_layout(p)
    t_e = 2 * block - 1
    lo = t_e - D + 1
    h = np.full(M, 0.7)
    mi = np.array([ref.dropout_factors(23, t, M, drop[0]) for t in range(2 * block)])
    mo = np.array([ref.dropout_factors(23, t, M, drop[1], 2 ** 32) for t in range(2 * block)])
    for t in range(lo):
        h = ref.f(P["V"][:, x[t]] * mi[t] + P["U"] @ h + P["th_j"], act)
    xs, ys = x[lo:].reshape(-1, 1), y[lo:].reshape(-1, 1)
    mask = np.zeros((D, 1), bool)
    mask[-block:] = True
    kw = dict(act=act, mask=mask, drop_in=mi[lo:, None], drop_out=mo[lo:, None], tree=TREE.kernel_args())

    def cost(flat):
        q = p.copy()
        q.flat[:] = flat
        return ref.window_cost(ref.from_kernel_layout(q), xs, ys, h[None, :], **kw)

    h_eps = 1e-5
    numeric = np.zeros_like(p.flat)
    for i in range(p.flat.size):
        e = np.zeros_like(p.flat)
        e[i] = h_eps
        numeric[i] = (cost(p.flat + e) - cost(p.flat - e)) / (2 * h_eps)
    np.testing.assert_allclose(dparams, -numeric, rtol=1e-5, atol=1e-8)
    assert np.abs(numeric).max() > 1e-3


def test_shards_one_shard_is_the_stream_kernel_and_two_are_deterministic():
    """The threaded per-word schedule (rnnlm.training.threads.rnnlm_train_shards) with the tree: one shard
    gives exactly hs_train_stream; two shards, run twice, the same bits, and every merged weight
    is one a shard changed."""
    from rnnlm.training.threads import rnnlm_train_shards
    x, y = stream(40, 9)
    D, block = 6, 4

    def shards(q, X, Y, lens, sync):
        T = X.shape[0]
        st = [np.stack([a] * T) for a in fresh_state(D)]
        ng = np.zeros((T, 2), np.int32)
        logp = np.zeros(X.shape)
        reps = np.stack([q.flat] * T)
        rnnlm_train_shards(X, Y, lens, sync, q.flat, reps, N, M, 0, 0,
                           make_net(np.zeros(N, np.int32), np.array([0, N], np.int32), 0, False, 0, 0.7, DORDER),
                           make_train(0.3, 0.05, 0.0, block, True, 3, 0.0, 0.0, 0),
                           Stream(st[0], st[1], st[2], st[3], ng, st[4]), logp, tree=Tree(*TREE.kernel_args()))
        return logp

    p = hs_model("sigmoid", seed=5)
    q = p.copy()
    _, lp = run(p, x, y, "sigmoid", 0.3, 0.05, D, block, False, fresh_state(D), l2_every=3)
    logp = shards(q, x[None], y[None], np.array([len(x)]), 7)
    np.testing.assert_array_equal(q.flat, p.flat)
    np.testing.assert_array_equal(logp[0], lp)
    X, Y, lens = np.stack([x[:20], x[20:]]), np.stack([y[:20], y[20:]]), np.array([20, 20])
    a, b = hs_model("sigmoid", seed=5), hs_model("sigmoid", seed=5)
    la, lb = shards(a, X, Y, lens, 8), shards(b, X, Y, lens, 8)
    np.testing.assert_array_equal(a.flat, b.flat)
    np.testing.assert_array_equal(la, lb)
    assert np.isfinite(la).all() and (la < 0).all() and not np.array_equal(a.flat, hs_model("sigmoid", seed=5).flat)


# ----------------------------------------------------------------------------- end to end

def test_cli_train_eval_score_sample_and_api(tmp_path, monkeypatch, capsys):
    """`rnnlm train --softmax hs` in both schedules on the tiny corpus of tests/test_cli_model.py,
    then eval (also --dynamic), score, sample and the Python API; the model file round-trips and is
    checked on load; the unsupported combinations are refused in one line."""
    import json

    import rnnlm
    from rnnlm.cli.app import main
    from rnnlm.model.file import load_model, save_model
    from tiny import synthetic_slices
    monkeypatch.setenv("RNNLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    synthetic_slices(tmp_path, {"train.txt": (0, 1500), "valid.txt": (1500, 1700), "test.txt": (1700, 1900)})

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    base = ["train", "--train", "train.txt", "--valid", "valid.txt", "--hidden", "16", "--softmax", "hs",
            "--max-epochs", "2"]
    code, out, err = run(*base, "--threads", "2", "--model", "two.rnnlm")   # per-word shards
    assert code == 0 and "threads 2" in out, err
    ppl = {}
    for schedule in ("rnnlm", "batch"):
        code, out, err = run(*base, "--schedule", schedule, "--model", f"{schedule}.rnnlm")
        assert code == 0, err
        assert "softmax hs" in out and "threads 1" in out and "epoch   2" in out
        code, out, err = run("eval", f"{schedule}.rnnlm", "test.txt", "--json")
        assert code == 0, err
        ppl[schedule] = json.loads(out)["perplexity"]
        assert 1 < ppl[schedule] < 120      # the vocabulary has 340-odd words
    code, out, err = run("eval", "rnnlm.rnnlm", "test.txt", "--json", "--dynamic", "0.05")
    assert code == 0, err
    assert json.loads(out)["perplexity"] < ppl["rnnlm"]
    synthetic_slices(tmp_path, {"two.txt": (1700, 1702)})   # the first two lines of test.txt
    two = (tmp_path / "two.txt").read_text().splitlines()
    code, out, err = run("score", "rnnlm.rnnlm", "two.txt")
    assert code == 0, err
    m = rnnlm.load("rnnlm.rnnlm")
    scores = [float(v) for v in out.split()]
    assert scores == pytest.approx([m.score(two[0]), m.score(two[1])], abs=1e-5)
    assert m.evaluate("test.txt").perplexity == pytest.approx(ppl["rnnlm"], rel=1e-12)
    s = m.begin()
    total = 0.0
    for w in two[0].split() + ["</s>"]:
        nxt = m.next_logprobs(s)
        assert sum(10.0 ** v for v in nxt.values()) == pytest.approx(1.0, abs=1e-6)
        lp, s = m.step(s, w)
        assert lp == pytest.approx(nxt[w], abs=1e-6)
        total += lp
    assert total == pytest.approx(m.score(two[0]), abs=1e-4)
    code, out, err = run("sample", "rnnlm.rnnlm", "--n", "3", "--seed", "1")
    assert code == 0 and len(out.splitlines()) == 3
    assert m.sample(2, seed=1) == m.sample(2, seed=1)
    # the model file: saved tree fingerprint checked, old-style fields intact
    mf = load_model("rnnlm.rnnlm")
    assert mf.config.softmax == "hs" and mf.params.out_w.shape == (mf.config.vocab_size - 1, 16)
    assert mf.tree.fingerprint() == mf.meta["hs_tree"]
    save_model("copy.rnnlm", mf)
    assert load_model("copy.rnnlm").params.flat.tobytes() == mf.params.flat.tobytes()
    mf.arrays["hs_counts"] = mf.arrays["hs_counts"][::-1].copy()   # another tree for the same weights
    save_model("bad.rnnlm", mf)
    code, _, err = run("eval", "bad.rnnlm", "test.txt")
    assert code == 1 and err.count("\n") == 1 and "tree does not match" in err
    del mf.arrays["hs_counts"]
    save_model("bad.rnnlm", mf)
    code, _, err = run("eval", "bad.rnnlm", "test.txt")
    assert code == 1 and err.count("\n") == 1 and "without its word counts" in err
    # refused in one line
    for extra, msg in ((["--threads", "2", "--schedule", "batch"], "one thread only"), (["--direct", "1"], "no classes, direct"),
                       (["--cost", "sse"], "--cost ce only")):
        code, _, err = run(*base, "--model", "x.rnnlm", *extra)
        assert code == 1 and err.count("\n") == 1 and msg in err, err
    code, _, err = run("export-rnnlm", "rnnlm.rnnlm", "out.txt")
    assert code == 1 and err.count("\n") == 1 and "hierarchical softmax" in err
    # --classes 0 still means a full softmax, and such a model has no tree
    code, out, err = run("train", "--train", "train.txt", "--valid", "valid.txt", "--hidden", "8", "--classes", "0",
                         "--max-epochs", "1", "--model", "full.rnnlm")
    assert code == 0 and "softmax full" in out, err
    assert load_model("full.rnnlm").config.softmax == "full" and load_model("full.rnnlm").tree is None


@pytest.mark.parametrize("schedule,threads", [("rnnlm", 1), ("rnnlm", 2), ("batch", 1)])
def test_kill_and_resume_is_bit_identical(tmp_path, schedule, threads):
    """A run killed after 3 chunks (checkpoint at every chunk boundary) and resumed ends with the
    bytes of an uninterrupted one; the checkpoint carries the tree."""
    import hashlib
    import os

    from rnnlm.model.config import TrainConfig
    from rnnlm.data.text import read_lines
    from rnnlm.data.tokenizer import WordVocab
    from rnnlm.training.loop import Trainer
    syn = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpora", "synthetic")
    tr = read_lines(os.path.join(syn, "train.txt"))[:1500]
    va = read_lines(os.path.join(syn, "valid.txt"))[:200]
    vocab = WordVocab.build(tr, num_classes=0)
    tr_ids, va_ids = vocab.encode_lines(tr).ids, vocab.encode_lines(va).ids
    mc = ModelConfig(vocab_size=len(vocab), hidden=16, classes=0, softmax="hs")
    tc = TrainConfig(schedule=schedule, threads=threads, max_epochs=2, checkpoint_words=1, batch_size=4, bptt=5,
                     lr=0.5 if schedule == "batch" else 0.1)

    def make(name):
        return Trainer(mc, tc, vocab, tr_ids, va_ids, str(tmp_path / name), log=lambda m: None, progress=False)

    make("full.rnnlm").run()
    t = make("cut.rnnlm")
    t.stop_after_chunks = 3
    with pytest.raises(KeyboardInterrupt):
        t.run()
    make("cut.rnnlm").run(resume=True)
    from rnnlm.model.file import load_model
    a, b = load_model(str(tmp_path / "full.rnnlm")), load_model(str(tmp_path / "cut.rnnlm"))
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    assert a.meta == b.meta
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("full.rnnlm", "cut.rnnlm")]
    assert digest[0] == digest[1]


def test_old_model_config_without_the_field_loads_as_before():
    old = dict(vocab_size=20, hidden=4, classes=3)
    assert ModelConfig.from_dict(old).softmax == "class"
    assert ModelConfig.from_dict(dict(old, classes=0)).softmax == "full"
    with pytest.raises(RnnlmError, match="softmax"):
        ModelConfig(vocab_size=20, softmax="tree")
