/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tabvm-battery SSDT: Tablet battery and AC adapter following the host power
 * supply
 *
 * Generated from devspecs/battery.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * Load with: qemu-system-x86_64 -M q35 -device tabvm-battery -acpitable file=battery.aml
 * Registers (DWORD, little endian) at I/O port 0x0530:
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
DefinitionBlock ("", "SSDT", 2, "TABVM", "BATTERY", 0x00000001)
{
    Scope (\_SB)
    {
        Device (BAT0)
        {
            Name (_HID, EisaId ("PNP0C0A"))
            Name (_UID, One)

            OperationRegion (TBRG, SystemIO, 0x0530, 0x24)
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
                    0,  // Power Unit: mWh
                    Zero,  // Design Capacity
                    Zero,  // Last Full Charge Capacity
                    1,  // Battery Technology: rechargeable
                    7600,  // Design Voltage (mV)
                    3800,  // Design Capacity of Warning
                    1900,  // Design Capacity of Low
                    Zero,  // Cycle Count
                    95000,  // Measurement Accuracy
                    0xFFFFFFFF,  // Max Sampling Time
                    0xFFFFFFFF,  // Min Sampling Time
                    0xFFFFFFFF,  // Max Averaging Interval
                    0xFFFFFFFF,  // Min Averaging Interval
                    380,  // Battery Capacity Granularity 1
                    380,  // Battery Capacity Granularity 2
                    "TabVM Battery",
                    "TVB-0001",
                    "LION",
                    "TabVM",
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
                    0,  // Power Unit: mWh
                    Zero,  // Design Capacity
                    Zero,  // Last Full Charge Capacity
                    1,  // Battery Technology: rechargeable
                    7600,  // Design Voltage (mV)
                    3800,  // Design Capacity of Warning
                    1900,  // Design Capacity of Low
                    380,  // Battery Capacity Granularity 1
                    380,  // Battery Capacity Granularity 2
                    "TabVM Battery",
                    "TVB-0001",
                    "LION",
                    "TabVM"
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

        Device (ADP0)
        {
            Name (_HID, "ACPI0003")
            Name (_UID, One)
            Name (_PCL, Package (0x01) { \_SB.BAT0 })

            Method (_PSR, 0, NotSerialized)
            {
                Return ((\_SB.BAT0.STAT >> 0x09) & One)
            }
        }

        /*
         * SMBus host controller: ACPI0001 must be the child of an embedded controller
         * (PNP0C09) and this machine has none, so the object is declared absent.
         */
        Device (SMB0)
        {
            Name (_HID, "ACPI0001")
            Name (_EC, 0x8030)  // EC offset << 8 | query bit
            Method (_STA, 0, NotSerialized)
            {
                Return (Zero)
            }
        }
    }

    Scope (\_GPE)
    {
        Method (_E00, 0, NotSerialized)
        {
            Local0 = \_SB.BAT0.EVNT
            If (Local0 & 0x02)
            {
                Notify (\_SB.BAT0, 0x81)   // battery information changed
            }
            If (Local0 & One)
            {
                Notify (\_SB.BAT0, 0x80)   // battery status changed
            }
            If (Local0 & 0x04)
            {
                Notify (\_SB.ADP0, 0x80)   // power source changed
            }
        }
    }
}
