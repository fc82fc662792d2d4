"""Put the generated devices into a prepared QEMU tree.

Generated files are copied only when their text differs (mtimes of unchanged files
stay, so QEMU's ninja recompiles only what changed); files a removed spec had
generated are deleted; marker-delimited hook blocks are (re)written in QEMU's
build files as qemu-tree/hooks.toml says.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from generator.output import write_if_changed

from .recipe import QEMU_TREE

HOOKS = QEMU_TREE / "hooks.toml"
BEGIN = "# BEGIN tabvm hook (qemu-tree/hooks.toml): managed by tabvm, do not edit"
END = "# END tabvm hook"
SYNCED = ".tabvm-synced"


class HookError(RuntimeError):
    pass


# How a marker line is written in each kind of QEMU file
COMMENT_STYLES = {
    "#": ("# ", ""),                 # meson, Kconfig, QAPI schema
    "c": ("/* ", " */"),             # C sources and headers
    "hxcomm": ("HXCOMM ", ""),       # qemu-options.hx
}


@dataclass(frozen=True)
class Hook:
    file: str
    before: str | None
    text: str | None
    generated: str | None
    id: str | None = None            # names the block when a file has several
    comment: str = "#"

    def block_text(self, gen_dir: Path) -> str:
        body = self.text if self.text is not None else (gen_dir / self.generated).read_text()
        return body.rstrip("\n")

    @property
    def markers(self) -> tuple[str, str]:
        """BEGIN and END lines; an unnamed '#' hook keeps the original markers."""
        if self.id is None and self.comment == "#":
            return BEGIN, END
        open_, close = COMMENT_STYLES[self.comment]
        name = f" {self.id}" if self.id else ""
        return (f"{open_}BEGIN tabvm hook{name} (qemu-tree/hooks.toml): managed by tabvm, "
                f"do not edit{close}", f"{open_}END tabvm hook{name}{close}")


def load_hooks(path: Path = HOOKS) -> list[Hook]:
    hooks = []
    for h in tomllib.loads(path.read_text())["hook"]:
        comment = h.get("comment", "#")
        if comment not in COMMENT_STYLES:
            raise HookError(f"{path}: hook for {h['file']}: comment must be one of "
                            f"{', '.join(COMMENT_STYLES)}")
        hooks.append(Hook(h["file"], h.get("before"), h.get("text"), h.get("generated"),
                          h.get("id"), comment))
    seen: set[tuple[str, str | None]] = set()
    for hook in hooks:
        if (hook.file, hook.id) in seen:
            raise HookError(f"{path}: two hooks for {hook.file} need different ids")
        seen.add((hook.file, hook.id))
    return hooks


def with_hook(text: str, block: str, before: str | None, where: str,
              markers: tuple[str, str] = (BEGIN, END)) -> str:
    """``text`` with exactly one marker block holding ``block``."""
    begin, end_marker = markers
    lines = text.splitlines()
    if begin in lines:
        start = lines.index(begin)
        try:
            end = lines.index(end_marker, start)
        except ValueError:
            raise HookError(f"{where}: '{begin}' without '{end_marker}'") from None
        del lines[start:end + 1]
        insert_at = start
    elif before is not None:
        try:
            insert_at = lines.index(before)
        except ValueError:
            raise HookError(f"{where}: anchor line {before!r} not found") from None
    else:
        insert_at = len(lines)
    lines[insert_at:insert_at] = [begin, *block.splitlines(), end_marker]
    return "\n".join(lines) + "\n"


def apply_hooks(tree: Path, gen_dir: Path, hooks: list[Hook] | None = None) -> list[str]:
    changed = []
    for hook in hooks if hooks is not None else load_hooks():
        target = tree / hook.file
        new = with_hook(target.read_text(), hook.block_text(gen_dir), hook.before, hook.file,
                        hook.markers)
        if write_if_changed(target, new):
            changed.append(hook.file)
    return changed


def sync_generated(gen_dir: Path, tree: Path) -> list[str]:
    """Mirror ``gen_dir/qemu`` into ``tree``; return the QEMU paths written or removed."""
    source = gen_dir / "qemu"
    wanted = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    changed = [rel for rel in wanted
               if write_if_changed(tree / rel, (source / rel).read_text())]
    manifest = tree / SYNCED
    previous = manifest.read_text().split() if manifest.exists() else []
    for old in sorted(set(previous) - set(wanted)):
        (tree / old).unlink(missing_ok=True)
        changed.append(old)
    write_if_changed(manifest, "".join(f"{p}\n" for p in wanted))
    return changed


def install_generated(gen_dir: Path, tree: Path) -> list[str]:
    return sync_generated(gen_dir, tree) + apply_hooks(tree, gen_dir)
