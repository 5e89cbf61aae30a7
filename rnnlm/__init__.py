"""rnnlm: Elman recurrent neural network language models with a Numba-compiled core.

Importing this package is cheap: NumPy-heavy and Numba-compiled modules load on first use.
"""
from rnnlm.errors import RnnlmError

__version__ = "0.1.0"

__all__ = ["RnnlmError", "__version__"]
