"""Text reading policy, prepare(), the on-disk cache and the `datasets` code path."""
import os
import random

import numpy as np
import pytest

from rnnlm.data.corpus import default_cache_dir, prepare
from rnnlm.errors import RnnlmError
from rnnlm.data.text import decode_lines, read_lines


def gen_text(n=300, seed=0, vocab=200):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1.0 / (i + 1) for i in range(vocab)]
    return "".join(" ".join(rng.choices(words, weights, k=rng.randint(2, 10))) + "\n"
                   for _ in range(n))


@pytest.fixture
def files(tmp_path):
    all_words = " ".join(f"w{i}" for i in range(200)) + "\n"
    (tmp_path / "train.txt").write_text(gen_text(299, 0) + all_words)
    (tmp_path / "valid.txt").write_text(gen_text(50, 1) + "\n   \nonlyintest w0\n")
    (tmp_path / "test.txt").write_text(gen_text(50, 2))
    return tmp_path


# ---------------------------------------------------------------- reading

def test_read_lines_policy(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbf a  b \r\n\r\n\t\nc\rd\n\ne")
    lines = read_lines(p)
    assert list(lines) == ["a  b", "c", "d", "e"] and lines.n_blank == 3
    assert lines.source == str(p)


@pytest.mark.parametrize("data, msg", [
    (b"", "empty file"),
    (b" \n\t\r\n\n", "all 3 lines are blank"),
    (b"hello world\n\xff\xfe", "not UTF-8 at byte 12"),
    (b"ok\n\xc3(", "not UTF-8 at byte 3"),
    (b"abc\x00def\n", "NUL byte at byte 3"),
])
def test_bad_bytes(data, msg):
    with pytest.raises(RnnlmError, match=msg):
        decode_lines(data, "train.txt")


def test_missing_and_directory(tmp_path):
    with pytest.raises(RnnlmError, match="no such file"):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(RnnlmError, match="is a directory"):
        read_lines(tmp_path)


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLM_CACHE_DIR", str(tmp_path / "cc"))
    assert default_cache_dir() == tmp_path / "cc"
    monkeypatch.delenv("RNNLM_CACHE_DIR")
    assert default_cache_dir().name == "rnnlm"


# ---------------------------------------------------------------- prepare + cache

def test_prepare_splits_and_oov(files):
    pc = prepare(files / "train.txt", files / "valid.txt", files / "test.txt",
                 cache_dir=files / "c", num_classes=10)
    tok = pc.tokenizer
    assert set(pc.splits) == {"train", "valid", "test"}
    for name, arr in pc.splits.items():
        assert arr.dtype == np.int32 and arr.ndim == 1 and arr.max() < len(tok)
        assert np.array_equal(np.load(pc.stats[name].cache_path, mmap_mode="r"), arr)
    assert "onlyintest" not in tok and tok.unk_id is None      # built from train only
    v = pc.stats["valid"]
    assert v.n_oov == 1 and v.n_unk_mapped == 0 and v.n_blank == 2 and v.n_lines == 51
    assert v.n_tokens == len(pc["valid"]) and "skipped" in v.oov_policy
    assert (pc["train"] == tok.eos_id).sum() == pc.stats["train"].n_lines == 300
    # with <unk> in the vocabulary the test-only word maps to it
    pc2 = prepare(files / "train.txt", files / "valid.txt", cache_dir=files / "c", min_count=2)
    assert pc2.tokenizer.unk_id is not None
    v2 = pc2.stats["valid"]
    assert v2.n_oov >= 1 and v2.n_unk_mapped == v2.n_oov and "<unk>" in v2.oov_policy
    assert v2.n_tokens == v.n_tokens + v.n_oov


def test_cache_reused_and_rebuilt_on_change(files):
    kw = dict(cache_dir=files / "c", num_classes=5)
    a = prepare(files / "train.txt", files / "valid.txt", **kw)
    assert not a.stats["train"].reused and not a.tokenizer_reused
    mtime = os.stat(a.stats["train"].cache_path).st_mtime_ns
    b = prepare(files / "train.txt", files / "valid.txt", **kw)
    assert b.stats["train"].reused and b.stats["valid"].reused and b.tokenizer_reused
    assert b.stats["valid"].n_blank == 2 and b.stats["valid"].n_oov == 1  # stats survive reuse
    assert os.stat(b.stats["train"].cache_path).st_mtime_ns == mtime
    assert np.array_equal(a["train"], b["train"])
    # rewrite valid with other content: valid rebuilt, train reused
    (files / "valid.txt").write_text(gen_text(40, 9))
    c = prepare(files / "train.txt", files / "valid.txt", **kw)
    assert c.stats["train"].reused and not c.stats["valid"].reused
    assert c.stats["valid"].n_lines == 40
    # rewrite train: tokenizer and every split rebuilt
    (files / "train.txt").write_text(gen_text(310, 5))
    d = prepare(files / "train.txt", files / "valid.txt", **kw)
    assert not d.tokenizer_reused and not d.stats["train"].reused and not d.stats["valid"].reused
    assert d.stats["train"].n_lines == 310
    # tokenizer settings change -> rebuilt; back to the old settings -> reused
    e = prepare(files / "train.txt", files / "valid.txt", cache_dir=files / "c", num_classes=5,
                min_count=2)
    assert not e.tokenizer_reused and not e.stats["train"].reused
    f = prepare(files / "train.txt", files / "valid.txt", **kw)
    assert f.tokenizer_reused and f.stats["train"].reused


def test_corrupt_cache_entry_is_rebuilt(files):
    a = prepare(files / "train.txt", cache_dir=files / "c")
    expected, path = np.array(a["train"]), a.stats["train"].cache_path
    del a  # drop the memory map before truncating its file in place
    with open(path, "wb") as fh:
        fh.write(b"junk")
    b = prepare(files / "train.txt", cache_dir=files / "c")
    assert not b.stats["train"].reused and np.array_equal(expected, b["train"])


def test_crlf_and_blank_lines_give_same_ids(files):
    lf = (files / "train.txt").read_text()
    (files / "crlf.txt").write_bytes(lf.replace("\n", "\r\n\r\n  \r\n").encode())
    a = prepare(files / "train.txt", cache_dir=files / "c")
    b = prepare(files / "crlf.txt", cache_dir=files / "c")
    assert np.array_equal(a["train"], b["train"])
    assert a.tokenizer.to_bytes() == b.tokenizer.to_bytes()
    assert b.stats["train"].n_blank == 2 * 300


def test_datasets_path_matches_plain_reader(files):
    crlf = (files / "valid.txt").read_text().replace("\n", "\r\n")
    (files / "valid_crlf.txt").write_bytes(crlf.encode())
    plain = prepare(files / "train.txt", files / "valid_crlf.txt", cache_dir=files / "c",
                    num_classes=5)
    hf = prepare(files / "train.txt", files / "valid_crlf.txt", cache_dir=files / "c",
                 num_classes=5, dataset="text")
    assert not hf.stats["train"].reused  # a different reader is a different cache key
    assert hf.tokenizer.to_bytes() == plain.tokenizer.to_bytes()
    for k in ("train", "valid"):
        assert np.array_equal(hf[k], plain[k])
        assert hf.stats[k].n_blank == plain.stats[k].n_blank
        assert hf.stats[k].n_oov == plain.stats[k].n_oov


def test_sentencepiece_prepare_and_given_tokenizer(files):
    pc = prepare(files / "train.txt", files / "valid.txt", cache_dir=files / "c",
                 tokenizer="sentencepiece", sp_vocab_size=100, num_classes=6)
    assert pc.tokenizer.kind == "sentencepiece" and pc.tokenizer.num_classes <= 6
    again = prepare(files / "train.txt", files / "valid.txt", cache_dir=files / "c",
                    tokenizer="sentencepiece", sp_vocab_size=100, num_classes=6)
    assert again.tokenizer_reused and again.stats["valid"].reused
    assert again.tokenizer.to_bytes() == pc.tokenizer.to_bytes()
    # an existing tokenizer only encodes (no TRAIN needed)
    only = prepare(None, None, files / "test.txt", tokenizer=pc.tokenizer, use_cache=False)
    assert list(only.splits) == ["test"] and only.stats["test"].cache_path == ""
    assert np.array_equal(only["test"], pc.tokenizer.encode_lines(read_lines(files / "test.txt")).ids)


def test_prepare_errors(files):
    with pytest.raises(RnnlmError, match="TRAIN"):
        prepare(None, files / "valid.txt", cache_dir=files / "c")
    with pytest.raises(RnnlmError, match="--tokenizer"):
        prepare(files / "train.txt", cache_dir=files / "c", tokenizer="chars")
    with pytest.raises(RnnlmError, match="cannot load"):
        prepare(files / "train.txt", cache_dir=files / "c", dataset="json")  # not JSON lines


def test_dataset_directory_like_a_hub_dataset(files, monkeypatch):
    """A local dataset dir goes through the hub code path (split names, `sentence` column)."""
    import json

    import datasets
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", files / "hf")  # keep ~/.cache clean
    d = files / "ds"
    d.mkdir()
    for split, name in (("train", "train"), ("valid", "validation"), ("test", "test")):
        rows = (files / f"{split}.txt").read_text().split("\n")
        with open(d / f"{name}.jsonl", "w") as fh:
            for i, r in enumerate(rows):
                fh.write(json.dumps({"idx": i, "sentence": r}) + "\n")
    hub = prepare(dataset=str(d), cache_dir=files / "c", num_classes=5)
    plain = prepare(files / "train.txt", files / "valid.txt", files / "test.txt",
                    cache_dir=files / "c", num_classes=5)
    assert set(hub.splits) == {"train", "valid", "test"}
    assert hub.tokenizer.to_bytes() == plain.tokenizer.to_bytes()
    for k in plain.splits:
        assert np.array_equal(hub[k], plain[k])
    assert hub.stats["valid"].source.endswith("[valid]")
    again = prepare(dataset=str(d), cache_dir=files / "c", num_classes=5)
    assert again.tokenizer_reused and again.stats["train"].reused
