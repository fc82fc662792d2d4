/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The generated ballooning policy objects wait for -chardev
 *
 * Generated from devspecs/balloon.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */
    /* Reason: tabvm-balloon property "chardev" */
    if (g_str_equal(type, "tabvm-balloon")) {
        return false;
    }
