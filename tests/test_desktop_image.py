"""Tests of the desktop image builder (tabvm/desktop_image.py): the cache key, the
disk layout, guest/desktop holding configuration files only, and (e2e) the built
image itself. Booting it is tested elsewhere (with the glue)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tabvm import desktop_image as di

MIB = 1 << 20
ARCHIVE = "0" * 64


def key_of(files=None, packages=di.PACKAGES, builder=b"builder", archive=ARCHIVE) -> str:
    return di.cache_key(packages, di.config_files() if files is None else files,
                        builder, archive)


# -- cache key ------------------------------------------------------------------------


def test_cache_key_is_stable():
    assert key_of() == key_of()
    assert len(key_of()) == 16


def test_cache_key_covers_every_config_file():
    files = di.config_files()
    assert "rootfs/etc/default/grub" in files and "README.md" not in files
    base = key_of(files)
    for rel in files:
        changed = dict(files)
        changed[rel] = files[rel] + b"\n# changed\n"
        assert key_of(changed) != base, rel
    added = dict(files, **{"rootfs/etc/new.conf": b"x=1\n"})
    assert key_of(added) != base
    renamed = dict(files)
    renamed["rootfs/etc/hostname2"] = renamed.pop("rootfs/etc/hostname")
    assert key_of(renamed) != base


def test_cache_key_covers_the_package_list_builder_and_archive():
    base = key_of()
    assert key_of(packages=di.PACKAGES + ("vim",)) != base
    assert key_of(packages=di.PACKAGES[:-1]) != base
    assert key_of(builder=b"builder2") != base
    assert key_of(archive="1" * 64) != base


def test_config_files_reads_the_tree(tmp_path):
    (tmp_path / "rootfs" / "etc").mkdir(parents=True)
    (tmp_path / "rootfs" / "etc" / "a.conf").write_text("a\n")
    (tmp_path / "README.md").write_text("r\n")
    assert di.config_files(tmp_path) == {"rootfs/etc/a.conf": b"a\n"}
    with pytest.raises(di.DesktopImageError, match="missing"):
        di.config_files(tmp_path / "nope")


# -- disk layout ----------------------------------------------------------------------


def test_partition_layout_offsets():
    bios, esp, root = di.partition_layout()
    assert (bios.number, bios.offset, bios.size_bytes) == (1, 1 * MIB, 1 * MIB)
    assert bios.type_guid == "21686148-6449-6E6F-744E-656564454649"
    assert (esp.number, esp.offset, esp.size_bytes) == (2, 2 * MIB, 100 * MIB)
    assert esp.type_guid == "C12A7328-F81F-11D2-BA4B-00A0C93EC3B8"
    assert (root.number, root.offset) == (3, 102 * MIB)
    assert root.offset + root.size_bytes == di.DISK_SIZE - MIB  # room for the backup GPT
    assert di.DISK_SIZE == 8 << 30
    for p in (bios, esp, root):
        assert p.offset % MIB == 0 and p.size_bytes % MIB == 0


def test_partition_layout_rejects_bad_sizes():
    with pytest.raises(ValueError):
        di.partition_layout(8 * MIB)
    with pytest.raises(ValueError):
        di.partition_layout(di.DISK_SIZE + 1)


def test_partition_uuids_derive_from_the_key():
    a = di.with_uuids(di.partition_layout(), "k1")
    assert a == di.with_uuids(di.partition_layout(), "k1")
    b = di.with_uuids(di.partition_layout(), "k2")
    assert len({p.uuid for p in a + b}) == 6


@pytest.mark.skipif(not shutil.which("sfdisk", path="/usr/sbin:/sbin:/usr/bin"),
                    reason="needs sfdisk (fdisk)")
def test_sfdisk_script_round_trip(tmp_path):
    layout = di.with_uuids(di.partition_layout(), "key")
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(di.DISK_SIZE)
    sfdisk = shutil.which("sfdisk", path="/usr/sbin:/sbin:/usr/bin")
    subprocess.run([sfdisk, "--no-reread", "--no-tell-kernel", "-q", str(disk)], check=True,
                   input=di.sfdisk_script(layout, di._derived_uuid("key", "disk")), text=True)
    with disk.open("rb") as f:
        assert di.read_gpt(f.read(34 * 512)) == list(layout)


def test_read_gpt_rejects_non_gpt():
    with pytest.raises(ValueError, match="GPT"):
        di.read_gpt(bytes(34 * 512))


def test_copy_sparse(tmp_path):
    src = tmp_path / "src"
    with src.open("wb") as f:
        f.write(b"a" * 100)
        f.seek(3 * MIB)
        f.write(bytes(MIB))  # explicit zeros: skipped
        f.write(b"b" * 10)
        f.truncate(6 * MIB)
    dest = tmp_path / "dest"
    with dest.open("wb") as f:
        f.truncate(8 * MIB)
    di.copy_sparse(src, dest, MIB)
    data = dest.read_bytes()
    assert data[MIB:MIB + 100] == b"a" * 100
    assert data[4 * MIB + MIB:4 * MIB + MIB + 10] == b"b" * 10
    assert data.count(0) == len(data) - 110
    assert os.stat(dest).st_blocks * 512 < 2 * MIB  # holes stay holes


# -- guest/desktop holds configuration only ---------------------------------------------


def test_guest_desktop_holds_only_config_files():
    src = di.DESKTOP_SRC
    files = [p for p in src.rglob("*") if not p.is_dir()]
    assert files
    for path in files:
        rel = path.relative_to(src).as_posix()
        assert rel == "README.md" or rel.startswith("rootfs/"), rel
        assert path.is_file() and not path.is_symlink(), rel
        assert not path.stat().st_mode & 0o111, f"{rel} is executable"
        assert path.suffix not in {".py", ".c", ".h", ".so", ".ko", ".sh"}, rel
        data = path.read_bytes()
        assert not data.startswith(b"#!"), f"{rel} is a script"
        assert not data.startswith(b"\x7fELF") and b"\0" not in data, f"{rel} is binary"
        data.decode("utf-8")
        for word in (b"tabvm-agent", b"/work/", b"glue"):
            assert word not in data, f"{rel} mentions {word!r}"


def test_readme_lists_every_package():
    readme = (di.DESKTOP_SRC / "README.md").read_text()
    for name in di.PACKAGES:
        assert name in readme, name


def test_user_facts():
    assert (di.USER, di.UID, di.DISPLAY, di.XAUTHORITY) == (
        "user", 1000, ":0", "/home/user/.Xauthority")
    assert di.x_command("xwininfo", "-root") == (
        "runuser", "-u", "user", "--", "env", "DISPLAY=:0",
        "XAUTHORITY=/home/user/.Xauthority", "xwininfo", "-root")
    assert di.SESSION_CHECK[:7] == di.x_command()
    profile = (di.ROOTFS_SRC / "home/user/.bash_profile").read_text()
    assert "exec startx" in profile and "/dev/tty1" in profile
    autologin = (di.ROOTFS_SRC / "etc/systemd/system/getty@tty1.service.d/autologin.conf")
    assert "--autologin user" in autologin.read_text()
    grub = (di.ROOTFS_SRC / "etc/default/grub").read_text()
    assert "GRUB_TIMEOUT=0" in grub and "console=ttyS0,115200" in grub
    cmdline = [line for line in grub.splitlines() if line.startswith("GRUB_CMDLINE")]
    assert cmdline and not any("quiet" in line for line in cmdline)


def test_grub_vm_command_and_script(tmp_path):
    from glue.profile import BuildOutputs
    cmd = di.grub_vm_command(BuildOutputs(tmp_path), tmp_path / "d.raw", tmp_path / "k",
                             tmp_path / "i", tmp_path / "log")
    assert "-no-reboot" in cmd and cmd[cmd.index("-accel") + 1] == "tcg"
    assert f"init={di.GRUB_SCRIPT}" in cmd[cmd.index("-append") + 1]
    text = di._GRUB_SCRIPT_TEXT
    assert f"rm -f {di.GRUB_SCRIPT}" in text
    assert "--target=i386-pc" in text and "--removable" in text and "--no-nvram" in text


# -- the built image (slow: builds it unless cached) ---------------------------------------


@pytest.mark.e2e
def test_built_image(build_outputs, tmp_path):
    try:
        image = di.build_desktop_image(progress=lambda m: print("desktop:", m),
                                       outputs=build_outputs)
    except di.DesktopImageNeedsRoot as exc:
        pytest.skip(str(exc))
    again = di.build_desktop_image(progress=lambda m: None, outputs=build_outputs)
    assert again == image  # from cache

    meta = json.loads(image.meta_path.read_text())
    assert meta["key"] == image.key
    assert meta["virtual_size"] == di.DISK_SIZE == image.virtual_size
    assert meta["size_bytes"] == image.size_bytes == image.path.stat().st_size
    assert meta["packages"] == len(meta["versions"]) == image.packages
    assert set(di.PACKAGES) <= set(meta["versions"])
    assert meta["build_s"] > 0
    assert meta["user"] == {"name": "user", "uid": 1000, "display": ":0",
                            "xauthority": "/home/user/.Xauthority"}

    qemu_img = str(build_outputs.qemu_img)
    info = json.loads(subprocess.run([qemu_img, "info", "--output=json", str(image.path)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == di.DISK_SIZE
    assert "backing-filename" not in info
    subprocess.run([qemu_img, "check", "-q", str(image.path)], check=True)

    head = tmp_path / "head.raw"
    subprocess.run([qemu_img, "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=34",
                    f"if={image.path}", f"of={head}"], check=True)
    parts = di.read_gpt(head.read_bytes())
    assert [(p.number, p.type_guid, p.start, p.size) for p in parts] == [
        (p.number, p.type_guid, p.start, p.size) for p in di.partition_layout()]
