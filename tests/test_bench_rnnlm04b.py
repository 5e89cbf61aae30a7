"""scripts/rnnlm04b.py and scripts/results.py, what bench.py and ptb_rnnlm.py use to run rnnlm-0.4b beside
ours: parsing its output, the plumbing around a binary (here a stand-in script that prints what
rnnlm-0.4b prints), the results JSON; and, when $RNNLM04B names a real build and ../shared has the
fixtures, that the binary reproduces a fixture model byte for byte."""
from __future__ import annotations

import filecmp
import json
import os
import stat
import sys

import pytest

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "scripts")
sys.path.insert(0, SCRIPTS)
import rnnlm04b  # noqa: E402
import results as results_json  # noqa: E402

SHARED_FIX = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "rnnlm-0.4b")

# what rnnlm-0.4b -train printed for the fixture text-h15-c10 (first epochs), \r included
LOG = ("train file: train.txt\nvalid file: valid.txt\nclass size: 10\nHidden layer size: 15\n"
       "rnnlm file: m\nStarting training using file train.txt\nVocab size: 4988\nWords in train file: 44328\n"
       "Iter:   0\tAlpha: 0.100000\t   \rIter:   0\tAlpha: 0.100000\t   TRAIN entropy: 8.9701    "
       "Words/sec: 105375.1   VALID entropy: 8.7557\n"
       "Iter:   1\tAlpha: 0.100000\t   \rIter:   1\tAlpha: 0.100000\t   TRAIN entropy: 8.6920    "
       "Progress: 50.00%   Words/sec: 99999.0 "
       "\rIter:   1\tAlpha: 0.100000\t   TRAIN entropy: 8.6920    Words/sec: 118756.9   VALID entropy: 8.6038\n"
       "Iter:   2\tAlpha: 0.050000\t   \rIter:   2\tAlpha: 0.050000\t   TRAIN entropy: 8.4790    "
       "Words/sec: 119700.1   VALID entropy: 8.5030\n")

FAKE = r'''#!/usr/bin/env python3
# stands in for rnnlm-0.4b: prints what it prints, writes the files it writes
import sys, time
a = sys.argv[1:]
if not a:
    print("Recurrent neural network based language modeling toolkit v 0.3d\n"); sys.exit(0)
opt = lambda k: a[a.index(k) + 1]
if "-train" in a:
    assert len(opt("-rnnlm")) < 100 and len(opt("-train")) < 100
    n = len(open(opt("-train")).read().split())
    print(f"Vocab size: 7\nWords in train file: {n}")
    for it in range(int(opt("-max-iter")) if "-max-iter" in a else 2):
        print(f"Iter: {it:3d}\tAlpha: 0.100000\t   ", end="", flush=True)
        time.sleep(0.05)
        print(f"\rIter: {it:3d}\tAlpha: 0.100000\t   TRAIN entropy: {8 - it:.4f}    Words/sec: {1000 * (it + 1):.1f}   ",
              end="")
        print(f"VALID entropy: {7.5 - it:.4f}")
    open(opt("-rnnlm"), "w").write("model\n"); open(opt("-rnnlm") + ".output.txt", "w").write("log\n")
else:
    assert open(opt("-rnnlm")).read() == "model\n"
    print("\ntest log probability: -200.000000\n\nPPL net: 100.000000")
'''


@pytest.fixture
def fake(tmp_path):
    p = tmp_path / "fake-rnnlm"
    p.write_text(FAKE)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_parse_train_output():
    epochs, head = rnnlm04b.parse_train_output(LOG)
    assert head == dict(vocab_size=4988, train_words=44328)
    assert [e.iter for e in epochs] == [0, 1, 2]                      # the progress line is not an epoch
    assert [e.words_per_sec for e in epochs] == [105375.1, 118756.9, 119700.1]
    assert [e.valid_entropy for e in epochs] == [8.7557, 8.6038, 8.5030]
    assert epochs[2].alpha == 0.05 and epochs[1].train_entropy == 8.692
    assert all(e.train_seconds is None for e in epochs)                # no timings given


def test_find_binary(monkeypatch, tmp_path, fake):
    monkeypatch.delenv(rnnlm04b.ENV, raising=False)
    assert rnnlm04b.find_binary(None, required=False) is None
    with pytest.raises(SystemExit, match="--rnnlm04b PATH or set RNNLM04B"):
        rnnlm04b.find_binary(None)
    with pytest.raises(SystemExit, match="no such file"):
        rnnlm04b.find_binary(str(tmp_path / "none"))
    monkeypatch.setenv(rnnlm04b.ENV, fake)
    assert rnnlm04b.find_binary(None) == fake
    other = tmp_path / "true"
    other.write_text("#!/bin/sh\necho hello\n")
    other.chmod(0o755)
    with pytest.raises(SystemExit, match="does not look like rnnlm-0.4b"):
        rnnlm04b.find_binary(str(other))


def test_train_and_test_plumbing(tmp_path, fake):
    deep = tmp_path / ("d" * 120)                                    # paths longer than its char[100]
    deep.mkdir()
    for s in ("train", "valid", "test"):
        (deep / f"{s}.txt").write_text("a b c\nb c\n\nc a\n")
    model = str(deep / "m.model")
    seen = []
    r = rnnlm04b.train(fake, str(deep / "train.txt"), str(deep / "valid.txt"), model, hidden=5, classes=2, bptt=4,
                       bptt_block=10, max_iter=3, on_epoch=seen.append)
    assert [e.iter for e in seen] == [0, 1, 2] and len(r.epochs) == 3
    assert r.median_wps == 2000.0 and r.train_words == 7 and r.vocab_size == 7
    assert all(e.train_seconds and e.train_seconds >= 0.04 for e in r.epochs)   # wall clock of each pass
    assert open(model).read() == "model\n" and os.path.exists(model + ".output.txt")
    assert "-max-iter" in r.cmd and r.cmd[r.cmd.index("-hidden") + 1] == "5"
    t = rnnlm04b.test(fake, model, str(deep / "test.txt"), runs=2)
    assert t.ppl == 100.0 and t.log10_prob == -200.0 and t.words_scored == 100
    assert t.tokens == (3 + 1) + (2 + 1) + (0 + 1) + (2 + 1) and t.load_seconds is not None   # words + one </s> a line
    json.dumps(r.to_dict()), json.dumps(t.to_dict())


def test_results_json(tmp_path):
    path = results_json.write("x", [dict(a=1)], started=0.0, extra=dict(data="d"), out_dir=str(tmp_path))
    doc = json.load(open(path))
    assert doc["rows"] == [dict(a=1)] and doc["data"] == "d"
    assert set(doc["machine_info"]) >= {"cpu", "cores", "python", "numpy", "numba", "loadavg"}
    assert isinstance(doc["revision"], str) and isinstance(doc["dirty"], bool) and doc["date"].endswith("UTC")
    assert doc["command"].startswith("python ") and isinstance(doc["machine"], str) and doc["tables"] == {}


@pytest.mark.skipif(not os.environ.get(rnnlm04b.ENV) or not os.path.isdir(SHARED_FIX),
                    reason="needs $RNNLM04B (a real rnnlm-0.4b build) and ../shared/fixtures")
def test_real_binary_reproduces_a_fixture(tmp_path):
    binary = rnnlm04b.find_binary(None)
    f = lambda s: os.path.join(SHARED_FIX, s)
    model = str(tmp_path / "text-h15-c10.model")
    r = rnnlm04b.train(binary, f("train.txt"), f("valid.txt"), model, hidden=15, classes=10, bptt=3, bptt_block=5)
    assert filecmp.cmp(model, f("text-h15-c10.model"), shallow=False)
    t = rnnlm04b.test(binary, model, f("test.txt"), load_time=False)
    assert t.ppl == 296.280327 and len(r.epochs) == 11
