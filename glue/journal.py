"""The session journal: one small JSON file saying what the session's files hold.

The lifecycle writes it at each commit point (``Journal.commit``): the new text
goes to a temporary file that is fsync'd and renamed over the old one, then the
directory is fsync'd, so a reader sees either the old record or the new one,
never a mix, whatever moment the writer is killed at.

A record is a ``Record``: the lifecycle ``state`` (``running``, ``suspended``,
``stopped``), the ``epoch`` (one more per start of the guest), and the
``checkpoint`` the session can resume from, or None. A checkpoint exists only
while nothing has run since it was taken: the lifecycle drops it (commits
``running`` without one) before the guest gets CPU time again, because guest RAM
lives in a file the running guest writes to.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_NAME = "journal.json"
VERSION = 1
STATES = ("running", "suspended", "stopped")


class JournalError(RuntimeError):
    pass


def boot_id() -> str:
    """This host boot's id: RAM a checkpoint did not fsync is only trusted within it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class Checkpoint:
    """A consistent (RAM file, device state, disk) triple the session can resume.

    ``device_state`` and ``ram`` are file names in the session directory (or, for
    a template checkpoint, paths of the template's files); ``config_key`` names
    the QEMU configuration that saved it (binary, firmware, kernel, devices, RAM
    size); ``durable`` says RAM and disk were fsync'd (else the checkpoint holds
    only within ``boot_id``)."""

    device_state: str
    ram: str
    config_key: str
    boot_id: str
    durable: bool
    source: str = "suspend"            # suspend | template

    def usable(self, config_key: str, directory: Path) -> str | None:
        """None if the session can resume from this, else why not."""
        if self.config_key != config_key:
            return "the VM configuration changed since it was saved"
        if not self.durable and self.boot_id != boot_id():
            return "the host rebooted since it was saved and guest RAM was not fsync'd"
        for name in (self.device_state, self.ram):
            if not (directory / name).is_file():
                return f"{name} is missing"
        return None


@dataclass(frozen=True)
class Record:
    state: str = "stopped"
    epoch: int = 0
    checkpoint: Checkpoint | None = None
    clean: bool = True                 # the last QEMU stopped cleanly (disk closed)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {"version": VERSION, **asdict(self)}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Record:
        try:
            data = json.loads(text)
            if data.pop("version") != VERSION:
                raise ValueError("unknown version")
            cp = data.pop("checkpoint")
            record = cls(checkpoint=Checkpoint(**cp) if cp else None, **data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise JournalError(f"unreadable journal: {exc}") from None
        if record.state not in STATES:
            raise JournalError(f"unreadable journal: state {record.state!r}")
        return record


class Journal:
    """The journal of the session in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / JOURNAL_NAME

    def load(self) -> Record | None:
        """The last committed record; None if there is none. An unreadable
        journal raises JournalError (the caller falls back to a cold boot)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"cannot read {self.path}: {exc.strerror}") from None
        return Record.from_json(text)

    def commit(self, record: Record) -> None:
        tmp = self.path.with_name(f".{JOURNAL_NAME}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, record.to_json().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.directory)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
