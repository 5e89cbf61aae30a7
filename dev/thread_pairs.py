#!/usr/bin/env python
"""The batch schedule's 2-thread speed-up, window chunk by window chunk, the VM's slow spells told apart.

    python dev/thread_pairs.py [--data DIR] [--hidden 100] [--seconds 60] [--windows 200]
                                   [--quiet 0.1]

One process holds two trainers of the same model (hidden H, 100 classes, 32 streams x 4 steps, PTB
from ../shared/corpora/ptb or --data DIR), one on 1 thread and one on 2, and trains them in turn on
the same chunk of windows (1 thread, then 2), reading the sync probe (baselines.launch_probe: µs per
barrier round of the pool's threads) before and after each pair. Prints the medians over the pairs
whose two probes read below --quiet µs and over the others: µs per window on 1 and on 2 threads and
the ratio of each pair. (bench.py times runs of 100,000 words and cannot separate the spells, in
which the 2-thread windows slow down while the 1-thread ones do not.)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")   # baselines.py, bench.py
sys.path.insert(0, HERE)


def batch_run(pkg: str, data_dir: str, hidden: int, threads: int, path: str, clip: float = 0.0):
    """(trainer, weights, stream state, epoch data) of package `pkg` (rnnlm, or a copy of it under
    another name) for the batch schedule on PTB at data_dir: hidden H, 100 classes, 32 streams x 4
    steps, weights from seed 1, gradient clipping `clip` (0: none); its first chunk already trained
    (the kernels compiled)."""
    import importlib

    import numpy as np
    def module(new, old):   # the package by stage (2026-12-07 on) or the flat one of older revisions
        try:
            return importlib.import_module(f"{pkg}.{new}")
        except ImportError:
            return importlib.import_module(f"{pkg}.{old}")
    cfg = module("model.config", "config")
    corpus = module("data.corpus", "corpus")
    model = module("model.file", "model")
    train = module("training.loop", "train")
    pc = corpus.prepare(*(os.path.join(data_dir, f"{s}.txt") for s in ("train", "valid", "test")), num_classes=100)
    mcfg = cfg.ModelConfig(vocab_size=len(pc.tokenizer), hidden=hidden, classes=100)
    tcfg = cfg.TrainConfig(schedule="batch", bptt=4, batch_size=32, lr=1.0, threads=threads, clip=clip)
    tr = train.Trainer(mcfg, tcfg, pc.tokenizer, np.ascontiguousarray(pc["train"], dtype=np.int32), pc["valid"], path,
                       log=lambda s: None, progress=False)
    params = model.Params.init(mcfg, np.random.default_rng(1))
    state = tr._fresh_stream_state()
    data = tr._epoch_data(params)
    tr._train_chunk(params, state, 0.1, 0, 2, data)       # compiles
    return tr, params, state, data


def report(pairs: dict, first: str, second: str, us_fmt: str, ratio_fmt: str) -> None:
    """For each kind of pair (quiet / slow probes: lists of (µs per window of the first, of the
    second)): the medians of each and of their ratio per pair."""
    for kind, got in pairs.items():
        if not got:
            print(f"{kind} probes: no pairs")
            continue
        a = us_fmt.format(statistics.median(p[0] for p in got))
        b = us_fmt.format(statistics.median(p[1] for p in got))
        ratio = ratio_fmt.format(statistics.median(p[0] / p[1] for p in got))
        print(f"{kind} probes: {len(got)} pairs, µs per window {a} {first}, {b} {second}; speed-up median {ratio}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "corpora", "ptb"))
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--windows", type=int, default=200, help="windows per timed chunk")
    ap.add_argument("--quiet", type=float, default=0.1, help="probe reading (µs) below which a pair is quiet")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.data, "train.txt")):
        sys.exit(f"thread_pairs.py: {args.data}/train.txt not found; give a corpus directory with --data DIR")
    import numba

    from baselines import launch_probe
    if numba.config.NUMBA_NUM_THREADS < 2:
        sys.exit("thread_pairs.py: needs 2 threads")
    tmp = tempfile.mkdtemp()
    runs = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        runs[threads] = batch_run("rnnlm", args.data, args.hidden, threads, os.path.join(tmp, f"m{threads}.rnnlm"))
    probe = launch_probe(2)
    units = runs[1][0]._units()
    quiet, slow = [], []
    pos = 2
    end = time.time() + args.seconds
    while time.time() < end:
        if pos + args.windows > units:
            pos = 2
        before = probe(3000)
        us = {}
        for threads in (1, 2):
            tr, params, state, data = runs[threads]
            numba.set_num_threads(threads)
            t0 = time.perf_counter()
            tr._train_chunk(params, state, 0.1, pos, pos + args.windows, data)
            us[threads] = (time.perf_counter() - t0) / args.windows * 1e6
        numba.set_num_threads(2)
        after = probe(3000)
        pos += args.windows
        (quiet if max(before, after) < args.quiet else slow).append((us[1], us[2]))
    print(f"hidden {args.hidden}, 100 classes, batch 32 x 4; {args.seconds:.0f} s of pairs of {args.windows} windows "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    report({"quiet": quiet, "slow": slow}, "on 1 thread", "on 2", "{:.0f}", "{:.2f}")

if __name__ == "__main__":
    main()
