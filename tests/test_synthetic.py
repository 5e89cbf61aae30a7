"""Tests of the synthetic grammar (corpora/grammar.py), its generator script and the shipped corpus."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

CORPORA = Path(__file__).resolve().parent.parent / "corpora"
sys.path.insert(0, str(CORPORA))

import grammar  # noqa: E402
from grammar import EOS, Grammar  # noqa: E402

SHIPPED = CORPORA / "synthetic"


@pytest.fixture(scope="module")
def g() -> Grammar:
    return Grammar(1)


@pytest.fixture(scope="module")
def sentences(g) -> list[list[str]]:
    rng = np.random.default_rng(123)
    return [g.sample_sentence(rng) for _ in range(300)]


def test_vocab_size_and_sentence_length(g, sentences):
    assert 250 <= len(g.vocab) <= 400
    assert EOS not in g.vocab and len(set(g.vocab)) == len(g.vocab)
    assert all(w in set(g.vocab) for s in sentences for w in s)
    mean_len = np.mean([len(s) + 1 for s in sentences])
    assert 8 <= mean_len <= 15


def test_next_distribution_sums_to_one(g, sentences):
    vocab = set(g.vocab) | {EOS}
    prefixes = [[]] + [s[:i] for s in sentences[:40] for i in range(len(s) + 1)]
    assert max(len(p) for p in prefixes) >= 15          # reaches deep into nested clauses
    for prefix in prefixes:
        dist = g.next_distribution(prefix)
        assert set(dist) <= vocab
        assert all(p > 0 for p in dist.values())
        assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-9), prefix


def test_sampled_sentences_have_finite_logprob(g, sentences):
    for s in sentences:
        lps = g.sentence_logprob(s)
        assert len(lps) == len(s) + 1
        assert all(math.isfinite(x) and x <= 1e-12 for x in lps), s


def test_sentence_logprob_matches_next_distribution(g, sentences):
    for s in sentences[:25]:
        lps = g.sentence_logprob(s)
        for i, w in enumerate(s + [EOS]):
            assert math.isclose(lps[i], math.log(g.next_distribution(s[:i])[w]), rel_tol=1e-9, abs_tol=1e-12)


def test_impossible_words_get_zero_probability(g):
    assert g.sentence_logprob(["the", "the"])[1] == -math.inf
    with pytest.raises(ValueError):
        g.next_distribution(["runs"])


def test_agreement_across_object_relative_clause(g):
    dist = g.next_distribution("the dog that the cats chase".split())
    assert dist.get("runs", 0) > 0 and dist.get("is", 0) > 0
    assert "run" not in dist and "are" not in dist and EOS not in dist
    dist = g.next_distribution("the dogs that the cat chases".split())
    assert dist.get("run", 0) > 0 and "runs" not in dist and "is" not in dist
    # class agreement: a place does not bark, an animal does not crumble
    assert "crumbles" not in g.next_distribution("the dog".split())
    assert "barks" not in g.next_distribution("the house".split())


def test_ambiguous_number_is_tracked_exactly(g):
    dist = g.next_distribution("the sheep".split())   # "sheep" is singular or plural
    assert dist.get("runs", 0) > 0 and dist.get("run", 0) > 0
    assert dist.get("is", 0) > 0 and dist.get("are", 0) > 0


def test_first_word_frequencies_match_next_distribution(g):
    rng = np.random.default_rng(7)
    n = 6000
    counts: dict[str, int] = {}
    for _ in range(n):
        w = g.sample_sentence(rng)[0]
        counts[w] = counts.get(w, 0) + 1
    expected = g.next_distribution([])
    assert set(counts) <= set(expected)
    # Pool rare words so every cell expects >= 10, then a loose chi-square bound.
    cells, rest_obs, rest_exp = [], 0, 0.0
    for w, p in expected.items():
        if n * p >= 10:
            cells.append((counts.get(w, 0), n * p))
        else:
            rest_obs, rest_exp = rest_obs + counts.get(w, 0), rest_exp + n * p
    cells.append((rest_obs, rest_exp))
    chi2 = sum((o - e) ** 2 / e for o, e in cells)
    df = len(cells) - 1
    assert chi2 < df + 6 * math.sqrt(2 * df), (chi2, df)


def test_generation_is_deterministic(tmp_path):
    import make_synthetic

    args = ["--seed", "3", "--train-tokens", "3000", "--valid-tokens", "400", "--test-tokens", "400"]
    for name in ("a", "b"):
        assert make_synthetic.main(args + ["--out", str(tmp_path / name)]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert {"train.txt", "valid.txt", "test.txt", "valid.logprob", "test.logprob", "stats.json",
            "README.md"} <= set(files)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["tokens"]["train"] >= 3000 and stats["seed"] == 3


def _read_split(split: str) -> tuple[list[str], np.ndarray]:
    lines = (SHIPPED / f"{split}.txt").read_text(encoding="utf-8").splitlines()
    lps = np.array([float(x) for x in (SHIPPED / f"{split}.logprob").read_text().split()])
    return lines, lps


@pytest.mark.parametrize("split", ["valid", "test"])
def test_shipped_corpus_matches_stats(split):
    stats = json.loads((SHIPPED / "stats.json").read_text())
    lines, lps = _read_split(split)
    n_tokens = sum(len(line.split(" ")) + 1 for line in lines)
    assert all(line and line == line.strip() and "  " not in line for line in lines)
    assert n_tokens == stats["tokens"][split] == lps.size
    assert math.isclose(stats["true_ppl"][split], math.exp(-lps.mean()), rel_tol=1e-9)
    assert 15 <= stats["true_ppl"][split] <= 60
    # the agreement/long-context structure makes the trigram clearly worse than the truth
    assert stats["baselines"]["kn3"][split] > 1.15 * stats["true_ppl"][split]


def test_shipped_logprob_matches_grammar(g):
    stats = json.loads((SHIPPED / "stats.json").read_text())
    gs = g if stats["seed"] == g.seed else Grammar(stats["seed"])
    lines, lps = _read_split("test")
    ours = [x for line in lines[:200] for x in gs.sentence_logprob(line.split(" "))]
    assert np.allclose(ours, lps[: len(ours)], rtol=1e-12, atol=1e-12)
    assert stats["vocab_size"] == len(gs.vocab) + 1
    assert grammar.MAX_DEPTH <= 2
