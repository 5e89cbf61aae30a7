"""Tiny random models and data for kernel tests."""
from __future__ import annotations

import os

import numpy as np

from rnnlm.model.config import ModelConfig
from rnnlm.model.file import Params
from rnnlm.model.layout import ClassInfo

ACT = {"sigmoid": 0, "tanh": 1, "relu": 2}


def tiny_model(N=11, M=4, C=0, act="sigmoid", seed=0, dtype="float64", scale=0.5, direct=0, dorder=3, tie=False):
    """Random weights; with direct > 0 a direct-connection table of that many random weights (small
    enough that hashes collide and wrap, which the tests want to exercise)."""
    cfg = ModelConfig(vocab_size=N, hidden=M, classes=C, activation=act, dtype=dtype, init_scale=scale,
                      direct_size=direct, direct_order=dorder, tie=tie)
    rng = np.random.default_rng(seed)
    p = Params.init(cfg, rng)
    for name in ("bh", "bo", "bc", "direct"):
        blk = p.block(name)
        blk[...] = rng.uniform(-0.3, 0.3, blk.shape)
    return p


def tiny_classes(N, C):
    """C contiguous classes of uneven sizes over N words."""
    if C == 0:
        return ClassInfo(None, None, N)
    cuts = np.linspace(0, N, C + 1).round().astype(np.int32)
    cuts[1] = max(cuts[1] - 1, 1)  # uneven
    wc = np.zeros(N, np.int32)
    for c in range(C):
        wc[cuts[c]:cuts[c + 1]] = c
    return ClassInfo(wc, cuts, N)


def tiny_window(N, T, B, seed=1, eos=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, N, size=(T, B)).astype(np.int32)
    y = rng.integers(0, N, size=(T, B)).astype(np.int32)
    x[min(1, T - 1), 0] = eos  # make sure a reset point exists
    return x, y


SYN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpora", "synthetic")


def synthetic_heads(dest, sizes: dict) -> None:
    """dest/SPLIT.txt: the first n lines of the bundled corpus's SPLIT, for each SPLIT: n in sizes."""
    for split, n in sizes.items():
        lines = open(os.path.join(SYN, f"{split}.txt"), encoding="utf-8").read().splitlines()[:n]
        with open(os.path.join(dest, f"{split}.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


def synthetic_slices(dest, slices: dict) -> None:
    """dest/NAME: lines a:b of the bundled corpus's train.txt, for each NAME: (a, b) in slices."""
    lines = open(os.path.join(SYN, "train.txt"), encoding="utf-8").read().splitlines()
    for name, (a, b) in slices.items():
        with open(os.path.join(dest, name), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines[a:b]) + "\n")
