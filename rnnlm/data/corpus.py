"""Corpus splits from local text files or Hugging Face datasets, tokenised and cached on disk.

The tokenizer is built from the TRAIN split only. Each tokenised split is stored as a flat int32
``.npy`` array (``</s>`` after every line) in the cache dir (default ``~/.cache/rnnlm``, or
``$RNNLM_CACHE_DIR``), keyed by a fingerprint of the source (path, size, mtime_ns, sha256 of the
bytes; for hub datasets name, config, split and the dataset's own fingerprint), the reader and the
tokenizer bytes. The trained tokenizer is cached too, keyed by the train fingerprint and the
tokenizer settings. Files are written atomically (temp file + os.replace) and reused when the key
matches; anything else rebuilds them.

Example::

    >>> pc = prepare("train.txt", "valid.txt", tokenizer="word", num_classes=50)   # doctest: +SKIP
    >>> pc.tokenizer.num_classes, pc.splits["train"][:5], pc.stats["valid"].n_oov  # doctest: +SKIP
    (50, memmap([ 3, 17, 0, 5, 1], dtype=int32), 12)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.data.text import (STDIN, TextLines, atomic_write, atomic_write_bytes, check_text_bytes,
                          clean_lines, decode_lines, display_name, read_bytes)
from rnnlm.data.tokenizer import SentencePieceTokenizer, WordVocab, tokenizer_from_bytes

CACHE_VERSION = 1
SPLITS = ("train", "valid", "test")
HUB_SPLIT_NAMES = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}


def default_cache_dir() -> Path:
    """``$RNNLM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rnnlm`` or ``~/.cache/rnnlm``."""
    env = os.environ.get("RNNLM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnlm"


@dataclass
class SplitStats:
    """What ``prepare`` did for one split (all counts exclude skipped blank lines)."""
    name: str
    source: str
    n_lines: int
    n_blank: int
    n_tokens: int          # ids in the array, incl. one </s> per line
    n_oov: int             # unknown tokens met (mapped to <unk> or skipped, see oov_policy)
    n_unk_mapped: int
    oov_policy: str = ""
    cache_path: str = ""
    reused: bool = False


@dataclass
class PreparedCorpus:
    """Tokenizer + read-only int32 id arrays per split (``"train"``, ``"valid"``, ``"test"``)."""
    tokenizer: object
    splits: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    tokenizer_path: str = ""
    tokenizer_reused: bool = False

    def __getitem__(self, name: str) -> np.ndarray:
        return self.splits[name]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:40] or "x"


class _FileSource:
    """A local file (or stdin): validated bytes are read once; `reader` is "plain" or a builder."""

    def __init__(self, split: str, path, reader: str = "plain"):
        self.split, self.path, self.reader = split, str(path), reader
        self.display = display_name(path)
        self.data = read_bytes(path)
        fp = {"sha256": hashlib.sha256(self.data).hexdigest(), "size": len(self.data)}
        if self.path != STDIN:
            st = os.stat(path)
            fp.update(path=os.path.abspath(path), mtime_ns=st.st_mtime_ns)
        self.fingerprint = {"kind": "file", "reader": reader, **fp}
        self.stem = "stdin" if self.path == STDIN else Path(path).stem

    def load(self) -> TextLines:
        if self.reader == "plain":
            return decode_lines(self.data, self.display)
        if not self.data:
            raise RnnlmError(f"{self.display}: empty file")
        check_text_bytes(self.data, self.display)
        if self.path == STDIN:
            raise RnnlmError("--dataset cannot read standard input; give a file")
        # a throw-away HF cache: no stale arrow files when the source changes within a second
        with tempfile.TemporaryDirectory(prefix="rnnlm-hf-") as tmp:
            ds = _load_hf(self.reader, None, data_files={"train": os.path.abspath(self.path)},
                          split="train", cache_dir=tmp, keep_in_memory=True)
            return clean_lines(list(ds[_text_column(ds, self.reader)]), self.display)


class _HubSource:
    def __init__(self, split: str, name: str, config, ds):
        self.split, self.display, self.ds = split, f"{name}[{split}]", ds
        self.fingerprint = {"kind": "hub", "name": name, "config": config, "split": split,
                            "dataset": getattr(ds, "_fingerprint", None), "rows": ds.num_rows}
        self.stem = name.rsplit("/", 1)[-1] + (f"_{config}" if config else "")

    def load(self) -> TextLines:
        return clean_lines(self.ds[_text_column(self.ds, self.display)], self.display)


def _quiet_hf():
    import datasets
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # errors are reported by us
    try:
        import huggingface_hub
        huggingface_hub.utils.logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - older/newer hub versions
        pass


def _load_hf(name, config, **kw):
    try:
        import datasets
    except ImportError:
        raise RnnlmError("--dataset needs the `datasets` package (pip install datasets)") from None
    _quiet_hf()
    try:
        return datasets.load_dataset(name, config, **kw)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; report one line
        root = exc
        while root.__cause__ is not None and root.__cause__ is not root:
            root = root.__cause__
        msg = " ".join(str(root).split())[:200]
        raise RnnlmError(f"dataset {name}: cannot load ({type(root).__name__}: {msg})") from None


def _text_column(ds, name) -> str:
    cols = list(ds.column_names)
    for c in ("sentence", "text"):
        if c in cols:
            return c
    for c in cols:
        if getattr(ds.features[c], "dtype", None) in ("string", "large_string"):
            return c
    raise RnnlmError(f"{name}: no text column (columns: {', '.join(cols)})")


def hub_sources(name: str, config=None) -> dict:
    """Load a hub dataset (e.g. ``ptb_text_only``, ``wikitext``/``wikitext-2-raw-v1``) by split."""
    dd = _load_hf(name, config)
    out = {}
    for split, candidates in HUB_SPLIT_NAMES.items():
        for c in candidates:
            if c in dd:
                out[split] = _HubSource(split, name, config, dd[c])
                break
    if "train" not in out:
        raise RnnlmError(f"dataset {name}: no train split (has {', '.join(dd)})")
    return out


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))


def _load_npy(path: Path, n: int) -> np.ndarray:
    if n == 0:
        return np.load(path, allow_pickle=False)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _tokenizer_settings(kind, min_count, max_size, num_classes, class_mode, sp_vocab_size,
                        sp_model_type) -> dict:
    if kind == "word":
        return dict(kind=kind, min_count=min_count, max_size=max_size, num_classes=num_classes,
                    class_mode=class_mode)
    if kind == "sentencepiece":
        return dict(kind=kind, vocab_size=sp_vocab_size, model_type=sp_model_type,
                    num_classes=num_classes, class_mode=class_mode)
    raise RnnlmError(f"--tokenizer must be word or sentencepiece, got {kind!r}")


def build_tokenizer(lines, settings: dict, name: str = "training text"):
    """Build a tokenizer from training lines and a settings dict (see ``prepare``)."""
    s = dict(settings)
    kind = s.pop("kind")
    if kind == "word":
        return WordVocab.build(lines, name=name, **s)
    return SentencePieceTokenizer.train(lines, vocab_size=s["vocab_size"], model_type=s["model_type"],
                                        num_classes=s["num_classes"], class_mode=s["class_mode"],
                                        name=name)


def prepare(train=None, valid=None, test=None, *, dataset: str | None = None,
            dataset_config: str | None = None, tokenizer="word", min_count: int = 1,
            max_size: int | None = None, num_classes: int = 100, class_mode: str = "sqrt",
            sp_vocab_size: int = 8000, sp_model_type: str = "unigram", cache_dir=None,
            use_cache: bool = True) -> PreparedCorpus:
    """Read, tokenise and cache the splits; returns a :class:`PreparedCorpus`.

    Sources: local files (``-`` = stdin) read by the plain reader; with ``dataset="text"`` (or
    another `datasets` builder) the same files go through ``datasets.load_dataset``; with
    `dataset` a hub name and no files, the hub dataset's train/validation/test splits are used.
    `tokenizer` is ``"word"``, ``"sentencepiece"`` or an existing tokenizer object (then `train`
    is optional and only encoded). Arrays are read-only memory maps.

    >>> pc = prepare("train.txt", "valid.txt", cache_dir="/tmp/c")          # doctest: +SKIP
    >>> pc.stats["train"].reused, len(pc.tokenizer)                          # doctest: +SKIP
    (False, 10000)
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    given = {k: v for k, v in zip(SPLITS, (train, valid, test)) if v is not None}
    if sum(1 for v in given.values() if str(v) == STDIN) > 1:
        raise RnnlmError("only one split can be read from standard input (-)")
    if dataset and not given:
        sources = hub_sources(dataset, dataset_config)
    else:
        reader = dataset or "plain"
        sources = {k: _FileSource(k, v, reader) for k, v in given.items()}
    have_tok = not isinstance(tokenizer, str)
    if not have_tok and "train" not in sources:
        raise RnnlmError("a TRAIN split is needed to build the tokenizer")
    if use_cache:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RnnlmError(f"{cache}: cannot create cache dir: {exc.strerror or exc}") from None
    result = PreparedCorpus(tokenizer=tokenizer if have_tok else None)
    loaded: dict[str, TextLines] = {}

    def lines_of(split):
        if split not in loaded:
            loaded[split] = sources[split].load()
        return loaded[split]

    if not have_tok:
        settings = _tokenizer_settings(tokenizer, min_count, max_size, num_classes, class_mode,
                                       sp_vocab_size, sp_model_type)
        key = _digest({"v": CACHE_VERSION, "train": sources["train"].fingerprint, "tok": settings})
        tpath = cache / f"tok-{_safe(sources['train'].stem)}-{key[:16]}.json"
        tok = None
        if use_cache and tpath.is_file():
            try:
                tok = tokenizer_from_bytes(tpath.read_bytes())
                result.tokenizer_reused = True
            except (RnnlmError, OSError):
                tok = None
        if tok is None:
            tok = build_tokenizer(lines_of("train"), settings, sources["train"].display)
            if use_cache:
                atomic_write_bytes(tpath, tok.to_bytes())
        result.tokenizer = tok
        result.tokenizer_path = str(tpath) if use_cache else ""
    tok = result.tokenizer
    tok_fp = tok.fingerprint()
    for split, src in sources.items():
        key = _digest({"v": CACHE_VERSION, "src": src.fingerprint, "tok": tok_fp})
        base = cache / f"{split}-{_safe(src.stem)}-{key[:16]}"
        npy, meta_path = base.with_suffix(".npy"), base.with_suffix(".json")
        stats = None
        if use_cache and npy.is_file() and meta_path.is_file():
            try:
                stats = SplitStats(**json.loads(meta_path.read_text("utf-8")))
                arr = _load_npy(npy, stats.n_tokens)
                if arr.dtype != np.int32 or arr.ndim != 1 or len(arr) != stats.n_tokens:
                    raise ValueError("stale cache entry")
                if len(arr) and (int(arr.min()) < 0 or int(arr.max()) >= len(tok)):
                    print(f"rnnlm: note: {npy}: damaged cache (ids outside the vocabulary of "
                          f"{len(tok):,}); rebuilt from {src.display}", file=sys.stderr)
                    raise ValueError("damaged cache entry")
                stats.reused, stats.cache_path, stats.oov_policy = True, str(npy), tok.oov_policy
            except (OSError, ValueError, TypeError):
                stats = None
        if stats is None:
            lines = lines_of(split)
            enc = tok.encode_lines(lines)
            arr = enc.ids
            stats = SplitStats(split, src.display, enc.n_lines, lines.n_blank, enc.n_tokens,
                               enc.n_oov, enc.n_unk_mapped, tok.oov_policy,
                               str(npy) if use_cache else "", False)
            if use_cache:
                try:
                    _atomic_save_npy(npy, arr)
                    meta = {k: v for k, v in asdict(stats).items() if k != "reused"}
                    atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
                except OSError as exc:
                    raise RnnlmError(f"{cache}: cannot write cache: {exc.strerror or exc}") from None
                arr = _load_npy(npy, stats.n_tokens)
            else:
                arr.flags.writeable = False
        result.splits[split] = arr
        result.stats[split] = stats
    return result
