"""Tests of the test guest: the agent on a host pty, the initramfs writer, and an
end-to-end boot under QEMU/TCG (needs TABVM_QEMU=path/to/qemu-system-x86_64)."""

from __future__ import annotations

import gzip
import io
import os
import select
import stat
import subprocess
import time
import tty
from pathlib import Path

import pytest

from glue.agent_client import AgentClient, AgentError, escape
from tabvm import guest

# -- the agent on the host, over a pty pair -------------------------------------


@pytest.fixture(scope="session")
def agent_bin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("agent") / "tabvm-agent"
    guest.compile_agent(path)
    return path


@pytest.fixture
def pty_agent(agent_bin):
    """(master fd, agent process) with the agent serving the pty's slave side."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo even before the agent sets raw mode itself
    proc = subprocess.Popen([str(agent_bin), os.ttyname(slave)])
    yield master, proc
    proc.kill()
    proc.wait()
    os.close(master)
    os.close(slave)


@pytest.fixture
def client(pty_agent):
    master, _ = pty_agent
    c = AgentClient(master)
    c.wait_ready(timeout=10)
    return c


def raw_exchange(master: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Sends raw bytes and returns one complete raw response frame."""
    os.set_blocking(master, True)
    os.write(master, request)
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        head, nl, rest = data.partition(b"\n")
        if nl and len(rest) >= int(head.split()[2]) + 1:
            return data
        left = deadline - time.monotonic()
        assert left > 0, f"no complete answer, got {data!r}"
        if select.select([master], [], [], left)[0]:
            data += os.read(master, 65536)


def test_raw_framing(pty_agent):
    master, _ = pty_agent
    assert raw_exchange(master, b"5 ping\n") == b"5 ok 4\npong\n"
    assert raw_exchange(master, b"\n\n6 hold k a b\n") == b"6 ok 0\n\n"
    assert raw_exchange(master, b"7 recall k\n") == b"7 ok 3\na b\n"


def test_ping(client):
    client.ping()
    assert client.call("ping") == "pong"


def test_read_proc_version(client):
    assert client.read("/proc/version") == Path("/proc/version").read_text()


def test_read_missing_file(client):
    with pytest.raises(AgentError, match="No such file"):
        client.read("/nonexistent/file")


def test_write_then_read(client, tmp_path):
    target = tmp_path / "out.txt"
    data = "line one\nback\\slash\n\ttab and  spaces "
    client.write(str(target), data)
    assert target.read_text() == data
    assert client.read(str(target)) == data


def test_write_bad_escape(client, tmp_path):
    with pytest.raises(AgentError, match="bad escape"):
        client.call("write", str(tmp_path / "x"), "a\\tb")


def test_sh_output_and_status(client):
    assert client.call("sh", "echo hi; exit 3") == "hi\nexit=3"
    result = client.sh("echo hi; exit 3")
    assert (result.output, result.status) == ("hi\n", 3)
    assert client.sh("printf abc >&2").output == "abc\n"
    assert client.sh("true") == ("", 0)
    assert client.sh("kill -9 $$").status == 128 + 9


def test_sh_background_process_does_not_block(client):
    start = time.monotonic()
    result = client.sh("sleep 20 & echo started", timeout=10)
    assert result == ("started\n", 0)
    assert time.monotonic() - start < 5


def test_hold_recall(client):
    client.hold("marker", "value with  spaces")
    client.hold("other", "x")
    assert client.recall("marker") == "value with  spaces"
    client.hold("marker", "replaced")
    assert client.recall("marker") == "replaced"
    with pytest.raises(AgentError, match="nothing held"):
        client.recall("never-held")


def test_ls_and_uname(client, tmp_path):
    for name in ("b", "a", "c"):
        (tmp_path / name).touch()
    assert client.ls(str(tmp_path)) == ["a", "b", "c"]
    assert client.uname()["release"] == os.uname().release


def test_unknown_verb(client):
    with pytest.raises(AgentError, match="unknown verb"):
        client.call("frobnicate", "x")
    client.ping()


def test_overlong_line(pty_agent, client):
    master, proc = pty_agent
    answer = raw_exchange(master, b"42 write /tmp/never " + b"x" * 70_000 + b"\n")
    assert answer.startswith(b"42 err ")
    assert b"longer than 65536" in answer
    assert proc.poll() is None
    client.ping()


def test_bad_id(pty_agent):
    master, _ = pty_agent
    assert raw_exchange(master, b"abc ping\n").startswith(b"0 err ")


def test_escape():
    assert escape("a\\b\nc") == "a\\\\b\\nc"


# -- initramfs writer -----------------------------------------------------------


def parse_newc(data: bytes) -> list[dict]:
    entries, pos = [], 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos: pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries.append({"name": name, "mode": f[1], "uid": f[2], "gid": f[3],
                        "mtime": f[5], "rdev": (f[9], f[10]), "data": body})


def test_newc_is_reproducible_and_normalized(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o700)
    (root / "etc").mkdir()
    (root / "etc" / "conf").write_text("x")
    (root / "bin" / "link").symlink_to("/bin/tool")
    os.utime(root / "etc" / "conf", (12345, 12345))

    def pack() -> bytes:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
            guest.write_newc(root, f, guest.DEVICE_NODES)
        return buf.getvalue()

    first = pack()
    (root / "etc" / "conf").touch()  # mtimes must not matter
    assert pack() == first
    entries = parse_newc(gzip.decompress(first))
    names = [e["name"] for e in entries]
    assert names == sorted(names)
    assert names == ["bin", "bin/link", "bin/tool", "dev/console", "dev/null",
                     "etc", "etc/conf"]
    by_name = {e["name"]: e for e in entries}
    assert all(e["uid"] == 0 and e["gid"] == 0 and e["mtime"] == 0 for e in entries)
    assert by_name["bin/tool"]["mode"] == stat.S_IFREG | 0o755
    assert by_name["etc/conf"]["mode"] == stat.S_IFREG | 0o644
    assert by_name["bin/link"]["data"] == b"/bin/tool"
    assert stat.S_ISCHR(by_name["dev/console"]["mode"])
    assert by_name["dev/console"]["rdev"] == (5, 1)


# -- builder error paths --------------------------------------------------------


def test_apt_updates_once_then_retries(monkeypatch):
    calls = []

    def fake_run(args, cwd=None):
        calls.append(args[:2])
        if args[:2] == ["apt-cache", "show"] and ["apt-get", "update"] not in calls:
            raise guest.GuestBuildError("E: No packages found")
        return "ok"

    monkeypatch.setattr(guest, "_run", fake_run)
    apt = guest._Apt(progress=lambda msg: None)
    assert apt.run(["apt-cache", "show", "x"]) == "ok"
    assert calls == [["apt-cache", "show"], ["apt-get", "update"], ["apt-cache", "show"]]
    monkeypatch.setattr(guest, "_run", lambda args, cwd=None: (_ for _ in ()).throw(
        guest.GuestBuildError("still broken")))
    with pytest.raises(guest.GuestBuildError, match="still broken"):
        apt.run(["apt-cache", "show", "x"])  # no second update


def test_failed_download_updates_lists_and_asks_to_resolve_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TABVM_CACHE", str(tmp_path))
    calls = []

    def fake_run(args, cwd=None):
        calls.append(args[:2])
        if args[:2] == ["apt-get", "download"]:
            raise guest.GuestBuildError("404 Not Found")
        return ""

    monkeypatch.setattr(guest, "_run", fake_run)
    apt = guest._Apt(progress=lambda msg: None)
    with pytest.raises(guest._ListsUpdated):
        guest._download(apt, "pkg", "1:1.0")
    assert calls == [["apt-get", "download"], ["apt-get", "update"]]
    with pytest.raises(guest.GuestBuildError, match="404"):
        guest._download(apt, "pkg", "1:1.0")  # lists already fresh: a real error
    assert not list((tmp_path / "debs").iterdir())


def test_missing_static_libc_names_the_package(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "gcc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '/usr/bin/ld: cannot find -lc: No such file' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(guest.GuestBuildError, match="libc6-dev"):
        guest.compile_agent(tmp_path / "agent")


# -- end to end: build the guest and boot it under QEMU/TCG ------------------------

READY = b"TABVM-GUEST-READY"


@pytest.fixture(scope="module")
def qemu(build_outputs) -> Path:
    """The project's QEMU build; its firmware directory holds SeaBIOS and the ROMs."""
    return build_outputs.qemu


def firmware_dirs(qemu: Path, rom: str) -> list[Path]:
    firmware = qemu.parent / "firmware"
    assert (firmware / rom).is_file(), f"{rom} missing from {firmware}"
    return [firmware]


def wait_for_console(log: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and READY in log.read_bytes():
            return
        if proc.poll() is not None:
            pytest.fail(f"QEMU exited ({proc.returncode}) before {READY.decode()}")
        time.sleep(0.05)
    pytest.fail(f"no {READY.decode()} within {timeout} s; console tail:\n"
                + log.read_text(errors="replace")[-3000:])


# vmlinux: the PVH ELF (no in-guest decompression); kernel: Debian's bzImage.
BOOT_ROMS = {"vmlinux": "pvh.bin", "kernel": "linuxboot_dma.bin"}


@pytest.mark.e2e
@pytest.mark.parametrize("kernel_attr", sorted(BOOT_ROMS))
def test_boot_guest_under_tcg(qemu, tmp_path, kernel_attr):
    image = guest.build_guest(progress=lambda msg: print("guest:", msg))
    start = time.monotonic()
    assert guest.build_guest(progress=lambda msg: None) == image
    assert time.monotonic() - start < 1.0, "a second build_guest() must hit the cache"
    kernel = getattr(image, kernel_attr)
    console, sock = tmp_path / "console.log", tmp_path / "agent.sock"
    cmd = [str(qemu), "-M", "q35", "-accel", "tcg", "-m", "512M", "-nodefaults",
           "-display", "none", "-no-reboot",
           *[arg for d in firmware_dirs(qemu, BOOT_ROMS[kernel_attr]) for arg in ("-L", str(d))],
           "-kernel", str(kernel), "-initrd", str(image.initrd),
           "-append", guest.APPEND,
           "-serial", f"file:{console}",
           "-chardev", f"socket,id=agent,path={sock},server=on,wait=off",
           "-serial", "chardev:agent"]
    start = time.monotonic()
    with open(tmp_path / "qemu.log", "wb") as qlog:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog)
    try:
        with AgentClient(sock, connect_timeout=30) as agent:
            wait_for_console(console, proc, timeout=300)
            ready = time.monotonic() - start
            agent.wait_ready(timeout=120)
            answered = time.monotonic() - start
            print(f"{kernel.name}: TABVM-GUEST-READY after {ready:.1f} s, "
                  f"agent answered after {answered:.1f} s")

            assert agent.uname()["release"] == image.kernel_version
            assert agent.sh("uname -r") == (image.kernel_version + "\n", 0)
            classes = agent.ls("/sys/class")
            assert {"tty", "power_supply", "input"} <= set(classes)
            assert agent.read("/sys/class/tty/ttyS1/dev").strip() == "4:65"
            modules = agent.read("/proc/modules")
            for name in ("virtio_pci", "battery", "xhci_pci", "hid_multitouch", "btusb",
                         "snd_hda_intel", "ext4"):
                assert f"{name} " in modules, f"{name} not loaded"
            agent.hold("marker", "in guest RAM")
            assert agent.recall("marker") == "in guest RAM"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
