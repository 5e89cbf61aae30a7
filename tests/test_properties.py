"""Property tests (hypothesis): tokenizer round trips, and the model-file loaders fed with random
bytes and random mutations of valid files (they must load or raise RnnlmError, nothing else).

Derandomized (fixed examples every run) with modest example counts, so the module runs in seconds.
"""
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlm.model.config import ModelConfig
from rnnlm.errors import RnnlmError
from rnnlm.model.file import ModelFile, Params, load_model, save_model
from rnnlm.data.tokenizer import EOS, SentencePieceTokenizer, WordVocab, tokenizer_from_bytes

SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ tokenizers

# words: no whitespace (str.split's notion), no control/surrogate characters, not the boundary token
WORD = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=8) \
    .filter(lambda w: w != EOS and not any(c.isspace() for c in w))
LINES = st.lists(st.lists(WORD, min_size=1, max_size=6), min_size=1, max_size=12)
SEP = st.sampled_from([" ", "  ", "\t", " \t "])


def same_vocab(a, b):
    assert a.words == b.words and a.counts.tolist() == b.counts.tolist()
    assert a.classes.tolist() == b.classes.tolist() and a.class_starts.tolist() == b.class_starts.tolist()
    assert (a.num_classes, a.unk_id, a.eos_id, a.oov_policy) == (b.num_classes, b.unk_id, b.eos_id, b.oov_policy)


@settings(max_examples=60, **SETTINGS)
@given(lines=LINES, sep=SEP, min_count=st.integers(1, 3), classes=st.integers(0, 6),
       mode=st.sampled_from(["sqrt", "unigram"]), max_size=st.one_of(st.none(), st.integers(3, 12)))
def test_word_vocab_bytes_round_trip(lines, sep, min_count, classes, mode, max_size):
    text = [sep.join(ws) for ws in lines]
    try:
        tok = WordVocab.build(text, min_count=min_count, max_size=max_size, num_classes=classes, class_mode=mode)
    except RnnlmError as exc:           # every word below --min-count: the one expected refusal
        assert "vocabulary is empty" in str(exc)
        return
    data = tok.to_bytes()
    back = tokenizer_from_bytes(data)
    same_vocab(tok, back)
    assert back.to_bytes() == data and WordVocab.from_bytes(data).fingerprint() == tok.fingerprint()
    # every token is counted once: the counts sum to the words plus one </s> per line
    assert int(tok.counts.sum()) == sum(len(ws) + 1 for ws in lines)
    enc = back.encode_lines(text)
    assert enc.n_tokens == len(enc.ids) and enc.n_lines == len(lines)
    assert enc.n_oov == sum(1 for ws in lines for w in ws if w not in tok)


@settings(max_examples=60, **SETTINGS)
@given(lines=LINES, sep=SEP)
def test_word_vocab_encode_decode_in_vocabulary(lines, sep):
    tok = WordVocab.build([" ".join(ws) for ws in lines], num_classes=3)
    text = [sep + sep.join(ws) + sep for ws in lines]          # any whitespace between and around
    enc = tok.encode_lines(text)
    assert enc.n_oov == 0 and int((enc.ids == tok.eos_id).sum()) == len(lines)
    assert tok.decode(enc.ids) == "".join(" ".join(ws) + "\n" for ws in lines)
    assert tok.decode(tok.encode(text[0])) == " ".join(lines[0]) + "\n"


@pytest.mark.parametrize("change", [
    dict(counts=[10**30, 1]), dict(classes=[0, 10**30]), dict(counts=[float("inf"), 1]),
    dict(words=["</s>", 5]), dict(words=["</s>", "a", "a"], counts=[1, 1, 1], classes=[0, 0, 0]),
    dict(words=["</s>", ["a"]]), dict(classes=[1, 0]), dict(words=["a", "b"]), dict(kind="bpe"), dict(version=2)])
def test_tokenizer_data_crafted_values_refused(change):
    h = dict(format="rnnlm-tokenizer", version=1, kind="word", words=["</s>", "a"], counts=[2, 1],
             classes=[0, 0], requested_classes=1, class_mode="sqrt")
    tokenizer_from_bytes(json.dumps(h).encode())
    h.update(change)
    with pytest.raises(RnnlmError, match="^tokenizer data: "):
        tokenizer_from_bytes(json.dumps(h).encode())
    with pytest.raises(RnnlmError, match="^tokenizer data: "):
        tokenizer_from_bytes(b"[" * 100_000)      # nested too deep for the JSON parser


SP_WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "bird", "flew", "over", "house", "ran"]


@pytest.fixture(scope="module")
def sp_tok():
    pytest.importorskip("sentencepiece")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(SP_WORDS, size=int(rng.integers(2, 9)))) for _ in range(400)]
    return SentencePieceTokenizer.train(lines, vocab_size=40, model_type="unigram", num_classes=4)


def test_sentencepiece_bytes_round_trip(sp_tok):
    back = tokenizer_from_bytes(sp_tok.to_bytes())
    same_vocab(sp_tok, back)
    assert back.to_bytes() == sp_tok.to_bytes() and back.model_bytes == sp_tok.model_bytes


@settings(max_examples=40, **SETTINGS)
@given(lines=st.lists(st.lists(st.sampled_from(SP_WORDS), min_size=1, max_size=8), min_size=1, max_size=6))
def test_sentencepiece_encode_decode(sp_tok, lines):
    text = [" ".join(ws) for ws in lines]
    enc = sp_tok.encode_lines(text)
    assert enc.n_oov == 0 and int((enc.ids == sp_tok.eos_id).sum()) == len(lines)
    assert sp_tok.decode(enc.ids) == "".join(t + "\n" for t in text)


# ------------------------------------------------------------------ model files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid small model file (random weights, no training needed), its arrays, and the same
    model exported in rnnlm-0.4b's text and binary formats."""
    from rnnlm.use.evaluate import load_for_eval
    from rnnlm.interop.rnnlm04b.convert import export_model
    d = tmp_path_factory.mktemp("props")
    tok = WordVocab.build(["the cat sat", "the dog ran", "a cat ran", "the bird sat"], num_classes=3)
    cfg = ModelConfig(vocab_size=len(tok), hidden=3, classes=tok.num_classes)
    params = Params.init(cfg, np.random.default_rng(0))
    path = d / "m.rnnlm"
    save_model(str(path), ModelFile(cfg, params, tok.to_bytes(), {"train": {}, "history": []}))
    mf, tok2, _, _ = load_for_eval(str(path))
    out = {"npz": path.read_bytes()}
    for name, binary in (("text", False), ("binary", True)):
        export_model(mf, tok2, str(d / name), binary=binary)
        out[name] = (d / name).read_bytes()
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return dict(dir=d, raw=out, arrays=arrays)


class Outcome:
    loaded = refused = 0


def load_or_refuse(path, sentence="the cat sat"):
    """Load `path` as `rnnlm eval` does; a model that loads is also used once. Returns True if loaded.
    Anything but RnnlmError propagates (and fails the test)."""
    from rnnlm.use.api import LanguageModel
    try:
        m = LanguageModel(str(path))
    except RnnlmError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, msg
        Outcome.refused += 1
        return False
    try:
        lp = m.score(sentence)
    except RnnlmError:
        lp = 0.0
    assert isinstance(lp, float)
    Outcome.loaded += 1
    return True


@settings(max_examples=60, **SETTINGS)
@given(data=st.binary(max_size=600))
def test_loader_random_bytes(files, data):
    path = files["dir"] / "random.bin"
    path.write_bytes(data)
    load_or_refuse(path)
    load_or_refuse_model(path)


@settings(max_examples=60, **SETTINGS)
@given(data=st.binary(max_size=300))
def test_loader_random_bytes_with_magic(files, data):
    """Random bytes behind the magic numbers the loaders dispatch on."""
    for magic in (b"PK\x03\x04", b"\x93NUMPY", b"version: 10\n"):
        path = files["dir"] / "magic.bin"
        path.write_bytes(magic + data)
        load_or_refuse(path)


def load_or_refuse_model(path):
    try:
        load_model(str(path))
    except RnnlmError:
        pass


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                        min_size=1, max_size=4)),
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("insert"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8))),
    st.tuples(st.just("delete"), st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 64))),
)


def mutate(data: bytes, mutation) -> bytes:
    kind, arg = mutation
    b = bytearray(data)
    if kind == "flip":
        for at, x in arg:
            b[int(at * len(b))] ^= x
    elif kind == "cut":
        del b[int(arg * len(b)):]
    elif kind == "insert":
        at = int(arg[0] * len(b))
        b[at:at] = arg[1]
    else:
        at = int(arg[0] * len(b))
        del b[at:at + arg[1]]
    return bytes(b)


@settings(max_examples=120, **SETTINGS)
@given(which=st.sampled_from(["npz", "text", "binary"]), mutation=MUTATION)
def test_loader_mutated_file(files, which, mutation):
    """Byte flips, truncations, insertions and deletions anywhere in a valid file (zip headers,
    CRCs, .npy headers, JSON, weights; rnnlm-0.4b header, vocabulary, weights)."""
    path = files["dir"] / f"mutated.{which}"
    path.write_bytes(mutate(files["raw"][which], mutation))
    load_or_refuse(path)


def resave(files, name, arrays):
    path = files["dir"] / name
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


@settings(max_examples=120, **SETTINGS)
@given(key=st.sampled_from(["meta", "tokenizer", "params"]), mutation=MUTATION)
def test_loader_mutated_array_in_valid_archive(files, key, mutation):
    """The same mutations inside one array of an otherwise valid archive (valid zip, valid CRCs):
    they reach the metadata, tokenizer and weight checks behind the archive layer."""
    arrays = dict(files["arrays"])
    raw = arrays[key].tobytes()
    new = mutate(raw, mutation)
    if key == "params":
        new = new[: len(new) // 4 * 4]
        arrays[key] = np.frombuffer(new, dtype=np.float32).copy()
    else:
        arrays[key] = np.frombuffer(new, dtype=np.uint8).copy()
    load_or_refuse(resave(files, "inner.npz", arrays))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=6),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=6)


@settings(max_examples=150, **SETTINGS)
@given(where=st.sampled_from(["meta", "meta.model", "tokenizer"]), field=st.integers(0, 30), value=JSON)
def test_loader_wrong_json_values(files, where, field, value):
    """Valid JSON with one field replaced by an arbitrary JSON value (or the whole object by it)."""
    arrays = dict(files["arrays"])
    key = where.split(".")[0]
    obj = json.loads(bytes(arrays[key]).decode())
    target = obj["model"] if where == "meta.model" else obj
    names = sorted(target)
    if field < len(names):
        target[names[field]] = value
    elif field == len(names):
        obj = value
    else:
        target["extra"] = value
    arrays[key] = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8).copy()
    load_or_refuse(resave(files, "json.npz", arrays))


def test_mutations_both_load_and_refuse(files):
    """The generators are not vacuous: some mutated files still load (e.g. a changed weight),
    many are refused."""
    arrays = dict(files["arrays"])
    params = arrays["params"].copy()
    params[0] += 1.0
    arrays["params"] = params
    assert load_or_refuse(resave(files, "ok.npz", arrays))
    params[1] = np.nan
    assert not load_or_refuse(resave(files, "nan.npz", arrays))
    assert Outcome.refused > 0
