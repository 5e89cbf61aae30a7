import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared")
sys.path.insert(0, HERE)
# `rnnlm train` without --threads uses every core; the suite pins one so that what it trains does not
# depend on the machine (tests of the default unset it)
os.environ["RNNLM_THREADS"] = "1"


@pytest.fixture
def shared_dir():
    if not os.path.isdir(SHARED):
        pytest.skip(f"../shared not found at {os.path.abspath(SHARED)}: shared corpora/fixtures are absent")
    return os.path.abspath(SHARED)
