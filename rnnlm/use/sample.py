"""Walking a model one word at a time (`Stepper`: the exact next-word distribution) and sampling
text from it: temperature, top-k, a prefix, banned words, an explicit random generator."""
from __future__ import annotations

import numpy as np

from rnnlm.kernels import onestep as KS
from rnnlm.model.layout import ClassInfo, net_of, tree_of, weights


class Stepper:
    """Walks the network one word at a time (B = 1) and exposes P(next word)."""

    def __init__(self, cfg, params, classes: ClassInfo, eos: int, independent: bool = False):
        if cfg.compat:
            from rnnlm.errors import RnnlmError
            raise RnnlmError(f"this model is evaluated with {cfg.compat}'s own arithmetic, which word-by-word "
                             f"stepping and sampling do not reproduce; import it with "
                             f"`rnnlm import-rnnlm --as native` to use them")
        self.cfg, self.p, self.ci, self.eos = cfg, params, classes, int(eos)
        self.independent = bool(independent)
        dt = params.flat.dtype
        # the state a text starts from: the saved one (params.h0, as scoring uses) or init_hidden
        h0 = getattr(params, "h0", None)
        self.h0 = (np.array(h0, dtype=dt) if h0 is not None
                   else np.full(cfg.hidden, cfg.init_hidden, dtype=dt))
        self.h = self.h0.copy()
        self._h2 = np.empty_like(self.h)
        self.probs = np.empty(cfg.vocab_size, dtype=np.float64)
        self.ng = np.full(max(cfg.direct_order - 1, 1), self.eos, dtype=np.int32)  # direct-connection history
        self._w = weights(params)
        if not cfg.classes:
            self._w = self._w._replace(cls_w=params.cls_w[:0], bc=params.bc[:0])
        self._net = net_of(cfg, classes, self.independent, self.eos)
        self._tree = tree_of(classes) if getattr(classes, "tree", None) is not None else None   # its own kernel

    def reset(self) -> None:
        """Back to the state a text starts from (before its first `</s>` is read)."""
        self.h[:] = self.h0
        self.ng[:] = self.eos

    def get_state(self):
        """A copy of everything the next `feed` depends on: the hidden state and the
        direct-connection history (restore it with `set_state`)."""
        return self.h.copy(), self.ng.copy()

    def set_state(self, state) -> None:
        self.h[:], self.ng[:] = state

    def advance(self, word_id: int) -> None:
        """Read one word (the state moves on; no output layer is computed)."""
        KS.step_state(int(word_id), self.h, self.ng, self._w, self._net, self._h2)
        self.h, self._h2 = self._h2, self.h

    def prob(self, word_id: int) -> float:
        """P(word | the current state), computing only the class layer and the word's class block
        (hierarchical softmax: the word's path)."""
        if self._tree is not None:
            from rnnlm.kernels.hsoftmax import hs_distribution
            return float(hs_distribution(self.h, self._w, self._tree, int(word_id), self.probs))
        return float(KS.next_distribution(self.h, self.ng, self._w, self._net, int(word_id), self.probs))

    def distribution(self) -> np.ndarray:
        """P(next word | the current state) over the vocabulary (a view, overwritten by the next call)."""
        if self._tree is not None:
            from rnnlm.kernels.hsoftmax import hs_distribution
            hs_distribution(self.h, self._w, self._tree, -1, self.probs)
        else:
            KS.next_distribution(self.h, self.ng, self._w, self._net, -1, self.probs)
        return self.probs

    def feed(self, word_id: int) -> np.ndarray:
        """Read one word; returns P(next word) (a view, overwritten by the next call)."""
        self.advance(word_id)
        return self.distribution()


def sample_ids(stepper: Stepper, rng: np.random.Generator, prefix=(), max_len: int = 50,
               temperature: float = 1.0, top_k: int = 0, banned=()) -> list[int]:
    """Sample one sentence after `prefix` (ids); stops at end of sentence or after max_len words."""
    probs = stepper.feed(stepper.eos)
    for w in prefix:
        probs = stepper.feed(w)
    out = []
    for _ in range(max_len):
        p = np.log(np.maximum(probs, 1e-300)) / max(temperature, 1e-6)
        for b in banned:
            p[b] = -np.inf
        if top_k and top_k < len(p):
            cut = np.partition(p, -top_k)[-top_k]
            p[p < cut] = -np.inf
        p = np.exp(p - p.max())
        p /= p.sum()
        w = int(rng.choice(len(p), p=p))
        if w == stepper.eos:
            break
        out.append(w)
        probs = stepper.feed(w)
    return out
