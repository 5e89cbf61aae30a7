"""rnnlm: Elman recurrent neural network language models with a Numba-compiled core.

Importing this package is cheap: NumPy-heavy and Numba-compiled modules load on first use.
"""
from rnnlm.errors import RnnlmError

__version__ = "0.1.0"

__all__ = ["RnnlmError", "__version__", "load", "train"]


def load(path):
    """Load a model file written by `rnnlm train` (a `rnnlm.use.api.LanguageModel`).

    >>> import rnnlm
    >>> m = rnnlm.load("syn.rnnlm")                  # doctest: +SKIP
    >>> m.score("the cat sat"), m.perplexity("the cat sat")   # doctest: +SKIP
    """
    from rnnlm.use.api import load as _load
    return _load(path)


def train(**flags):
    """Train a model with `rnnlm train`'s flags as keyword arguments (as SentencePieceTrainer.train),
    and return it loaded (a `rnnlm.use.api.LanguageModel`). Flag names use underscores; a switch
    takes True (`independent=True`, `force=True`; `bias=False` for --no-bias). Errors raise
    RnnlmError; progress and the epoch lines are printed as by the command.

    >>> import rnnlm
    >>> m = rnnlm.train(train="corpora/synthetic/train.txt", valid="corpora/synthetic/valid.txt",
    ...                 model="syn.rnnlm", hidden=64, classes=20, max_epochs=5)   # doctest: +SKIP
    >>> m.perplexity("the cat sat")                                            # doctest: +SKIP
    """
    from rnnlm.cli.app import train_from_flags
    train_from_flags(flags)
    return load(flags["model"])
