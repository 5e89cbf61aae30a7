"""Text to scored tokens, keeping every token's position: what the per-word, n-best and
interpolation code needs and the flat id arrays of `tokenizer.encode_lines` drop.

Every line contributes its tokens and one final `</s>`. A token that is not in the vocabulary
is an OOV: it becomes `<unk>` when the vocabulary has it, otherwise it is *skipped* (id -1: not
scored, not counted in perplexity) but it keeps its place, so that output stays aligned with the
text and with per-word probability files of other language models.

    >>> from rnnlm.data.tokenizer import WordVocab
    >>> al = align_lines(WordVocab.build(["a b"], num_classes=0), ["a x b"])
    >>> al.ids.tolist(), al.oov.tolist(), al.tokens
    ([1, -1, 2, 0], [False, True, False, False], ['a', 'x', 'b', '</s>'])
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.data.text import check_text_bytes, display_name, read_bytes

EOS = "</s>"


@dataclass
class AlignedText:
    """Tokens of some lines. ``ids`` int32 (-1: skipped OOV), ``oov`` bool (not in the vocabulary),
    ``line_starts`` int64 offsets (``n_lines + 1``; line i is ``line_starts[i]:line_starts[i+1]``,
    its last token is ``</s>``), ``tokens`` the token strings (None unless asked for)."""

    ids: np.ndarray
    oov: np.ndarray
    line_starts: np.ndarray
    tokens: list | None = None

    @property
    def n_lines(self) -> int:
        return len(self.line_starts) - 1

    @property
    def scored(self) -> np.ndarray:
        """Mask of the tokens that are scored (everything but skipped OOVs)."""
        return self.ids >= 0

    @property
    def n_skipped(self) -> int:
        return int((self.ids < 0).sum())

    @property
    def n_unk(self) -> int:
        """OOV tokens scored as `<unk>`."""
        return int((self.oov & (self.ids >= 0)).sum())


def align_lines(tok, lines, keep_tokens: bool = False) -> AlignedText:
    """Tokenise `lines` (each one sentence; an empty line is just `</s>`) with positions kept.

    Word vocabularies split on whitespace; SentencePiece tokens are its pieces (never skipped: its
    `<unk>` piece is the OOV). `keep_tokens` also returns the token strings.
    """
    if getattr(tok, "kind", "word") == "word":
        return _align_words(tok, lines, keep_tokens)
    lines = list(lines)
    enc = tok.encode_lines(lines, skip_blank=False)
    ids = np.ascontiguousarray(enc.ids, dtype=np.int32)
    ends = np.flatnonzero(ids == tok.eos_id) + 1
    starts = np.concatenate([[0], ends]).astype(np.int64)
    oov = ids == tok.unk_id if tok.unk_id is not None else np.zeros(len(ids), bool)
    words = tok.words
    tokens = [words[i] for i in ids.tolist()] if keep_tokens else None
    return AlignedText(ids, oov, starts, tokens)


_INDEX: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _word_index(tok) -> dict:
    index = _INDEX.get(tok)
    if index is None:
        index = _INDEX[tok] = {w: i for i, w in enumerate(tok.words)}
    return index


def _align_words(tok, lines, keep_tokens: bool) -> AlignedText:
    index = _word_index(tok)
    eos = tok.eos_id
    ids: list[int] = []
    starts = [0]
    tokens: list[str] | None = [] if keep_tokens else None
    for line in lines:
        words = line.split()
        ids.extend([index.get(w, -1) for w in words])
        ids.append(eos)
        if tokens is not None:
            tokens.extend(words)
            tokens.append(EOS)
        starts.append(len(ids))
    arr = np.array(ids, dtype=np.int32)
    oov = arr < 0
    if tok.unk_id is not None:
        arr[oov] = tok.unk_id
    return AlignedText(arr, oov, np.array(starts, dtype=np.int64), tokens)


def read_all_lines(path: str | os.PathLike) -> tuple[list[str], str]:
    """Every line of a UTF-8 file ('-' = stdin), blank lines kept (as empty sentences), stripped;
    returns (lines, display name). Newline policy as `textio.decode_lines`."""
    name = display_name(path)
    data = read_bytes(path)
    if not data:
        raise RnnlmError(f"{name}: empty file")
    text = check_text_bytes(data, name)
    if text.startswith("\ufeff"):
        text = text[1:]
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    return [ln.strip() for ln in raw], name


def split_ids(lines: list[str], name: str) -> tuple[list[str], list[str]]:
    """n-best lines `ID word word ...`: (ids, sentences). A line without an id is an error."""
    ids, sents = [], []
    for i, line in enumerate(lines):
        parts = line.split(None, 1)
        if not parts:
            raise RnnlmError(f"{name}: line {i + 1} is blank; every n-best line starts with an utterance id")
        ids.append(parts[0])
        sents.append(parts[1] if len(parts) > 1 else "")
    return ids, sents
