"""What every published figure carries: results/NAME.json with the revision, the date, the machine, the
exact command line and the printed table's figures as rows with named fields (bench.py, ptb_rnnlm.py).

Scripts call start() when they start (the revision is taken then) and write() at the end.

The top-level layout is the one scripts/render_results.py reads (name, revision: the 40-character sha,
dirty, date "YYYY-MM-DD HH:MM UTC", machine: one line, command: "python scripts/NAME.py ARGS",
tables: {TABLE: {columns, rows: the printed cells, note}}); beside it: machine_info (CPU model, cores,
Python/NumPy/Numba versions, load average at the start and the end as dicts), argv (the interpreter
and arguments as run) and rows (every figure, one dict of named fields per table row)."""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_AT_START: dict | None = None   # revision() when the run started (start())


def start() -> float:
    """Call when the measuring starts: notes the revision then (what is measured is the code at the
    start, whatever a later edit or commit does to the tree) and returns time.time() for write()."""
    global _AT_START
    _AT_START = revision()
    return time.time()


def revision() -> dict:
    """git rev-parse HEAD of the repository the scripts are in, and whether tracked files differ from it
    (results/ itself is left out of the check: that is where this run writes)."""
    def git(*a):   # stdout without its final newline (a status line starts with a space: keep it)
        try:
            return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.rstrip("\n")
        except OSError:
            return ""
    head = git("rev-parse", "HEAD")
    status = [ln for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()
              if not ln[3:].startswith("results/")]
    return dict(commit=head or None, dirty=bool(status) or not head, branch=git("rev-parse", "--abbrev-ref", "HEAD") or None)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import numba
    import numpy
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return dict(cpu=cpu_model(), cores=os.cpu_count(), affinity=affinity, hostname=platform.node(),
                kernel=platform.release(), python=platform.python_version(), numpy=numpy.__version__,
                numba=numba.__version__, loadavg=list(os.getloadavg()))


def machine_line(m: dict | None = None) -> str:
    """The machine in one line, as render_results.py prints it."""
    m = m or machine()
    return (f"{m['cores']}-core {m['cpu']}, Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}, "
            f"load average at the end {m['loadavg'][0]:.2f}")


def command() -> str:
    """python scripts/NAME.py ARGS (the interpreter as `python`; argv in the JSON has it exactly)."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT) if sys.argv else "?"
    return shlex.join(["python", script, *sys.argv[1:]])


def header() -> str:
    """One line: date, CPU, cores, Python/NumPy/Numba versions, revision."""
    m, r = machine(), revision()
    rev = (r["commit"] or "no git")[:12] + (" (dirty)" if r["dirty"] else "")
    return (f"{time.strftime('%Y-%m-%d %H:%M')}, {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
            f"NumPy {m['numpy']}, Numba {m['numba']}, revision {rev}")


def write(name: str, rows: list[dict], started: float, extra: dict | None = None, out_dir: str | None = None,
          tables: dict | None = None) -> str:
    """results/NAME.json (see the module's docstring): `rows` the figures as dicts, `tables` the printed
    tables as {TABLE: {columns, rows, note}}, `extra` more top-level fields; `started` the run's start
    (time.time()). Returns the path."""
    out_dir = out_dir or os.path.join(ROOT, "results")
    os.makedirs(out_dir, exist_ok=True)
    end, info = revision(), machine()
    rev = _AT_START or end   # a script that did not call start(): the revision at the end
    if end != rev:           # the tree changed while the run went on
        (extra := dict(extra or {})).update(revision_at_end=end)
    doc = dict(name=name, revision=rev["commit"] or "unknown", dirty=rev["dirty"], branch=rev["branch"],
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), seconds=round(time.time() - started, 1),
               machine=machine_line(info), machine_info=info, command=command(),
               argv=[sys.executable, *sys.argv], cwd=os.getcwd(), tables=tables or {}, **(extra or {}), rows=rows)
    path = os.path.join(out_dir, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, default=_default)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def _default(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
