"""tabvm device generator: devspecs/*.yaml -> QEMU device sources, build glue, ACPI ASL.

Pipeline (after QEMU's scripts/qapi): load (YAML with line marks) -> schema check
(Cerberus) -> semantic checks -> frozen IR -> Jinja2 backends -> files written only
when their text changed.
"""
