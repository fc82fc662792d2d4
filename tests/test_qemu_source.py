"""tabvm/recipe.py, tabvm/qemu_source.py (fetch + patched tree) and tabvm/debian.py."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import shutil
import tarfile
from pathlib import Path

import pytest

import tabvm.debian as debian
import tabvm.qemu_source as qemu_source
import tabvm.recipe as recipe_mod
from conftest import REPO
from tabvm.debian import AptError, archive_uri
from tabvm.qemu_source import SourceError, fetch_tarball, prepared_tree, sha256_of
from tabvm.recipe import load_recipe

# --- recipe ---------------------------------------------------------------------------


def test_load_recipe():
    r = load_recipe()
    assert r.version.startswith("10.0.")
    assert re.fullmatch(r"[0-9a-f]{64}", r.debian_orig_sha256)
    assert r.upstream_sha256 == "" or re.fullmatch(r"[0-9a-f]{64}", r.upstream_sha256)
    assert r.version in r.debian_version and r.version in r.debian_orig
    assert r.target == "x86_64-softmmu"
    assert "--enable-werror" in r.configure_args
    assert "Q35" in r.base_devices
    assert r.debian_orig_size > 0


def test_patches_follow_series():
    r = load_recipe()
    names = [p.name for p in r.patches]
    assert names and all(p.is_file() for p in r.patches)
    assert "series" not in names
    assert all(p.parent == REPO / "qemu-tree" / "patches" for p in r.patches)


@pytest.fixture
def patches(tmp_path, monkeypatch) -> Path:
    """A private copy of qemu-tree/patches that Recipe.patches reads."""
    d = tmp_path / "patches"
    shutil.copytree(REPO / "qemu-tree" / "patches", d)
    monkeypatch.setattr(recipe_mod, "PATCHES", d)
    return d


def test_source_key_depends_on_patch_content(patches):
    r = load_recipe()
    key = r.source_key()
    assert key.startswith(f"{r.version}-") and len(key) == len(r.version) + 13
    assert r.source_key() == key
    patch = r.patches[0]
    original = patch.read_bytes()
    patch.write_bytes(original + b"\n")
    assert r.source_key() != key
    patch.write_bytes(original)
    assert r.source_key() == key


def test_source_key_matches_repo_patches(patches, monkeypatch):
    key = load_recipe().source_key()
    monkeypatch.setattr(recipe_mod, "PATCHES", REPO / "qemu-tree" / "patches")
    assert load_recipe().source_key() == key


def test_source_key_depends_on_series_and_tarball(patches):
    r = load_recipe()
    key = r.source_key()
    extra = patches / "0002-extra.patch"
    extra.write_text("Why: test\n")
    with (patches / "series").open("a") as f:
        f.write("0002-extra.patch  # a comment\n")
    assert [p.name for p in r.patches][-1] == "0002-extra.patch"
    assert r.source_key() != key
    other = dataclasses.replace(r, debian_orig_sha256="0" * 64)
    assert other.source_key() != r.source_key()
    (patches / "series").write_text("# nothing\n\n")
    assert r.patches == []


# --- fetching -------------------------------------------------------------------------

def make_tarball(path: Path, files: dict[str, str], top: str = "qemu-x") -> str:
    """A tar.xz with ``top/`` and ``top/<files>``; returns its sha256."""
    with tarfile.open(path, "w:xz") as tar:
        info = tarfile.TarInfo(top)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


class NoApt:
    def __init__(self, *args, **kwargs):
        raise AssertionError("PrivateApt must not be used")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("TABVM_CACHE", str(root))
    monkeypatch.setattr(qemu_source, "PrivateApt", NoApt)
    return root


@pytest.fixture
def tarball(tmp_path) -> tuple[Path, str]:
    src = tmp_path / "upstream" / "qemu-x.tar.xz"
    src.parent.mkdir()
    digest = make_tarball(src, {"VERSION": "10.0.99\n", "hw/a.c": "int a;\n"})
    return src, digest


def upstream_recipe(tarball: Path, sha256: str):
    return dataclasses.replace(load_recipe(), upstream_url=tarball.as_uri(),
                               upstream_sha256=sha256)


def test_fetch_upstream_file_url(cache, tarball):
    src, digest = tarball
    got = fetch_tarball(upstream_recipe(src, digest))
    assert got == cache / "dl" / "qemu-x.tar.xz"
    assert got.read_bytes() == src.read_bytes()
    assert sha256_of(got) == digest
    assert sorted(p.name for p in (cache / "dl").iterdir()) == ["qemu-x.tar.xz"]


def test_fetch_uses_cache_without_download(cache, tarball, monkeypatch):
    src, digest = tarball
    r = upstream_recipe(src, digest)
    fetch_tarball(r)
    src.unlink()
    monkeypatch.setattr(qemu_source, "_download",
                        lambda *a, **k: pytest.fail("downloaded although cached"))
    assert fetch_tarball(r) == cache / "dl" / "qemu-x.tar.xz"


def test_fetch_wrong_sha256_removes_file(cache, tarball):
    src, _ = tarball
    with pytest.raises(SourceError, match="sha256"):
        fetch_tarball(upstream_recipe(src, "0" * 64))
    assert list((cache / "dl").iterdir()) == []


def test_fetch_cached_file_with_wrong_hash_is_replaced(cache, tarball):
    src, digest = tarball
    (cache / "dl").mkdir(parents=True)
    (cache / "dl" / "qemu-x.tar.xz").write_bytes(b"truncated")
    got = fetch_tarball(upstream_recipe(src, digest))
    assert sha256_of(got) == digest


def debian_recipe(orig: Path, sha256: str):
    return dataclasses.replace(load_recipe(), upstream_sha256="", debian_orig=orig.name,
                               debian_orig_sha256=sha256, debian_orig_size=orig.stat().st_size)


def test_fetch_debian_orig_from_cache_without_apt(cache, tarball, monkeypatch):
    src, digest = tarball
    monkeypatch.setattr(qemu_source, "_download",
                        lambda *a, **k: pytest.fail("no upstream hash: must not download"))
    dl = cache / "dl"
    dl.mkdir(parents=True)
    orig = dl / "qemu_10.0.99+ds.orig.tar.xz"
    shutil.copy(src, orig)
    assert fetch_tarball(debian_recipe(orig, digest)) == orig


def test_unreachable_upstream_falls_back_to_debian(cache, tarball, tmp_path):
    src, digest = tarball
    dl = cache / "dl"
    dl.mkdir(parents=True)
    orig = dl / "qemu_10.0.99+ds.orig.tar.xz"
    shutil.copy(src, orig)
    r = dataclasses.replace(debian_recipe(orig, digest),
                            upstream_url=(tmp_path / "missing" / "qemu-x.tar.xz").as_uri(),
                            upstream_sha256="1" * 64)
    assert fetch_tarball(r) == orig


def test_debian_download_through_private_apt(cache, tarball, monkeypatch):
    src, digest = tarball
    calls = []

    class FakeApt:
        def __init__(self, suite):
            calls.append(("init", suite))

        def update(self):
            calls.append(("update",))

        def source_download(self, package, version, dest):
            calls.append(("source", package, version))
            shutil.copy(src, dest / "qemu_10.0.99+ds.orig.tar.xz")

    monkeypatch.setattr(qemu_source, "PrivateApt", FakeApt)
    r = dataclasses.replace(load_recipe(), upstream_sha256="",
                            debian_orig="qemu_10.0.99+ds.orig.tar.xz", debian_orig_sha256=digest)
    got = fetch_tarball(r)
    assert got == cache / "dl" / "qemu_10.0.99+ds.orig.tar.xz"
    assert calls == [("init", r.debian_suite), ("update",),
                     ("source", r.debian_package, r.debian_version)]


def test_debian_apt_failure_is_source_error(cache, monkeypatch):
    class FailingApt:
        def __init__(self, suite):
            pass

        def update(self):
            raise AptError("apt-get update failed: no network")

    monkeypatch.setattr(qemu_source, "PrivateApt", FailingApt)
    r = dataclasses.replace(load_recipe(), upstream_sha256="")
    with pytest.raises(SourceError, match="no network"):
        fetch_tarball(r)


# --- prepared_tree --------------------------------------------------------------------

@pytest.fixture
def empty_series(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "patches-empty"
    d.mkdir()
    (d / "series").write_text("# no patches\n")
    monkeypatch.setattr(recipe_mod, "PATCHES", d)
    return d


def test_prepared_tree_unpacks_atomically(cache, tarball, empty_series):
    src, digest = tarball
    r = upstream_recipe(src, digest)
    tree = prepared_tree(r)
    assert tree == cache / "qemu" / r.source_key() / "src"
    assert (tree / "VERSION").read_text() == "10.0.99\n"
    assert (tree / "hw" / "a.c").read_text() == "int a;\n"
    assert not (tree / "qemu-x").exists()                  # top directory stripped
    assert [p.name for p in tree.parent.iterdir()] == ["src"]  # no temp dirs left
    # ready trees are reused as they are
    (tree / "hw" / "a.c").write_text("edited\n")
    assert prepared_tree(r) == tree
    assert (tree / "hw" / "a.c").read_text() == "edited\n"


def write_patch(patches: Path, name: str, old: str, new: str) -> None:
    (patches / name).write_text(
        "From: test\nSubject: [PATCH] test\n\nWhy: test\n---\n"
        "--- a/VERSION\n+++ b/VERSION\n@@ -1 +1 @@\n"
        f"-{old}\n+{new}\n")
    with (patches / "series").open("a") as f:
        f.write(f"{name}\n")


def test_prepared_tree_applies_patches(cache, tarball, empty_series):
    src, digest = tarball
    write_patch(empty_series, "0001-version.patch", "10.0.99", "10.0.99-tabvm")
    tree = prepared_tree(upstream_recipe(src, digest))
    assert (tree / "VERSION").read_text() == "10.0.99-tabvm\n"
    assert not list(tree.rglob("*.orig")) and not list(tree.rglob("*.rej"))


def test_prepared_tree_patch_failure_leaves_nothing(cache, tarball, empty_series):
    src, digest = tarball
    write_patch(empty_series, "0001-bad.patch", "9.9.9", "nope")
    r = upstream_recipe(src, digest)
    with pytest.raises(SourceError, match="0001-bad.patch does not apply"):
        prepared_tree(r)
    home = cache / "qemu" / r.source_key()
    assert list(home.iterdir()) == []


def test_prepared_tree_unpack_failure_leaves_nothing(cache, tmp_path, empty_series):
    bad = tmp_path / "upstream" / "qemu-x.tar.xz"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not an xz tarball\n")
    r = upstream_recipe(bad, hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(SourceError, match="qemu-x.tar.xz"):
        prepared_tree(r)
    assert list((cache / "qemu" / r.source_key()).iterdir()) == []


def test_prepared_tree_fetch_failure_leaves_nothing(cache, tarball, empty_series):
    src, _ = tarball
    r = upstream_recipe(src, "0" * 64)
    with pytest.raises(SourceError):
        prepared_tree(r)
    assert list((cache / "qemu" / r.source_key()).iterdir()) == []


# --- debian.archive_uri ---------------------------------------------------------------

@pytest.fixture
def sources(tmp_path, monkeypatch) -> tuple[Path, Path]:
    deb822 = tmp_path / "sources.list.d" / "debian.sources"
    oneline = tmp_path / "sources.list"
    deb822.parent.mkdir()
    monkeypatch.setattr(debian, "SYSTEM_SOURCES", (deb822, oneline))
    return deb822, oneline


def test_archive_uri_deb822_skips_security(sources):
    deb822, _ = sources
    deb822.write_text(
        "Types: deb\n"
        "URIs: http://security.example.org/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\n"
        "URIs: http://deb.example.org/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert archive_uri() == "http://deb.example.org/debian"


def test_archive_uri_one_line_format(sources):
    _, oneline = sources
    oneline.write_text(
        "# deb http://commented.example.org/debian bookworm main\n"
        "deb-src http://src.example.org/debian bookworm main\n"
        "deb http://security.example.org/debian-security bookworm-security main\n"
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg arch=amd64] "
        "http://mirror.example.org/debian bookworm main\n")
    assert archive_uri() == "http://mirror.example.org/debian"


def test_archive_uri_one_line_without_options(sources):
    _, oneline = sources
    oneline.write_text("deb http://plain.example.org/debian bookworm main contrib\n")
    assert archive_uri() == "http://plain.example.org/debian"


def test_archive_uri_prefers_deb822_file(sources):
    deb822, oneline = sources
    deb822.write_text("Types: deb\nURIs: http://first.example.org/debian\nSuites: trixie\n")
    oneline.write_text("deb http://second.example.org/debian trixie main\n")
    assert archive_uri() == "http://first.example.org/debian"


def test_archive_uri_empty_deb822_falls_through(sources):
    deb822, oneline = sources
    deb822.write_text("# no entries\n")
    oneline.write_text("deb http://second.example.org/debian trixie main\n")
    assert archive_uri() == "http://second.example.org/debian"


def test_archive_uri_none(sources):
    with pytest.raises(AptError, match="cannot find the Debian archive"):
        archive_uri()


def test_archive_uri_only_security(sources):
    deb822, oneline = sources
    deb822.write_text("Types: deb\nURIs: http://security.example.org/debian-security\n")
    oneline.write_text("# nothing\n")
    with pytest.raises(AptError):
        archive_uri()
