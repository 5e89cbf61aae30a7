"""WordVocab / SentencePieceTokenizer: ordering, classes, OOV policy, round trips."""
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlm.errors import RnnlmError
from rnnlm.data.tokenizer import (EOS, UNK, SentencePieceTokenizer, WordVocab, assign_classes,
                             load_tokenizer, save_tokenizer, tokenizer_from_bytes)


def zipf_lines(n_lines=3000, vocab=3000, seed=0):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1.0 / (i + 1) for i in range(vocab)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(3, 15))) for _ in range(n_lines)]


def english_lines(n=400, seed=1):
    rng = random.Random(seed)
    subj = ["the cat", "a dog", "my neighbour", "the old teacher", "our small robot", "she", "they"]
    verb = ["sees", "likes", "carried", "will paint", "is reading", "found", "remembers"]
    obj = ["the red ball", "a long letter", "three apples", "the river", "some music", "it"]
    tail = ["today", "again", "in the morning", "near the station", "", "quickly"]
    return [" ".join(x for x in (rng.choice(subj), rng.choice(verb), rng.choice(obj),
                                 rng.choice(tail)) if x) for _ in range(n)]


# ---------------------------------------------------------------- word vocabulary

def test_frequency_order_and_tie_break():
    v = WordVocab.build(["b a c", "a b", "d"], num_classes=0)
    # counts: a 2, b 2, </s> 3, c 1, d 1 -> </s>, then a/b by string, then c/d by string
    assert v.words == [EOS, "a", "b", "c", "d"]
    assert v.counts.tolist() == [3, 2, 2, 1, 1]
    assert v.counts.dtype == np.int64 and v.eos_id == 0 and v.unk_id is None
    assert len(v) == 5 and v.id_of("c") == 3
    with pytest.raises(KeyError):
        v.id_of("zzz")


def test_build_is_deterministic_regardless_of_line_order():
    lines = zipf_lines(500)
    a = WordVocab.build(lines, num_classes=10)
    b = WordVocab.build(list(reversed(lines)), num_classes=10)
    assert a.to_bytes() == b.to_bytes()


def test_min_count_and_max_size_map_to_unk():
    lines = ["a a a b b c", "a b d"]
    v = WordVocab.build(lines, min_count=2, num_classes=0)
    assert v.unk_id is not None and "c" not in v and "d" not in v
    assert v.counts[v.unk_id] == 2
    v = WordVocab.build(lines, max_size=3, num_classes=0)  # a, </s>, <unk>
    assert sorted(v.words) == sorted(["a", EOS, UNK]) and len(v) == 3
    assert v.counts[v.unk_id] == 5  # b b c b d
    assert int(v.counts.sum()) == 9 + 2  # 9 words + one </s> per line


def test_literal_unk_in_training_text_is_kept():
    v = WordVocab.build(["the <unk> sat", "the cat"], num_classes=0)
    assert v.unk_id is not None and v.counts[v.unk_id] == 1


def test_vocab_from_train_only_oov_policy():
    train = ["a b c", "a b"]
    v = WordVocab.build(train, num_classes=0)
    enc = v.encode_lines(["a zz b", "qq"])
    assert v.unk_id is None
    assert enc.n_oov == 2 and enc.n_unk_mapped == 0 and enc.n_skipped == 2
    assert enc.ids.tolist() == [v.id_of("a"), v.id_of("b"), v.eos_id, v.eos_id]
    assert enc.n_tokens == 4 and enc.n_lines == 2
    v2 = WordVocab.build(train, min_count=2, num_classes=0)  # c -> <unk>
    enc2 = v2.encode_lines(["a zz b"])
    assert enc2.ids.tolist() == [v2.id_of("a"), v2.unk_id, v2.id_of("b"), v2.eos_id]
    assert enc2.n_oov == 1 and enc2.n_unk_mapped == 1


def test_encode_decode_round_trip():
    lines = zipf_lines(200)
    v = WordVocab.build(lines, num_classes=5)
    enc = v.encode_lines(lines)
    assert enc.ids.dtype == np.int32 and enc.n_oov == 0
    assert v.decode(enc.ids) == "".join(ln + "\n" for ln in lines)
    assert v.encode("  w0\tw1  ").tolist() == [v.id_of("w0"), v.id_of("w1"), v.eos_id]
    assert v.encode_lines(["w0", "   ", ""]).n_lines == 1  # blank lines skipped


def test_bytes_round_trip_and_file(tmp_path):
    v = WordVocab.build(zipf_lines(300), min_count=2, max_size=200, num_classes=7,
                        class_mode="unigram")
    w = tokenizer_from_bytes(v.to_bytes())
    assert isinstance(w, WordVocab) and w.to_bytes() == v.to_bytes()
    assert w.words == v.words and (w.counts == v.counts).all() and (w.classes == v.classes).all()
    assert (w.class_starts == v.class_starts).all() and w.num_classes == v.num_classes
    assert (w.min_count, w.max_size, w.class_mode) == (2, 200, "unigram")
    save_tokenizer(v, tmp_path / "t.json")
    assert load_tokenizer(tmp_path / "t.json").to_bytes() == v.to_bytes()
    with pytest.raises(RnnlmError):
        tokenizer_from_bytes(b"\x00garbage")


def test_empty_vocabulary_after_min_count():
    with pytest.raises(RnnlmError, match="empty after --min-count 5"):
        WordVocab.build(["a b c", "d e"], min_count=5, name="train.txt")


# ---------------------------------------------------------------- classes

def test_assign_classes_hand_computed():
    counts = [50, 30, 10, 5, 5]
    assert assign_classes(counts, 2).tolist() == [0, 0, 1, 1, 1]
    assert assign_classes(counts, 3, "sqrt").tolist() == [0, 1, 1, 2, 2]
    assert assign_classes(counts, 3, "unigram").tolist() == [0, 1, 2, 2, 2]
    assert assign_classes(counts, 0).tolist() == [0] * 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=300), st.integers(1, 50),
       st.sampled_from(["sqrt", "unigram"]))
def test_classes_are_contiguous_ranges(counts, n, mode):
    counts = sorted(counts, reverse=True)
    c = assign_classes(counts, n, mode)
    assert c[0] == 0 and c[-1] < n
    assert set(np.diff(c).tolist()) <= {0, 1}


def test_class_starts_and_sqrt_balance_on_zipf():
    v = WordVocab.build(zipf_lines(), num_classes=20)
    assert v.num_classes == 20 and v.classes.dtype == np.int32
    starts = v.class_starts
    assert starts.dtype == np.int32 and len(starts) == 21 and starts[0] == 0 and starts[-1] == len(v)
    for c in range(v.num_classes):
        assert (v.classes[starts[c]:starts[c + 1]] == c).all()
    b = v.counts.sum()
    mass = np.sqrt(v.counts / b)
    share = np.array([mass[starts[c]:starts[c + 1]].sum() for c in range(20)]) / mass.sum()
    assert share.max() / share.min() < 3.0
    old = WordVocab.build(zipf_lines(), num_classes=20, class_mode="unigram")
    assert (old.classes != v.classes).any()
    assert old.class_sizes[-1] > v.class_sizes[-1]
    assert old.class_sizes[-3:].sum() > v.class_sizes[-3:].sum()


def test_fewer_classes_than_requested_and_no_classes():
    v = WordVocab.build(["a b c"], num_classes=100)
    assert v.num_classes <= len(v) and v.requested_classes == 100
    assert len(v.class_starts) == v.num_classes + 1
    f = WordVocab.build(["a b c"], num_classes=0)
    assert f.num_classes == 0 and f.class_starts.tolist() == [0, len(f)]
    assert (f.classes == 0).all()


# ---------------------------------------------------------------- sentencepiece

@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_train_bytes_reload(model_type):
    lines = english_lines()
    tok = SentencePieceTokenizer.train(lines, vocab_size=120, model_type=model_type, num_classes=8)
    assert tok.kind == "sentencepiece" and len(tok) <= 120
    assert tok.words[tok.eos_id] == EOS and tok.words[tok.unk_id] == UNK
    assert (np.diff(tok.counts) <= 0).all()           # ids by descending training frequency
    assert tok.counts[tok.eos_id] == len(lines)
    assert tok.class_starts[-1] == len(tok) and set(np.diff(tok.classes).tolist()) <= {0, 1}
    enc = tok.encode_lines(lines)
    assert enc.n_oov == 0 and enc.n_lines == len(lines)
    assert (enc.ids == tok.eos_id).sum() == len(lines)
    assert np.array_equal(np.bincount(enc.ids, minlength=len(tok)), tok.counts)
    again = tokenizer_from_bytes(tok.to_bytes())
    assert isinstance(again, SentencePieceTokenizer) and again.to_bytes() == tok.to_bytes()
    assert np.array_equal(again.encode_lines(lines).ids, enc.ids)
    assert tok.decode(enc.ids) == "".join(ln + "\n" for ln in lines)
    unseen = tok.encode_lines(["the cat sees Ω"])
    assert unseen.n_oov == 1 and tok.unk_id in unseen.ids.tolist()


def test_sentencepiece_is_deterministic():
    lines = english_lines(200, seed=3)
    a = SentencePieceTokenizer.train(lines, vocab_size=80, num_classes=4)
    b = SentencePieceTokenizer.train(lines, vocab_size=80, num_classes=4)
    assert a.to_bytes() == b.to_bytes()


def test_sentencepiece_errors():
    with pytest.raises(RnnlmError):
        SentencePieceTokenizer.train(["a b"], model_type="word")
    with pytest.raises(RnnlmError):
        SentencePieceTokenizer.train(["  ", ""])
    with pytest.raises(RnnlmError):
        WordVocab.from_bytes(SentencePieceTokenizer.train(english_lines(50), vocab_size=60).to_bytes())


def test_sqrt_mass_definition_matches_rnnlm():
    counts = [9, 4, 1]
    b = 14
    dd = sum(math.sqrt(c / b) for c in counts)
    first = math.sqrt(9 / b) / dd
    assert first > 0.4  # > 1/3 threshold with 3 classes -> word 0 alone in class 0
    assert assign_classes(counts, 3).tolist() == [0, 1, 2]
