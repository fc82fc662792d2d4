/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Trace events of tabvm-speaker
 *
 * Generated from tests/golden/variant/specs/speaker.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

#include "trace/trace-hw_tabvm_speaker.h"
