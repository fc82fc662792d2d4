"""The built-in VM profile: the test guest with the generated devices.

Turns build outputs (``build/``: QEMU, firmware, AML) and the test guest image into
a ``VmConfig``. Profiles from YAML come later; this one is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tabvm.guest import APPEND
from tabvm.paths import REPO

from .audio import HDA_DEVICES
from .qemu import VmConfig

READY_MARKER = "TABVM-GUEST-READY"


class ProfileError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuildOutputs:
    root: Path

    @property
    def qemu(self) -> Path:
        return self.root / "qemu-system-x86_64"

    @property
    def firmware(self) -> Path:
        return self.root / "firmware"

    def aml(self, name: str) -> Path:
        return self.root / f"{name}.aml"

    def check(self) -> None:
        for path in (self.qemu, self.firmware / "bios-256k.bin", self.aml("battery")):
            if not path.exists():
                raise ProfileError(f"{path} missing: run `tabvm build` first")


XHCI = "qemu-xhci,id=xhci"
TOUCH_DEVICE = "tabvm-touchscreen,id=touch,bus=xhci.0"
BT_CHARDEV_ID = "bt"


def bt_device(capture: Path | None = None, **props: object) -> str:
    """The Bluetooth controller on the xHCI bus, fed by chardev ``bt``; ``capture``
    writes its HCI traffic to a file, ``props`` sets other device properties."""
    dev = f"tabvm-bluetooth,id=bt,bus=xhci.0,chardev={BT_CHARDEV_ID}"
    if capture:
        props = {"capture": str(capture), **props}
    return dev + "".join(f",{k.replace('_', '-')}={v}" for k, v in props.items())


def builtin_profile(outputs: BuildOutputs, kernel: Path, initrd: Path, accel: str,
                    memory: str = "512M", touch: bool = True,
                    bt_chardev: str | None = None,
                    bt_props: dict[str, object] | None = None, audiodev: str | None = None,
                    env: tuple[tuple[str, str], ...] = ()) -> VmConfig:
    """The test guest with the battery, (``touch``) the touchscreen and, given its
    ``-chardev`` options (``bt_chardev``, with ``id=bt``), the Bluetooth controller
    (``bt_props``: its properties, see ``bt_device``);
    given ``-audiodev`` options (``glue.audio.audiodev``), the sound card on it.
    ``env`` is added to QEMU's environment."""
    outputs.check()
    usb = (XHCI,) if touch or bt_chardev else ()
    return VmConfig(
        qemu=outputs.qemu, firmware_dir=outputs.firmware, kernel=kernel, initrd=initrd,
        append=APPEND, memory=memory, accel=accel,
        acpi_tables=(outputs.aml("battery"),),
        chardevs=(bt_chardev,) if bt_chardev else (),
        devices=("tabvm-battery,id=battery", *usb, *((TOUCH_DEVICE,) if touch else ()),
                 *((bt_device(**(bt_props or {})),) if bt_chardev else ()),
                 *(HDA_DEVICES if audiodev else ())),
        extra=("-audiodev", audiodev) if audiodev else (),
        env=env,
    )


def default_outputs() -> BuildOutputs:
    return BuildOutputs(REPO / "build")
