"""Suspend and resume of a VM with the Bluetooth controller, end to end under TCG.

The controller's state lives in its host side (the Bumble peer), not in QEMU, so
before a suspend the glue takes the controller's link down (its chardev swapped
for a null one: the USB device detaches in the guest). The resumed QEMU connects
to the peer again, the device attaches again and the guest's btusb probes the
controller afresh: the guest has a working controller again, maybe under a new
index.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from glue.agent_client import AgentClient, AgentError
from glue.bt_backend import (DEFAULT_ADVERTISER_ADDRESS, DEFAULT_ADVERTISER_NAME,
                             DEFAULT_CONTROLLER_ADDRESS)
from lifecycle_harness import Glue, write_profile

pytestmark = pytest.mark.e2e

DEVICES = """\
battery: {source: simulated}
bluetooth: {peer: bumble}
balloon: {}
"""
CONTROLLER = DEFAULT_CONTROLLER_ADDRESS.lower()
ADVERTISER = DEFAULT_ADVERTISER_ADDRESS.lower()
RESUME_HCI_TIMEOUT_S = 30.0


def _name(tmp_name: str) -> str:
    return f"lcbt-{tmp_name[-20:].lower().replace('_', '-')}"[:32].rstrip("-")


@pytest.fixture
def glue(tmp_path, build_outputs, guest_image):
    name = _name(tmp_path.name)
    profile = write_profile(tmp_path, name, devices=DEVICES)
    g = Glue(profile, name, build_outputs.root, tmp_path / "state")
    try:
        yield g
    finally:
        g.stop()
        # the glue's QEMU dies with it; its Bumble peer may not: anything still
        # running on this test's runtime directory goes
        subprocess.run(["pkill", "-KILL", "-f", str(g.rundir)], check=False)
        shutil.rmtree(g.rundir, ignore_errors=True)     # a killed glue leaves it


def _diagnose(glue: Glue, agent: AgentClient | None) -> str:
    parts = [f"--- glue log {glue.log}:\n{glue.text()[-6000:]}"]
    for name in ("qemu.log", "bt-peer.log"):
        path = glue.rundir / name
        if path.exists():
            parts.append(f"--- {path}:\n{path.read_text(errors='replace')[-4000:]}")
    if agent is not None:
        try:
            dmesg = agent.sh("dmesg | grep -i -E 'bluetooth|btusb|usb|hci' | tail -40").output
            parts.append(f"--- guest dmesg (Bluetooth/USB):\n{dmesg}")
        except (AgentError, OSError) as exc:
            parts.append(f"--- guest dmesg: {exc}")
    return "\n".join(parts)


def _wait_hci(glue: Glue, agent: AgentClient, timeout: float, what: str) -> list:
    deadline = time.monotonic() + timeout
    while True:
        devs = agent.hci_list()
        if devs:
            return devs
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: no Bluetooth controller in the guest after {timeout} s\n"
                        + _diagnose(glue, agent))
        time.sleep(0.3)


def _wait_new_controller(glue: Glue, agent: AgentClient, timeout: float) -> int:
    """The index of the resumed guest's one controller once it comes up. The
    detach before the suspend may reach the guest's USB stack only after the
    resume, so the old hci device can be listed for a moment and then go away
    ("no such controller"); the new one is the only one left."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        devs = agent.hci_list()
        last = devs
        if len(devs) == 1:
            try:
                agent.hci_up(devs[0].index)
                return devs[0].index
            except AgentError as exc:           # the old one, going away
                last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"after the resume: not one working controller after {timeout} s "
                        f"({last})\n" + _diagnose(glue, agent))
        time.sleep(0.3)


def _controller_works(glue: Glue, agent: AgentClient, index: int) -> None:
    """hci<index> comes up with the peer's controller address, and an LE scan
    sees the peer's advertiser."""
    agent.hci_up(index)
    info = agent.hci_info(index)
    assert info.up, info
    assert info.address == CONTROLLER, (info, _diagnose(glue, agent))
    adverts = agent.le_scan(index, 3000)
    seen = [a for a in adverts if a.name == DEFAULT_ADVERTISER_NAME]
    assert seen, (adverts, _diagnose(glue, agent))
    assert seen[0].address == ADVERTISER


def test_bluetooth_works_again_after_suspend_and_resume(glue):
    assert glue.running() == "cold"
    agent = glue.agent()
    devs = _wait_hci(glue, agent, 60, "after the cold boot")
    assert [d.name for d in devs] == ["hci0"], devs
    _controller_works(glue, agent, 0)
    st = glue.event("status")
    assert st["bridges"].get("bluetooth") == "ok", st
    agent.close()

    log_mark = len(glue.text())
    reply = glue.event("suspend")
    assert reply["ok"] and reply["state"] == "suspended", (reply, _diagnose(glue, None))
    record = glue.journal()
    assert record.state == "suspended" and record.checkpoint is not None, record
    assert glue.event("status")["state"] == "suspended"

    t0 = time.monotonic()
    reply = glue.event("foreground")
    assert reply["ok"] and reply["state"] == "running", (reply, _diagnose(glue, None))
    assert glue.running(after=log_mark) == "checkpoint"
    st = glue.event("status")
    assert st["source"] == "checkpoint", st
    assert glue.journal().checkpoint is None            # the guest runs on it again

    agent = glue.agent()
    index = _wait_new_controller(glue, agent, RESUME_HCI_TIMEOUT_S)
    took = time.monotonic() - t0
    print(f"foreground to a guest controller again: {took:.1f} s (hci{index})")
    _controller_works(glue, agent, index)
    st = glue.event("status")
    assert st["bridges"].get("bluetooth") == "ok", st
    assert st["state"] == "running"
    agent.close()

    assert glue.shutdown() == 0
    assert glue.journal().state == "suspended"          # the profile's on_shutdown
