/*
 * Stand-in for QEMU's qemu/osdep.h, for compiling a generated H4 core
 * (hw/tabvm/NAME/tabvm-NAME-h4.c) on its own in tests/test_h4_core.py:
 * the core needs only the C library and GLib.
 */
#ifndef TABVM_TEST_OSDEP_H
#define TABVM_TEST_OSDEP_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>

#endif
