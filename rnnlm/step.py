"""One parameter update of the minibatch schedule: kernels for the gradient, then the optimiser.

Kept apart from the training loop so that tests can drive single updates. The gradient is that of
the loss summed over the window's T steps and averaged over its B streams; clipping rescales it to a
global L2 norm of at most `clip`; L2 (beta) acts on the weights the update touches. Without biases
(ModelConfig.bias False) the bias blocks stay at zero.
"""
from __future__ import annotations

import math

import numpy as np

from rnnlm import kernels as K
from rnnlm.model import Params


class ClassInfo:
    """Class layout of the output layer in the form the kernels take (int32 arrays)."""

    def __init__(self, word_class: np.ndarray | None, class_starts: np.ndarray | None, vocab_size: int):
        if word_class is None:
            self.word_class = np.zeros(vocab_size, dtype=np.int32)
            self.class_starts = np.array([0, vocab_size], dtype=np.int32)
            self.num_classes = 0
        else:
            self.word_class = np.ascontiguousarray(word_class, dtype=np.int32)
            self.class_starts = np.ascontiguousarray(class_starts, dtype=np.int32)
            self.num_classes = len(self.class_starts) - 1

    @classmethod
    def from_tokenizer(cls, tok, use_classes: bool) -> "ClassInfo":
        if not use_classes:
            return cls(None, None, len(tok))
        return cls(tok.classes, tok.class_starts, len(tok))


def param_args(p: Params):
    return (p.emb, p.rec, p.bh, p.out_w, p.bo, p.cls_w, p.bc, p.direct)


def history_width(dorder: int) -> int:
    """Length of the carried direct-connection history (input words of the last dorder - 1 steps)."""
    return max(int(dorder) - 1, 1)


class BatchStepper:
    """Holds the gradient buffers of the minibatch schedule and performs updates."""

    def __init__(self, params: Params, classes: ClassInfo, activation: int, cost: int,
                 independent: bool, eos: int, h_init: float):
        self.p = params
        self.dorder = params.cfg.direct_order
        self.bias = params.cfg.bias
        self.g = params.zeros_like()
        self.ci = classes
        self.act, self.cost = activation, cost
        self.independent, self.eos, self.h_init = bool(independent), int(eos), float(h_init)

    def fresh_history(self, batch: int) -> np.ndarray:
        """The direct-connection history a stream starts with (end-of-sentence ids)."""
        return np.full((batch, history_width(self.dorder)), self.eos, dtype=np.int32)

    def gradient(self, x: np.ndarray, y: np.ndarray, h: np.ndarray,
                 ng: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Accumulate dL/dparam of one (T, B) window into self.g; returns (loss, final state,
        final direct-connection history)."""
        h_out = np.empty_like(h)
        ng_out = np.empty_like(ng)
        g = self.g
        loss = K.window_grad(x, y, h, ng, *param_args(self.p), self.ci.word_class, self.ci.class_starts,
                             self.act, self.cost, self.independent, self.eos, self.h_init, self.dorder,
                             g.emb, g.rec, g.bh, g.out_w, g.bo, g.cls_w, g.bc, g.direct, h_out, ng_out)
        return loss, h_out, ng_out

    def touched_out_rows(self, y: np.ndarray) -> np.ndarray | None:
        """Rows of out_w / bo an update touches: all (None) for a full softmax, else the words of the
        classes of the window's targets."""
        if self.ci.num_classes == 0:
            return None
        cls = np.unique(self.ci.word_class[y.ravel()])
        starts, ends = self.ci.class_starts[cls], self.ci.class_starts[cls + 1]
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, ends)])

    def apply(self, x: np.ndarray, y: np.ndarray, lr: float, beta: float, clip: float, scale: float) -> float:
        """SGD on the accumulated gradient (times `scale`), clipped to global norm `clip` (0 = off),
        with L2 `beta` on the touched weights; clears the gradient. Returns the gradient norm."""
        p, g = self.p, self.g
        in_rows = np.unique(x).astype(np.int64)
        out_rows = self.touched_out_rows(y)
        bias = self.bias
        dense = ["rec", "cls_w"] + (["bh", "bc"] if bias else []) + (["out_w"] if out_rows is None else [])
        if bias and out_rows is None:
            dense.append("bo")
        sq = sum(K.sq_norm_dense(g.block(n)) for n in dense)
        sq += K.sq_norm_rows(g.emb, in_rows) + K.sq_norm_dense(g.direct)
        if out_rows is not None:
            sq += K.sq_norm_rows(g.out_w, out_rows)
            if bias:
                sq += K.sq_norm_rows(g.bo.reshape(-1, 1), out_rows)
        norm = math.sqrt(sq) * scale
        if clip > 0 and norm > clip:
            scale = scale * clip / norm
        for n in dense:
            K.sgd_dense(p.block(n).reshape(-1), g.block(n).reshape(-1), lr, scale, beta)
        K.sgd_rows(p.emb, g.emb, in_rows, lr, scale, beta)
        K.sgd_touched(p.direct, g.direct, lr, scale, beta)
        if out_rows is not None:
            K.sgd_rows(p.out_w, g.out_w, out_rows, lr, scale, beta)
            if bias:
                K.sgd_rows(p.bo.reshape(-1, 1), g.bo.reshape(-1, 1), out_rows, lr, scale, beta)
        if not bias:  # gradients of the unused biases are discarded
            g.bh[:] = 0.0
            g.bo[:] = 0.0
            g.bc[:] = 0.0
        return norm
