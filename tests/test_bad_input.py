"""The bad-input matrix: every CLI verb that reads user files, fed every kind of bad (or odd) file.

Text arguments (prepare TRAIN/VALID, vocab, train --train/--valid, eval, score, kn-prob TRAIN/TEXT,
eval --lm-prob) get: a missing path, a directory, an empty file, only blank lines, binary garbage,
UTF-16 with a byte-order mark, invalid UTF-8 in the middle (the message names the byte offset), a
NUL byte (named likewise), a single line of 1 MB, CRLF line ends, a word of 10,001 characters and a
text whose words are all out of the vocabulary. Model arguments (eval, score, sample, kn-prob,
export-rnnlm, import-rnnlm, train --resume's checkpoint) get: a missing path, a directory, zero
bytes, binary garbage, a text file, another program's .npy and .npz, a truncated model, a model of a
future format version, an .npz carrying a pickled object (refused, never unpickled: its payload
would create a marker file), a truncated and a future-version rnnlm-0.4b file.

Every case must end either in one line `rnnlm: error: FILE: ...` on stderr with exit status 1 and
any existing output (--model/--out/NEW/OUT, given with --force where the verb has it)
byte-identical, or in the documented handling of valid input (exit 0): CRLF is the same text as LF,
a 1 MB line and a 10,001-character word are ordinary text (the long word is an OOV for a model that
never saw it), all-OOV texts are scored with the OOVs counted, a blank line is an empty sentence for
`rnnlm score`. Never a traceback. The matrix runs in-process through rnnlm.cli.app; a sample of it
runs again as real subprocesses. `test_matrix_counts` (last) asserts and prints the counts.
"""
import collections
import contextlib
import io
import json
import os
import pickle
import re
import subprocess
import sys
import traceback
from types import SimpleNamespace

import numpy as np
import pytest

from rnnlm.cli.app import main

SYN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpora", "synthetic")
PRECIOUS = b"precious output that a failing command must not touch\n"
OOV_TEXT = b"zebra quokka xylophone\nquokka zebra\n"
LONG_WORD = "w" * 10_001


class Unpickled:
    """A pickle payload with a visible side effect: unpickling it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------ fixture: data and a tiny model

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("badinput")
    lines = open(os.path.join(SYN, "train.txt")).read().splitlines()
    train, valid, test = lines[:300], lines[300:350], lines[1700:1740]
    for name, ls in (("train.txt", train), ("valid.txt", valid), ("test.txt", test)):
        (d / name).write_text("\n".join(ls) + "\n")
    cache = d / "cache"
    model = d / "m.rnnlm"
    assert main(["train", "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), "--model", str(model),
                 "--hidden", "8", "--classes", "5", "--max-epochs", "1", "--cache-dir", str(cache)]) == 0
    assert main(["export-rnnlm", str(model), str(d / "m04b.txt")]) == 0
    with contextlib.redirect_stdout(io.StringIO()) as kn:   # per-word probabilities for --lm-prob
        assert main(["kn-prob", str(model), str(d / "train.txt"), str(d / "test.txt")]) == 0
    (d / "test.kn").write_text(kn.getvalue())
    return SimpleNamespace(dir=d, cache=cache, model=model, train=d / "train.txt", valid=d / "valid.txt",
                           test=d / "test.txt", kn=d / "test.kn", m04b=d / "m04b.txt", marker=d / "UNPICKLED-MARKER",
                           vocab_words=sorted(set(" ".join(train).split())))


# ------------------------------------------------------------------ text cases

def _insert(base: bytes, what: bytes):
    """`base` with `what` inserted inside a word of a middle line; (bytes, offset)."""
    at = base.index(b"\n", len(base) // 2) + 3
    return base[:at] + what + base[at:], at


def mb_line(env) -> bytes:
    words = " ".join(env.vocab_words * 2).encode()
    line = (words + b" ") * (1_000_000 // (len(words) + 1) + 1)
    return line[:1_000_000].rsplit(b" ", 1)[0] + b"\n"


# case -> (make(env, base) -> bytes | None (missing) | "DIR", expected) where expected is
# ("error", regex) or ("ok", None); a role may override the expectation.
def _garbage(env, base):
    return np.random.default_rng(8).bytes(4096)


TEXT_CASES = {
    "missing": (lambda env, base: None, ("error", r"no such file")),
    "directory": (lambda env, base: "DIR", ("error", r"is a directory")),
    "empty": (lambda env, base: b"", ("error", r"empty file")),
    "blank_lines": (lambda env, base: b"\n  \n\t\n\r\n", ("error", r"no text: all 4 lines are blank")),
    "binary_garbage": (_garbage, ("error", r"not UTF-8 at byte \d+|NUL byte at byte \d+")),
    "utf16_bom": (lambda env, base: base.decode().encode("utf-16"), ("error", r"UTF-16 text \(byte-order mark")),
    "invalid_utf8": (lambda env, base: _insert(base, b"\xff")[0],
                     ("error", lambda base: f"not UTF-8 at byte {_insert(base, b'')[1]} \\(byte 0xff\\)")),
    "nul_byte": (lambda env, base: _insert(base, b"\x00")[0],
                 ("error", lambda base: f"NUL byte at byte {_insert(base, b'')[1]} ")),
    "line_1mb": (lambda env, base: mb_line(env), ("ok", None)),
    "crlf": (lambda env, base: base.replace(b"\n", b"\r\n"), ("ok", "same_as_lf")),
    "long_word": (lambda env, base: base.replace(b"\n", f" {LONG_WORD}\n".encode(), 1), ("ok", None)),
    "all_oov": (lambda env, base: OOV_TEXT, ("ok", None)),
}


# role -> (base file attribute, argv(env, path, out) , output file name or None, cases, overrides)
def _text_roles():
    c = lambda env: ["--cache-dir", str(env.cache)]  # noqa: E731
    tr = ["--hidden", "8", "--classes", "5", "--max-epochs", "1"]
    return {
        "prepare TRAIN": ("train", lambda env, p, o: ["prepare", p, *c(env), "--out", o], "tok.json",
                          set(TEXT_CASES) - {"all_oov"}, {}),
        "prepare VALID": ("valid", lambda env, p, o: ["prepare", env.train, p, *c(env), "--out", o], "tok.json",
                          set(TEXT_CASES), {}),
        "vocab TRAIN": ("train", lambda env, p, o: ["vocab", p], None, set(TEXT_CASES) - {"all_oov"}, {}),
        "train --train": ("train", lambda env, p, o: ["train", "--train", p, "--valid", env.valid, "--model", o,
                                                       "--force", *tr, *c(env)], "model.rnnlm",
                          set(TEXT_CASES) - {"all_oov"}, {}),
        "train --valid": ("valid", lambda env, p, o: ["train", "--train", env.train, "--valid", p, "--model", o,
                                                       "--force", *tr, *c(env)], "model.rnnlm", set(TEXT_CASES), {}),
        "eval TEXT": ("test", lambda env, p, o: ["eval", env.model, p], None, set(TEXT_CASES), {}),
        "score FILE": ("test", lambda env, p, o: ["score", env.model, p], None, set(TEXT_CASES),
                       {"blank_lines": ("ok", None)}),     # documented: a blank line is an empty sentence
        "kn-prob TRAIN": ("train", lambda env, p, o: ["kn-prob", env.model, p, env.test], None, set(TEXT_CASES), {}),
        "kn-prob TEXT": ("test", lambda env, p, o: ["kn-prob", env.model, env.train, p], None, set(TEXT_CASES), {}),
        "eval --lm-prob": ("kn", lambda env, p, o: ["eval", env.model, env.test, "--lm-prob", p], None,
                           set(TEXT_CASES) - {"line_1mb", "long_word", "all_oov"},
                           {"empty": ("error", r"has 0 probabilities but"),
                            "blank_lines": ("error", r"has 0 probabilities but"),
                            "utf16_bom": ("error", r"not UTF-8 at byte 0"),
                            "invalid_utf8": ("error", lambda base: f"not UTF-8 at byte {_insert(base, b'')[1]}$"),
                            "nul_byte": ("error", r"is not a probability")}),
    }


TEXT_ROLES = _text_roles()

# ------------------------------------------------------------------ model cases


def _npz_bytes(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _model_arrays(env):
    with np.load(env.model, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _future(env):
    a = _model_arrays(env)
    meta = json.loads(bytes(a["meta"]).decode())
    meta["format_version"] = 99
    a["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return _npz_bytes(a)


def _pickled(env, marker=None):
    a = _model_arrays(env)
    a["params"] = np.array([Unpickled(marker or env.marker)], dtype=object)
    return _npz_bytes(a)


def _npy(env):
    buf = io.BytesIO()
    np.save(buf, np.arange(10.0))
    return buf.getvalue()


def _m04b_future(env):
    data = env.m04b.read_bytes()
    assert data.startswith(b"version: 10\n")
    return b"version: 11\n" + data[len(b"version: 10\n"):]


MODEL_CASES = {
    "missing": (lambda env: None, r"no such|no checkpoint"),
    "directory": (lambda env: "DIR", r"is a directory"),
    "zero_bytes": (lambda env: b"", r"empty file \(0 bytes\)"),
    "binary_garbage": (lambda env: np.random.default_rng(9).bytes(4096),
                       r"not an rnnlm model file|not an rnnlm-0.4b model file \(it does not start with 'version:'\)"),
    "text_file": (lambda env: env.test.read_bytes(), r"not an rnnlm model file|not an rnnlm-0.4b model file \(it does not start with 'version:'\)"),
    "other_npy": (_npy, r"not an rnnlm model file \(not an .npz|NumPy .npz/.npy file"),
    "other_npz": (lambda env: _npz_bytes({"x": np.arange(5), "y": np.eye(2)}),
                  r"not an rnnlm model file \(missing 'params'\)|NumPy .npz/.npy file"),
    "truncated": (lambda env: env.model.read_bytes()[: len(env.model.read_bytes()) // 2],
                  r"damaged, truncated or not an rnnlm model file \(BadZipFile|NumPy .npz/.npy file"),
    "future_version": (_future, r"written by a newer rnnlm \(format version 99\)|NumPy .npz/.npy file"),
    "pickled_object": (_pickled, r"refused: array 'params' holds pickled Python objects|NumPy .npz/.npy file"),
    "rnnlm04b_truncated": (lambda env: env.m04b.read_bytes()[: len(env.m04b.read_bytes()) * 2 // 3],
                           r"truncated|not an rnnlm model file \(not an .npz"),
    "rnnlm04b_future": (_m04b_future, r"version 11 is not supported|not an rnnlm model file \(not an .npz"),
}

# role -> (argv(env, path, out), output file name or None, checkpoint: the case file is OUT.ckpt)
MODEL_ROLES = {
    "eval MODEL": (lambda env, p, o: ["eval", p, env.test], None),
    "score MODEL": (lambda env, p, o: ["score", p, env.test], None),
    "sample MODEL": (lambda env, p, o: ["sample", p, "--n", "2", "--seed", "1"], None),
    "kn-prob MODEL": (lambda env, p, o: ["kn-prob", p, env.train, env.test], None),
    "export-rnnlm MODEL": (lambda env, p, o: ["export-rnnlm", p, o, "--force"], "out.txt"),
    "import-rnnlm OLD": (lambda env, p, o: ["import-rnnlm", p, o, "--force"], "new.rnnlm"),
    "train --resume": (lambda env, p, o: ["train", "--train", env.train, "--valid", env.valid, "--model", o,
                                          "--resume", "--cache-dir", env.cache], "resumed.rnnlm"),
}

# ------------------------------------------------------------------ the matrix

MATRIX = ([("text", role, case) for role, spec in TEXT_ROLES.items() for case in TEXT_CASES if case in spec[3]]
          + [("model", role, case) for role in MODEL_ROLES for case in MODEL_CASES])
RESULTS: dict = {}   # (role, case) -> "error" | "ok" | "traceback"


def run_main(capsys, argv):
    """(exit code, stdout, stderr, traceback text or None) of rnnlm.cli.app in this process."""
    tb = None
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:       # argparse usage errors
        code = exc.code
    except BaseException:           # noqa: BLE001 - that is what the matrix looks for
        code, tb = None, traceback.format_exc()
    out, err = capsys.readouterr()
    return code, out, err, tb


def place(env, tag, data, name):
    """Create the case's input at a fresh path (None: leave it missing; "DIR": a directory)."""
    d = env.dir / "cases" / tag
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    if data == "DIR":
        p.mkdir()
    elif data is not None:
        p.write_bytes(data)
    return p


def fresh_output(env, tag, name, precious: bool):
    if name is None:
        return None
    d = env.dir / "outputs" / tag
    d.mkdir(parents=True, exist_ok=True)
    o = d / name
    if precious:
        o.write_bytes(PRECIOUS)
    return o


def check_error(role, case, code, out, err, tb, name, pattern, out_path):
    assert tb is None, f"{role} / {case}: traceback\n{tb}"
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1, f"{role} / {case}: exit {code}, stderr {err!r}"
    assert lines[0].startswith("rnnlm: error: ") and name in lines[0], lines[0]
    assert re.search(pattern, lines[0]), f"{role} / {case}: {lines[0]!r} does not match {pattern!r}"
    assert "Traceback" not in err and len(lines[0]) < 400
    if out_path is not None:
        assert out_path.read_bytes() == PRECIOUS, f"{role} / {case}: the existing output was changed"
        siblings = sorted(x.name for x in out_path.parent.iterdir())
        assert siblings == [out_path.name], f"{role} / {case}: files were written: {siblings}"


def check_ok(role, case, code, out, err, tb):
    assert tb is None, f"{role} / {case}: traceback\n{tb}"
    assert code == 0, f"{role} / {case}: exit {code}, stderr {err!r}"
    assert all(l.startswith("rnnlm: note: ") for l in err.splitlines()), err


def comparable(role, out, out_path, names):
    """What an ok run produced, with file names normalised (the CRLF and the LF run must agree)."""
    for a in names:
        out = out.replace(str(a), "FILE").replace(os.path.basename(str(a)), "FILE")
    out = re.sub(r"\d[\d,]* words/s|\d+\.\d s\b|cache: \S+|/\S+", "X", out)
    if out_path is None:
        return out
    if role.startswith("train"):
        with np.load(out_path, allow_pickle=False) as z:
            return out, z["params"].tobytes(), z["tokenizer"].tobytes()
    return out, out_path.read_bytes()


@pytest.mark.parametrize("role,case", [(r, c) for kind, r, c in MATRIX if kind == "text"])
def test_text_input(env, capsys, role, case):
    text_case(env, capsys, role, case)


def text_case(env, capsys, role, case):
    base_attr, argv, out_name, _, overrides = TEXT_ROLES[role]
    base = getattr(env, base_attr).read_bytes()
    make, expected = TEXT_CASES[case]
    kind, what = overrides.get(case, expected)
    tag = f"{role}-{case}".replace(" ", "_").replace("-", "_")
    path = place(env, tag, make(env, base), f"{case}.txt")
    out_path = fresh_output(env, tag, out_name, precious=(kind == "error"))
    code, out, err, tb = run_main(capsys, argv(env, path, out_path))
    RESULTS[(role, case)] = "traceback" if tb else kind
    if kind == "error":
        pattern = what(base) if callable(what) else what
        check_error(role, case, code, out, err, tb, path.name, pattern, out_path)
        return
    check_ok(role, case, code, out, err, tb)
    if what == "same_as_lf":    # CRLF: exactly the output of the same text with LF line ends
        lf = place(env, tag + "_lf", base, "lf.txt")
        lf_out = fresh_output(env, tag + "_lf", out_name, precious=False)
        code2, out2, err2, tb2 = run_main(capsys, argv(env, lf, lf_out))
        check_ok(role, "lf", code2, out2, err2, tb2)
        assert comparable(role, out, out_path, [path]) == comparable(role, out2, lf_out, [lf])
    if case == "all_oov" and role in ("eval TEXT", "prepare VALID", "train --valid"):
        assert re.search(r"OOV [5] |5 OOV", out), out
    if case == "long_word" and role == "eval TEXT":   # one more OOV than the text without it
        code2, out2, _, _ = run_main(capsys, argv(env, env.test, None))
        n_oov = [int(re.search(r"OOV (\d+) ", o).group(1)) for o in (out, out2)]
        assert code2 == 0 and n_oov[0] == n_oov[1] + 1, (out, out2)
    if case == "line_1mb" and role in ("eval TEXT", "vocab TRAIN"):
        assert ": 1 lines (0 blank" in out, out
    if case == "blank_lines" and role == "score FILE":
        assert len(out.splitlines()) == 4, out       # four empty sentences, each P(</s>)


@pytest.mark.parametrize("role,case", [(r, c) for kind, r, c in MATRIX if kind == "model"])
def test_model_input(env, capsys, role, case):
    model_case(env, capsys, role, case)


def model_case(env, capsys, role, case):
    argv, out_name = MODEL_ROLES[role]
    make, pattern = MODEL_CASES[case]
    tag = f"{role}-{case}".replace(" ", "_").replace("-", "_")
    out_path = fresh_output(env, tag, out_name, precious=True)
    data = make(env)
    if role == "train --resume":   # the model argument is the checkpoint OUT.ckpt next to OUT
        path = out_path.with_name(out_path.name + ".ckpt")
        if data == "DIR":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
    else:
        path = place(env, tag, data, f"{case}.model")
    code, out, err, tb = run_main(capsys, argv(env, path, out_path))
    RESULTS[(role, case)] = "traceback" if tb else "error"
    if role == "train --resume":   # OUT and its checkpoint are both untouched, nothing else written
        check_error(role, case, code, out, err, tb, path.name, pattern, None)
        assert out_path.read_bytes() == PRECIOUS
        if isinstance(data, bytes):
            assert path.read_bytes() == data
        names = sorted(x.name for x in out_path.parent.iterdir())
        assert names == sorted([out_path.name] + ([path.name] if data is not None else [])), names
        return
    check_error(role, case, code, out, err, tb, path.name, pattern, out_path)
    assert out == "", out


def run_missing(env, capsys, which=lambda role, case: True) -> None:
    """Run the matrix cases (chosen by `which`) that have not run yet in this process, so that the
    tests over the whole matrix hold whatever subset or order of tests was selected."""
    for kind, role, case in MATRIX:
        if (role, case) not in RESULTS and which(role, case):
            (text_case if kind == "text" else model_case)(env, capsys, role, case)


def test_pickled_object_is_never_unpickled(env, capsys, tmp_path):
    """No matrix case created the marker, although the same payload does create it when an .npz is
    loaded with allow_pickle=True (so the refusal is what kept it from running)."""
    run_missing(env, capsys, lambda role, case: case == "pickled_object")
    assert sum(1 for k in RESULTS if k[1] == "pickled_object") == len(MODEL_ROLES)
    assert not env.marker.exists()
    control_marker = tmp_path / "control-marker"
    control = tmp_path / "control.npz"
    control.write_bytes(_pickled(env, control_marker))
    with np.load(control, allow_pickle=True) as z:
        z["params"]
    assert control_marker.exists()
    assert pickle.loads(pickle.dumps(Unpickled(tmp_path / "m2"))) and (tmp_path / "m2").exists()


# ------------------------------------------------------------------ real processes

SUBPROCESS_CASES = [
    ("eval MODEL", "pickled_object"),
    ("sample MODEL", "zero_bytes"),
    ("import-rnnlm OLD", "binary_garbage"),
    ("train --valid", "invalid_utf8"),
    ("prepare TRAIN", "utf16_bom"),
    ("score FILE", "nul_byte"),
]


def test_subprocesses_print_one_line_and_no_traceback(env):
    """A few matrix cases again as real `python -m rnnlm` processes (run side by side)."""
    procs = []
    for role, case in SUBPROCESS_CASES:
        tag = "sub_" + f"{role}-{case}".replace(" ", "_").replace("-", "_")
        if role in MODEL_ROLES:
            argv, out_name = MODEL_ROLES[role]
            path = place(env, tag, MODEL_CASES[case][0](env), f"{case}.model")
        else:
            base_attr, argv, out_name, _, _ = TEXT_ROLES[role]
            path = place(env, tag, TEXT_CASES[case][0](env, getattr(env, base_attr).read_bytes()), f"{case}.txt")
        out_path = fresh_output(env, tag, out_name, precious=True)
        cmd = [sys.executable, "-m", "rnnlm"] + [str(a) for a in argv(env, path, out_path)]
        procs.append((role, case, path, out_path, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=env.dir,
            env=dict(os.environ, RNNLM_CACHE_DIR=str(env.cache)))))
    for role, case, path, out_path, proc in procs:
        out, err = proc.communicate(timeout=300)
        err = err.decode()
        assert proc.returncode == 1, (role, case, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1, (role, case, err)
        assert err.startswith("rnnlm: error: ") and path.name in err, err
        if out_path is not None:
            assert out_path.read_bytes() == PRECIOUS
    assert not env.marker.exists()


# ------------------------------------------------------------------ more edge cases (not in the counts)

def test_sentencepiece_line_longer_than_its_limit(env, capsys, tmp_path):
    """SentencePiece ignores lines above 128 KiB: a text made only of such lines is refused clearly;
    the word tokenizer takes the same 1 MB line."""
    pytest.importorskip("sentencepiece")
    p = tmp_path / "one_line.txt"
    p.write_bytes(mb_line(env))
    code, out, err, tb = run_main(capsys, ["prepare", p, "--tokenizer", "sentencepiece", "--cache-dir", env.cache])
    assert tb is None and code == 1 and err.count("\n") == 1
    assert "longer than SentencePiece's limit of 131,072 bytes" in err and "one_line.txt" in err


def test_output_is_a_directory(env, capsys, tmp_path):
    (tmp_path / "adir").mkdir()
    for argv in (["export-rnnlm", env.model, tmp_path / "adir", "--force"],
                 ["import-rnnlm", env.m04b, tmp_path / "adir", "--force"],
                 ["train", "--train", env.train, "--valid", env.valid, "--model", tmp_path / "adir", "--force"]):
        code, out, err, tb = run_main(capsys, argv)
        assert tb is None and code == 1 and err.count("\n") == 1 and "is a directory" in err, err


# ------------------------------------------------------------------ the counts (over the whole matrix, whatever ran before)

def test_matrix_counts(env, capsys):
    run_missing(env, capsys)
    assert len(RESULTS) == len(MATRIX)
    counts = collections.Counter(RESULTS.values())
    n_text = sum(1 for kind, _, _ in MATRIX if kind == "text")
    summary = (f"bad-input matrix: {len(MATRIX)} cases ({n_text} text, {len(MATRIX) - n_text} model) over "
               f"{len(TEXT_ROLES)} text and {len(MODEL_ROLES)} model arguments; {counts['error']} clear one-line "
               f"errors, {counts['ok']} documented valid-input handlings, {counts['traceback']} tracebacks")
    print("\n" + summary)
    assert counts["traceback"] == 0
    assert len(MATRIX) == 198 and counts["error"] == 163 and counts["ok"] == 35, summary
