"""Exact evaluation: the log-probability of every token of a text under a model.

Perplexity = exp(-sum ln p / tokens) over every predicted token, end-of-sentence tokens included;
entropy is reported in bits per token (log2), like rnnlm-0.4b.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlm import kernels as K
from rnnlm.batching import inputs_targets
from rnnlm.config import ModelConfig
from rnnlm.model import Params
from rnnlm.step import ClassInfo, param_args

CHUNK = 4096


@dataclass
class EvalResult:
    tokens: int
    logprob: float          # natural log, summed over tokens
    oov: int = 0            # OOV words skipped (not scored)
    unk: int = 0            # OOV words mapped to <unk> (scored as <unk>)
    oov_policy: str = ""

    @property
    def entropy(self) -> float:
        """Bits per token."""
        return -self.logprob / self.tokens / math.log(2) if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(-self.logprob / self.tokens) if self.tokens else float("nan")

    def to_dict(self) -> dict:
        return dict(tokens=self.tokens, logprob=self.logprob, log10prob=self.logprob / math.log(10),
                    entropy_bits=self.entropy, perplexity=self.perplexity, oov=self.oov, unk=self.unk,
                    oov_policy=self.oov_policy)


def stream_logprobs(cfg: ModelConfig, params: Params, classes: ClassInfo, ids: np.ndarray, eos: int,
                    independent: bool = False, progress=None) -> np.ndarray:
    """ln p of every token of `ids` (one stream from the initial state), as a float64 array."""
    x, y = inputs_targets(ids, eos)
    n = len(y)
    out = np.empty(n, dtype=np.float64)
    h = np.full((1, cfg.hidden), cfg.init_hidden, dtype=params.flat.dtype)
    h_next = np.empty_like(h)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        xa = np.ascontiguousarray(x[a:b].reshape(-1, 1))
        ya = np.ascontiguousarray(y[a:b].reshape(-1, 1))
        lp = np.empty((b - a, 1), dtype=np.float64)
        K.window_logprob(xa, ya, h, *param_args(params), classes.word_class, classes.class_starts,
                         cfg.activation_code, bool(independent), int(eos), float(cfg.reset_hidden), lp, h_next)
        out[a:b] = lp[:, 0]
        h, h_next = h_next, h
        if progress is not None:
            progress(b - a)
    return out


def load_for_eval(model_path: str):
    """(ModelFile, tokenizer, ClassInfo, independent) of a model file."""
    from rnnlm.model import load_model
    from rnnlm.tokenizer import tokenizer_from_bytes
    mf = load_model(model_path)
    tok = tokenizer_from_bytes(mf.tokenizer_bytes)
    classes = ClassInfo.from_tokenizer(tok, mf.config.classes > 0)
    independent = bool(mf.meta.get("train", {}).get("independent", False))
    return mf, tok, classes, independent


def evaluate_text(model_path: str, text_path: str) -> EvalResult:
    """Perplexity of a text file ('-' = stdin) under the model, every token counted once."""
    from rnnlm.textio import read_lines
    mf, tok, classes, independent = load_for_eval(model_path)
    enc = tok.encode_lines(read_lines(text_path))
    lp = stream_logprobs(mf.config, mf.params, classes, enc.ids, tok.eos_id, independent)
    return EvalResult(tokens=len(lp), logprob=float(lp.sum()), oov=enc.n_skipped, unk=enc.n_unk_mapped,
                      oov_policy=tok.oov_policy)
