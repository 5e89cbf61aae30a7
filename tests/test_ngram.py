"""Tests of the n-gram baselines in rnnlm.use.ngram (Kneser-Ney and add-k)."""
from __future__ import annotations

import collections
import math
from pathlib import Path

import numpy as np
import pytest

from rnnlm.use.ngram import AddK, KneserNey

SYNTHETIC = Path(__file__).resolve().parent.parent / "corpora" / "synthetic"


@pytest.fixture(scope="module")
def synthetic():
    """(train, valid, vocab_size) id streams of the shipped corpus; </s> = 0."""
    splits = {s: (SYNTHETIC / f"{s}.txt").read_text(encoding="utf-8").splitlines()
              for s in ("train", "valid")}
    words = sorted({w for lines in splits.values() for line in lines for w in line.split(" ")})
    w2i = {w: i + 1 for i, w in enumerate(words)}
    ids = {s: np.array([i for line in lines for i in [w2i[w] for w in line.split(" ")] + [0]],
                       dtype=np.int32) for s, lines in splits.items()}
    return ids["train"], ids["valid"], len(words) + 1


@pytest.fixture(scope="module")
def markov():
    """A small 2nd-order Markov stream (vocabulary 30, of which ids 25-29 never occur)."""
    rng = np.random.default_rng(0)
    V, used = 30, 25
    T = rng.dirichlet(np.full(used, 0.1), size=(used, used))
    x = [0, 0]
    for _ in range(6000):
        x.append(int(rng.choice(used, p=T[x[-2], x[-1]])))
    return np.array(x[2:], dtype=np.int32), V


@pytest.mark.parametrize("order", [1, 2, 3])
def test_kneser_ney_is_normalised(markov, order):
    ids, V = markov
    model = KneserNey.fit(ids[:4000], V, order=order)
    contexts = [[], [0], [0, 0], list(ids[10:12]), list(ids[500:502]), [3, 27], [28, 29], [29]]
    for ctx in contexts:
        d = model.distribution(ctx)
        assert d.shape == (V,) and np.all(d > 0), ctx
        assert abs(d.sum() - 1.0) < 1e-10, (ctx, d.sum())


def test_kneser_ney_normalised_on_synthetic(synthetic):
    train, valid, V = synthetic
    model = KneserNey.fit(train, V, order=3)
    for i in (0, 1, 5, 100, 1000):
        d = model.distribution(valid[max(0, i - 2):i])
        assert abs(d.sum() - 1.0) < 1e-10


@pytest.mark.parametrize("order", [1, 2, 3])
def test_add_k_is_normalised(markov, order):
    ids, V = markov
    model = AddK.fit(ids, V, order=order, k=0.05)
    for ctx in ([], [1, 2], [28, 29]):
        assert abs(model.distribution(ctx).sum() - 1.0) < 1e-10


@pytest.mark.parametrize("cls", [KneserNey, AddK])
def test_logprob_agrees_with_distribution(markov, cls):
    ids, V = markov
    model = cls.fit(ids[:3000], V, order=3)
    test = ids[3000:3040]
    lp = model.logprob(test)
    assert lp.shape == test.shape and lp.dtype == np.float64
    padded = [model.pad_id, model.pad_id] + list(test)
    for i in range(test.size):
        assert math.isclose(lp[i], math.log(model.distribution(padded[i:i + 2])[test[i]]), rel_tol=1e-12)
    assert math.isclose(model.perplexity(test), math.exp(-lp.mean()))


def _reference_kn(train, V, order, ctx, w):
    """Slow dictionary implementation of interpolated modified Kneser-Ney (pad id 0)."""
    s = [0] * (order - 1) + list(train)
    levels = {order: collections.Counter(tuple(s[i - order + 1:i + 1]) for i in range(order - 1, len(s)))}
    for k in range(order - 1, 0, -1):
        levels[k] = collections.Counter(g[1:] for g in levels[k + 1])
    p = 1.0 / V
    for k in range(1, order + 1):
        n = [sum(1 for c in levels[k].values() if c == j) for j in (1, 2, 3, 4)]
        y = n[0] / (n[0] + 2 * n[1]) if n[0] and n[1] else 0.5
        D = [0, y, y, y] if min(n) == 0 else \
            [0, 1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
        D = [min(max(d, 0.0), j) for j, d in enumerate(D)]
        h = tuple(ctx[len(ctx) - (k - 1):]) if k > 1 else ()
        items = {g[-1]: c for g, c in levels[k].items() if g[:-1] == h}
        total = sum(items.values())
        if total:
            c = items.get(w, 0)
            p = (c - D[min(c, 3)]) / total + sum(D[min(x, 3)] for x in items.values()) / total * p
    return p


@pytest.mark.parametrize("order", [1, 2, 3])
def test_kneser_ney_matches_reference(markov, order):
    ids, V = markov
    train, test = ids[:1500], ids[1500:1530]
    model = KneserNey.fit(train, V, order=order)
    padded = [0] * (order - 1) + list(test)
    ref = [_reference_kn(train, V, order, padded[i:i + order - 1], test[i]) for i in range(test.size)]
    assert np.allclose(model.prob(test), ref, rtol=1e-12)


def test_training_perplexity_below_heldout(synthetic):
    train, valid, V = synthetic
    for model in (KneserNey.fit(train, V, order=3), KneserNey.fit(train, V, order=2),
                  AddK.fit(train, V, order=2, k=0.1)):
        assert model.perplexity(train) < model.perplexity(valid)


def test_kneser_ney_beats_add_k_on_synthetic(synthetic):
    train, valid, V = synthetic
    kn3 = KneserNey.fit(train, V, order=3).perplexity(valid)
    kn2 = KneserNey.fit(train, V, order=2).perplexity(valid)
    grid = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    addk2 = min(AddK.fit(train, V, order=2, k=k).perplexity(valid) for k in grid)
    addk3 = min(AddK.fit(train, V, order=3, k=k).perplexity(valid) for k in grid)
    assert kn3 < addk2 and kn3 < 0.7 * addk3
    unigram = AddK.fit(train, V, order=1, k=1.0).perplexity(valid)
    assert kn2 < 0.5 * unigram


def test_kneser_ney_uses_longer_context(markov):
    ids, V = markov
    train, test = ids[:5000], ids[5000:]
    ppl = [KneserNey.fit(train, V, order=o).perplexity(test) for o in (1, 2, 3)]
    assert ppl[2] < ppl[1] < ppl[0]


def test_large_random_stream_runs():
    rng = np.random.default_rng(1)
    V = 10_000
    zipf = 1.0 / np.arange(1, V + 1)
    ids = rng.choice(V, size=1_000_000, p=zipf / zipf.sum()).astype(np.int32)
    model = KneserNey.fit(ids, V, order=3)
    lp = model.logprob(ids[:200_000])
    assert lp.shape == (200_000,) and np.all(np.isfinite(lp)) and np.all(lp < 0)
    assert abs(model.distribution(ids[:2]).sum() - 1.0) < 1e-9


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        KneserNey.fit(np.array([0, 1, 5]), 5)
    with pytest.raises(ValueError):
        KneserNey.fit(np.array([], dtype=np.int32), 5)
    model = KneserNey.fit(np.array([0, 1, 2, 0]), 3)
    with pytest.raises(ValueError):
        model.logprob(np.array([3]))
    with pytest.raises(ValueError):
        AddK.fit(np.array([0, 1]), 3, k=0.0)


@pytest.mark.parametrize("cls", [KneserNey, AddK])
def test_object_keys_give_the_int64_results(markov, monkeypatch, cls):
    """Where V ** order overflows int64 the keys are Python integers: the same probabilities."""
    from rnnlm.use import ngram as ngram
    ids, V = markov
    ref = cls.fit(ids[:3000], V, order=4)
    monkeypatch.setattr(ngram, "_key_dtype", lambda v, o: object)
    big = cls.fit(ids[:3000], V, order=4)
    assert big.key_dtype is object and ref.key_dtype is np.int64
    assert np.array_equal(big.prob(ids[3000:]), ref.prob(ids[3000:]))
    assert np.array_equal(big.distribution(ids[3000:3003]), ref.distribution(ids[3000:3003]))


def test_five_gram_over_ten_thousand_words():
    """PTB's case (`rnnlm kn-prob --order 5`, 10,000 words): 10000 ** 5 > 2 ** 63."""
    rng = np.random.default_rng(2)
    V = 10_000
    zipf = 1.0 / np.arange(1, V + 1)
    ids = rng.choice(V, size=50_000, p=zipf / zipf.sum()).astype(np.int32)
    seq = np.arange(9000, 9010)                                # a rare 10-gram seen three times
    ids[1000:1010] = ids[2000:2010] = ids[3000:3010] = seq
    model = KneserNey.fit(ids, V, order=5)
    assert model.key_dtype is object
    assert abs(model.distribution(np.arange(4)).sum() - 1.0) < 1e-9
    p = model.prob(ids[:5000])
    assert np.all(np.isfinite(p)) and np.all(p > 0)
    assert model.prob(seq)[4:].min() > 0.3
    three = KneserNey.fit(ids, V, order=3)
    assert model.perplexity(ids[:20000]) < three.perplexity(ids[:20000])   # longer contexts are used
