"""Exact evaluation: the log-probability of every token of a text under a model.

Perplexity = exp(-sum ln p / tokens) over every predicted token, end-of-sentence tokens included;
entropy is reported in bits per token (log2), like rnnlm-0.4b.
"""
from __future__ import annotations

import math

import numpy as np

from rnnlm import kernels as K
from rnnlm.kernels import hsoftmax as KH
from rnnlm.data.windows import inputs_targets, shifted
from rnnlm.model.config import ModelConfig
from rnnlm.errors import RnnlmError
from rnnlm.model.file import Params
from rnnlm.kernels.bundles import Stream, make_train
from rnnlm.model.layout import ClassInfo, initial_history, initial_state, net_of, tree_of, weights
from rnnlm.use.result import EvalResult
from rnnlm.runtime import blas_single_thread

CHUNK = 4096
EVAL_CHUNK = 4096   # tokens per window_logprob call: one stream, the output layer batched over them


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
    Models with cfg.compat == "rnnlm-0.4b" are evaluated by rnnlm/interop/rnnlm04b/evaluate.py (there `ids`
    may hold -1 for OOV words, which get NaN).
    """
    if cfg.compat:
        from rnnlm.interop.rnnlm04b.evaluate import compat_logprobs_from
        return compat_logprobs_from(cfg, params, classes, ids, independent, h, progress, ng)
    n = len(ids)   # read a chunk at a time (ids may be a large memory map): no whole copy
    out = np.empty(n, dtype=np.float64)
    h_out = h
    h = np.ascontiguousarray(h.reshape(1, cfg.hidden), dtype=params.flat.dtype).copy()
    h_next = np.empty_like(h)
    ng_out = ng
    ng = initial_history(cfg, eos).reshape(1, -1) if ng is None else ng.reshape(1, -1).copy()
    ng_next = np.empty_like(ng)
    w, net, tree = weights(params), net_of(cfg, classes, independent, eos), tree_of(classes)
    with blas_single_thread():   # the kernels' products are small: BLAS threads only cost here
        for a in range(0, n, EVAL_CHUNK):
            b = min(n, a + EVAL_CHUNK)
            x, y = shifted(ids, eos, a, b)
            if tree is not None:   # hierarchical softmax: no direct connections, ng unchanged
                KH.hs_window_logprob(x.reshape(-1, 1), y.reshape(-1, 1), h, w, tree, net, out[a:b].reshape(-1, 1),
                                     h_next)
                ng_next[...] = ng
            else:
                K.window_logprob(x.reshape(-1, 1), y.reshape(-1, 1), h, ng, w, net, out[a:b].reshape(-1, 1), h_next,
                                 ng_next)
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
    from rnnlm.kernels import word as KS
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
    w, net, tree = weights(p), net_of(cfg, classes, independent, eos), tree_of(classes)
    tr = make_train(lr, beta, clip, block, cfg.bias, 1, 0.0, 0.0, 0)   # L2 every word, no dropout
    st = Stream(h, hist, hs, err, ng, istate)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        if tree is not None:
            KH.hs_train_stream(x[a:b], y[a:b], w, tree, net, tr, st, out[a:b])
        else:
            KS.rnnlm_train_stream(x[a:b], y[a:b], w, net, tr, st, out[a:b])
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
    from rnnlm.interop.rnnlm04b.convert import import_model
    from rnnlm.model.file import load_model
    from rnnlm.interop.rnnlm04b.files import sniff
    from rnnlm.data.tokenizer import tokenizer_from_bytes
    mf = import_model(model_path)[0] if sniff(model_path) else load_model(model_path)
    mf.params.h0 = mf.arrays.get("h0")
    tok = tokenizer_from_bytes(mf.tokenizer_bytes)
    classes = ClassInfo.from_tokenizer(tok, mf.config.classes > 0)
    classes.tree = mf.tree
    independent = bool(mf.meta.get("train", {}).get("independent", False))
    return mf, tok, classes, independent


def evaluate_text(model_path: str, text_path: str) -> EvalResult:
    """Perplexity of a text file ('-' = stdin) under the model, every token counted once."""
    from rnnlm.data.text import read_lines
    mf, tok, classes, independent = load_for_eval(model_path)
    if mf.config.compat:
        from rnnlm.interop.rnnlm04b.evaluate import evaluate_text_compat
        return evaluate_text_compat(mf, tok, classes, independent, text_path)
    enc = tok.encode_lines(read_lines(text_path))
    lp = stream_logprobs(mf.config, mf.params, classes, enc.ids, tok.eos_id, independent)
    return EvalResult(tokens=len(lp), logprob=float(lp.sum()), oov=enc.n_skipped, unk=enc.n_unk_mapped,
                      oov_policy=tok.oov_policy)
