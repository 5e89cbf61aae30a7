#!/usr/bin/env python
"""PTB with rnnlm-0.4b's classic configuration, side by side with what rnnlm-0.4b reaches here.

    python scripts/ptb_rnnlm.py [--ptb DIR] [--out runs/ptb] [--seeds 1]

Trains hidden 100 / 100 classes / --bptt 4 --bptt-block 10 with rnnlm-0.4b's learning-rate schedule
(per-word SGD, lr 0.1, halving, rollback), once with its default --min-improvement 1.003 and once
with 1.001 (chosen on the validation split: it keeps the full learning rate a few epochs longer),
evaluates each on the test split at the end, and prints a markdown table. PTB comes from
../shared/corpora/ptb unless --ptb is given.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [
    ("rnnlm-0.4b defaults (min-improvement 1.003)", []),
    ("min-improvement 1.001", ["--min-improvement", "1.001"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptb", default=os.path.join(ROOT, "..", "shared", "corpora", "ptb"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "ptb"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    for split in ("train", "valid", "test"):
        if not os.path.isfile(os.path.join(args.ptb, f"{split}.txt")):
            print(f"ptb_rnnlm.py: {args.ptb}/{split}.txt not found; give the PTB directory with --ptb",
                  file=sys.stderr)
            return 1
    os.makedirs(args.out, exist_ok=True)
    f = lambda s: os.path.join(args.ptb, f"{s}.txt")
    rows = []
    for name, extra in CONFIGS:
        for seed in args.seeds:
            model = os.path.join(args.out, f"h100-c100-{'-'.join(extra).strip('-') or 'default'}-s{seed}.rnnlm")
            cmd = ["rnnlm", "train", "--train", f("train"), "--valid", f("valid"), "--model", model, "--force",
                   "--hidden", "100", "--classes", "100", "--bptt", "4", "--bptt-block", "10",
                   "--seed", str(seed), "--threads", "1", *extra]
            print("$", " ".join(cmd), flush=True)
            t0 = time.time()
            subprocess.run(cmd, check=True)
            seconds = time.time() - t0
            res = json.loads(subprocess.run(["rnnlm", "eval", model, f("test"), "--json"], check=True,
                                            capture_output=True, text=True).stdout)
            log = [json.loads(line) for line in open(model + ".log.jsonl")]
            best = min((e for e in log if not e["rolled_back"]), key=lambda e: e["valid_entropy"])  # diverged: rolled back
            rows.append((name, seed, len(log), best["valid_ppl"], res["perplexity"], seconds,
                         statistics.median(e["words_per_second"] for e in log)))
    print()
    print(f"PTB, hidden 100, 100 classes, bptt 4 / block 10, 1 thread; {time.strftime('%Y-%m-%d')}, "
          f"{os.uname().machine}, {os.cpu_count()} cores")
    print()
    print("| configuration | seed | epochs | valid PPL | test PPL | train time | words/s (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("| rnnlm-0.4b (anchors.md) | | 13 | | 149.37 | 4 min 26 s | ≈ 47,000 |")
    for name, seed, ep, v, t, s, w in rows:
        print(f"| rnnlm {name} | {seed} | {ep} | {v:.2f} | {t:.2f} | {s / 60:.0f} min {s % 60:.0f} s | {w:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
