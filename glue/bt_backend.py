"""What ``tabvm run --bt SPEC`` means: where the guest's Bluetooth controller lives.

QEMU's USB Bluetooth device talks H4 over a chardev that is a *client* socket
with reconnect, so every backend is an H4 server somewhere:

- ``bumble`` (default): ``python -m glue.bt_peer`` (a virtual controller, and an
  LE advertiser with the benchmark L2CAP server) on ``bt.sock`` in the VM's
  runtime directory.
- ``unix:PATH`` / ``tcp:HOST:PORT``: an H4 server that already runs (an HCI
  bridge, RootCanal's H4 port, another bt_peer); nothing is started.
- ``hci:N`` (or ``hci:hciN``): the real controller hciN through a Linux HCI user
  channel, relayed by ``python -m glue.bt_peer --bridge-hci N`` on ``bt.sock``.

::

    backend = BtBackend.parse(spec)                  # ValueError for a bad spec
    peer = backend.start(rundir, log_path=rundir / "bt.log")   # BtPeer or None
    qemu_args = ["-chardev", backend.chardev("bt0", rundir)]
    ...
    if peer: peer.stop()

(``rootcanal`` is not offered: the PyPI package ships a binary that needs glibc
2.38+/GLIBCXX_3.4.32, newer than Debian 12's.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .bt_peer import DEFAULT_PSM, BtPeer, Endpoint

__all__ = ["BtBackend", "DEFAULT_SPEC", "FORMS", "RECONNECT_MS", "SOCKET_NAME",
           "DEFAULT_CONTROLLER_ADDRESS", "DEFAULT_ADVERTISER_ADDRESS",
           "DEFAULT_ADVERTISER_NAME"]

DEFAULT_SPEC = "bumble"
FORMS = "bumble, unix:PATH, tcp:HOST:PORT, hci:N"
RECONNECT_MS = 200
SOCKET_NAME = "bt.sock"
# Addresses from the range RFC 7042 reserves for documentation (00-00-5E-00-53-xx).
DEFAULT_CONTROLLER_ADDRESS = "00:00:5E:00:53:01"
DEFAULT_ADVERTISER_ADDRESS = "00:00:5E:00:53:02"
DEFAULT_ADVERTISER_NAME = "tabvm-peer"


def _qemu_escape(value: str) -> str:
    """A value inside a QEMU option string: commas are doubled."""
    return value.replace(",", ",,")


@dataclass(frozen=True)
class BtBackend:
    kind: str                          # "bumble" | "unix" | "tcp" | "hci"
    endpoint: Endpoint | None = None   # unix/tcp: the existing server
    hci_index: int | None = None       # hci

    @classmethod
    def parse(cls, spec: str | None) -> BtBackend:
        spec = DEFAULT_SPEC if spec is None else spec.strip()
        bad = ValueError(f"bad --bt {spec!r}: expected one of {FORMS}")
        if spec == "bumble":
            return cls("bumble")
        kind, sep, rest = spec.partition(":")
        if kind in ("unix", "tcp") and sep:
            try:
                endpoint = Endpoint.parse(spec)
            except ValueError:
                raise bad from None
            if endpoint.kind == "tcp" and endpoint.port == 0:
                raise ValueError(f"bad --bt {spec!r}: port 0 is not a server's port")
            return cls(kind, endpoint=endpoint)
        if kind == "hci" and sep:
            digits = rest[3:] if rest.startswith("hci") else rest
            if digits.isdigit() and int(digits) <= 0xFFFF:
                return cls("hci", hci_index=int(digits))
        if kind == "rootcanal":
            raise ValueError(f"bad --bt {spec!r}: rootcanal is not supported here (its "
                             f"binary needs a newer glibc); run it yourself and use "
                             f"tcp:HOST:PORT with its H4 port. Accepted: {FORMS}")
        raise bad

    def socket_path(self, rundir: Path) -> Path | None:
        """The unix socket QEMU connects to (None for tcp)."""
        if self.kind in ("bumble", "hci"):
            return rundir / SOCKET_NAME
        return self.endpoint.path if self.endpoint else None

    def listen_spec(self, rundir: Path) -> str:
        """The H4 server's address in bt_peer's ``--listen`` form."""
        if self.endpoint is not None:
            return str(self.endpoint)
        return f"unix:{self.socket_path(rundir)}"

    def chardev(self, chardev_id: str, rundir: Path) -> str:
        """The ``-chardev`` option string: a reconnecting client socket."""
        if self.kind == "tcp":
            assert self.endpoint is not None
            where = f"host={_qemu_escape(self.endpoint.host or '')},port={self.endpoint.port}"
        else:
            where = f"path={_qemu_escape(str(self.socket_path(rundir)))}"
        return f"socket,id={chardev_id},{where},reconnect-ms={RECONNECT_MS}"

    def start(self, rundir: Path, *, log_path: Path | None = None,
              controller_address: str = DEFAULT_CONTROLLER_ADDRESS,
              advertiser_name: str | None = DEFAULT_ADVERTISER_NAME,
              advertiser_address: str | None = DEFAULT_ADVERTISER_ADDRESS,
              psm: int = DEFAULT_PSM, timeout: float = 15.0) -> BtPeer | None:
        """Start the host-side process, if this backend has one, and wait until it
        listens. Raises BtPeerError (with its stderr tail) if it cannot start;
        ``advertiser_name=None``: no advertiser. The caller stops the BtPeer."""
        listen = self.listen_spec(rundir)
        if self.kind == "bumble":
            return BtPeer.start(listen, controller_address,
                                advertiser_name=advertiser_name,
                                advertiser_address=advertiser_address if advertiser_name else None,
                                psm=psm, log_path=log_path, timeout=timeout)
        if self.kind == "hci":
            assert self.hci_index is not None
            return BtPeer.start_bridge(self.hci_index, listen, log_path=log_path,
                                       timeout=timeout)
        return None

    def __str__(self) -> str:
        if self.kind == "hci":
            return f"hci:{self.hci_index}"
        return str(self.endpoint) if self.endpoint else self.kind
