"""glue/accel.py (accelerator choice, console wait) and glue/runtime.py (private run dirs)."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

import glue.accel as accel
from glue.accel import VERDICT_FILE, select_accel, wait_for_console
from glue.runtime import RuntimeDirError, new_runtime_dir, private_dir, runtime_base


# --- select_accel -----------------------------------------------------------------------

class Probe:
    def __init__(self, result: bool):
        self.result, self.calls = result, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.result


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("TABVM_CACHE", str(root))
    monkeypatch.setattr(accel, "_boot_id", lambda: "boot-1")
    monkeypatch.setattr(accel, "kvm_openable", lambda: True)
    return root


def verdict(cache: Path) -> Path:
    return cache / "accel" / VERDICT_FILE


@pytest.mark.parametrize("wanted", ["tcg", "kvm"])
def test_explicit_accel_is_returned_as_is(cache, monkeypatch, wanted):
    monkeypatch.setattr(accel, "kvm_openable", lambda: pytest.fail("kvm_openable called"))
    probe = Probe(True)
    assert select_accel(wanted, probe) == wanted
    assert probe.calls == 0
    assert not verdict(cache).exists()


@pytest.mark.parametrize("wanted", ["hvf", "", "KVM", "Auto"])
def test_unknown_accel(cache, wanted):
    with pytest.raises(ValueError, match="unknown accelerator"):
        select_accel(wanted, Probe(True))


def test_auto_without_kvm_device_is_tcg_without_probe(cache, monkeypatch):
    monkeypatch.setattr(accel, "kvm_openable", lambda: False)
    probe = Probe(True)
    assert select_accel("auto", probe) == "tcg"
    assert probe.calls == 0
    assert not verdict(cache).exists()


def test_auto_without_probe_is_tcg(cache):
    assert select_accel("auto", None) == "tcg"


@pytest.mark.parametrize("result,expected", [(True, "kvm"), (False, "tcg")])
def test_auto_probes_once_and_caches(cache, result, expected):
    probe = Probe(result)
    assert select_accel("auto", probe) == expected
    assert probe.calls == 1
    assert verdict(cache).read_text() == f"boot-1 {expected}\n"
    # cached for this boot, whatever the probe would say now
    probe.result = not result
    assert select_accel("auto", probe) == expected
    assert select_accel("auto", probe) == expected
    assert probe.calls == 1


def test_other_boot_reprobes(cache, monkeypatch):
    probe = Probe(True)
    assert select_accel("auto", probe) == "kvm"
    monkeypatch.setattr(accel, "_boot_id", lambda: "boot-2")
    probe.result = False
    assert select_accel("auto", probe) == "tcg"
    assert probe.calls == 2
    assert verdict(cache).read_text() == "boot-2 tcg\n"


def test_cache_stays_under_tabvm_cache(cache):
    select_accel("auto", Probe(True))
    assert [p.relative_to(cache).as_posix() for p in cache.rglob("*")] \
        == ["accel", f"accel/{VERDICT_FILE}"]


# --- wait_for_console -------------------------------------------------------------------

def test_wait_sees_marker_written_later(tmp_path):
    log = tmp_path / "console.log"

    def writer():
        time.sleep(0.2)
        log.write_text("SeaBIOS\nLinux version ...\n")
        time.sleep(0.2)
        with log.open("a") as f:
            f.write("tabvm-guest: ready\n")

    th = threading.Thread(target=writer)
    t0 = time.monotonic()
    th.start()
    try:
        assert wait_for_console(log, "tabvm-guest: ready", 10, lambda: True) is True
    finally:
        th.join()
    assert time.monotonic() - t0 < 5


def test_wait_times_out(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("booting\n")
    t0 = time.monotonic()
    assert wait_for_console(log, "ready", 0.3, lambda: True) is False
    assert 0.3 <= time.monotonic() - t0 < 3


def test_wait_missing_file_times_out(tmp_path):
    assert wait_for_console(tmp_path / "never", "ready", 0.2, lambda: True) is False


def test_wait_stops_when_process_exits(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("kernel panic\n")
    calls = []

    def alive():
        calls.append(1)
        return len(calls) < 3

    t0 = time.monotonic()
    assert wait_for_console(log, "ready", 5, alive) is False
    assert time.monotonic() - t0 < 2
    assert len(calls) == 3


def test_wait_binary_garbage_in_log(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(b"\xff\xfe\x00garbage\xc3(ready\n")
    assert wait_for_console(log, "ready", 2, lambda: True) is True


# --- runtime dirs -----------------------------------------------------------------------

def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    d = tmp_path / "xdg"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def test_runtime_base_under_xdg(xdg):
    assert runtime_base() == xdg / "tabvm"


def test_new_runtime_dir_is_private(xdg):
    d = new_runtime_dir("unit")
    assert d.parent == xdg / "tabvm"
    assert d.name.startswith("unit-")
    assert d.is_dir()
    assert mode(d) == 0o700 and mode(d.parent) == 0o700
    assert d.stat().st_uid == os.getuid()
    other = new_runtime_dir("unit")
    assert other != d and other.parent == d.parent


def test_loose_existing_base_is_tightened(xdg):
    base = xdg / "tabvm"
    base.mkdir()
    os.chmod(base, 0o755)
    d = new_runtime_dir()
    assert mode(base) == 0o700
    assert mode(d) == 0o700


def test_base_that_is_a_regular_file_is_refused(xdg):
    base = xdg / "tabvm"
    base.write_text("not a dir\n")
    with pytest.raises(RuntimeDirError, match="cannot create"):
        new_runtime_dir()
    assert base.read_text() == "not a dir\n"


def test_base_that_is_a_symlink_is_refused(xdg, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (xdg / "tabvm").symlink_to(elsewhere)
    with pytest.raises(RuntimeDirError, match="not a directory owned"):
        new_runtime_dir()
    assert list(elsewhere.iterdir()) == []
    assert mode(elsewhere) == 0o755


def test_private_dir_needs_its_parent(tmp_path):
    with pytest.raises(RuntimeDirError, match="cannot create"):
        private_dir(tmp_path / "missing" / "run")
    assert not (tmp_path / "missing").exists()


@pytest.fixture
def shared_tmp(tmp_path, monkeypatch):
    """No XDG_RUNTIME_DIR; the temp dir is a shared sticky 1777 directory like /tmp."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(shared))
    return shared


def test_fallback_base_is_in_temp_dir(shared_tmp):
    assert runtime_base() == shared_tmp / f"tabvm-{os.getuid()}"


def test_fallback_leaves_shared_temp_dir_alone(shared_tmp):
    d = new_runtime_dir()
    assert d.parent == shared_tmp / f"tabvm-{os.getuid()}"
    assert mode(d.parent) == 0o700
    assert stat.S_IMODE(shared_tmp.stat().st_mode) == 0o1777


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the temp dir another owner")
def test_fallback_works_when_temp_dir_belongs_to_someone_else(shared_tmp):
    os.chown(shared_tmp, 4242, -1)          # like /tmp (root) seen by an ordinary user
    d = new_runtime_dir()
    assert d.parent == shared_tmp / f"tabvm-{os.getuid()}"
    assert mode(d) == 0o700
