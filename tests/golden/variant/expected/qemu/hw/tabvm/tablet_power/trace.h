/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Trace events of tabvm-tablet-power
 *
 * Generated from tests/golden/variant/specs/power.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

#include "trace/trace-hw_tabvm_tablet_power.h"
