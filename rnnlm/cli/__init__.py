"""The command line: `rnnlm prepare | vocab | train | eval | score | sample ...`."""
from rnnlm.cli.app import build_parser, main  # noqa: F401
