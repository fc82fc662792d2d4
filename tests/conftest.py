import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden and tests/bad-specs/*.err from current output")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden") or os.environ.get("TABVM_UPDATE_GOLDEN") == "1"
