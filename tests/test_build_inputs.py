"""The top-level meson.build lists every input of the build steps, and the patch series is sane."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

PATCHES = REPO / "qemu-tree" / "patches"


def meson_files_lists(text: str) -> dict[str, list[str]]:
    """``name = files('a', 'b', ...)`` assignments of a meson.build, comments dropped."""
    text = "\n".join(re.sub(r"#.*$", "", line) for line in text.splitlines())
    lists = {}
    for m in re.finditer(r"^(\w+)\s*=\s*files\(([^)]*)\)", text, re.M):
        lists[m.group(1)] = re.findall(r"'([^']*)'", m.group(2))
    return lists


@pytest.fixture(scope="module")
def lists() -> dict[str, list[str]]:
    found = meson_files_lists((REPO / "meson.build").read_text())
    for name in ("specs", "generator_files", "qemu_recipe_files"):
        assert name in found, f"meson.build has no `{name} = files(...)`"
    return found


def rel(paths) -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for p in paths)


def test_parser_reads_lists():
    text = ("# x = files('no')\nfoo = files(\n  'a/b.py',  # note\n  'c.j2',\n)\n"
            "bar = files('d')\nbaz = other('e')\n")
    assert meson_files_lists(text) == {"foo": ["a/b.py", "c.j2"], "bar": ["d"]}


def test_lists_have_no_duplicates(lists):
    for name, items in lists.items():
        assert len(items) == len(set(items)), f"{name} lists a file twice"


def test_every_listed_file_exists(lists):
    missing = [f for items in lists.values() for f in items if not (REPO / f).is_file()]
    assert missing == []


def test_specs_are_every_devspec(lists):
    assert sorted(lists["specs"]) == rel((REPO / "devspecs").glob("*.yaml"))


def test_generator_files_are_every_generator_input(lists):
    expected = (rel(p for p in (REPO / "generator").rglob("*.py") if "__pycache__" not in p.parts)
                + rel((REPO / "templates").rglob("*.j2"))
                # copied into QEMU's tree for the OpenSL ES drivers
                + rel((REPO / "opensles" / "include").rglob("*.h"))
                + ["qemu-tree/recipe.toml"])
    assert sorted(lists["generator_files"]) == sorted(expected)


def _tabvm_imports(module: Path) -> set[Path]:
    """tabvm/*.py files ``module`` imports directly (absolute or relative)."""
    tree = ast.parse(module.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and module.parent.name == "tabvm":
                base = node.module
                names.update([base] if base else [a.name for a in node.names])
            elif node.level == 0 and node.module and node.module.startswith("tabvm."):
                names.add(node.module.split(".")[1])
            elif node.level == 0 and node.module == "tabvm":
                names.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("tabvm."))
    found = set()
    for name in names:
        path = REPO / "tabvm" / f"{name.split('.')[0]}.py"
        if path.is_file():
            found.add(path)
    return found


def qemu_step_modules() -> set[str]:
    """tabvm modules loaded by ``python -m tabvm.buildsteps qemu`` (transitively)."""
    todo, seen = [REPO / "tabvm" / "buildsteps.py"], set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(_tabvm_imports(mod))
    return set(rel(seen))


def test_import_scan_finds_known_imports():
    mods = qemu_step_modules()
    assert {"tabvm/buildsteps.py", "tabvm/qemu_build.py", "tabvm/qemu_source.py",
            "tabvm/debian.py", "tabvm/recipe.py"} <= mods
    assert "tabvm/guest.py" not in mods and "tabvm/cli.py" not in mods


def test_qemu_recipe_files_cover_patches_hooks_and_build_modules(lists):
    listed = set(lists["qemu_recipe_files"])
    required = set(rel(p for p in PATCHES.iterdir() if p.is_file()))
    required |= {"qemu-tree/hooks.toml"}
    required |= {f"tabvm/{m}.py" for m in ("qemu_build", "qemu_source", "qemu_tree", "recipe",
                                           "debian", "acpi", "buildsteps")}
    assert sorted(required - listed) == []


def test_qemu_recipe_files_cover_whole_import_closure(lists):
    assert sorted(qemu_step_modules() - set(lists["qemu_recipe_files"])) == []


def series() -> list[str]:
    names = [line.split("#")[0].strip() for line in (PATCHES / "series").read_text().splitlines()]
    return [n for n in names if n]


def test_series_is_not_empty_and_has_no_duplicates():
    names = series()
    assert names
    assert len(names) == len(set(names))


def test_every_patch_in_series_exists():
    assert [n for n in series() if not (PATCHES / n).is_file()] == []


def test_every_patch_file_is_in_series():
    files = sorted(p.name for p in PATCHES.iterdir() if p.is_file() and p.name != "series")
    assert sorted(set(files) - set(series())) == []


@pytest.mark.parametrize("name", series())
def test_patch_starts_with_why_header(name):
    text = (PATCHES / name).read_text()
    first_diff = re.search(r"^(---$|--- a/|diff --git|Index: )", text, re.M)
    assert first_diff, f"{name}: no diff in patch"
    header = text[:first_diff.start()]
    assert re.search(r"^Why:\s*\S", header, re.M), f"{name}: header has no 'Why:' line"
    assert re.search(r"^--- a/", text, re.M) and re.search(r"^\+\+\+ b/", text, re.M)
