"""scripts/ptb.sh end to end on a tiny stand-in for PTB (the bundled corpus): it trains the chosen
model, picks the dynamic-evaluation rate on valid, evaluates test, and prints the table row."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tiny import synthetic_heads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_ptb_recipe_on_a_tiny_corpus(tmp_path):
    ptb = tmp_path / "ptb"
    ptb.mkdir()
    synthetic_heads(ptb, {"train": 600, "valid": 80, "test": 80})
    env = dict(os.environ, PYTHON=sys.executable,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "ptb.sh"), "--ptb", str(ptb), "--out",
                          str(tmp_path / "out"), "--only", "h50"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "out" / "results.jsonl")]
    assert [r["name"] for r in rows] == ["h50"]
    r = rows[0]
    assert r["dynamic_lr"] in (0.01, 0.02, 0.03, 0.05, 0.1)
    assert 1 < r["test"] < 364 and 1 < r["test_dynamic"] < 364 and r["epochs"] >= 1
    assert "| rnnlm `h50`:" in out.stdout and "| RNNLM (published" in out.stdout
    # the Kneser-Ney 5-gram interpolation: lambda chosen on valid (no worse there than either model
    # alone, as lambda 0 and 1 are on the grid), test read with it
    k = r["kn5"]
    assert 0 <= k["lam"] <= 1 and 0 <= k["lam_dynamic"] <= 1
    assert k["valid"] <= min(r["valid"], k["kn5_valid"]) + 1e-6
    assert k["valid_dynamic"] <= min(r["valid_dynamic"], k["kn5_valid"]) + 1e-6
    assert 1 < k["test"] < 364 and 1 < k["test_dynamic"] < 364
    assert "| `h50` + KN5 |" in out.stdout
    # a missing corpus: one line, exit 1
    bad = subprocess.run(["bash", os.path.join(ROOT, "scripts", "ptb.sh"), "--ptb", str(tmp_path / "none")],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr
