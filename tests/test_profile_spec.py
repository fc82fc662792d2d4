"""VM profiles (glue/profile_spec.py): profiles/default.yaml, defaults, and bad
profiles in tests/bad-profiles with their exact errors (TABVM_UPDATE_GOLDEN=1 or
--update-golden rewrites the .err files)."""

import dataclasses
import re
from pathlib import Path

import pytest

from conftest import REPO
from generator.errors import SpecErrors
from glue.profile_spec import (DEFAULT_PROFILE, Devices, DiskProfile, Display, Forward,
                               GuestProfile, Network, Profile, SnapshotPolicy, find_profile,
                               load_profile, render_errors, trim_value)

BAD = REPO / "tests" / "bad-profiles"
CASES = sorted(BAD.glob("*.yaml"))
ERROR_LINE = re.compile(r"^[^:]+:\d+: ")


def errors_of(path: Path) -> str:
    with pytest.raises(SpecErrors) as info:
        load_profile(path)
    return render_errors(info.value)


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    root = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(root))
    return root


def test_default_profile(xdg):
    p = load_profile()
    assert DEFAULT_PROFILE == REPO / "profiles" / "default.yaml"
    assert p == Profile(
        name="default", source=DEFAULT_PROFILE,
        guest=GuestProfile(kernel=None, initrd=None),
        memory_mib=512, cpus=1, accel="auto",
        disk=DiskProfile(base=None, format="raw", size_mib=64),
        devices=Devices(battery="auto", touchscreen=True, touch_from=None,
                        bluetooth="bumble", audio="opensles", balloon=True,
                        balloon_policy=REPO / "devspecs" / "balloon.yaml",
                        memory_cgroup=None),
        snapshot=SnapshotPolicy(template=True, suspend_after_background_s=30.0,
                                suspend_on_trim="MODERATE", on_shutdown="suspend",
                                restart_on_crash=True, durable=False),
        state_dir=xdg / "tabvm" / "default", qmp_tcp=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"  # type: ignore[misc]


def test_default_profile_sets_every_field():
    """default.yaml spells out every section, device and key (with a comment)."""
    import yaml
    data = yaml.safe_load(DEFAULT_PROFILE.read_text())
    assert set(data) == {"name", "guest", "memory_mib", "cpus", "accel", "disk",
                         "network", "devices", "snapshot", "state_dir", "qmp_tcp"}
    assert set(data["guest"]) == {"boot", "kernel", "initrd", "firmware", "cdrom", "agent"}
    assert set(data["devices"]) == {"battery", "touchscreen", "bluetooth", "audio",
                                    "balloon"}
    for line in DEFAULT_PROFILE.read_text().splitlines():
        if re.match(r"\s*\w+: \S", line):
            assert "#" in line, line


def test_minimal_profile_takes_the_defaults(tmp_path, xdg):
    p = load_profile(write(tmp_path, "name: x\n"))
    default = load_profile()
    assert p.name == "x" and p.source == tmp_path / "p.yaml"
    assert (p.guest, p.memory_mib, p.cpus, p.accel, p.snapshot, p.qmp_tcp) == \
        (default.guest, default.memory_mib, default.cpus, default.accel,
         default.snapshot, default.qmp_tcp)
    assert p.disk is None
    assert p.devices == Devices(battery=None, touchscreen=False, touch_from=None,
                                bluetooth=None, audio=None, balloon=False,
                                balloon_policy=None, memory_cgroup=None)
    assert p.state_dir == xdg / "tabvm" / "x"


def test_empty_sections_take_their_defaults(tmp_path):
    p = load_profile(write(tmp_path, """\
name: x
disk: {}
devices: {battery: {}, touchscreen: {}, bluetooth: {}, audio: {}, balloon: {}}
snapshot: {suspend_after_background_s: null, suspend_on_trim: null}
"""))
    assert p.disk == DiskProfile(base=None, format="raw", size_mib=64)
    assert p.devices == Devices(battery="auto", touchscreen=True, touch_from=None,
                                bluetooth="bumble", audio="opensles", balloon=True,
                                balloon_policy=REPO / "devspecs" / "balloon.yaml",
                                memory_cgroup=None)
    assert p.snapshot.suspend_after_background_s is None
    assert p.snapshot.suspend_on_trim is None


def test_paths_are_relative_to_the_profile(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("vmlinuz", "initrd.img", "base.qcow2", "swipe.touch"):
        (tmp_path / "img" / name).write_bytes(b"")
    (tmp_path / "cg").mkdir()
    sub = tmp_path / "profiles"
    sub.mkdir()
    p = load_profile(write(sub, """\
name: paths
guest: {kernel: ../img/vmlinuz, initrd: ../img/initrd.img}
disk: {base: ../img/base.qcow2, format: qcow2}
devices:
  touchscreen: {from: ../img/swipe.touch}
  bluetooth: {peer: none}
  balloon: {policy: builtin, memory_cgroup: ../cg}
snapshot: {suspend_after_background_s: 2.5, on_shutdown: poweroff, durable: true}
state_dir: ../state
qmp_tcp: "[::1]:4444"
"""))
    img = tmp_path / "img"
    assert p.guest == GuestProfile(img / "vmlinuz", img / "initrd.img")
    assert p.disk == DiskProfile(base=img / "base.qcow2", format="qcow2", size_mib=0)
    assert p.devices.touch_from == img / "swipe.touch"
    assert p.devices.bluetooth == "none"
    assert p.devices.balloon_policy == REPO / "devspecs" / "balloon.yaml"
    assert p.devices.memory_cgroup == tmp_path / "cg"
    assert p.snapshot.suspend_after_background_s == 2.5
    assert (p.snapshot.on_shutdown, p.snapshot.durable) == ("poweroff", True)
    assert p.state_dir == tmp_path / "state"
    assert p.qmp_tcp == ("::1", 4444)


@pytest.mark.parametrize("peer", ["bumble", "unix:/tmp/h4.sock", "tcp:127.0.0.1:6402",
                                  "hci:0", "hci:hci1", "none"])
def test_bluetooth_peers(tmp_path, peer):
    p = load_profile(write(tmp_path, f"name: bt\ndevices: {{bluetooth: {{peer: '{peer}'}}}}\n"))
    assert p.devices.bluetooth == peer


def test_qmp_tcp(tmp_path):
    p = load_profile(write(tmp_path, "name: q\nqmp_tcp: '127.0.0.1:65535'\n"))
    assert p.qmp_tcp == ("127.0.0.1", 65535)


def test_state_dir_without_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_profile().state_dir == tmp_path / ".local" / "share" / "tabvm" / "default"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert load_profile().state_dir == tmp_path / ".local" / "share" / "tabvm" / "default"


def test_trim_value():
    from generator.kinds.balloon import TRIM_LEVELS
    from glue.balloon import TRIM_VALUES
    values = [trim_value(name) for name in TRIM_LEVELS]
    assert values == [5, 10, 15, 20, 40, 60, 80] == sorted(values)
    assert {v: n for n, v in zip(TRIM_LEVELS, values)} == TRIM_VALUES
    with pytest.raises(ValueError, match="LOW"):
        trim_value("LOW")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_profile_exact_errors(case, update_golden):
    text = errors_of(case)
    expected = case.with_suffix(".err")
    if update_golden:
        expected.write_text(text)
    assert text == expected.read_text()
    assert str(REPO) not in text


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_every_error_line_starts_with_file_and_line(case):
    lines = errors_of(case).splitlines()
    assert lines
    for line in lines:
        assert ERROR_LINE.match(line), line


def test_all_errors_at_once():
    """Schema and semantic errors of one file come together."""
    assert len(errors_of(BAD / "schema.yaml").splitlines()) >= 15
    mixed = errors_of(BAD / "mixed.yaml")
    assert "cpus: min value is 1" in mixed                     # schema
    assert "guest.initrd: 'missing/initrd.img' does not exist" in mixed   # semantic
    assert "qmp_tcp: '4444' is not HOST:PORT" in mixed


def test_policy_errors_carry_the_policy_file():
    text = errors_of(BAD / "balloon-policy.yaml")
    assert "tests/bad-profiles/files/bad-policy.yaml:7: guest.min_size_mib:" in text
    assert "tests/bad-profiles/balloon-policy.yaml:7: qmp_tcp:" in text


def test_missing_profile_file(tmp_path):
    text = errors_of(tmp_path / "nope.yaml")
    assert ERROR_LINE.match(text) and "cannot read" in text


def test_display_name(tmp_path):
    with pytest.raises(SpecErrors) as info:
        load_profile(write(tmp_path, "name: BAD\n"), display="my.yaml")
    assert render_errors(info.value).startswith("my.yaml:1: name: ")


def test_minimal_profile_has_the_network_on(tmp_path):
    """Like a real computer: virtio-net on user-mode networking, no forwards."""
    p = load_profile(write(tmp_path, "name: x\n"))
    assert p.network == Network("virtio-net", ())
    assert p.display is None
    assert load_profile(write(tmp_path, "name: x\nnetwork: none\n")).network is None
    assert load_profile(write(tmp_path, "name: x\nnetwork: {model: none}\n")).network is None


def test_forwards(tmp_path):
    p = load_profile(write(tmp_path, """\
name: fwd
network:
  model: e1000e
  forwards:
    - {host: 2222, guest: 22}
    - {proto: udp, host: 5353, guest: 53, address: "::1"}
    - {host: 2222, guest: 22, proto: udp}
    - {host: 8080, guest: 80, address: 0.0.0.0}
"""))
    assert p.network == Network("e1000e", (
        Forward("tcp", "127.0.0.1", 2222, 22), Forward("udp", "::1", 5353, 53),
        Forward("udp", "127.0.0.1", 2222, 22), Forward("tcp", "0.0.0.0", 8080, 80)))


def test_desktop_profile(xdg):
    p = load_profile(find_profile("desktop"))
    assert p.guest == GuestProfile(kernel=None, initrd=None, boot="firmware",
                                   firmware="bios", ovmf=None, cdrom=None, agent="qemu-ga")
    assert p.disk == DiskProfile(base=None, format="qcow2", size_mib=0, bus="virtio",
                                 desktop=True)
    assert p.display == Display("virtio-gpu", 1280, 800)
    assert p.network == Network("virtio-net", ())
    assert (p.memory_mib, p.cpus) == (2048, 2)
    assert p.devices.touchscreen and p.devices.battery and p.devices.audio


def test_windows_profile_uses_inbox_devices_only(xdg):
    """AHCI, e1000e, the standard VGA, UEFI, no virtio device, no guest agent."""
    p = load_profile(find_profile("windows"))
    assert (p.guest.boot, p.guest.firmware, p.guest.agent) == ("firmware", "uefi", "none")
    assert p.guest.ovmf is not None and all(f.is_file() for f in p.guest.ovmf)
    assert (p.disk.bus, p.disk.desktop) == ("ahci", True)
    assert p.display == Display("vga", 1920, 1080)
    assert p.network == Network("e1000e", ())
    assert not p.devices.balloon and p.devices.bluetooth is None
    assert p.devices.touchscreen and p.devices.battery and p.devices.audio


def test_ovmf_directory(tmp_path):
    ovmf = tmp_path / "ovmf"
    ovmf.mkdir()
    for name in ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"):
        (ovmf / name).write_bytes(b"\0")
    (tmp_path / "disk.img").write_bytes(b"")
    p = load_profile(write(tmp_path, """\
name: u
guest: {boot: firmware, firmware: uefi, ovmf: ovmf, cdrom: disk.img}
"""))
    assert p.guest.ovmf == (ovmf / "OVMF_CODE_4M.fd", ovmf / "OVMF_VARS_4M.fd")
    assert p.guest.cdrom == tmp_path / "disk.img" and p.disk is None
    assert p.guest.agent == "qemu-ga"          # the default for a firmware boot


def test_find_profile(tmp_path):
    assert find_profile(None) == DEFAULT_PROFILE
    assert find_profile("desktop") == REPO / "profiles" / "desktop.yaml"
    own = write(tmp_path, "name: own\n")
    assert find_profile(str(own)) == own
    with pytest.raises(ValueError, match="no profile 'nope' .*desktop"):
        find_profile("nope")
    with pytest.raises(ValueError, match="no such file"):
        find_profile(str(tmp_path / "missing.yaml"))
