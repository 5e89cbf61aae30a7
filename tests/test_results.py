"""Every results table in README.md and docs/*.md is what scripts/render_results.py makes of the JSON
its measuring script wrote: a figure edited by hand, or a rerun that was not rendered, fails here."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


render = _load("render_results")


@pytest.mark.parametrize("doc", [os.path.relpath(d, ROOT) for d in render.documents()])
def test_tables_agree_with_their_json(doc):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    new, changed = render.fill(text)
    assert changed == [], f"{doc}: tables differ from results/*.json ({changed}); run python scripts/render_results.py"


def test_every_results_file_names_its_source():
    d = os.path.join(ROOT, "results")
    names = sorted(f for f in os.listdir(d) if f.endswith(".json")) if os.path.isdir(d) else []
    for name in names:
        data = render.load(name)
        assert data["name"] + ".json" == name
        assert len(data["revision"]) == 40 and data["command"].startswith("python scripts/"), name
        for tid, t in data["tables"].items():
            assert t["rows"] and all(len(r) == len(t["columns"]) for r in t["rows"]), (name, tid)


def test_a_hand_edit_is_caught_and_rendering_restores_it(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    data = dict(name="toy", revision="a" * 40, dirty=False, date="2026-12-08 00:00 UTC", machine="test machine",
                command="python scripts/toy.py --n 3",
                tables={"t": {"columns": ["model", "ppl", "words/s"], "rows": [["rnn", 20.634, 35712], ["kn", 36.09, None]]}})
    (res / "toy.json").write_text(json.dumps(data))
    doc = "intro\n<!-- results: toy.json#t -->\nold\n<!-- /results -->\nafter\n"
    new, changed = render.fill(doc, str(res))
    assert changed == ["toy.json#t"]
    assert "| rnn | 20.63 | 35,712 |" in new and "| kn | 36.09 |  |" in new
    assert "`python scripts/toy.py --n 3`" in new and "aaaaaaaaaa" in new and new.endswith("<!-- /results -->\nafter\n")
    assert render.fill(new, str(res)) == (new, [])
    edited = new.replace("20.63", "19.99")
    assert render.fill(edited, str(res))[1] == ["toy.json#t"]


def test_results_file_records_revision_machine_and_command(tmp_path):
    import time
    rf = _load("results")
    path = rf.write("probe", [{"a": 1}], time.time(), out_dir=str(tmp_path),
                    tables={"t": {"columns": ["a"], "rows": [[1]]}})
    data = json.loads(open(path).read())
    assert data["name"] == "probe" and data["tables"]["t"]["rows"] == [[1]] and data["rows"] == [{"a": 1}]
    assert "Python" in data["machine"] and "core" in data["machine"] and len(data["revision"]) == 40
    assert data["date"].endswith("UTC") and isinstance(data["dirty"], bool)
    assert render.render(data, "t").startswith("| a |")
