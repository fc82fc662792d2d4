"""tabvm/qemu_tree.py: marker-delimited hooks and the generated-file sync into a QEMU tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from generator.main import generate, spec_files
from generator.output import write_outputs
from tabvm.qemu_tree import (BEGIN, END, SYNCED, Hook, HookError, apply_hooks, load_hooks,
                             sync_generated, with_hook)

BATTERY_SPEC = REPO / "devspecs" / "battery.yaml"
OLD_MTIME = 1_000_000_000  # far in the past: any rewrite is visible in st_mtime_ns


def strip_hooks(text: str) -> str:
    """``text`` without any BEGIN..END hook block, named or not, in any comment
    style (inverse of with_hook)."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if "BEGIN tabvm hook" in line:
            assert not inside, "nested BEGIN"
            inside = True
        elif "END tabvm hook" in line:
            assert inside, "END without BEGIN"
            inside = False
        elif not inside:
            out.append(line)
    assert not inside, "BEGIN without END"
    return "".join(out)


def age(root: Path) -> dict[str, int]:
    """Set every file under ``root`` to an old mtime; return {relpath: mtime_ns}."""
    stamps = {}
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (OLD_MTIME, OLD_MTIME))
            stamps[p.relative_to(root).as_posix()] = p.stat().st_mtime_ns
    return stamps


def touched(root: Path, before: dict[str, int]) -> set[str]:
    now = {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
           for p in root.rglob("*") if p.is_file()}
    return {k for k in before.keys() | now.keys() if before.get(k) != now.get(k)}


# --- with_hook -----------------------------------------------------------------------

def test_with_hook_inserts_before_anchor():
    text = "project('x')\nsubdir('a')\nsubdir('trace')\nsubdir('b')\n"
    out = with_hook(text, "line 1\nline 2\n", "subdir('trace')", "meson.build")
    assert out == ("project('x')\nsubdir('a')\n"
                   f"{BEGIN}\nline 1\nline 2\n{END}\n"
                   "subdir('trace')\nsubdir('b')\n")


def test_with_hook_anchor_must_match_whole_line():
    text = "  subdir('trace')  # indented\nsubdir('trace')\n"
    out = with_hook(text, "X", "subdir('trace')", "f")
    assert out.splitlines() == ["  subdir('trace')  # indented", BEGIN, "X", END,
                                "subdir('trace')"]


def test_with_hook_appends_without_anchor():
    text = "a\nb\n"
    out = with_hook(text, "source tabvm/Kconfig", None, "hw/Kconfig")
    assert out == f"a\nb\n{BEGIN}\nsource tabvm/Kconfig\n{END}\n"


@pytest.mark.parametrize("before", [None, "anchor"])
def test_with_hook_is_idempotent(before):
    text = "first\nanchor\nlast\n"
    once = with_hook(text, "block a\nblock b", before, "f")
    twice = with_hook(once, "block a\nblock b", before, "f")
    assert once != text
    assert twice == once
    assert twice.encode() == once.encode()


def test_with_hook_replaces_changed_block():
    text = "first\nanchor\nlast\n"
    old = with_hook(text, "old 1\nold 2\nold 3", "anchor", "f")
    new = with_hook(old, "new", "anchor", "f")
    lines = new.splitlines()
    assert lines.count(BEGIN) == 1 and lines.count(END) == 1
    assert "old 1" not in new and "old 3" not in new
    assert lines == ["first", BEGIN, "new", END, "anchor", "last"]
    # the same as applying "new" to the pristine text
    assert new == with_hook(text, "new", "anchor", "f")


def test_with_hook_replaces_block_in_place_even_if_anchor_gone():
    # an existing block is replaced where it is; the anchor is only needed the first time
    text = with_hook("a\nanchor\nb\n", "x", "anchor", "f").replace("anchor\n", "")
    out = with_hook(text, "y", "anchor", "f")
    assert out.splitlines() == ["a", BEGIN, "y", END, "b"]


def test_with_hook_missing_anchor_names_file():
    with pytest.raises(HookError) as exc:
        with_hook("a\nb\n", "x", "subdir('trace')", "some/dir/meson.build")
    assert "some/dir/meson.build" in str(exc.value)
    assert "subdir('trace')" in str(exc.value)


def test_with_hook_begin_without_end():
    text = f"a\n{BEGIN}\nstale\nb\n"
    with pytest.raises(HookError) as exc:
        with_hook(text, "x", None, "hw/Kconfig")
    assert "hw/Kconfig" in str(exc.value)


def test_block_text_from_generated_file(tmp_path):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "h.meson").write_text("one\ntwo\n\n")
    assert Hook("f", None, None, "hooks/h.meson").block_text(tmp_path) == "one\ntwo"
    assert Hook("f", None, "fixed\n", None).block_text(tmp_path) == "fixed"


# --- apply_hooks -----------------------------------------------------------------------

def fake_tree(root: Path) -> Path:
    (root / "hw").mkdir(parents=True)
    (root / "meson.build").write_text(
        "project('qemu', ['c'])\nsubdir('qapi')\nsubdir('trace')\nsubdir('util')\n")
    (root / "hw" / "meson.build").write_text("subdir('acpi')\nsubdir('i386')\n")
    (root / "hw" / "Kconfig").write_text("source acpi/Kconfig\nsource i386/Kconfig\n")
    return root


def gen_dir_with_hooks(root: Path, text: str = "trace_events_subdirs += ['hw/tabvm/battery']\n") -> Path:
    (root / "hooks").mkdir(parents=True)
    (root / "hooks" / "trace-subdirs.meson").write_text(text)
    return root


def unnamed_hooks() -> list[Hook]:
    """The hooks of the device build (one unnamed block per file)."""
    return [h for h in load_hooks() if h.id is None]


def test_load_hooks_reads_repo_hooks():
    hooks = {h.file: h for h in unnamed_hooks()}
    assert set(hooks) == {"meson.build", "hw/meson.build", "hw/Kconfig"}
    assert hooks["meson.build"].before == "subdir('trace')"
    assert hooks["meson.build"].generated == "hooks/trace-subdirs.meson"
    assert hooks["hw/meson.build"].text == "subdir('tabvm')"
    assert hooks["hw/Kconfig"].text == "source tabvm/Kconfig"


def test_apply_hooks_changes_three_files_then_none(tmp_path):
    tree = fake_tree(tmp_path / "tree")
    gen = gen_dir_with_hooks(tmp_path / "gen")
    changed = apply_hooks(tree, gen, unnamed_hooks())
    assert sorted(changed) == ["hw/Kconfig", "hw/meson.build", "meson.build"]

    top = (tree / "meson.build").read_text().splitlines()
    i = top.index(BEGIN)
    assert top[i + 1] == "trace_events_subdirs += ['hw/tabvm/battery']"
    assert top[i + 2] == END and top[i + 3] == "subdir('trace')"
    assert (tree / "hw" / "meson.build").read_text().endswith(f"{BEGIN}\nsubdir('tabvm')\n{END}\n")
    assert (tree / "hw" / "Kconfig").read_text().endswith(
        f"{BEGIN}\nsource tabvm/Kconfig\n{END}\n")

    stamps = age(tree)
    assert apply_hooks(tree, gen, unnamed_hooks()) == []
    assert touched(tree, stamps) == set()


def test_apply_hooks_updates_generated_block(tmp_path):
    tree = fake_tree(tmp_path / "tree")
    gen = gen_dir_with_hooks(tmp_path / "gen")
    apply_hooks(tree, gen, unnamed_hooks())
    stamps = age(tree)
    (gen / "hooks" / "trace-subdirs.meson").write_text("trace_events_subdirs += ['hw/tabvm/x']\n")
    assert apply_hooks(tree, gen, unnamed_hooks()) == ["meson.build"]
    assert touched(tree, stamps) == {"meson.build"}
    text = (tree / "meson.build").read_text()
    assert "hw/tabvm/x" in text and "hw/tabvm/battery" not in text
    assert text.splitlines().count(BEGIN) == 1


def test_apply_hooks_missing_anchor_in_tree(tmp_path):
    tree = fake_tree(tmp_path / "tree")
    (tree / "meson.build").write_text("project('qemu')\n")
    with pytest.raises(HookError, match="meson.build"):
        apply_hooks(tree, gen_dir_with_hooks(tmp_path / "gen"), unnamed_hooks())


def _cached_qemu_src() -> Path | None:
    root = Path.home() / ".cache" / "tabvm" / "qemu"
    for src in sorted(root.glob("*/src")):
        if all((src / f).is_file() for f in ("meson.build", "hw/meson.build", "hw/Kconfig")):
            return src
    return None


def test_real_hooks_apply_to_real_qemu_files(tmp_path):
    src = _cached_qemu_src()
    if src is None:
        pytest.skip("no prepared QEMU tree in ~/.cache/tabvm/qemu/*/src (run `tabvm build`)")
    tree = tmp_path / "tree"
    hooks = load_hooks()
    files = sorted({h.file for h in hooks})
    pristine = {}
    for rel in files:
        pristine[rel] = strip_hooks((src / rel).read_text())
        assert "tabvm hook" not in pristine[rel]
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(pristine[rel])
    gen = tmp_path / "gen"
    write_outputs(gen, generate(spec_files()))

    changed = apply_hooks(tree, gen)
    assert sorted(set(changed)) == files
    for rel, text in pristine.items():
        hooked = (tree / rel).read_text()
        for hook in (h for h in hooks if h.file == rel):
            begin, end = hook.markers
            assert hooked.splitlines().count(begin) == 1, (rel, hook.id)
            assert hooked.splitlines().count(end) == 1, (rel, hook.id)
        # the hooks only add their blocks: nothing else of QEMU's file changes
        assert strip_hooks(hooked) == text, rel
    top = (tree / "meson.build").read_text().splitlines()
    end = top.index(END)
    assert top[end + 1] == "subdir('trace')"
    assert "'hw/tabvm/battery'," in "\n".join(top[top.index(BEGIN):end])
    audio = (tree / "qapi" / "audio.json").read_text()
    assert "{ 'name': 'opensles', 'if': 'CONFIG_AUDIO_OPENSLES' }," in audio

    stamps = age(tree)
    assert apply_hooks(tree, gen) == []
    assert touched(tree, stamps) == set()


def test_named_hooks_share_a_file_in_their_comment_styles():
    c = Hook("a.c", "anchor", "x", None, id="one", comment="c")
    hx = Hook("a.c", None, "y", None, id="two", comment="hxcomm")
    assert c.markers == ("/* BEGIN tabvm hook one (qemu-tree/hooks.toml): managed by "
                         "tabvm, do not edit */", "/* END tabvm hook one */")
    assert hx.markers[0].startswith("HXCOMM BEGIN tabvm hook two ")
    text = "a\nanchor\nb\n"
    once = with_hook(with_hook(text, "x", "anchor", "f", c.markers), "y", None, "f",
                     hx.markers)
    twice = with_hook(with_hook(once, "x", "anchor", "f", c.markers), "y", None, "f",
                      hx.markers)
    assert once == twice
    assert once.splitlines() == ["a", *c.markers[:1], "x", c.markers[1], "anchor", "b",
                                 hx.markers[0], "y", hx.markers[1]]


def test_hooks_toml_rejects_two_unnamed_blocks_in_one_file(tmp_path):
    bad = tmp_path / "hooks.toml"
    bad.write_text('[[hook]]\nfile = "a"\ntext = "x"\n[[hook]]\nfile = "a"\ntext = "y"\n')
    with pytest.raises(HookError, match="different ids"):
        load_hooks(bad)
    bad.write_text('[[hook]]\nfile = "a"\ntext = "x"\ncomment = "//"\n')
    with pytest.raises(HookError, match="comment must be one of"):
        load_hooks(bad)


# --- sync_generated -------------------------------------------------------------------

def write_gen(gen: Path, files: dict[str, str]) -> None:
    q = gen / "qemu"
    if q.exists():
        shutil.rmtree(q)
    for rel, text in files.items():
        (q / rel).parent.mkdir(parents=True, exist_ok=True)
        (q / rel).write_text(text)


def test_sync_copies_and_writes_only_changes(tmp_path):
    gen, tree = tmp_path / "gen", tmp_path / "tree"
    tree.mkdir()
    files = {"hw/tabvm/meson.build": "subdir('battery')\n",
             "hw/tabvm/battery/dev.c": "int x;\n",
             "configs/devices/x86_64-softmmu/tabvm.mak": "CONFIG_X=y\n"}
    write_gen(gen, files)
    assert sorted(sync_generated(gen, tree)) == sorted(files)
    for rel, text in files.items():
        assert (tree / rel).read_text() == text
    assert (tree / SYNCED).read_text().split() == sorted(files)

    stamps = age(tree)
    assert sync_generated(gen, tree) == []
    assert touched(tree, stamps) == set()

    files["hw/tabvm/battery/dev.c"] = "int y;\n"
    write_gen(gen, files)
    assert sync_generated(gen, tree) == ["hw/tabvm/battery/dev.c"]
    assert touched(tree, stamps) == {"hw/tabvm/battery/dev.c"}
    assert (tree / "hw/tabvm/battery/dev.c").read_text() == "int y;\n"


def test_sync_removes_no_longer_generated_but_not_other_files(tmp_path):
    gen, tree = tmp_path / "gen", tmp_path / "tree"
    (tree / "hw" / "tabvm").mkdir(parents=True)
    (tree / "hw" / "meson.build").write_text("qemu's own\n")
    (tree / "hw" / "tabvm" / "local-note.txt").write_text("not ours\n")
    write_gen(gen, {"hw/tabvm/meson.build": "subdir('a')\nsubdir('b')\n",
                    "hw/tabvm/a/a.c": "a\n", "hw/tabvm/b/b.c": "b\n"})
    sync_generated(gen, tree)

    write_gen(gen, {"hw/tabvm/meson.build": "subdir('a')\n", "hw/tabvm/a/a.c": "a\n"})
    changed = sync_generated(gen, tree)
    assert sorted(changed) == ["hw/tabvm/b/b.c", "hw/tabvm/meson.build"]
    assert not (tree / "hw/tabvm/b/b.c").exists()
    assert (tree / "hw/tabvm/a/a.c").read_text() == "a\n"
    assert (tree / "hw" / "meson.build").read_text() == "qemu's own\n"
    assert (tree / "hw" / "tabvm" / "local-note.txt").read_text() == "not ours\n"
    assert (tree / SYNCED).read_text().split() == ["hw/tabvm/a/a.c", "hw/tabvm/meson.build"]


def test_sync_without_manifest_removes_nothing(tmp_path):
    gen, tree = tmp_path / "gen", tmp_path / "tree"
    (tree / "hw" / "tabvm" / "old").mkdir(parents=True)
    (tree / "hw" / "tabvm" / "old" / "old.c").write_text("from before\n")
    write_gen(gen, {"hw/tabvm/meson.build": "\n"})
    assert sync_generated(gen, tree) == ["hw/tabvm/meson.build"]
    assert (tree / "hw" / "tabvm" / "old" / "old.c").exists()


def test_sync_file_already_removed_from_tree(tmp_path):
    gen, tree = tmp_path / "gen", tmp_path / "tree"
    tree.mkdir()
    write_gen(gen, {"a.c": "a\n", "b.c": "b\n"})
    sync_generated(gen, tree)
    (tree / "b.c").unlink()
    write_gen(gen, {"a.c": "a\n"})
    assert sync_generated(gen, tree) == ["b.c"]
    assert (tree / SYNCED).read_text() == "a.c\n"


# --- spec-edit locality ---------------------------------------------------------------

def edited_spec(tmp_path: Path, old: str, new: str) -> tuple[Path, Path]:
    """A copy of devspecs/battery.yaml with one edit, at <base>/devspecs/battery.yaml."""
    text = BATTERY_SPEC.read_text()
    assert text.count(old) == 1, old
    base = tmp_path / "edited"
    spec = base / "devspecs" / "battery.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(text.replace(old, new))
    return spec, base


@pytest.mark.parametrize("old,new,gen_changes", [
    ("design_capacity: 38000", "design_capacity: 40000",
     {"qemu/hw/tabvm/battery/tabvm-battery.c"}),
    ("gpe_bit: 0 ", "gpe_bit: 6 ",
     {"qemu/hw/tabvm/battery/tabvm-battery.c", "acpi/battery.asl"}),
])
def test_spec_edit_touches_only_dependent_files(tmp_path, old, new, gen_changes):
    gen, tree = tmp_path / "gen", fake_tree(tmp_path / "tree")
    outputs = generate([BATTERY_SPEC], base=REPO)
    write_outputs(gen, outputs)
    sync_generated(gen, tree)
    apply_hooks(tree, gen, unnamed_hooks())
    gen_stamps, tree_stamps = age(gen), age(tree)

    spec, base = edited_spec(tmp_path, old, new)
    edited = generate([spec], base=base)
    assert {o.path for o in edited} == {o.path for o in outputs}
    gen_changed = write_outputs(gen, edited)
    assert set(gen_changed) == gen_changes
    assert touched(gen, gen_stamps) == gen_changes
    assert not any(p.endswith(("meson.build", "Kconfig", ".mak", "trace-events", "trace.h"))
                   for p in gen_changed)

    tree_changed = sync_generated(gen, tree) + apply_hooks(tree, gen, unnamed_hooks())
    assert set(tree_changed) == {"hw/tabvm/battery/tabvm-battery.c"}
    assert touched(tree, tree_stamps) == {"hw/tabvm/battery/tabvm-battery.c"}
    c_text = {o.path: o.text for o in edited}["qemu/hw/tabvm/battery/tabvm-battery.c"]
    assert (tree / "hw/tabvm/battery/tabvm-battery.c").read_text() == c_text
