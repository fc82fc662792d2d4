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

from .ir import GENERATED_DIR, H4_CORE, Battery, Device, Hci, Multitouch

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DEVICE_CONFIG = "tabvm"
DEVICE_CONFIG_PATH = f"configs/devices/x86_64-softmmu/{DEVICE_CONFIG}.mak"


@dataclass(frozen=True)
class Output:
    path: str          # relative to the output directory, '/'-separated
    text: str
    spec_paths: tuple[str, ...]


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
        files = [
            (f"{base}/meson.build", "qemu/device-meson.build.j2"),
            (f"{base}/Kconfig", "qemu/device-Kconfig.j2"),
            (f"{base}/trace.h", "qemu/trace.h.j2"),
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
               "spec_path": ", ".join(specs) or "no specs"}
        files = [
            (f"qemu/{GENERATED_DIR}/meson.build", "qemu/meson.build.j2"),
            (f"qemu/{GENERATED_DIR}/Kconfig", "qemu/Kconfig.j2"),
            (f"qemu/{DEVICE_CONFIG_PATH}", "qemu/devices.mak.j2"),
            ("hooks/trace-subdirs.meson", "qemu/trace-hook.meson.j2"),
        ]
        return [Output(path, self.render(t, **ctx), specs) for path, t in files]

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
    outputs = r.common_files(devices, base_devices) + r.library_files(devices)
    for d in devices:
        outputs.extend(r.device_files(d))
    return sorted(outputs, key=lambda o: o.path)
