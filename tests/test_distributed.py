"""Data-parallel training on Ray (rnnlm.training.distributed, `rnnlm train --workers N`): 2 local workers
train exactly what 2 thread shards train, the same seed gives the same weights, a worker that dies
leaves the last checkpoint and --resume ends bit-identical; bad options are one-line errors.
The Ray tests share one local Ray (2 CPUs) and skip when Ray is not installed."""
import hashlib
import logging
import os
import sys

import numpy as np
import pytest

from rnnlm.training import loop as train_mod
from rnnlm.cli.app import main
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.errors import RnnlmError
from rnnlm.data.text import read_lines
from rnnlm.data.tokenizer import WordVocab
from rnnlm.training.loop import Trainer

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason='Ray is not installed: pip install -e ".[test,distributed]"')

SYN = os.path.join(os.path.dirname(__file__), "..", "corpora", "synthetic")


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():   # pragma: no cover (another module's Ray)
        yield
        return
    # "local": a Ray of the tests' own (without it ray.init joins a Ray already running on the machine);
    # its workers at niceness 0, as `rnnlm train --workers` starts them (Ray's default is 15)
    old = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    finally:
        if old is None:
            del os.environ["RAY_worker_niceness"]
        else:
            os.environ["RAY_worker_niceness"] = old
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tr = read_lines(os.path.join(SYN, "train.txt"))[:2500]
    va = read_lines(os.path.join(SYN, "valid.txt"))[:300]
    vocab = WordVocab.build(tr, num_classes=8)
    tr_ids = vocab.encode_lines(tr).ids
    path = str(tmp_path_factory.mktemp("ids") / "train.npy")   # what corpus.prepare caches
    np.save(path, np.asarray(tr_ids, dtype=np.int32))
    return vocab, tr_ids, vocab.encode_lines(va).ids, path


def make(vocab, tr, va, path, ids_path=None, **kw):
    from rnnlm.training.distributed import DistributedTrainer
    mc = ModelConfig(vocab_size=len(vocab), hidden=24, classes=vocab.num_classes)
    tc = TrainConfig(**{"max_epochs": 2, "checkpoint_words": 0, "sync_words": 700, "seed": 3, **kw})
    if tc.workers:
        return DistributedTrainer(mc, tc, vocab, tr, va, str(path), log=lambda m: None, progress=False,
                                  ids_path=ids_path)
    return Trainer(mc, tc, vocab, tr, va, str(path), log=lambda m: None, progress=False)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@needs_ray
def test_two_workers_train_what_two_threads_train(local_ray, data, tmp_path, monkeypatch):
    """--workers 2 equals --threads 2 (same seed and merge interval) weight for weight, epoch for
    epoch; twice the same seed gives the same weights, whether the workers read their shard from the
    id file or get it through the object store; --workers 1 equals --threads 1."""
    vocab, tr, va, ids_path = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    threads = make(vocab, tr, va, tmp_path / "t.rnnlm", threads=2).run()
    workers = make(vocab, tr, va, tmp_path / "w.rnnlm", ids_path=ids_path, workers=2).run()
    assert np.array_equal(threads.params.flat, workers.params.flat)
    hist = lambda mf: [(h["train_entropy"], h["valid_entropy"]) for h in mf.meta["history"]]   # noqa: E731
    assert hist(threads) == hist(workers) and len(hist(workers)) == 2
    assert hist(workers)[-1][1] < hist(workers)[0][1]   # it learns
    again = make(vocab, tr, va, tmp_path / "w2.rnnlm", workers=2).run()   # shards shipped
    assert np.array_equal(again.params.flat, workers.params.flat)
    one = make(vocab, tr, va, tmp_path / "one.rnnlm", threads=1).run()   # merging costs a little
    assert not np.array_equal(one.params.flat, workers.params.flat)
    # one worker is rnnlm-0.4b's procedure on one thread (nothing to merge)
    one_worker = make(vocab, tr, va, tmp_path / "w1.rnnlm", ids_path=ids_path, workers=1).run()
    assert np.array_equal(one.params.flat, one_worker.params.flat)


@needs_ray
def test_dead_worker_keeps_the_checkpoint_and_resume_ends_bit_identical(local_ray, data, tmp_path, monkeypatch):
    """A worker killed mid-epoch: one-line RnnlmError, the last checkpoint stays; --resume (new
    workers) ends bit-identical to an uninterrupted 2-worker run, dropout masks included."""
    from rnnlm.training.distributed import DistributedTrainer
    vocab, tr, va, ids_path = data
    monkeypatch.setattr(train_mod, "CHUNK_WORDS", 4000)
    kw = dict(workers=2, checkpoint_words=4000, dropout=0.2)
    make(vocab, tr, va, tmp_path / "full.rnnlm", ids_path=ids_path, **kw).run()

    real = DistributedTrainer._train_chunk
    calls = {"n": 0}

    def dying(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:   # epoch 1 has 4 chunks of 2 x 2000 words: this is epoch 2's first
            ray.kill(self.workers[1])
        return real(self, *args)

    monkeypatch.setattr(DistributedTrainer, "_train_chunk", dying)
    with pytest.raises(RnnlmError, match=r"a Ray worker died .*--resume") as err:
        make(vocab, tr, va, tmp_path / "cut.rnnlm", ids_path=ids_path, **kw).run()
    assert "\n" not in str(err.value)
    assert os.path.exists(tmp_path / "cut.rnnlm.ckpt")
    monkeypatch.setattr(DistributedTrainer, "_train_chunk", real)
    make(vocab, tr, va, tmp_path / "cut.rnnlm", ids_path=ids_path, **kw).run(resume=True)
    assert sha(tmp_path / "full.rnnlm") == sha(tmp_path / "cut.rnnlm")


@needs_ray
def test_cli_two_workers_and_resume_options(local_ray, tmp_path, capsys):
    """`rnnlm train --workers 2` through the CLI (the workers read the prepared id cache); --resume
    keeps the checkpoint's worker count and refuses another; more workers than CPUs is refused."""
    tr, va = tmp_path / "tr.txt", tmp_path / "va.txt"
    lines = read_lines(os.path.join(SYN, "train.txt"))[:600]
    tr.write_text("\n".join(lines) + "\n")
    va.write_text("\n".join(read_lines(os.path.join(SYN, "valid.txt"))[:50]) + "\n")
    base = ["train", "--train", str(tr), "--valid", str(va), "--model", str(tmp_path / "m.rnnlm"),
            "--hidden", "8", "--classes", "5", "--max-epochs", "1", "--cache-dir", str(tmp_path / "cache")]
    assert main(base + ["--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "workers 2 (Ray)" in out and "epoch   1" in out
    assert main(base + ["--resume", "--workers", "3"]) == 1
    assert "was made with --workers 2; resume with the same setting" in capsys.readouterr().err
    assert main(base + ["--workers", "3", "--force"]) == 1   # the shared Ray has 2 CPUs
    assert capsys.readouterr().err == "rnnlm: error: --workers 3 needs 3 CPUs; the Ray cluster has 2\n"
    assert ray.is_initialized()   # a Ray the run did not start is left running


def _one_line_error(argv, capsys, match):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rnnlm: error: ") and match in err, err


def test_bad_worker_options_are_one_line_errors(tmp_path, capsys, monkeypatch):
    tr = tmp_path / "tr.txt"
    tr.write_text("a b c\nb c a\n")
    base = ["train", "--train", str(tr), "--valid", str(tr), "--model", str(tmp_path / "m.rnnlm"),
            "--cache-dir", str(tmp_path / "cache")]
    _one_line_error(base + ["--workers", "0"], capsys, "--workers must be >= 1, got 0")
    _one_line_error(base + ["--workers", "2", "--sync-words", "-5"], capsys, "--sync-words must be >= 1")
    _one_line_error(base + ["--workers", "2", "--threads", "2"], capsys, "give --workers or --threads, not both")
    _one_line_error(base + ["--ray-address", "auto"], capsys, "--ray-address needs --workers N")
    if ray is not None:
        _one_line_error(base + ["--workers", "2", "--schedule", "batch"], capsys,
                        "--workers is implemented for --schedule rnnlm only")
    monkeypatch.setitem(sys.modules, "ray", None)   # as if Ray were not installed
    _one_line_error(base + ["--workers", "2"], capsys, 'pip install "rnnlm-numba[distributed]"')
    assert not os.path.exists(tmp_path / "m.rnnlm")
    assert main(base + ["--hidden", "4", "--max-epochs", "1"]) == 0   # training without Ray is untouched


def test_sparse_blocks_merge_as_the_dense_replicas():
    """kernels.mixing: shipping only the changed blocks of each replica and merging them
    (merge_sent) gives exactly seq.merge_pieces over the whole dense replicas, and the returned
    merged blocks bring a replica back to the merged weights."""
    from rnnlm.kernels import mixing as KM
    from rnnlm.kernels import word as KS
    rng = np.random.default_rng(0)
    P, block, T = 1003, 10, 3
    base = rng.standard_normal(P).astype(np.float32)
    reps = np.stack([base] * T)
    for t in range(T):   # scattered changes, some weights changed by several shards
        idx = rng.choice(P, 60, replace=False)
        reps[t, idx] += rng.standard_normal(60).astype(np.float32)
    reps[1, P - 1] += 1.0   # the short last block
    dense_base, dense_reps = base.copy(), reps.copy()
    whole = np.array([[0, P]], dtype=np.int64)
    KS.merge_pieces(whole, 0, 1, dense_base, dense_reps)

    blocks = [KM.changed_blocks(base, reps[t], whole, block) for t in range(T)]
    values = [KM.gather_blocks(reps[t], b, block) for t, b in enumerate(blocks)]
    assert all(0 < len(b) < P // block for b in blocks) and (P - 1) // block in blocks[1]
    union = np.unique(np.concatenate(blocks))
    offs = lambda arrays: np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)   # noqa: E731
    mine = base.copy()
    merged = KM.merge_sent(mine, union, block, np.concatenate(blocks), np.concatenate(values), offs(blocks),
                           offs(values))
    assert np.array_equal(mine, dense_base)
    again = reps[0].copy()
    KM.scatter_blocks(again, union, block, merged)
    assert np.array_equal(again, dense_reps[0])
    # looking only at some pieces finds only the blocks there
    part = np.array([[0, 95], [400, 401]], dtype=np.int64)
    found = KM.changed_blocks(base, reps[0], part, block)
    assert set(found.tolist()) <= set(range(10)) | {40}
