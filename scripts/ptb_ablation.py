#!/usr/bin/env python
"""What each training option buys on Penn Treebank (issue 25's ablation), measured on valid only.

    python scripts/ptb_ablation.py [--ptb DIR] [--out runs/ptb-ablation] [--only NAME,...]
                                   [--taskset CPU] [--max-epochs N] [--test NAME]

One base configuration (hidden 100, 100 classes, rnnlm-0.4b's per-word schedule with --bptt 4
--bptt-block 10 and --min-improvement 1.001, seed 1, one thread) and one row per option added to it
(ROWS below). Each row trains with `rnnlm train` and reports its best validation perplexity, the
epochs and the training time; the difference to the base row is what that option bought (negative:
better). The test split is read once, for the row given with --test (default: the best row on
valid), as the protocol asks: every choice is made on valid. Figures go to
results/ptb_ablation.json (table `ablation`) and stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results as results_json  # noqa: E402 (scripts/ is not a package)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = ["--hidden", "100", "--classes", "100", "--bptt", "4", "--bptt-block", "10", "--min-improvement", "1.001",
        "--seed", "1", "--threads", "1"]
ROWS = [   # name, options added to BASE
    ("base", []),
    ("--asgd (NT-ASGD)", ["--asgd"]),
    ("--patience 2", ["--patience", "2"]),
    ("--dropout 0.1", ["--dropout", "0.1"]),
    ("--tie (weight tying)", ["--tie"]),
    ("--tie --lr 0.05", ["--tie", "--lr", "0.05"]),
]


def train(args, name, extra, pin) -> dict:
    slug = "".join(c if c.isalnum() else "-" for c in name).strip("-") or "base"
    model = os.path.join(args.out, f"{slug}.rnnlm")
    f = lambda s: os.path.abspath(os.path.join(args.ptb, f"{s}.txt"))
    cmd = pin + ["rnnlm", "train", "--train", f("train"), "--valid", f("valid"), "--model", model, "--force",
                 *BASE, *extra] + (["--max-epochs", str(args.max_epochs)] if args.max_epochs else [])
    print("$", shlex.join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    seconds = time.time() - t0
    log = [json.loads(line) for line in open(model + ".log.jsonl")]
    best = min((e for e in log if not e.get("diverged") and not e["rolled_back"]), key=lambda e: e["valid_entropy"])
    return dict(name=name, options=extra, command=shlex.join(cmd), model=model, epochs=len(log),
                valid_ppl=best["valid_ppl"], train_seconds=seconds, epoch_log=log)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptb", default=os.path.join(ROOT, "..", "shared", "corpora", "ptb"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "ptb-ablation"))
    ap.add_argument("--only", help="comma-separated row names (the base row is always trained)")
    ap.add_argument("--taskset", type=int, metavar="CPU", help="run every training on this core")
    ap.add_argument("--max-epochs", type=int, metavar="N", help="stop every training after N epochs (quick checks)")
    ap.add_argument("--test", metavar="NAME", help="the row whose model reads test.txt (default: best on valid)")
    args = ap.parse_args()
    for split in ("train", "valid", "test"):
        if not os.path.isfile(os.path.join(args.ptb, f"{split}.txt")):
            print(f"ptb_ablation.py: {args.ptb}/{split}.txt not found; give the PTB directory with --ptb",
                  file=sys.stderr)
            return 1
    names = [n for n, _ in ROWS]
    only = set(args.only.split(",")) if args.only else set(names)
    if only - set(names) or (args.test and args.test not in names):
        print(f"ptb_ablation.py: rows are {', '.join(names)}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    started = results_json.start()
    pin = ["taskset", "-c", str(args.taskset)] if args.taskset is not None else []
    rows = [train(args, n, e, pin) for n, e in ROWS if n == "base" or n in only]
    chosen = next(r for r in rows if r["name"] == args.test) if args.test else min(rows, key=lambda r: r["valid_ppl"])
    res = json.loads(subprocess.run(pin + ["rnnlm", "eval", chosen["model"], os.path.join(args.ptb, "test.txt"),
                                           "--json"], check=True, capture_output=True, text=True).stdout)
    chosen["test_ppl"] = res["perplexity"]
    base = rows[0]["valid_ppl"]
    cols = ["configuration", "epochs", "valid PPL", "vs base", "train time", "test PPL"]
    printed = [[r["name"], r["epochs"], round(r["valid_ppl"], 2),
                "" if r is rows[0] else f"{100 * (r['valid_ppl'] / base - 1):+.1f}%",
                f"{r['train_seconds'] // 60:.0f} min {r['train_seconds'] % 60:.0f} s",
                round(r["test_ppl"], 2) if "test_ppl" in r else "—"] for r in rows]
    print("| " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * (len(cols) - 1))
    for cells in printed:
        print("| " + " | ".join(str(c) for c in cells) + " |")
    note = (f"Base: rnnlm train {' '.join(BASE)}. Test read once, for the row "
            f"{'given with --test' if args.test else 'best on valid'} ({chosen['name']}).")
    path = results_json.write("ptb_ablation", rows, started, dict(ptb=os.path.abspath(args.ptb), taskset=args.taskset,
                                                                   max_epochs=args.max_epochs, test_row=chosen["name"]),
                              tables={"ablation": dict(columns=cols, rows=printed, note=note)})
    print(f"\nptb_ablation.py: figures written to {os.path.relpath(path)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
