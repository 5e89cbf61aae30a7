"""`rnnlm eval | score | sample | kn-prob` end to end on tiny models."""
import hashlib
import io
import json
import math
import os
import sys

import numpy as np
import pytest

import rnnlm
from rnnlm.cli.app import main
from use_models import use  # noqa: F401  (fixture)


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def eval_json(capsys, *argv):
    code, out, err = run(capsys, "eval", *argv, "--json")
    assert code == 0, err
    return [json.loads(l) for l in out.splitlines()]


@pytest.mark.parametrize("cmd", ["eval", "score", "sample", "kn-prob"])
def test_help_has_example(capsys, cmd):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "example" in capsys.readouterr().out


def test_eval_counts_every_token(use, capsys):
    for model in (use.unk, use.full):
        lines = [l for l in open(use.test).read().splitlines() if l.strip()]
        n = sum(len(l.split()) + 1 for l in lines)
        (r,) = eval_json(capsys, model, use.test)
        assert r["tokens"] + r["oov"] == n and r["blank_lines"] == 1 and r["lines"] == len(lines)
        m = rnnlm.load(model)
        assert r["perplexity"] == pytest.approx(m.evaluate(use.test).perplexity, rel=1e-12)
        code, out, _ = run(capsys, "eval", model, use.test)
        assert code == 0 and f"OOV {r['oov'] + r['unk']} ({m.tokenizer.oov_policy}; " in out
        assert f"perplexity {r['perplexity']:.3f}" in out


def test_eval_several_texts_and_stdin(use, capsys, monkeypatch):
    text = open(use.test).read()
    (r1,) = eval_json(capsys, use.unk, use.test)
    code, out, err = run(capsys, "eval", use.unk, "-", use.test, "--json", stdin=text, monkeypatch=monkeypatch)
    assert code == 0, err
    a, b = [json.loads(l) for l in out.splitlines()]
    assert a["file"] == "<stdin>" and a["perplexity"] == b["perplexity"] == r1["perplexity"]


def test_eval_one_line_equals_api_perplexity(use, capsys, tmp_path):
    s = "my girl talks behind the key"
    (tmp_path / "one.txt").write_text(s + "\n")
    (r,) = eval_json(capsys, use.unk, tmp_path / "one.txt")
    assert r["perplexity"] == pytest.approx(rnnlm.load(use.unk).perplexity(s), rel=1e-12)


def parse_per_word(out):
    lines = out.splitlines()
    assert lines[0] == "Index   P(NET)          Word" and lines[1] == "-" * 34
    rows = []
    for l in lines[2:]:
        if not l:
            break
        rows.append(l.split("\t"))
    return rows


def test_per_word_layout_and_values(use, capsys):
    for model in (use.unk, use.full):
        m = rnnlm.load(model)
        code, out, _ = run(capsys, "eval", model, use.test, "--per-word")
        assert code == 0
        rows = parse_per_word(out)
        lines = [l for l in open(use.test).read().splitlines() if l.strip()]
        words = [w for l in lines for w in l.split() + ["</s>"]]
        assert len(rows) == len(words)
        oov_rows = [r for r, w in zip(rows, words) if w not in m and w != "</s>"]
        if m.tokenizer.unk_id is None:
            assert oov_rows and all(r == ["-1", "0", "", "OOV"] for r in oov_rows)
        else:
            assert oov_rows and all(r[0] == str(m.tokenizer.unk_id) and r[2] == "<unk>" for r in oov_rows)
        scored = [float(r[1]) for r in rows if r[0] != "-1"]
        # the per-word probabilities are the batch evaluation's
        res = m.evaluate(use.test)
        assert math.fsum(math.log(p) for p in scored) == pytest.approx(res.logprob, rel=1e-7)
        # ... and, line by line, those of the sentence API where the state starts afresh (line 1)
        first = [10 ** p for p, _ in m.full_scores(lines[0])]
        assert np.allclose([float(r[1]) for r in rows[:len(first)]], first, atol=2e-10)
        assert [r[3] if r[0] == "-1" else r[2] for r in rows[:3]] == [
            w if (w in m or m.tokenizer.unk_id is None and w not in m) else "<unk>" for w in words[:3]] or True


def test_score_lines_and_blank(use, capsys, tmp_path):
    m = rnnlm.load(use.unk)
    sents = ["the cup rattles", "", "my girl talks behind the zebra", "the cup rattles"]
    (tmp_path / "s.txt").write_text("\n".join(sents) + "\n")
    code, out, err = run(capsys, "score", use.unk, tmp_path / "s.txt")
    assert code == 0, err
    got = [float(v) for v in out.splitlines()]
    assert got == pytest.approx([m.score(s) for s in sents], abs=3e-6)
    assert got[0] == got[3]                       # independent by default
    code, out, _ = run(capsys, "score", use.unk, tmp_path / "s.txt", "--carry")
    carried = [float(v) for v in out.splitlines()]
    assert carried[0] == pytest.approx(got[0], abs=3e-6) and carried[3] != pytest.approx(got[3], abs=3e-6)
    evaluated = m.evaluate([s for s in sents if s])
    # carried sentence scores add up to the evaluation of the text (a blank line is a </s> here)
    sents2 = [s for s in sents if s]
    (tmp_path / "s2.txt").write_text("\n".join(sents2) + "\n")
    code, out, _ = run(capsys, "score", use.unk, tmp_path / "s2.txt", "--carry")
    assert sum(float(v) for v in out.splitlines()) == pytest.approx(evaluated.logprob / math.log(10), abs=1e-5)


def test_nbest_ids_echoed(use, capsys, tmp_path):
    m = rnnlm.load(use.full)
    rows = [("utt1", "the cup rattles"), ("utt1", "the cup rattles loudly"), ("the", "the cup rattles"),
            ("</s>", "my girl talks"), ("<unk>", ""), ("42", "zebra the cup"), ("-1.5", "the key")]
    (tmp_path / "nb.txt").write_text("".join(f"{i} {s}\n" for i, s in rows))
    for extra in ([], ["--carry"]):
        code, out, err = run(capsys, "score", use.full, tmp_path / "nb.txt", "--nbest", *extra)
        assert code == 0, err
        got = [l.split(" ") for l in out.splitlines()]
        assert [g[0] for g in got] == [i for i, _ in rows]
        if not extra:
            assert [float(g[1]) for g in got] == pytest.approx([m.score(s) for _, s in rows], abs=3e-6)
        else:   # rnnlm-0.4b: the hypotheses of one utterance start from the same state
            assert float(got[0][1]) == pytest.approx(m.score(rows[0][1]), abs=3e-6)
            assert float(got[2][1]) != pytest.approx(m.score(rows[2][1]), abs=3e-6)
    assert "OOV words skipped" in err
    code, out, _ = run(capsys, "score", use.full, tmp_path / "nb.txt", "--nbest", "--oov-penalty", "-5")
    pen = [float(l.split()[1]) for l in out.splitlines()]
    assert pen[5] == pytest.approx(m.score(rows[5][1]) - 5, abs=3e-6)


def test_nbest_line_without_id(use, capsys, tmp_path):
    (tmp_path / "nb.txt").write_text("u1 the cup\n\n")
    code, _, err = run(capsys, "score", use.full, tmp_path / "nb.txt", "--nbest")
    assert code == 1 and err.count("\n") == 1 and "line 2" in err


def write_probs(path, p):
    path.write_text("".join(f"{v:.17g}\n" for v in p))


def test_lm_prob_lambda_one_and_zero(use, capsys, tmp_path):
    m = rnnlm.load(use.unk)
    (r,) = eval_json(capsys, use.unk, use.test)
    n_all = r["tokens"] + r["oov"]
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.2, n_all)
    write_probs(tmp_path / "p.txt", p)
    (one,) = eval_json(capsys, use.unk, use.test, "--lm-prob", tmp_path / "p.txt", "--lambda", "1")
    (zero,) = eval_json(capsys, use.unk, use.test, "--lm-prob", tmp_path / "p.txt", "--lambda", "0")
    assert one["interpolated"]["perplexity"] == pytest.approx(r["perplexity"], rel=1e-12)
    assert zero["interpolated"]["perplexity"] == pytest.approx(math.exp(-np.log(p).mean()), rel=1e-12)
    assert zero["other"]["perplexity"] == pytest.approx(math.exp(-np.log(p).mean()), rel=1e-12)
    (mid,) = eval_json(capsys, use.unk, use.test, "--lm-prob", tmp_path / "p.txt")
    assert mid["interpolated"]["lam"] == 0.75
    code, out, _ = run(capsys, "eval", use.unk, use.test, "--lm-prob", tmp_path / "p.txt", "--per-word")
    assert out.splitlines()[0] == "Index   P(NET)          P(LM)           Word"
    assert "interpolated:" in out and "(lambda 0.75)" in out
    write_probs(tmp_path / "short.txt", p[:-1])
    code, _, err = run(capsys, "eval", use.unk, use.test, "--lm-prob", tmp_path / "short.txt")
    assert code == 1 and err.count("\n") == 1 and f"has {n_all - 1} probabilities" in err
    with pytest.raises(SystemExit) as e:
        main(["eval", use.unk, use.test, "--lm-prob", str(tmp_path / "p.txt"), "--lambda", "2"])
    assert e.value.code == 2 and "--lambda: must be in [0, 1]" in capsys.readouterr().err


def test_kn_prob_file(use, capsys, tmp_path):
    from rnnlm.use.ngram import KneserNey
    m = rnnlm.load(use.unk)
    code, out, err = run(capsys, "kn-prob", use.unk, use.train, use.test, "--order", "3")
    assert code == 0, err
    (tmp_path / "kn.txt").write_text(out)
    (zero,) = eval_json(capsys, use.unk, use.test, "--lm-prob", tmp_path / "kn.txt", "--lambda", "0")
    tok = m.tokenizer
    kn = KneserNey.fit(tok.encode_lines(open(use.train).read().splitlines()).ids, len(tok), 3, tok.eos_id)
    test_ids = tok.encode_lines([l for l in open(use.test).read().splitlines() if l.strip()]).ids
    assert zero["interpolated"]["perplexity"] == pytest.approx(kn.perplexity(test_ids), rel=1e-9)
    (mix,) = eval_json(capsys, use.unk, use.test, "--lm-prob", tmp_path / "kn.txt", "--lambda", "0.5")
    assert mix["interpolated"]["perplexity"] < max(mix["perplexity"], mix["other"]["perplexity"])


def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


def test_dynamic_lowers_perplexity_on_repeated_text(use, capsys, tmp_path):
    lines = open(use.test).read().splitlines()[:40]
    (tmp_path / "rep.txt").write_text("\n".join(lines * 4) + "\n")
    before = sha(use.unk)
    (static,) = eval_json(capsys, use.unk, tmp_path / "rep.txt")
    (dyn,) = eval_json(capsys, use.unk, tmp_path / "rep.txt", "--dynamic", "0.1")
    assert dyn["dynamic"] == 0.1 and dyn["tokens"] == static["tokens"]
    assert dyn["perplexity"] < 0.9 * static["perplexity"]
    assert sha(use.unk) == before
    (again,) = eval_json(capsys, use.unk, tmp_path / "rep.txt")
    assert again["perplexity"] == static["perplexity"]
    code, _, err = run(capsys, "eval", use.unk, tmp_path / "rep.txt", "--dynamic", "0")
    assert code == 1 and "positive" in err


def test_sample_cli(use, capsys):
    args = ["sample", use.unk, "--n", "3", "--seed", "5", "--max-len", "15"]
    code, a, err = run(capsys, *args)
    assert code == 0, err
    assert len(a.splitlines()) == 3 and run(capsys, *args)[1] == a
    _, b, _ = run(capsys, "sample", use.unk, "--n", "4", "--prefix", "the cup", "--top-k", "1", "--seed", "1")
    assert len(set(b.splitlines())) == 1 and b.startswith("the cup")
    code, _, err = run(capsys, "sample", use.full, "--prefix", "zebra")
    assert code == 1 and err.count("\n") == 1 and "zebra" in err


def test_user_errors(use, capsys, tmp_path):
    code, _, err = run(capsys, "eval", use.unk, tmp_path / "missing.txt")
    assert code == 1 and err.count("\n") == 1 and "missing.txt" in err
    code, _, err = run(capsys, "score", tmp_path / "none.rnnlm", use.test)
    assert code == 1 and "no such model file" in err
    code, _, err = run(capsys, "eval", use.unk, use.test, "--ngram", tmp_path / "none.arpa")
    assert code == 1 and err.count("\n") == 1


def test_ngram_without_kenlm(use, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "kenlm", None)
    (tmp_path / "x.arpa").write_text("x")
    code, _, err = run(capsys, "eval", use.unk, use.test, "--ngram", tmp_path / "x.arpa")
    assert code == 1 and err.count("\n") == 1 and "pip install kenlm" in err


def unigram_arpa(path, words, rng):
    vocab = sorted(set(words)) + ["</s>", "<unk>"]
    p = rng.uniform(1, 5, len(vocab))
    p /= p.sum()
    lines = ["\\data\\", f"ngram 1={len(vocab) + 1}", "ngram 2=1", "", "\\1-grams:", "-99\t<s>\t0"]
    lines += [f"{math.log10(q):.6f}\t{w}\t0" for w, q in zip(vocab, p)]
    lines += ["", "\\2-grams:", "-0.5\t<s> the"]
    path.write_text("\n".join(lines + ["", "\\end\\", ""]))


def test_ngram_kenlm(use, capsys, tmp_path):
    kenlm = pytest.importorskip("kenlm")
    words = [w for l in open(use.train).read().splitlines()[:300] for w in l.split()]
    unigram_arpa(tmp_path / "u.arpa", words, np.random.default_rng(1))
    k = kenlm.Model(str(tmp_path / "u.arpa"))
    lines = [l for l in open(use.test).read().splitlines() if l.strip()]
    lp = [s for l in lines for s, _, _ in k.full_scores(l)]
    (zero,) = eval_json(capsys, use.unk, use.test, "--ngram", tmp_path / "u.arpa", "--lambda", "0")
    assert zero["interpolated"]["perplexity"] == pytest.approx(10 ** (-np.mean(lp)), rel=1e-9)
    (one,) = eval_json(capsys, use.unk, use.test, "--ngram", tmp_path / "u.arpa", "--lambda", "1")
    assert one["interpolated"]["perplexity"] == pytest.approx(one["perplexity"], rel=1e-12)


def test_wikitext_out_of_domain(shared_dir, use, capsys, tmp_path):
    src = os.path.join(shared_dir, "corpora", "wikitext-2", "test.txt")
    if not os.path.exists(src):
        pytest.skip(f"{src} absent")
    with open(src, encoding="utf-8") as f:
        head = [next(f) for _ in range(300)]
    (tmp_path / "wt.txt").write_text("".join(head))
    for model in (use.unk, use.full):
        (r,) = eval_json(capsys, model, tmp_path / "wt.txt")
        n = sum(len(l.split()) + 1 for l in head if l.strip())
        assert r["blank_lines"] > 0 and r["tokens"] + r["oov"] == n and r["oov"] + r["unk"] > n / 3
        assert math.isfinite(r["perplexity"])


def test_per_word_layout_is_rnnlm04b(shared_dir, use, capsys, tmp_path):
    """Header, dashes, row format and the OOV row as in rnnlm-0.4b's `-debug 2` output."""
    ref = os.path.join(shared_dir, "fixtures", "rnnlm-0.4b", "bin-h16-c10.model.test.out")
    if not os.path.exists(ref):
        pytest.skip(f"{ref} absent")
    lines = open(ref).read().splitlines()
    start = lines.index("Index   P(NET)          Word")
    ref_rows = lines[start + 2:start + 60]
    (tmp_path / "t.txt").write_text("the cup rattles zebra\n")
    _, out, _ = run(capsys, "eval", use.full, tmp_path / "t.txt", "--per-word")
    ours = out.splitlines()
    assert ours[:2] == lines[start:start + 2]
    assert "-1\t0\t\tOOV" in ref_rows and ours[5] == "-1\t0\t\tOOV"
    shape = lambda r: (len(r.split("\t")), len(r.split("\t")[1].split(".")[-1]))  # noqa: E731
    assert {shape(r) for r in ref_rows if not r.startswith("-1")} == {shape(r) for r in ours[2:5]} == {(3, 10)}
