"""The schedule's options: --asgd (the averaged weights are the mean of the weights after each chunk
since the trigger; validation and the model file use them; resume is bit-identical) and --patience
(one flat epoch does not start halving; the model file holds the best weights)."""
import math
import os

import numpy as np
import pytest

from rnnlm.training import loop as train_mod
from rnnlm.cli.app import main
from rnnlm.model.config import TrainConfig
from rnnlm.use.evaluate import stream_logprobs
from rnnlm.model.file import load_model
from rnnlm.training.schedule import Schedule, decide
from test_train import data, kill_and_resume, make, sha  # noqa: F401  (data is a fixture)


def valid_ppl(t, mf, va):
    return math.exp(-stream_logprobs(mf.config, mf.params, t.classes, va, t.eos).mean())


def old_rule(valids, min_improvement):
    """rnnlm-0.4b's schedule as train.py had it before rnnlm/training/schedule.py: (rolled back, lr factor
    used in the next epoch, done) after each epoch."""
    last, halving, lr, out = None, False, 1.0, []
    for v in valids:
        rolled = last is not None and v > last
        done = False
        if last is not None and v * min_improvement > last:
            done = halving
            halving = True
        if halving and not done:
            lr *= 0.5
        last = v
        out.append((rolled, lr, done))
        if done:
            break
    return out


@pytest.mark.parametrize("valids", [[8.0, 7.0, 6.99, 6.5, 6.4, 6.399], [8.0, 8.1, 7.0, 7.2, 7.1, 7.05],
                                    [5.0, 4.0, 3.0, 2.9, 2.8, 2.79, 2.5]])
def test_patience_one_is_the_rnnlm_rule(valids):
    s, got = Schedule(lr=1.0), []
    for v in valids:
        d = decide(s, v, 1.003, 1, False)
        if s.halving and not s.done:
            s.lr *= 0.5
        got.append((d.restore, s.lr, s.done))
        assert d.keep == (not d.restore)
        if s.done:
            break
    assert got == old_rule(valids, 1.003)


def test_patience_waits_for_k_flat_epochs_and_returns_to_the_best():
    s = Schedule(lr=1.0)
    events = [decide(s, v, 1.01, 2, False) for v in (8.0, 7.0, 7.1, 6.0, 6.0, 6.05)]
    assert [d.event for d in events] == ["", "", "", "", "", "halve"]   # 7.1 alone did not start it
    assert [d.keep for d in events] == [True, True, False, True, False, False]
    assert events[-1].restore and s.best_valid == 6.0 and s.halving and not s.done
    d1, d2 = decide(s, 5.999, 1.01, 2, False), decide(s, 5.998, 1.01, 2, False)
    assert d1.keep and not d1.event and d2.keep and d2.event == "stop" and s.done
    s = Schedule(lr=1.0)   # --asgd: the first action starts averaging, the second halving
    assert [decide(s, v, 1.01, 1, True).event for v in (8.0, 8.0, 7.0, 7.0, 6.99)] == \
        ["", "average", "", "halve", "stop"]


def test_asgd_model_is_the_mean_of_the_chunk_weights(data, tmp_path, monkeypatch):
    """min-improvement 10 makes epoch 2 fail: averaging starts there; epoch 3's validation and the
    model file use the mean of the weights after each of epoch 3's chunks (a NumPy mean here)."""
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    t = make(vocab, tr, va, tmp_path / "m.rnnlm", asgd=True, min_improvement=10.0, max_epochs=3, seed=3)
    real, snaps = t._train_chunk, []

    def chunk(params, sstate, lr, a, b, data):
        out = real(params, sstate, lr, a, b, data)
        if b % t.avg_every == 0 or b == t._units():   # the fixed points the average samples
            snaps.append(params.flat.copy())
        return out

    monkeypatch.setattr(t, "_train_chunk", chunk)
    mf = t.run()
    h = mf.meta["history"]
    assert [e.get("event") for e in h] == [None, "average", "halve"]
    assert [e["averaged"] for e in h] == [False, False, True] and not h[2]["rolled_back"]
    per_epoch = -(-t._units() // t.avg_every)
    assert len(snaps) >= per_epoch >= 5   # (before averaging, chunks need not end on the fixed points)
    mean = np.mean(np.stack(snaps[-per_epoch:]).astype(np.float64), axis=0)
    saved = load_model(str(tmp_path / "m.rnnlm")).params.flat
    np.testing.assert_allclose(saved, mean, rtol=1e-6, atol=1e-8)
    assert not np.array_equal(saved, snaps[-1])           # not the last weights
    assert math.isclose(valid_ppl(t, mf, va), h[2]["valid_ppl"], rel_tol=1e-9)
    assert h[2]["valid_ppl"] < h[1]["valid_ppl"]          # the average is better than the trigger's


@pytest.mark.parametrize("kw,stop", [(dict(asgd=True, min_improvement=10.0, max_epochs=4), 17),
                                     (dict(asgd=True, min_improvement=10.0, max_epochs=4, schedule="batch",
                                           batch_size=4, bptt=5, lr=0.5), 8),
                                     (dict(patience=2, min_improvement=1.05, max_epochs=4), 12)])
def test_resume_is_bit_identical(data, tmp_path, monkeypatch, kw, stop):
    """A run killed inside the averaging phase (asgd) or a patience window, resumed from its last
    checkpoint, ends bit-identical to an uninterrupted one."""
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    kw = dict(kw, checkpoint_words=4000)
    mf = make(vocab, tr, va, tmp_path / "full.rnnlm", **kw).run()
    if kw.get("asgd"):
        assert any(e["averaged"] for e in mf.meta["history"])
    kill_and_resume(vocab, tr, va, tmp_path / "cut.rnnlm", stop, **kw)
    assert sha(tmp_path / "full.rnnlm") == sha(tmp_path / "cut.rnnlm")


def test_patience_model_holds_the_best_weights(data, tmp_path):
    vocab, tr, va = data
    t = make(vocab, tr, va, tmp_path / "m.rnnlm", patience=3, min_improvement=1.2, lr=0.4, max_epochs=4)
    mf = t.run()
    h = mf.meta["history"]
    assert h[3].get("event") == "halve" and not any(e.get("event") for e in h[:3])  # 3 failures in a row
    assert [e["lr"] for e in h] == [0.4] * 4
    assert math.isclose(valid_ppl(t, mf, va), min(e["valid_ppl"] for e in h), rel_tol=1e-9)


def test_cli_flags_round_trip(tmp_path, monkeypatch, capsys):
    from tiny import synthetic_slices
    monkeypatch.setenv("RNNLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    synthetic_slices(tmp_path, {"train.txt": (0, 1000), "valid.txt": (1000, 1150)})
    code = main(["train", "--train", "train.txt", "--valid", "valid.txt", "--model", "m.rnnlm", "--hidden", "8",
                 "--classes", "4", "--max-epochs", "2", "--asgd", "--patience", "3"])
    assert code == 0, capsys.readouterr().err
    tc = TrainConfig.from_dict(load_model("m.rnnlm").meta["train"])
    assert tc.asgd is True and tc.patience == 3
    assert TrainConfig.from_dict(dict(load_model("m.rnnlm").meta["train"], asgd=False)).asgd is False
    assert main(["train", "--train", "train.txt", "--valid", "valid.txt", "--model", "n.rnnlm",
                 "--patience", "0"]) == 1
    assert "--patience must be in 1..1000" in capsys.readouterr().err
