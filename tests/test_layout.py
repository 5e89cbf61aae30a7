"""The package's shape: data flows one way, and the arrows between the stages are the ones we mean.

    errors, outputs, runtime  <-  data  <-  model  <-  kernels (nothing of rnnlm outside kernels/)
    training -> use (validation), never the other way; cli on top of everything; interop beside use

Checked on every import statement (also the ones inside functions, which are arrows too), and the
module-level imports must have no cycle."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "rnnlm")


def modules():
    out = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


def imports(path, top_only=False):
    """(rnnlm module imported, line) for each import of rnnlm code in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    nodes = tree.body if top_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("rnnlm"):
            for a in node.names:   # `from rnnlm.kernels import word` imports the module rnnlm.kernels.word
                found.append((f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODS else node.module,
                              node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("rnnlm")]
    return found


MODS = modules()
STAGE_FORBIDS = {   # a module under the key may not import anything under these
    "rnnlm.kernels": ("rnnlm.data", "rnnlm.model", "rnnlm.training", "rnnlm.use", "rnnlm.cli", "rnnlm.interop",
                      "rnnlm.runtime", "rnnlm.outputs", "rnnlm.errors"),
    "rnnlm.data": ("rnnlm.model", "rnnlm.kernels", "rnnlm.training", "rnnlm.use", "rnnlm.cli", "rnnlm.interop"),
    "rnnlm.model": ("rnnlm.training", "rnnlm.use", "rnnlm.cli", "rnnlm.interop"),
    "rnnlm.use": ("rnnlm.training", "rnnlm.cli"),
    "rnnlm.interop": ("rnnlm.training", "rnnlm.cli"),
    "rnnlm.training": ("rnnlm.cli",),
}


@pytest.mark.parametrize("stage", list(STAGE_FORBIDS))
def test_no_arrow_against_the_pipeline(stage):
    bad = []
    for mod, path in MODS.items():
        if mod == stage or mod.startswith(stage + "."):
            for imp, line in imports(path):
                if any(imp == f or imp.startswith(f + ".") for f in STAGE_FORBIDS[stage]):
                    bad.append(f"{os.path.relpath(path, ROOT)}:{line} imports {imp}")
    assert bad == []


def test_no_import_cycle_at_module_level():
    graph = {m: {i for i, _ in imports(p, top_only=True) if i in MODS and i != m} for m, p in MODS.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == []


def test_modules_stay_small():
    big = {os.path.relpath(p, ROOT): n for p in MODS.values() if (n := sum(1 for _ in open(p))) > 500}
    assert big == {}


def test_import_rnnlm_loads_nothing_heavy():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import rnnlm, sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert "numba" not in out and "numpy" not in out and [m for m in out if m.startswith("rnnlm")] == [
        "rnnlm.errors", "rnnlm"]
