"""Model and training configuration: frozen dataclasses, the one home of every default.

Both round-trip through plain dicts (`to_dict` / `from_dict`) for the model file's JSON metadata.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rnnlm.errors import RnnlmError

ACTIVATIONS = ("sigmoid", "tanh", "relu")
COSTS = ("ce", "sse")
SCHEDULES = ("rnnlm", "batch")
DTYPES = ("float32", "float64")
COMPATS = ("", "rnnlm-0.4b")
SOFTMAXES = ("class", "full", "hs")


def _from_dict(cls, data: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RnnlmError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network.

    vocab_size: N (input and output size); hidden: M; classes: C of the class-factored softmax
    (0 = full softmax over all N words); activation of the hidden layer; dtype of the parameters;
    init_hidden: every hidden unit of the state a text starts from (rnnlm-0.4b's netFlush: 0.1);
    reset_hidden: the state after an end of sentence with --independent (rnnlm-0.4b's netReset: 1.0);
    init_scale: weights start as the sum of three uniforms on [-init_scale, init_scale] (rnnlm-0.4b: 0.1);
    bias: hidden, word and class biases are learnt (rnnlm-0.4b has none: False keeps them at zero);
    direct_size: number of weights of the hashed direct n-gram connections (rnnlm-0.4b's -direct,
    given there in millions; 0 = none); direct_order: n-gram order of those features (-direct-order);
    compat: "" (our kernels) or "rnnlm-0.4b": evaluate with rnnlm-0.4b's own arithmetic and test
    conventions (models imported from its files, see rnnlm/interop/rnnlm04b/convert.py).
    softmax: "class" (classes > 0) or "full" (classes == 0), as `classes` says (files without the
    field load so), or "hs": hierarchical softmax over a Huffman tree of the training counts
    (rnnlm/model/huffman.py; classes 0; out_w / bo then hold the V - 1 internal nodes' weights).
    tie: the output word vectors are the input embedding (weight tying, Press & Wolf 2017): out_w
    is emb (row w of both is word w's vector), stored once; class and full softmax only.
    """

    vocab_size: int
    hidden: int = 100
    classes: int = 100
    activation: str = "sigmoid"
    dtype: str = "float32"
    init_hidden: float = 0.1
    reset_hidden: float = 1.0
    init_scale: float = 0.1
    bias: bool = True
    direct_size: int = 0
    direct_order: int = 3
    compat: str = ""
    softmax: str = "class"
    tie: bool = False

    def __post_init__(self):
        if self.softmax not in SOFTMAXES:
            raise RnnlmError(f"--softmax must be one of {', '.join(SOFTMAXES)}, got {self.softmax!r}")
        if self.softmax != "hs":   # "class" / "full" follow `classes` (0 = full softmax)
            object.__setattr__(self, "softmax", "class" if self.classes > 0 else "full")
        elif self.classes or self.direct_size or self.compat:
            raise RnnlmError("--softmax hs takes no classes, direct connections or compatibility mode")
        if self.vocab_size < 2:
            raise RnnlmError(f"vocabulary size must be at least 2, got {self.vocab_size}")
        if self.hidden < 1:
            raise RnnlmError(f"--hidden must be positive, got {self.hidden}")
        if self.classes < 0:
            raise RnnlmError(f"--classes must be >= 0, got {self.classes}")
        if self.activation not in ACTIVATIONS:
            raise RnnlmError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.direct_size < 0 or self.direct_size == 1:
            raise RnnlmError(f"direct connection size must be 0 or >= 2, got {self.direct_size}")
        if not 1 <= self.direct_order <= 20:
            raise RnnlmError(f"--direct-order must be in 1..20, got {self.direct_order}")
        if self.direct_size and self.direct_size - self.direct_size // 2 < max(self.classes, 1):
            raise RnnlmError(f"direct connection table of {self.direct_size} weights is too small for "
                             f"{self.classes} classes")
        if self.dtype not in DTYPES:
            raise RnnlmError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.compat not in COMPATS:
            raise RnnlmError(f"unknown compatibility mode {self.compat!r} (known: rnnlm-0.4b)")
        if self.tie and (self.softmax == "hs" or self.compat):
            raise RnnlmError("--tie needs a class or full softmax (the hierarchical softmax's rows are tree "
                             "nodes, not words) and no compatibility mode")

    @property
    def activation_code(self) -> int:
        return ACTIVATIONS.index(self.activation)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.tie:   # files of untied models stay readable by versions before --tie
            del d["tie"]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    schedule "rnnlm": rnnlm-0.4b's per-word SGD (output layer updated every word, hidden errors
    propagated back every `bptt_block` words, see kernels.rnnlm_train_stream).
    schedule "batch": `batch_size` parallel streams cut into windows of `bptt` steps; one update per
    window; the hidden state carries over between windows without gradient.
    lr: learning rate (alpha); beta: L2 strength (each update subtracts lr * beta * w from the
    weights it touches); clip: maximal global L2 norm of each update's gradient (0 = off);
    min_improvement: the rnnlm-0.4b schedule keeps lr while valid entropy improves by more than this
    factor, then halves it every epoch, and stops the second time it fails to improve;
    lr_decay: the factor applied when halving (0.5).
    dropout / dropout_input (schedule "rnnlm"): inverted-dropout rates on the state the output layer
    reads and on the input word's embedding (the non-recurrent connections); evaluation never drops.
    workers (schedule "rnnlm"): 0, or the number of Ray workers (rnnlm.training.distributed), one text shard
    each, merged as the thread shards are; sync_words: words of each shard between merges of the
    shards (threads or workers; 0 = from the model's cost, rnnlm.training.loop.Trainer._sync_words:
    SYNC_WORDS = 2048, fewer for a costly model).
    patience: failing epochs in a row (see min_improvement) before the schedule acts; 1 is
    rnnlm-0.4b's rule; K > 1 keeps the best weights aside and acts after K (rnnlm/training/schedule.py).
    asgd: the schedule's first action starts averaging the weights (NT-ASGD) instead of halving;
    validation and the model file then use the average (rnnlm/training/schedule.py).
    """

    lr: float = 0.1
    beta: float = 1e-7
    clip: float = 0.0
    schedule: str = "rnnlm"
    bptt: int = 4
    bptt_block: int = 10
    batch_size: int = 32
    cost: str = "ce"
    max_epochs: int = 20
    min_improvement: float = 1.003
    lr_decay: float = 0.5
    independent: bool = False
    seed: int = 1
    threads: int = 1
    checkpoint_words: int = 0
    dropout: float = 0.0
    dropout_input: float = 0.0
    workers: int = 0
    sync_words: int = 0
    patience: int = 1
    asgd: bool = False

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise RnnlmError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.cost not in COSTS:
            raise RnnlmError(f"--cost must be one of {', '.join(COSTS)}, got {self.cost!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise RnnlmError(f"--lr must be a positive finite number, got {self.lr}")
        for name, v in (("--beta", self.beta), ("--clip", self.clip)):
            if not (v >= 0 and math.isfinite(v)):
                raise RnnlmError(f"{name} must be a finite number >= 0, got {v}")
        if not 0 <= self.seed < 2 ** 63:
            raise RnnlmError(f"--seed must be in 0..2**63-1, got {self.seed}")
        if self.checkpoint_words < 0:
            raise RnnlmError(f"--checkpoint-words must be >= 0, got {self.checkpoint_words}")
        if self.bptt < 1 or self.bptt_block < 1 or self.batch_size < 1:
            raise RnnlmError("--bptt, --bptt-block and --batch-size must be >= 1")
        if self.max_epochs < 1:
            raise RnnlmError(f"--max-epochs must be >= 1, got {self.max_epochs}")
        if not (self.min_improvement >= 1.0 and math.isfinite(self.min_improvement)):
            raise RnnlmError(f"--min-improvement must be >= 1, got {self.min_improvement}")
        if not 0 < self.lr_decay < 1:
            raise RnnlmError(f"--lr-decay must be in (0, 1), got {self.lr_decay}")
        if self.threads < 1:
            raise RnnlmError(f"--threads must be >= 1, got {self.threads}")
        if self.workers < 0 or self.sync_words < 0:
            raise RnnlmError(f"--workers and --sync-words must be >= 1, got {self.workers}, {self.sync_words}")
        if self.workers and self.schedule != "rnnlm":
            raise RnnlmError("--workers is implemented for --schedule rnnlm only")
        if not 1 <= self.patience <= 1000:
            raise RnnlmError(f"--patience must be in 1..1000, got {self.patience}")
        for name, v in (("--dropout", self.dropout), ("--dropout-input", self.dropout_input)):
            if not 0.0 <= v < 1.0:
                raise RnnlmError(f"{name} must be in [0, 1), got {v}")
            if v > 0 and self.schedule != "rnnlm":
                raise RnnlmError(f"{name} is implemented for --schedule rnnlm only")

    @property
    def cost_code(self) -> int:
        return COSTS.index(self.cost)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _from_dict(cls, data)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
