"""Host-side glue for talking to tabvm guests and QEMU."""
