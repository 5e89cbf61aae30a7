"""Exact evaluation: the log-probability of every token of a text under a model.

Perplexity = exp(-sum ln p / tokens) over every predicted token, end-of-sentence tokens included;
entropy is reported in bits per token (log2), like rnnlm-0.4b.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlm import kernels as K
from rnnlm.batching import inputs_targets, shifted
from rnnlm.config import ModelConfig
from rnnlm.errors import RnnlmError
from rnnlm.model import Params
from rnnlm.step import ClassInfo, blas_single_thread, history_width, param_args

CHUNK = 4096
EVAL_CHUNK = 4096   # tokens per window_logprob call: one stream, the output layer batched over them


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


def initial_state(cfg: ModelConfig, params: Params) -> np.ndarray:
    """The hidden state a text starts from (every unit `cfg.init_hidden`, or the state the model
    file saved: `params.h0`, e.g. an imported rnnlm-0.4b model's), shape (M,)."""
    if getattr(params, "h0", None) is not None:
        return np.array(params.h0, dtype=params.flat.dtype)
    return np.full(cfg.hidden, cfg.init_hidden, dtype=params.flat.dtype)


def initial_history(cfg: ModelConfig, eos: int) -> np.ndarray:
    """The direct-connection history a text starts from: end-of-sentence ids (rnnlm-0.4b's)."""
    return np.full(history_width(cfg.direct_order), eos, dtype=np.int32)


def stream_logprobs(cfg: ModelConfig, params: Params, classes: ClassInfo, ids: np.ndarray, eos: int,
                    independent: bool = False, progress=None) -> np.ndarray:
    """ln p of every token of `ids` (one stream from the initial state), as a float64 array."""
    return stream_logprobs_from(cfg, params, classes, ids, eos, independent,
                                initial_state(cfg, params), progress)


def stream_logprobs_from(cfg: ModelConfig, params: Params, classes: ClassInfo, ids: np.ndarray, eos: int,
                         independent: bool, h: np.ndarray, progress=None, ng: np.ndarray | None = None) -> np.ndarray:
    """ln p of every token of `ids`, the first read after `</s>` from hidden state `h` (M,).

    `h` is updated in place to the state after the last token, so that consecutive calls on the
    pieces of a text give exactly the values of one call on the whole text. `ng` is the history of
    the direct n-gram connections in the same way (input words, most recent first; default: a fresh
    one, see `initial_history`); give it too when the model has direct connections.
    Models with cfg.compat == "rnnlm-0.4b" are evaluated by rnnlm/kernels/rnnlm04b.py (there `ids`
    may hold -1 for OOV words, which get NaN).
    """
    if cfg.compat:
        from rnnlm.kernels.rnnlm04b import compat_logprobs_from
        return compat_logprobs_from(cfg, params, classes, ids, independent, h, progress, ng)
    n = len(ids)   # read a chunk at a time (ids may be a large memory map): no whole copy
    out = np.empty(n, dtype=np.float64)
    h_out = h
    h = np.ascontiguousarray(h.reshape(1, cfg.hidden), dtype=params.flat.dtype).copy()
    h_next = np.empty_like(h)
    ng_out = ng
    ng = initial_history(cfg, eos).reshape(1, -1) if ng is None else ng.reshape(1, -1).copy()
    ng_next = np.empty_like(ng)
    with blas_single_thread():   # the kernels' products are small: BLAS threads only cost here
        for a in range(0, n, EVAL_CHUNK):
            b = min(n, a + EVAL_CHUNK)
            x, y = shifted(ids, eos, a, b)
            K.window_logprob(x.reshape(-1, 1), y.reshape(-1, 1), h, ng, *param_args(params),
                             classes.word_class, classes.class_starts, cfg.activation_code, bool(independent),
                             int(eos), float(cfg.reset_hidden), cfg.direct_order, out[a:b].reshape(-1, 1),
                             h_next, ng_next)
            h, h_next = h_next, h
            ng, ng_next = ng_next, ng
            if progress is not None:
                progress(b - a)
    h_out[...] = h[0]
    if ng_out is not None:
        ng_out[...] = ng[0]
    return out


def dynamic_logprobs(cfg: ModelConfig, params: Params, classes: ClassInfo, ids: np.ndarray, eos: int,
                     independent: bool, lr: float, beta: float = 1e-7, clip: float = 0.0,
                     bptt: int = 4, block: int = 10, progress=None) -> np.ndarray:
    """Dynamic evaluation (rnnlm-0.4b `-dynamic LR`): ln p of every token of `ids`, the model
    learning from each token right after scoring it (rnnlm-0.4b's per-word SGD with learning rate
    `lr`, BPTT through bptt + block - 1 steps every `block` words).

    The network learns on its own copy of the parameters: `params` is never changed.
    """
    from rnnlm.kernels import seq as KS
    if cfg.compat:
        raise RnnlmError("dynamic evaluation is not available for models evaluated as rnnlm-0.4b")
    if not (lr > 0 and math.isfinite(lr)):
        raise RnnlmError(f"--dynamic learning rate must be a positive finite number, got {lr}")
    p = params.copy()
    x, y = inputs_targets(ids, eos)
    n = len(y)
    out = np.empty(n, dtype=np.float64)
    M, dt = cfg.hidden, params.flat.dtype
    D = bptt + block - 1
    h = initial_state(cfg, params)
    hist = np.full(D + 1, -1, np.int32)
    hs = np.zeros((D + 1, M), dt)
    err = np.zeros((D + 1, M), dt)
    istate = np.zeros(2, np.int64)
    ng = initial_history(cfg, eos)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        KS.rnnlm_train_stream(x[a:b], y[a:b], *param_args(p), classes.word_class, classes.class_starts,
                              cfg.activation_code, float(lr), float(beta), float(clip), int(block),
                              bool(independent), int(eos), float(cfg.reset_hidden), cfg.direct_order,
                              bool(cfg.bias), 1, 0.0, 0.0, 0, h, hist, hs, err, ng, istate, out[a:b])
        bad = ~np.isfinite(out[a:b])
        if bad.any() or not np.isfinite(p.flat).all():
            at = a + int(np.argmax(bad)) if bad.any() else b
            raise RnnlmError(f"dynamic evaluation with learning rate {lr:g} diverged (non-finite "
                             f"{'log probability' if bad.any() else 'weights'} at token {at + 1:,} of {n:,}); "
                             f"use a smaller --dynamic learning rate")
        if progress is not None:
            progress(b - a)
    return out


def load_for_eval(model_path: str):
    """(ModelFile, tokenizer, ClassInfo, independent) of a model file (ours or rnnlm-0.4b's)."""
    from rnnlm.convert04b import import_model
    from rnnlm.model import load_model
    from rnnlm.rnnlm04b import sniff
    from rnnlm.tokenizer import tokenizer_from_bytes
    mf = import_model(model_path)[0] if sniff(model_path) else load_model(model_path)
    mf.params.h0 = mf.arrays.get("h0")
    tok = tokenizer_from_bytes(mf.tokenizer_bytes)
    classes = ClassInfo.from_tokenizer(tok, mf.config.classes > 0)
    independent = bool(mf.meta.get("train", {}).get("independent", False))
    return mf, tok, classes, independent


def evaluate_text(model_path: str, text_path: str) -> EvalResult:
    """Perplexity of a text file ('-' = stdin) under the model, every token counted once."""
    from rnnlm.textio import read_lines
    mf, tok, classes, independent = load_for_eval(model_path)
    if mf.config.compat:
        from rnnlm.kernels.rnnlm04b import evaluate_text_compat
        return evaluate_text_compat(mf, tok, classes, independent, text_path)
    enc = tok.encode_lines(read_lines(text_path))
    lp = stream_logprobs(mf.config, mf.params, classes, enc.ids, tok.eos_id, independent)
    return EvalResult(tokens=len(lp), logprob=float(lp.sum()), oov=enc.n_skipped, unk=enc.n_unk_mapped,
                      oov_policy=tok.oov_policy)
