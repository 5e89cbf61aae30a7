"""The streaming data path: chunked text reading, the checksummed id cache, bounded memory,
training straight from the memory map."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from rnnlm.data import idcache as idcache
from rnnlm.data.windows import Streams, inputs_targets, shifted, streams, window, windows
from rnnlm.cli.app import main
from rnnlm.data.corpus import prepare
from rnnlm.errors import RnnlmError
from rnnlm.data.stream import TextStream
from rnnlm.data.text import decode_lines


def zipf_text(path, n_tokens, n_types=5000, seed=0):
    """A Zipf text of `n_tokens` tokens (fixed-width words, about 12 per line), written fast."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, n_types + 1))
    cdf /= cdf[-1]
    table = np.frombuffer(b"".join(b"w%05d " % i for i in range(n_types)), np.uint8).reshape(n_types, 7)
    with open(path, "wb") as fh:
        for a in range(0, n_tokens, 1 << 21):
            m = min(1 << 21, n_tokens - a)
            rows = table[np.searchsorted(cdf, rng.random(m))]
            rows[rng.random(m) < 1 / 12, 6] = ord("\n")
            rows[-1, 6] = ord("\n")
            fh.write(rows.tobytes())
    return str(path)


# ---------------------------------------------------------------- reading

def test_stream_reader_matches_whole_file_reader(tmp_path):
    """Same lines, blank count and one-line errors (with byte offsets) as textio.decode_lines,
    whatever the chunk size (blocks split lines, CRLF pairs and UTF-8 sequences anywhere)."""
    rng = random.Random(3)
    alpha = [b"a", b"b", b" ", b"\n", b"\r", b"\r\n", b"\t", "\u00e9".encode(), "\u20ac".encode(),
             b"\xff", b"\x00", b"\xef\xbb\xbf", b"\xc3"]
    p = tmp_path / "t.txt"
    for _ in range(1500):
        data = (b"\xff\xfe" if rng.random() < 0.03 else b"") + b"".join(
            rng.choice(alpha[:10] if rng.random() < 0.7 else alpha) for _ in range(rng.randint(0, 30)))
        p.write_bytes(data)
        try:
            ref = decode_lines(data, "x")
            expected = ("ok", list(ref), ref.n_blank)
        except RnnlmError as exc:
            expected = ("error", str(exc))
        for chunk in (1, 2, 5, 1 << 20):
            try:
                ts = TextStream(p, "x", chunk_bytes=chunk)
                got = ("ok", list(ts.lines()), ts.n_blank)
            except RnnlmError as exc:
                got = ("error", str(exc))
            assert got == expected, (data, chunk)


def test_plain_progress_lines_when_not_a_terminal(tmp_path, monkeypatch, capsys):
    path = zipf_text(tmp_path / "t.txt", 20_000)
    monkeypatch.setenv("RNNLM_PROGRESS_SECONDS", "0")
    assert main(["prepare", path, "--cache-dir", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith(f"rnnlm: counting words in {path}: ") and "%" in ln for ln in err), err
    assert any(ln.startswith(f"rnnlm: encoding {path}: ") for ln in err), err
    monkeypatch.delenv("RNNLM_PROGRESS_SECONDS")
    assert main(["prepare", path, "--cache-dir", str(tmp_path / "c2")]) == 0
    assert capsys.readouterr().err == ""     # short jobs print nothing


# ---------------------------------------------------------------- bounded memory

def _peak_rss_kb(tmp_path, text, tag):
    code = ("import resource, sys\nfrom rnnlm.cli.app import main\n"
            f"rc = main(['prepare', {text!r}, '--cache-dir', {str(tmp_path / tag)!r}])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


def test_prepare_memory_does_not_grow_with_the_corpus(tmp_path):
    """`rnnlm prepare` on 2M and 20M tokens: peak RSS within 1.3x (the whole-text reader needed
    about 20 bytes a token: +360 MB for the larger text)."""
    small = zipf_text(tmp_path / "small.txt", 2_000_000)
    large = zipf_text(tmp_path / "large.txt", 20_000_000)
    rss_small = _peak_rss_kb(tmp_path, small, "c1")
    os.unlink(small)
    rss_large = _peak_rss_kb(tmp_path, large, "c2")
    print(f"peak RSS of prepare: 2M tokens {rss_small / 1024:.0f} MB, 20M tokens {rss_large / 1024:.0f} MB")
    assert rss_large <= 1.3 * rss_small


# ---------------------------------------------------------------- the id cache

def test_cache_file_is_a_plain_npy_with_block_checksums(tmp_path, monkeypatch):
    monkeypatch.setattr(idcache, "BLOCK", 1000)
    path = zipf_text(tmp_path / "t.txt", 30_000)
    pc = prepare(path, cache_dir=tmp_path / "c")
    npy = pc.stats["train"].cache_path
    arr = np.load(npy, allow_pickle=False)
    assert arr.dtype == np.int32 and np.array_equal(arr, pc["train"])
    assert isinstance(pc["train"], np.memmap) and not pc["train"].flags.writeable
    side = json.loads(open(os.path.splitext(npy)[0] + ".json").read())["checks"]
    assert side["n"] == len(arr) and side["block"] == 1000 and len(side["crc32"]) == -(-len(arr) // 1000)
    assert side["crc32"] == idcache.checks_for_array(arr, 1000).crc32


def test_changed_text_of_same_size_and_mtime_is_rebuilt(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b c\nb c d\n")
    first = prepare(path, cache_dir=tmp_path / "c")
    st = os.stat(path)
    path.write_text("a b c\nb c c\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = prepare(path, cache_dir=tmp_path / "c")
    assert not again.stats["train"].reused and not np.array_equal(first["train"], again["train"])


def _flip(path, at):
    with open(path, "r+b") as fh:
        fh.seek(at)
        b = fh.read(1)
        fh.seek(at)
        fh.write(bytes([b[0] ^ 0x01]))


def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, capsys):
    """Same size, one changed bit in the ids: the next run notices (checksums) and rebuilds."""
    path = zipf_text(tmp_path / "t.txt", 50_000)
    a = prepare(path, cache_dir=tmp_path / "c")
    expected, npy = np.array(a["train"]), a.stats["train"].cache_path
    del a
    size = os.path.getsize(npy)
    _flip(npy, size - 4 * 20_000)
    assert os.path.getsize(npy) == size
    b = prepare(path, cache_dir=tmp_path / "c")
    assert not b.stats["train"].reused and np.array_equal(b["train"], expected)
    err = capsys.readouterr().err
    assert "damaged cache" in err and "fails its checksum" in err and "rebuilding it from" in err
    c = prepare(path, cache_dir=tmp_path / "c")
    assert c.stats["train"].reused


def test_corruption_outside_the_sampled_blocks_stops_training(tmp_path, monkeypatch, capsys):
    """A large cache is sampled when opened; training verifies every other block before using
    it: a flipped byte there is a one-line error (the entry is removed), never silent training."""
    monkeypatch.setattr(idcache, "BLOCK", 512)
    monkeypatch.setattr(idcache, "FULL_CHECK_BLOCKS", 2)
    monkeypatch.setattr(idcache, "SAMPLE_BLOCKS", 1)
    train = zipf_text(tmp_path / "train.txt", 20_000, n_types=300)
    valid = zipf_text(tmp_path / "valid.txt", 2_000, n_types=300, seed=1)
    args = ["train", "--train", train, "--valid", valid, "--model", str(tmp_path / "m.rnnlm"), "--force",
            "--hidden", "8", "--classes", "5", "--max-epochs", "1", "--cache-dir", str(tmp_path / "c"),
            "--schedule", "batch", "--batch-size", "4"]
    pc = prepare(train, cache_dir=tmp_path / "c", num_classes=5)
    npy, nb = pc.stats["train"].cache_path, pc.checks["train"].n_blocks
    del pc
    hidden = [k for k in range(nb) if k not in idcache.blocks_checked_at_open(nb)]
    assert hidden, nb
    _flip(npy, idcache.HEADER_BYTES + 4 * (hidden[len(hidden) // 2] * 512 + 7))
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "damaged id cache (block" in err[0] and "fails its checksum" in err[0], err
    assert not os.path.exists(npy)
    assert main(args) == 0     # rebuilt from the text


# ---------------------------------------------------------------- training from the memory map

def test_windows_cut_from_the_ids_equal_the_copied_streams():
    rng = np.random.default_rng(0)
    for n, B in ((1000, 7), (50, 1), (33, 33), (101, 3)):
        ids = rng.integers(0, 50, n).astype(np.int32)
        ids.flags.writeable = False
        xs, ys, dropped = streams(ids, 9, B)
        st = Streams(ids, 9, B)
        assert st.dropped == dropped and st.L == xs.shape[1]
        for s in range(0, st.L, 3):
            for T in (1, 2, 4):
                for got, want in zip(st.window(s, T), window(xs, ys, s, T)):
                    assert np.array_equal(got, want) and got.flags.writeable
                c = (st.L - s) // T
                if c:
                    for got, want in zip(st.windows(s, c, T), windows(xs, ys, s, c, T)):
                        assert np.array_equal(got, want) and got.flags.c_contiguous
        x, y = inputs_targets(ids, 9)
        for a in range(0, n, 5):
            got = shifted(ids, 9, a, a + 13)
            assert np.array_equal(got[0], x[a:a + 13]) and np.array_equal(got[1], y[a:a + 13])


def test_trainer_reads_the_memory_map_without_copying(tmp_path):
    from rnnlm.model.config import ModelConfig, TrainConfig
    from rnnlm.training.loop import Trainer
    path = zipf_text(tmp_path / "t.txt", 5_000, n_types=100)
    pc = prepare(path, path, cache_dir=tmp_path / "c", num_classes=5)
    tok = pc.tokenizer
    t = Trainer(ModelConfig(vocab_size=len(tok), hidden=4, classes=tok.num_classes),
                TrainConfig(lr=0.1, max_epochs=1), tok, pc["train"], pc["valid"], str(tmp_path / "m"),
                log=lambda s: None, checks=(pc.checks["train"], pc.checks["valid"]))
    assert np.shares_memory(t.train_ids, pc["train"]) and np.shares_memory(t.valid_ids, pc["valid"])


def test_ensure_covers_the_id_before_each_stream():
    """A window's inputs start one id before each stream's first target: that id's block is
    verified too (here it is the only damaged one)."""
    arr = np.arange(100, dtype=np.int32)
    checks = idcache.checks_for_array(arr, 10)
    checks.verified[:] = False
    arr[19] += 1                                       # block 1; stream 1 starts at 20
    with pytest.raises(RnnlmError, match="block 1 of 10 fails its checksum"):
        checks.ensure(arr, -1, 4, starts=[0, 20, 40])
    checks.verified[:] = False
    checks.ensure(arr, 0, 4, starts=[0, 20, 40])       # targets only: blocks 0, 2, 4 are sound
    assert checks.verified.tolist() == [True, False, True, False, True] + [False] * 5
