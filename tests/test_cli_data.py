"""`rnnlm prepare` and `rnnlm vocab` through rnnlm.cli.app: output and one-line errors."""
import io
import subprocess
import sys

import pytest

from rnnlm.cli.app import main
from rnnlm.data.tokenizer import load_tokenizer

TRAIN = "the cat sat on the mat\nthe dog sat\n\na cat ran\n"


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


BAD_INPUTS = {
    "missing": (None, "no such file"),
    "directory": ("DIR", "is a directory"),
    "empty": (b"", "empty file"),
    "whitespace": (b"  \n\t\r\n\n", "blank"),
    "utf8": (b"good line\nbad \xe9 byte\n", "not UTF-8 at byte 14"),
    "nul": (b"abc\ndef\x00\n", "NUL byte at byte 7"),
}


@pytest.mark.parametrize("command", ["prepare", "vocab"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_error(tmp_path, capsys, command, case):
    data, msg = BAD_INPUTS[case]
    if data is None:
        path = tmp_path / "missing.txt"
    elif data == "DIR":
        path = tmp_path / "adir"
        path.mkdir()
    else:
        path = tmp_path / "train.txt"
        write(path, data)
    code, out, err = run(capsys, command, path)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnlm: error: ") and msg in lines[0] and path.name in lines[0]


def test_bad_valid_file_is_named(tmp_path, capsys):
    train = write(tmp_path / "train.txt", TRAIN)
    valid = write(tmp_path / "valid.txt", b"ok\n\xff\n")
    code, _, err = run(capsys, "prepare", train, valid)
    assert code == 1 and err.count("\n") == 1 and "valid.txt: not UTF-8 at byte 3" in err


@pytest.mark.parametrize("command", ["prepare", "vocab"])
def test_empty_vocabulary_after_min_count(tmp_path, capsys, command):
    train = write(tmp_path / "train.txt", TRAIN)
    code, _, err = run(capsys, command, train, "--min-count", "50")
    assert code == 1 and err.count("\n") == 1 and "vocabulary is empty" in err


def test_prepare_reports_and_reuses_cache(tmp_path, capsys):
    train = write(tmp_path / "train.txt", TRAIN)
    valid = write(tmp_path / "valid.txt", "the cat flew\n\n")
    code, out, err = run(capsys, "prepare", train, valid, "--classes", "3", "--out", "tok.json")
    assert code == 0 and err == ""
    assert "train: " in out and "4 tokens" not in out
    assert "valid: " in out and "1 OOV skipped" in out and "1 blank lines skipped" in out
    assert "rebuilt" in out and "reused" not in out and str(tmp_path / "cache") in out
    tok = load_tokenizer(tmp_path / "tok.json")
    assert tok.kind == "word" and tok.num_classes == 3
    code, out, _ = run(capsys, "prepare", train, valid, "--classes", "3")
    assert code == 0 and "rebuilt" not in out and out.count("reused") == 3


def test_prepare_crlf_same_as_lf(tmp_path, capsys):
    lf = write(tmp_path / "lf.txt", TRAIN)
    crlf = write(tmp_path / "crlf.txt", TRAIN.replace("\n", "\r\n"))
    run(capsys, "prepare", lf, "--out", "a.json")
    run(capsys, "prepare", crlf, "--out", "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_prepare_sentencepiece(tmp_path, capsys):
    text = "".join(f"the {w} number {i} sat on the mat\n" for i in range(60)
                   for w in ("cat", "dog", "bird"))
    train = write(tmp_path / "train.txt", text)
    code, out, err = run(capsys, "prepare", train, "--tokenizer", "sentencepiece",
                         "--sp-vocab-size", "60", "--sp-model-type", "bpe", "--classes", "4",
                         "--cache-dir", tmp_path / "c2", "--out", "sp.json")
    assert code == 0, err
    assert "sentencepiece" in out and str(tmp_path / "c2") in out
    assert load_tokenizer(tmp_path / "sp.json").kind == "sentencepiece"


def test_vocab_output(tmp_path, capsys):
    train = write(tmp_path / "train.txt", TRAIN)
    code, out, err = run(capsys, "vocab", train, "--top", "3", "--classes", "2")
    assert code == 0 and err == ""
    assert "1 blank lines skipped" in out and "15 tokens incl. </s>" in out
    assert "vocabulary: 9 types" in out and "classes: 2" in out
    table = out.split("top 3:")[1].splitlines()[2:]
    assert [row.split()[-1] for row in table] == ["</s>", "the", "cat"]  # tie 3-3 broken by string


def test_vocab_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TRAIN.encode())))
    code, out, _ = run(capsys, "vocab", "-", "--top", "1")
    assert code == 0 and "<stdin>" in out


def test_help_mentions_policy_and_is_cheap():
    for cmd in ("prepare", "vocab"):
        res = subprocess.run([sys.executable, "-m", "rnnlm", cmd, "--help"], capture_output=True,
                             text=True, check=True)
        assert "blank lines are skipped" in res.stdout and "CRLF" in res.stdout
        assert f"rnnlm {cmd} " in res.stdout.split("examples:")[1]
    probe = ("import sys, rnnlm.cli.app; rnnlm.cli.app.build_parser(); "
             "print(sorted(m for m in ('numba', 'sentencepiece', 'datasets') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
