"""rnnlm-0.4b model files: read and write them (text and `-binary`), convert to and from our models.

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
    from rnnlm.textio import read_bytes
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
    from rnnlm.textio import atomic_write_bytes
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

def _marker_fields(train_file: str) -> dict | None:
    """The fields of an export marker ('rnnlm-numba-export,eos=K,...') or None."""
    parts = train_file.split(",")
    if parts[0] != MARK:
        return None
    try:
        return {k: int(v) for k, v in (p.split("=", 1) for p in parts[1:])}
    except ValueError:
        return None


def _train_config(h: dict) -> dict:
    from rnnlm.config import TrainConfig
    lr = h["alpha"] if h["alpha"] > 0 else (h["starting_alpha"] if h["starting_alpha"] > 0 else 0.1)
    return TrainConfig(lr=float(lr), bptt=max(1, h["bptt"] - 1), bptt_block=max(1, h["bptt_block"]),
                       independent=bool(h["independent"])).to_dict()


def import_model(path: str, mode: str = "auto"):
    """An rnnlm-0.4b file as our ModelFile. mode "rnnlm-0.4b": evaluated with rnnlm-0.4b's arithmetic
    and conventions; "native": our kernels (exact exp, OOV policy of the vocabulary); "auto": native
    for files written by `export_model` (restoring the model exactly), rnnlm-0.4b otherwise."""
    from rnnlm.config import ModelConfig
    from rnnlm.model import ModelFile, Params
    from rnnlm.tokenizer import WordVocab, assign_classes
    if mode not in ("auto", "native", COMPAT):
        raise RnnlmError(f"unknown import mode {mode!r} (auto, native or {COMPAT})")
    m = read_rnnlm04b(path)
    h = m.header
    V, H, C, ds = h["vocab_size"], h["layer1_size"], h["class_size"], h["direct_size"]
    mark = _marker_fields(h["train_file"])
    if mode == "auto":
        mode = "native" if mark is not None else COMPAT
    # rnnlm-0.4b reassigns classes from the counts when it loads a model (initNet)
    class_mode = "unigram" if h["old_classes"] else "sqrt"
    cls = assign_classes(m.counts, C, class_mode)
    if C > 1 and not np.array_equal(cls, m.classes):
        m.notes.append("the class column differs from the classes rnnlm-0.4b derives from the counts; "
                       "using the derived ones, as rnnlm-0.4b does")
    emb, rec = m.syn0[:, :V].T, m.syn0[:, V:]
    out_w, cls_w, h0 = m.syn1[:V], m.syn1[V:], m.hidden
    words, counts = list(m.words), m.counts
    meta = {"train": _train_config(h), "history": [], "tokenizer_kind": "word",
            "rnnlm04b": {"source": os.path.abspath(path), "header": h, "mode": mode}}
    bias = False
    bh = bo = bc = None
    n_cls = C
    if mode == "native" and mark is not None:        # undo export_model's reordering and bias unit
        try:
            order, old_cls, n_cls = _export_order_inverse(cls, mark)
        except (KeyError, ValueError, IndexError):
            raise RnnlmError(f"{path}: corrupt '{MARK}' marker in its training data file field") from None
        inv = np.empty(V, np.int64)
        inv[order] = np.arange(V)                  # inv[old id] = position in the file
        words = [m.words[i] for i in inv]
        counts, cls = counts[inv], old_cls
        emb, out_w = emb[inv], out_w[inv]
        if n_cls:
            new_of_old = _class_map(mark["eosclass"], n_cls)
            cls_w = cls_w[new_of_old]
        else:
            cls_w = cls_w[:0]
        if mark.get("bias"):
            bias, H = True, H - 1
            bh, bo, bc = rec[:H, H], out_w[:, H], cls_w[:, H]
            emb, rec, out_w, cls_w, h0 = emb[:, :H], rec[:H, :H], out_w[:, :H], cls_w[:, :H], h0[:H]
    cfg = ModelConfig(vocab_size=V, hidden=H, classes=n_cls, activation="sigmoid", dtype="float32",
                      init_hidden=float(str(np.float32(h0[0]))), bias=bias, direct_size=ds,
                      direct_order=h["direct_order"] if ds else 3,
                      compat=COMPAT if mode == COMPAT else "")
    p = Params(cfg)
    p.emb[...], p.rec[...], p.out_w[...], p.cls_w[...], p.direct[...] = emb, rec, out_w, cls_w, m.direct
    if bias:
        p.bh[...], p.bo[...], p.bc[...] = bh, bo, bc
    tok = WordVocab(words, counts, num_classes=n_cls, class_mode=class_mode,
                    classes=cls if n_cls else np.zeros(V, np.int32), oov="skip" if mark is None else "auto")
    arrays = {} if np.all(h0 == h0[0]) and mode == "native" else {"h0": np.array(h0, np.float32)}
    return ModelFile(cfg, p, tok.to_bytes(), meta, arrays), m.notes


def _class_map(eos_class: int, n: int) -> np.ndarray:
    """new_of_old[c]: rnnlm-0.4b class index of our class c (the class of </s> first)."""
    return np.array([0 if c == eos_class else (c + 1 if c < eos_class else c) for c in range(n)], np.int64)


def _export_order(cls: np.ndarray, eos: int) -> np.ndarray:
    """Our ids in rnnlm-0.4b order: </s>, the rest of its class, then the other classes in order."""
    ce = cls[eos]
    same = [i for i in np.flatnonzero(cls == ce).tolist() if i != eos]
    return np.array([eos] + same + np.flatnonzero(cls != ce).tolist(), np.int64)


def _export_order_inverse(file_cls: np.ndarray, mark: dict):
    """(order, our classes, our number of classes) from the file's classes and the marker."""
    k, ce, n = mark["eos"], mark["eosclass"], mark["classes"]
    V = len(file_cls)
    if n == 0:
        old_cls = np.zeros(V, np.int32)
    else:
        new_of_old = _class_map(ce, n)
        sizes = np.bincount(file_cls, minlength=n)[new_of_old]       # sizes in our class order
        old_cls = np.repeat(np.arange(n, dtype=np.int32), sizes)
    if len(old_cls) != V or not 0 <= k < V or old_cls[k] != ce:
        raise ValueError("inconsistent marker")
    order = _export_order(old_cls, k)
    return order, old_cls, n


def _synthetic_counts(new_cls: np.ndarray, n_cls: int) -> np.ndarray:
    """Counts from which rnnlm-0.4b's -old-classes assignment gives exactly `new_cls` (contiguous,
    every class non-empty): each class but the last ends with a word whose count carries the
    cumulative share K/2 past the class boundary."""
    sizes = np.bincount(new_cls, minlength=n_cls)
    K = 2 * (int(sizes.max()) + 1)
    counts = np.ones(len(new_cls), np.int64)
    ends = np.cumsum(sizes) - 1
    for a in range(n_cls):
        if a < n_cls - 1:
            counts[ends[a]] = (K + K // 2 if a == 0 else K) - (sizes[a] - 1)
        else:
            counts[ends[a]] = K // 2 - (sizes[a] - 1) if n_cls > 1 else counts[ends[a]]
    return counts


def export_model(mf, tok, path: str, binary: bool = False) -> list:
    """Write our model as an rnnlm-0.4b file (its text format, or `-binary`); returns notes.

    Models imported from rnnlm-0.4b are written back as they were read. Our models: sigmoid hidden
    layer only; </s> becomes word 0 and its class class 0 (the ids of the file are a permutation of
    ours, undone by `import_model`); biases, which rnnlm-0.4b lacks, ride on one extra hidden unit
    held at 1.0 (a self-connection of 60 saturates it; its outgoing weights are bh, bo and bc).
    """
    from rnnlm.tokenizer import WordVocab, assign_classes
    cfg, p, notes = mf.config, mf.params, []
    src = mf.meta.get("rnnlm04b", {})
    if not isinstance(tok, WordVocab):
        raise RnnlmError("only word-vocabulary models can be exported to rnnlm-0.4b "
                         f"(this one uses {tok.kind} tokens)")
    if cfg.activation != "sigmoid":
        raise RnnlmError(f"rnnlm-0.4b has only sigmoid hidden units; this model uses {cfg.activation}")
    indep = bool(mf.meta.get("train", {}).get("independent", False))
    if indep and cfg.reset_hidden != 1.0:
        raise RnnlmError(f"rnnlm-0.4b restarts sentences from hidden state 1.0; this model uses "
                         f"{cfg.reset_hidden}")
    if cfg.dtype != "float32":
        notes.append("weights rounded to float32 (rnnlm-0.4b stores float)")
    V, H = cfg.vocab_size, cfg.hidden
    h0 = mf.arrays.get("h0")
    h0 = np.full(H, cfg.init_hidden, np.float32) if h0 is None else np.asarray(h0, np.float32)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    if cfg.compat == COMPAT and "header" in src:
        h = dict(src["header"])
        syn0 = np.concatenate([f32(p.emb).T, f32(p.rec)], axis=1)
        syn1 = np.concatenate([f32(p.out_w), f32(p.cls_w)])
        m = Rnnlm04bModel(h, tok.words, np.asarray(tok.counts, np.int64), tok.classes.astype(np.int32),
                          h0, syn0, syn1, f32(p.direct))
        write_rnnlm04b(path, m, binary)
        return notes
    n_cls = cfg.classes
    cls = tok.classes.astype(np.int64) if n_cls else np.zeros(V, np.int64)
    eos = tok.eos_id
    order = _export_order(cls, eos)
    C4 = max(n_cls, 1)
    new_of_old = _class_map(int(cls[eos]), C4)
    new_cls = new_of_old[cls[order]].astype(np.int32)
    if not np.array_equal(order, np.arange(V)) and np.any(p.direct != 0):
        raise RnnlmError("cannot export direct connections of a model whose </s> is not word 0 "
                         "(rnnlm-0.4b hashes word ids, and its </s> must be word 0)")
    use_bias = bool(np.any(p.bh != 0) or np.any(p.bo != 0) or np.any(p.bc != 0))
    Hx = H + 1 if use_bias else H
    emb = np.zeros((V, Hx), np.float32)
    rec = np.zeros((Hx, Hx), np.float32)
    out_w = np.zeros((V, Hx), np.float32)
    cls_w = np.zeros((C4, Hx), np.float32)
    emb[:, :H], rec[:H, :H], out_w[:, :H] = f32(p.emb)[order], f32(p.rec), f32(p.out_w)[order]
    if n_cls:
        cls_w[new_of_old, :H] = f32(p.cls_w)
    hidden = np.ones(Hx, np.float32)
    hidden[:H] = h0
    if use_bias:
        rec[:H, H], rec[H, H], out_w[:, H] = f32(p.bh), 60.0, f32(p.bo)[order]
        if n_cls:
            cls_w[new_of_old, H] = f32(p.bc)
        notes.append(f"rnnlm-0.4b has no biases: they ride on one extra hidden unit held at 1.0 "
                     f"(hidden layer {Hx} = {H} + 1)")
    counts = np.asarray(tok.counts, np.int64)[order]
    old_classes = 1 if tok.class_mode == "unigram" else 0
    if C4 > 1 and not np.array_equal(assign_classes(counts, C4, tok.class_mode), new_cls):
        counts, old_classes = _synthetic_counts(new_cls, C4), 1
        notes.append("word counts rewritten (with -old-classes) so that rnnlm-0.4b, which reassigns "
                     "classes from the counts when it loads a model, finds this model's classes")
        if not np.array_equal(assign_classes(counts, C4, "unigram"), new_cls):
            raise RnnlmError("internal error: could not encode the classes as counts")
    hist = mf.meta.get("history", [])
    tc = mf.meta.get("train", {})
    lr0 = float(tc.get("lr", 0.1))
    lr = float(hist[-1]["lr"]) if hist else lr0
    mark = f"{MARK},eos={eos},eosclass={int(cls[eos])},classes={n_cls},bias={int(use_bias)}"
    h = dict(version=VERSION, file_format=int(binary), train_file=mark, valid_file="unknown",
             llogp=-100000000.0, iter=len(hist), train_cur_pos=0, logp=0.0, anti_k=0,
             train_words=int(np.sum(tok.counts)), layer0_size=V + Hx, layer1_size=Hx, layerc_size=0,
             layer2_size=V + C4, direct_size=cfg.direct_size, direct_order=cfg.direct_order,
             bptt=int(tc.get("bptt", 4)) + 1, bptt_block=int(tc.get("bptt_block", 10)), vocab_size=V,
             class_size=C4, old_classes=old_classes, independent=int(indep), starting_alpha=lr0,
             alpha=lr, alpha_divide=int(lr < lr0))
    m = Rnnlm04bModel(h, [tok.words[i] for i in order], counts, new_cls, hidden,
                      np.concatenate([emb.T, rec], axis=1), np.concatenate([out_w, cls_w]), f32(p.direct))
    if not binary:
        notes.append("text format: weights rounded to 4 decimals, direct weights to 2")
    write_rnnlm04b(path, m, binary)
    return notes
