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


@pytest.fixture(scope="session")
def build_outputs():
    """QEMU with the generated devices, firmware and AML: `tabvm build` (incremental);
    with TABVM_BUNDLE=DIR, a cross-built bundle instead (its manifest checked)."""
    from glue.profile import BuildOutputs, default_outputs
    from tabvm.cli import build

    if os.environ.get("TABVM_BUNDLE"):
        outputs = BuildOutputs(Path(os.environ["TABVM_BUNDLE"]))
        outputs.check()
        return outputs
    rc = build()
    assert rc == 0, "tabvm build failed (see the output above)"
    outputs = default_outputs()
    outputs.check()
    return outputs


@pytest.fixture(scope="session")
def guest_image():
    from tabvm.guest import build_guest
    return build_guest(progress=lambda msg: print("guest:", msg))


@pytest.fixture(scope="session")
def desktop_image(build_outputs):
    """The Debian desktop image (built on first use, then from its cache)."""
    from tabvm.desktop_image import build_desktop_image
    return build_desktop_image(progress=lambda m: print("desktop image:", m))


@pytest.fixture(scope="session")
def agent_bin(tmp_path_factory):
    """The static guest agent, built for this host."""
    from tabvm import guest
    path = tmp_path_factory.mktemp("agent") / "tabvm-agent"
    guest.compile_agent(path)
    return path


@pytest.fixture
def real_agent(agent_bin):
    """(client, process) of the real agent serving a pty."""
    from fake_agent import PtyAgents
    agents = PtyAgents()
    yield agents.start(agent_bin)
    agents.stop()
