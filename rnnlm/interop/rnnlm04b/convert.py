"""Converting between rnnlm-0.4b model files (rnnlm/interop/rnnlm04b/files.py reads and writes them) and our models.

`import_model` turns a file written by rnnlm-0.4b into a model marked `compat="rnnlm-0.4b"` (evaluated
with its own arithmetic, see rnnlm.kernels.rnnlm04b), or a file written by `export_model` back into the
native model it came from. `export_model` writes our models (sigmoid hidden layer, word vocabulary,
optional direct connections) for rnnlm-0.4b; biases ride on one extra hidden unit held at 1.0.
"""
from __future__ import annotations

import os

import numpy as np

from rnnlm.errors import RnnlmError
from rnnlm.interop.rnnlm04b.files import COMPAT, MARK, VERSION, Rnnlm04bModel, read_rnnlm04b, write_rnnlm04b


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
    from rnnlm.model.config import TrainConfig
    lr = h["alpha"] if h["alpha"] > 0 else (h["starting_alpha"] if h["starting_alpha"] > 0 else 0.1)
    return TrainConfig(lr=float(lr), bptt=max(1, h["bptt"] - 1), bptt_block=max(1, h["bptt_block"]),
                       independent=bool(h["independent"])).to_dict()


def import_model(path: str, mode: str = "auto"):
    """An rnnlm-0.4b file as our ModelFile. mode "rnnlm-0.4b": evaluated with rnnlm-0.4b's arithmetic
    and conventions; "native": our kernels (exact exp, OOV policy of the vocabulary); "auto": native
    for files written by `export_model` (restoring the model exactly), rnnlm-0.4b otherwise."""
    from rnnlm.model.config import ModelConfig
    from rnnlm.model.file import ModelFile, Params
    from rnnlm.data.tokenizer import WordVocab, assign_classes
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
    from rnnlm.data.tokenizer import WordVocab, assign_classes
    cfg, p, notes = mf.config, mf.params, []
    src = mf.meta.get("rnnlm04b", {})
    if cfg.softmax == "hs":
        raise RnnlmError("rnnlm-0.4b has no hierarchical softmax: an --softmax hs model cannot be exported")
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
