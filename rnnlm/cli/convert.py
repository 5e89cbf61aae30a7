"""`rnnlm import-rnnlm` and `rnnlm export-rnnlm`: convert between our model files and rnnlm-0.4b's.

Arguments only; the work is in rnnlm/interop/rnnlm04b/files.py (the file format) and rnnlm/interop/rnnlm04b/convert.py.
"""
from __future__ import annotations

import argparse
import os
import sys

from rnnlm.errors import RnnlmError


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_convert_commands(sub) -> None:
    i = sub.add_parser(
        "import-rnnlm", help="convert an rnnlm-0.4b model file (text or -binary) to ours",
        formatter_class=_formatter,
        description="Read a model written by Mikolov's rnnlm-0.4b (text or -binary format: vocabulary\n"
                    "with counts and classes, saved hidden state, weights, direct n-gram connections)\n"
                    "and write it as our model file. By default it is evaluated exactly as rnnlm-0.4b\n"
                    "evaluates it: `rnnlm eval` prints the perplexity `rnnlm -test` prints (its\n"
                    "fasterexp arithmetic, initial state from the file, OOV words skipped). Files\n"
                    "written by `rnnlm export-rnnlm` become the model they came from again.\n"
                    "(`rnnlm eval` also reads rnnlm-0.4b files directly.)",
        epilog="examples:\n  rnnlm import-rnnlm model.rnnlm0.4b model.rnnlm\n"
               "  rnnlm import-rnnlm model.rnnlm0.4b model.rnnlm --as native   # our exact arithmetic")
    i.add_argument("old", metavar="OLD_MODEL", help="rnnlm-0.4b model file")
    i.add_argument("new", metavar="NEW_MODEL", help="our model file to write")
    i.add_argument("--as", dest="mode", choices=("auto", "rnnlm-0.4b", "native"), default="auto",
                   help="evaluate with rnnlm-0.4b's arithmetic and conventions, or with ours "
                        "(default auto: native for files written by export-rnnlm, else rnnlm-0.4b)")
    i.add_argument("--force", action="store_true", help="overwrite NEW_MODEL")
    i.set_defaults(func=cmd_import)

    e = sub.add_parser(
        "export-rnnlm", help="write a model in rnnlm-0.4b's format",
        formatter_class=_formatter,
        description="Write MODEL as an rnnlm-0.4b model file (its text format, or its -binary format),\n"
                    "readable by rnnlm-0.4b and tools that read its files. Sigmoid hidden layer and word\n"
                    "vocabulary only. </s> becomes word 0; biases (which rnnlm-0.4b lacks) are carried\n"
                    "by one extra hidden unit held at 1.0. The text format rounds weights to 4\n"
                    "decimals (direct weights to 2); through --binary, import-rnnlm gives back a model\n"
                    "that evaluates exactly like MODEL.",
        epilog="examples:\n  rnnlm export-rnnlm model.rnnlm model.txt\n"
               "  rnnlm export-rnnlm model.rnnlm model.bin --binary")
    e.add_argument("model", metavar="MODEL", help="our model file")
    e.add_argument("out", metavar="OUT", help="rnnlm-0.4b model file to write")
    e.add_argument("--binary", action="store_true", help="rnnlm-0.4b's -binary format (exact weights)")
    e.add_argument("--force", action="store_true", help="overwrite OUT")
    e.set_defaults(func=cmd_export)


def _check_out(path: str, force: bool, source: str) -> None:
    from rnnlm.outputs import refuse_inputs
    refuse_inputs(path, [source])
    if os.path.isdir(path):
        raise RnnlmError(f"{path}: is a directory")
    if os.path.exists(path) and not force:
        raise RnnlmError(f"{path}: exists; use --force to overwrite")


def _notes(notes) -> None:
    for n in notes:
        print(f"rnnlm: note: {n}", file=sys.stderr)


def cmd_import(args) -> int:
    from rnnlm.model.file import save_model
    from rnnlm.interop.rnnlm04b.convert import import_model
    from rnnlm.outputs import OutputLock
    _check_out(args.new, args.force, args.old)
    if not os.path.exists(args.old):
        raise RnnlmError(f"{args.old}: no such file")
    mf, notes = import_model(args.old, args.mode)
    with OutputLock(args.new):
        save_model(args.new, mf)
    c, h = mf.config, mf.meta["rnnlm04b"]["header"]
    _notes(notes)
    print(f"{args.old}: rnnlm-0.4b {'binary' if h['file_format'] else 'text'} model, vocabulary "
          f"{c.vocab_size:,}, hidden {c.hidden}, classes {c.classes}, direct "
          + (f"{c.direct_size:,} order {c.direct_order}" if c.direct_size else "none")
          + (", independent sentences" if h["independent"] else ""))
    print(f"saved {args.new} (evaluated {'as rnnlm-0.4b' if c.compat else 'natively'})")
    return 0


def cmd_export(args) -> int:
    from rnnlm.use.evaluate import load_for_eval
    from rnnlm.interop.rnnlm04b.convert import export_model
    from rnnlm.outputs import OutputLock
    _check_out(args.out, args.force, args.model)
    mf, tok, _, _ = load_for_eval(args.model)
    with OutputLock(args.out):
        notes = export_model(mf, tok, args.out, binary=args.binary)
    _notes(notes)
    print(f"saved {args.out} (rnnlm-0.4b {'binary' if args.binary else 'text'} format)")
    return 0
