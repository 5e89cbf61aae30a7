#!/usr/bin/env python
"""The demo over several seeds and settings: the spread of what it reaches on the bundled corpus.

    python scripts/demo_seeds.py [--seeds 1 2 3] [--variant NAME=ARGS ...] [--out results/demo-seeds]

Runs `scripts/demo.py` once per seed and variant (each its own process, one at a time; each writes
OUT/NAME-sSEED.json), then prints one table row per variant: valid and test perplexity (mean, min and
max over the seeds), test perplexity above the truth, epochs, and training time (wall and CPU).
A variant is a name and the demo options that differ from its defaults, e.g.
`--variant "patience1=--patience 1" --variant "patience3=--patience 3"`; without --variant the demo's
defaults run as `default`. Everything is chosen on valid; test is shown beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "demo-seeds"))
    ap.add_argument("--reuse", action="store_true", help="keep the records of runs already in OUT")
    args = ap.parse_args()
    variants = [v.split("=", 1) if "=" in v else (v, "") for v in args.variant] or [("default", "")]
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name, extra in variants:
        recs = []
        for seed in args.seeds:
            path = os.path.join(args.out, f"{name}-s{seed}.json")
            if not (args.reuse and os.path.exists(path)):
                cmd = [sys.executable, os.path.join(ROOT, "scripts", "demo.py"), "--seed", str(seed),
                       "--samples", "0", "--out", os.path.join(ROOT, "runs", "demo-seeds", f"{name}-s{seed}"),
                       "--results", path, *shlex.split(extra)]
                print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            recs.append(json.load(open(path)))
        rows.append((name, extra, recs))
    print(f"\nThe bundled corpus over seeds {' '.join(map(str, args.seeds))}; {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.uname().nodename} ({os.cpu_count()} cores, shared: wall times depend on the load, CPU times less)\n")
    print("| variant | valid mean (min-max) | test mean (min-max) | test above true (min-max) | epochs | "
          "train wall s | train CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, extra, recs in rows:
        v = [r["figures"]["rnn"]["valid"] for r in recs]
        t = [r["figures"]["rnn"]["test"] for r in recs]
        g = [r["figures"].get("test_above_true_percent", float("nan")) for r in recs]
        rng = lambda xs, f: f"{statistics.mean(xs):{f}} ({min(xs):{f}}-{max(xs):{f}})"
        print(f"| `{name}`: `{extra or '(defaults)'}` | {rng(v, '.2f')} | {rng(t, '.2f')} | {rng(g, '.1f')}% | "
              f"{'/'.join(str(r['epochs']) for r in recs)} | "
              f"{'/'.join(format(r['train_seconds_wall'], '.0f') for r in recs)} | "
              f"{'/'.join(format(r['train_seconds_cpu'], '.0f') for r in recs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
