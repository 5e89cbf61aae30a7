"""The Python API (`rnnlm.load`): KenLM-style scores, streaming states, evaluation, sampling."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnlm
from use_models import use  # noqa: F401  (fixture)

SENTS = ["the cup rattles", "my girl talks behind the key", "the zebra rattles", "", "zebra"]


@pytest.fixture(scope="module")
def models(use):
    m_unk, m_full, m_direct = rnnlm.load(use.unk), rnnlm.load(use.full), rnnlm.load(use.direct)
    assert m_unk.tokenizer.unk_id is not None and m_full.tokenizer.unk_id is None
    assert m_direct.config.direct_size == 10_000
    return m_unk, m_full, m_direct


def test_import_is_cheap():
    code = ("import sys, rnnlm; from rnnlm.cli.app import build_parser; build_parser().format_help(); "
            "assert callable(rnnlm.load); assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("s", SENTS)
def test_full_scores_sum_to_score(models, s):
    for m in models:
        fs = list(m.full_scores(s))
        assert len(fs) == len(s.split()) + 1
        assert sum(p for p, _ in fs) == m.score(s)
        assert [o for _, o in fs] == [w not in m for w in s.split()] + [False]
        assert all(p < 0 or (o and m.tokenizer.unk_id is None) for p, o in fs)
        assert m.score(s, eos=False) == sum(p for p, _ in fs[:-1])
        assert m.score(s, bos=False) == pytest.approx(sum(p for p, _ in list(m.full_scores(s, bos=False))))
        assert len(list(m.full_scores(s, bos=False, eos=False))) == max(len(s.split()) - 1, 0)


def test_skipped_oov(models):
    full = models[1]
    fs = list(full.full_scores("the zebra rattles"))
    assert fs[1] == (0.0, True)
    # skipping is what the word's absence means: the same as the sentence without it
    assert full.score("the zebra rattles") == pytest.approx(full.score("the rattles"), abs=1e-12)
    assert full.perplexity("the zebra rattles") == pytest.approx(10 ** (-full.score("the rattles") / 3))


def test_perplexity_matches_score(models):
    for m in models:
        s = "my girl talks behind the key"
        assert m.perplexity(s) == pytest.approx(10 ** (-m.score(s) / 7), rel=1e-12)


def test_perplexity_matches_evaluate(models, tmp_path):
    for m in models:
        s = "my girl talks behind the zebra"
        (tmp_path / "one.txt").write_text(s + "\n")
        assert m.evaluate(str(tmp_path / "one.txt")).perplexity == pytest.approx(m.perplexity(s), rel=1e-12)
        assert m.evaluate([s]).perplexity == pytest.approx(m.perplexity(s), rel=1e-12)


def test_step_matches_score(models):
    for m in models:
        for s in SENTS:
            st = m.begin()
            total = 0.0
            for w in s.split() + ["</s>"]:
                lp, st2 = m.step(st, w)
                total += lp
                assert st2 is not st or (w not in m and m.tokenizer.unk_id is None)
                st = st2
            assert total == pytest.approx(m.score(s), abs=1e-4)


def test_step_leaves_state_alone(models):
    m = models[0]
    s0 = m.begin()
    lp1, s1 = m.step(s0, "the")
    lp_cat, _ = m.step(s1, "cat")
    m.step(s1, "dog")
    assert m.step(s1, "cat")[0] == lp_cat      # branching from one state is repeatable
    assert m.step(s0, "the")[0] == lp1


def test_one_word_probability_is_the_distributions_entry(models):
    """step() computes only the target's class block; it must equal the full distribution's entry."""
    for m in models:
        _, st = m.step(m.begin(), "the")
        ids = range(0, m.vocab_size, max(1, m.vocab_size // 40))
        lazy = [st.prob(i) for i in ids]              # before the distribution is known
        full = st.probs
        assert lazy == [float(full[i]) for i in ids]


@pytest.mark.parametrize("prefix", ["", "the", "the fast man that"])
def test_next_word_distribution_sums_to_one(models, prefix):
    for m in models:
        st = m.begin()
        for w in prefix.split():
            _, st = m.step(st, w)
        lp = np.array(list(m.next_logprobs(st).values()))
        assert len(lp) == m.vocab_size
        assert math.fsum(10.0 ** lp) == pytest.approx(1.0, abs=1e-9)


def test_evaluate_matches_full_scores_carried(models, use):
    m = models[0]
    lines = open(use.test).read().splitlines()
    res = m.evaluate(use.test)
    assert res.tokens == sum(len(ln.split()) + 1 for ln in lines if ln.strip())
    assert res.unk == sum(w not in m for ln in lines for w in ln.split()) >= 2 and res.oov == 0
    # the first sentence of a text is scored as a sentence on its own
    first = m.evaluate(lines[:1])
    assert first.logprob / math.log(10) == pytest.approx(m.score(lines[0]), abs=1e-9)


def test_sample_reproducible_and_top_k(models):
    m = models[0]
    a = m.sample(4, seed=7, max_len=12)
    assert a == m.sample(4, seed=7, max_len=12)
    assert a != m.sample(4, seed=8, max_len=12)
    assert all(len(s.split()) <= 12 for s in a)
    assert m.sample(3, top_k=1, seed=1) == m.sample(3, top_k=1, seed=2)
    for s in m.sample(5, top_k=3, seed=3, prefix="the", max_len=10):
        words = s.split()
        assert words[0] == "the"
        st = m.begin()
        for w in words:
            top3 = sorted(m.next_logprobs(st).items(), key=lambda kv: -kv[1])[:3]
            assert w in [k for k, _ in top3]
            _, st = m.step(st, w)


def test_sample_never_unk(models):
    m = models[0]
    words = " ".join(m.sample(30, seed=0, temperature=3.0, max_len=20)).split()
    assert "<unk>" not in words
    assert "<unk>" in " ".join(m.sample(30, seed=0, temperature=3.0, max_len=20, allow_unk=True)).split()


def test_sample_errors(models):
    m = models[1]
    with pytest.raises(rnnlm.RnnlmError, match="zebra"):
        m.sample(1, prefix="the zebra")
    with pytest.raises(rnnlm.RnnlmError, match="temperature"):
        m.sample(1, temperature=0)


def test_train_takes_the_command_line_flags(tmp_path, capsys):
    import rnnlm
    from rnnlm.errors import RnnlmError
    syn = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpora", "synthetic")
    flags = dict(train=os.path.join(syn, "valid.txt"), valid=os.path.join(syn, "test.txt"), hidden=8, classes=5,
                 max_epochs=1, independent=True, cache_dir=str(tmp_path / "cache"))
    m = rnnlm.train(model=str(tmp_path / "a.rnnlm"), **flags)
    assert m.perplexity("the cat sat") > 1 and "saved" in capsys.readouterr().out
    from rnnlm.model.file import load_model
    meta = load_model(str(tmp_path / "a.rnnlm")).meta
    assert meta["train"]["independent"] is True and meta["model"]["hidden"] == 8
    with pytest.raises(TypeError, match="unknown flag 'hiden'"):
        rnnlm.train(model=str(tmp_path / "b.rnnlm"), hiden=8)
    with pytest.raises(RnnlmError, match="exists; use --force"):
        rnnlm.train(model=str(tmp_path / "a.rnnlm"), **flags)
    assert rnnlm.train(model=str(tmp_path / "a.rnnlm"), force=True, **flags).perplexity("the cat sat") > 1
