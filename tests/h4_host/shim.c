/*
 * Lets tests/test_h4_core.py drive the generated H4 core (hw/tabvm/h4/h4.c)
 * through ctypes: the sizes and counters that are not functions.
 */
#include "qemu/osdep.h"
#include "hw/tabvm/h4/h4.h"

size_t shim_size(void)
{
    return sizeof(TabvmH4);
}

size_t shim_queued(const TabvmH4 *h)
{
    return h->queued;
}

size_t shim_ring_used(const TabvmH4 *h)
{
    return h->ring_used;
}

uint64_t shim_drops(const TabvmH4 *h, int why)
{
    return h->drops[why];
}
