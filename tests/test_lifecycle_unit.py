"""The lifecycle's decisions and files without QEMU: the journal (atomic under
SIGKILL), where a start comes from for every journal/template state, the
session lock, sparse RAM copies, stale QEMU cleanup."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glue.journal import Checkpoint, Journal, JournalError, Record, boot_id
from glue.lifecycle import Disk, Lifecycle
from glue.profile_spec import load_profile
from glue.qemu import VmConfig
from glue.session import QemuImg, Session, SessionError, config_key, sparse_copy
from tabvm.paths import REPO

MiB = 1 << 20


@pytest.fixture
def base(tmp_path) -> VmConfig:
    for name in ("qemu", "vmlinux", "initrd"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "bios.bin").write_bytes(b"bios")
    return VmConfig(qemu=tmp_path / "qemu", firmware_dir=tmp_path / "fw",
                    kernel=tmp_path / "vmlinux", initrd=tmp_path / "initrd",
                    devices=("tabvm-battery,id=battery",))


def lifecycle(tmp_path, base, disk=True, **policy) -> Lifecycle:
    snap = dataclasses.replace(load_profile(REPO / "profiles" / "default.yaml").snapshot,
                               **policy)
    return Lifecycle(base, 512 * MiB, tmp_path / "run", Session(tmp_path / "state"),
                     QemuImg(tmp_path / "qemu-img"),
                     Disk(tmp_path / "base.img", "raw") if disk else None, snap,
                     log=lambda *a, **k: None)


def checkpoint(lc: Lifecycle, **kw) -> Checkpoint:
    (lc.session.dir / "devstate-3").write_bytes(b"state")
    lc.session.ram.write_bytes(b"ram")
    fields = dict(device_state="devstate-3", ram="ram", config_key=lc.key, boot_id=boot_id(),
                  durable=False)
    return Checkpoint(**{**fields, **kw})


def make_template(lc: Lifecycle, key: str | None = None) -> None:
    t = lc.session.template
    t.mkdir()
    for name in ("ram", "devstate", "disk.qcow2"):
        (t / name).write_bytes(b"x")
    (t / "meta.json").write_text(json.dumps({"config_key": key or lc.key}))


def test_journal_round_trip_and_garbage(tmp_path):
    j = Journal(tmp_path)
    assert j.load() is None
    rec = Record("suspended", 4, Checkpoint("devstate-4", "ram", "k", "b", True), clean=True)
    j.commit(rec)
    assert j.load() == rec
    assert oct(j.path.stat().st_mode & 0o777) == "0o600"
    for bad in ("", "{", "[]", '{"version": 9}', '{"version": 1, "state": "flying", '
                '"epoch": 1, "checkpoint": null, "clean": true, "notes": {}}',
                '{"version": 1, "checkpoint": {"x": 1}}'):
        j.path.write_text(bad)
        with pytest.raises(JournalError, match="unreadable journal"):
            j.load()


def test_journal_commit_is_atomic_under_sigkill(tmp_path):
    """A writer killed at random moments leaves the old record or the new one."""
    code = ("import sys; from pathlib import Path; from glue.journal import Journal, Record\n"
            "j = Journal(Path(sys.argv[1])); i = 0\n"
            "while True:\n"
            "    i += 1; j.commit(Record('running', i, None, clean=False, "
            "notes={'pad': 'x' * (i % 5000)}))\n")
    Journal(tmp_path).commit(Record("running", 0, None))
    for delay in (0.05, 0.11, 0.2, 0.23, 0.31, 0.37, 0.5, 0.61):
        proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rec = Journal(tmp_path).load()             # never raises: whole records only
        assert rec is not None and rec.state == "running"


def test_fresh_session_is_a_cold_boot_or_the_template(tmp_path, base):
    lc = lifecycle(tmp_path, base)
    plan, _ = lc.plan()
    assert plan.source == "cold" and "no saved session" in plan.reason
    assert "no golden template" in plan.reason
    make_template(lc)
    assert lc.plan()[0].source == "template"


def test_a_template_for_another_configuration_is_not_used(tmp_path, base):
    lc = lifecycle(tmp_path, base)
    make_template(lc, key="0123456789abcdef")
    plan, _ = lc.plan()
    assert plan.source == "cold" and "another VM configuration" in plan.reason


def test_templates_off_in_the_profile(tmp_path, base):
    lc = lifecycle(tmp_path, base, template=False)
    make_template(lc)
    assert "templates are off" in lc.plan()[0].reason


def test_a_used_session_never_starts_from_the_template(tmp_path, base):
    """The template's RAM knows nothing of the session disk's data."""
    lc = lifecycle(tmp_path, base)
    make_template(lc)
    lc.session.disk.write_bytes(b"user data")
    lc.session.journal.commit(Record("running", 5, None, clean=False))
    plan, record = lc.plan()
    assert plan.source == "cold" and "ended without a suspend" in plan.reason
    assert record.epoch == 5 and not record.clean


def test_without_a_disk_the_template_serves_after_a_crash(tmp_path, base):
    lc = lifecycle(tmp_path, base, disk=False)
    make_template(lc)
    lc.session.journal.commit(Record("running", 5, None, clean=False))
    assert lc.plan()[0].source == "template"


def test_a_checkpoint_resumes(tmp_path, base):
    lc = lifecycle(tmp_path, base)
    lc.session.journal.commit(Record("suspended", 3, checkpoint(lc), clean=True))
    plan, record = lc.plan()
    assert plan.source == "checkpoint" and record.epoch == 3


@pytest.mark.parametrize("change,reason", [
    (dict(config_key="0000000000000000"), "configuration changed"),
    (dict(boot_id="another-boot"), "host rebooted"),
    (dict(device_state="devstate-9"), "devstate-9 is missing"),
])
def test_an_unusable_checkpoint_is_a_cold_boot(tmp_path, base, change, reason):
    lc = lifecycle(tmp_path, base)
    cp = dataclasses.replace(checkpoint(lc), **change)
    lc.session.journal.commit(Record("suspended", 3, cp, clean=True))
    plan, _ = lc.plan()
    assert plan.source == "cold" and reason in plan.reason, plan


def test_a_durable_checkpoint_survives_a_reboot(tmp_path, base):
    lc = lifecycle(tmp_path, base)
    cp = dataclasses.replace(checkpoint(lc), boot_id="another-boot", durable=True)
    lc.session.journal.commit(Record("suspended", 3, cp, clean=True))
    assert lc.plan()[0].source == "checkpoint"


def test_an_unreadable_journal_is_a_cold_boot_that_checks_the_disk(tmp_path, base):
    lc = lifecycle(tmp_path, base)
    lc.session.journal.path.write_text("{garbage")
    plan, record = lc.plan()
    assert plan.source == "cold" and "unreadable journal" in plan.reason
    assert record.clean is False            # the disk gets qemu-img check -r leaks


def test_the_configuration_key(tmp_path, base):
    rundir = tmp_path / "run"
    key = config_key(base, rundir, True)
    assert key == config_key(base, rundir, True)
    assert key != config_key(base, rundir, False)
    assert key != config_key(dataclasses.replace(base, memory="1024M"), rundir, True)
    # paths inside the runtime directory do not matter
    a = dataclasses.replace(base, chardevs=(f"socket,id=x,path={rundir}/x.sock",))
    b = dataclasses.replace(base, chardevs=(f"socket,id=x,path={tmp_path}/other/x.sock",))
    assert config_key(a, rundir, True) == config_key(b, tmp_path / "other", True)
    time.sleep(0.01)
    base.qemu.write_bytes(b"rebuilt qemu")        # a rebuild invalidates saved states
    assert key != config_key(base, rundir, True)


def test_sparse_copy_keeps_holes(tmp_path):
    src, dst = tmp_path / "ram", tmp_path / "copy"
    with src.open("wb") as f:
        f.truncate(64 * MiB)
        f.seek(5 * MiB)
        f.write(b"a" * MiB)
        f.seek(40 * MiB)
        f.write(os.urandom(2 * MiB))
    copied = sparse_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert copied <= 4 * MiB
    assert dst.stat().st_blocks * 512 <= 4 * MiB and dst.stat().st_size == 64 * MiB
    empty = tmp_path / "empty"
    with empty.open("wb") as f:
        f.truncate(8 * MiB)
    assert sparse_copy(empty, tmp_path / "e2") == 0


def test_one_glue_per_session(tmp_path):
    s1 = Session(tmp_path / "state")
    s1.lock()
    s2 = Session(tmp_path / "state")
    with pytest.raises(SessionError, match=f"in use by another tabvm \\(pid {os.getpid()}\\)"):
        s2.lock()
    s1.unlock()
    s2.lock()
    s2.unlock()
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"


def test_a_stale_qemu_of_this_session_is_killed(tmp_path):
    s = Session(tmp_path / "state")
    stale = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              f"mem-path={s.ram}"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        s.record_qemu(other.pid)                  # not ours: left alone
        assert s.kill_stale_qemu() is None and other.poll() is None
        s.record_qemu(stale.pid)
        assert s.kill_stale_qemu() == stale.pid
        assert stale.wait(5) == -signal.SIGKILL
    finally:
        for p in (stale, other):
            p.kill()
            p.wait()


def test_status_without_qemu(tmp_path, base):
    lc = lifecycle(tmp_path, base)
    st = lc.status()
    assert st["state"] == "stopped" and st["memory"]["guest_mib"] == 512
    lc.bridges["broken"] = lambda: 1 / 0
    assert lc.status()["bridges"]["broken"].startswith("error:")


def test_suspend_refused_when_not_running(tmp_path, base):
    from glue.lifecycle import LifecycleError
    with pytest.raises(LifecycleError, match="cannot suspend: the VM is stopped"):
        lifecycle(tmp_path, base).suspend()


def test_base_is_not_touched_by_plan(tmp_path, base):
    lc = lifecycle(tmp_path, base)
    lc.plan()
    assert sorted(p.name for p in lc.session.dir.iterdir()) == []
    assert not Path(tmp_path / "base.img").exists()


def test_qmp_listens_on_tcp_only_when_asked(build_outputs, tmp_path):
    from glue.profile import builtin_profile
    from glue.qemu import Qemu
    kernel = initrd = tmp_path / "k"
    kernel.write_bytes(b"")
    plain = Qemu(builtin_profile(build_outputs, kernel, initrd, "tcg"), tmp_path).command()
    assert not [a for a in plain if "tcp:" in a or "host=" in a]
    assert "-nodefaults" in plain
    assert f"unix:{tmp_path}/qmp.sock,server=on,wait=off" in plain
    asked = Qemu(builtin_profile(build_outputs, kernel, initrd, "tcg",
                                 qmp_tcp=("127.0.0.1", 4444)), tmp_path).command()
    assert "tcp:127.0.0.1:4444,server=on,wait=off" in asked
    v6 = Qemu(builtin_profile(build_outputs, kernel, initrd, "tcg",
                              qmp_tcp=("::1", 4444)), tmp_path).command()
    assert "tcp:[::1]:4444,server=on,wait=off" in v6
