"""Linear interpolation with another language model, word by word (rnnlm-0.4b `-lm-prob`, `-lambda`):

    P(w | h) = lambda * P_rnn(w | h) + (1 - lambda) * P_other(w | h)

The other model's probabilities come from
* a per-word probability file: one line per token of the text, in order, every line's `</s>`
  and every OOV token included (rnnlm-0.4b's layout; only the first number of a line is read);
* an ARPA or binary n-gram model read by the optional `kenlm` package (`pip install kenlm`),
  each line scored as a sentence (`<s>` ... `</s>`);
* `rnnlm.use.ngram.KneserNey` fitted on a training text with the RNN's own vocabulary
  (`kneser_ney_probs`, also behind `rnnlm lm-prob`, which writes such a file).

Tokens the RNN skips (OOV without `<unk>` in its vocabulary) are left out of all three
perplexities, so that they compare the same tokens.

    >>> combined = interpolate(ln_rnn, p_other, 0.75)          # doctest: +SKIP
"""
from __future__ import annotations

import math
import os

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.data.text import display_name, read_bytes

LN10 = math.log(10.0)


def check_lambda(lam: float) -> float:
    if not 0.0 <= lam <= 1.0:
        raise RnnlmError(f"--lambda must be in [0, 1], got {lam}")
    return float(lam)


def read_prob_file(path: str | os.PathLike, n_tokens: int, text_name: str = "the text") -> np.ndarray:
    """Probabilities (first number of each non-empty line) of a per-word probability file; there
    must be exactly `n_tokens` of them, each in [0, 1]."""
    name = display_name(path)
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RnnlmError(f"{name}: not UTF-8 at byte {exc.start}") from None
    vals = []
    for i, line in enumerate(text.splitlines()):
        parts = line.split(None, 1)
        if not parts:
            continue
        try:
            v = float(parts[0])
        except ValueError:
            raise RnnlmError(f"{name}: line {i + 1}: {parts[0][:40]!r} is not a probability") from None
        if not 0.0 <= v <= 1.0:
            raise RnnlmError(f"{name}: line {i + 1}: probability {v} is not in [0, 1]")
        vals.append(v)
    if len(vals) != n_tokens:
        raise RnnlmError(f"{name}: has {len(vals)} probabilities but {text_name} has {n_tokens} tokens "
                         "(one per word and one per line for </s>, OOV words included)")
    return np.array(vals, dtype=np.float64)


def kenlm_probs(model_path: str, lines: list[str], n_tokens: int) -> np.ndarray:
    """Per-token probabilities of `lines` (words then `</s>` per line) under a KenLM model."""
    try:
        import kenlm
    except ImportError:
        raise RnnlmError("--ngram needs the optional `kenlm` package (pip install kenlm); "
                         "or write a per-word probability file and use --lm-prob") from None
    if not os.path.isfile(model_path):
        raise RnnlmError(f"{model_path}: no such n-gram model file")
    try:
        model = kenlm.Model(model_path)
    except (OSError, RuntimeError, ValueError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise RnnlmError(f"{model_path}: kenlm cannot read it ({msg})") from None
    out = np.fromiter((s for line in lines for s, _, _ in model.full_scores(line, bos=True, eos=True)),
                      dtype=np.float64)
    if len(out) != n_tokens:  # kenlm splits on spaces only; our texts split on any whitespace
        raise RnnlmError(f"{model_path}: kenlm returned {len(out)} scores for {n_tokens} tokens")
    return np.power(10.0, out)


def kneser_ney_probs(tok, train_path: str, al, order: int = 3) -> np.ndarray:
    """Per-token probabilities of aligned text `al` under an interpolated modified Kneser-Ney
    model of `order` fitted on `train_path` with the vocabulary of `tok` (0 for skipped OOVs)."""
    from rnnlm.use.ngram import KneserNey
    from rnnlm.data.text import read_lines
    if order < 1:
        raise RnnlmError(f"--order must be >= 1, got {order}")
    train = tok.encode_lines(read_lines(train_path)).ids
    try:
        kn = KneserNey.fit(train, vocab_size=len(tok), order=order, pad_id=tok.eos_id)
    except ValueError as exc:
        raise RnnlmError(f"{train_path}: cannot fit a Kneser-Ney {order}-gram model: {exc}") from None
    out = np.zeros(len(al.ids), dtype=np.float64)
    mask = al.scored
    out[mask] = kn.prob(al.ids[mask])
    return out


def interpolate(ln_rnn: np.ndarray, p_other: np.ndarray, lam: float) -> np.ndarray:
    """ln(lambda * P_rnn + (1 - lambda) * P_other), token by token (exact at lambda 0 and 1)."""
    lam = check_lambda(lam)
    if lam == 1.0:
        return ln_rnn.copy()
    with np.errstate(divide="ignore"):
        if lam == 0.0:
            return np.log(p_other)
        return np.log(lam * np.exp(ln_rnn) + (1.0 - lam) * p_other)


def ln_other(p_other: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p_other)
