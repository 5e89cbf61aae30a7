"""Training: it learns, same seed gives the same bytes, a killed run resumed ends bit-identical."""
import hashlib
import math
import json
import os

import numpy as np
import pytest

from rnnlm.training import loop as train_mod
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.use.evaluate import stream_logprobs
from rnnlm.model.file import Params
from rnnlm.data.text import read_lines
from rnnlm.data.tokenizer import WordVocab
from rnnlm.training.loop import Trainer

SYN = os.path.join(os.path.dirname(__file__), "..", "corpora", "synthetic")


@pytest.fixture(scope="module")
def data():
    tr = read_lines(os.path.join(SYN, "train.txt"))[:2500]
    va = read_lines(os.path.join(SYN, "valid.txt"))[:300]
    vocab = WordVocab.build(tr, num_classes=8)
    return vocab, vocab.encode_lines(tr).ids, vocab.encode_lines(va).ids


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def unigram_ppl(vocab, valid_ids):
    p = vocab.counts / vocab.counts.sum()
    return math.exp(-np.log(p[valid_ids]).mean())


def make(vocab, tr, va, path, **kw):
    mkw = {k: kw.pop(k) for k in ("direct_size", "direct_order", "bias", "tie") if k in kw}
    mc = ModelConfig(vocab_size=len(vocab), hidden=kw.pop("hidden", 24), classes=kw.pop("classes", vocab.num_classes),
                     **mkw)
    tc = TrainConfig(**{"max_epochs": 3, "checkpoint_words": 0, **kw})
    return Trainer(mc, tc, vocab, tr, va, str(path), log=lambda m: None, progress=False)


@pytest.mark.parametrize("schedule,extra", [("rnnlm", {}), ("batch", dict(batch_size=8, bptt=5, lr=1.0)),
                                            ("batch", dict(batch_size=4, bptt=4, lr=0.5, classes=0)),
                                            ("rnnlm", dict(direct_size=100_000, direct_order=3, bias=False)),
                                            ("batch", dict(batch_size=8, bptt=5, lr=1.0, direct_size=100_000))])
def test_training_beats_unigram(data, tmp_path, schedule, extra):
    vocab, tr, va = data
    t = make(vocab, tr, va, tmp_path / "m.rnnlm", schedule=schedule, **extra)
    mf = t.run()
    lp = stream_logprobs(mf.config, mf.params, t.classes, va, vocab.eos_id)
    ppl = math.exp(-lp.mean())
    uni = unigram_ppl(vocab, va)
    # direct n-gram features over-fit 25k training words a little (train ppl falls faster than valid)
    assert ppl < (0.6 if extra.get("direct_size") else 0.5) * uni, (ppl, uni)
    hist = mf.meta["history"]
    assert len(hist) == 3 and hist[-1]["valid_ppl"] < hist[0]["valid_ppl"]
    # the saved weights are those after the last epoch that was kept (a worse one is rolled back)
    kept = [h for h in hist if not h["rolled_back"]]
    assert math.isclose(kept[-1]["valid_ppl"], ppl, rel_tol=1e-9)
    if mf.config.direct_size:
        assert np.count_nonzero(mf.params.direct) > 1000    # the direct connections learnt
    if not mf.config.bias:
        assert not mf.params.bh.any() and not mf.params.bo.any() and not mf.params.bc.any()
    assert os.path.exists(str(tmp_path / "m.rnnlm.log.jsonl"))


def test_same_seed_same_bytes(data, tmp_path):
    vocab, tr, va = data
    make(vocab, tr, va, tmp_path / "a.rnnlm", max_epochs=2).run()
    make(vocab, tr, va, tmp_path / "b.rnnlm", max_epochs=2).run()
    assert sha(tmp_path / "a.rnnlm") == sha(tmp_path / "b.rnnlm")
    make(vocab, tr, va, tmp_path / "c.rnnlm", max_epochs=2, seed=2).run()
    assert sha(tmp_path / "a.rnnlm") != sha(tmp_path / "c.rnnlm")


@pytest.mark.parametrize("schedule", ["rnnlm", "batch"])
@pytest.mark.parametrize("stop", [1, 3, 5])
def test_kill_and_resume_is_bit_identical(data, tmp_path, monkeypatch, schedule, stop):
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    # chunks adapt to the speed (train.CHUNK_SECONDS), so they differ from run to run: a checkpoint at
    # every chunk boundary (checkpoint_words=1) makes the killed run resume from its last one
    kw = dict(schedule=schedule, max_epochs=3, checkpoint_words=1, direct_size=20_000 if stop == 3 else 0)
    if schedule == "batch":
        kw.update(batch_size=4, bptt=5, lr=0.5)
    make(vocab, tr, va, tmp_path / "full.rnnlm", **kw).run()
    kill_and_resume(vocab, tr, va, tmp_path / "cut.rnnlm", stop, **kw)
    assert sha(tmp_path / "full.rnnlm") == sha(tmp_path / "cut.rnnlm")


@pytest.mark.parametrize("kw", [dict(), dict(schedule="batch", batch_size=4, bptt=5, lr=0.5), dict(threads=2)],
                         ids=["rnnlm", "batch", "rnnlm-2threads"])
def test_chunk_sizes_do_not_change_the_model_file(data, tmp_path, monkeypatch, kw):
    """Chunks adapt to the measured speed; the smallest chunks (one grain) and the largest give
    the same bytes: weights, and the training entropies in the history (summed exactly)."""
    vocab, tr, va = data
    for name, seconds in (("small.rnnlm", 1e-12), ("large.rnnlm", 1e12)):
        monkeypatch.setattr(train_mod, "CHUNK_SECONDS", seconds)
        make(vocab, tr, va, tmp_path / name, max_epochs=2, checkpoint_words=0, **kw).run()
    assert sha(tmp_path / "small.rnnlm") == sha(tmp_path / "large.rnnlm")


def kill_and_resume(vocab, tr, va, path, stop, **kw):
    """Train until the process 'dies' after `stop` chunks (only the last checkpoint survives), then
    resume to the end."""
    t = make(vocab, tr, va, path, **kw)
    t.stop_after_chunks = stop
    with pytest.raises(KeyboardInterrupt):
        t.run()
    make(vocab, tr, va, path, **kw).run(resume=True)


def test_resume_refuses_other_data(data, tmp_path):
    vocab, tr, va = data
    t = make(vocab, tr, va, tmp_path / "m.rnnlm", max_epochs=1)
    t.run()
    from rnnlm.errors import RnnlmError
    with pytest.raises(RnnlmError, match="other training/validation data"):
        make(vocab, tr[:-50], va, tmp_path / "m.rnnlm", max_epochs=1).run(resume=True)


def test_shard_replicas_are_kept_across_chunks(data, tmp_path, monkeypatch):
    """The rnnlm schedule on 2 threads keeps its shards' replicas of the weights from chunk to chunk
    (they come with the epoch's data): after every chunk each replica equals the weights, and the
    chunks give the same bits as with replicas copied afresh from the weights for every chunk."""
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "SYNC_WORDS", 300)
    runs = []
    for fresh in (False, True):
        t = make(vocab, tr, va, tmp_path / "m.rnnlm", threads=2, seed=5)
        params = Params.init(t.mcfg, np.random.default_rng(5))
        sstate = t._fresh_stream_state()
        starts, lens, reps = t._epoch_data(params)
        units = t._units()
        for a in range(0, units, 1000):   # chunks of 1000 words of each shard: 3-4 merges each
            if fresh:
                reps = np.ascontiguousarray(np.broadcast_to(params.flat, reps.shape))
            t._train_chunk(params, sstate, 0.1, a, min(units, a + 1000), (starts, lens, reps))
            assert (reps == params.flat).all()
        runs.append(params.flat.copy())
    assert t.shards == 2 and units > 3000
    assert np.array_equal(runs[0], runs[1])


def test_divergence_is_rolled_back_and_training_continues(data, tmp_path, monkeypatch):
    """A chunk whose loss is not finite (here: injected once) rolls the epoch back to the last good
    weights and restarts it with a lower rate; the saved model never holds a non-finite weight."""
    vocab, tr, va = data
    t = make(vocab, tr, va, tmp_path / "m.rnnlm", max_epochs=2, lr=0.1)
    real = t._train_chunk
    calls = {"n": 0}

    def chunk(params, sstate, lr, a, b, d):
        calls["n"] += 1
        lp, n = real(params, sstate, lr, a, b, d)
        if calls["n"] == 2:                      # the 2nd chunk of epoch 1 blows up
            params.flat[:5] = np.nan
            return float("nan"), n
        return lp, n

    monkeypatch.setattr(t, "_train_chunk", chunk)
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    t.chunk = 4000
    mf = t.run()
    hist = mf.meta["history"]
    assert hist[0]["diverged"] and hist[0]["lr"] == 0.1
    good = [h for h in hist if not h.get("diverged")]
    assert len(good) == 2 and good[0]["lr"] == 0.05      # the epoch was redone at half the rate
    assert np.isfinite(mf.params.flat).all()
    from rnnlm.model.file import load_model
    assert np.isfinite(load_model(str(tmp_path / "m.rnnlm")).params.flat).all()


def test_repeated_divergence_stops_with_a_clear_error(data, tmp_path):
    from rnnlm.errors import RnnlmError
    from rnnlm.model.file import load_model
    vocab, tr, va = data
    t = make(vocab, tr, va, tmp_path / "m.rnnlm", schedule="batch", batch_size=4, bptt=5, lr=1e12, max_epochs=3)
    with pytest.raises(RnnlmError, match="diverged 3 times in a row.*no epoch completed"):
        t.run()
    assert not (tmp_path / "m.rnnlm").exists()           # nothing learnt: no model written
    assert not (tmp_path / "m.rnnlm.log.jsonl").exists()
    # after one good epoch, a run that then diverges keeps that epoch's weights
    t = make(vocab, tr, va, tmp_path / "m2.rnnlm", schedule="batch", batch_size=4, bptt=5, max_epochs=5)
    real = t._end_epoch

    def end_epoch(params, saved, sched, seconds, words):
        real(params, saved, sched, seconds, words)
        sched.lr = 1e12                                   # every later epoch diverges
    t._end_epoch = end_epoch
    with pytest.raises(RnnlmError, match="diverged 3 times in a row.*holds the last good weights"):
        t.run()
    mf = load_model(str(tmp_path / "m2.rnnlm"))
    assert np.isfinite(mf.params.flat).all() and not mf.meta["history"][0].get("diverged")
    log = [json.loads(x) for x in (tmp_path / "m2.rnnlm.log.jsonl").read_text().splitlines()]
    assert [bool(e.get("diverged")) for e in log] == [False, True, True, True]


def test_sigint_writes_a_checkpoint_and_resume_is_bit_identical(data, tmp_path, monkeypatch):
    import signal
    from rnnlm.training.loop import TrainingInterrupted
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    before = signal.getsignal(signal.SIGINT)   # SIG_IGN when the tests run in the background (nohup, &)
    kw = dict(max_epochs=2, checkpoint_words=0)
    make(vocab, tr, va, tmp_path / "full.rnnlm", **kw).run()
    t = make(vocab, tr, va, tmp_path / "cut.rnnlm", **kw)
    real = t._train_chunk
    calls = {"n": 0}

    def chunk(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)      # Ctrl-C arrives while a chunk runs
        return real(*args)

    monkeypatch.setattr(t, "_train_chunk", chunk)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        t.run()
    assert os.path.exists(str(tmp_path / "cut.rnnlm.ckpt"))
    assert signal.getsignal(signal.SIGINT) is before                      # handler restored
    make(vocab, tr, va, tmp_path / "cut.rnnlm", **kw).run(resume=True)
    assert sha(tmp_path / "full.rnnlm") == sha(tmp_path / "cut.rnnlm")


@pytest.mark.parametrize("kind,nth", [("ckpt", 1), ("ckpt", 2), ("rollback", 1), ("ckpt after rollback", 1)])
def test_death_during_a_checkpoint_write_loses_nothing(data, tmp_path, monkeypatch, kind, nth):
    """The process dies while writing its nth checkpoint, or its nth new rollback copy, or the
    checkpoint that follows a new rollback copy (half a file on disk, never renamed): the previous
    checkpoint and the rollback file it names are intact, and resuming ends bit-identical to an
    uninterrupted run. The rollback copy is written only when it changed (not at every checkpoint)."""
    from rnnlm.model import file as model_mod
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    kw = dict(max_epochs=2, checkpoint_words=4000)
    make(vocab, tr, va, tmp_path / "full.rnnlm", **kw).run()
    real_savez = model_mod.np.savez
    count = {"ckpt": 0, "rollback": 0, "ckpt after rollback": 0}
    last = {"kind": None}

    class Died(BaseException):
        pass

    def dying_savez(fh, **arrays):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fh.fileno()}"))   # the temporary file's
        if name.startswith(".cut.rnnlm.ckpt.rollback"):
            what = ["rollback"]
        elif name.startswith(".cut.rnnlm.ckpt."):
            what = ["ckpt"] + (["ckpt after rollback"] if last["kind"] == "rollback" else [])
        else:
            what = []
        for w in what:
            count[w] += 1
        if what:
            last["kind"] = what[0]
        if kind in what and count[kind] == nth + 1:
            fh.write(b"PK\x03\x04 half a file")
            fh.flush()
            raise Died
        return real_savez(fh, **arrays)

    monkeypatch.setattr(model_mod.np, "savez", dying_savez)
    with pytest.raises(Died):
        make(vocab, tr, va, tmp_path / "cut.rnnlm", **kw).run()
    monkeypatch.setattr(model_mod.np, "savez", real_savez)
    assert count["ckpt"] > count["rollback"] >= 1     # checkpoints mostly reuse the rollback copy
    from rnnlm.model.file import load_model
    load_model(str(tmp_path / "cut.rnnlm.ckpt"))         # the previous checkpoint is whole
    make(vocab, tr, va, tmp_path / "cut.rnnlm", **kw).run(resume=True)
    assert sha(tmp_path / "full.rnnlm") == sha(tmp_path / "cut.rnnlm")
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cut.rnnlm.ckpt"))
    assert len(left) == 2 and left[0] == "cut.rnnlm.ckpt"   # one rollback slot, no temporary files


def test_resume_refuses_a_missing_or_different_rollback_copy(data, tmp_path):
    from rnnlm.errors import RnnlmError
    from rnnlm.training.files import ROLLBACK_SUFFIXES
    vocab, tr, va = data
    make(vocab, tr, va, tmp_path / "m.rnnlm", max_epochs=1).run()
    slot = [p for p in tmp_path.iterdir() if p.name.endswith(ROLLBACK_SUFFIXES)]
    assert len(slot) == 1
    data_bytes = bytearray(slot[0].read_bytes())
    data_bytes[-200] ^= 1                                  # one flipped bit inside the last array
    slot[0].write_bytes(bytes(data_bytes))
    with pytest.raises(RnnlmError, match="rollback copy .* (does not match|cannot be read)"):
        make(vocab, tr, va, tmp_path / "m.rnnlm", max_epochs=1).run(resume=True)
    slot[0].unlink()
    with pytest.raises(RnnlmError, match="rollback copy .* is missing"):
        make(vocab, tr, va, tmp_path / "m.rnnlm", max_epochs=1).run(resume=True)


def test_rnnlm_schedule_on_two_threads(data, tmp_path, monkeypatch):
    """--threads 2 with the per-word schedule: two shards trained at once, merged every SYNC_WORDS.
    It learns; the result depends on the thread count given, not on how many threads Numba runs;
    a kill and resume ends bit-identical."""
    import numba
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    monkeypatch.setattr(train_mod, "SYNC_WORDS", 700)
    kw = dict(threads=2, max_epochs=3, checkpoint_words=4000)
    mf = make(vocab, tr, va, tmp_path / "a.rnnlm", **kw).run()
    # merging the shards' changes costs some learning per epoch (one thread: about 41 here)
    assert mf.meta["history"][-1]["valid_ppl"] < 0.45 * unigram_ppl(vocab, va)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        make(vocab, tr, va, tmp_path / "b.rnnlm", **kw).run()
    finally:
        numba.set_num_threads(old)
    assert sha(tmp_path / "a.rnnlm") == sha(tmp_path / "b.rnnlm")
    kill_and_resume(vocab, tr, va, tmp_path / "c.rnnlm", 4, **kw)
    assert sha(tmp_path / "a.rnnlm") == sha(tmp_path / "c.rnnlm")


def test_resume_refuses_a_damaged_checkpoint(data, tmp_path):
    from rnnlm.errors import RnnlmError
    from rnnlm.model.file import load_model, save_model
    vocab, tr, va = data
    make(vocab, tr, va, tmp_path / "m.rnnlm", max_epochs=1).run()
    ck = load_model(str(tmp_path / "m.rnnlm.ckpt"))
    ck.arrays["stream_hs"] = ck.arrays["stream_hs"][:-1]          # valid archive, wrong shape
    save_model(str(tmp_path / "m.rnnlm.ckpt"), ck)
    with pytest.raises(RnnlmError, match="damaged checkpoint"):
        make(vocab, tr, va, tmp_path / "m.rnnlm", max_epochs=1).run(resume=True)


def test_dropout_learns_and_resumes_bit_identical(data, tmp_path, monkeypatch):
    """--dropout / --dropout-input (rnnlm schedule): it learns, draws new masks each epoch (so the
    model differs from a run without dropout), and a kill and resume ends bit-identical."""
    from rnnlm.errors import RnnlmError
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    kw = dict(max_epochs=3, checkpoint_words=4000, dropout=0.3, dropout_input=0.1)
    mf = make(vocab, tr, va, tmp_path / "a.rnnlm", **kw).run()
    assert mf.meta["history"][-1]["valid_ppl"] < 0.5 * unigram_ppl(vocab, va)
    make(vocab, tr, va, tmp_path / "plain.rnnlm", max_epochs=3, checkpoint_words=4000).run()
    assert sha(tmp_path / "a.rnnlm") != sha(tmp_path / "plain.rnnlm")
    kill_and_resume(vocab, tr, va, tmp_path / "b.rnnlm", 5, **kw)
    assert sha(tmp_path / "a.rnnlm") == sha(tmp_path / "b.rnnlm")
    with pytest.raises(RnnlmError, match="--dropout is implemented for --schedule rnnlm only"):
        TrainConfig(schedule="batch", dropout=0.2)
    with pytest.raises(RnnlmError, match=r"--dropout-input must be in \[0, 1\)"):
        TrainConfig(dropout_input=1.0)


def test_params_init_is_the_one_call_draw_in_bounded_memory(monkeypatch):
    """Params.init draws in pieces: the same bits as one rng.uniform(size=(3, *shape)).sum(axis=0)
    per block (models trained before still reproduce), and its peak memory beside the parameters
    is about 8 bytes a weight (it was 36: 2.2 GB at V = 300k, hidden 100)."""
    import tracemalloc
    from rnnlm.model import file as file_mod
    from rnnlm.model.config import ModelConfig
    from rnnlm.model.file import Params
    cfg = ModelConfig(vocab_size=5003, hidden=37, classes=71)
    monkeypatch.setattr(file_mod, "INIT_PIECE", 1000)
    got = Params.init(cfg, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    want = Params(cfg)
    for name in ("emb", "rec", "out_w", "cls_w"):
        blk = want.block(name)
        blk[...] = rng.uniform(-cfg.init_scale, cfg.init_scale, size=(3,) + blk.shape).sum(axis=0).astype(blk.dtype)
    assert got.flat.tobytes() == want.flat.tobytes()
    monkeypatch.setattr(file_mod, "INIT_PIECE", 1 << 16)
    big = ModelConfig(vocab_size=100_000, hidden=20, classes=316)
    tracemalloc.start()
    try:
        p = Params.init(big, np.random.default_rng(1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    extra = (peak - p.flat.nbytes) / p.flat.size
    assert extra < 10, f"{extra:.1f} bytes a weight beside the parameters"


@pytest.mark.parametrize("classes", [8, 0])
def test_tied_model_trains_saves_loads_and_resumes(data, tmp_path, monkeypatch, classes):
    """--tie end to end: it learns, the file stores the tied matrix once and loads tied, scoring
    reads the same model the trainer validated, and a kill and resume ends bit-identical."""
    from rnnlm.errors import RnnlmError
    from rnnlm.model.file import load_model
    from rnnlm.use.evaluate import stream_logprobs
    vocab, tr, va = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    kw = dict(max_epochs=3, checkpoint_words=4000, tie=True, classes=classes)
    mf = make(vocab, tr, va, tmp_path / "t.rnnlm", **kw).run()
    # it learns (here, small and short, more slowly than untied: 50.6 / 78.3 against 41.4 / 41.8)
    assert mf.meta["history"][-1]["valid_ppl"] < 0.7 * unigram_ppl(vocab, va)
    back = load_model(str(tmp_path / "t.rnnlm"))
    assert back.config.tie and back.params.out_w is back.params.emb
    untied = make(vocab, tr, va, tmp_path / "u.rnnlm", **{**kw, "tie": False})
    assert back.params.flat.size == Params.init(untied.mcfg, np.random.default_rng(0)).flat.size - len(vocab) * 24
    t = make(vocab, tr, va, tmp_path / "x.rnnlm", **kw)
    lp = stream_logprobs(back.config, back.params, t.classes, va, vocab.eos_id)
    assert 2 ** float(-lp.sum() / len(lp) / math.log(2)) == pytest.approx(mf.meta["history"][-1]["valid_ppl"], rel=1e-9)
    kill_and_resume(vocab, tr, va, tmp_path / "c.rnnlm", 3, **kw)
    assert sha(tmp_path / "t.rnnlm") == sha(tmp_path / "c.rnnlm")
    for bad in (dict(threads=2), dict(schedule="batch", lr=1.0)):
        with pytest.raises(RnnlmError, match="--tie trains with --schedule rnnlm on one thread"):
            make(vocab, tr, va, tmp_path / "b.rnnlm", **{**kw, **bad})
