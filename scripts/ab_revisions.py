#!/usr/bin/env python
"""The batch schedule of the working tree against that of a git revision, in one process, the VM's slow spells told apart.

    python scripts/ab_revisions.py REV [--data DIR] [--hidden 100] [--threads 2] [--seconds 300]
                                       [--windows 100] [--quiet 0.1]

Copies the package as it was at REV (`git archive`) into a temporary directory as `rnnlm_rev` (its
imports rewritten to match), builds the same model in both versions (hidden H, 100 classes, 32
streams x 4 steps, PTB from ../shared/corpora/ptb or --data DIR, the same initial weights) and
trains the two in turn on the same chunks of --windows windows through Trainer's chunk function,
the order alternating from pair to pair, reading the sync probe (bench.launch_probe) before and
after each pair. Prints, over the pairs whose probes read below --quiet µs and over the others, the
median µs per window of each version and the median of their ratio per pair, then whether the two
models ended with the same bits. Two runs of one version minutes apart differ by more than most
changes on this VM; alternating them in one process is what makes a small difference visible.
The first call of each version compiles it (REV's copy from scratch: about 20 s).
"""
from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def import_revision(rev: str, where: str):
    """The package at git revision rev, importable as `rnnlm_rev` from directory `where`."""
    try:
        blob = subprocess.run(["git", "-C", ROOT, "archive", rev, "rnnlm"], check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        sys.exit(f"ab_revisions.py: git archive {rev}: {exc.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(where, filter="data")
    os.rename(os.path.join(where, "rnnlm"), os.path.join(where, "rnnlm_rev"))
    pattern = re.compile(r"^(\s*(?:from|import)\s+)rnnlm\b", re.M)
    for dirpath, _, files in os.walk(os.path.join(where, "rnnlm_rev")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(pattern.sub(r"\1rnnlm_rev", text))
    sys.path.insert(0, where)
    import importlib
    return importlib.import_module("rnnlm_rev")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the git revision to compare the working tree with")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "corpora", "ptb"))
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--windows", type=int, default=100, help="windows per timed chunk")
    ap.add_argument("--quiet", type=float, default=0.1, help="probe reading (µs) below which a pair is quiet")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.data, "train.txt")):
        sys.exit(f"ab_revisions.py: {args.data}/train.txt not found; give a corpus directory with --data DIR")
    import numpy as np

    from bench import launch_probe
    tmp = tempfile.mkdtemp()
    import_revision(args.rev, tmp)
    versions = {}
    for name in ("rnnlm_rev", "rnnlm"):
        cfg = __import__(f"{name}.config", fromlist=["x"])
        corpus = __import__(f"{name}.corpus", fromlist=["x"])
        model = __import__(f"{name}.model", fromlist=["x"])
        train = __import__(f"{name}.train", fromlist=["x"])
        pc = corpus.prepare(*(os.path.join(args.data, f"{s}.txt") for s in ("train", "valid", "test")),
                            num_classes=100)
        mcfg = cfg.ModelConfig(vocab_size=len(pc.tokenizer), hidden=args.hidden, classes=100)
        tcfg = cfg.TrainConfig(schedule="batch", bptt=4, batch_size=32, lr=1.0, threads=args.threads)
        tr = train.Trainer(mcfg, tcfg, pc.tokenizer, np.ascontiguousarray(pc["train"], dtype=np.int32), pc["valid"],
                           os.path.join(tmp, f"{name}.rnnlm"), log=lambda s: None, progress=False)
        params = model.Params.init(mcfg, np.random.default_rng(1))
        state = tr._fresh_stream_state()
        data = tr._epoch_data(params)
        tr._train_chunk(params, state, 0.1, 0, 2, data)       # compiles
        versions[name] = (tr, params, state, data)
    probe = launch_probe(args.threads)
    units = versions["rnnlm"][0]._units()
    pairs = {"quiet": [], "slow": []}
    pos, turn = 2, 0
    end = time.time() + args.seconds
    while time.time() < end:
        if pos + args.windows > units:
            break       # both versions stay on the same windows: one pass over the text at most
        before = probe(3000)
        us = {}
        for name in (("rnnlm_rev", "rnnlm") if turn % 2 == 0 else ("rnnlm", "rnnlm_rev")):
            tr, params, state, data = versions[name]
            time.sleep(0.005)   # the other version's pool threads stop spinning and sleep
            t0 = time.perf_counter()
            tr._train_chunk(params, state, 0.1, pos, pos + args.windows, data)
            us[name] = (time.perf_counter() - t0) / args.windows * 1e6
        after = probe(3000)
        pos += args.windows
        turn += 1
        pairs["quiet" if max(before, after) < args.quiet else "slow"].append((us["rnnlm_rev"], us["rnnlm"]))
    print(f"{args.rev} against the working tree: hidden {args.hidden}, 100 classes, batch 32 x 4, {args.threads} "
          f"thread(s); {turn} pairs of {args.windows} windows ({time.strftime('%Y-%m-%d %H:%M')})")
    for kind, got in pairs.items():
        if not got:
            print(f"{kind} probes: no pairs")
            continue
        old = statistics.median(p[0] for p in got)
        new = statistics.median(p[1] for p in got)
        ratio = statistics.median(p[0] / p[1] for p in got)
        print(f"{kind} probes: {len(got)} pairs, µs per window {old:.1f} at {args.rev}, {new:.1f} now; "
              f"speed-up median {ratio:.3f}x")
    same = np.array_equal(versions["rnnlm_rev"][1].flat, versions["rnnlm"][1].flat)
    print("the two models ended with the same bits" if same else "the two models differ")


if __name__ == "__main__":
    main()
