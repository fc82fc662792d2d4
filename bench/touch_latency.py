"""Touch latency benchmark: host injection -> event read in the guest.

  python bench/touch_latency.py [--events 1000]

For the generated tabvm-touchscreen, QEMU's usb-tablet and virtio-multitouch-pci,
one VM each (TCG, the project's QEMU and test guest), in one run: the guest agent
blocks reading the device's /dev/input/eventN, the host sends one QMP
input-send-event (a touch down, or an absolute move for usb-tablet) and times
until the agent's answer with the first resulting input event is back. That
round trip includes the agent's answer over the serial line; the agent's own
ping round trip is printed beside it.

Prints median and p99 per device and the ratios to virtio-multitouch-pci.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from glue.agent_client import AgentClient  # noqa: E402
from glue.evdev import EV_ABS, EV_KEY, input_devices  # noqa: E402
from glue.qmp_input import abs_move, mtt  # noqa: E402
from glue.profile import builtin_profile, default_outputs  # noqa: E402
from glue.qemu import Qemu  # noqa: E402
from glue.runtime import new_runtime_dir  # noqa: E402
from tabvm.guest import build_guest  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    devices: tuple[str, ...]
    input_name: str                      # substring of /sys/class/input/*/name

    def press(self, i: int) -> list[dict]:
        value = 8000 + (i % 2) * 16000
        if self.name == "usb-tablet":
            return [abs_move("x", value), abs_move("y", value)]
        return [mtt("begin", 0, i), mtt("data", 0, i, "x", value),
                mtt("data", 0, i, "y", value)]

    def release(self, i: int) -> list[dict] | None:
        return None if self.name == "usb-tablet" else [mtt("end", 0, -1)]


PEERS = (
    Peer("tabvm-touchscreen", ("qemu-xhci,id=xhci", "tabvm-touchscreen,bus=xhci.0"),
         "TabVM Touchscreen"),
    Peer("usb-tablet", ("qemu-xhci,id=xhci", "usb-tablet,bus=xhci.0"), "USB Tablet"),
    Peer("virtio-multitouch-pci", ("virtio-multitouch-pci",), "MultiTouch"),
)


def event_node(agent: AgentClient, name: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for dev_name, (_, event) in input_devices(agent).items():
            if name in dev_name and not dev_name.endswith("Mouse"):
                return event
        time.sleep(0.5)
    raise RuntimeError(f"no guest input device named like {name!r}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(peer: Peer, events: int, image, outputs) -> dict:
    config = builtin_profile(outputs, image.vmlinux, image.initrd, "tcg", touch=False)
    config = dataclasses.replace(config, devices=config.devices + peer.devices)
    latencies, pings = [], []
    with Qemu(config, new_runtime_dir(f"bench-{peer.name}")) as vm:
        agent = AgentClient(str(vm.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        node = event_node(agent, peer.input_name)
        agent.ev_start(0, node)
        for _ in range(50):
            t0 = time.perf_counter()
            agent.ping()
            pings.append(time.perf_counter() - t0)
        for i in range(events):
            got: dict = {}

            def wait_event() -> None:
                got["events"] = agent.ev_take(0, 1, 5000)
                got["t"] = time.perf_counter()

            reader = threading.Thread(target=wait_event)
            reader.start()
            time.sleep(0.005)                  # the agent is now blocked in poll()
            t0 = time.perf_counter()
            vm.cmd("input-send-event", events=peer.press(i))
            reader.join()
            first = got["events"][0] if got["events"] else None
            if first is None or first.type not in (EV_KEY, EV_ABS):
                raise RuntimeError(f"{peer.name}: unexpected first event {first}")
            latencies.append(got["t"] - t0)
            agent.ev_take(0, 10000, 30)        # the rest of this frame
            release = peer.release(i)
            if release:
                vm.cmd("input-send-event", events=release)
                agent.ev_take(0, 10000, 40)
        agent.ev_stop(0)
        agent.close()
    ms = [x * 1000 for x in latencies]
    return {"median": statistics.median(ms), "p99": percentile(ms, 99),
            "max": max(ms), "ping": statistics.median(pings) * 1000, "n": len(ms)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1000)
    args = p.parse_args()
    outputs = default_outputs()
    outputs.check()
    image = build_guest(progress=lambda m: None)
    results = {}
    for peer in PEERS:
        print(f"measuring {peer.name} ({args.events} events)...", flush=True)
        results[peer.name] = measure(peer, args.events, image, outputs)
    base = results["virtio-multitouch-pci"]
    print(f"\n{'device':<24}{'median ms':>10}{'p99 ms':>9}{'max ms':>9}"
          f"{'p99/virtio':>12}{'agent ping ms':>15}")
    for name, r in results.items():
        print(f"{name:<24}{r['median']:>10.2f}{r['p99']:>9.2f}{r['max']:>9.2f}"
              f"{r['p99'] / base['p99']:>12.2f}{r['ping']:>15.2f}")


if __name__ == "__main__":
    main()
