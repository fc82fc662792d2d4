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


@dataclass(frozen=True)
class Hook:
    file: str
    before: str | None
    text: str | None
    generated: str | None

    def block_text(self, gen_dir: Path) -> str:
        body = self.text if self.text is not None else (gen_dir / self.generated).read_text()
        return body.rstrip("\n")


def load_hooks(path: Path = HOOKS) -> list[Hook]:
    return [Hook(h["file"], h.get("before"), h.get("text"), h.get("generated"))
            for h in tomllib.loads(path.read_text())["hook"]]


def with_hook(text: str, block: str, before: str | None, where: str) -> str:
    """``text`` with exactly one marker block holding ``block``."""
    lines = text.splitlines()
    if BEGIN in lines:
        start = lines.index(BEGIN)
        try:
            end = lines.index(END, start)
        except ValueError:
            raise HookError(f"{where}: '{BEGIN}' without '{END}'") from None
        del lines[start:end + 1]
        insert_at = start
    elif before is not None:
        try:
            insert_at = lines.index(before)
        except ValueError:
            raise HookError(f"{where}: anchor line {before!r} not found") from None
    else:
        insert_at = len(lines)
    lines[insert_at:insert_at] = [BEGIN, *block.splitlines(), END]
    return "\n".join(lines) + "\n"


def apply_hooks(tree: Path, gen_dir: Path, hooks: list[Hook] | None = None) -> list[str]:
    changed = []
    for hook in hooks if hooks is not None else load_hooks():
        target = tree / hook.file
        new = with_hook(target.read_text(), hook.block_text(gen_dir), hook.before, hook.file)
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
