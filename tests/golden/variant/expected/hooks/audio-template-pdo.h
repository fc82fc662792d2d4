/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-direction options of the generated OpenSL ES drivers
 *
 * Generated from no specs
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */
