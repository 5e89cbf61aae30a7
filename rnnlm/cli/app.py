"""Command-line interface: `rnnlm prepare | vocab | train | eval | score | sample ...`.

This module parses arguments and calls the library; it holds no numerics. Heavy modules (NumPy
kernels, Numba) are imported inside the command functions so that `rnnlm --help` stays instant.
Exit codes: 0 success, 1 user error (one line on stderr), 2 usage error (argparse).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from rnnlm.cli.convert import add_convert_commands
from rnnlm.cli.use import add_use_commands
from rnnlm.errors import RnnlmError

EPILOG = """examples:
  rnnlm prepare corpora/synthetic/train.txt corpora/synthetic/valid.txt corpora/synthetic/test.txt
  rnnlm vocab corpora/synthetic/train.txt --top 20
  rnnlm train --train corpora/synthetic/train.txt --valid corpora/synthetic/valid.txt --model m.rnnlm
  rnnlm eval m.rnnlm corpora/synthetic/test.txt
  rnnlm score m.rnnlm sentences.txt
  rnnlm sample m.rnnlm --n 3 --seed 1
"""


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


# ---------------------------------------------------------------- prepare / vocab (data pipeline)
# (owned by the data-pipeline code: rnnlm/data/corpus.py, rnnlm/data/tokenizer.py)

def add_data_commands(sub) -> None:
    text_note = ("Input: UTF-8 text, one sentence per line. CRLF line ends are accepted;\n"
                 "blank lines are skipped (and counted). Each line gets a final </s>.\n"
                 "'-' reads standard input.")
    p = sub.add_parser(
        "prepare", help="tokenise train/valid/test and cache the id arrays",
        formatter_class=_formatter,
        description="Build the tokenizer from TRAIN only, tokenise every split and cache it as\n"
                    "int32 .npy arrays (reused while the files and settings are unchanged).\n"
                    "Text is streamed (memory does not grow with the corpus); progress goes to\n"
                    "stderr (a bar on a terminal, else a line every $RNNLM_PROGRESS_SECONDS=30 s).\n\n"
                    + text_note,
        epilog="examples:\n"
               "  rnnlm prepare train.txt valid.txt test.txt --classes 100 --out tok.json\n"
               "  rnnlm prepare train.txt valid.txt --tokenizer sentencepiece --sp-vocab-size 8000\n"
               "  rnnlm prepare --dataset ptb_text_only\n"
               "  rnnlm prepare --dataset wikitext --dataset-config wikitext-2-raw-v1\n"
               "  rnnlm prepare --dataset text train.txt valid.txt   # local files via `datasets`")
    p.add_argument("train", nargs="?", metavar="TRAIN", help="training text (builds the tokenizer)")
    p.add_argument("valid", nargs="?", metavar="VALID", help="validation text")
    p.add_argument("test", nargs="?", metavar="TEST", help="test text")
    p.add_argument("--dataset", metavar="NAME",
                   help="Hugging Face dataset: a hub name (no files) or a builder such as `text` for the files")
    p.add_argument("--dataset-config", metavar="C", help="dataset config, e.g. wikitext-2-raw-v1")
    p.add_argument("--tokenizer", choices=("word", "sentencepiece"), default="word",
                   help="word (whitespace) or sentencepiece (default: word)")
    _add_vocab_options(p)
    p.add_argument("--sp-vocab-size", type=int, default=8000, metavar="N",
                   help="SentencePiece vocabulary size, an upper bound (default: 8000)")
    p.add_argument("--sp-model-type", choices=("unigram", "bpe"), default="unigram",
                   help="SentencePiece model type (default: unigram)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache directory (default: $RNNLM_CACHE_DIR or ~/.cache/rnnlm)")
    p.add_argument("--out", metavar="TOKENIZER_FILE", help="also save the tokenizer to this file")
    p.set_defaults(func=cmd_prepare)

    v = sub.add_parser(
        "vocab", help="show the word vocabulary and classes built from a training text",
        formatter_class=_formatter,
        description="Count the words of TRAIN and show the vocabulary, the most frequent words\n"
                    "and the frequency classes (as rnnlm-0.4b -class N assigns them).\n\n" + text_note,
        epilog="examples:\n  rnnlm vocab train.txt --top 20\n"
               "  rnnlm vocab train.txt --min-count 3 --classes 200 --old-classes")
    v.add_argument("train", metavar="TRAIN", help="training text ('-' = stdin)")
    _add_vocab_options(v)
    v.add_argument("--top", type=int, default=20, metavar="K", help="show the K most frequent words (default: 20)")
    v.set_defaults(func=cmd_vocab)


def _add_vocab_options(p) -> None:
    p.add_argument("--min-count", type=int, default=1, metavar="N",
                   help="words seen fewer than N times become <unk> (word tokenizer; default: 1)")
    p.add_argument("--max-size", type=int, default=None, metavar="N",
                   help="keep at most N types incl. </s> and <unk> (word tokenizer)")
    p.add_argument("--classes", type=int, default=100, metavar="N",
                   help="number of frequency classes, 0 = full softmax (default: 100)")
    p.add_argument("--old-classes", dest="class_mode", action="store_const", const="unigram",
                   default="sqrt", help="bin classes by unigram mass (rnnlm-0.4b -old-classes) "
                   "instead of sqrt mass")


def _class_note(tok) -> None:
    if tok.requested_classes > 0 and tok.num_classes < tok.requested_classes:
        print(f"rnnlm: note: {tok.num_classes} classes used ({tok.requested_classes} requested; "
              f"the vocabulary has {len(tok)} types)", file=sys.stderr)


def _class_summary(tok) -> str:
    if tok.num_classes == 0:
        return "classes: none (full softmax)"
    sizes = tok.class_sizes.tolist()
    srt = sorted(sizes)
    return (f"classes: {tok.num_classes} (mode {tok.class_mode}); words per class: min {srt[0]}, "
            f"median {srt[len(srt) // 2]}, max {srt[-1]}; first {sizes[:8]}, last {sizes[-4:]}")


def cmd_prepare(args) -> int:
    from rnnlm.data.corpus import prepare
    from rnnlm.data.tokenizer import save_tokenizer
    if args.train is None and not args.dataset:
        raise RnnlmError("prepare needs a TRAIN file or --dataset NAME (see rnnlm prepare --help)")
    if args.out:
        from rnnlm.outputs import check_writable, refuse_inputs
        refuse_inputs(args.out, [args.train, args.valid, args.test], what="tokenizer file (--out)")
        if os.path.isdir(args.out):
            raise RnnlmError(f"{args.out}: is a directory")
        check_writable(args.out)
    pc = prepare(args.train, args.valid, args.test, dataset=args.dataset,
                 dataset_config=args.dataset_config, tokenizer=args.tokenizer,
                 min_count=args.min_count, max_size=args.max_size, num_classes=args.classes,
                 class_mode=args.class_mode, sp_vocab_size=args.sp_vocab_size,
                 sp_model_type=args.sp_model_type, cache_dir=args.cache_dir)
    tok = pc.tokenizer
    print(f"tokenizer: {tok.kind}, {len(tok)} types, {_class_summary(tok)}")
    print(f"tokenizer cache: {pc.tokenizer_path} ({'reused' if pc.tokenizer_reused else 'rebuilt'})")
    for s in pc.stats.values():
        print(f"{s.name}: {s.source}: {s.n_lines} lines, {s.n_tokens} tokens incl. </s>, "
              f"{s.n_oov} OOV {s.oov_policy}, {s.n_blank} blank lines skipped")
        print(f"  cache: {s.cache_path} ({'reused' if s.reused else 'rebuilt'})")
    _class_note(tok)
    if args.out:
        save_tokenizer(tok, args.out)
        print(f"tokenizer saved to {args.out}")
    return 0


def cmd_vocab(args) -> int:
    import itertools
    from rnnlm.data.stream import open_text
    from rnnlm.data.tokenizer import WordVocab
    text, tmp = open_text(args.train)      # streamed: memory grows with the vocabulary only
    try:
        lines = itertools.chain.from_iterable(text.batches(text.progress("counting words in")))
        tok = WordVocab.build(lines, min_count=args.min_count, max_size=args.max_size,
                              num_classes=args.classes, class_mode=args.class_mode, name=text.name)
    finally:
        if tmp is not None:
            os.unlink(tmp)
    total = int(tok.counts.sum())
    print(f"{text.name}: {text.n_lines} lines ({text.n_blank} blank lines skipped), "
          f"{total} tokens incl. </s>")
    unk = (f"<unk> covers {tok.counts[tok.unk_id]} tokens ({100 * tok.counts[tok.unk_id] / total:.2f}%)"
           if tok.unk_id is not None else "no <unk> (OOV words will be skipped at evaluation)")
    print(f"vocabulary: {len(tok)} types incl. </s>; {unk}")
    print(_class_summary(tok))
    k = max(0, min(args.top, len(tok)))
    if k:
        words = tok.words
        print(f"top {k}:\n{'id':>7} {'count':>10} {'share':>7} {'class':>5}  word")
        for i in range(k):
            print(f"{i:>7} {tok.counts[i]:>10} {100 * tok.counts[i] / total:>6.2f}% "
                  f"{tok.classes[i]:>5}  {words[i]}")
    _class_note(tok)
    return 0


# ---------------------------------------------------------------- train (model)

def add_model_commands(sub) -> None:
    t = sub.add_parser(
        "train", help="train a model", formatter_class=_formatter,
        description="Train an Elman RNN language model. The vocabulary comes from --train only.\n"
                    "Default schedule: rnnlm-0.4b's (per-word SGD, BPTT every --bptt-block words,\n"
                    "learning rate kept while validation entropy improves by > --min-improvement,\n"
                    "then halved every epoch; a worse epoch is rolled back; stop at the 2nd failure).\n"
                    "Writes MODEL, MODEL.ckpt (checkpoint), MODEL.log.jsonl and, with matplotlib,\n"
                    "MODEL.png. Blank lines are skipped; CRLF is accepted.",
        epilog="examples:\n"
               "  rnnlm train --train ptb/train.txt --valid ptb/valid.txt --model ptb.rnnlm \\\n"
               "      --hidden 100 --classes 100 --bptt 4 --bptt-block 10\n"
               "  rnnlm train --train t.txt --valid v.txt --model m.rnnlm --schedule batch --batch-size 32\n"
               "  rnnlm train --train t.txt --valid v.txt --model m.rnnlm --resume")
    t.add_argument("--train", metavar="FILE", help="training text")
    t.add_argument("--valid", metavar="FILE", help="validation text (learning-rate schedule, rollback)")
    t.add_argument("--dataset", metavar="NAME", help="Hugging Face dataset instead of files (train/validation splits)")
    t.add_argument("--dataset-config", metavar="C", help="dataset config, e.g. wikitext-2-raw-v1")
    t.add_argument("--model", required=True, metavar="OUT", help="model file to write")
    t.add_argument("--force", action="store_true", help="overwrite an existing model file")
    t.add_argument("--resume", action="store_true", help="continue from OUT.ckpt (options come from it)")
    g = t.add_argument_group("vocabulary")
    g.add_argument("--tokenizer", choices=("word", "sentencepiece"), default="word")
    _add_vocab_options(g)
    g.add_argument("--sp-vocab-size", type=int, default=8000, metavar="N")
    g.add_argument("--cache-dir", metavar="DIR", help="token cache (default: $RNNLM_CACHE_DIR or ~/.cache/rnnlm)")
    g = t.add_argument_group("model")
    g.add_argument("--hidden", type=int, default=100, metavar="M", help="hidden units (default: 100)")
    g.add_argument("--activation", choices=("sigmoid", "tanh", "relu"), default="sigmoid")
    g.add_argument("--softmax", choices=("class", "full", "hs"), default=None,
                   help="output layer: class-factored (--classes N), full, or hs: hierarchical softmax over "
                        "a Huffman tree of the training counts (as faster-rnnlm; no --direct; --schedule batch: one "
                        "thread). "
                        "Default: class if --classes > 0, else full")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    g.add_argument("--direct", type=float, default=0.0, metavar="MILLIONS",
                   help="direct n-gram connections: hash table size in millions of weights, as "
                        "rnnlm-0.4b's -direct (4 bytes each in float32; default: 0 = none)")
    g.add_argument("--direct-order", type=int, default=3, metavar="K",
                   help="n-gram order of the direct connections (default: 3)")
    g.add_argument("--no-bias", dest="bias", action="store_false",
                   help="no hidden/output biases (as rnnlm-0.4b; needed for export-rnnlm)")
    g.add_argument("--tie", action="store_true",
                   help="weight tying: the output word vectors are the input embedding, stored once "
                        "(class or full softmax; --schedule rnnlm on one thread)")
    g = t.add_argument_group("training")
    g.add_argument("--schedule", choices=("rnnlm", "batch"), default="rnnlm",
                   help="rnnlm: rnnlm-0.4b per-word SGD; batch: B streams x T-step windows (default: rnnlm)")
    g.add_argument("--bptt", type=int, default=4, metavar="T", help="BPTT steps (window length for batch; default: 4)")
    g.add_argument("--bptt-block", type=int, default=10, metavar="K", help="rnnlm: propagate errors every K words (default: 10)")
    g.add_argument("--batch-size", type=int, default=32, metavar="B", help="batch: parallel streams (default: 32)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.1 rnnlm, 1.0 batch)")
    g.add_argument("--beta", type=float, default=1e-7, help="L2 regularisation (default: 1e-7)")
    g.add_argument("--clip", type=float, default=0.0, help="max gradient norm per update, 0 = off (default: 0)")
    g.add_argument("--cost", choices=("ce", "sse"), default="ce", help="ce or sse (sse: full softmax only)")
    g.add_argument("--max-epochs", type=int, default=20, metavar="N")
    g.add_argument("--min-improvement", type=float, default=1.003, metavar="F")
    g.add_argument("--patience", type=int, default=1, metavar="K",
                   help="failing epochs in a row (by --min-improvement) before halving starts or training "
                        "stops; K > 1 keeps the best weights and goes on from the latest (default: 1, rnnlm-0.4b)")
    g.add_argument("--asgd", action="store_true",
                   help="averaged SGD (NT-ASGD): where halving would start, keep lr and average the weights "
                        "after every chunk instead; validation and MODEL use the average; halving comes after")
    g.add_argument("--independent", action="store_true", help="reset the hidden state after each </s>")
    g.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="rnnlm: dropout rate on the state the output layer reads (default: 0)")
    g.add_argument("--dropout-input", type=float, default=0.0, metavar="P",
                   help="rnnlm: dropout rate on the input word's embedding (default: 0)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="compute threads (default: $RNNLM_THREADS, else all cores this process may use). "
                        "The same seed and thread count give the same model; the rnnlm schedule trains "
                        "one text shard per thread, so give --threads 1 for rnnlm-0.4b's exact procedure")
    g.add_argument("--checkpoint-words", type=int, default=1_000_000, metavar="N",
                   help="also checkpoint every N training words (default: 1000000; 0 = epoch ends only)")
    g = t.add_argument_group("distributed (optional extra: pip install \"rnnlm-numba[distributed]\")")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="rnnlm schedule: train N text shards on N Ray workers (one core each), merged as "
                        "--threads N merges its shards (the same model); starts a local Ray unless "
                        "--ray-address (or $RAY_ADDRESS) is given")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="join this Ray cluster (auto, or HEAD:6379) instead of starting a local Ray")
    g.add_argument("--sync-words", type=int, default=None, metavar="N",
                   help="rnnlm schedule on threads or workers: words of each shard between merges (default: 2048, "
                        "fewer for a model so costly that a round would take long, e.g. a full softmax over a large vocabulary)")
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from rnnlm.outputs import OutputLock, check_writable, refuse_inputs
    from rnnlm.runtime import cap_threads
    if not args.train and not args.dataset:
        raise RnnlmError("give --train FILE and --valid FILE, or --dataset NAME")
    if args.train and not args.valid:
        raise RnnlmError("--valid FILE is required (it drives the learning-rate schedule)")
    if os.path.isdir(args.model):
        raise RnnlmError(f"{args.model}: is a directory")
    for name in ("workers", "sync_words"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise RnnlmError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workers is not None:
        if args.threads is not None:
            raise RnnlmError("give --workers or --threads, not both (each worker trains one shard on one core)")
        from rnnlm.training.distributed import import_ray
        import_ray()   # fail before the corpus is read
    if args.threads is not None:
        args.threads = cap_threads(args.threads)
    for suffix in ("", ".ckpt", ".ckpt.rollback0", ".ckpt.rollback1", ".log.jsonl", ".png"):   # MODEL and its companions
        refuse_inputs(args.model + suffix, [args.train, args.valid], what="model" if not suffix else f"{suffix} file")
    check_writable(args.model)
    with OutputLock(args.model):   # one writer of MODEL (and its .ckpt, .log.jsonl, .png) at a time
        return _train(args)


def _train(args) -> int:
    from rnnlm.runtime import default_threads, use_threads
    from rnnlm.model.config import ModelConfig, TrainConfig
    from rnnlm.data.corpus import prepare
    from rnnlm.model.file import load_model
    from rnnlm.data.tokenizer import tokenizer_from_bytes
    from rnnlm.training.loop import Trainer

    if args.resume:
        ck = load_model(args.model + ".ckpt") if os.path.exists(args.model + ".ckpt") else None
        if ck is None:
            raise RnnlmError(f"{args.model}.ckpt: no checkpoint to resume from")
        mcfg, tcfg = ck.config, TrainConfig.from_dict(ck.meta["train"])
        tok = tokenizer_from_bytes(ck.tokenizer_bytes)
        if args.workers is not None and args.workers != tcfg.workers:
            raise RnnlmError(f"{args.model}.ckpt: was made with "
                             + (f"--workers {tcfg.workers}" if tcfg.workers else "threads, not --workers")
                             + "; resume with the same setting")
    elif os.path.exists(args.model) and not args.force:
        raise RnnlmError(f"{args.model}: exists; use --force to overwrite or --resume to continue")
    else:
        tok = args.tokenizer
    if args.classes < 0:
        raise RnnlmError(f"--classes must be >= 0 (0 = full softmax), got {args.classes}")
    softmax = args.softmax or ("class" if args.classes > 0 else "full")
    if softmax == "class" and args.classes <= 0:
        raise RnnlmError("--softmax class needs --classes N > 0")
    pc = prepare(args.train, args.valid, dataset=args.dataset, dataset_config=args.dataset_config,
                 tokenizer=tok, min_count=args.min_count, max_size=args.max_size,
                 num_classes=args.classes if softmax == "class" or args.resume else 0, class_mode=args.class_mode,
                 sp_vocab_size=args.sp_vocab_size, cache_dir=args.cache_dir)
    tok = pc.tokenizer
    if not args.resume:
        mcfg = ModelConfig(vocab_size=len(tok), hidden=args.hidden, classes=tok.num_classes,
                           activation=args.activation, dtype=args.dtype, bias=args.bias,
                           direct_size=int(round(args.direct * 1_000_000)), direct_order=args.direct_order,
                           softmax=softmax, tie=args.tie)
        lr = args.lr if args.lr is not None else (0.1 if args.schedule == "rnnlm" else 1.0)
        tcfg = TrainConfig(lr=lr, beta=args.beta, clip=args.clip, schedule=args.schedule, bptt=args.bptt,
                           bptt_block=args.bptt_block, batch_size=args.batch_size, cost=args.cost,
                           max_epochs=args.max_epochs, min_improvement=args.min_improvement,
                           independent=args.independent, seed=args.seed,
                           threads=(1 if args.workers else
                                    args.threads if args.threads is not None
                                    else 1 if (softmax == "hs" and args.schedule == "batch") or args.tie
                                    else default_threads()),
                           checkpoint_words=args.checkpoint_words, dropout=args.dropout,
                           dropout_input=args.dropout_input, workers=args.workers or 0,
                           sync_words=args.sync_words or 0, patience=args.patience, asgd=args.asgd)
        if tcfg.cost == "sse" and mcfg.classes:
            raise RnnlmError("--cost sse needs a full softmax (--classes 0)")
    if args.ray_address and not tcfg.workers:
        raise RnnlmError("--ray-address needs --workers N")
    use_threads(tcfg.threads)
    for name in ("train", "valid"):
        st = pc.stats[name]
        print(f"{name}: {st.n_lines:,} lines, {st.n_tokens:,} tokens, OOV {st.n_oov:,} ({st.oov_policy})"
              + (f", {st.n_blank:,} blank lines skipped" if st.n_blank else ""))
    out_layer = f"classes {mcfg.classes}" if mcfg.softmax == "class" else f"softmax {mcfg.softmax}"
    print(f"vocabulary {len(tok):,}, {out_layer}, hidden {mcfg.hidden} {mcfg.activation}, "
          f"schedule {tcfg.schedule}, lr {tcfg.lr:g}, "
          + (f"workers {tcfg.workers} (Ray)" if tcfg.workers else f"threads {tcfg.threads}")
          + (f", direct {mcfg.direct_size:,} weights order {mcfg.direct_order}" if mcfg.direct_size else "")
          + (", tied embedding" if mcfg.tie else ""))
    checks = (pc.checks.get("train"), pc.checks.get("valid"))
    if tcfg.workers:
        from rnnlm.training.distributed import DistributedTrainer
        trainer = DistributedTrainer(mcfg, tcfg, tok, pc["train"], pc["valid"], args.model, checks=checks,
                                     ids_path=pc.stats["train"].cache_path or None, ray_address=args.ray_address)
    else:
        trainer = Trainer(mcfg, tcfg, tok, pc["train"], pc["valid"], args.model, checks=checks)
    mf = trainer.run(resume=args.resume)
    best = min((h for h in mf.meta["history"] if not h.get("diverged")), key=lambda h: h["valid_entropy"])
    print(f"saved {args.model}: valid ppl {best['valid_ppl']:.2f} (best epoch {best['epoch']})")
    return 0


def train_from_flags(flags: dict) -> None:
    """`rnnlm train` with its flags given as a dict ({"hidden": 64, "independent": True, ...}): the
    same parser, checks, lock and messages as the command line; errors raise RnnlmError."""
    sub = argparse.ArgumentParser(prog="rnnlm.train", add_help=False)
    sub_all = sub.add_subparsers(dest="command")
    add_model_commands(sub_all)
    parser = sub_all.choices["train"]
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    argv = []
    for key, value in flags.items():
        if key == "no_bias":
            key, value = "bias", not value
        action = actions.get(key)
        if action is None or key == "help":
            raise TypeError(f"rnnlm.train() got an unknown flag {key!r}; flags are those of `rnnlm train`: "
                            + ", ".join(sorted(k for k in actions if k != "help")))
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            want = isinstance(action, argparse._StoreTrueAction)
            if not isinstance(value, bool):
                raise TypeError(f"rnnlm.train(): {key} takes True or False, not {value!r}")
            if value == want:
                argv.append(action.option_strings[0])
            continue
        argv += [action.option_strings[0], os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    try:
        args = parser.parse_args(argv)
    except SystemExit:   # argparse has printed the problem
        raise RnnlmError(f"rnnlm.train(): invalid flags {argv}") from None
    cmd_train(args)


# ---------------------------------------------------------------- entry point

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlm",
        description="Recurrent neural network language models (Elman RNNLM) compiled with Numba.",
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_data_commands(sub)
    add_model_commands(sub)
    add_use_commands(sub)
    add_convert_commands(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training: unwinds like Ctrl-C (temporary files are removed, no output is
    left half written) and exits with 143."""


def _on_sigterm(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:   # not the main thread
        old_term = None
    try:
        return int(args.func(args) or 0)
    except RnnlmError as exc:
        if type(exc).__name__ == "TrainingInterrupted":   # SIGINT/SIGTERM in training, checkpoint written
            print(f"rnnlm: {exc}", file=sys.stderr)
            return 128 + exc.signum
        print(f"rnnlm: error: {exc}", file=sys.stderr)
        return 1
    except Terminated:
        print("rnnlm: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("rnnlm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    raise SystemExit(main())
