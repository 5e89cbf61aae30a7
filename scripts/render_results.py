#!/usr/bin/env python
"""Fill the results tables of README.md and docs/*.md from the JSON files the measuring scripts write.

    python scripts/render_results.py            # rewrite every table from results/*.json
    python scripts/render_results.py --check    # exit 1 (and name the table) if any table disagrees

Each measuring script (scripts/demo.py, bench.py, ptb_rnnlm.py, ...) writes `results/NAME.json`
(with scripts/results.py's `write`):

    {"name": NAME, "revision": "<git sha>", "dirty": false, "date": "2026-12-08T01:30:00+00:00",
     "machine": "2-core AMD EPYC 7B13, Python 3.11.7, NumPy 2.4.6, Numba 0.68.1", "command": "python scripts/demo.py",
     "tables": {"TABLE": {"columns": ["model", "valid", ...], "rows": [["...", 20.6, ...], ...],
                          "note": "optional sentence printed under the table"}}}

A document shows a table by a pair of markers; everything between them is generated:

    <!-- results: demo.json#perplexity -->
    ...
    <!-- /results -->

The generated text is the table, then one line saying which command measured it, when, on which
machine and at which revision, so every figure in the documents names its source. The test
tests/test_results.py runs `--check`: a table edited by hand, or a JSON rerun without rendering,
fails it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")
BLOCK = re.compile(r"(<!-- results: (?P<file>[\w.-]+\.json)#(?P<table>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)",
                   re.S)
REQUIRED = ("name", "revision", "date", "machine", "command", "tables")


def documents(root: str = ROOT) -> list[str]:
    docs = [os.path.join(root, "README.md")]
    d = os.path.join(root, "docs")
    if os.path.isdir(d):
        docs += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".md"))
    return docs


def load(name: str, results: str = RESULTS) -> dict:
    path = os.path.join(results, name)
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return data


def cell(v) -> str:
    """Integers with thousands separators, floats as given by the script (already rounded), None empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def render(data: dict, table: str) -> str:
    t = data["tables"][table]
    cols = t["columns"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    for row in t["rows"]:
        if len(row) != len(cols):
            raise ValueError(f"{data['name']}#{table}: a row has {len(row)} cells for {len(cols)} columns")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    rev = data["revision"][:10] + (" + uncommitted changes" if data.get("dirty") else "")
    end = data.get("revision_at_end")
    if end and (end.get("commit"), end.get("dirty")) != (data["revision"], data.get("dirty")):
        rev += " (the tree changed before the run ended)"
    lines.append("")
    if t.get("note"):
        lines.append(t["note"])
        lines.append("")
    lines.append(f"<sub>Measured by `{data['command']}` on {data['date']} ({data['machine']}), revision {rev}; "
                 f"data: `results/{data['name']}.json`.</sub>")
    return "\n".join(lines) + "\n"


def fill(text: str, results: str = RESULTS) -> tuple[str, list[str]]:
    """(text with every block regenerated, the blocks whose content changed)."""
    changed = []

    def sub(m):
        body = render(load(m.group("file"), results), m.group("table"))
        if body != m.group("body"):
            changed.append(f"{m.group('file')}#{m.group('table')}")
        return m.group(1) + body + m.group(5)
    return BLOCK.sub(sub, text), changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table disagrees with its JSON")
    args = ap.parse_args(argv)
    stale = []
    for doc in documents():
        text = open(doc, encoding="utf-8").read()
        new, changed = fill(text)
        stale += [f"{os.path.relpath(doc, ROOT)}: {c}" for c in changed]
        if changed and not args.check:
            with open(doc, "w", encoding="utf-8") as fh:
                fh.write(new)
    for s in stale:
        print(("stale: " if args.check else "rendered: ") + s)
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    raise SystemExit(main())
