/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Trace events of tabvm-opensles-lowlat
 *
 * Generated from devspecs/opensles_lowlat.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

#include "trace/trace-hw_tabvm_opensles_lowlat.h"
