# SPDX-License-Identifier: GPL-2.0-or-later
# Device set of the tabvm VM profile, for -nodefaults use
# Generated from devspecs/balloon.yaml, devspecs/battery.yaml,
# devspecs/hci.yaml, devspecs/opensles.yaml, devspecs/opensles_lowlat.yaml,
# devspecs/touchpanel.yaml, devspecs/multitouch.yaml
# by the tabvm generator -- do not edit. Regenerate with: tabvm gen

# Machine and stock devices the profile uses (qemu-tree/recipe.toml)
CONFIG_Q35=y
CONFIG_SERIAL_ISA=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_SERIAL=y
CONFIG_VIRTIO_BALLOON=y
CONFIG_USB_XHCI_PCI=y
CONFIG_USB_HID=y
CONFIG_VIRTIO_INPUT=y
CONFIG_HDA=y
CONFIG_VGA_PCI=y
CONFIG_BOCHS_DISPLAY=y
CONFIG_VIRTIO_GPU=y
CONFIG_VIRTIO_NET=y
CONFIG_E1000E_PCI_EXPRESS=y
CONFIG_AHCI_ICH9=y
CONFIG_PCKBD=y

# Generated devices
CONFIG_TABVM_BALLOON=y
CONFIG_TABVM_BATTERY=y
CONFIG_TABVM_BLUETOOTH=y
CONFIG_TABVM_TOUCHPANEL=y
CONFIG_TABVM_TOUCHSCREEN=y
