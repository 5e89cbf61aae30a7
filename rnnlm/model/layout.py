"""How the kernels see a model: the output layer's class layout, the parameter blocks as the
kernels' bundles (rnnlm.kernels.bundles: Weights, Grads, Tree, Net, Stream), and the state and
n-gram history a text starts from."""
from __future__ import annotations

import numpy as np

from rnnlm.kernels.bundles import Grads, Net, Stream, Tree, Weights, make_net
from rnnlm.model.config import ModelConfig
from rnnlm.model.file import Params


class ClassInfo:
    """Class layout of the output layer in the form the kernels take (int32 arrays)."""

    def __init__(self, word_class: np.ndarray | None, class_starts: np.ndarray | None, vocab_size: int,
                 tree=None):
        self.tree = tree   # hierarchical softmax (rnnlm.model.huffman.HsTree) instead of classes, or None
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


def weights(p: Params) -> Weights:
    """The kernels' Weights: the parameter blocks (views of p.flat, so updates land in p)."""
    return Weights(p.emb, p.rec, p.bh, p.out_w, p.bo, p.cls_w, p.bc, p.direct)


def grads(g: Params) -> Grads:
    """The kernels' Grads: the blocks of a gradient buffer (Params.zeros_like)."""
    return Grads(g.emb, g.rec, g.bh, g.out_w, g.bo, g.cls_w, g.bc, g.direct)


def net_of(cfg: ModelConfig, classes: ClassInfo, independent: bool, eos: int) -> Net:
    """The kernels' Net of a model: its class layout, activation, end-of-sentence reset, direct order."""
    return make_net(classes.word_class, classes.class_starts, cfg.activation_code, independent, eos,
                    cfg.reset_hidden, cfg.direct_order)


def tree_of(classes: ClassInfo) -> Tree | None:
    """The kernels' Tree of a hierarchical softmax (None for the others)."""
    t = classes.tree
    return None if t is None else Tree(t.start, t.node, t.code)


STREAM_KEYS = Stream._fields   # the per-word schedule's stream state (h, hist, hs, err, ng, istate)


def stream_of(state: dict) -> Stream:
    """The kernels' Stream of a per-word schedule's state dict (checkpoint keys h, hist, hs, err, ng,
    istate: one stream, or stacked with one row per text shard)."""
    return Stream(*(state[k] for k in STREAM_KEYS))


def history_width(dorder: int) -> int:
    """Length of the carried direct-connection history (input words of the last dorder - 1 steps)."""
    return max(int(dorder) - 1, 1)


def initial_state(cfg: ModelConfig, params: Params) -> np.ndarray:
    """The hidden state a text starts from (every unit `cfg.init_hidden`, or the state the model
    file saved: `params.h0`, e.g. an imported rnnlm-0.4b model's), shape (M,)."""
    if getattr(params, "h0", None) is not None:
        return np.array(params.h0, dtype=params.flat.dtype)
    return np.full(cfg.hidden, cfg.init_hidden, dtype=params.flat.dtype)


def initial_history(cfg: ModelConfig, eos: int) -> np.ndarray:
    """The direct-connection history a text starts from: end-of-sentence ids (rnnlm-0.4b's)."""
    return np.full(history_width(cfg.direct_order), eos, dtype=np.int32)
