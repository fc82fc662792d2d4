"""devspecs/README.md is the schema reference and must match the schemas."""

from conftest import REPO
from generator.docs import reference


def test_reference_is_current():
    assert (REPO / "devspecs" / "README.md").read_text() == reference(), \
        "run `tabvm spec-doc`"


def test_every_kind_and_field_documented():
    text = reference()
    for needle in ("## `kind: acpi-battery`", "## `kind: usb-multitouch`",
                   "| `battery.initial.remaining` | integer | required | 0x0..0x7FFFFFFF |",
                   "| `mode` | string | default `hybrid` | one of `hybrid`, `parallel` |",
                   "| `contacts` | integer | default `10` | 5..10 |",
                   "| `kind` | string | required | `usb-multitouch` |"):
        assert needle in text, needle
