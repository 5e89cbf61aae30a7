"""Tokenizers with frequency-ordered ids and rnnlm-0.4b word classes.

Two tokenizers share one interface: :class:`WordVocab` (whitespace words, as in Mikolov's
rnnlm-0.4b) and :class:`SentencePieceTokenizer` (unigram or BPE pieces). Both

* append ``</s>`` to every line (the only boundary token) and order ids by descending count in
  the training text, ties broken by the token string, so every frequency class is a contiguous
  id range: class ``c`` owns ids ``class_starts[c] : class_starts[c + 1]``;
* expose ``counts`` (int64), ``classes`` (int32 per id), ``class_starts`` (int32),
  ``num_classes``, ``eos_id``, ``unk_id`` (None when there is no ``<unk>``), ``words``, ``kind``;
* encode with an explicit OOV policy: an unknown token maps to ``<unk>`` when the vocabulary has
  it, otherwise it is skipped; either way it is counted (``EncodedText.n_oov``);
* serialise to JSON bytes (``to_bytes``) that :func:`tokenizer_from_bytes` reads back exactly.

``num_classes == 0`` means no classes (full softmax); then ``classes`` is all zeros and
``class_starts == [0, V]`` (one trivial class, which equals the full softmax).

Example::

    >>> tok = WordVocab.build(["a b a", "b c"], num_classes=2)
    >>> tok.words, tok.encode("a c").tolist()
    (['</s>', 'a', 'b', 'c'], [1, 3, 0])
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.data.stream import batched as _batched
from rnnlm.data.text import atomic_write_bytes, read_bytes

EOS = "</s>"
UNK = "<unk>"
FORMAT = "rnnlm-tokenizer"
VERSION = 1
CLASS_MODES = ("sqrt", "unigram")
SP_MAX_LINE = 1 << 17   # SentencePiece trains on lines of at most this many bytes (longer ones are ignored)


@dataclass(frozen=True)
class EncodedText:
    """Result of ``encode_lines``: flat ids (incl. one ``</s>`` per line) and OOV accounting.

    ``n_tokens == len(ids)``; ``n_oov`` unknown tokens were met, ``n_unk_mapped`` of them became
    ``<unk>``, the other ``n_skipped`` were dropped (vocabularies without ``<unk>``).
    """
    ids: np.ndarray
    n_tokens: int
    n_oov: int
    n_unk_mapped: int
    n_lines: int

    @property
    def n_skipped(self) -> int:
        return self.n_oov - self.n_unk_mapped


def assign_classes(counts, num_classes: int, mode: str = "sqrt") -> np.ndarray:
    """Frequency-binned classes exactly as rnnlm-0.4b ``-class N`` (``mode="unigram"``: ``-old-classes``).

    `counts` must be in id order (descending). Returns int32 class ids, non-decreasing.

    >>> assign_classes([50, 30, 10, 5, 5], 2).tolist()
    [0, 0, 1, 1, 1]
    """
    if mode not in CLASS_MODES:
        raise RnnlmError(f"unknown class mode {mode!r} (expected one of {', '.join(CLASS_MODES)})")
    cn = [int(c) for c in counts]
    out = np.zeros(len(cn), dtype=np.int32)
    if num_classes <= 0 or not cn:
        return out
    b = float(sum(cn)) or 1.0
    if mode == "sqrt":
        dd = 0.0
        for c in cn:
            dd += math.sqrt(c / b)
        dd = dd or 1.0
        mass = [math.sqrt(c / b) / dd for c in cn]
    else:
        mass = [c / b for c in cn]
    df, a = 0.0, 0
    for i, m in enumerate(mass):
        df += m
        if df > 1:
            df = 1.0
        out[i] = a
        if df > (a + 1) / num_classes and a < num_classes - 1:
            a += 1
    return out


class _Tokenizer:
    """Shared id/class bookkeeping; subclasses provide ``encode_lines``, ``decode``, ``to_bytes``."""

    kind = "?"

    def _init_vocab(self, words, counts, requested_classes: int, class_mode: str, classes=None):
        self._words = list(words)
        self._index = {w: i for i, w in enumerate(self._words)}
        if len(self._index) != len(self._words) or not all(isinstance(w, str) for w in self._words):
            raise RnnlmError("tokenizer data: the tokens are not distinct strings")
        self.counts = np.asarray(counts, dtype=np.int64)
        self.requested_classes = int(requested_classes)
        if self.requested_classes < 0:
            raise RnnlmError(f"--classes must be >= 0 (0 = full softmax), got {self.requested_classes}")
        self.class_mode = class_mode
        self.eos_id = self._index[EOS]
        self.unk_id = self._index.get(UNK)
        if classes is None:
            classes = assign_classes(self.counts, self.requested_classes, class_mode)
        self.classes = np.asarray(classes, dtype=np.int32)
        v = len(self._words)
        if len(self.classes) != v or len(self.counts) != v or (v and np.any(np.diff(self.classes) < 0)):
            raise RnnlmError("tokenizer data: classes/counts do not match the vocabulary")
        if self.requested_classes <= 0:
            self.num_classes = 0
            self.class_starts = np.array([0, v], dtype=np.int32)
        else:
            self.num_classes = int(self.classes[-1]) + 1 if v else 0
            self.class_starts = np.searchsorted(
                self.classes, np.arange(self.num_classes + 1)).astype(np.int32)

    # -- vocabulary -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    @property
    def words(self) -> list[str]:
        """Token strings in id order (a copy)."""
        return list(self._words)

    @property
    def vocab_size(self) -> int:
        return len(self._words)

    def id_of(self, word: str) -> int:
        """Id of `word`; KeyError if absent (``tok.unk_id`` is what OOV tokens become)."""
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary") from None

    @property
    def class_sizes(self) -> np.ndarray:
        return np.diff(self.class_starts)

    @property
    def oov_policy(self) -> str:
        """``"mapped to <unk>"`` or ``"skipped (no <unk> in vocabulary)"``: what happens to OOV tokens."""
        return f"mapped to {UNK}" if self.unk_id is not None else f"skipped (no {UNK} in vocabulary)"

    def encode(self, line: str) -> np.ndarray:
        """Ids of one line incl. the trailing ``</s>`` (OOV handled per ``oov_policy``)."""
        return self.encode_lines([line], skip_blank=False).ids

    def fingerprint(self) -> str:
        """sha256 hex digest of ``to_bytes()`` (used as a cache key)."""
        import hashlib
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def _header(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "kind": self.kind, "words": self._words,
                "counts": self.counts.tolist(), "classes": self.classes.tolist(),
                "requested_classes": self.requested_classes, "class_mode": self.class_mode}

    @staticmethod
    def _dump(obj: dict) -> bytes:
        return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes):
        """Inverse of ``to_bytes``; raises RnnlmError if the data is of another kind."""
        tok = tokenizer_from_bytes(data)
        if not isinstance(tok, cls):
            raise RnnlmError(f"tokenizer data: expected {cls.kind}, found {tok.kind}")
        return tok

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={len(self)}, num_classes={self.num_classes}, "
                f"unk={'yes' if self.unk_id is not None else 'no'})")




def _finish(parts: list, unk_id, n_lines: int) -> EncodedText:
    """Concatenate int32 chunks (OOV = -1) and apply the OOV policy."""
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    n_oov = int((oov := ids < 0).sum())
    if n_oov and unk_id is not None:
        ids[oov] = unk_id
    elif n_oov:
        ids = ids[~oov]
    return EncodedText(ids, len(ids), n_oov, n_oov if unk_id is not None else 0, n_lines)


class WordVocab(_Tokenizer):
    """Whitespace-word vocabulary built from the training split.

    >>> v = WordVocab.build(["the cat", "the dog"], min_count=2)
    >>> v.words, v.encode("the cow").tolist()
    (['</s>', '<unk>', 'the'], [2, 1, 0])
    """

    kind = "word"

    def __init__(self, words, counts, *, num_classes=100, class_mode="sqrt", classes=None,
                 min_count=1, max_size=None, oov="auto"):
        """`oov`: "auto" maps unknown words to ``<unk>`` when the vocabulary has it, else skips
        them; "skip" always skips them (rnnlm-0.4b's test policy; a ``<unk>`` in the text is
        then just a word)."""
        if oov not in ("auto", "skip"):
            raise RnnlmError(f"tokenizer data: unknown OOV policy {oov!r}")
        self.min_count, self.max_size, self.oov = int(min_count), max_size, oov
        self._init_vocab(words, counts, num_classes, class_mode, classes)
        if oov == "skip":
            self.unk_id = None

    @property
    def oov_policy(self) -> str:
        if self.oov == "skip":
            return "skipped (rnnlm-0.4b policy)"
        return super().oov_policy

    @classmethod
    def build(cls, lines: Iterable[str], min_count: int = 1, max_size: int | None = None,
              num_classes: int = 100, class_mode: str = "sqrt", *, name: str = "training text"):
        """Count whitespace tokens (+ one ``</s>`` per non-blank line) and make the vocabulary.

        Words seen fewer than `min_count` times, or beyond the `max_size` most frequent (the size
        counts ``</s>`` and ``<unk>``), become ``<unk>``. A literal ``<unk>`` in the text (PTB) is
        kept as ``<unk>``. Raises RnnlmError if no word survives.
        """
        if min_count < 1:
            raise RnnlmError(f"--min-count must be at least 1, got {min_count}")
        if max_size is not None and max_size < 3:
            raise RnnlmError(f"--max-size must be at least 3, got {max_size}")
        if class_mode not in CLASS_MODES:
            raise RnnlmError(f"unknown class mode {class_mode!r}")
        counter: Counter = Counter()
        n_lines = 0
        for batch in _batched(lines):   # one split per batch of lines: the same words, faster
            batch = [ln for ln in batch if ln and not ln.isspace()]
            counter.update(" ".join(batch).split())
            n_lines += len(batch)
        if not n_lines:
            raise RnnlmError(f"{name}: no text to build a vocabulary from")
        n_eos = n_lines + counter.pop(EOS, 0)
        unk = counter.pop(UNK, 0)
        has_unk = unk > 0
        kept = sorted((w for w, c in counter.items() if c >= min_count), key=lambda w: (-counter[w], w))
        if max_size is not None:
            room = max_size - 1 - (1 if has_unk or len(kept) < len(counter) else 0)
            if len(kept) > room:
                room = max_size - 2
                kept = kept[:room]
        if not kept:
            raise RnnlmError(f"{name}: vocabulary is empty after --min-count {min_count} "
                             f"(all {len(counter)} word types occur fewer than {min_count} times)")
        kept_set = set(kept)
        unk += sum(c for w, c in counter.items() if w not in kept_set)
        entries = [(w, counter[w]) for w in kept] + [(EOS, n_eos)] + ([(UNK, unk)] if unk else [])
        entries.sort(key=lambda e: (-e[1], e[0]))
        return cls([w for w, _ in entries], [c for _, c in entries], num_classes=num_classes,
                   class_mode=class_mode, min_count=min_count, max_size=max_size)

    def encode_lines(self, lines: Iterable[str], *, skip_blank: bool = True) -> EncodedText:
        """Encode lines to one flat int32 array (``</s>`` after each line); blank lines skipped.

        >>> WordVocab.build(["a b"]).encode_lines(["a x", "b"]).n_oov
        1
        """
        get = self._index.get
        parts: list[np.ndarray] = []
        n_lines = 0
        for batch in _batched(lines):
            if skip_blank:
                batch = [ln for ln in batch if ln and not ln.isspace()]
            if not batch:
                continue
            # every line's words then </s>: splitting the lines joined by " </s> " gives exactly that
            # (a literal </s> in the text is the end token either way)
            toks = (f" {EOS} ".join(batch) + f" {EOS}").split()
            parts.append(np.fromiter(map(get, toks, itertools.repeat(-1)), dtype=np.int32, count=len(toks)))
            n_lines += len(batch)
        return _finish(parts, self.unk_id, n_lines)

    def decode(self, ids) -> str:
        """Words joined by spaces; every ``</s>`` becomes a newline (so text ends with one).

        >>> v = WordVocab.build(["a b"]); v.decode(v.encode("b  a"))
        'b a\\n'
        """
        words, eos = self._words, self.eos_id
        out, cur = [], []
        for i in np.asarray(ids, dtype=np.int64).tolist():
            if i == eos:
                out.append(" ".join(cur) + "\n")
                cur = []
            else:
                cur.append(words[i])
        if cur:
            out.append(" ".join(cur))
        return "".join(out)

    def to_bytes(self) -> bytes:
        h = self._header()
        h.update(min_count=self.min_count, max_size=self.max_size)
        if self.oov != "auto":
            h.update(oov=self.oov)
        return self._dump(h)


class SentencePieceTokenizer(_Tokenizer):
    """SentencePiece (unigram/BPE) pieces, re-numbered by descending training frequency.

    ``sp_ids[our_id]`` is SentencePiece's id; SP's ``<unk>`` is our ``<unk>`` and SP's control
    piece ``</s>`` is our end token (appended by us; SP never emits it; bos/pad are disabled).

    >>> tok = SentencePieceTokenizer.train(lines, vocab_size=200)      # doctest: +SKIP
    >>> tok.decode(tok.encode("the cat sat"))                          # doctest: +SKIP
    'the cat sat\\n'
    """

    kind = "sentencepiece"

    def __init__(self, model_bytes: bytes, sp_ids, counts, *, num_classes=100, class_mode="sqrt",
                 classes=None, settings: dict | None = None):
        import sentencepiece as spm
        self.model_bytes = bytes(model_bytes)
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self.model_bytes)
        except Exception as exc:  # noqa: BLE001 - sentencepiece raises plain RuntimeError/OSError
            raise RnnlmError(f"tokenizer data: bad SentencePiece model: {exc}") from None
        self.sp_ids = np.asarray(sp_ids, dtype=np.int32)
        n_sp = self._sp.get_piece_size()
        if sorted(self.sp_ids.tolist()) != list(range(n_sp)):
            raise RnnlmError("tokenizer data: id mapping is not a permutation of the model's pieces")
        self.sp_to_ours = np.empty(n_sp, dtype=np.int32)
        self.sp_to_ours[self.sp_ids] = np.arange(n_sp, dtype=np.int32)
        self.settings = dict(settings or {})
        words = [self._sp.id_to_piece(int(i)) for i in self.sp_ids]
        self._init_vocab(words, counts, num_classes, class_mode, classes)
        self._sp_unk, self._sp_eos = self._sp.unk_id(), self._sp.eos_id()

    @classmethod
    def train(cls, lines: Iterable[str], vocab_size: int = 8000, model_type: str = "unigram",
              num_classes: int = 100, class_mode: str = "sqrt", *, character_coverage: float = 1.0,
              input_sentence_size: int = 2_000_000, name: str = "training text",
              count_batches: Iterable | None = None):
        """Train in memory (deterministic, quiet); ids ordered by piece counts in the text.

        SentencePiece learns from the first `input_sentence_size` non-blank lines of `lines` (read
        lazily); the pieces are then counted over every line of `count_batches` (lists of lines,
        e.g. a second pass over a streamed file; default: `lines`, then kept in memory).
        `vocab_size` is an upper bound (``hard_vocab_limit=false``) incl. ``<unk>`` and ``</s>``.
        """
        import sentencepiece as spm
        if model_type not in ("unigram", "bpe"):
            raise RnnlmError(f"--sp-model-type must be unigram or bpe, got {model_type!r}")
        if count_batches is None:
            count_batches = [lines := [s for s in (ln.strip() for ln in lines) if s]]
        seen = {"any": False, "short": False, "error": None}

        def sample():   # an error while reading (e.g. bad UTF-8) is re-raised after SentencePiece returns
            try:
                for ln in itertools.islice((s for s in (x.strip() for x in lines) if s), int(input_sentence_size)):
                    seen["any"] = True
                    seen["short"] = seen["short"] or len(ln) <= SP_MAX_LINE // 4 or len(ln.encode()) <= SP_MAX_LINE
                    yield ln
            except Exception as exc:  # noqa: BLE001 - handed back to the caller below
                seen["error"] = exc

        settings = dict(vocab_size=int(vocab_size), model_type=model_type,
                        character_coverage=float(character_coverage),
                        input_sentence_size=int(input_sentence_size))
        buf, failure = io.BytesIO(), None
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sample(), model_writer=buf, unk_id=0, eos_id=1, bos_id=-1,
                pad_id=-1, eos_piece=EOS, unk_piece=UNK, minloglevel=2, num_threads=1,
                shuffle_input_sentence=False, hard_vocab_limit=False, max_sentence_length=SP_MAX_LINE,
                **settings)
        except RuntimeError as exc:
            failure = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if seen["error"] is not None:
            raise seen["error"]
        if not seen["any"]:
            raise RnnlmError(f"{name}: no text to train SentencePiece on")
        if not seen["short"]:
            raise RnnlmError(f"{name}: every line is longer than SentencePiece's limit of {SP_MAX_LINE:,} "
                             "bytes per sentence; put one sentence per line")
        if failure is not None:
            raise RnnlmError(f"{name}: SentencePiece training failed: {failure}")
        sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
        n_sp = sp.get_piece_size()
        counts, n_lines = np.zeros(n_sp, dtype=np.int64), 0
        for batch in count_batches:
            batch = [s for s in (ln.strip() for ln in batch) if s]
            counts += np.bincount(np.fromiter(itertools.chain.from_iterable(sp.encode(batch)), dtype=np.int64),
                                  minlength=n_sp)
            n_lines += len(batch)
        counts[sp.eos_id()] += n_lines
        pieces = [sp.id_to_piece(i) for i in range(n_sp)]
        order = sorted(range(n_sp), key=lambda i: (-int(counts[i]), pieces[i]))
        return cls(buf.getvalue(), order, counts[order], num_classes=num_classes,
                   class_mode=class_mode, settings=settings)

    def encode_lines(self, lines: Iterable[str], *, skip_blank: bool = True) -> EncodedText:
        """Encode lines to one flat int32 array (``</s>`` after each line); blank lines skipped.

        SP's ``<unk>`` pieces (characters unseen in training) are counted in ``n_oov``.
        """
        lines = [ln.strip() for ln in lines]
        if skip_blank:
            lines = [ln for ln in lines if ln]
        if not lines:
            return EncodedText(np.zeros(0, dtype=np.int32), 0, 0, 0, 0)
        eos, step = [self._sp_eos], 1 << 16
        flat = np.concatenate([np.fromiter(itertools.chain.from_iterable(
            p + eos for p in self._sp.encode(lines[i:i + step])), dtype=np.int32)
            for i in range(0, len(lines), step)])
        n_oov = int((flat == self._sp_unk).sum())
        return EncodedText(self.sp_to_ours[flat], len(flat), n_oov, n_oov, len(lines))

    def decode(self, ids) -> str:
        """Detokenised text; every ``</s>`` becomes a newline. Unknown pieces decode as ``⁇``."""
        sp_ids = self.sp_ids[np.asarray(ids, dtype=np.int64)].tolist()
        out, cur = [], []
        for i in sp_ids:
            if i == self._sp_eos:
                out.append(self._sp.decode(cur) + "\n")
                cur = []
            else:
                cur.append(i)
        if cur:
            out.append(self._sp.decode(cur))
        return "".join(out)

    def to_bytes(self) -> bytes:
        h = self._header()
        h.update(sp_model=base64.b64encode(self.model_bytes).decode("ascii"),
                 sp_ids=self.sp_ids.tolist(), settings=self.settings)
        return self._dump(h)


Tokenizer = WordVocab | SentencePieceTokenizer


def tokenizer_from_bytes(data: bytes) -> Tokenizer:
    """Rebuild a tokenizer from ``to_bytes()`` output, choosing the class by its ``kind``.

    >>> tokenizer_from_bytes(WordVocab.build(["a"]).to_bytes()).words
    ['</s>', 'a']
    """
    try:
        h = json.loads(bytes(data).decode("utf-8"))
        if not isinstance(h, dict) or h.get("format") != FORMAT:
            raise ValueError("not rnnlm tokenizer data")
        if h.get("version") != VERSION:
            raise ValueError(f"unsupported version {h.get('version')!r}")
        common = dict(num_classes=h["requested_classes"], class_mode=h["class_mode"],
                      classes=h["classes"])
        if h["kind"] == "word":
            return WordVocab(h["words"], h["counts"], min_count=h.get("min_count", 1),
                             max_size=h.get("max_size"), oov=h.get("oov", "auto"), **common)
        if h["kind"] == "sentencepiece":
            return SentencePieceTokenizer(base64.b64decode(h["sp_model"]), h["sp_ids"], h["counts"],
                                          settings=h.get("settings"), **common)
        raise ValueError(f"unknown tokenizer kind {h['kind']!r}")
    except RnnlmError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as exc:
        raise RnnlmError(f"tokenizer data: {' '.join(str(exc).split())[:160] or type(exc).__name__}") from None


def save_tokenizer(tok: Tokenizer, path: str | os.PathLike) -> None:
    """Write ``tok.to_bytes()`` to `path` atomically (temp file in the same dir + os.replace)."""
    atomic_write_bytes(path, tok.to_bytes())


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a file written by :func:`save_tokenizer` (errors name the file)."""
    try:
        return tokenizer_from_bytes(read_bytes(path))
    except RnnlmError as exc:
        msg = str(exc)
        raise RnnlmError(f"{path}: {msg.removeprefix('tokenizer data: ')}") from None
