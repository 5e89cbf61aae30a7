"""bench.py's start-up timings: the first-ever `rnnlm train` with an empty Numba cache (cold start) and
`rnnlm eval` until its first line of output (warm start), on a tiny file."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def tiny_file(data: str, path: str, lines: int = 300) -> None:
    with open(os.path.join(data, "train.txt"), encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= lines:
                break
            dst.write(line)


def _rnnlm_cmd() -> list[str]:
    return [sys.executable, "-m", "rnnlm"]


def cold_start(row: dict, C: int, tiny: str, tmp: str) -> float:
    """Wall time of the first-ever `rnnlm train` (one epoch of the tiny file, the row's schedule,
    `C` classes (at most 10) and threads) with an empty Numba cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(dir=tmp), RNNLM_CACHE_DIR=tempfile.mkdtemp(dir=tmp))
    schedule = "rnnlm" if row["kind"] == "rnnlm" else "batch"
    cmd = _rnnlm_cmd() + ["train", "--train", tiny, "--valid", tiny, "--model", os.path.join(tmp, "cold.rnnlm"),
                          "--force", "--hidden", "8", "--classes", str(min(C, 10)), "--schedule", schedule,
                          "--bptt", str(row["T"]), "--bptt-block", "10", "--batch-size", str(min(row["B"], 8)),
                          "--max-epochs", "1", "--threads", str(row["threads"]), "--checkpoint-words", "0"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def warm_start(model: str, tiny: str) -> float:
    """Seconds from launching `rnnlm eval MODEL TINY` to its first line of output (second run)."""
    t = None
    for _ in range(2):
        t0 = time.perf_counter()
        p = subprocess.Popen(_rnnlm_cmd() + ["eval", model, tiny], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        p.stdout.readline()
        t = time.perf_counter() - t0
        p.communicate()
        if p.returncode:
            raise RuntimeError(f"rnnlm eval {model} failed")
    return t
