#!/usr/bin/env python
"""The main job on the bundled corpus: train a small model, compare with the truth, sample.

    python scripts/demo.py [--data corpora/synthetic] [--out runs/demo]

Trains on corpora/synthetic (no network), prints validation and test perplexity next to the corpus's
true perplexity (the grammar's exact probabilities: no model can beat it on average) and the n-gram
baselines, then samples a few sentences. Model options can be overridden (see --help).
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
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--classes", type=int, default=0, help="0: full softmax (the vocabulary is small)")
    ap.add_argument("--schedule", default="rnnlm", choices=("rnnlm", "batch"))
    ap.add_argument("--bptt", type=int, default=10)
    ap.add_argument("--bptt-block", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=0.0)
    ap.add_argument("--min-improvement", type=float, default=1.001)
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--independent", action=argparse.BooleanOptionalAction, default=True,
                    help="reset the hidden state at each end of sentence (the corpus's sentences are "
                         "independent)")
    ap.add_argument("--activation", default="sigmoid", choices=("sigmoid", "tanh", "relu"))
    ap.add_argument("--beta", type=float, default=1e-7, help="L2 regularisation")
    ap.add_argument("--direct", type=float, default=0.0, help="direct n-gram connections (millions of weights)")
    ap.add_argument("--direct-order", type=int, default=3)
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

    t_start = time.perf_counter()
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
                       independent=args.independent, checkpoint_words=0)
    print(f"corpus {args.data}: vocabulary {len(tok)}, train {len(pc['train']):,} tokens; "
          f"model: hidden {mcfg.hidden}, {mcfg.classes} classes, schedule {tcfg.schedule}")
    trainer = Trainer(mcfg, tcfg, tok, pc["train"], pc["valid"], model_path)
    mf = trainer.run()
    t_train = time.perf_counter() - t_start

    def ppl(split):
        lp = stream_logprobs(mcfg, mf.params, trainer.classes, pc[split], tok.eos_id, args.independent)
        return math.exp(-lp.mean())

    kn = KneserNey.fit(np.asarray(pc["train"]), len(tok), order=3, pad_id=tok.eos_id)
    counts = tok.counts / tok.counts.sum()
    stats_path = os.path.join(args.data, "stats.json")
    true = json.load(open(stats_path))["true_ppl"] if os.path.exists(stats_path) else {}
    print()
    print("| perplexity | valid | test |")
    print("|---|---:|---:|")
    print(f"| this RNN (hidden {mcfg.hidden}) | {ppl('valid'):.2f} | {ppl('test'):.2f} |")
    if true:
        print(f"| true (the grammar itself) | {true['valid']:.2f} | {true['test']:.2f} |")
    print(f"| Kneser-Ney trigram | {kn.perplexity(np.asarray(pc['valid'])):.2f} | "
          f"{kn.perplexity(np.asarray(pc['test'])):.2f} |")
    print(f"| unigram | {math.exp(-np.log(counts[pc['valid']]).mean()):.2f} | "
          f"{math.exp(-np.log(counts[pc['test']]).mean()):.2f} |")
    if true:
        print(f"\ntest perplexity is {100 * (ppl('test') / true['test'] - 1):.1f}% above the true perplexity")
    print(f"\nsampled sentences (seed {args.seed}):")
    rng = np.random.default_rng(args.seed)
    st = Stepper(mcfg, mf.params, trainer.classes, tok.eos_id, args.independent)
    for _ in range(args.samples):
        st.h[:] = mcfg.init_hidden
        print("  " + tok.decode(sample_ids(st, rng, max_len=40)).strip())
    print(f"\nmodel: {model_path}; total time {time.perf_counter() - t_start:.0f} s "
          f"(training {t_train:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
