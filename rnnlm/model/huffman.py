"""The hierarchical softmax's tree (`--softmax hs`, as faster-rnnlm): a Huffman tree over the word
counts of the training text, its paths in the form the kernels take, and its place in model files.

The tree is built deterministically from the counts: the two lightest nodes are merged first, ties
broken by id (leaves are words 0..V-1, the k-th merged node has id V + k, so a leaf wins a tie with
a merged node of equal weight, and older merged nodes win over newer ones). Internal node k (0..V-2;
the root is V - 2) owns row k of out_w and bo. The lighter child of a merge takes code 0, the other
code 1. With z = out_w[n] . s + bo[n] at internal node n, the branch taken has probability
sigmoid(z) for code 0 and sigmoid(-z) = 1 - sigmoid(z) for code 1, so p(w | s) = prod over the path
from the root to w of sigmoid(+-z): the leaves' probabilities sum to 1 for every state.

Model files of an hs model hold the counts as the array `state_hs_counts` (int64, one per word) and
the tree's fingerprint in the metadata (`hs_tree`); loading rebuilds the tree from the counts and
refuses a file whose fingerprint differs.
"""
from __future__ import annotations

import hashlib

import numpy as np

from rnnlm.errors import RnnlmError


class HsTree:
    """Paths of every word (CSR): word w's internal nodes, root first, are node[start[w]:start[w+1]]
    with the branch codes code[...] (0 or 1). counts: the word counts the tree was built from."""

    def __init__(self, counts: np.ndarray, start: np.ndarray, node: np.ndarray, code: np.ndarray):
        self.counts = counts
        self.start = start
        self.node = node
        self.code = code

    @property
    def vocab_size(self) -> int:
        return len(self.counts)

    @property
    def max_depth(self) -> int:
        return int(np.diff(self.start).max())

    def path(self, w: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.start[w], self.start[w + 1]
        return self.node[a:b], self.code[a:b]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for a in (self.start, self.node, self.code):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def kernel_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.start, self.node, self.code


def build_tree(counts) -> HsTree:
    """The Huffman tree of `counts` (one non-negative integer per word, at least 2 words)."""
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    V = len(counts)
    if V < 2:
        raise RnnlmError(f"a hierarchical softmax needs at least 2 words, got {V}")
    if (counts < 0).any():
        raise RnnlmError("word counts of a hierarchical softmax must be >= 0")
    leaves = np.lexsort((np.arange(V), counts)).tolist()   # by (count, id)
    cnt = counts.tolist()
    weight = cnt + [0] * (V - 1)           # weight of node id (leaves, then merged nodes)
    parent = [0] * (2 * V - 1)
    bit = [0] * (2 * V - 1)
    li, mi, nxt = 0, V, V                   # next leaf (index into leaves), next merged node, next id
    for _ in range(V - 1):
        pair = []
        for _side in range(2):
            if li < V and (mi >= nxt or cnt[leaves[li]] <= weight[mi]):   # a leaf wins ties
                pair.append(leaves[li])
                li += 1
            else:
                pair.append(mi)
                mi += 1
        a, b = pair
        weight[nxt] = weight[a] + weight[b]
        parent[a], parent[b] = nxt, nxt
        bit[a], bit[b] = 0, 1
        nxt += 1
    root = 2 * V - 2
    depth = [0] * (2 * V - 1)
    for i in range(root - 1, -1, -1):       # a parent's id is larger than its children's
        depth[i] = depth[parent[i]] + 1
    parent_a = np.array(parent, dtype=np.int64)
    bit_a = np.array(bit, dtype=np.int8)
    lens = np.array(depth[:V], dtype=np.int64)
    start = np.zeros(V + 1, dtype=np.int64)
    np.cumsum(lens, out=start[1:])
    node = np.empty(int(start[-1]), dtype=np.int32)
    code = np.empty(int(start[-1]), dtype=np.int8)
    cur = np.arange(V, dtype=np.int64)
    pos = start[:V] + lens - 1              # written from the leaf's end up to the root
    active = np.flatnonzero(lens > 0)
    while active.size:
        c = cur[active]
        node[pos[active]] = parent_a[c] - V
        code[pos[active]] = bit_a[c]
        cur[active] = parent_a[c]
        pos[active] -= 1
        active = active[cur[active] != root]
    return HsTree(counts, start, node, code)


def train_counts(train_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each word is a target in the training text (every token, each </s> included),
    counted a block at a time (a memory-mapped corpus is never copied whole)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    step = 1 << 22
    for a in range(0, len(train_ids), step):
        counts += np.bincount(np.asarray(train_ids[a:a + step]), minlength=vocab_size)[:vocab_size]
    return counts


def save_arrays(tree: HsTree) -> tuple[dict, dict]:
    """(arrays, metadata) an hs model file carries for its tree."""
    return {"hs_counts": tree.counts}, {"hs_tree": tree.fingerprint()}


def tree_from_file(path: str, vocab_size: int, arrays: dict, meta: dict) -> HsTree:
    """Rebuild and verify the tree of an hs model file (one-line RnnlmError if it does not fit)."""
    counts = arrays.get("hs_counts")
    if counts is None:
        raise RnnlmError(f"{path}: damaged: a hierarchical-softmax model without its word counts")
    if counts.shape != (vocab_size,) or counts.dtype.kind not in "iu" or (counts < 0).any():
        raise RnnlmError(f"{path}: damaged: hierarchical-softmax word counts of shape {counts.shape} "
                         f"{counts.dtype} (expected {vocab_size} counts >= 0)")
    tree = build_tree(counts)
    if meta.get("hs_tree") != tree.fingerprint():
        raise RnnlmError(f"{path}: damaged: the hierarchical softmax's tree does not match its fingerprint")
    return tree
