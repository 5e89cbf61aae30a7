"""rnnlm-0.4b model files: read and write them (text and `-binary`); rnnlm/interop/rnnlm04b/convert.py converts them.

The format is that of rnnlm-0.4b's saveNet/restoreNet: a text header of `label: value` lines, the
vocabulary (`index<TAB>count<TAB>word<TAB>class`), then the saved hidden activation, syn0 (hidden x
(vocabulary + hidden): word columns then recurrent columns), syn1 (rows of the words, then of the
classes; hidden-size columns each) and the direct n-gram weights syn_d. The text format prints one
value per line (`%.4f`, direct weights `%.2f`) after section labels; the binary format has raw
native float32 values right after the vocabulary. Compression layers are refused.

Importing a file written by rnnlm-0.4b gives a model marked `compat="rnnlm-0.4b"`: evaluated by
rnnlm.kernels.rnnlm04b with rnnlm-0.4b's arithmetic and test conventions (its fasterexp, float32, initial
context = the saved hidden activation, first history word </s>, OOV words skipped but advancing the
state), so `rnnlm eval` prints the perplexity rnnlm-0.4b prints. rnnlm-0.4b recomputes word classes
from the counts when it loads a model; so do we. A file written by `export_model` says so in its
"training data file" field and is imported back as the native model it came from (same ids, same
weights: bit-identical evaluation through the binary format).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from rnnlm.errors import RnnlmError

COMPAT = "rnnlm-0.4b"
MARK = "rnnlm-numba-export"
VERSION = 10
# (label, key, type) in saveNet's order; blank lines between them are skipped
HEADER = [("version", "version", int), ("file format", "file_format", int),
          ("training data file", "train_file", str), ("validation data file", "valid_file", str),
          ("last probability of validation data", "llogp", float),
          ("number of finished iterations", "iter", int),
          ("current position in training data", "train_cur_pos", int),
          ("current probability of training data", "logp", float),
          ("save after processing # words", "anti_k", int), ("# of training words", "train_words", int),
          ("input layer size", "layer0_size", int), ("hidden layer size", "layer1_size", int),
          ("compression layer size", "layerc_size", int), ("output layer size", "layer2_size", int),
          ("direct connections", "direct_size", int), ("direct order", "direct_order", int),
          ("bptt", "bptt", int), ("bptt block", "bptt_block", int),
          ("vocabulary size", "vocab_size", int), ("class size", "class_size", int),
          ("old classes", "old_classes", int), ("independent sentences mode", "independent", int),
          ("starting learning rate", "starting_alpha", float), ("current learning rate", "alpha", float),
          ("learning rate decrease", "alpha_divide", int)]
BLANK_AFTER = {"file_format", "valid_file", "alpha_divide"}       # saveNet's empty lines
SECTIONS = ("Hidden layer activation:", "Weights 0->1:", "Weights 1->2:", "Direct connections:")
FMT = {"llogp": "%f", "logp": "%f", "starting_alpha": "%f", "alpha": "%f"}


@dataclass
class Rnnlm04bModel:
    """The contents of an rnnlm-0.4b model file (weights as float32, in rnnlm-0.4b's layout)."""

    header: dict                 # every header field by key (see HEADER)
    words: list                  # str, vocabulary order (</s> first)
    counts: np.ndarray           # int64
    classes: np.ndarray          # int32, the class column as written
    hidden: np.ndarray           # (H,) saved hidden activation
    syn0: np.ndarray             # (H, V + H)
    syn1: np.ndarray             # (V + C, H)
    direct: np.ndarray           # (direct_size,)
    notes: list = field(default_factory=list)

    @property
    def binary(self) -> bool:
        return self.header["file_format"] == 1


def sniff(path: str) -> bool:
    """True if `path` looks like an rnnlm-0.4b model file (starts with 'version:')."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"version:"
    except OSError:
        return False


# ----------------------------------------------------------------------------- reading

class _Lines:
    """Line cursor over bytes that knows line numbers and byte offsets (for error messages)."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name, self.pos, self.lineno, self.cut = data, name, 0, 0, False

    def fail(self, msg: str, lineno: int | None = None):
        if lineno is None and self.cut:       # the last line read ran into the end of the file
            raise RnnlmError(f"{self.name}: truncated at line {self.lineno} (byte {len(self.data)}): {msg}")
        raise RnnlmError(f"{self.name}: line {self.lineno if lineno is None else lineno}: {msg}")

    def next(self, what: str, skip_blank: bool = False) -> bytes:
        while True:
            if self.pos >= len(self.data):
                raise RnnlmError(f"{self.name}: truncated at line {self.lineno + 1} (byte {len(self.data)}): "
                                 f"expected {what}")
            end = self.data.find(b"\n", self.pos)
            self.cut = end < 0
            end = len(self.data) if end < 0 else end
            line = self.data[self.pos:end].rstrip(b"\r")
            self.pos, self.lineno = end + 1, self.lineno + 1
            if not (skip_blank and not line.strip()):
                return line


def _num(lines: _Lines, text: bytes, typ, what: str):
    try:
        v = typ(text.strip().decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        lines.fail(f"{what}: expected {'an integer' if typ is int else 'a number'}, found {text[:40]!r}")
    if typ is float and not math.isfinite(v):
        lines.fail(f"{what}: {v} is not a finite number")
    return v


def _read_header(lines: _Lines) -> dict:
    h = {}
    for label, key, typ in HEADER:
        line = lines.next(f"the header line '{label}: ...'", skip_blank=True)
        got, sep, value = line.partition(b":")
        if not sep or got.strip().decode("latin-1") != label:
            lines.fail(f"expected the header line '{label}: ...', found {line[:60]!r}")
        if typ is str:
            h[key] = value.strip().decode("utf-8", "replace")
        else:
            h[key] = _num(lines, value, typ, label)
    V, H, C = h["vocab_size"], h["layer1_size"], h["class_size"]
    if h["version"] != VERSION:
        lines.fail(f"version {h['version']} is not supported (rnnlm-0.4b writes version {VERSION})", 1)
    if h["file_format"] not in (0, 1):
        lines.fail(f"unknown file format {h['file_format']} (0 = text, 1 = binary)", 2)
    if h["layerc_size"] != 0:
        raise RnnlmError(f"{lines.name}: has a compression layer ({h['layerc_size']} units); "
                         "rnnlm-0.4b models with -compression are not supported")
    if V < 2 or H < 1 or C < 1:
        lines.fail(f"bad sizes: vocabulary {V}, hidden {H}, classes {C}")
    if h["layer0_size"] != V + H or h["layer2_size"] != V + C:
        lines.fail(f"layer sizes do not match: input {h['layer0_size']} (expected {V + H}), "
                   f"output {h['layer2_size']} (expected {V + C})")
    if h["direct_size"] < 0 or (h["direct_size"] and not (1 <= h["direct_order"] <= 20)):
        lines.fail(f"bad direct connections: size {h['direct_size']}, order {h['direct_order']}")
    if h["direct_size"] and h["direct_size"] // 2 + C > h["direct_size"]:
        lines.fail(f"direct connection table of {h['direct_size']} is too small for {C} classes")
    return h


def _read_vocab(lines: _Lines, h: dict):
    line = lines.next("the line 'Vocabulary:'", skip_blank=True)
    if line.strip() != b"Vocabulary:":
        lines.fail(f"expected 'Vocabulary:', found {line[:60]!r}")
    V = h["vocab_size"]
    left = lines.data.count(b"\n", lines.pos) + 1
    if V > left:                                       # checked before allocating V entries
        lines.fail(f"vocabulary size {V} but only {left} lines follow")
    words, counts, classes, seen = [], np.zeros(V, np.int64), np.zeros(V, np.int32), set()
    for a in range(V):
        line = lines.next(f"vocabulary entry {a} of {V}")
        f = line.split(b"\t")
        if len(f) != 4:
            f = line.split()
        if len(f) != 4:
            lines.fail(f"expected 'index<TAB>count<TAB>word<TAB>class', found {line[:60]!r}")
        idx = _num(lines, f[0], int, "vocabulary index")
        counts[a] = _num(lines, f[1], int, "word count")
        classes[a] = _num(lines, f[3], int, "word class")
        if idx != a:
            lines.fail(f"vocabulary index {idx} where {a} was expected")
        if not 0 <= classes[a] < h["class_size"]:
            lines.fail(f"class {classes[a]} is outside 0..{h['class_size'] - 1}")
        try:
            w = f[2].decode("utf-8")
        except UnicodeDecodeError:
            lines.fail(f"word {f[2][:40]!r} is not valid UTF-8")
        if not w or any(ch in w for ch in " \t\n") or w in seen:
            lines.fail(f"bad or repeated word {w!r}")
        if a == 0 and w != "</s>":
            lines.fail(f"the first word must be </s> (rnnlm-0.4b's end of sentence), found {w!r}")
        seen.add(w)
        words.append(w)
    return words, counts, classes


def _block_sizes(h: dict) -> list:
    V, H, C = h["vocab_size"], h["layer1_size"], h["class_size"]
    return [("hidden layer activation", H), ("weights 0->1", H * (V + H)), ("weights 1->2", (V + C) * H),
            ("direct connections", h["direct_size"])]


def _read_binary(data: bytes, pos: int, name: str, h: dict) -> list:
    out, need = [], sum(n for _, n in _block_sizes(h)) * 4
    if len(data) - pos < need:
        off = pos
        for what, n in _block_sizes(h):
            if len(data) < off + 4 * n:
                raise RnnlmError(f"{name}: truncated at byte {len(data)}: the {what} ({n} float32 values) "
                                 f"start at byte {off} and need {4 * n} bytes")
            off += 4 * n
    if len(data) - pos > need:
        raise RnnlmError(f"{name}: {len(data) - pos - need} unexpected bytes after the weights, from byte "
                         f"{pos + need}")
    for what, n in _block_sizes(h):
        a = np.frombuffer(data, dtype="<f4", count=n, offset=pos).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(a))
        if len(bad):
            raise RnnlmError(f"{name}: byte {pos + 4 * int(bad[0])}: non-finite value in the {what}")
        out.append(a)
        pos += 4 * n
    return out


def _read_text(lines: _Lines, h: dict) -> list:
    rest = lines.data[lines.pos:].split(b"\n")
    base, i, out = lines.lineno + 1, 0, []          # rest[i] is line base + i
    for label, (what, n) in zip(SECTIONS, _block_sizes(h)):
        while i < len(rest) and not rest[i].strip():
            i += 1
        if i >= len(rest):
            lines.fail(f"truncated: expected the section '{label}'", base + i)
        if rest[i].strip() != label.encode():
            lines.fail(f"expected the section '{label}', found {rest[i][:60]!r}", base + i)
        i += 1
        vals = rest[i:i + n]
        if len(vals) < n:
            lines.fail(f"truncated: the {what} need {n} values from line {base + i}, "
                       f"the file ends after {len(vals)}", base + len(rest) - 1)
        try:
            a = np.array(vals, dtype=bytes).astype(np.float64) if n else np.zeros(0)
        except ValueError:
            a = None
        if a is None or not np.all(np.isfinite(a)):
            for k, v in enumerate(vals):
                try:
                    ok = math.isfinite(float(v.decode("ascii")))
                except (ValueError, UnicodeDecodeError):
                    ok = False
                if not ok:
                    lines.fail(f"{what}: expected a finite number, found {v[:40]!r}", base + i + k)
        out.append(a.astype(np.float32))
        i += n
    for k in range(i, len(rest)):
        if rest[k].strip():
            lines.fail(f"unexpected data after the direct connections: {rest[k][:40]!r}", base + k)
    return out


def read_rnnlm04b(path: str) -> Rnnlm04bModel:
    """Parse an rnnlm-0.4b model file (text or binary); one-line RnnlmError naming the line or byte."""
    from rnnlm.data.text import read_bytes
    if os.path.isdir(path):
        raise RnnlmError(f"{path}: is a directory, expected an rnnlm-0.4b model file")
    data = read_bytes(path)
    if not data:
        raise RnnlmError(f"{path}: empty file (0 bytes), not an rnnlm-0.4b model file")
    if data[:4] == b"PK\x03\x04" or data[:6] == b"\x93NUMPY":
        raise RnnlmError(f"{path}: a NumPy .npz/.npy file, not an rnnlm-0.4b model file (our own model "
                         "files need no import: `rnnlm eval` reads them)")
    if not data.lstrip().startswith(b"version:"):
        raise RnnlmError(f"{path}: not an rnnlm-0.4b model file (it does not start with 'version:')")
    lines = _Lines(data, path)
    h = _read_header(lines)
    words, counts, classes = _read_vocab(lines, h)
    blocks = _read_binary(data, lines.pos, path, h) if h["file_format"] == 1 else _read_text(lines, h)
    V, H = h["vocab_size"], h["layer1_size"]
    return Rnnlm04bModel(h, words, counts, classes, blocks[0], blocks[1].reshape(H, V + H),
                         blocks[2].reshape(-1, H), blocks[3])


# ----------------------------------------------------------------------------- writing

def write_rnnlm04b(path: str, m: Rnnlm04bModel, binary: bool) -> None:
    """Write `m` as rnnlm-0.4b's saveNet does (binary: raw float32 weights), atomically."""
    from rnnlm.data.text import atomic_write_bytes
    h = dict(m.header, file_format=1 if binary else 0)
    out = []
    for label, key, typ in HEADER:
        v = h[key]
        out.append(f"{label}: {FMT[key] % v if key in FMT else v}\n")
        if key in BLANK_AFTER:
            out.append("\n")
    out.append("\nVocabulary:\n")
    for a, (w, cn, c) in enumerate(zip(m.words, m.counts.tolist(), m.classes.tolist())):
        out.append("%6d\t%10d\t%s\t%d\n" % (a, cn, w, c))
    head = "".join(out).encode("utf-8")
    blocks = [m.hidden, m.syn0, m.syn1, m.direct]
    if binary:
        body = b"".join(np.ascontiguousarray(b, dtype="<f4").tobytes() for b in blocks)
    else:
        parts = []
        for k, (label, b) in enumerate(zip(SECTIONS, blocks)):
            parts.append(("\n\n" if k == 2 else "\n") + label + "\n")
            fmt = "%.2f\n" if k == 3 else "%.4f\n"
            vals = np.asarray(b, dtype=np.float64).ravel().tolist()
            parts.append((fmt * len(vals)) % tuple(vals))
        body = "".join(parts).encode("ascii")
    atomic_write_bytes(path, head + body)


# ----------------------------------------------------------------------------- our models <-> rnnlm-0.4b
