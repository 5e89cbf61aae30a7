"""Run Mikolov's rnnlm-0.4b binary beside ours, for bench.py and ptb_rnnlm.py (scripts/ is on their path).

None of rnnlm-0.4b's code is in this repository, nor anything that fetches or builds it: these scripts
take the path of a binary built elsewhere (``--rnnlm04b PATH``, or ``$RNNLM04B``). What the figures
mean:

  Words/sec   what rnnlm-0.4b prints after each training epoch: words / CPU seconds of the training
              pass (it times with clock(), so validation, saving and time spent waiting for a busy
              core are not in it). train() also times each training pass on the wall clock (its
              output is unbuffered through stdbuf, so the start and end lines arrive when printed):
              ``wall_wps``, the figure that compares with ours, which are wall-clock.
  test        ``rnnlm -rnnlm MODEL -test FILE``: wall time of the whole run (loading included), and
              without loading (the same run on a one-line file subtracted).

Usage from a script::

    import rnnlm04b
    rnnlm04b.add_argument(ap)                      # --rnnlm04b PATH
    binary = rnnlm04b.find_binary(args.rnnlm04b)   # SystemExit with a clear message if absent
    r = rnnlm04b.train(binary, train, valid, model, hidden=100, classes=100, bptt=4, bptt_block=10)
    t = rnnlm04b.test(binary, model, test_file)
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field

ENV = "RNNLM04B"
HELP = ("path of an rnnlm-0.4b binary built outside this repository (default: $RNNLM04B); "
        "adds its rows, measured in the same run")


def add_argument(ap) -> None:
    ap.add_argument("--rnnlm04b", metavar="PATH", default=None, help=HELP)


def find_binary(arg: str | None = None, required: bool = True) -> str | None:
    """The rnnlm-0.4b binary: `arg` (from --rnnlm04b), else $RNNLM04B. Absent and required: SystemExit
    with what to do; absent and not required: None. Given but unusable: SystemExit either way."""
    path = arg or os.environ.get(ENV)
    if not path:
        if not required:
            return None
        raise SystemExit("rnnlm-0.4b binary not given: pass --rnnlm04b PATH or set RNNLM04B=PATH. It is not "
                         "part of this repository (licence): build Mikolov's rnnlm-0.4b yourself, outside "
                         "the repository, with g++ -O3 -funroll-loops -ffast-math -D WEIGHTTYPE=float -lm (its "
                         "makefile's WEIGHTTYPE) and -march=x86-64-v3 -mtune=znver3, with which it reproduces "
                         "../shared/fixtures/rnnlm-0.4b bit for bit")
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise SystemExit(f"rnnlm-0.4b binary {path} (from {'--rnnlm04b' if arg else '$' + ENV}): "
                         f"{'not executable' if os.path.isfile(path) else 'no such file'}")
    out = subprocess.run([path], capture_output=True, text=True, errors="replace")
    if "Recurrent neural network based language modeling toolkit" not in out.stdout:
        raise SystemExit(f"{path} does not look like rnnlm-0.4b (its help text did not start as expected)")
    return path


def describe(path: str) -> dict:
    """Identity of the binary, for the results JSON."""
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return dict(path=path, sha256=digest, size=os.path.getsize(path),
                mtime=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path))))


def prefix(cpu: int | None = None, nice: int | None = None) -> list[str]:
    """Command prefix: `taskset -c CPU` and/or `nice -n N`."""
    cmd = []
    if cpu is not None:
        cmd += ["taskset", "-c", str(cpu)]
    if nice is not None:
        cmd += ["nice", "-n", str(nice)]
    return cmd


@dataclass
class Epoch:
    iter: int
    alpha: float
    train_entropy: float
    words_per_sec: float                 # as rnnlm-0.4b prints it (CPU time of the training pass)
    valid_entropy: float | None = None   # None with -one-iter
    train_seconds: float | None = None   # wall clock of the training pass (start line to Words/sec line)
    wall_wps: float | None = None        # train words / train_seconds


@dataclass
class TrainResult:
    cmd: list[str]
    epochs: list[Epoch]
    vocab_size: int | None
    train_words: int | None
    wall_seconds: float                  # the whole run: vocabulary, every epoch, validation, saving
    cpu_seconds: float | None            # user + system CPU of the run
    peak_rss_mb: float | None
    model: str
    output: str = field(repr=False, default="")

    @property
    def median_wps(self) -> float | None:
        """Median over the epochs of the Words/sec rnnlm-0.4b prints."""
        return statistics.median(e.words_per_sec for e in self.epochs) if self.epochs else None

    @property
    def median_wall_wps(self) -> float | None:
        w = [e.wall_wps for e in self.epochs if e.wall_wps]
        return statistics.median(w) if w else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("output")
        d.update(median_wps=self.median_wps, median_wall_wps=self.median_wall_wps)
        return d


_START = re.compile(r"(?:^|\n)Iter:\s*(\d+)\tAlpha: ")
_TRAIN = re.compile(r"\rIter:\s*(\d+)\tAlpha:\s*([-\d.e+naif]+)\s+TRAIN entropy:\s*([-\d.e+naif]+)\s+"
                    r"Words/sec:\s*([-\d.e+naif]+)")
_VALID = re.compile(r"VALID entropy:\s*([-\d.e+naif]+)")


def parse_train_output(text: str, times: list[tuple[int, float]] | None = None) -> tuple[list[Epoch], dict]:
    """Epochs and header figures from what `rnnlm -train` printed. `times`: (characters received so far,
    time) after each read, to time each training pass on the wall clock."""
    def when(pos: int) -> float | None:
        if not times:
            return None
        return next((t for n, t in times if n >= pos), None)

    starts = {int(m.group(1)): when(m.end()) for m in _START.finditer(text)}
    epochs = []
    for m in _TRAIN.finditer(text):
        it = int(m.group(1))
        e = Epoch(iter=it, alpha=float(m.group(2)), train_entropy=float(m.group(3)),
                  words_per_sec=float(m.group(4)))
        v = _VALID.match(text[m.end():].lstrip(" "))
        if v:
            e.valid_entropy = float(v.group(1))
        t0, t1 = starts.get(it), when(m.end())
        if t0 is not None and t1 is not None and t1 > t0:
            e.train_seconds = t1 - t0
        epochs.append(e)
    head = {}
    for key, pat in (("vocab_size", r"Vocab size: (\d+)"), ("train_words", r"Words in train file: (\d+)")):
        m = re.search(pat, text)
        head[key] = int(m.group(1)) if m else None
    for e in epochs:
        if e.train_seconds and head["train_words"]:
            e.wall_wps = head["train_words"] / e.train_seconds
    return epochs, head


def _run_timed(cmd: list[str], cwd: str, on_text=None):
    """Run `cmd`, reading its output as it comes: (text, [(chars so far, time)], wall seconds, rusage)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    buf, times = [], []
    n = 0
    fd = p.stdout.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        now = time.perf_counter() - t0
        s = chunk.decode("utf-8", "replace")
        buf.append(s)
        n += len(s)
        times.append((n, now))
        if on_text:
            on_text(s)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    p.stdout.close()
    return "".join(buf), times, wall, ru, p.returncode


def _short_dir(files: dict[str, str]) -> str:
    """A temporary directory with short symlinks to `files` (name -> path): rnnlm-0.4b keeps file
    names in char[100] buffers, so it is run there with short relative names."""
    d = tempfile.mkdtemp(prefix="r04b-")
    for name, path in files.items():
        os.symlink(os.path.abspath(path), os.path.join(d, name))
    return d


def train(binary: str, train_file: str, valid_file: str, model: str, *, hidden: int, classes: int,
          bptt: int, bptt_block: int, seed: int = 1, max_iter: int | None = None, extra=(),
          cpu: int | None = None, nice: int | None = None, on_epoch=None) -> TrainResult:
    """Train a fresh rnnlm-0.4b model (`model` and its .output.txt are replaced):
    rnnlm -train T -valid V -rnnlm M -hidden H -class C -bptt B -bptt-block K -rand-seed S
    [-max-iter N] [extra...], under taskset/nice when asked. on_epoch(Epoch) is called as each epoch's
    line completes."""
    model = os.path.abspath(model)
    for f in (model, model + ".output.txt", model + ".temp"):
        if os.path.exists(f):
            os.remove(f)
    d = _short_dir({"train.txt": train_file, "valid.txt": valid_file})
    args = ["-train", "train.txt", "-valid", "valid.txt", "-rnnlm", "model", "-hidden", str(hidden),
            "-class", str(classes), "-bptt", str(bptt), "-bptt-block", str(bptt_block), "-rand-seed", str(seed)]
    if max_iter is not None:
        args += ["-max-iter", str(max_iter)]
    args += [str(a) for a in extra]
    unbuf = ["stdbuf", "-o0"] if shutil.which("stdbuf") else []
    cmd = prefix(cpu, nice) + unbuf + [binary] + args
    seen = [0]
    acc = []

    def on_text(s):
        if not on_epoch:
            return
        acc.append(s)
        eps, _ = parse_train_output("".join(acc))
        for e in eps[seen[0]:]:
            if e.valid_entropy is not None or "-one-iter" in args:
                on_epoch(e)
                seen[0] += 1

    try:
        text, times, wall, ru, rc = _run_timed(cmd, d, on_text)
        if rc != 0 or not os.path.exists(os.path.join(d, "model")):
            raise RuntimeError(f"rnnlm-0.4b training failed (exit {rc}): {' '.join(cmd)}\n{text[-2000:]}")
        shutil.move(os.path.join(d, "model"), model)
        if os.path.exists(os.path.join(d, "model.output.txt")):
            shutil.move(os.path.join(d, "model.output.txt"), model + ".output.txt")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    epochs, head = parse_train_output(text, times)
    return TrainResult(cmd=cmd, epochs=epochs, vocab_size=head["vocab_size"], train_words=head["train_words"],
                       wall_seconds=wall, cpu_seconds=ru.ru_utime + ru.ru_stime, peak_rss_mb=ru.ru_maxrss / 1024.0,
                       model=model, output=text)


@dataclass
class TestResult:
    cmd: list[str]
    log10_prob: float
    ppl: float
    words_scored: int            # what rnnlm-0.4b's PPL averages over (in-vocabulary tokens, </s> included)
    tokens: int                  # tokens read (words + one </s> per line)
    wall_seconds: float          # the run, model loading included
    load_seconds: float | None   # the same run on a one-line file (loading and start-up), when asked
    peak_rss_mb: float
    cpu_seconds: float = 0.0     # user + system CPU of the run (median)
    load_cpu_seconds: float | None = None

    @property
    def wps(self) -> float:
        """Tokens per second of the whole run (loading included)."""
        return self.tokens / self.wall_seconds

    @property
    def wps_no_load(self) -> float | None:
        if self.load_seconds is None or self.wall_seconds <= self.load_seconds:
            return None
        return self.tokens / (self.wall_seconds - self.load_seconds)

    @property
    def wps_no_load_cpu(self) -> float | None:
        """Tokens per CPU second without loading: what the run would reach alone on its core."""
        if self.load_cpu_seconds is None or self.cpu_seconds <= self.load_cpu_seconds:
            return None
        return self.tokens / (self.cpu_seconds - self.load_cpu_seconds)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(wps=self.wps, wps_no_load=self.wps_no_load, wps_no_load_cpu=self.wps_no_load_cpu)
        return d


def count_tokens(path: str) -> int:
    """Tokens rnnlm-0.4b reads from a text file: its words and one </s> per line."""
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            n += len(line.split()) + 1
    return n


def _test_once(binary, model, text_file, cpu, nice):
    d = _short_dir({"model": model, "test.txt": text_file})
    cmd = prefix(cpu, nice) + [binary, "-rnnlm", "model", "-test", "test.txt"]
    try:
        out, _, wall, ru, rc = _run_timed(cmd, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    lp = re.search(r"test log probability: ([-\d.e+naif]+)", out)
    ppl = re.search(r"PPL net: ([-\d.e+naif]+)", out)
    if rc != 0 or not lp or not ppl:
        raise RuntimeError(f"rnnlm-0.4b -test failed (exit {rc}): {' '.join(cmd)}\n{out[-2000:]}")
    return cmd, float(lp.group(1)), float(ppl.group(1)), wall, ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime


def test(binary: str, model: str, text_file: str, *, cpu: int | None = None, nice: int | None = None,
         runs: int = 1, load_time: bool = True) -> TestResult:
    """rnnlm -rnnlm MODEL -test FILE: log10 probability and PPL net as printed; wall time the median
    of `runs` runs; with load_time, also the median time of the same run on the file's first line."""
    walls, cpus = [], []
    for _ in range(max(1, runs)):
        cmd, lp, ppl, wall, rss, cpu_s = _test_once(binary, model, text_file, cpu, nice)
        walls.append(wall)
        cpus.append(cpu_s)
    load = load_cpu = None
    if load_time:
        with open(text_file, "rb") as src, tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as one:
            one.write(src.readline())
        try:
            got = [_test_once(binary, model, one.name, cpu, nice) for _ in range(max(1, runs))]
            load = statistics.median(g[3] for g in got)
            load_cpu = statistics.median(g[5] for g in got)
        finally:
            os.remove(one.name)
    words = round(-lp / math.log10(ppl)) if ppl > 1 else 0
    return TestResult(cmd=cmd, log10_prob=lp, ppl=ppl, words_scored=words, tokens=count_tokens(text_file),
                      wall_seconds=statistics.median(walls), load_seconds=load, peak_rss_mb=rss,
                      cpu_seconds=statistics.median(cpus), load_cpu_seconds=load_cpu)
