#!/usr/bin/env python
"""PTB with rnnlm-0.4b's classic configuration, side by side with rnnlm-0.4b itself.

    python scripts/ptb_rnnlm.py [--ptb DIR] [--out runs/ptb] [--seeds 1] [--rnnlm04b PATH]
                                [--taskset CPU] [--max-epochs N]

Trains hidden 100 / 100 classes / --bptt 4 --bptt-block 10 with rnnlm-0.4b's learning-rate schedule
(per-word SGD, lr 0.1, halving, rollback), once with its default --min-improvement 1.003 and once
with 1.001 (chosen on the validation split: it keeps the full learning rate a few epochs longer),
evaluates each on the test split at the end, and prints a markdown table. PTB comes from
../shared/corpora/ptb unless --ptb is given.

With --rnnlm04b PATH (or $RNNLM04B), Mikolov's rnnlm-0.4b binary (built outside this repository)
trains the same configurations in the same run, one run at a time, each right after ours:
`rnnlm -train -valid -rnnlm M -hidden 100 -class 100 -bptt 4 -bptt-block 10 -rand-seed SEED
[-min-improvement F]`, then `-test`; its epochs are printed as they finish and its row goes in the
same table (words/s: the median of the Words/sec it prints, on CPU time; its wall-clock median is in
the JSON). --taskset CPU runs both tools on that core. --max-epochs N stops both after N epochs
(rnnlm-0.4b: -max-iter N), for quick checks. The table's figures also go to results/ptb_rnnlm.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rnnlm04b  # noqa: E402 (scripts/ is not a package)
import results as results_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [   # name, our extra arguments, rnnlm-0.4b's
    ("rnnlm-0.4b defaults (min-improvement 1.003)", [], []),
    ("min-improvement 1.001", ["--min-improvement", "1.001"], ["-min-improvement", "1.001"]),
]


def ours(args, f, name, extra, seed, pin) -> dict:
    model = os.path.join(args.out, f"h100-c100-{'-'.join(extra).strip('-') or 'default'}-s{seed}.rnnlm")
    cmd = ["rnnlm", "train", "--train", f("train"), "--valid", f("valid"), "--model", model, "--force",
           "--hidden", "100", "--classes", "100", "--bptt", "4", "--bptt-block", "10",
           "--seed", str(seed), "--threads", "1", *extra]
    if args.max_epochs:
        cmd += ["--max-epochs", str(args.max_epochs)]
    cmd = pin + cmd
    print("$", shlex.join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    seconds = time.time() - t0
    res = json.loads(subprocess.run(["rnnlm", "eval", model, f("test"), "--json"], check=True,
                                    capture_output=True, text=True).stdout)
    log = [json.loads(line) for line in open(model + ".log.jsonl")]
    best = min((e for e in log if not e["rolled_back"]), key=lambda e: e["valid_entropy"])  # diverged: rolled back
    return dict(tool="rnnlm", configuration=name, seed=seed, epochs=len(log), valid_ppl=best["valid_ppl"],
                test_ppl=res["perplexity"], train_seconds=seconds,
                words_per_second=statistics.median(e["words_per_second"] for e in log),
                command=shlex.join(cmd), model=model, epoch_log=log, test=res)


def theirs(args, f, binary, name, extra, seed) -> dict:
    model = os.path.join(args.out, f"rnnlm04b-h100-c100-{'-'.join(extra).strip('-') or 'default'}-s{seed}.model")

    def show(e):
        print(f"rnnlm-0.4b epoch {e.iter:3d}  alpha {e.alpha:g}  train {e.train_entropy:.4f} bits  "
              f"valid {e.valid_entropy:.4f} bits  {e.words_per_sec:,.0f} words/s (its Words/sec)", flush=True)

    shown = [*rnnlm04b.prefix(args.taskset), binary, "-train", f("train"), "-valid", f("valid"), "-rnnlm", model,
             "-hidden", "100", "-class", "100", "-bptt", "4", "-bptt-block", "10", "-rand-seed", str(seed), *extra]
    print("$", shlex.join(shown + (["-max-iter", str(args.max_epochs)] if args.max_epochs else [])), flush=True)
    tr = rnnlm04b.train(binary, f("train"), f("valid"), model, hidden=100, classes=100, bptt=4, bptt_block=10,
                        seed=seed, max_iter=args.max_epochs or None, extra=extra, cpu=args.taskset, on_epoch=show)
    te = rnnlm04b.test(binary, model, f("test"), cpu=args.taskset, load_time=False)
    print(f"rnnlm-0.4b: {len(tr.epochs)} epochs, {tr.wall_seconds:.0f} s, test PPL net {te.ppl:.2f}", flush=True)
    valid = [e.valid_entropy for e in tr.epochs if e.valid_entropy is not None]
    return dict(tool="rnnlm-0.4b", configuration=name, seed=seed, epochs=len(tr.epochs),
                valid_ppl=2 ** min(valid) if valid else None, test_ppl=te.ppl, train_seconds=tr.wall_seconds,
                words_per_second=tr.median_wps, wall_words_per_second=tr.median_wall_wps,
                command=shlex.join(tr.cmd), model=model, train=tr.to_dict(), test=te.to_dict())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptb", default=os.path.join(ROOT, "..", "shared", "corpora", "ptb"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "ptb"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    rnnlm04b.add_argument(ap)
    ap.add_argument("--taskset", type=int, metavar="CPU", help="run every training (ours and rnnlm-0.4b's) "
                    "and evaluation on this core")
    ap.add_argument("--max-epochs", type=int, metavar="N", help="stop every training after N epochs (quick checks)")
    args = ap.parse_args()
    binary = rnnlm04b.find_binary(args.rnnlm04b, required=False)
    for split in ("train", "valid", "test"):
        if not os.path.isfile(os.path.join(args.ptb, f"{split}.txt")):
            print(f"ptb_rnnlm.py: {args.ptb}/{split}.txt not found; give the PTB directory with --ptb",
                  file=sys.stderr)
            return 1
    os.makedirs(args.out, exist_ok=True)
    started = results_json.start()
    load0 = os.getloadavg()
    f = lambda s: os.path.abspath(os.path.join(args.ptb, f"{s}.txt"))
    pin = rnnlm04b.prefix(args.taskset)
    rows = []
    for name, extra, extra04b in CONFIGS:
        for seed in args.seeds:
            rows.append(ours(args, f, name, extra, seed, pin))
            if binary:
                rows.append(theirs(args, f, binary, name, extra04b, seed))
    print()
    print(f"PTB, hidden 100, 100 classes, bptt 4 / block 10, 1 thread"
          f"{f', core {args.taskset}' if args.taskset is not None else ''}"
          f"{f', at most {args.max_epochs} epochs' if args.max_epochs else ''}; {results_json.header()}; "
          f"load average {load0[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print()
    cols = ["configuration", "seed", "epochs", "valid PPL", "test PPL", "train time", "words/s (median)"]
    printed = [] if binary else [   # without the binary, the figure anchors.md quotes, marked as such
        ["rnnlm-0.4b (anchors.md, an earlier run)", "", "13", "", "149.37", "4 min 26 s", "≈ 47,000"]]
    for r in rows:
        s = r["train_seconds"]
        tool = "rnnlm-0.4b binary" if r["tool"] == "rnnlm-0.4b" else "rnnlm"
        v = "—" if r["valid_ppl"] is None or not math.isfinite(r["valid_ppl"]) else f"{r['valid_ppl']:.2f}"
        wall = f" (wall {r['wall_words_per_second']:,.0f})" if r.get("wall_words_per_second") else ""
        printed.append([f"{tool} {r['configuration']}", str(r["seed"]), str(r["epochs"]), v, f"{r['test_ppl']:.2f}",
                        f"{s // 60:.0f} min {s % 60:.0f} s", f"{r['words_per_second']:,.0f}{wall}"])
    print("| " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * (len(cols) - 1))
    for cells in printed:
        print("| " + " | ".join(cells) + " |")
    note = None
    if binary:
        note = ("rnnlm-0.4b binary: words/s is the median of the Words/sec it prints (words over the CPU time of "
                "each training pass), in brackets the same passes on the wall clock, which is how ours are timed; "
                "they differ when another job shared the core. Its valid PPL is 2^(best VALID entropy it printed).")
        print()
        print(note)
    path = results_json.write("ptb_rnnlm", rows, started, dict(
        ptb=os.path.abspath(args.ptb), taskset=args.taskset, max_epochs=args.max_epochs, loadavg_start=list(load0),
        rnnlm04b=rnnlm04b.describe(binary) if binary else None),
        tables={"ptb": dict(columns=cols, rows=printed, note=note)})
    print(f"\nptb_rnnlm.py: figures written to {os.path.relpath(path)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
