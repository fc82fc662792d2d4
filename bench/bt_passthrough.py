"""Bluetooth HCI passthrough benchmark: the guest's traffic through tabvm-bluetooth
against the same traffic sent to the virtual controller directly from the host.

  python bench/bt_passthrough.py [--count 1000] [--total 1048576] [--sdu 512 ...]

One virtual Bluetooth world (glue.bt_peer: Bumble controllers on one link, an LE
advertiser with an L2CAP credit-based channel server) per path, in one run:

- guest: the test guest under TCG with the generated controller (once with its
  spec's defaults, once with coalesce-events=off: one event per 1 ms interrupt
  frame, once with high-speed=on: events polled every 125 us); the guest agent times HCI_Read_BD_ADDR round trips on a raw HCI socket
  (hcirtt) and sends TOTAL bytes over an L2CAP LE channel from the guest's kernel
  stack (l2send);
- direct: bench/bt_direct.py connects to the controller's socket itself (as QEMU
  would) and does the same: Read_BD_ADDR round trips, and a Bumble host sending the
  same TOTAL in the same SDUs.

Prints median and p99 command round trips, throughput, and the device path's
overhead: extra time per command, and extra time per ACL packet (the link's
LE ACL buffer is 251 bytes, so one SDU of S bytes is ceil((S + 2 + 4) / 251)
ACL packets with L2CAP's headers).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bt_direct import command_rtt, l2cap_throughput  # noqa: E402
from glue.agent_client import AgentClient  # noqa: E402
from glue.bt_backend import (DEFAULT_ADVERTISER_ADDRESS,  # noqa: E402
                             DEFAULT_CONTROLLER_ADDRESS, BtBackend)
from glue.bt_peer import DEFAULT_PSM, BtPeer  # noqa: E402
from glue.profile import BT_CHARDEV_ID, builtin_profile, default_outputs  # noqa: E402
from glue.qemu import Qemu  # noqa: E402
from glue.runtime import new_runtime_dir  # noqa: E402
from tabvm.guest import build_guest  # noqa: E402

ACL_BUFFER = 251          # the virtual controllers' LE ACL data length


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, math.ceil(len(values) * 0.99) - 1)]


def acl_packets(total: int, sdu: int) -> int:
    sdus = [sdu] * (total // sdu) + ([total % sdu] if total % sdu else [])
    # K-frame: 4-byte basic header + 2-byte SDU length in the first PDU
    return sum(math.ceil((s + 6) / ACL_BUFFER) for s in sdus)


@dataclasses.dataclass
class Result:
    rtt_ns: list[int]
    throughput: dict[int, tuple[int, float]]     # sdu -> (acked bytes, seconds)


def direct(count: int, total: int, sdus: list[int]) -> Result:
    rundir = new_runtime_dir("bench-bt-direct")
    listen = f"unix:{rundir / 'bt.sock'}"
    with BtPeer.start(listen, DEFAULT_CONTROLLER_ADDRESS, advertiser_name="bench",
                      advertiser_address=DEFAULT_ADVERTISER_ADDRESS):
        rtt = command_rtt(listen, count)
        tp = {sdu: l2cap_throughput(listen, DEFAULT_ADVERTISER_ADDRESS, DEFAULT_PSM,
                                    total, sdu) for sdu in sdus}
    return Result(rtt, tp)


def l2_send(agent: AgentClient, total: int, sdu: int) -> tuple[int, float]:
    r = agent.l2_send(0, DEFAULT_ADVERTISER_ADDRESS, "public", DEFAULT_PSM, total, sdu)
    return r.acked, r.elapsed_ns / 1e9


def guest(count: int, total: int, sdus: list[int], **props: str) -> Result:
    image = build_guest(progress=lambda m: None)
    rundir = new_runtime_dir("bench-bt-guest")
    backend = BtBackend.parse("bumble")
    config = builtin_profile(default_outputs(), image.vmlinux, image.initrd, "tcg",
                             touch=False, bt_chardev=backend.chardev(BT_CHARDEV_ID, rundir),
                             bt_props=props)
    with backend.start(rundir, advertiser_name="bench"), Qemu(config, rundir) as vm:
        agent = AgentClient(str(vm.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        deadline = time.monotonic() + 30
        while not agent.hci_list():
            if time.monotonic() > deadline:
                raise SystemExit("the guest never saw its Bluetooth controller")
            time.sleep(0.3)
        agent.hci_up(0)
        rtt = agent.hci_rtt(0, count)
        tp = {sdu: l2_send(agent, total, sdu) for sdu in sdus}
        agent.close()
    return Result(rtt, tp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1000, help="command round trips per path")
    p.add_argument("--total", type=int, default=1 << 20, help="bytes per L2CAP transfer")
    p.add_argument("--sdu", type=int, action="append", help="SDU size (repeatable; "
                   "default 512 and 4096)")
    args = p.parse_args(argv)
    sdus = args.sdu or [512, 4096]
    print(f"HCI passthrough, {args.count} Read_BD_ADDR round trips and {args.total} "
          f"bytes per L2CAP transfer; guest under TCG", flush=True)
    results = {"direct": direct(args.count, args.total, sdus),
               "guest": guest(args.count, args.total, sdus),
               "guest-1/ms": guest(args.count, args.total, sdus, coalesce_events="off"),
               "guest-hs": guest(args.count, args.total, sdus, high_speed="on")}
    print(f"\n{'path':<11} {'cmd median':>11} {'cmd p99':>9}  " +
          "  ".join(f"{'SDU ' + str(s):>16}" for s in sdus))
    for name, r in results.items():
        med, tail = statistics.median(r.rtt_ns) / 1e3, p99(r.rtt_ns) / 1e3
        tps = "  ".join(f"{acked / sec / 1e6:9.2f} MB/s{'' if acked == args.total else '!':1}"
                        .rjust(16) for acked, sec in (r.throughput[s] for s in sdus))
        print(f"{name:<11} {med:9.0f}us {tail:7.0f}us  {tps}")
    g, d = results["guest"], results["direct"]
    extra_cmd = (statistics.median(g.rtt_ns) - statistics.median(d.rtt_ns)) / 1e3
    print(f"\ndevice path overhead per command (median): {extra_cmd:+.0f} us "
          f"(x{statistics.median(g.rtt_ns) / statistics.median(d.rtt_ns):.2f})")
    for s in sdus:
        n = acl_packets(args.total, s)
        extra = (g.throughput[s][1] - d.throughput[s][1]) / n * 1e6
        print(f"device path overhead per ACL packet, SDU {s}: {extra:+.1f} us over {n} "
              f"packets (throughput x{(d.throughput[s][1] / g.throughput[s][1]):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
