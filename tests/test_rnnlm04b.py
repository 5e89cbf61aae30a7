"""rnnlm-0.4b model files: reading both formats, exact reproduction of rnnlm-0.4b's test output on the
shared fixtures, export -> import round trips, and one-line errors on broken files."""
from __future__ import annotations

import math
import atexit
import gzip
import os
import shutil
import tempfile
import re

import numpy as np
import pytest

from rnnlm.cli.app import main
from rnnlm.model.config import ModelConfig
from rnnlm.errors import RnnlmError
from rnnlm.use.evaluate import evaluate_text, load_for_eval, stream_logprobs
from rnnlm.model.layout import initial_history, initial_state
from rnnlm.model.file import ModelFile, Params, save_model
from rnnlm.interop.rnnlm04b.convert import _synthetic_counts, export_model, import_model
from rnnlm.interop.rnnlm04b.files import read_rnnlm04b
from rnnlm.kernels.rnnlm04b import PRIMES, fasterexp, rnnlm04b_direct_hashes
from rnnlm.interop.rnnlm04b.evaluate import compat_logprobs_from, compat_probs_from, encode_text_04b
from rnnlm.data.tokenizer import WordVocab, assign_classes

SHARED_FIX = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "rnnlm-0.4b")
BUNDLED_FIX = os.path.join(os.path.dirname(__file__), "fixtures", "rnnlm-0.4b")   # gzipped copies of two
BUNDLED = ["text-h15-c10.model", "bin-h16-c10.model"]
DIRECT = ["text-h12-c8-direct3.model", "bin-h12-c8-direct4-indep.model"]


def _unpack_bundled() -> str:
    """The bundled fixtures (rnnlm-0.4b's own files and outputs, gzipped in tests/fixtures) unpacked
    into a temporary directory, so that the equivalence tests run on any clone."""
    d = tempfile.mkdtemp(prefix="rnnlm04b-fixtures-")
    atexit.register(shutil.rmtree, d, True)
    for gz in os.listdir(BUNDLED_FIX):
        if gz.endswith(".gz"):
            with gzip.open(os.path.join(BUNDLED_FIX, gz)) as src, open(os.path.join(d, gz[:-3]), "wb") as dst:
                dst.write(src.read())
    return d


HAVE_SHARED = os.path.isdir(SHARED_FIX)
FIX = SHARED_FIX if HAVE_SHARED else _unpack_bundled()
# the two models with direct connections are only in ../shared (4.6 and 6.6 MB)
needs_fixtures = pytest.mark.skipif(not HAVE_SHARED, reason=f"the direct-connection rnnlm-0.4b fixtures are in "
                                    f"{SHARED_FIX}, which is absent (the bundled ones still run)")
NAMES = BUNDLED + [pytest.param(n, marks=needs_fixtures) for n in DIRECT]


def _reference(name):
    """(word ids, printed probabilities, log10 probability, PPL) from rnnlm-0.4b's -debug 2 output."""
    ids, probs = [], []
    text = open(os.path.join(FIX, name + ".test.out")).read()
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) >= 3 and re.fullmatch(r"-?\d+", f[0]):
            ids.append(int(f[0]))
            probs.append(float(f[1]))
    logp = float(re.search(r"test log probability: (\S+)", text).group(1))
    ppl = float(re.search(r"PPL net: (\S+)", text).group(1))
    return np.array(ids), np.array(probs), logp, ppl


def _word_probs(mf, tok, classes, independent, text_path):
    index = {w.encode(): i for i, w in enumerate(tok.words)}
    ids, _ = encode_text_04b(open(text_path, "rb").read(), index)
    lp = compat_logprobs_from(mf.config, mf.params, classes, ids, independent,
                              initial_state(mf.config, mf.params))
    return ids, lp


# ----------------------------------------------------------------------------- the fixtures

@pytest.mark.skipif(not HAVE_SHARED, reason=f"{SHARED_FIX} is absent: nothing to compare the bundled copies with")
def test_bundled_fixtures_are_the_shared_ones():
    names = sorted(f for f in os.listdir(BUNDLED_FIX) if f.endswith(".gz"))
    assert len(names) == 7
    for gz in names:
        with gzip.open(os.path.join(BUNDLED_FIX, gz)) as fh:
            assert fh.read() == open(os.path.join(SHARED_FIX, gz[:-3]), "rb").read(), gz


@pytest.mark.parametrize("name", NAMES)
def test_fixture_perplexity_and_every_word_probability(name):
    ref_ids, ref_p, ref_logp, ref_ppl = _reference(name)
    mf, tok, classes, indep = load_for_eval(os.path.join(FIX, name))      # the rnnlm-0.4b file itself
    assert mf.config.compat == "rnnlm-0.4b"
    ids, lp = _word_probs(mf, tok, classes, indep, os.path.join(FIX, "test.txt"))
    assert np.array_equal(ids, ref_ids)                                    # same tokens, same OOVs
    ok = ids >= 0
    p = compat_probs_from(mf.config, mf.params, classes, ids, indep, initial_state(mf.config, mf.params))
    assert np.abs(p[ok] - ref_p[ok]).max() < 1e-6
    # in fact every printed digit: P is the float rnnlm-0.4b prints with %.10f
    assert ["%.10f" % v for v in p[ok].tolist()] == ["%.10f" % v for v in ref_p[ok].tolist()]
    assert np.all(np.isnan(lp[~ok])) and np.all(np.isfinite(lp[ok]))
    res = evaluate_text(os.path.join(FIX, name), os.path.join(FIX, "test.txt"))
    assert res.tokens == ok.sum() and res.oov == (~ok).sum()
    assert abs(res.perplexity / ref_ppl - 1) < 1e-6                       # (issue: 1e-4)
    assert abs(res.logprob / math.log(10) - ref_logp) < 1e-5
    assert "%.6f" % res.perplexity == "%.6f" % ref_ppl


@needs_fixtures
def test_fixture_pieces_carry_state_and_history():
    name = "bin-h12-c8-direct4-indep.model"
    mf, tok, classes, indep = load_for_eval(os.path.join(FIX, name))
    _, lp_whole = _word_probs(mf, tok, classes, False, os.path.join(FIX, "test.txt"))
    index = {w.encode(): i for i, w in enumerate(tok.words)}
    ids, _ = encode_text_04b(open(os.path.join(FIX, "test.txt"), "rb").read(), index)
    cut = int(np.flatnonzero(ids == 0)[40]) + 1
    h, ng = initial_state(mf.config, mf.params), initial_history(mf.config, 0)
    a = compat_logprobs_from(mf.config, mf.params, classes, ids[:cut], False, h, ng=ng)
    b = compat_logprobs_from(mf.config, mf.params, classes, ids[cut:], False, h, ng=ng)
    assert np.array_equal(np.concatenate([a, b]), lp_whole, equal_nan=True)


@pytest.mark.parametrize("name", ["text-h15-c10.model", "bin-h16-c10.model"])
def test_fixture_rewritten_byte_for_byte(tmp_path, name):
    src = os.path.join(FIX, name)
    mf, notes = import_model(src)
    assert notes == []
    save_model(str(tmp_path / "m.rnnlm"), mf)
    mf2, tok, _, _ = load_for_eval(str(tmp_path / "m.rnnlm"))
    out = str(tmp_path / "out")
    export_model(mf2, tok, out, binary=name.startswith("bin-"))
    assert open(out, "rb").read() == open(src, "rb").read()
    if name.startswith("text-"):          # the binary copy of a text model evaluates the same
        export_model(mf2, tok, out + ".bin", binary=True)
        r1 = evaluate_text(src, os.path.join(FIX, "test.txt"))
        r2 = evaluate_text(out + ".bin", os.path.join(FIX, "test.txt"))
        assert r1.logprob == r2.logprob


def test_cli_import_then_eval(tmp_path, capsys):
    name = "text-h15-c10.model"
    new = str(tmp_path / "m.rnnlm")
    assert main(["import-rnnlm", os.path.join(FIX, name), new]) == 0
    assert "evaluated as rnnlm-0.4b" in capsys.readouterr().out
    assert main(["eval", new, os.path.join(FIX, "test.txt")]) == 0
    assert "perplexity 296.280" in capsys.readouterr().out
    assert main(["import-rnnlm", os.path.join(FIX, name), new]) == 1          # exists
    assert "--force" in capsys.readouterr().err


# ----------------------------------------------------------------------------- our models out and back

def _model(tmp_path, *, classes=25, bias=True, independent=False, hidden=13, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)]
    pr = np.linspace(2, 0.1, 40)
    lines = ["w0 w0 w0 " + " ".join(rng.choice(words, size=rng.integers(8, 30), p=pr / pr.sum()))
             for _ in range(300)]
    tok = WordVocab.build(lines, num_classes=classes)
    cfg = ModelConfig(vocab_size=len(tok), hidden=hidden, classes=tok.num_classes, bias=bias)
    p = Params.init(cfg, rng)
    if bias:
        p.bh[:] = rng.normal(0, .3, cfg.hidden)
        p.bo[:] = rng.normal(0, .3, cfg.vocab_size)
        p.bc[:] = rng.normal(0, .3, cfg.classes)
    mf = ModelFile(cfg, p, tok.to_bytes(), {"train": {"independent": independent}, "history": []})
    path = str(tmp_path / "m.rnnlm")
    save_model(path, mf)
    text = str(tmp_path / "text.txt")
    with open(text, "w") as fh:
        fh.write("\n".join(lines[:50] + ["zz unknown w1", "w3"]) + "\n")
    return path, text


def _logprobs(path, text):
    mf, tok, classes, indep = load_for_eval(path)
    ids = tok.encode_lines(open(text).read().splitlines()).ids
    return stream_logprobs(mf.config, mf.params, classes, ids, tok.eos_id, indep), tok


@pytest.mark.parametrize("classes,bias,independent", [(25, True, False), (25, False, True),
                                                      (6, True, True), (0, False, False)])
def test_binary_round_trip_is_exact(tmp_path, classes, bias, independent):
    path, text = _model(tmp_path, classes=classes, bias=bias, independent=independent)
    mf, tok, _, _ = load_for_eval(path)
    if classes == 25:
        assert tok.eos_id != 0 and tok.classes[tok.eos_id] != 0       # </s> and its class move
    notes = export_model(mf, tok, str(tmp_path / "m.bin"), binary=True)
    assert any("extra hidden unit" in n for n in notes) == bias
    m = read_rnnlm04b(str(tmp_path / "m.bin"))
    assert m.words[0] == "</s>" and m.header["layer1_size"] == 13 + bias
    # rnnlm-0.4b reassigns classes from the counts: they must give the file's classes
    mode = "unigram" if m.header["old_classes"] else "sqrt"
    assert np.array_equal(assign_classes(m.counts, m.header["class_size"], mode), m.classes)
    back, notes = import_model(str(tmp_path / "m.bin"))
    assert back.config.compat == "" and notes == []
    save_model(str(tmp_path / "back.rnnlm"), back)
    lp1, tok1 = _logprobs(path, text)
    lp2, tok2 = _logprobs(str(tmp_path / "back.rnnlm"), text)
    assert tok1.words == tok2.words
    assert np.array_equal(lp1, lp2)
    assert evaluate_text(path, text).perplexity == evaluate_text(str(tmp_path / "back.rnnlm"), text).perplexity


def test_text_round_trip_equals_rounded_model(tmp_path):
    path, text = _model(tmp_path)
    mf, tok, classes, indep = load_for_eval(path)
    export_model(mf, tok, str(tmp_path / "m.txt"))
    back, _ = import_model(str(tmp_path / "m.txt"))
    rounded = Params(mf.config, np.array(["%.4f" % v for v in mf.params.flat.tolist()], dtype=np.float64)
                     .astype(np.float32))
    ids = tok.encode_lines(open(text).read().splitlines()).ids
    lp_back = stream_logprobs(back.config, back.params, classes, ids, tok.eos_id, indep)
    lp_round = stream_logprobs(mf.config, rounded, classes, ids, tok.eos_id, indep)
    assert np.array_equal(lp_back, lp_round)


def test_cli_export_and_refusals(tmp_path, capsys):
    path, text = _model(tmp_path, bias=False)
    out = str(tmp_path / "x.bin")
    assert main(["export-rnnlm", path, out, "--binary"]) == 0
    assert main(["import-rnnlm", out, str(tmp_path / "y.rnnlm")]) == 0
    assert "evaluated natively" in capsys.readouterr().out
    assert main(["import-rnnlm", out, str(tmp_path / "z.rnnlm"), "--as", "rnnlm-0.4b"]) == 0
    capsys.readouterr()
    mf, tok, _, _ = load_for_eval(path)
    tanh = ModelFile(ModelConfig(**dict(mf.config.to_dict(), activation="tanh")), mf.params, mf.tokenizer_bytes,
                     mf.meta)
    with pytest.raises(RnnlmError, match="sigmoid"):
        export_model(tanh, tok, str(tmp_path / "t.txt"))
    odd = ModelFile(ModelConfig(**dict(mf.config.to_dict(), reset_hidden=0.5)), mf.params, mf.tokenizer_bytes,
                    {"train": {"independent": True}})
    with pytest.raises(RnnlmError, match="1.0"):
        export_model(odd, tok, str(tmp_path / "t.txt"))


def test_synthetic_counts_give_the_classes():
    rng = np.random.default_rng(3)
    for _ in range(50):
        C = int(rng.integers(2, 40))
        sizes = rng.integers(1, 30, C)
        cls = np.repeat(np.arange(C), sizes).astype(np.int32)
        assert np.array_equal(assign_classes(_synthetic_counts(cls, C), C, "unigram"), cls)


# ----------------------------------------------------------------------------- pieces

def test_direct_hashes_match_the_c_expressions():
    def ref(history, order, ds, cls):
        M32, M64 = 2**32 - 1, 2**64 - 1
        P = [int(x) for x in PRIMES]
        out = [0] * order
        for a in range(order):
            if a > 0 and history[a - 1] == -1:
                break
            h = (P[0] * P[1]) & M32
            if cls >= 0:
                h = (h * (cls + 1)) & M64
            for b in range(1, a + 1):
                k = (((a * P[b]) & M32) + b) & M32
                h = (h + P[k % 36] * (history[b - 1] + 1)) & M64
            h %= ds // 2
            out[a] = h + (ds // 2 if cls >= 0 else 0)
        return out
    rng = np.random.default_rng(1)
    out = np.zeros(8, np.uint64)
    for _ in range(300):
        hist = rng.integers(-1, 100000, 8)
        hist[hist < 0] = -1 if rng.random() < 0.5 else 5
        order, ds, cls = int(rng.integers(1, 9)), int(rng.integers(40, 5_000_000)), int(rng.integers(-1, 50))
        rnnlm04b_direct_hashes(hist, order, ds, cls, out)
        assert out[:order].tolist() == ref(hist.tolist(), order, ds, cls)


def test_fasterexp_is_fastapprox():
    assert fasterexp(np.float32(0.0)) == np.float32(0.9713478088378906)
    assert fasterexp(np.float32(-1.0)) == np.float32(0.375)
    assert fasterexp(np.float32(-100.0)) == 0.0                    # a denormal, flushed


def test_readword_conventions():
    index = {b"</s>": 0, b"a": 1, b"b": 2, b"x" * 99: 3}
    ids, n_oov = encode_text_04b(b"a b\r\n\n a\tzz \nb " + b"x" * 120 + b" b\na lost", index)
    assert ids.tolist() == [1, 2, 0, 0, 1, -1, 0, 2, 3, 2, 0, 1]
    assert n_oov == 1


# ----------------------------------------------------------------------------- broken files

def _one_line(exc, *parts):
    msg = str(exc.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, msg


def test_truncated_and_corrupted_text(tmp_path):
    data = open(os.path.join(FIX, "text-h15-c10.model"), "rb").read()
    lines = data.split(b"\n")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\n".join(lines[:6000]))
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, str(bad), "truncated", "line 6000")
    lines2 = list(lines)
    lines2[7000] = b"0.12x4"
    bad.write_bytes(b"\n".join(lines2))
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, "line 7001", "0.12x4")
    lines3 = list(lines)
    lines3[20] = b"hidden layer size: fifteen"
    bad.write_bytes(b"\n".join(lines3))
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, "line 21", "hidden layer size")
    lines4 = list(lines)
    lines4[40] = b"    12\t       228\tat\t0"
    bad.write_bytes(b"\n".join(lines4))
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, "line 41", "index 12")
    bad.write_bytes(data.replace(b"compression layer size: 0", b"compression layer size: 5"))
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, "compression layer", "not supported")
    bad.write_bytes(data + b"0.5\n")
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, "unexpected data")


def test_truncated_and_corrupted_binary(tmp_path):
    data = open(os.path.join(FIX, "bin-h16-c10.model"), "rb").read()
    bad = tmp_path / "bad.model"
    bad.write_bytes(data[:-1000])
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, str(bad), "truncated at byte", str(len(data) - 1000))
    bad.write_bytes(data + b"xyz")
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, f"byte {len(data)}")
    arr = bytearray(data)
    arr[-400:-396] = np.array([np.nan], "<f4").tobytes()
    bad.write_bytes(bytes(arr))
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, f"byte {len(data) - 400}", "non-finite")
    bad.write_bytes(data[:300])
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, "truncated at line")
    bad.write_bytes(b"version: 9\n" + data[11:])
    with pytest.raises(RnnlmError) as e:
        read_rnnlm04b(str(bad))
    _one_line(e, "line 1", "version 9")


def test_native_direct_hashes_equal_the_compat_ones():
    """The native kernels' hash (used to train direct connections) equals the one that reproduces
    rnnlm-0.4b's fixtures, so exported direct weights mean the same thing there."""
    from rnnlm.kernels import direct_hashes
    from rnnlm.kernels.rnnlm04b import rnnlm04b_direct_hashes
    rng = np.random.default_rng(0)
    for size in (2, 40, 1_000_000, 7_777_777):
        for K in (1, 2, 4, 6):
            for _ in range(50):
                hist = rng.integers(-1, 50_000, K).astype(np.int32)
                for cls in (-1, 0, 3, 99):
                    a = np.zeros(K, np.int64)
                    b = np.zeros(K, np.uint64)
                    direct_hashes(hist, K, cls, size, a)
                    rnnlm04b_direct_hashes(hist, K, size, cls, b)
                    assert a.tolist() == [int(v) for v in b], (size, K, hist, cls)


def test_stepping_a_compat_model_is_refused_clearly():
    from rnnlm import load
    from rnnlm.errors import RnnlmError
    m = load(os.path.join(FIX, "text-h15-c10.model"))
    with pytest.raises(RnnlmError, match="import-rnnlm --as native"):
        m.begin()


def test_native_import_steps_from_the_saved_state_as_score_does(tmp_path, capsys):
    """A model that saves its start state (rnnlm-0.4b's, imported --as native) must step and sample
    from that state, as scoring does: the words' step log-probabilities add up to score()."""
    from rnnlm import load
    new = str(tmp_path / "native.rnnlm")
    assert main(["import-rnnlm", os.path.join(FIX, "text-h15-c10.model"), new, "--as", "native"]) == 0
    capsys.readouterr()
    m = load(new)
    for sentence in ("the company said", "it is n't clear"):
        s, total = m.begin(), 0.0
        for w in sentence.split() + ["</s>"]:
            lp, s = m.step(s, w)
            total += lp
        assert abs(total - m.score(sentence)) < 1e-5, (sentence, total, m.score(sentence))
