"""Where a training run is: epoch, position in it, learning rate, halving, the last validation
entropy, divergences in a row, the epoch's running training log-probability, the history (saved in
checkpoints and model files)."""
from __future__ import annotations

from dataclasses import dataclass, field


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


def _learnt(sched: Schedule) -> bool:
    """At least one epoch ended without diverging (so MODEL holds something learnt)."""
    return any(not h.get("diverged") for h in sched.history)
