"""Outputs, concurrency and signals: what a hostile (or unlucky) user hits.

The hostile matrix (`HOSTILE`) runs each case through `rnnlm.cli.app` and checks the same three
things every time: no traceback, every input file byte-identical afterwards, and every output either
its old bytes or a complete new file (it loads). The other tests need more than one process or a
simulated failure: two trainings of one model at once, SIGTERM, a directory that refuses writes,
a write that fails after training, a symlinked model and file modes.
"""
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
import traceback
from types import SimpleNamespace

import numpy as np
import pytest

from rnnlm.cli.app import main
from rnnlm.errors import RnnlmError

SYN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpora", "synthetic")
SMALL = ["--hidden", "8", "--classes", "5", "--max-epochs", "1"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("reliability")
    lines = open(os.path.join(SYN, "train.txt")).read().splitlines()
    (d / "train.txt").write_text("\n".join(lines[:400]) + "\n")
    (d / "valid.txt").write_text("\n".join(lines[400:450]) + "\n")
    (d / "test.txt").write_text("\n".join(lines[1700:1720]) + "\n")
    (d / "big.txt").write_text("\n".join(lines * 3) + "\n")     # about 0.6M tokens: a run long enough to stop
    model = d / "m.rnnlm"
    assert main([str(a) for a in ["train", "--train", d / "train.txt", "--valid", d / "valid.txt", "--model", model,
                                  "--cache-dir", d / "cache", *SMALL]]) == 0
    assert main(["export-rnnlm", str(model), str(d / "m04b.txt")]) == 0
    return SimpleNamespace(dir=d, train=d / "train.txt", valid=d / "valid.txt", test=d / "test.txt",
                           big=d / "big.txt", model=model, m04b=d / "m04b.txt", cache=d / "cache")


def run(capsys, argv):
    """(exit code, stdout, stderr, traceback or None) of main(argv), in-process."""
    tb = None
    try:
        code = main([str(a) for a in argv])
    except BaseException:   # noqa: BLE001 - the point is to see it
        code, tb = -1, traceback.format_exc()
    out, err = capsys.readouterr()
    return code, out, err, tb


def digest(path) -> str | None:
    try:
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------ the hostile matrix

def _copy(env, name, src):
    p = env.dir / "cases" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(src.read_bytes())
    return p


def _link(env, name, target):
    p = env.dir / "cases" / name
    p.parent.mkdir(exist_ok=True)
    if p.is_symlink() or p.exists():
        p.unlink()
    p.symlink_to(target)
    return p


# name -> (make(env) -> (argv, inputs, outputs), expected exit status, a piece of the one-line error)
HOSTILE = {
    "prepare --out TRAIN": (lambda e: (lambda t: (["prepare", t, "--out", t, "--cache-dir", e.cache], [t], []))(
        _copy(e, "p1.txt", e.train)), 1, "also an input of this command"),
    "prepare --out a symlink to TRAIN": (lambda e: (lambda t: (
        ["prepare", t, "--out", _link(e, "p2.link", t), "--cache-dir", e.cache], [t], []))(
        _copy(e, "p2.txt", e.train)), 1, "it resolves to"),
    "train --model TRAIN --force": (lambda e: (lambda t: (
        ["train", "--train", t, "--valid", e.valid, "--model", t, "--force", *SMALL], [t, e.valid], []))(
        _copy(e, "t1.txt", e.train)), 1, "also an input of this command"),
    "train --model VALID.png --force (a companion)": (lambda e: (lambda v: (
        ["train", "--train", e.train, "--valid", v, "--model", str(v)[:-len(".png")], "--force", *SMALL],
        [e.train, v], []))(_copy(e, "v1.png", e.valid)), 1, "also an input of this command"),
    "export-rnnlm MODEL MODEL --force": (lambda e: (lambda m: (["export-rnnlm", m, m, "--force"], [m], []))(
        _copy(e, "x1.rnnlm", e.model)), 1, "also an input of this command"),
    "import-rnnlm OLD OLD --force": (lambda e: (lambda m: (["import-rnnlm", m, m, "--force"], [m], []))(
        _copy(e, "i1.txt", e.m04b)), 1, "also an input of this command"),
    "train --seed -1": (lambda e: (["train", "--train", e.train, "--valid", e.valid, "--model",
                                    e.dir / "cases" / "s1.rnnlm", "--seed", "-1", *SMALL], [e.train], []),
                        1, "--seed must be"),
    "sample --seed -1": (lambda e: (["sample", e.model, "--seed", "-1"], [e.model], []), 1, "--seed must be"),
    "train --hidden 1000000": (lambda e: (["train", "--train", e.train, "--valid", e.valid, "--model",
                                           e.dir / "cases" / "h1.rnnlm", "--hidden", "1000000"], [e.train], []),
                               1, "GiB of memory available"),
    "train --lr inf": (lambda e: (["train", "--train", e.train, "--valid", e.valid, "--model",
                                   e.dir / "cases" / "l1.rnnlm", "--lr", "inf", *SMALL], [e.train], []),
                       1, "--lr must be a positive finite number"),
    "train --classes -3": (lambda e: (["train", "--train", e.train, "--valid", e.valid, "--model",
                                       e.dir / "cases" / "c1.rnnlm", "--classes", "-3", "--hidden", "8"],
                                      [e.train], []), 1, "--classes must be >= 0"),
    "eval --dynamic 1e6": (lambda e: (["eval", e.model, e.test, "--dynamic", "1e6"], [e.model, e.test], []),
                           1, "diverged"),
    "train diverging (--lr 1e12) over a good model --force": (lambda e: (lambda m: (
        ["train", "--train", e.train, "--valid", e.valid, "--model", m, "--force", "--lr", "1e12",
         "--schedule", "batch", "--max-epochs", "3", "--hidden", "8", "--classes", "5"],
        [e.train], [m, m.with_name(m.name + ".log.jsonl")]))(_copy(e, "d1.rnnlm", e.model)), 1,
        "no epoch completed"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile(env, capsys, name):
    make, status, message = HOSTILE[name]
    argv, inputs, outputs = make(env)
    if name.startswith("train diverging"):   # the good model's companion log, to be kept
        outputs[1].write_text('{"epoch": 1}\n')
    before = {str(p): digest(p) for p in inputs + outputs}
    code, out, err, tb = run(capsys, argv)
    assert tb is None, tb
    assert code == status, (code, err)
    assert err.startswith("rnnlm: error: ") and err.count("\n") == 1 and message in err, err
    for p in inputs + outputs:   # inputs untouched; outputs keep their old bytes after a refusal
        assert digest(p) == before[str(p)], p
    assert not any(n.endswith((".tmp", ".lock")) for n in os.listdir(env.dir / "cases"))


# ------------------------------------------------------------------ one writer at a time

def test_a_held_lock_refuses_a_second_training(env, capsys, tmp_path):
    from rnnlm.outputs import OutputLock
    model = tmp_path / "locked.rnnlm"
    with OutputLock(model):
        code, out, err, tb = run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", model, *SMALL])
        assert tb is None and code == 1 and err.count("\n") == 1, err
        assert f"another rnnlm process (process {os.getpid()}) is writing this model" in err
        assert not model.exists()
    assert not (tmp_path / "locked.rnnlm.lock").exists()          # released and removed
    code, _, err, _ = run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", model, *SMALL])
    assert code == 0, err


def test_two_trainings_of_one_model_at_once(env, tmp_path):
    """Two real processes train the same --model: one trains, the other stops at once with one line;
    the model that remains is complete and its log has one run's lines."""
    model = tmp_path / "both.rnnlm"
    cmd = [sys.executable, "-m", "rnnlm", "train", "--train", str(env.big), "--valid", str(env.valid),
           "--model", str(model), "--hidden", "16", "--classes", "10", "--max-epochs", "2", "--force",
           "--cache-dir", str(env.cache)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "both.rnnlm.lock").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
    assert "is writing this model" in second.stderr and "Traceback" not in second.stderr
    from rnnlm.model.file import load_model
    hist = load_model(str(model)).meta["history"]
    assert len([h for h in hist if not h.get("diverged")]) == 2     # one run's epochs, not two runs'
    assert len((tmp_path / "both.rnnlm.log.jsonl").read_text().splitlines()) == len(hist)
    slot = [f for f in os.listdir(tmp_path) if f.startswith("both.rnnlm.ckpt.rollback")]   # 0 or 1
    assert len(slot) == 1
    assert sorted(os.listdir(tmp_path)) == ["both.rnnlm", "both.rnnlm.ckpt"] + slot + ["both.rnnlm.log.jsonl"] + (
        ["both.rnnlm.png"] if (tmp_path / "both.rnnlm.png").exists() else [])


# ------------------------------------------------------------------ signals

def test_sigterm_checkpoints_and_exits_143_then_resumes(env, tmp_path):
    model = tmp_path / "term.rnnlm"
    cmd = [sys.executable, "-m", "rnnlm", "train", "--train", str(env.big), "--valid", str(env.valid),
           "--model", str(model), "--hidden", "16", "--classes", "10", "--max-epochs", "2",
           "--checkpoint-words", "0", "--cache-dir", str(env.cache)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    while first and not first.startswith("vocabulary"):   # the line printed just before training starts
        first = proc.stdout.readline()
    time.sleep(0.7)   # inside the first epoch (about 2 s long; the kernels come from the cache)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "epoch   1" not in out, "the first epoch ended before SIGTERM came; make the text longer"
    assert proc.returncode == 143, (proc.returncode, err)
    assert "Traceback" not in err and "interrupted (SIGTERM): checkpoint" in err, err
    assert (tmp_path / "term.rnnlm.ckpt").exists() and not (tmp_path / "term.rnnlm.lock").exists()
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    full = tmp_path / "full.rnnlm"
    res = subprocess.run(cmd[:cmd.index("--model") + 1] + [str(full)] + cmd[cmd.index("--model") + 2:],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    from rnnlm.model.file import load_model
    assert np.array_equal(load_model(str(model)).params.flat, load_model(str(full)).params.flat)


def test_sigterm_outside_training_exits_143_and_cleans_up(monkeypatch, capsys, env, tmp_path):
    """SIGTERM while a command writes its output: exit 143, no half-written file, no temp file."""
    from rnnlm.interop.rnnlm04b import convert as conv
    real = conv.export_model

    def export_then_terminated(*a, **kw):
        def write(fh):
            fh.write(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
        from rnnlm.data.text import atomic_write
        atomic_write(a[2], write)
        return real(*a, **kw)
    monkeypatch.setattr(conv, "export_model", export_then_terminated)
    out_path = tmp_path / "x.txt"
    code, out, err, tb = run(capsys, ["export-rnnlm", env.model, out_path])
    assert tb is None and code == 143 and err == "rnnlm: terminated (SIGTERM)\n", (code, err, tb)
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is not None


# ------------------------------------------------------------------ writes that fail

def test_unwritable_directory_is_refused_before_training(env, capsys, tmp_path, monkeypatch):
    """A directory that refuses new files: one line before any training (simulated with EACCES from
    mkstemp, since the tests may run as root, for whom chmod does not refuse)."""
    import tempfile
    from rnnlm.training import loop as train_mod
    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **kw):
        if dir is not None and os.path.realpath(dir) == str(ro):
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **kw)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(train_mod.Trainer, "run", lambda *a, **k: pytest.fail("training started"))
    code, out, err, tb = run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", ro / "m.rnnlm",
                                      *SMALL])
    assert tb is None and code == 1 and err == f"rnnlm: error: {ro / 'm.rnnlm'}: cannot write in {ro}: Permission denied\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-0555 directory; the simulated test covers it")
def test_read_only_directory_for_real(env, capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, out, err, tb = run(capsys, ["train", "--train", env.train, "--valid", env.valid,
                                          "--model", ro / "m.rnnlm", *SMALL])
        assert tb is None and code == 1 and "cannot write in" in err
    finally:
        ro.chmod(0o755)


def test_a_late_write_failure_is_one_line_and_keeps_the_checkpoint(env, capsys, tmp_path, monkeypatch):
    from rnnlm.training import files as train_mod   # where the trainer writes its files
    real = train_mod.save_model
    model = tmp_path / "late.rnnlm"

    def save(path, mf):
        if path == str(model):
            raise RnnlmError(f"{path}: cannot write: No space left on device")
        return real(path, mf)
    monkeypatch.setattr(train_mod, "save_model", save)
    code, out, err, tb = run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", model, *SMALL])
    assert tb is None and code == 1 and err.count("\n") == 1, (err, tb)
    assert "No space left on device" in err and f"the training state is in {model}.ckpt" in err
    assert (tmp_path / "late.rnnlm.ckpt").exists() and not model.exists()
    monkeypatch.setattr(train_mod, "save_model", real)
    code, out, err, tb = run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", model,
                                      *SMALL, "--resume"])
    assert code == 0 and model.exists(), err


# ------------------------------------------------------------------ symlinks, modes, threads

def test_symlinked_model_stays_a_link_and_modes_are_kept(env, capsys, tmp_path):
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    target = real_dir / "m.rnnlm"
    target.write_bytes(env.model.read_bytes())
    target.chmod(0o644)
    link = tmp_path / "m.rnnlm"
    link.symlink_to(target)
    code, _, err, _ = run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", link, "--force",
                                   *SMALL, "--seed", "5"])
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert digest(target) != digest(env.model)                    # the target was replaced
    old = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.rnnlm"
        assert run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", fresh, *SMALL])[0] == 0
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640          # 0666 minus the umask, not 0600
    finally:
        os.umask(old)


def test_threads_beyond_the_cores_are_capped_with_a_note(env, capsys, tmp_path):
    from rnnlm.runtime import cores as _cores
    from rnnlm.model.file import load_model
    model = tmp_path / "t.rnnlm"
    code, out, err, tb = run(capsys, ["train", "--train", env.train, "--valid", env.valid, "--model", model,
                                      *SMALL, "--threads", "999"])
    assert code == 0, err
    import numba
    cores = max(1, min(_cores(), numba.config.NUMBA_NUM_THREADS))
    assert f"--threads 999 is more than the {cores} core(s)" in err
    assert load_model(str(model)).meta["train"]["threads"] == cores


# ------------------------------------------------------------------ the Python API

def test_api_refuses_what_is_not_text_and_decodes_bytes(env):
    import rnnlm
    m = rnnlm.load(env.model)
    s = "the cat sat"
    assert m.score(s.encode()) == m.score(s) and m.perplexity(s.encode()) == m.perplexity(s)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        m.score(b"the \xff cat")
    for bad in (None, ["the", "cat"], 3):
        with pytest.raises(TypeError, match="must be str"):
            m.score(bad)
    other = rnnlm.load(env.model)
    with pytest.raises(ValueError, match="another model"):
        m.step(other.begin(), "the")
    with pytest.raises(TypeError, match="State"):
        m.step("the", "cat")
    with pytest.raises(RnnlmError, match="--seed"):
        m.sample(1, seed=-1)
