/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Trace events of tabvm-balloon
 *
 * Generated from devspecs/balloon.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

#include "trace/trace-hw_tabvm_balloon.h"
