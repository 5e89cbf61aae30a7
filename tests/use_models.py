"""Two tiny trained models (and small texts) for the tests of the user-facing verbs.

`unk`: classes 6, hidden 16, --min-count 3 (its vocabulary has <unk>: OOVs are scored as <unk>);
`full`: full softmax, hidden 12, every training word kept (no <unk>: OOVs are skipped);
`direct`: hidden 8, classes 4, direct n-gram connections (10,000 weights, order 3).
"""
import os
from types import SimpleNamespace

import pytest

from rnnlm.cli.app import main
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.data.corpus import prepare
from rnnlm.training.loop import Trainer

SYN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpora", "synthetic")


@pytest.fixture(scope="module")
def use(tmp_path_factory):
    d = tmp_path_factory.mktemp("use")
    lines = open(os.path.join(SYN, "train.txt")).read().splitlines()
    (d / "train.txt").write_text("\n".join(lines[:1200]) + "\n")
    (d / "valid.txt").write_text("\n".join(lines[1200:1300]) + "\n")
    (d / "test.txt").write_text("\n".join(lines[1700:1760]) + "\n\nthe zebra quokka sat\n")
    common = ["train", "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"),
              "--cache-dir", str(d / "cache"), "--max-epochs", "2"]
    for name, extra in (("unk", ["--hidden", "16", "--classes", "6", "--min-count", "3"]),
                        ("full", ["--hidden", "12", "--classes", "0", "--max-epochs", "1"])):
        assert main(common + extra + ["--model", str(d / f"{name}.rnnlm")]) == 0
    pc = prepare(str(d / "train.txt"), str(d / "valid.txt"), num_classes=4, cache_dir=str(d / "cache"))
    mcfg = ModelConfig(vocab_size=len(pc.tokenizer), hidden=8, classes=pc.tokenizer.num_classes,
                       direct_size=10_000, direct_order=3)
    Trainer(mcfg, TrainConfig(max_epochs=1), pc.tokenizer, pc["train"], pc["valid"], str(d / "direct.rnnlm"),
            log=lambda msg: None).run()
    return SimpleNamespace(dir=d, unk=str(d / "unk.rnnlm"), full=str(d / "full.rnnlm"), direct=str(d / "direct.rnnlm"),
                           test=str(d / "test.txt"), train=str(d / "train.txt"))
