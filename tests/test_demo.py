"""scripts/demo.py on a tiny stand-in for the bundled corpus: it trains with the options given, prints
the table and writes its JSON record (revision, date, machine, command, the printed figures)."""
import json
import os
import subprocess
import sys

from tiny import synthetic_heads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_writes_its_record(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    synthetic_heads(data, {"train": 500, "valid": 60, "test": 60})
    (data / "stats.json").write_text(json.dumps({"true_ppl": {"valid": 20.0, "test": 20.0}}))
    rec = tmp_path / "r" / "demo.json"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo.py"), "--data", str(data),
                          "--out", str(tmp_path / "run"), "--results", str(rec), "--hidden", "8",
                          "--max-epochs", "2", "--samples", "1", "--asgd", "--patience", "2", "--dropout", "0.1"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.load(open(rec))
    assert r["command"].startswith("python scripts/demo.py ") and "--asgd" in r["command"].split()
    assert r["settings"]["asgd"] is True and r["settings"]["patience"] == 2
    assert r["revision"] and len(r["revision"]) == 40 and "core" in r["machine"] and r["date"].endswith("UTC")
    assert r["tables"]["perplexity"]["columns"] == ["perplexity", "valid", "test"]
    f = r["figures"]
    assert 1 < f["rnn"]["test"] < f["unigram"]["test"] and f["true"]["test"] == 20.0
    assert abs(f["test_above_true_percent"] - 100 * (f["rnn"]["test"] / 20.0 - 1)) < 1e-9
    assert f"| this RNN (hidden 8) | {f['rnn']['valid']:.2f} | {f['rnn']['test']:.2f} |" in out.stdout
    assert r["epochs"] == 2 and 0 < r["train_seconds_cpu"] and 0 < r["train_seconds_wall"]
    from rnnlm.model.config import TrainConfig
    from rnnlm.model.file import load_model
    tc = TrainConfig.from_dict(load_model(str(tmp_path / "run" / "demo.rnnlm")).meta["train"])
    assert tc.asgd and tc.patience == 2 and tc.dropout == 0.1
