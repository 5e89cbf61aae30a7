"""Write `results/NAME.json`: what a measuring script found, with where, when and how it was measured.

    from resultfile import write_results
    write_results("demo", {"perplexity": {"columns": [...], "rows": [[...], ...]}})

The file records the git revision (and whether the tree had uncommitted changes), the date (UTC), the
machine (CPU model, cores, load average, Python / NumPy / Numba versions) and the exact command line;
scripts/render_results.py turns its tables into the documents' tables.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def revision() -> tuple[str, bool]:
    """(HEAD's sha, whether tracked files differ from it); ("unknown", True) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip() != ""
        return sha, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    parts = [f"{cores}-core {cpu}", f"Python {platform.python_version()}"]
    for mod in ("numpy", "numba"):
        try:
            parts.append(f"{mod.capitalize() if mod != 'numpy' else 'NumPy'} {__import__(mod).__version__}")
        except ImportError:
            pass
    try:
        parts.append("load average at the end %.2f" % os.getloadavg()[0])
    except OSError:
        pass
    return ", ".join(parts)


def command(argv=None) -> str:
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(os.path.abspath(argv[0]), ROOT) if argv else "?"
    return " ".join(["python", shlex.quote(script)] + [shlex.quote(a) for a in argv[1:]])


def write_results(name: str, tables: dict, extra: dict | None = None, out_dir: str | None = None) -> str:
    """Write results/NAME.json (atomically) and return its path."""
    sha, dirty = revision()
    data = dict(name=name, revision=sha, dirty=dirty,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                machine=machine(), command=command(), tables=tables, **(extra or {}))
    out_dir = out_dir or os.path.join(ROOT, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    return path
