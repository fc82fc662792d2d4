/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Trace events of tabvm-opensles
 *
 * Generated from devspecs/opensles.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

#include "trace/trace-hw_tabvm_opensles.h"
