"""Stopping a training run cleanly: SIGINT (Ctrl-C) and SIGTERM become a flag that the training loop
checks at chunk boundaries, where the state is consistent and a checkpoint can be written."""
from __future__ import annotations

import signal

from rnnlm.errors import RnnlmError


class TrainingInterrupted(RnnlmError):
    """SIGINT or SIGTERM during training: a checkpoint was written; `rnnlm train ... --resume`
    continues. `signum` is the signal that stopped it."""

    def __init__(self, msg: str, signum: int = signal.SIGINT):
        super().__init__(msg)
        self.signum = int(signum)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _SigintFlag:
    """Turns SIGINT and SIGTERM into a flag checked at chunk boundaries (where the state is
    consistent); `signum` remembers which one came first."""

    def __init__(self):
        self.hit = False
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in STOP_SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread: leave the signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.hit:         # a second signal stops at once
            raise KeyboardInterrupt
        self.hit, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        return False
