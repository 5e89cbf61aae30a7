"""What an evaluation returns: token counts and the summed log probability, with perplexity and
entropy derived from them."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EvalResult:
    tokens: int
    logprob: float          # natural log, summed over tokens
    oov: int = 0            # OOV words skipped (not scored)
    unk: int = 0            # OOV words mapped to <unk> (scored as <unk>)
    oov_policy: str = ""

    @property
    def entropy(self) -> float:
        """Bits per token."""
        return -self.logprob / self.tokens / math.log(2) if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(-self.logprob / self.tokens) if self.tokens else float("nan")

    def to_dict(self) -> dict:
        return dict(tokens=self.tokens, logprob=self.logprob, log10prob=self.logprob / math.log(10),
                    entropy_bits=self.entropy, perplexity=self.perplexity, oov=self.oov, unk=self.unk,
                    oov_policy=self.oov_policy)
