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
    def summary(self) -> str:
        """What the spec becomes, as `tabvm check` names it."""
        return self.qom_type

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
    def c_sources(self) -> tuple[str, ...]:
        """The C files QEMU compiles for this device."""
        return (self.c_file,)

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

    @property
    def kconfig_selects(self) -> tuple[str, ...]:
        return tuple(lib.kconfig for lib in self.libraries)

    @property
    def libraries(self) -> tuple[H4Core, ...]:
        """Shared generated code this device links with."""
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
    IO_SIZE = 4 * len(REGISTERS)

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
        return self.IO_SIZE

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


@dataclass(frozen=True)
class Axis:
    logical_min: int
    logical_max: int
    physical_mm: int


@dataclass(frozen=True)
class UsbDevice(Device):
    """A USB device: its identity."""

    vendor_id: int
    product_id: int
    manufacturer: str
    product: str
    serial: str

    @property
    def kconfig_depends(self) -> tuple[str, ...]:
        return ("USB",)

    @property
    def c_vendor_id(self) -> str:
        return f"0x{self.vendor_id:04x}"

    @property
    def c_product_id(self) -> str:
        return f"0x{self.product_id:04x}"

    @property
    def c_manufacturer(self) -> str:
        return string_literal(self.manufacturer)

    @property
    def c_product(self) -> str:
        return string_literal(self.product)

    @property
    def c_serial(self) -> str:
        return string_literal(self.serial)


@dataclass(frozen=True)
class Multitouch(UsbDevice):
    """A USB HID Windows-8-style touchscreen (+ optional mouse collection)."""

    contacts: int
    mode: str                 # hybrid | parallel
    per_report: int           # contacts in one touch report
    report_rate_hz: int
    x: Axis
    y: Axis
    hover: bool
    mouse_buttons: int        # 0: no mouse collection

    # Report IDs
    REPORT_TOUCH = 1
    REPORT_MOUSE = 2
    REPORT_MAX_COUNT = 3
    REPORT_CERTIFICATION = 4
    REPORT_MODE = 5
    CONTACT_SIZE = 6          # flags, contact id, x (16), y (16)
    CERTIFICATION_SIZE = 256

    @property
    def touch_report_size(self) -> int:
        """Report ID, the contacts, scan time (16 bits), contact count."""
        return 1 + self.per_report * self.CONTACT_SIZE + 2 + 1

    @property
    def mouse_report_size(self) -> int:
        """Report ID, buttons (one byte), x and y (16 bits each)."""
        return 1 + 1 + 4 if self.mouse_buttons else 0

    @property
    def max_packet(self) -> int:
        return max(self.touch_report_size, self.mouse_report_size)

    @property
    def report_period_ns(self) -> int:
        return 1_000_000_000 // self.report_rate_hz

    @property
    def report_period_ms(self) -> str:
        return f"{self.report_period_ns / 1e6:g}"

    def _axis_items(self, usage: int, axis: Axis) -> list:
        from . import hid
        return [
            hid.Item(hid.LOGICAL_MIN, axis.logical_min),
            hid.Item(hid.LOGICAL_MAX, axis.logical_max),
            hid.Item(hid.PHYSICAL_MIN, 0),
            hid.Item(hid.PHYSICAL_MAX, axis.physical_mm),
            hid.Item(hid.USAGE, usage),
            hid.Item(hid.INPUT, hid.DATA_VAR_ABS),
        ]

    def descriptor_items(self) -> list:
        from . import hid
        I = hid.Item  # noqa: E741
        items = [
            I(hid.USAGE_PAGE, hid.DIGITIZER), I(hid.USAGE, hid.DG_TOUCH_SCREEN),
            I(hid.COLLECTION, hid.APPLICATION),
            I(hid.REPORT_ID, self.REPORT_TOUCH),
        ]
        for _ in range(self.per_report):
            items += [
                I(hid.USAGE_PAGE, hid.DIGITIZER), I(hid.USAGE, hid.DG_FINGER),
                I(hid.COLLECTION, hid.LOGICAL),
                I(hid.LOGICAL_MIN, 0), I(hid.LOGICAL_MAX, 1),
                I(hid.REPORT_SIZE, 1), I(hid.REPORT_COUNT, 1),
                I(hid.USAGE, hid.DG_TIP_SWITCH), I(hid.INPUT, hid.DATA_VAR_ABS),
                I(hid.USAGE, hid.DG_IN_RANGE), I(hid.INPUT, hid.DATA_VAR_ABS),
                I(hid.USAGE, hid.DG_CONFIDENCE), I(hid.INPUT, hid.DATA_VAR_ABS),
                I(hid.REPORT_COUNT, 5), I(hid.INPUT, hid.CONST),
                I(hid.REPORT_SIZE, 8), I(hid.REPORT_COUNT, 1),
                I(hid.LOGICAL_MAX, self.contacts - 1),
                I(hid.USAGE, hid.DG_CONTACT_ID), I(hid.INPUT, hid.DATA_VAR_ABS),
                I(hid.PUSH),
                I(hid.USAGE_PAGE, hid.GENERIC_DESKTOP),
                I(hid.UNIT, hid.UNIT_CM), I(hid.UNIT_EXPONENT, hid.unit_exponent(-1)),
                I(hid.REPORT_SIZE, 16),
                *self._axis_items(hid.GD_X, self.x),
                *self._axis_items(hid.GD_Y, self.y),
                I(hid.POP),
                I(hid.END_COLLECTION),
            ]
        items += [
            I(hid.USAGE_PAGE, hid.DIGITIZER),
            I(hid.PUSH),
            I(hid.UNIT, hid.UNIT_SECONDS), I(hid.UNIT_EXPONENT, hid.unit_exponent(-4)),
            I(hid.LOGICAL_MIN, 0), I(hid.LOGICAL_MAX, 0xFFFF),
            I(hid.REPORT_SIZE, 16), I(hid.REPORT_COUNT, 1),
            I(hid.USAGE, hid.DG_SCAN_TIME), I(hid.INPUT, hid.DATA_VAR_ABS),
            I(hid.POP),
            I(hid.LOGICAL_MIN, 0), I(hid.LOGICAL_MAX, self.contacts),
            I(hid.REPORT_SIZE, 8), I(hid.REPORT_COUNT, 1),
            I(hid.USAGE, hid.DG_CONTACT_COUNT), I(hid.INPUT, hid.DATA_VAR_ABS),
            I(hid.REPORT_ID, self.REPORT_MAX_COUNT),
            I(hid.USAGE, hid.DG_CONTACT_COUNT_MAX), I(hid.FEATURE, hid.DATA_VAR_ABS),
            I(hid.REPORT_ID, self.REPORT_CERTIFICATION),
            I(hid.USAGE_PAGE, hid.VENDOR_FF00), I(hid.USAGE, hid.VENDOR_CERTIFICATION),
            I(hid.LOGICAL_MIN, 0), I(hid.LOGICAL_MAX, 0xFF),
            I(hid.REPORT_SIZE, 8), I(hid.REPORT_COUNT, self.CERTIFICATION_SIZE),
            I(hid.FEATURE, hid.DATA_VAR_ABS),
            I(hid.END_COLLECTION),
            # Device configuration: Input Mode (Device Mode) and Device Identifier
            I(hid.USAGE_PAGE, hid.DIGITIZER), I(hid.USAGE, hid.DG_DEVICE_CONFIG),
            I(hid.COLLECTION, hid.APPLICATION),
            I(hid.REPORT_ID, self.REPORT_MODE),
            I(hid.USAGE, hid.DG_DEVICE_SETTINGS),
            I(hid.COLLECTION, hid.LOGICAL),
            I(hid.USAGE, hid.DG_DEVICE_MODE), I(hid.USAGE, hid.DG_DEVICE_IDENTIFIER),
            I(hid.LOGICAL_MIN, 0), I(hid.LOGICAL_MAX, 10),
            I(hid.REPORT_SIZE, 8), I(hid.REPORT_COUNT, 2),
            I(hid.FEATURE, hid.DATA_VAR_ABS),
            I(hid.END_COLLECTION),
            I(hid.END_COLLECTION),
        ]
        if self.mouse_buttons:
            items += [
                I(hid.USAGE_PAGE, hid.GENERIC_DESKTOP), I(hid.USAGE, hid.GD_MOUSE),
                I(hid.COLLECTION, hid.APPLICATION),
                I(hid.REPORT_ID, self.REPORT_MOUSE),
                I(hid.USAGE, hid.GD_POINTER),
                I(hid.COLLECTION, hid.PHYSICAL),
                I(hid.USAGE_PAGE, hid.BUTTON),
                I(hid.USAGE_MIN, 1), I(hid.USAGE_MAX, self.mouse_buttons),
                I(hid.LOGICAL_MIN, 0), I(hid.LOGICAL_MAX, 1),
                I(hid.REPORT_SIZE, 1), I(hid.REPORT_COUNT, self.mouse_buttons),
                I(hid.INPUT, hid.DATA_VAR_ABS),
                I(hid.REPORT_COUNT, 8 - self.mouse_buttons), I(hid.INPUT, hid.CONST),
                I(hid.USAGE_PAGE, hid.GENERIC_DESKTOP),
                I(hid.USAGE, hid.GD_X), I(hid.USAGE, hid.GD_Y),
                I(hid.LOGICAL_MIN, 0), I(hid.LOGICAL_MAX, 0x7FFF),
                I(hid.REPORT_SIZE, 16), I(hid.REPORT_COUNT, 2),
                I(hid.INPUT, hid.DATA_VAR_ABS),
                I(hid.END_COLLECTION),
                I(hid.END_COLLECTION),
            ]
        return items

    @property
    def descriptor(self) -> bytes:
        from . import hid
        return hid.encode(self.descriptor_items())

    @property
    def descriptor_c_lines(self) -> list[str]:
        data = self.descriptor
        return [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) + ","
                for i in range(0, len(data), 12)]


@dataclass(frozen=True)
class UsbSpeed:
    """The endpoint settings of one USB speed's descriptors."""

    name: str                 # full | high: the USBDesc member
    bulk_max_packet: int
    event_interval: int       # bInterval of the interrupt IN endpoint
    iso_interval: int         # bInterval of the isochronous endpoints
    comment: str


@dataclass(frozen=True)
class H4Core:
    """H4 framing and packet queues, shared by every usb-hci device.

    Rendered once into its own QEMU directory when a spec needs it; it has no QEMU
    dependency so the host tests can compile it on its own.
    """

    name = "h4"
    title = "H4 framing and packet queues of the tabvm Bluetooth HCI devices"
    prefix = "tabvm_h4"
    c_type = "TabvmH4"
    macro = "TABVM_H4"
    kconfig = "TABVM_H4"
    qemu_dir = f"{GENERATED_DIR}/h4"
    header = "h4.h"
    c_file = "h4.c"
    templates = (("h4.c", "hci/h4.c.j2"), ("h4.h", "hci/h4.h.j2"))
    COMMAND_MAX = 3 + 255
    # Ring bytes only commands may use: two commands, each with its type byte
    COMMAND_RESERVE = 2 * (1 + COMMAND_MAX)

    @property
    def include(self) -> str:
        return f"{self.qemu_dir}/{self.header}"


H4_CORE = H4Core()


@dataclass(frozen=True)
class Hci(UsbDevice):
    """A USB Bluetooth controller passing HCI through a chardev in H4 framing."""

    event_max_packet: int
    coalesce_events: bool     # several events per interrupt transfer
    high_speed: bool          # attach at high speed by default
    acl_max_packet: int
    sco_max_packets: tuple[int, ...]  # per alternate setting of interface 1; () = no SCO
    acl_max: int              # largest payload accepted, per packet type
    sco_max: int
    iso_max: int
    host_queue: int           # bytes waiting for the guest
    guest_queue: int          # bytes waiting for the host
    always_plugged: bool
    capture_format: str       # btsnoop | pcap

    ACL_HEADER = 4

    @property
    def sco(self) -> bool:
        return bool(self.sco_max_packets)

    @property
    def usb_speeds(self) -> tuple[UsbSpeed, ...]:
        """Full speed as USB Bluetooth dongles have it; high speed polls events
        every microframe and keeps SCO at one packet per millisecond."""
        return (
            UsbSpeed("full", self.acl_max_packet, 1, 1,
                     "Full speed: events and SCO every 1 ms frame"),
            UsbSpeed("high", 512, 1, 4,
                     "High speed: events every 125 us, SCO every 2^(4-1) microframes = 1 ms"),
        )

    @property
    def sco_alt_count(self) -> int:
        return len(self.sco_max_packets)

    @property
    def interface_count(self) -> int:
        return 2 if self.sco else 1

    @property
    def min_guest_queue(self) -> int:
        """The command reserve plus room for two of the largest ACL packets."""
        return H4_CORE.COMMAND_RESERVE + 2 * (1 + self.ACL_HEADER + self.acl_max)

    @property
    def h4(self) -> H4Core:
        return H4_CORE

    @property
    def libraries(self) -> tuple[H4Core, ...]:
        return (H4_CORE,)


@dataclass(frozen=True)
class AudioDirection:
    buffers: int
    buffer_ms: int


@dataclass(frozen=True)
class SlesHeaders:
    """The code the OpenSL ES drivers share: the OpenSL ES headers
    (opensles/include), copied into the QEMU tree for hosts without them (the
    NDK's own headers win where they exist), and the one engine."""

    name = "sles"
    qemu_dir = f"{GENERATED_DIR}/sles"
    include_dir = f"{GENERATED_DIR}/sles/include"
    headers = ("OpenSLES.h", "OpenSLES_Platform.h", "OpenSLES_Android.h",
               "OpenSLES_AndroidConfiguration.h")
    # the engine every driver shares (Android allows one per process)
    templates = (("meson.build", "opensles/sles-meson.build.j2"),
                 ("engine.c", "opensles/engine.c.j2"), ("engine.h", "opensles/engine.h.j2"))


SLES_HEADERS = SlesHeaders()


@dataclass(frozen=True)
class Opensles(Device):
    """A QEMU audiodev driver on OpenSL ES."""

    loading: str              # dlopen | link
    library: str              # dlopen: the default library
    playback: AudioDirection | None
    capture: AudioDirection | None
    formats: tuple[str, ...]  # u8 | s16
    rates: tuple[int, ...]
    channels: tuple[int, ...]

    @property
    def kconfig(self) -> str | None:
        """Audio drivers are chosen by configure-time detection, not Kconfig."""
        return None

    @property
    def summary(self) -> str:
        return f"-audiodev {self.qapi_name}"

    @property
    def qapi_name(self) -> str:
        """The driver's name: -audiodev NAME and the AudiodevDriver member."""
        return self.name.replace("_", "-")

    @property
    def qapi_type(self) -> str:
        """CamelCase stem of its QAPI types: Audiodev<stem>Options."""
        return "".join(p.capitalize() for p in self.name.split("_"))

    @property
    def c_union(self) -> str:
        """Its member of QAPI's Audiodev union in C: dev->u.<member>."""
        return self.name

    @property
    def c_enum(self) -> str:
        return "AUDIODEV_DRIVER_" + self.name.upper()

    @property
    def config(self) -> str:
        return "CONFIG_AUDIO_" + self.name.upper()

    @property
    def meson_dep(self) -> str:
        """The meson dependency that is found when the driver can be built."""
        return "tabvm_audio_" + self.name

    @property
    def dlopen(self) -> bool:
        return self.loading == "dlopen"

    @property
    def default_rate(self) -> int:
        return 48000 if 48000 in self.rates else self.rates[-1]

    @property
    def c_file(self) -> str:
        return f"audio-{self.name.replace('_', '-')}.c"

    @property
    def libraries(self) -> tuple:
        return ()


@dataclass(frozen=True)
class Psi:
    """A Linux PSI trigger on the memory pressure file."""

    kind: str                 # some | full
    stall_ms: int
    window_ms: int

    @property
    def trigger(self) -> str:
        """What is written to /proc/pressure/memory (microseconds)."""
        return f"{self.kind} {self.stall_ms * 1000} {self.window_ms * 1000}"


@dataclass(frozen=True)
class BalloonLevel:
    name: str
    psi: Psi | None
    meminfo_available_pct: int | None
    lmkd_margin_mib: int | None
    am_threshold_pct: int | None
    trim_memory: tuple[str, ...]
    background_keep_mib: int | None   # None: no balloon
    foreground_keep_mib: int | None

    @property
    def c_psi_trigger(self) -> str:
        return string_literal(self.psi.trigger) if self.psi else "NULL"


@dataclass(frozen=True)
class BalloonReason:
    name: str                 # as QMP events print it
    doc: str

    @property
    def c_name(self) -> str:
        return self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class Balloon(Device):
    """An automatic ballooning policy: a user-creatable QEMU object driving a
    virtio-balloon device, with its decision in a QEMU-free C function."""

    stats_interval_s: int
    ram_mib: int
    min_size_mib: int
    emergency_available_mib: int
    emergency_deflate_mib: int
    pressure_hold_s: int
    inflate_max_mib: int
    inflate_min_mib: int
    stall_mib_per_s: int
    stall_backoff_mib: int
    deflate_max_mib: int
    level_down_delay_s: int
    level_down_delay_max_s: int
    own_adj: int
    levels: tuple[BalloonLevel, ...]

    REASONS = (
        BalloonReason("steady", "the target did not change"),
        BalloonReason("host-pressure", "inflating: the guest has more available memory "
                      "than the host's pressure level lets it keep"),
        BalloonReason("relief", "deflating: the host's pressure went down"),
        BalloonReason("foreground", "deflating: the VM is in the foreground"),
        BalloonReason("guest-need", "deflating: the guest has less available memory "
                      "than it may keep"),
        BalloonReason("guest-pressure", "deflating at once: the guest is short of "
                      "memory (available memory under the emergency floor, OOM kills, "
                      "allocation stalls, or the guest deflated on its own)"),
        BalloonReason("stall", "backing off: the guest inflated slower than the stall "
                      "rate"),
    )

    @property
    def summary(self) -> str:
        return f"-object {self.qom_type}"

    @property
    def kconfig_depends(self) -> tuple[str, ...]:
        return ("VIRTIO_BALLOON",)

    @property
    def policy_c_file(self) -> str:
        return "policy.c"

    @property
    def policy_header(self) -> str:
        return "policy.h"

    @property
    def c_sources(self) -> tuple[str, ...]:
        return (self.c_file, self.policy_c_file)

    @property
    def policy_prefix(self) -> str:
        """C names of the pure decision function and its types."""
        return self.c_prefix

    @property
    def c_levels(self) -> str:
        return f"{self.c_macro}_LEVELS"

    @property
    def qapi_event(self) -> str:
        return self.c_macro + "_DECISION"

    @property
    def qapi_event_c(self) -> str:
        """The C function QAPI generates for the event."""
        return "qapi_event_send_" + self.qapi_event.lower()

    @property
    def qapi_properties(self) -> str:
        """Its QAPI struct of -object / object-add properties."""
        return self.c_type + "Properties"

    @property
    def qapi_reason(self) -> str:
        return self.c_type + "Reason"

    @property
    def qapi_reason_c(self) -> str:
        """QAPI's C enum constant prefix for the reasons."""
        return "".join("_" + c if c.isupper() and i else c
                       for i, c in enumerate(self.qapi_reason)).upper()

    def _c_keep(self, mib: int | None) -> str:
        return f"{self.c_macro}_NO_BALLOON" if mib is None else f"{mib} * MiB"

    @property
    def c_keeps(self) -> tuple[tuple[str, str, str], ...]:
        """Per level: name, background keep and foreground keep as C."""
        return tuple((lv.name, self._c_keep(lv.background_keep_mib),
                      self._c_keep(lv.foreground_keep_mib)) for lv in self.levels)

    @property
    def level_names(self) -> str:
        return ", ".join(lv.name for lv in self.levels)

    @property
    def psi_levels(self) -> tuple[tuple[int, BalloonLevel], ...]:
        return tuple((i, lv) for i, lv in enumerate(self.levels) if lv.psi)

    @property
    def min_window_ms(self) -> int:
        return min((lv.psi.window_ms for _, lv in self.psi_levels), default=1000)
