"""Corpus splits from local text files or Hugging Face datasets, tokenised and cached on disk.

The tokenizer is built from the TRAIN split only. Each tokenised split is stored as a flat int32
``.npy`` array (``</s>`` after every line) in the cache dir (default ``~/.cache/rnnlm``, or
``$RNNLM_CACHE_DIR``), keyed by a fingerprint of the source (path, size, mtime_ns and a sha256 of
16 sampled 64 KiB blocks, see ``rnnlm.data.idcache.file_fingerprint``; stdin: sha256 of all its bytes;
for hub datasets name, config, split and the dataset's own fingerprint), the reader and the
tokenizer bytes. The trained tokenizer is cached too, keyed by the train fingerprint and the
tokenizer settings. Files are written atomically (temp file + os.replace) and reused when the key
matches; anything else rebuilds them.

Local files are streamed (``rnnlm.data.stream.TextStream``): memory does not grow with the corpus. The
word tokenizer counts in one pass, SentencePiece trains on the first `input_sentence_size` lines and
counts its pieces in a second pass, and each split is then encoded and written chunk by chunk with
per-block checksums (``rnnlm.data.idcache``: when they are verified is described there). When a tokenizer
has to be built, the other splits are checked first, so a bad VALID fails before the long TRAIN pass.

Example::

    >>> pc = prepare("train.txt", "valid.txt", tokenizer="word", num_classes=50)   # doctest: +SKIP
    >>> pc.tokenizer.num_classes, pc.splits["train"][:5], pc.stats["valid"].n_oov  # doctest: +SKIP
    (50, memmap([ 3, 17, 0, 5, 1], dtype=int32), 12)
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.data.idcache import IdChecks, file_fingerprint, open_ids, write_ids
from rnnlm.data.stream import Progress, open_text
from rnnlm.data.text import (STDIN, TextLines, atomic_write_bytes, check_text_bytes, clean_lines,
                          display_name, read_bytes)
from rnnlm.data.tokenizer import SentencePieceTokenizer, WordVocab, tokenizer_from_bytes

CACHE_VERSION = 2   # 2: streamed .npy + block checksums in the sidecar, sampled text key
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
    checks: dict = field(default_factory=dict)   # split -> IdChecks (None when not cached)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.splits[name]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:40] or "x"


class _FileSource:
    """A local file (or stdin, copied to a temporary file first), streamed in chunks by the plain
    reader; `reader` other than "plain" is a `datasets` builder, which loads it into memory."""

    def __init__(self, split: str, path, reader: str = "plain"):
        self.split, self.path, self.reader = split, str(path), reader
        self.display = display_name(path)
        self.stem = "stdin" if self.path == STDIN else Path(path).stem
        self.text, self.tmp = open_text(path)          # missing / directory / empty: errors now
        if self.tmp is not None:                       # stdin: identified by its whole contents
            h = hashlib.sha256()
            with open(self.tmp, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            fp = {"sha256": h.hexdigest(), "size": self.text.size}
        else:
            fp = file_fingerprint(self.path)
        self.fingerprint = {"kind": "file", "reader": reader, **fp}
        self._loaded = None

    @property
    def n_blank(self) -> int:
        return self._loaded.n_blank if self._loaded is not None else self.text.n_blank

    def progress(self, verb: str) -> Progress | None:
        return self.text.progress(verb) if self.reader == "plain" else None

    def batches(self, progress=None):
        """Lists of non-blank lines, streamed (plain reader) or from the loaded dataset."""
        if self.reader == "plain":
            return self.text.batches(progress)
        return _list_batches(self.load())

    def validate(self) -> None:
        """One pass that only checks the text (so a bad file fails before long work starts)."""
        for _ in self.batches(self.progress("checking")):
            pass

    def load(self) -> TextLines:
        if self._loaded is not None:
            return self._loaded
        if self.path == STDIN:
            raise RnnlmError("--dataset cannot read standard input; give a file")
        data = read_bytes(self.path)
        if not data:
            raise RnnlmError(f"{self.display}: empty file")
        check_text_bytes(data, self.display)
        # a throw-away HF cache: no stale arrow files when the source changes within a second
        with tempfile.TemporaryDirectory(prefix="rnnlm-hf-") as tmp:
            ds = _load_hf(self.reader, None, data_files={"train": os.path.abspath(self.path)},
                          split="train", cache_dir=tmp, keep_in_memory=True)
            self._loaded = clean_lines(list(ds[_text_column(ds, self.reader)]), self.display)
        return self._loaded

    def close(self) -> None:
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def _list_batches(lines: TextLines, size: int = 1 << 14):
    for i in range(0, len(lines), size):
        yield lines[i:i + size]


class _HubSource:
    def __init__(self, split: str, name: str, config, ds):
        self.split, self.display, self.ds = split, f"{name}[{split}]", ds
        self.fingerprint = {"kind": "hub", "name": name, "config": config, "split": split,
                            "dataset": getattr(ds, "_fingerprint", None), "rows": ds.num_rows}
        self.stem = name.rsplit("/", 1)[-1] + (f"_{config}" if config else "")

        self._loaded = None

    @property
    def n_blank(self) -> int:
        return self.load().n_blank

    def progress(self, verb: str):
        return None

    def validate(self) -> None:
        self.load()

    def load(self) -> TextLines:
        if self._loaded is None:
            self._loaded = clean_lines(self.ds[_text_column(self.ds, self.display)], self.display)
        return self._loaded

    def batches(self, progress=None):
        return _list_batches(self.load())

    def close(self) -> None:
        pass


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


def _tokenizer_settings(kind, min_count, max_size, num_classes, class_mode, sp_vocab_size,
                        sp_model_type) -> dict:
    if kind == "word":
        return dict(kind=kind, min_count=min_count, max_size=max_size, num_classes=num_classes,
                    class_mode=class_mode)
    if kind == "sentencepiece":
        return dict(kind=kind, vocab_size=sp_vocab_size, model_type=sp_model_type,
                    num_classes=num_classes, class_mode=class_mode)
    raise RnnlmError(f"--tokenizer must be word or sentencepiece, got {kind!r}")


def build_tokenizer(lines, settings: dict, name: str = "training text", count_batches=None):
    """Build a tokenizer from training lines and a settings dict (see ``prepare``). `lines` may be
    a lazy iterator; `count_batches` (SentencePiece: a second pass over the text) see
    ``SentencePieceTokenizer.train``."""
    s = dict(settings)
    kind = s.pop("kind")
    if kind == "word":
        return WordVocab.build(lines, name=name, **s)
    return SentencePieceTokenizer.train(lines, vocab_size=s["vocab_size"], model_type=s["model_type"],
                                        num_classes=s["num_classes"], class_mode=s["class_mode"],
                                        name=name, count_batches=count_batches)


def _build_from_source(src, settings: dict):
    """Stream the training source through the tokenizer builder (with progress)."""
    if settings["kind"] == "word":
        lines = itertools.chain.from_iterable(src.batches(src.progress("counting words in")))
        return build_tokenizer(lines, settings, src.display)
    sample = itertools.chain.from_iterable(src.batches(src.progress("training SentencePiece on")))
    counting = _Lazy(lambda: src.batches(src.progress("counting pieces in")))
    return build_tokenizer(sample, settings, src.display, count_batches=counting)


class _Lazy:
    """An iterable that makes its iterator only when iterated (a second pass starts after the first)."""

    def __init__(self, make):
        self.make = make

    def __iter__(self):
        return iter(self.make())


def _encode_source(src, tok, npy: Path | None):
    """Encode a source batch by batch; write `npy` (chunk by chunk) or keep the ids in memory.
    Returns (ids array or None, IdChecks or None, counters)."""
    counts = {"n_lines": 0, "n_oov": 0, "n_unk_mapped": 0}
    progress = src.progress("encoding")

    def chunks():
        for batch in src.batches(progress):
            enc = tok.encode_lines(batch)
            counts["n_lines"] += enc.n_lines
            counts["n_oov"] += enc.n_oov
            counts["n_unk_mapped"] += enc.n_unk_mapped
            yield enc.ids

    try:
        if npy is None:
            parts = list(chunks())
            ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
            ids.flags.writeable = False
            return ids, None, counts
        return None, write_ids(npy, chunks()), counts
    finally:
        if progress is not None:
            progress.close()


def _reuse(npy: Path, meta_path: Path, src, tok):
    """A cached split if its files are there and sound, else None (with a note when damaged)."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        checks = IdChecks.from_json(meta.pop("checks"), str(npy), src.display)
        stats = SplitStats(**meta)
        if stats.n_tokens != checks.n:
            raise ValueError("stale cache entry")
        arr = open_ids(npy, checks)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        print(f"rnnlm: note: {npy}: damaged cache ({' '.join(str(exc).split())[:120]}); "
              f"rebuilding it from {src.display}", file=sys.stderr)
        return None
    stats.reused, stats.cache_path, stats.oov_policy = True, str(npy), tok.oov_policy
    return arr, checks, stats


def prepare(train=None, valid=None, test=None, *, dataset: str | None = None,
            dataset_config: str | None = None, tokenizer="word", min_count: int = 1,
            max_size: int | None = None, num_classes: int = 100, class_mode: str = "sqrt",
            sp_vocab_size: int = 8000, sp_model_type: str = "unigram", cache_dir=None,
            use_cache: bool = True) -> PreparedCorpus:
    """Read, tokenise and cache the splits; returns a :class:`PreparedCorpus`.

    Sources: local files (``-`` = stdin) streamed by the plain reader (bounded memory); with
    ``dataset="text"`` (or another `datasets` builder) the same files go through
    ``datasets.load_dataset``; with `dataset` a hub name and no files, the hub dataset's
    train/validation/test splits are used. `tokenizer` is ``"word"``, ``"sentencepiece"`` or an
    existing tokenizer object (then `train` is optional and only encoded). Arrays are read-only
    memory maps (in-memory arrays when `use_cache` is False); ``checks`` holds their block
    checksums (see ``rnnlm.data.idcache``).

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
        sources = {}
        try:
            for k, v in given.items():
                sources[k] = _FileSource(k, v, reader)
        except BaseException:
            for src in sources.values():
                src.close()
            raise
    try:
        return _prepare(sources, cache, tokenizer, use_cache, min_count, max_size, num_classes,
                        class_mode, sp_vocab_size, sp_model_type)
    finally:
        for src in sources.values():
            src.close()


def _prepare(sources, cache, tokenizer, use_cache, min_count, max_size, num_classes, class_mode,
             sp_vocab_size, sp_model_type) -> PreparedCorpus:
    have_tok = not isinstance(tokenizer, str)
    if not have_tok and "train" not in sources:
        raise RnnlmError("a TRAIN split is needed to build the tokenizer")
    if use_cache:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RnnlmError(f"{cache}: cannot create cache dir: {exc.strerror or exc}") from None
    result = PreparedCorpus(tokenizer=tokenizer if have_tok else None)
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
            for split, src in sources.items():   # a bad VALID/TEST fails before the long train pass
                if split != "train":
                    src.validate()
            tok = _build_from_source(sources["train"], settings)
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
        found = _reuse(npy, meta_path, src, tok) if use_cache else None
        if found is not None:
            arr, checks, stats = found
        else:
            arr, checks, c = _encode_source(src, tok, npy if use_cache else None)
            stats = SplitStats(split, src.display, c["n_lines"], src.n_blank,
                               checks.n if checks is not None else len(arr), c["n_oov"],
                               c["n_unk_mapped"], tok.oov_policy, str(npy) if use_cache else "", False)
            if use_cache:
                meta = {k: v for k, v in asdict(stats).items() if k != "reused"}
                meta["checks"] = checks.to_json()
                atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
                checks.source = src.display
                checks.verified[:] = True   # just written from the text
                try:
                    arr = open_ids(npy, checks)
                except (OSError, ValueError) as exc:
                    raise RnnlmError(f"{npy}: cannot read the cache just written: {exc}") from None
        result.splits[split] = arr
        result.stats[split] = stats
        result.checks[split] = checks
    return result
