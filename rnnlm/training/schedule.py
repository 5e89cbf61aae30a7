"""The learning-rate schedule's state and decisions, and the running weight average (NT-ASGD).

Kept out of the training loop (rnnlm/training/loop.py), which owns the weights and applies what `decide`
returns. Everything here is plain Python and NumPy: no kernel is involved.

The rule (rnnlm-0.4b's, `patience` 1, the default): after each epoch the validation entropy H is
compared with the previous epoch's. An epoch that makes H worse is rolled back. A *failure* is an
epoch whose H does not improve by more than the factor `min_improvement`. The first failure starts
halving the learning rate (every epoch from then on), the second stops training.

`patience` K > 1 (one noisy flat epoch does not end the constant-rate phase): H is compared with the
best H so far; the weights of the best epoch are kept aside and training continues from the latest
weights, so an epoch that is not the best is not rolled back at once. Only after K failing epochs
in a row does the schedule act: it returns to the best weights and starts halving (or stops, or
starts averaging, as below). The model file always holds the best weights.

`asgd` (non-monotonically triggered averaged SGD, Merity et al. 2018, "Regularizing and optimizing
LSTM language models", here with the rule above as its trigger): the first time the schedule acts,
instead of halving, the rate is kept and averaging starts: after every training chunk the weights
are added to a running sum, and validation, rollback and the model file use the mean of the
weights since the trigger (Polyak & Juditsky 1992). When the averaged model fails in turn, halving
starts as without `asgd` (averaging goes on), and the next failure stops training.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Schedule:
    lr: float
    epoch: int = 0                  # completed epochs
    position: int = 0               # words (rnnlm) or windows (batch) done in the current epoch
    halving: bool = False
    done: bool = False
    last_valid: float | None = None  # validation entropy after the previous epoch (bits)
    failures: int = 0               # divergences in a row (reset by a good epoch)
    train_logprob: float = 0.0      # ln p summed over the current epoch so far (checkpoints of before)
    train_logprob_fixed: int = 0    # ln p summed over the current epoch so far, in units of 1 / FIXED_ONE
    train_tokens: int = 0
    history: list = field(default_factory=list)
    # --patience K > 1
    best_valid: float | None = None  # best validation entropy so far (the kept weights')
    bad_epochs: int = 0             # failing epochs in a row
    # --asgd
    averaging: bool = False         # the average has been triggered
    avg_chunks: int = 0             # chunks in the running sum since the trigger
    saved_avg_chunks: int = 0       # the same for the kept (rollback) copy of the sum


def _learnt(sched: Schedule) -> bool:
    """At least one epoch ended without diverging (so MODEL holds something learnt)."""
    return any(not h.get("diverged") for h in sched.history)


@dataclass
class Decision:
    keep: bool          # this epoch's weights become the kept ones (the rollback copy)
    restore: bool       # return to the kept weights now (a rollback)
    event: str          # "", "average" (start averaging), "halve" (start halving) or "stop"


def decide(sched: Schedule, valid: float, min_improvement: float, patience: int, asgd: bool) -> Decision:
    """Update `sched` for an epoch that ended with validation entropy `valid` (bits) and say what to
    do with the weights. Does not touch lr's halving of this epoch (see `next_lr`)."""
    if patience <= 1:    # rnnlm-0.4b: compare with the previous epoch, roll back at once
        last = sched.last_valid
        restore = last is not None and valid > last
        failed = last is not None and valid * min_improvement > last
        keep = not restore
    else:
        best = sched.best_valid
        keep = best is None or valid < best
        sched.bad_epochs = sched.bad_epochs + 1 if (best is not None and valid * min_improvement > best) else 0
        failed = sched.bad_epochs >= patience
        restore = failed and not keep
        if failed:
            sched.bad_epochs = 0
    if keep:
        sched.best_valid = valid if sched.best_valid is None else min(valid, sched.best_valid)
    event = ""
    if failed:
        if sched.halving:
            sched.done, event = True, "stop"
        elif asgd and not sched.averaging:
            sched.averaging, event = True, "average"
        else:
            sched.halving, event = True, "halve"
    sched.last_valid = valid
    return Decision(keep=keep, restore=restore, event=event)


class Average:
    """Running sum of the weights after each chunk since the trigger (float64), and its kept copy
    (the rollback point). The counts live in the Schedule, which the checkpoint stores."""

    def __init__(self, size: int):
        self.sum = np.zeros(size, np.float64)
        self.saved_sum = np.zeros(size, np.float64)

    def add(self, sched: Schedule, flat: np.ndarray) -> None:
        self.sum += flat
        sched.avg_chunks += 1

    def restart(self, sched: Schedule) -> None:
        self.sum[:] = 0.0
        sched.avg_chunks = 0

    def keep(self, sched: Schedule) -> None:
        self.saved_sum[:] = self.sum
        sched.saved_avg_chunks = sched.avg_chunks

    def restore(self, sched: Schedule) -> None:
        self.sum[:] = self.saved_sum
        sched.avg_chunks = sched.saved_avg_chunks

    @staticmethod
    def mean(total: np.ndarray, n: int, dtype) -> np.ndarray:
        return (total / n).astype(dtype)
