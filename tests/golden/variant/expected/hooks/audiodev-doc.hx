HXCOMM SPDX-License-Identifier: GPL-2.0-or-later
HXCOMM -audiodev documentation of the generated OpenSL ES drivers
HXCOMM Generated from no specs
HXCOMM by the tabvm generator -- do not edit. Regenerate with: tabvm gen
