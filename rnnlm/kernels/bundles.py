"""The named bundles the public kernels take instead of long positional lists (typing.NamedTuple:
Numba passes them to a kernel as one argument, unpacks fields by name at no run-time cost, and caches
kernels that take them because the classes live at module level here).

  Weights  the model's arrays, in the order of model.param_shapes (storage: kernels/__init__.py)
  Grads    the same fields for dL/d of each (or work space the kernel clears)
  Tree     the hierarchical softmax's paths (rnnlm.model.huffman.HsTree)
  Net      what a kernel needs of the network besides its weights: the class layout and the scalars
           of the recurrence and the direct connections
  Train    the per-word schedule's step settings (word.rnnlm_train_stream)
  Stream   the per-word schedule's carried stream state (one stream; stacked, one row per text shard,
           for word.shard_run)
  ClassesWork  threaded.classes_setup's work arrays, which classes_worker takes
  Clipping     threaded.classes_worker's clipped step (or None)

Build them at the Python boundary with `make_net`, `make_train` (the scalars' types fixed, so every
caller reaches the same compiled kernel) and rnnlm.model.layout's helpers for a model's Params.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Weights(NamedTuple):
    emb: np.ndarray      # (N, M)
    rec: np.ndarray      # (M, M)
    bh: np.ndarray       # (M,)
    out_w: np.ndarray    # (N, M); hierarchical softmax (N - 1, M)
    bo: np.ndarray       # (N,); hierarchical softmax (N - 1,)
    cls_w: np.ndarray    # (C, M)
    bc: np.ndarray       # (C,)
    direct: np.ndarray   # (S,)


class Grads(NamedTuple):
    emb: np.ndarray
    rec: np.ndarray
    bh: np.ndarray
    out_w: np.ndarray
    bo: np.ndarray
    cls_w: np.ndarray
    bc: np.ndarray
    direct: np.ndarray


class Tree(NamedTuple):
    start: np.ndarray    # (N + 1,) word w's path is node[start[w]:start[w + 1]] ...
    node: np.ndarray
    code: np.ndarray     # ... with branch codes code[...]


class Net(NamedTuple):
    word_class: np.ndarray     # (N,) int32, the class of each word (zeros without classes)
    class_starts: np.ndarray   # (C + 1,) int32 (or [0, N] without classes)
    act: int                   # activation code (kernels.SIGMOID, TANH, RELU)
    independent: bool          # end of sentence resets the state to h_init
    eos: int                   # end-of-sentence id
    h_init: float              # the reset state's value
    dorder: int                # direct connections' order K


class Train(NamedTuple):
    lr: float
    beta: float          # L2
    clip: float          # gradient norm bound (0: none)
    block: int           # words between BPTT sweeps
    use_bias: bool
    l2_every: int        # L2 on the dense weights every l2_every words
    drop_in: float       # dropout rates of the input row and of the output layer's state
    drop_out: float
    drop_seed: int


class Stream(NamedTuple):
    h: np.ndarray        # (M,) current state
    hist: np.ndarray     # (D + 1,) input words, hist[k] of step t - k (-1: none)
    hs: np.ndarray       # (D + 1, M) states s(t - k)
    err: np.ndarray      # (D + 1, M) stored output errors
    ng: np.ndarray       # (Kh,) direct-connection history (unused by the hierarchical softmax)
    istate: np.ndarray   # (2,) int64: words processed, steps available for BPTT


class ClassesWork(NamedTuple):
    H: np.ndarray        # (T + 1, B, M) states; H[T] the last window's final state
    dSc: np.ndarray
    dSw: np.ndarray
    logc: np.ndarray
    logw: np.ndarray
    Gcls: np.ndarray
    Gbc: np.ndarray
    Delta: np.ndarray
    Grec: np.ndarray
    Gbh: np.ndarray
    seen: np.ndarray
    Nsq: np.ndarray
    losses: np.ndarray   # (nw,) each window's loss
    bar: np.ndarray
    recT: np.ndarray
    u_init: np.ndarray
    Hist: np.ndarray
    order: np.ndarray
    cnt: np.ndarray
    bins: np.ndarray


class Clipping(NamedTuple):
    clip: float
    p_flat: np.ndarray   # the flat buffers whose blocks (emb, rec, bh, out_w, bo, cls_w, bc) the
    g_flat: np.ndarray   # weights and gradients are, block i starting at offs[i]
    offs: np.ndarray


def make_net(word_class, class_starts, act, independent, eos, h_init, dorder) -> Net:
    return Net(np.ascontiguousarray(word_class, dtype=np.int32), np.ascontiguousarray(class_starts, dtype=np.int32),
               int(act), bool(independent), int(eos), float(h_init), int(dorder))


def make_train(lr, beta, clip, block, use_bias, l2_every, drop_in, drop_out, drop_seed) -> Train:
    return Train(float(lr), float(beta), float(clip), int(block), bool(use_bias), int(l2_every), float(drop_in),
                 float(drop_out), int(drop_seed))
