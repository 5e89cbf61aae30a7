"""Hierarchical softmax against the class softmax at a large vocabulary: training words/s on one thread.

    python scripts/bench_hs.py [--types 300001] [--tokens 1500000] [--classes 550] [--hidden 100]
                               [--words 200000] [--dir /tmp/hs_bench]

Generates a Zipf corpus (every one of --types word types at least once, the rest drawn with
P(rank r) ~ 1 / r; lines of 20 words) under --dir (not in the repository), builds its vocabulary,
and times the training path itself (Trainer._train_chunk, as `rnnlm train` runs it) for
`--softmax hs` and the class softmax (--classes), in the per-word schedule (rnnlm-0.4b's: bptt 4,
bptt-block 10) and the batch schedule (32 streams x 4 steps): one chunk first (compilation, caches;
not counted), then about --words words, the two softmaxes alternating chunk by chunk so that the
machine's slow spells hit both alike. Prints words/s of each and the ratio.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def make_corpus(path: str, types: int, tokens: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    extra = max(0, tokens - types)
    p = 1.0 / np.arange(1, types + 1)
    ids = np.concatenate([np.arange(types), rng.choice(types, size=extra, p=p / p.sum())])
    rng.shuffle(ids)
    with open(path, "w") as fh:
        for a in range(0, len(ids), 20):
            fh.write(" ".join(f"w{i}" for i in ids[a:a + 20]) + "\n")


def trainer(kind, tok_cls, tok_hs, pc_cls, pc_hs, schedule, hidden, path):
    from rnnlm.model.config import ModelConfig, TrainConfig
    from rnnlm.training.loop import Trainer
    tok, pc = (tok_hs, pc_hs) if kind == "hs" else (tok_cls, pc_cls)
    mcfg = ModelConfig(vocab_size=len(tok), hidden=hidden, classes=0 if kind == "hs" else tok.num_classes,
                       softmax="hs" if kind == "hs" else "class")
    tcfg = TrainConfig(schedule=schedule, threads=1, lr=0.1 if schedule == "rnnlm" else 1.0, batch_size=32, bptt=4,
                       bptt_block=10)
    return Trainer(mcfg, tcfg, tok, pc["train"], pc["valid"], path, log=lambda m: None, progress=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", type=int, default=300_001)
    ap.add_argument("--tokens", type=int, default=1_500_000)
    ap.add_argument("--classes", type=int, default=550)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--words", type=int, default=200_000)
    ap.add_argument("--dir", default="/tmp/hs_bench")
    ap.add_argument("--schedules", default="rnnlm,batch")
    a = ap.parse_args()
    import numba
    numba.set_num_threads(1)
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    from rnnlm.data.corpus import prepare
    from rnnlm.model.file import Params
    from rnnlm.runtime import blas_single_thread

    os.makedirs(a.dir, exist_ok=True)
    train, valid = os.path.join(a.dir, "train.txt"), os.path.join(a.dir, "valid.txt")
    if not os.path.exists(train):
        make_corpus(train, a.types, a.tokens)
        make_corpus(valid, 100, 2000, seed=1)
    t0 = time.perf_counter()
    pc_cls = prepare(train, valid, num_classes=a.classes, cache_dir=os.path.join(a.dir, "cache"))
    pc_hs = prepare(train, valid, num_classes=0, cache_dir=os.path.join(a.dir, "cache"))
    print(f"corpus {train}: {len(pc_cls['train']):,} tokens, vocabulary {len(pc_cls.tokenizer):,}, "
          f"{pc_cls.tokenizer.num_classes} classes (prepared in {time.perf_counter() - t0:.1f} s)", flush=True)
    for schedule in a.schedules.split(","):
        runs = {}
        for kind in ("hs", "class"):
            t0 = time.perf_counter()
            tr = trainer(kind, pc_cls.tokenizer, pc_hs.tokenizer, pc_cls, pc_hs, schedule, a.hidden,
                         os.path.join(a.dir, f"{kind}.rnnlm"))
            params = Params.init(tr.mcfg, np.random.default_rng(1))
            sstate = tr._fresh_stream_state()
            data = tr._epoch_data(params)
            per_unit = 1 if schedule == "rnnlm" else tr.tcfg.batch_size * tr.tcfg.bptt
            step = max(1, 8192 // per_unit)   # units per timed chunk
            tr._train_chunk(params, sstate, tr.tcfg.lr, 0, step, data)   # compile, caches: not counted
            runs[kind] = dict(tr=tr, params=params, sstate=sstate, data=data, pos=step, words=0, seconds=0.0,
                              step=step, setup=time.perf_counter() - t0)
        target = a.words
        with blas_single_thread():
            while min(r["words"] for r in runs.values()) < target:
                for kind, r in runs.items():
                    if r["words"] >= target:
                        continue
                    tr = r["tr"]
                    c0 = time.perf_counter()
                    _, n = tr._train_chunk(r["params"], r["sstate"], tr.tcfg.lr, r["pos"], r["pos"] + r["step"],
                                           r["data"])
                    r["seconds"] += time.perf_counter() - c0
                    r["words"] += n
                    r["pos"] += r["step"]
        wps = {k: r["words"] / r["seconds"] for k, r in runs.items()}
        for k, r in runs.items():
            print(f"{schedule:5s} {k:5s}: {r['words']:,} words in {r['seconds']:.2f} s = {wps[k]:,.0f} words/s "
                  f"(setup incl. first chunk {r['setup']:.1f} s)", flush=True)
        print(f"{schedule:5s} hs / class = {wps['hs'] / wps['class']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
