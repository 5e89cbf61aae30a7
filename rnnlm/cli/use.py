"""Command-line verbs that use a trained model: `rnnlm eval | score | sample | kn-prob`.

Argument parsing and printing only; the work is done by `rnnlm.use.api`, `rnnlm.use.score` and
`rnnlm.use.interpolate`, imported inside the command functions so that `rnnlm --help` stays instant.
Results go to stdout; notes and progress bars (only when stderr is a terminal) to stderr.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from rnnlm.errors import RnnlmError

LN10 = math.log(10.0)
PER_WORD_HEADER = "Index   P(NET)          Word"
PER_WORD_HEADER_LM = "Index   P(NET)          P(LM)           Word"
DASHES = "----------------------------------"


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _unit_interval(s: str) -> float:
    v = float(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {s}")
    return v


def _add_other_lm(p, lm_prob_help: str) -> None:
    g = p.add_argument_group("interpolation with another language model (per word, linear)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--lm-prob", metavar="FILE", help=lm_prob_help)
    x.add_argument("--ngram", metavar="LM", help="an ARPA or binary n-gram model, read with the optional "
                   "`kenlm` package (pip install kenlm)")
    g.add_argument("--lambda", dest="lam", type=_unit_interval, default=0.75, metavar="L",
                   help="weight of the RNN: P = L*P_rnn + (1-L)*P_other (default: 0.75, as rnnlm-0.4b)")


def add_use_commands(sub) -> None:
    e = sub.add_parser(
        "eval", help="perplexity of texts under a model", formatter_class=_formatter,
        description="Score every token of each TEXT (each line's </s> included), the state carried\n"
                    "from line to line, and print perplexity, entropy (bits per token), token and OOV\n"
                    "counts. OOV words map to <unk> when the vocabulary has it, otherwise they are\n"
                    "skipped (not scored) and counted. Blank lines are skipped; '-' reads stdin.\n"
                    "--per-word prints one line per token (index, probability, word) as rnnlm-0.4b's\n"
                    "-debug 2; --dynamic LR keeps training on the text while scoring it (rnnlm-0.4b\n"
                    "-dynamic; the model file is never changed).",
        epilog="examples:\n"
               "  rnnlm eval ptb.rnnlm ptb/test.txt\n"
               "  rnnlm eval ptb.rnnlm ptb/test.txt --per-word | head\n"
               "  rnnlm eval ptb.rnnlm ptb/test.txt --json --dynamic 0.1\n"
               "  rnnlm eval ptb.rnnlm ptb/test.txt --lm-prob test.kn --lambda 0.6\n"
               "  rnnlm eval ptb.rnnlm ptb/test.txt --ngram ptb.arpa")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("texts", nargs="+", metavar="TEXT", help="text file(s); '-' = stdin")
    e.add_argument("--per-word", action="store_true", help="one line per token: index, P, word (rnnlm-0.4b -debug 2)")
    e.add_argument("--json", action="store_true", help="one JSON object per TEXT (one per line)")
    e.add_argument("--dynamic", type=float, default=None, metavar="LR",
                   help="dynamic evaluation with learning rate LR (rnnlm-0.4b -dynamic)")
    _add_other_lm(e, "the other LM's probability of each token, one per line, OOVs and </s> "
                     "included (rnnlm-0.4b -lm-prob; see `rnnlm kn-prob`)")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser(
        "score", help="log10 probability of each sentence (n-best rescoring)", formatter_class=_formatter,
        description="Print the log10 probability of each line of FILE (with its </s>), one per line;\n"
                    "a blank line is an empty sentence. --nbest: each line starts with an utterance\n"
                    "id, which is printed back in front of the score and never scored (rnnlm-0.4b\n"
                    "-nbest). Each sentence starts from the start state (--independent, the default)\n"
                    "or from where the previous one ended (--carry; with --nbest, as rnnlm-0.4b: all\n"
                    "hypotheses of an utterance start from the same state).",
        epilog="examples:\n"
               "  rnnlm score ptb.rnnlm sentences.txt\n"
               "  rnnlm score ptb.rnnlm nbest.txt --nbest --oov-penalty -5\n"
               "  rnnlm score ptb.rnnlm nbest.txt --nbest --lm-prob nbest.kn --lambda 0.5")
    s.add_argument("model", metavar="MODEL")
    s.add_argument("file", metavar="FILE", help="one sentence per line; '-' = stdin")
    s.add_argument("--nbest", action="store_true", help="each line is: UTTERANCE-ID word word ...")
    st = s.add_mutually_exclusive_group()
    st.add_argument("--independent", dest="carry", action="store_false", default=False,
                    help="each sentence from the start state (default)")
    st.add_argument("--carry", dest="carry", action="store_true", help="carry the state from sentence to sentence")
    s.add_argument("--oov-penalty", type=float, default=None, metavar="LOG10P",
                   help="log10 score of a skipped OOV word (vocabularies without <unk>; default: "
                        "not scored, 0; rnnlm-0.4b -nbest uses -5)")
    _add_other_lm(s, "the other LM's probability of each token of FILE (ids excluded), one per line, "
                     "OOVs and </s> included")
    s.set_defaults(func=cmd_score)

    g = sub.add_parser(
        "sample", help="generate sentences", formatter_class=_formatter,
        description="Sample sentences from the model, each from the start state, each ending at </s>\n"
                    "or after --max-len words. <unk> is never produced unless --allow-unk.",
        epilog="examples:\n"
               "  rnnlm sample ptb.rnnlm --n 5 --seed 1\n"
               "  rnnlm sample ptb.rnnlm --prefix \"the market\" --temperature 0.7 --top-k 20")
    g.add_argument("model", metavar="MODEL")
    g.add_argument("--n", type=int, default=5, metavar="N", help="number of sentences (default: 5)")
    g.add_argument("--max-len", type=int, default=50, metavar="W", help="at most W sampled words (default: 50)")
    g.add_argument("--temperature", type=float, default=1.0, metavar="T", help="default: 1.0")
    g.add_argument("--top-k", type=int, default=0, metavar="K", help="sample among the K likeliest words (0: all)")
    g.add_argument("--prefix", default="", metavar="TEXT", help="words every sentence starts with")
    g.add_argument("--seed", type=int, default=None, help="random seed (same seed, same text; default: fresh)")
    g.add_argument("--allow-unk", action="store_true", help="let <unk> be sampled")
    g.set_defaults(func=cmd_sample)

    k = sub.add_parser(
        "kn-prob", help="write Kneser-Ney per-word probabilities (an --lm-prob file)",
        formatter_class=_formatter,
        description="Fit an interpolated modified Kneser-Ney n-gram model on TRAIN with the vocabulary\n"
                    "of MODEL and print the probability of every token of TEXT, one per line, in the\n"
                    "order `rnnlm eval MODEL TEXT --lm-prob` reads them (skipped OOVs get 0).",
        epilog="example:\n"
               "  rnnlm kn-prob ptb.rnnlm ptb/train.txt ptb/test.txt --order 3 > test.kn\n"
               "  rnnlm eval ptb.rnnlm ptb/test.txt --lm-prob test.kn --lambda 0.6")
    k.add_argument("model", metavar="MODEL")
    k.add_argument("train", metavar="TRAIN")
    k.add_argument("text", metavar="TEXT")
    k.add_argument("--order", type=int, default=3, help="n-gram order (default: 3)")
    k.set_defaults(func=cmd_kn_prob)


# ---------------------------------------------------------------- helpers

def _bar(total: int, desc: str):
    """(update callback, bar) for a tqdm bar on stderr when it is a terminal, else (None, None)."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=total, file=sys.stderr, leave=False, desc=desc, unit="tok")
    return bar.update, bar


def _note(msg: str) -> None:
    print(f"rnnlm: note: {msg}", file=sys.stderr)


def _other_probs(args, tok, lines, al, name):
    """Per-token probabilities of the other LM (or None)."""
    from rnnlm.use import interpolate as interp
    if args.lm_prob:
        return interp.read_prob_file(args.lm_prob, len(al.ids), name)
    if args.ngram:
        if tok.kind != "word":
            raise RnnlmError(f"--ngram needs a word-level model ({args.model} uses {tok.kind} pieces); "
                             "give per-piece probabilities with --lm-prob")
        return interp.kenlm_probs(args.ngram, lines, len(al.ids))
    return None


def _summary(res) -> str:
    return (f"log10 prob {res.logprob / LN10:.4f}  entropy {res.entropy:.4f} bits  "
            f"perplexity {res.perplexity:.3f}")


# ---------------------------------------------------------------- eval

def cmd_eval(args) -> int:
    from rnnlm.use import interpolate as interp
    from rnnlm.data.align import align_lines
    from rnnlm.use.api import load
    from rnnlm.use.result import EvalResult
    from rnnlm.use.score import eval_result, text_logprobs
    from rnnlm.data.text import read_lines

    if (args.lm_prob or args.ngram) and len(args.texts) > 1:
        raise RnnlmError("--lm-prob / --ngram take one TEXT at a time")
    if args.dynamic is not None and not (args.dynamic > 0 and math.isfinite(args.dynamic)):
        raise RnnlmError(f"--dynamic learning rate must be a positive finite number, got {args.dynamic}")
    m = load(args.model)
    for path in args.texts:
        lines = read_lines(path)
        al = align_lines(m.tokenizer, lines, keep_tokens=args.per_word)
        p_other = _other_probs(args, m.tokenizer, lines, al, lines.source)
        update, bar = _bar(int(al.scored.sum()), "eval")
        try:
            lp = text_logprobs(m, al, dynamic=args.dynamic, progress=update)
        finally:
            if bar is not None:
                bar.close()
        res = eval_result(m, al, lp)
        mask = al.scored
        other = combined = None
        if p_other is not None:
            other = EvalResult(res.tokens, float(interp.ln_other(p_other[mask]).sum()), res.oov, res.unk,
                               res.oov_policy)
            comb = interp.interpolate(lp, p_other, args.lam)
            combined = EvalResult(res.tokens, float(comb[mask].sum()), res.oov, res.unk, res.oov_policy)
        if args.per_word and not args.json:
            _print_per_word(al, lp, p_other)
        src = ("other LM: " + (args.lm_prob or args.ngram)) if p_other is not None else None
        if args.json:
            d = dict(file=lines.source, lines=len(lines), blank_lines=lines.n_blank, dynamic=args.dynamic,
                     **res.to_dict())
            if other is not None:
                d["other"] = dict(source=args.lm_prob or args.ngram, **other.to_dict())
                d["interpolated"] = dict(lam=args.lam, **combined.to_dict())
            if args.per_word:
                d["per_word"] = [dict(index=i, prob=(math.exp(v) if i >= 0 else 0.0), word=w, oov=o)
                                 for i, v, w, o in zip(al.ids.tolist(), lp.tolist(), al.tokens,
                                                       al.oov.tolist())]
            print(json.dumps(d))
            continue
        dyn = f", dynamic evaluation lr {args.dynamic:g}" if args.dynamic is not None else ""
        n_oov = res.oov + res.unk
        rate = f"; {100 * n_oov / len(al.ids):.2f}% of tokens" if n_oov else ""
        print(f"{lines.source}: {len(lines):,} lines ({lines.n_blank:,} blank skipped), {res.tokens:,} tokens "
              f"scored incl. </s>, OOV {n_oov:,} ({res.oov_policy}{rate}){dyn}")
        if other is None:
            print(_summary(res))
        else:
            print(f"rnn:          {_summary(res)}")
            print(f"other:        {_summary(other)}  ({src})")
            print(f"interpolated: {_summary(combined)}  (lambda {args.lam:g})")
    return 0


def _print_per_word(al, lp, p_other) -> None:
    out = sys.stdout
    out.write((PER_WORD_HEADER if p_other is None else PER_WORD_HEADER_LM) + "\n" + DASHES + "\n")
    ids = al.ids.tolist()
    probs = [math.exp(v) for v in lp.tolist()]
    rows = []
    for k, i in enumerate(ids):
        if i < 0:
            rows.append("-1\t0\t\tOOV" if p_other is None else "-1\t0\t\t0\t\tOOV")
        elif p_other is None:
            rows.append(f"{i}\t{probs[k]:.10f}\t{al.tokens[k] if not al.oov[k] else '<unk>'}")
        else:
            rows.append(f"{i}\t{probs[k]:.10f}\t{p_other[k]:.10f}\t{al.tokens[k] if not al.oov[k] else '<unk>'}")
        if len(rows) >= 8192:
            out.write("\n".join(rows) + "\n")
            rows = []
    if rows:
        out.write("\n".join(rows) + "\n")
    out.write("\n")


# ---------------------------------------------------------------- score

def cmd_score(args) -> int:
    from rnnlm.use import interpolate as interp
    from rnnlm.data.align import align_lines, read_all_lines, split_ids
    from rnnlm.use.api import load
    from rnnlm.use.score import line_sums, nbest_logprobs, text_logprobs

    m = load(args.model)
    lines, name = read_all_lines(args.file)
    utt = None
    if args.nbest:
        utt, lines = split_ids(lines, name)
    al = align_lines(m.tokenizer, lines)
    p_other = _other_probs(args, m.tokenizer, lines, al, name)
    update, bar = _bar(len(al.ids), "score")
    try:
        if args.nbest and args.carry:
            lp = nbest_logprobs(m, al, utt, progress=update)
        else:
            lp = text_logprobs(m, al, carry=args.carry, progress=update)
    finally:
        if bar is not None:
            bar.close()
    if p_other is not None:
        lp = interp.interpolate(lp, p_other, args.lam)
    skipped = ~al.scored
    if skipped.any():
        if args.oov_penalty is None:
            lp[skipped] = 0.0
            _note(f"{int(skipped.sum())} OOV words skipped (not scored; {m.tokenizer.oov_policy}); "
                  "see --oov-penalty")
        else:
            lp[skipped] = args.oov_penalty * LN10
    sums = line_sums(lp, al.line_starts) / LN10
    out = [f"{u} {v:.6f}" for u, v in zip(utt, sums.tolist())] if utt is not None else \
          [f"{v:.6f}" for v in sums.tolist()]
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0


# ---------------------------------------------------------------- sample

def cmd_sample(args) -> int:
    from rnnlm.use.api import load
    m = load(args.model)
    for s in m.sample(args.n, max_len=args.max_len, temperature=args.temperature, top_k=args.top_k,
                      prefix=args.prefix, seed=args.seed, allow_unk=args.allow_unk):
        print(s)
    return 0


# ---------------------------------------------------------------- kn-prob

def cmd_kn_prob(args) -> int:
    from rnnlm.use import interpolate as interp
    from rnnlm.data.align import align_lines
    from rnnlm.use.api import load
    from rnnlm.data.text import read_lines
    m = load(args.model)
    al = align_lines(m.tokenizer, read_lines(args.text))
    p = interp.kneser_ney_probs(m.tokenizer, args.train, al, order=args.order)
    sys.stdout.write("".join(f"{v:.12g}\n" for v in p.tolist()))
    return 0
