"""Command-line interface: `rnnlm prepare | vocab | train | eval ...`.

This module parses arguments and calls the library; it holds no numerics. Heavy modules (NumPy
kernels, Numba) are imported inside the command functions so that `rnnlm --help` stays instant.
Exit codes: 0 success, 1 user error (one line on stderr), 2 usage error (argparse).
"""
from __future__ import annotations

import argparse
import sys

from rnnlm.errors import RnnlmError

EPILOG = """examples:
  rnnlm prepare corpora/synthetic/train.txt corpora/synthetic/valid.txt corpora/synthetic/test.txt
  rnnlm vocab corpora/synthetic/train.txt --top 20
  rnnlm train --train corpora/synthetic/train.txt --valid corpora/synthetic/valid.txt --model m.rnnlm
  rnnlm eval m.rnnlm corpora/synthetic/test.txt
"""


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


# ---------------------------------------------------------------- prepare / vocab (data pipeline)
# (owned by the data-pipeline code: rnnlm/corpus.py, rnnlm/tokenizer.py)

def add_data_commands(sub) -> None:
    pass


# ---------------------------------------------------------------- train / eval (model)

def add_model_commands(sub) -> None:
    pass


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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RnnlmError as exc:
        print(f"rnnlm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnnlm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
