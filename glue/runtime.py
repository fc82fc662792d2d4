"""The VM's private runtime directory (sockets, logs): mode 0700, owned by us."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class RuntimeDirError(RuntimeError):
    pass


def runtime_base() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "tabvm"
    return Path(tempfile.gettempdir()) / f"tabvm-{os.getuid()}"


def private_dir(path: Path) -> Path:
    """Create ``path`` as 0700 (its parent must exist); refuse one we do not own."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise RuntimeDirError(f"cannot create {path}: {exc}") from None
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise RuntimeDirError(f"{path} is not a directory owned by uid {os.getuid()}")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def new_runtime_dir(name: str = "vm") -> Path:
    """A fresh private directory for one VM run."""
    base = private_dir(runtime_base())
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
