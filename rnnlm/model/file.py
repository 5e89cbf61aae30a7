"""Parameters (one flat buffer with named views), initialisation, and the model file.

A model file is a NumPy `.npz` archive read with allow_pickle=False holding
  params      the flat parameter buffer (float32 or float64)
  meta        UTF-8 JSON as uint8: format version, model config, training config, history, extras
  tokenizer   the tokenizer's own bytes (WordVocab JSON or SentencePiece model + id map) as uint8
  state_*     optional extra arrays (e.g. training state in checkpoints)
Files are written atomically: temporary file in the same directory, fsync, rename.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from rnnlm.model.config import ModelConfig
from rnnlm.errors import RnnlmError
from rnnlm.data.text import atomic_write

INIT_PIECE = 1 << 20   # Params.init draws this many values at a time
FORMAT = "rnnlm-numba"
FORMAT_VERSION = 1


def param_shapes(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the parameter blocks, in buffer order (see rnnlm/kernels for meaning)."""
    N, M, C = cfg.vocab_size, cfg.hidden, cfg.classes
    O = N - 1 if cfg.softmax == "hs" else N   # output rows: words, or the Huffman tree's internal nodes
    return [
        ("emb", (N, M)),
        ("rec", (M, M)),
        ("bh", (M,)),
        ("out_w", (0 if cfg.tie else O, M)),   # tied: out_w is emb (Params), stored once
        ("bo", (O,)),
        ("cls_w", (C, M)),
        ("bc", (C,)),
        ("direct", (cfg.direct_size,)),
    ]


class Params:
    """All weights in one contiguous buffer `flat`; each block is a named view (`p.emb`, `p.rec`...)."""

    def __init__(self, cfg: ModelConfig, flat: np.ndarray | None = None):
        self.cfg = cfg
        shapes = param_shapes(cfg)
        size = sum(int(np.prod(s)) for _, s in shapes)
        dtype = np.dtype(cfg.dtype)
        if flat is None:
            flat = np.zeros(size, dtype=dtype)
        if flat.shape != (size,) or flat.dtype != dtype:
            raise RnnlmError(f"parameter buffer has shape {flat.shape} {flat.dtype}, expected ({size},) {dtype}")
        self.flat = np.ascontiguousarray(flat)
        self.h0 = None   # (M,) state a text starts from, when the model file saves one (its 'h0' array)
        self.names = [n for n, _ in shapes]
        self.offsets = {}
        off = 0
        for name, shape in shapes:
            n = int(np.prod(shape))
            self.offsets[name] = (off, off + n)
            setattr(self, name, self.flat[off:off + n].reshape(shape))
            off += n
        if cfg.tie:   # weight tying: the output word vectors are the embedding rows themselves
            self.out_w = self.emb

    def block(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def zeros_like(self) -> "Params":
        return Params(self.cfg, np.zeros_like(self.flat))

    def copy(self) -> "Params":
        return Params(self.cfg, self.flat.copy())

    @classmethod
    def init(cls, cfg: ModelConfig, rng: np.random.Generator) -> "Params":
        """rnnlm-0.4b's initialisation: each weight is the sum of three uniforms on [-a, a] with
        a = init_scale; biases start at zero.

        The draws are those of `rng.uniform(-a, a, size=(3,) + shape).sum(axis=0)` for each block,
        bit for bit, taken in pieces of INIT_PIECE values into one float64 sum: 8 bytes a weight
        beside the parameters instead of 36 (at V = 300k, hidden 100: 0.5 GB instead of 2.2)."""
        p = cls(cfg)
        a = cfg.init_scale
        for name in ("emb", "rec", "out_w", "cls_w"):
            if name == "out_w" and cfg.tie:
                continue
            blk = p.block(name)
            n = blk.size
            acc = np.empty(n, np.float64)
            for k in range(3):   # the three draws in the order of one (3, *shape) call; summed as .sum(axis=0)
                for lo in range(0, n, INIT_PIECE):
                    r = rng.uniform(-a, a, size=min(INIT_PIECE, n - lo))
                    if k == 0:
                        acc[lo:lo + r.size] = r
                    else:
                        acc[lo:lo + r.size] += r
            blk[...] = acc.reshape(blk.shape)   # rounded as .astype(dtype) rounds
        return p


@dataclass
class ModelFile:
    """Everything a model file holds."""

    config: ModelConfig
    params: Params
    tokenizer_bytes: bytes
    meta: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    tree: object = None   # the hierarchical softmax's tree (rnnlm.model.huffman.HsTree) of an hs model


def _bytes_array(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8)


def save_model(path: str, mf: ModelFile) -> None:
    """Write a model file atomically (see module docstring for the layout)."""
    if os.path.isdir(path):
        raise RnnlmError(f"{path}: is a directory, expected a model file path")
    meta = dict(mf.meta)
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, model=mf.config.to_dict())
    arrays = {
        "params": mf.params.flat,
        "meta": _bytes_array(json.dumps(meta, sort_keys=True).encode("utf-8")),
        "tokenizer": _bytes_array(mf.tokenizer_bytes),
    }
    for k, v in mf.arrays.items():
        arrays[f"state_{k}"] = np.ascontiguousarray(v)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


ZIP_MAGIC = b"PK\x03\x04"
# what a damaged or foreign archive can raise inside np.load / zipfile (reported as one line)
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError,
                   NotImplementedError, RuntimeError, OverflowError, MemoryError, zlib.error, struct.error)
_CONFIG_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _one_line(exc: BaseException, limit: int = 160) -> str:
    msg = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {msg[:limit]}" if msg else exc.__class__.__name__


def _read_arrays(path: str) -> dict:
    """Every array of the .npz at `path`, read with allow_pickle=False (pickled objects refused)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise RnnlmError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not head:
        raise RnnlmError(f"{path}: empty file (0 bytes), not an rnnlm model file")
    if head != ZIP_MAGIC:   # np.load would also take .npy files and sniff for pickles
        raise RnnlmError(f"{path}: not an rnnlm model file (not an .npz archive)")
    data = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                try:
                    data[k] = z[k]
                except ValueError as exc:
                    if "pickle" in str(exc):
                        raise RnnlmError(f"{path}: refused: array '{k}' holds pickled Python objects "
                                         "(model files never do; nothing was unpickled)") from None
                    raise
    except RnnlmError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise RnnlmError(f"{path}: damaged, truncated or not an rnnlm model file ({_one_line(exc)})") from None
    return data


def _check_config_types(path: str, d) -> None:
    import dataclasses
    if not isinstance(d, dict):
        raise RnnlmError(f"{path}: corrupt metadata (model configuration is not a JSON object)")
    for f in dataclasses.fields(ModelConfig):
        if f.name in d:
            v, t = d[f.name], _CONFIG_TYPES.get(str(f.type))
            if t is not None and (not isinstance(v, t) or (t is not bool and isinstance(v, bool))):
                raise RnnlmError(f"{path}: corrupt metadata (model field {f.name} = {str(v)[:40]!r})")


def _check_tokenizer(path: str, cfg: ModelConfig, raw: bytes) -> None:
    """The tokenizer's vocabulary and classes must fit the network (the kernels index by them)."""
    try:
        h = json.loads(raw.decode("utf-8"))
        n, classes = len(h["words"]), h["classes"]
        lo, hi = (int(classes[0]), int(classes[-1])) if classes else (0, -1)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise RnnlmError(f"{path}: corrupt tokenizer data ({_one_line(exc)})") from None
    if n != cfg.vocab_size:
        raise RnnlmError(f"{path}: damaged: the tokenizer has {n} tokens, the network {cfg.vocab_size}")
    if cfg.classes and (lo < 0 or hi >= cfg.classes):
        raise RnnlmError(f"{path}: damaged: the tokenizer's classes run from {lo} to {hi}, "
                         f"the network has {cfg.classes}")


def load_model(path: str) -> ModelFile:
    """Read a model file written by `save_model`; one-line RnnlmError on any problem.

    Nothing is ever unpickled: the file must be an .npz archive whose arrays load with
    allow_pickle=False; the metadata, the shapes, the tokenizer's size and the weights (finite)
    are checked against each other.
    """
    if not os.path.exists(path):
        raise RnnlmError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise RnnlmError(f"{path}: is a directory, expected a model file")
    data = _read_arrays(path)
    for key in ("params", "meta", "tokenizer"):
        if key not in data:
            raise RnnlmError(f"{path}: not an rnnlm model file (missing '{key}')")
    try:
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RnnlmError(f"{path}: corrupt metadata ({_one_line(exc)})") from None
    if not isinstance(meta, dict):
        raise RnnlmError(f"{path}: corrupt metadata (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise RnnlmError(f"{path}: not an rnnlm model file (format {str(meta.get('format'))[:40]!r})")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RnnlmError(f"{path}: corrupt metadata (format version {str(version)[:40]!r})")
    if version > FORMAT_VERSION:
        raise RnnlmError(f"{path}: written by a newer rnnlm (format version {version}); upgrade rnnlm")
    for key, typ in (("train", dict), ("history", list)):
        if not isinstance(meta.get(key, typ()), typ):
            raise RnnlmError(f"{path}: corrupt metadata ('{key}' is not a JSON {typ.__name__})")
    _check_config_types(path, meta.get("model"))
    try:
        cfg = ModelConfig.from_dict(meta["model"])
        params = Params(cfg, data["params"])
    except RnnlmError as exc:
        raise RnnlmError(f"{path}: damaged: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RnnlmError(f"{path}: corrupt model configuration ({_one_line(exc)})") from None
    with np.errstate(invalid="ignore", over="ignore"):   # NaN/inf propagate into the sum
        total = float(params.flat.sum(dtype=np.float64))
    if not math.isfinite(total):
        raise RnnlmError(f"{path}: damaged: the weights are not all finite (NaN or inf)")
    tok = bytes(data["tokenizer"])
    _check_tokenizer(path, cfg, tok)
    arrays = {k[len("state_"):]: v for k, v in data.items() if k.startswith("state_")}
    h0 = arrays.get("h0")
    if h0 is not None and (h0.shape != (cfg.hidden,) or h0.dtype.kind != "f" or not np.isfinite(h0).all()):
        raise RnnlmError(f"{path}: damaged: saved hidden state of shape {h0.shape} {h0.dtype}")
    tree = None
    if cfg.softmax == "hs":
        from rnnlm.model.huffman import tree_from_file
        tree = tree_from_file(path, cfg.vocab_size, arrays, meta)
    return ModelFile(cfg, params, tok, meta, arrays, tree)
