"""rnnlm-0.4b's test procedure around its exact arithmetic (kernels/rnnlm04b.py): its tokenisation of
a text, per-token probabilities as it prints them, and `rnnlm eval` for its models."""
from __future__ import annotations

import numpy as np

from rnnlm.kernels.rnnlm04b import _ln_of_log10f, rnnlm04b_stream


def _daz(a: np.ndarray) -> np.ndarray:
    """float32 copy-on-need with denormals zeroed (rnnlm-0.4b runs with DAZ: they read as 0)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    tiny = (a != 0) & (np.abs(a) < np.float32(1.1754943508222875e-38))
    if tiny.any():
        a = a.copy()
        a[tiny] = 0.0
    return a


def compat_logprobs_from(cfg, params, classes, ids, independent, h, progress=None, ng=None):
    """ln p of every token of `ids` (-1 = OOV: not scored, NaN) under rnnlm-0.4b's arithmetic and
    test conventions, from context `h` (updated in place) and n-gram history `ng` (most recent
    first, </s> = 0; updated in place when given); see `rnnlm04b_stream`. ln p is rnnlm-0.4b's
    float log10 of P times ln 10, so that sums give the log probability it prints."""
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    probs = compat_probs_from(cfg, params, classes, ids, independent, h, ng)
    out = np.empty(len(ids), np.float64)
    _ln_of_log10f(probs, ids, out)
    if progress is not None:
        progress(len(ids))
    return out


def compat_probs_from(cfg, params, classes, ids, independent, h, ng=None):
    """P of every token of `ids` as the float32 rnnlm-0.4b prints with -debug 2 (0 for OOV)."""
    V, C = cfg.vocab_size, cfg.classes
    wc = np.ascontiguousarray(classes.word_class, dtype=np.int32)
    if C == 0 or len(wc) != V:
        raise ValueError("rnnlm-0.4b models have classes")
    starts = np.searchsorted(wc, np.arange(C + 1)).astype(np.int32)
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    ctx = np.ones(cfg.hidden, np.float32) if independent else _daz(np.array(h, dtype=np.float32))
    hist = np.zeros(max(cfg.direct_order - 1, 1), np.int64)
    if ng is not None:
        hist[:min(len(ng), len(hist))] = np.asarray(ng)[:len(hist)]
    p = params
    probs = np.zeros(len(ids), np.float32)
    rnnlm04b_stream(ids, _daz(p.emb), _daz(p.rec), _daz(p.out_w), _daz(p.cls_w), _daz(p.direct),
                    int(cfg.direct_order), wc, starts, bool(independent), ctx, hist, probs)
    h[...] = ctx
    if ng is not None:
        ng[:min(len(ng), len(hist))] = hist[:len(ng)]
    return probs


def encode_text_04b(data: bytes, index: dict) -> tuple[np.ndarray, int]:
    """Word ids of a text read as rnnlm-0.4b's readWord reads it: tokens end at space, tab or
    newline, CR is dropped, every newline (blank lines too) is one </s>, a final token not followed by
    a separator is lost, tokens are cut to 99 bytes (and at a NUL). `index` maps word bytes to ids;
    unknown words become -1. Returns (ids, number of OOV tokens)."""
    data = data.replace(b"\r", b"")
    segs = data.split(b"\n")
    eos = index[b"</s>"]
    out = []
    for k, seg in enumerate(segs):
        toks = seg.replace(b"\t", b" ").split(b" ")
        if k == len(segs) - 1 and toks and toks[-1]:
            toks = toks[:-1]                    # ran into the end of the file: rnnlm-0.4b loses it
        for t in toks:
            if t:
                t = t[:99].split(b"\0", 1)[0]
                out.append(index.get(t, -1))
        if k < len(segs) - 1:
            out.append(eos)
    ids = np.array(out, dtype=np.int32)
    return ids, int(np.sum(ids < 0))


def evaluate_text_compat(mf, tok, classes, independent, text_path):
    """`evaluate_text` for rnnlm-0.4b models: its tokenisation and test loop (OOV words skipped)."""
    from rnnlm.model.layout import initial_state
    from rnnlm.use.result import EvalResult
    from rnnlm.data.text import read_bytes
    index = {w.encode("utf-8"): i for i, w in enumerate(tok.words)}
    ids, n_oov = encode_text_04b(read_bytes(text_path), index)
    lp = compat_logprobs_from(mf.config, mf.params, classes, ids, independent,
                              initial_state(mf.config, mf.params))
    scored = lp[ids >= 0]
    return EvalResult(tokens=len(scored), logprob=float(scored.sum()), oov=n_oov, unk=0,
                      oov_policy="skipped (rnnlm-0.4b: not scored, the state still advances)")
