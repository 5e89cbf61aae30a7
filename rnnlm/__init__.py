"""rnnlm: Elman recurrent neural network language models with a Numba-compiled core.

Importing this package is cheap: NumPy-heavy and Numba-compiled modules load on first use.
"""
from rnnlm.errors import RnnlmError

__version__ = "0.1.0"

__all__ = ["RnnlmError", "__version__", "load"]


def load(path):
    """Load a model file written by `rnnlm train` (a `rnnlm.api.LanguageModel`).

    >>> import rnnlm
    >>> m = rnnlm.load("syn.rnnlm")                  # doctest: +SKIP
    >>> m.score("the cat sat"), m.perplexity("the cat sat")   # doctest: +SKIP
    """
    from rnnlm.api import load as _load
    return _load(path)
