"""Resources of QEMU's q35 machine that generated devices must not claim.

Values from QEMU 10.0: include/hw/acpi/acpi_dev_interface.h (GPE status bits),
include/hw/i386/pc.h, hw/isa/lpc_ich9.c, hw/i386/acpi-build.c and the ISA devices a
q35 guest commonly has. Only GPE0 bits 0-7 reach the SCI on ICH9.
"""

GPE_BITS_USABLE = range(0, 8)

GPE_BITS_TAKEN = {
    1: "PCI hotplug",
    2: "CPU hotplug",
    3: "memory hotplug",
    4: "NVDIMM hotplug",
    5: "VM generation ID",
}

# (first, last, user), inclusive.
IO_PORTS_TAKEN = (
    (0x0000, 0x001F, "DMA controller 1"),
    (0x0020, 0x0021, "PIC 1"),
    (0x0040, 0x0043, "PIT"),
    (0x0060, 0x0060, "i8042 data"),
    (0x0061, 0x0061, "port 61 / PC speaker"),
    (0x0064, 0x0064, "i8042 command"),
    (0x0070, 0x0077, "RTC / CMOS"),
    (0x0080, 0x0080, "POST port"),
    (0x0081, 0x008F, "DMA page registers"),
    (0x0092, 0x0092, "port 92"),
    (0x00A0, 0x00A1, "PIC 2"),
    (0x00B2, 0x00B3, "APM / SMI control"),
    (0x00C0, 0x00DF, "DMA controller 2"),
    (0x00F0, 0x00FF, "FPU"),
    (0x01CE, 0x01CF, "Bochs VBE"),
    (0x02E8, 0x02EF, "serial 4"),
    (0x02F8, 0x02FF, "serial 2"),
    (0x0378, 0x037F, "parallel port"),
    (0x03B0, 0x03DF, "VGA"),
    (0x03E8, 0x03EF, "serial 3"),
    (0x03F0, 0x03F7, "floppy controller"),
    (0x03F8, 0x03FF, "serial 1"),
    (0x0402, 0x0402, "debugcon"),
    (0x04D0, 0x04D1, "ELCR"),
    (0x0505, 0x0505, "pvpanic"),
    (0x0510, 0x051B, "fw_cfg"),
    (0x0600, 0x067F, "ICH9 ACPI PM / GPE0 block"),
    (0x0A00, 0x0A17, "memory hotplug"),
    (0x0CC0, 0x0CD7, "ACPI PCI hotplug"),
    (0x0CD8, 0x0CE3, "CPU hotplug"),
    (0x0CF8, 0x0CFF, "PCI configuration"),
)
