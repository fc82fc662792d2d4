"""The intermediate representation: frozen dataclasses, derived values as properties.

Templates read only what is here; every name, number and string a template prints
comes from a field or a property of these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SourceLoc

GENERATED_DIR = "hw/tabvm"


def string_literal(text: str) -> str:
    """``text`` as a C or ASL string literal (both escape ``\\`` and ``"`` alike).

    The schema already limits spec strings to printable ASCII without quotes or
    backslashes; escaping anyway keeps a future schema slip from becoming code.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Device:
    """What every generated device has."""

    kind: str
    name: str
    description: str
    spec_path: str           # as shown in banners and errors, e.g. devspecs/battery.yaml
    loc: SourceLoc

    @property
    def qom_type(self) -> str:
        return "tabvm-" + self.name.replace("_", "-")

    @property
    def c_prefix(self) -> str:
        return "tabvm_" + self.name

    @property
    def c_type(self) -> str:
        """CamelCase stem of the device's C type names: TabvmBattery."""
        return "Tabvm" + "".join(p.capitalize() for p in self.name.split("_"))

    @property
    def c_state(self) -> str:
        return self.c_type + "State"

    @property
    def c_macro(self) -> str:
        return self.c_prefix.upper()

    @property
    def kconfig(self) -> str:
        return self.c_macro

    @property
    def qemu_dir(self) -> str:
        """Directory of this device inside the QEMU tree."""
        return f"{GENERATED_DIR}/{self.name}"

    @property
    def c_file(self) -> str:
        return f"{self.qom_type}.c"

    @property
    def c_description(self) -> str:
        return string_literal(self.description)

    @property
    def c_description_wrapped(self) -> str:
        """The description as C string literal(s), split to fit 80 columns."""
        words, lines, line = self.description.split(" "), [], ""
        for word in words:
            if line and len(line) + len(word) + 1 > 60:
                lines.append(line + " ")
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
        return "\n        ".join(string_literal(part) for part in lines)

    @property
    def trace_group(self) -> str:
        """QEMU's trace group for the device directory (meson's underscorify)."""
        return "".join(c if c.isalnum() else "_" for c in self.qemu_dir)

    @property
    def kconfig_depends(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class Register:
    offset: int
    asl_name: str
    c_name: str
    doc: str

    @property
    def c_offset(self) -> str:
        return f"0x{self.offset:02x}"


@dataclass(frozen=True)
class BatteryInitial:
    present: bool
    state: str               # idle | discharging | charging
    remaining: int
    full: int
    rate: int
    voltage: int


@dataclass(frozen=True)
class Battery(Device):
    io_base: int
    gpe_bit: int
    bat_name: str
    unit: str                # mWh | mAh
    design_capacity: int
    design_voltage: int
    warning_capacity: int
    low_capacity: int
    granularity: tuple[int, int]
    technology: str          # primary | rechargeable
    cycle_count: int
    accuracy: int
    model: str
    serial: str
    battery_type: str
    oem: str
    initial: BatteryInitial
    adp_name: str
    initial_online: bool
    smbus_name: str
    smbus_parent: str | None
    ec_offset: int
    ec_query: int

    # Register block: all DWORD, little endian, read-only for the guest.
    REGISTERS = (
        Register(0x00, "STAT", "STATUS", "bits 0-2: _BST state, bit 8: battery present, "
                 "bit 9: AC online"),
        Register(0x04, "RCAP", "REMAINING", "remaining capacity"),
        Register(0x08, "FCAP", "FULL", "last full charge capacity"),
        Register(0x0c, "DCAP", "DESIGN", "design capacity"),
        Register(0x10, "RATE", "RATE", "present rate"),
        Register(0x14, "VOLT", "VOLTAGE", "present voltage"),
        Register(0x18, "CYCL", "CYCLES", "cycle count"),
        Register(0x1c, "EVNT", "EVENTS", "pending events, cleared by reading: bit 0 _BST, "
                 "bit 1 _BIX, bit 2 AC"),
        Register(0x20, "MAGC", "MAGIC", "identifies the block: 'TBAT'"),
    )
    MAGIC = 0x54414254       # "TBAT" little endian

    @property
    def kconfig_depends(self) -> tuple[str, ...]:
        return ("ISA_BUS",)

    @property
    def registers(self) -> tuple[Register, ...]:
        return self.REGISTERS

    @property
    def c_magic(self) -> str:
        return f"0x{self.MAGIC:08x}"

    @property
    def io_size(self) -> int:
        return 4 * len(self.REGISTERS)

    @property
    def io_end(self) -> int:
        return self.io_base + self.io_size - 1

    @property
    def asl_io_base(self) -> str:
        return f"0x{self.io_base:04X}"

    @property
    def asl_io_size(self) -> str:
        return f"0x{self.io_size:02X}"

    @property
    def c_io_base(self) -> str:
        return f"0x{self.io_base:x}"

    @property
    def gpe_method(self) -> str:
        return f"_E{self.gpe_bit:02X}"

    @property
    def power_unit(self) -> int:
        return 0 if self.unit == "mWh" else 1

    @property
    def technology_code(self) -> int:
        return 1 if self.technology == "rechargeable" else 0

    @property
    def initial_state_bits(self) -> int:
        return {"idle": 0, "discharging": 1, "charging": 2}[self.initial.state]

    @property
    def asl_model(self) -> str:
        return string_literal(self.model)

    @property
    def asl_serial(self) -> str:
        return string_literal(self.serial)

    @property
    def asl_type(self) -> str:
        return string_literal(self.battery_type)

    @property
    def asl_oem(self) -> str:
        return string_literal(self.oem)

    @property
    def smbus_scope(self) -> str:
        return self.smbus_parent or "\\_SB"

    @property
    def smbus_present(self) -> bool:
        return self.smbus_parent is not None

    @property
    def smbus_ec(self) -> str:
        return f"0x{(self.ec_offset << 8) | self.ec_query:04X}"

    @property
    def asl_oem_table_id(self) -> str:
        return string_literal(self.name.upper()[:8])

    @property
    def aml_file(self) -> str:
        return f"{self.name}.aml"

    @property
    def asl_file(self) -> str:
        return f"{self.name}.asl"
