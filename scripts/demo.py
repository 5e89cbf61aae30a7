#!/usr/bin/env python
"""The main job on the bundled corpus: train a small model, compare with the truth, sample.

    python scripts/demo.py [--data corpora/synthetic] [--out runs/demo] [--results results/demo.json]

Trains on corpora/synthetic (no network), prints validation and test perplexity next to the corpus's
true perplexity (the grammar's exact probabilities: no model can beat it on average) and the n-gram
baselines, then samples a few sentences. Defaults (chosen on valid over 3 seeds, scripts/demo_seeds.py):
hidden 200, full softmax, per-word SGD with --bptt 10 --bptt-block 10, --dropout 0.1, --asgd,
--min-improvement 1.001, at most 12 epochs. Model options can be overridden (see --help). Writes the
figures it prints, with the revision (`git rev-parse HEAD`), date, machine, load and command, to
--results (default results/demo.json). Training time is given as wall time and as the process's CPU
time (less sensitive to other jobs than wall time, though a loaded machine slows that too).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "corpora", "synthetic"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "demo"))
    ap.add_argument("--results", default=os.path.join(ROOT, "results", "demo.json"),
                    help="JSON record of the run ('' = none)")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--classes", type=int, default=0, help="0: full softmax (the vocabulary is small)")
    ap.add_argument("--schedule", default="rnnlm", choices=("rnnlm", "batch"))
    ap.add_argument("--bptt", type=int, default=10)
    ap.add_argument("--bptt-block", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=0.0)
    ap.add_argument("--min-improvement", type=float, default=1.001)
    ap.add_argument("--max-epochs", type=int, default=12)
    ap.add_argument("--independent", action=argparse.BooleanOptionalAction, default=True,
                    help="reset the hidden state at each end of sentence (the corpus's sentences are "
                         "independent)")
    ap.add_argument("--activation", default="sigmoid", choices=("sigmoid", "tanh", "relu"))
    ap.add_argument("--beta", type=float, default=1e-7, help="L2 regularisation")
    ap.add_argument("--direct", type=float, default=0.0, help="direct n-gram connections (millions of weights)")
    ap.add_argument("--direct-order", type=int, default=3)
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout on the state the output layer reads")
    ap.add_argument("--dropout-input", type=float, default=0.0, help="dropout on the input word's embedding")
    ap.add_argument("--patience", type=int, default=1, help="failing epochs in a row before the schedule acts")
    ap.add_argument("--asgd", action=argparse.BooleanOptionalAction, default=True,
                    help="averaged SGD: average the weights where halving would start")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=int, default=5)
    args = ap.parse_args()

    import numpy as np

    from rnnlm.model.config import ModelConfig, TrainConfig
    from rnnlm.data.corpus import prepare
    from rnnlm.errors import RnnlmError
    from rnnlm.use.evaluate import stream_logprobs
    from rnnlm.use.sample import Stepper, sample_ids
    from rnnlm.use.ngram import KneserNey
    from rnnlm.training.loop import Trainer

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import results as results_json
    started_at = results_json.start()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = os.getloadavg()
    files = [os.path.join(args.data, f"{s}.txt") for s in ("train", "valid", "test")]
    try:
        pc = prepare(*files, num_classes=args.classes, cache_dir=os.path.join(args.out, "cache"))
    except RnnlmError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    tok = pc.tokenizer
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "demo.rnnlm")
    mcfg = ModelConfig(vocab_size=len(tok), hidden=args.hidden, classes=tok.num_classes,
                       activation=args.activation, direct_size=int(args.direct * 1e6),
                       direct_order=args.direct_order)
    tcfg = TrainConfig(lr=args.lr, beta=args.beta, clip=args.clip, schedule=args.schedule, bptt=args.bptt, bptt_block=args.bptt_block,
                       batch_size=args.batch_size, max_epochs=args.max_epochs,
                       min_improvement=args.min_improvement, seed=args.seed,
                       independent=args.independent, checkpoint_words=0, dropout=args.dropout,
                       dropout_input=args.dropout_input, patience=args.patience, asgd=args.asgd)
    print(f"corpus {args.data}: vocabulary {len(tok)}, train {len(pc['train']):,} tokens; "
          f"model: hidden {mcfg.hidden}, {mcfg.classes} classes, schedule {tcfg.schedule}")
    trainer = Trainer(mcfg, tcfg, tok, pc["train"], pc["valid"], model_path)
    t0, c0 = time.perf_counter(), time.process_time()
    mf = trainer.run()
    t_train, cpu_train = time.perf_counter() - t0, time.process_time() - c0

    def ppl(split):
        lp = stream_logprobs(mcfg, mf.params, trainer.classes, pc[split], tok.eos_id, args.independent)
        return math.exp(-lp.mean())

    kn = KneserNey.fit(np.asarray(pc["train"]), len(tok), order=3, pad_id=tok.eos_id)
    counts = tok.counts / tok.counts.sum()
    stats_path = os.path.join(args.data, "stats.json")
    true = json.load(open(stats_path))["true_ppl"] if os.path.exists(stats_path) else {}
    print()
    figures = {
        "rnn": {"valid": ppl("valid"), "test": ppl("test")},
        "kn3": {s: kn.perplexity(np.asarray(pc[s])) for s in ("valid", "test")},
        "unigram": {s: math.exp(-np.log(counts[pc[s]]).mean()) for s in ("valid", "test")},
    }
    if true:
        figures["true"] = {s: true[s] for s in ("valid", "test")}
    print("| perplexity | valid | test |")
    print("|---|---:|---:|")
    labels = [("rnn", f"this RNN (hidden {mcfg.hidden})"), ("true", "true (the grammar itself)"),
              ("kn3", "Kneser-Ney trigram"), ("unigram", "unigram")]
    for key, label in labels:
        if key in figures:
            print(f"| {label} | {figures[key]['valid']:.2f} | {figures[key]['test']:.2f} |")
    if true:
        figures["test_above_true_percent"] = 100 * (figures["rnn"]["test"] / true["test"] - 1)
        print(f"\ntest perplexity is {figures['test_above_true_percent']:.1f}% above the true perplexity")
    epochs = [h for h in mf.meta["history"] if not h.get("diverged")]
    print(f"training: {len(epochs)} epochs, {t_train:.1f} s wall, {cpu_train:.1f} s CPU")
    print(f"\nsampled sentences (seed {args.seed}):")
    rng = np.random.default_rng(args.seed)
    st = Stepper(mcfg, mf.params, trainer.classes, tok.eos_id, args.independent)
    for _ in range(args.samples):
        st.h[:] = mcfg.init_hidden
        print("  " + tok.decode(sample_ids(st, rng, max_len=40)).strip())
    total = time.perf_counter() - t_start
    print(f"\nmodel: {model_path}; total time {total:.0f} s (training {t_train:.0f} s wall, {cpu_train:.0f} s CPU)")
    if args.results:
        rows = [[label, round(figures[key]["valid"], 2), round(figures[key]["test"], 2)]
                for key, label in labels if key in figures]
        note = (f"Test perplexity {figures['test_above_true_percent']:.1f}% above the true perplexity; "
                if true else "") + (f"{len(epochs)} epochs, training {t_train:.0f} s wall ({cpu_train:.0f} s CPU); "
                                    f"load average {load_start[0]:.2f} at the start.")
        results_json.write(os.path.splitext(os.path.basename(args.results))[0], [figures], started_at,
                           dict(settings=vars(args), figures=figures, epochs=len(epochs), train_seconds_wall=t_train,
                                train_seconds_cpu=cpu_train, total_seconds_wall=total,
                                total_seconds_cpu=time.process_time() - cpu_start, history=mf.meta["history"],
                                load_average_start=load_start),
                           out_dir=os.path.dirname(os.path.abspath(args.results)),
                           tables={"perplexity": dict(columns=["perplexity", "valid", "test"], rows=rows, note=note)})
        print(f"record: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
