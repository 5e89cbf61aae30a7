"""The Python API: load a model file and score, evaluate, sample and step, with KenLM's names where
they overlap (`score`, `perplexity`, `full_scores`; log10 probabilities).

    >>> import rnnlm
    >>> m = rnnlm.load("syn.rnnlm")                              # doctest: +SKIP
    >>> m.score("the cat sat")                                   # doctest: +SKIP
    -7.912
    >>> s = m.begin(); lp, s = m.step(s, "the")                  # doctest: +SKIP

Conventions (as `rnnlm eval`): a sentence is its words and a final `</s>`; the first word is
predicted after `</s>` from the state a text starts from. A word outside the vocabulary is scored
as `<unk>` when the vocabulary has it, otherwise it is skipped: log10 probability 0.0, flagged
OOV, and left out of perplexity counts.
"""
from __future__ import annotations

import math
import os

import numpy as np

from rnnlm.errors import RnnlmError

LN10 = math.log(10.0)


class State:
    """A point in a text: the network's state after the words read so far and P(next word).

    Immutable in practice: `LanguageModel.step` returns a new State, so several continuations
    of one prefix can be explored (beam search) from the same object.
    """

    __slots__ = ("snapshot", "length", "_model", "_probs")

    def __init__(self, snapshot, length: int, model: "LanguageModel"):
        self.snapshot, self.length, self._model, self._probs = snapshot, length, model, None

    @property
    def probs(self) -> np.ndarray:
        """P(next word | this state) over the vocabulary (computed on first use)."""
        if self._probs is None:
            st = self._model._get_stepper()
            st.set_state(self.snapshot)
            self._probs = st.distribution().copy()
        return self._probs

    def prob(self, word_id: int) -> float:
        """P(word_id | this state); only the word's class block is computed (unless probs is known)."""
        if self._probs is not None:
            return float(self._probs[word_id])
        st = self._model._get_stepper()
        st.set_state(self.snapshot)
        return st.prob(word_id)

    def __repr__(self) -> str:
        return f"State(words read={self.length})"


class LanguageModel:
    """A trained model loaded from a file (see `load`).

    Attributes: `path`, `config` (ModelConfig), `tokenizer`, `train_config` (dict), `independent`
    (the state is reset after each `</s>`, as the model was trained), `vocab_size`.
    """

    def __init__(self, path: str | os.PathLike):
        from rnnlm.use.evaluate import load_for_eval
        self.path = str(path)
        mf, tok, classes, independent = load_for_eval(self.path)
        self.config, self.params, self.tokenizer, self.classes = mf.config, mf.params, tok, classes
        self.independent = independent
        self.meta = mf.meta
        self.train_config = dict(mf.meta.get("train", {}))
        self._stepper = None

    # ----------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def __contains__(self, word: str) -> bool:
        """True if `word` is in the vocabulary (KenLM: `word in model`)."""
        return word in self.tokenizer

    def __repr__(self) -> str:
        c = self.config
        return (f"LanguageModel({self.path!r}, vocab {self.vocab_size}, hidden {c.hidden}, "
                f"{f'classes {c.classes}' if c.softmax == 'class' else f'softmax {c.softmax}'}, "
                f"{'independent' if self.independent else 'carried state'})")

    # ----------------------------------------------------------------- sentences (KenLM names)
    def full_scores(self, sentence: str, bos: bool = True, eos: bool = True):
        """Yield `(log10 probability, oov)` for every token of `sentence` and its `</s>`.

        bos=False: the first word is read as context only (an RNN has no empty context), so no
        pair is yielded for it; eos=False: no `</s>` is scored. `oov` is True for a word outside
        the vocabulary (scored as `<unk>`, or skipped with 0.0). Unlike KenLM's triples there is
        no n-gram length.

        >>> [round(p, 3) for p, oov in m.full_scores("the cat sat")]     # doctest: +SKIP
        [-1.02, -2.31, -1.9, -0.61]
        """
        lp, oov, _ = self._sentence(sentence, bos, eos)
        for p, o in zip(lp.tolist(), oov.tolist()):
            yield p, o

    def _sentence(self, sentence: str, bos: bool, eos: bool):
        """(log10 p, oov, scored) arrays of the tokens `full_scores` reports."""
        from rnnlm.data.align import align_lines
        sentence = _as_text(sentence, "sentence")
        from rnnlm.use.score import text_logprobs
        al = align_lines(self.tokenizer, [sentence])
        lp = text_logprobs(self, al, carry=False) / LN10
        sl = slice(0 if bos else 1, len(lp) if eos else len(lp) - 1)
        return lp[sl], al.oov[sl], al.scored[sl]

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a sentence: the sum of `full_scores`.

        >>> m.score("the cat sat"), m.score("the cat sat", eos=False)   # doctest: +SKIP
        (-5.84, -5.23)
        """
        return sum(p for p, _ in self.full_scores(sentence, bos=bos, eos=eos))

    def perplexity(self, sentence: str) -> float:
        """10 ** (-score / scored tokens), `</s>` included (KenLM's definition; skipped OOVs are
        not counted). Equals `rnnlm eval` on a file holding this one line.

        >>> m.perplexity("the cat sat")                                 # doctest: +SKIP
        28.8
        """
        lp, _, scored = self._sentence(sentence, True, True)
        n = int(scored.sum())
        return 10.0 ** (-sum(lp.tolist()) / n) if n else float("nan")

    # ----------------------------------------------------------------- texts
    def evaluate(self, path_or_lines, dynamic: float | None = None):
        """Perplexity of a text file (or an iterable of lines), every token counted once, the state
        carried from line to line; `dynamic=LR` keeps learning while scoring (this object's
        parameters are not changed). Returns an `EvalResult` (`.perplexity`, `.entropy`,
        `.tokens`, `.oov`, `.unk`, `.logprob` in natural log, `.to_dict()`).

        >>> m.evaluate("corpora/synthetic/test.txt").perplexity         # doctest: +SKIP
        23.1
        """
        from rnnlm.data.align import align_lines
        from rnnlm.use.score import eval_result, text_logprobs
        from rnnlm.data.text import clean_lines, read_lines
        if isinstance(path_or_lines, (str, os.PathLike)):
            lines = read_lines(path_or_lines)
        else:
            lines = clean_lines(list(path_or_lines), "<lines>")
        al = align_lines(self.tokenizer, lines)
        return eval_result(self, al, text_logprobs(self, al, dynamic=dynamic))

    # ----------------------------------------------------------------- streaming
    def _get_stepper(self):
        if self._stepper is None:
            from rnnlm.use.sample import Stepper
            self._stepper = Stepper(self.config, self.params, self.classes, self.tokenizer.eos_id,
                                    self.independent)
        return self._stepper

    def _feed(self, snapshot, word_id: int, length: int) -> State:
        st = self._get_stepper()
        if snapshot is None:
            st.reset()
        else:
            st.set_state(snapshot)
        st.advance(word_id)
        return State(st.get_state(), length, self)

    def begin(self) -> State:
        """The state at the start of a sentence (after `</s>` from the start state).

        >>> s = m.begin()                                               # doctest: +SKIP
        >>> lp, s = m.step(s, "the"); lp2, s = m.step(s, "cat")          # doctest: +SKIP
        """
        return self._feed(None, self.tokenizer.eos_id, 0)

    def token_ids(self, word: str) -> list[int]:
        """Vocabulary ids of one word ([] if it is skipped as OOV; several for SentencePiece)."""
        tok = self.tokenizer
        if word == "</s>":
            return [tok.eos_id]
        if tok.kind == "word":
            if word in tok:
                return [tok.id_of(word)]
            return [] if tok.unk_id is None else [tok.unk_id]
        return [int(i) for i in tok.encode(word)[:-1]]

    def step(self, state: State, word: str) -> tuple[float, State]:
        """Read `word` after `state`: `(log10 P(word | state), new state)`. `state` is unchanged.
        A skipped OOV word returns (0.0, state). Summing the steps of a sentence and its `</s>`
        from `begin()` gives `score(sentence)`.

        >>> s = m.begin()                                               # doctest: +SKIP
        >>> for w in "the cat sat </s>".split():                         # doctest: +SKIP
        ...     lp, s = m.step(s, w)
        """
        if not isinstance(state, State):
            raise TypeError(f"state must be a State from this model's begin() or step(), "
                            f"not {type(state).__name__}")
        if state._model is not self:
            raise ValueError(f"state belongs to another model ({state._model.path!r}), not {self.path!r}")
        word = _as_text(word, "word")
        total = 0.0
        for i in self.token_ids(word):
            total += math.log10(state.prob(i))
            state = self._feed(state.snapshot, i, state.length + 1)
        return total, state

    def next_logprobs(self, state: State) -> dict:
        """log10 P(w | state) for every vocabulary entry w, as a dict word -> log10 p.

        >>> top = sorted(m.next_logprobs(m.begin()).items(), key=lambda kv: -kv[1])[:3]  # doctest: +SKIP
        """
        if not isinstance(state, State) or state._model is not self:
            raise ValueError("state must be a State from this model's begin() or step()")
        with np.errstate(divide="ignore"):
            lp = np.log10(state.probs)
        return dict(zip(self.tokenizer.words, lp.tolist()))

    # ----------------------------------------------------------------- sampling
    def sample(self, n: int = 1, max_len: int = 50, temperature: float = 1.0, top_k: int = 0,
               prefix: str = "", seed: int | None = None, allow_unk: bool = False) -> list[str]:
        """`n` sentences sampled from the model, each from the start state, each stopping at `</s>`
        or after `max_len` words; `prefix` words come first (and are part of the result);
        `temperature` rescales log-probabilities, `top_k` keeps the k likeliest words (0: all);
        `<unk>` is never produced unless `allow_unk`. The same `seed` gives the same sentences.

        >>> m.sample(2, prefix="the cat", seed=1)                       # doctest: +SKIP
        ['the cat sat', 'the cat that runs sleeps']
        """
        from rnnlm.use.sample import sample_ids
        if n < 0 or max_len < 0:
            raise RnnlmError("the number of samples and --max-len must be >= 0")
        if not temperature > 0:
            raise RnnlmError(f"--temperature must be positive, got {temperature}")
        if top_k < 0:
            raise RnnlmError(f"--top-k must be >= 0, got {top_k}")
        if seed is not None and not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2 ** 63):
            raise RnnlmError(f"--seed must be a whole number in 0..2**63-1, got {seed}")
        tok = self.tokenizer
        pre: list[int] = []
        for w in _as_text(prefix, "prefix").split():
            ids = self.token_ids(w)
            if not ids:
                raise RnnlmError(f"prefix word {w!r} is not in the vocabulary (and it has no <unk>)")
            pre.extend(ids)
        banned = () if allow_unk or tok.unk_id is None else (tok.unk_id,)
        rng = np.random.default_rng(seed)
        st = self._get_stepper()
        out = []
        for _ in range(n):
            st.reset()
            ids = pre + sample_ids(st, rng, prefix=pre, max_len=max_len, temperature=temperature,
                                   top_k=top_k, banned=banned)
            out.append(tok.decode(np.array(ids, dtype=np.int64)).strip() if ids else "")
        return out


def _as_text(x, what: str) -> str:
    """`x` as str: bytes are decoded as UTF-8 (invalid bytes raise ValueError); other types raise
    TypeError (None, lists and numbers are not sentences)."""
    if isinstance(x, str):
        return x
    if isinstance(x, (bytes, bytearray, memoryview)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what}: bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    raise TypeError(f"{what} must be str (or UTF-8 bytes), not {type(x).__name__}")


def load(path: str | os.PathLike) -> LanguageModel:
    """Load a model file written by `rnnlm train`.

    >>> import rnnlm
    >>> m = rnnlm.load("syn.rnnlm")                                  # doctest: +SKIP
    >>> m.perplexity("the cat sat"), "cat" in m                      # doctest: +SKIP
    (28.8, True)
    """
    return LanguageModel(path)
