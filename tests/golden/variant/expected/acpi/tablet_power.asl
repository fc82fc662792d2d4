/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tabvm-tablet-power SSDT: Second variant - mAh battery on GPE 7 with an
 * SMBus controller under an EC
 *
 * Generated from tests/golden/variant/specs/power.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * Load with: qemu-system-x86_64 -M q35 -device tabvm-tablet-power -acpitable file=tablet_power.aml
 * Registers (DWORD, little endian) at I/O port 0x0A40:
 *   0x00 STAT  bits 0-2: _BST state, bit 8: battery present, bit 9: AC online
 *   0x04 RCAP  remaining capacity
 *   0x08 FCAP  last full charge capacity
 *   0x0c DCAP  design capacity
 *   0x10 RATE  present rate
 *   0x14 VOLT  present voltage
 *   0x18 CYCL  cycle count
 *   0x1c EVNT  pending events, cleared by reading: bit 0 _BST, bit 1 _BIX, bit 2 AC
 *   0x20 MAGC  identifies the block: 'TBAT'
 */
DefinitionBlock ("", "SSDT", 2, "TABVM", "TABLET_P", 0x00000001)
{
    External (\_SB.PCI0.EC0_, DeviceObj)

    Scope (\_SB)
    {
        Device (BATT)
        {
            Name (_HID, EisaId ("PNP0C0A"))
            Name (_UID, One)

            OperationRegion (TBRG, SystemIO, 0x0A40, 0x24)
            Field (TBRG, DWordAcc, NoLock, Preserve)
            {
                STAT, 32,
                RCAP, 32,
                FCAP, 32,
                DCAP, 32,
                RATE, 32,
                VOLT, 32,
                CYCL, 32,
                EVNT, 32,
                MAGC, 32
            }

            Method (_STA, 0, NotSerialized)
            {
                If (STAT & 0x0100)
                {
                    Return (0x1F)
                }
                Return (0x0F)
            }

            Method (_BIX, 0, NotSerialized)
            {
                Local0 = Package (0x15)
                {
                    One,  // Revision
                    1,  // Power Unit: mAh
                    Zero,  // Design Capacity
                    Zero,  // Last Full Charge Capacity
                    0,  // Battery Technology: primary
                    3850,  // Design Voltage (mV)
                    500,  // Design Capacity of Warning
                    150,  // Design Capacity of Low
                    Zero,  // Cycle Count
                    95000,  // Measurement Accuracy
                    0xFFFFFFFF,  // Max Sampling Time
                    0xFFFFFFFF,  // Min Sampling Time
                    0xFFFFFFFF,  // Max Averaging Interval
                    0xFFFFFFFF,  // Min Averaging Interval
                    50,  // Battery Capacity Granularity 1
                    25,  // Battery Capacity Granularity 2
                    "Variant Cell",
                    "V-42",
                    "LiP",
                    "Example OEM",
                    Zero  // Battery Swapping Capability: not swappable
                }
                Local0 [0x02] = DCAP
                Local0 [0x03] = FCAP
                Local0 [0x08] = CYCL
                Return (Local0)
            }

            Method (_BIF, 0, NotSerialized)
            {
                Local0 = Package (0x0D)
                {
                    1,  // Power Unit: mAh
                    Zero,  // Design Capacity
                    Zero,  // Last Full Charge Capacity
                    0,  // Battery Technology: primary
                    3850,  // Design Voltage (mV)
                    500,  // Design Capacity of Warning
                    150,  // Design Capacity of Low
                    50,  // Battery Capacity Granularity 1
                    25,  // Battery Capacity Granularity 2
                    "Variant Cell",
                    "V-42",
                    "LiP",
                    "Example OEM"
                }
                Local0 [One] = DCAP
                Local0 [0x02] = FCAP
                Return (Local0)
            }

            Method (_BST, 0, NotSerialized)
            {
                Local0 = Package (0x04) { Zero, Zero, Zero, Zero }
                Local0 [Zero] = (STAT & 0x07)   // State: discharging, charging, critical
                Local0 [One] = RATE
                Local0 [0x02] = RCAP
                Local0 [0x03] = VOLT
                Return (Local0)
            }
        }

        Device (AC__)
        {
            Name (_HID, "ACPI0003")
            Name (_UID, One)
            Name (_PCL, Package (0x01) { \_SB.BATT })

            Method (_PSR, 0, NotSerialized)
            {
                Return ((\_SB.BATT.STAT >> 0x09) & One)
            }
        }
    }

    Scope (\_SB.PCI0.EC0_)
    {
        Device (SMBC)
        {
            Name (_HID, "ACPI0001")
            Name (_EC, 0x9041)
        }
    }

    Scope (\_GPE)
    {
        Method (_E07, 0, NotSerialized)
        {
            Local0 = \_SB.BATT.EVNT
            If (Local0 & 0x02)
            {
                Notify (\_SB.BATT, 0x81)   // battery information changed
            }
            If (Local0 & One)
            {
                Notify (\_SB.BATT, 0x80)   // battery status changed
            }
            If (Local0 & 0x04)
            {
                Notify (\_SB.AC__, 0x80)   // power source changed
            }
        }
    }
}
