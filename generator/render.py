"""Backends: IR -> text of every generated file, with Jinja2 templates.

Templates are thin (loops and ifs); what they print comes from IR properties.
Each generated file is an ``Output``: a path relative to the output directory and
its text. Nothing is written here (see ``output.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .ir import (GENERATED_DIR, H4_CORE, SLES_HEADERS, Balloon, Battery, Device, Hci, Multitouch,
                 Opensles)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SLES_INCLUDE = TEMPLATES.parent / "opensles" / "include" / "SLES"
# Generated blocks that qemu-tree/hooks.toml puts into QEMU's audio files
AUDIO_HOOKS = ("qapi-audio-options.json", "qapi-audio-driver.json", "qapi-audio-branch.json",
               "audio-template-pdo.h", "audio-create-pdos.c", "audio-drivers.meson",
               "audiodev-help.hx", "audiodev-doc.hx")
# ... and into QEMU's QAPI modules: the ballooning policies' events and -object types
BALLOON_HOOKS = ("qapi-machine-balloon.json", "qapi-qom-balloon-properties.json",
                 "qapi-qom-balloon-type.json", "qapi-qom-balloon-branch.json",
                 "vl-balloon-delayed.c")
DEVICE_CONFIG = "tabvm"
DEVICE_CONFIG_PATH = f"configs/devices/x86_64-softmmu/{DEVICE_CONFIG}.mak"
# the same set for qemu-system-i386: the only system target QEMU 10.0 builds on
# 32-bit hosts (tabvm build --cross android-x86)
DEVICE_CONFIG_PATH_I386 = f"configs/devices/i386-softmmu/{DEVICE_CONFIG}.mak"


@dataclass(frozen=True)
class Output:
    path: str          # relative to the output directory, '/'-separated
    text: str
    spec_paths: tuple[str, ...]
    copied: bool = False   # a repository file put in place as it is (no banner)


def align(text: str) -> str:
    """Spaces as wide as ``text``: aligns a continuation line under an open parenthesis."""
    return " " * len(text)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["align"] = align
    return env


class Renderer:
    def __init__(self) -> None:
        self.env = environment()

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def device_files(self, d: Device) -> list[Output]:
        ctx = {"d": d, "spec_path": d.spec_path}
        base = f"qemu/{d.qemu_dir}"
        files = [(f"{base}/trace.h", "qemu/trace.h.j2")]
        if d.kconfig:
            files += [
                (f"{base}/meson.build", "qemu/device-meson.build.j2"),
                (f"{base}/Kconfig", "qemu/device-Kconfig.j2"),
            ]
        if isinstance(d, Battery):
            files += [
                (f"{base}/{d.c_file}", "battery/device.c.j2"),
                (f"{base}/trace-events", "battery/trace-events.j2"),
                (f"acpi/{d.asl_file}", "battery/ssdt.asl.j2"),
            ]
        if isinstance(d, Multitouch):
            files += [
                (f"{base}/{d.c_file}", "multitouch/device.c.j2"),
                (f"{base}/trace-events", "multitouch/trace-events.j2"),
            ]
        if isinstance(d, Opensles):
            files += [
                (f"{base}/meson.build", "opensles/meson.build.j2"),
                (f"{base}/{d.c_file}", "opensles/driver.c.j2"),
                (f"{base}/trace-events", "opensles/trace-events.j2"),
            ]
        if isinstance(d, Balloon):
            files += [
                (f"{base}/{d.c_file}", "balloon/object.c.j2"),
                (f"{base}/{d.policy_c_file}", "balloon/policy.c.j2"),
                (f"{base}/{d.policy_header}", "balloon/policy.h.j2"),
                (f"{base}/trace-events", "balloon/trace-events.j2"),
            ]
        if isinstance(d, Hci):
            files += [
                (f"{base}/{d.c_file}", "hci/device.c.j2"),
                (f"{base}/trace-events", "hci/trace-events.j2"),
            ]
        return [Output(path, self.render(t, **ctx), (d.spec_path,)) for path, t in files]

    def common_files(self, devices: list[Device], base_devices: list[str]) -> list[Output]:
        specs = tuple(d.spec_path for d in devices)
        ctx = {"devices": devices, "base_devices": base_devices,
               "libraries": libraries(devices),
               "sles": SLES_HEADERS if any(isinstance(d, Opensles) for d in devices)
               else None,
               "spec_path": ", ".join(specs) or "no specs"}
        files = [
            (f"qemu/{GENERATED_DIR}/meson.build", "qemu/meson.build.j2"),
            (f"qemu/{GENERATED_DIR}/Kconfig", "qemu/Kconfig.j2"),
            (f"qemu/{DEVICE_CONFIG_PATH}", "qemu/devices.mak.j2"),
            (f"qemu/{DEVICE_CONFIG_PATH_I386}", "qemu/devices.mak.j2"),
            ("hooks/trace-subdirs.meson", "qemu/trace-hook.meson.j2"),
        ]
        outputs = [Output(path, self.render(t, **ctx), specs) for path, t in files]
        # QEMU's audio files: blocks for each audiodev driver (empty without one)
        audio = [d for d in devices if isinstance(d, Opensles)]
        audio_ctx = {"audio": audio, "sles": SLES_HEADERS,
                     "spec_path": ", ".join(d.spec_path for d in audio) or "no specs"}
        for name in AUDIO_HOOKS:
            outputs.append(Output(f"hooks/{name}", self.render(f"opensles/hooks/{name}.j2",
                                                                **audio_ctx),
                                  tuple(d.spec_path for d in audio)))
        balloons = [d for d in devices if isinstance(d, Balloon)]
        balloon_ctx = {"balloons": balloons,
                       "spec_path": ", ".join(d.spec_path for d in balloons) or "no specs"}
        for name in BALLOON_HOOKS:
            outputs.append(Output(f"hooks/{name}",
                                  self.render(f"balloon/hooks/{name}.j2", **balloon_ctx),
                                  tuple(d.spec_path for d in balloons)))
        return outputs

    def sles_headers(self, devices: list[Device]) -> list[Output]:
        """The OpenSL ES headers, copied as they are, for hosts without them."""
        users = tuple(d.spec_path for d in devices if isinstance(d, Opensles))
        if not users:
            return []
        ctx = {"audio": [d for d in devices if isinstance(d, Opensles)],
               "spec_path": ", ".join(users)}
        base = f"qemu/{SLES_HEADERS.qemu_dir}"
        return [Output(f"qemu/{SLES_HEADERS.include_dir}/SLES/{h}",
                       (SLES_INCLUDE / h).read_text(), users, copied=True)
                for h in SLES_HEADERS.headers] + [
            Output(f"{base}/{name}", self.render(template, **ctx), users)
            for name, template in SLES_HEADERS.templates]

    def library_files(self, devices: list[Device]) -> list[Output]:
        """Code shared by several devices, rendered once if a spec needs it."""
        outputs = []
        for lib in libraries(devices):
            users = tuple(d.spec_path for d in devices if lib in d.libraries)
            ctx = {"lib": lib, lib.name: lib, "spec_path": ", ".join(users)}
            base = f"qemu/{lib.qemu_dir}"
            files = [
                (f"{base}/meson.build", "qemu/library-meson.build.j2"),
                (f"{base}/Kconfig", "qemu/library-Kconfig.j2"),
                *((f"{base}/{name}", template) for name, template in lib.templates),
            ]
            outputs += [Output(path, self.render(t, **ctx), users) for path, t in files]
        return outputs


def libraries(devices: list[Device]) -> list:
    """The shared code libraries the devices use, each once, in a fixed order."""
    return [lib for lib in (H4_CORE,) if any(lib in d.libraries for d in devices)]


def render_all(devices: list[Device], base_devices: list[str]) -> list[Output]:
    """Every generated file, in a deterministic order."""
    r = Renderer()
    outputs = (r.common_files(devices, base_devices) + r.library_files(devices)
               + r.sles_headers(devices))
    for d in devices:
        outputs.extend(r.device_files(d))
    return sorted(outputs, key=lambda o: o.path)
