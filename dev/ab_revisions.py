#!/usr/bin/env python
"""The batch schedule of the working tree against a git revision, in one process, slow spells told apart.

    python dev/ab_revisions.py REV [--data DIR] [--hidden 100] [--threads 2] [--clip 0] [--seconds 300]
                                       [--windows 100] [--quiet 0.1]

Copies the package as it was at REV (`git archive`) into a temporary directory as `rnnlm_rev` (its
imports rewritten to match), builds the same model in both versions (hidden H, 100 classes, 32
streams x 4 steps, gradient clipping --clip (0: none), PTB from ../shared/corpora/ptb or --data DIR,
the same initial weights) and trains the two in turn on the same chunks of --windows windows
through Trainer's chunk function, the order alternating from pair to pair, reading the sync probe
(baselines.launch_probe) before and after each pair, for --seconds or one pass over the training
text, whichever ends first (about 7,200 windows: half a minute at hidden 100). Prints, over the
pairs whose probes read below --quiet µs and over the others, the median µs per window of each
version and the median of their ratio per pair, then whether the two models ended with the same
bits. Two runs of one version minutes apart differ by more than most changes on this VM;
alternating them in one process is what makes a small difference visible (the same code on both
sides reads within about 2%).
The first call of each version compiles it (REV's copy from scratch: about 20 s).
"""
from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")   # baselines.py, bench.py
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
    ap.add_argument("--clip", type=float, default=0.0, help="gradient clipping (TrainConfig.clip; 0: none)")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--windows", type=int, default=100, help="windows per timed chunk")
    ap.add_argument("--quiet", type=float, default=0.1, help="probe reading (µs) below which a pair is quiet")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.data, "train.txt")):
        sys.exit(f"ab_revisions.py: {args.data}/train.txt not found; give a corpus directory with --data DIR")
    import numpy as np

    from baselines import launch_probe
    from thread_pairs import batch_run, report
    tmp = tempfile.mkdtemp()
    import_revision(args.rev, tmp)
    versions = {name: batch_run(name, args.data, args.hidden, args.threads, os.path.join(tmp, f"{name}.rnnlm"),
                                args.clip)
                for name in ("rnnlm_rev", "rnnlm")}
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
          f"thread(s), clip {args.clip:g}; {turn} pairs of {args.windows} windows ({time.strftime('%Y-%m-%d %H:%M')})")
    report(pairs, f"at {args.rev}", "now", "{:.1f}", "{:.3f}")
    same = np.array_equal(versions["rnnlm_rev"][1].flat, versions["rnnlm"][1].flat)
    print("the two models ended with the same bits" if same else "the two models differ")


if __name__ == "__main__":
    main()
