/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The generated ballooning policy objects wait for -chardev
 *
 * Generated from no specs
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */
