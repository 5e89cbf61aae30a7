"""Scoring aligned text (see `rnnlm.data.align`) with a loaded model: ln p of every token, in one carried
stream (as `rnnlm eval`), sentence by sentence from the start state, as rnnlm-0.4b's `-nbest`,
or with dynamic evaluation. The numerics are `rnnlm.use.evaluate`'s; this module only decides which
tokens go into which stream from which state.

`lm` is a `rnnlm.use.api.LanguageModel` (anything with `config`, `params`, `classes`, `tokenizer`,
`independent` and `train_config`). Skipped OOV tokens (id -1) get ln p = 0 here: callers count
them apart (or charge a penalty).
"""
from __future__ import annotations

import math

import numpy as np

from rnnlm.data.align import AlignedText
from rnnlm.errors import RnnlmError
from rnnlm.use.result import EvalResult
from rnnlm.use.evaluate import dynamic_logprobs, stream_logprobs, stream_logprobs_from
from rnnlm.model.layout import initial_history, initial_state

LN10 = math.log(10.0)


def text_logprobs(lm, al: AlignedText, *, carry: bool = True, dynamic: float | None = None,
                  progress=None) -> np.ndarray:
    """ln p of every token of `al` (0.0 where an OOV is skipped).

    carry=True: one stream, the state carried from line to line (as in training and `rnnlm eval`);
    carry=False: each line from the start state, as if it were the whole text.
    dynamic=LR: dynamic evaluation (carried stream only); the loaded parameters are not changed.
    """
    out = np.zeros(len(al.ids), dtype=np.float64)
    mask = al.scored
    ids = np.ascontiguousarray(al.ids[mask])
    cfg, p, ci, eos = lm.config, lm.params, lm.classes, lm.tokenizer.eos_id
    if cfg.compat and carry and dynamic is None:   # rnnlm-0.4b: a skipped OOV still advances the state
        lp = stream_logprobs(cfg, p, ci, np.ascontiguousarray(al.ids), eos, lm.independent, progress)
        out[mask] = lp[mask]
        return out
    if dynamic is not None:
        if not carry:
            raise RnnlmError("dynamic evaluation needs the carried state (one stream), not --independent")
        t = lm.train_config
        out[mask] = dynamic_logprobs(cfg, p, ci, ids, eos, lm.independent, float(dynamic),
                                     beta=t.get("beta", 1e-7), clip=t.get("clip", 0.0),
                                     bptt=t.get("bptt", 4), block=t.get("bptt_block", 10),
                                     progress=progress)
        return out
    if carry:
        out[mask] = stream_logprobs(cfg, p, ci, ids, eos, lm.independent, progress)
        return out
    for a, b in zip(al.line_starts[:-1], al.line_starts[1:]):
        m = mask[a:b]
        seg = np.ascontiguousarray(al.ids[a:b][m])
        out[a:b][m] = stream_logprobs(cfg, p, ci, seg, eos, lm.independent)
        if progress is not None:
            progress(b - a)
    return out


def nbest_logprobs(lm, al: AlignedText, utt_ids: list[str], progress=None) -> np.ndarray:
    """rnnlm-0.4b `-nbest` with the state carried: the hypotheses of one utterance (consecutive
    lines with the same id) all start from the same state; the next utterance starts from the
    state at the end of the previous utterance's *first* hypothesis."""
    out = np.zeros(len(al.ids), dtype=np.float64)
    cfg, p, ci, eos = lm.config, lm.params, lm.classes, lm.tokenizer.eos_id
    start = (initial_state(cfg, p), initial_history(cfg, eos))
    after_first = None
    prev = None
    for i, (a, b) in enumerate(zip(al.line_starts[:-1], al.line_starts[1:])):
        first = utt_ids[i] != prev
        if first:
            if after_first is not None:
                start = after_first
            prev = utt_ids[i]
        h, ng = start[0].copy(), start[1].copy()
        m = al.ids[a:b] >= 0
        out[a:b][m] = stream_logprobs_from(cfg, p, ci, np.ascontiguousarray(al.ids[a:b][m]), eos,
                                           lm.independent, h, ng=ng)
        if first:
            after_first = (h, ng)
        if progress is not None:
            progress(b - a)
    return out


def line_sums(values: np.ndarray, line_starts: np.ndarray) -> np.ndarray:
    """Sum of `values` over each line (every line has at least its `</s>`)."""
    if len(line_starts) < 2:
        return np.zeros(0)
    return np.add.reduceat(values, line_starts[:-1])


def eval_result(lm, al: AlignedText, lp: np.ndarray) -> EvalResult:
    """Totals over the scored tokens (skipped OOVs are counted, not scored)."""
    return EvalResult(tokens=int(al.scored.sum()), logprob=float(lp[al.scored].sum()),
                      oov=al.n_skipped, unk=al.n_unk, oov_policy=lm.tokenizer.oov_policy)
