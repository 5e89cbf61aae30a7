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
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from rnnlm.config import ModelConfig
from rnnlm.errors import RnnlmError
from rnnlm.textio import atomic_write

FORMAT = "rnnlm-numba"
FORMAT_VERSION = 1


def param_shapes(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the parameter blocks, in buffer order (see kernels.py for meaning)."""
    N, M, C = cfg.vocab_size, cfg.hidden, cfg.classes
    return [
        ("emb", (N, M)),
        ("rec", (M, M)),
        ("bh", (M,)),
        ("out_w", (N, M)),
        ("bo", (N,)),
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

    def block(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def zeros_like(self) -> "Params":
        return Params(self.cfg, np.zeros_like(self.flat))

    def copy(self) -> "Params":
        return Params(self.cfg, self.flat.copy())

    @classmethod
    def init(cls, cfg: ModelConfig, rng: np.random.Generator) -> "Params":
        """rnnlm-0.4b's initialisation: each weight is the sum of three uniforms on [-a, a] with
        a = init_scale; biases start at zero."""
        p = cls(cfg)
        a = cfg.init_scale
        for name in ("emb", "rec", "out_w", "cls_w"):
            blk = p.block(name)
            r = rng.uniform(-a, a, size=(3,) + blk.shape).sum(axis=0)
            blk[...] = r.astype(p.flat.dtype)
        return p


@dataclass
class ModelFile:
    """Everything a model file holds."""

    config: ModelConfig
    params: Params
    tokenizer_bytes: bytes
    meta: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


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


def load_model(path: str) -> ModelFile:
    """Read a model file written by `save_model`; one-line RnnlmError on any problem."""
    if not os.path.exists(path):
        raise RnnlmError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise RnnlmError(f"{path}: is a directory, expected a model file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise RnnlmError(f"{path}: not an rnnlm model file ({exc.__class__.__name__}: {exc})") from None
    for key in ("params", "meta", "tokenizer"):
        if key not in data:
            raise RnnlmError(f"{path}: not an rnnlm model file (missing '{key}')")
    try:
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RnnlmError(f"{path}: corrupt metadata ({exc})") from None
    if meta.get("format") != FORMAT:
        raise RnnlmError(f"{path}: not an rnnlm model file (format {meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise RnnlmError(f"{path}: written by a newer rnnlm (format version {meta['format_version']}); upgrade rnnlm")
    cfg = ModelConfig.from_dict(meta["model"])
    params = Params(cfg, data["params"])
    arrays = {k[len("state_"):]: v for k, v in data.items() if k.startswith("state_")}
    return ModelFile(cfg, params, bytes(data["tokenizer"]), meta, arrays)
