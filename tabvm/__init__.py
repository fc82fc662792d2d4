"""tabvm build tooling: fetch and patch QEMU, build it, build the test guest."""
