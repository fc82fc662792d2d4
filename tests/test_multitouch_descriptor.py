"""The generated HID report descriptors, decoded by hid-tools (an independent
parser), match their specs: usages, counts, sizes, ranges, units."""

from __future__ import annotations

import pytest
from hidtools.hid import ReportDescriptor

from generator.ir import Multitouch
from generator.main import check, spec_files

TOUCH_DEVICES = [d for d in check(spec_files()) if isinstance(d, Multitouch)]

TIP, IN_RANGE, CONFIDENCE = 0x000D0042, 0x000D0032, 0x000D0047
CONTACT_ID, CONTACT_COUNT, CONTACT_MAX = 0x000D0051, 0x000D0054, 0x000D0055
SCAN_TIME, INPUT_MODE, DEVICE_INDEX = 0x000D0056, 0x000D0052, 0x000D0053
X, Y, CERTIFICATION = 0x00010030, 0x00010031, 0xFF0000C5


@pytest.fixture(params=TOUCH_DEVICES, ids=lambda d: d.name)
def device(request) -> Multitouch:
    return request.param


def decoded(device: Multitouch) -> ReportDescriptor:
    return ReportDescriptor.from_bytes(list(device.descriptor))


def fields(report, usage):
    return [f for f in report.fields if f.usage == usage]


def test_two_specs_differ():
    assert {d.name for d in TOUCH_DEVICES} >= {"touchscreen", "touchpanel"}
    assert len({(d.contacts, d.per_report, d.x, d.y) for d in TOUCH_DEVICES}) == \
        len(TOUCH_DEVICES)


def test_touch_report(device):
    rd = decoded(device)
    touch = rd.input_reports[device.REPORT_TOUCH]
    assert touch.application_name == "Touch Screen"
    assert touch.size == device.touch_report_size
    for usage in (TIP, IN_RANGE, CONFIDENCE, CONTACT_ID, X, Y):
        assert len(fields(touch, usage)) == device.per_report, hex(usage)
    for f in fields(touch, X):
        assert (f.logical_min, f.logical_max) == (device.x.logical_min, device.x.logical_max)
        assert (f.physical_min, f.physical_max) == (0, device.x.physical_mm)
        assert (f.size, f.unit, f.unit_exp) == (16, 0x11, -1)   # cm * 10^-1 = mm
    for f in fields(touch, Y):
        assert (f.logical_min, f.logical_max) == (device.y.logical_min, device.y.logical_max)
        assert f.physical_max == device.y.physical_mm
    for f in fields(touch, CONTACT_ID):
        assert (f.size, f.logical_max) == (8, device.contacts - 1)
    (count,) = fields(touch, CONTACT_COUNT)
    assert (count.size, count.logical_max) == (8, device.contacts)
    (scan,) = fields(touch, SCAN_TIME)
    assert (scan.size, scan.unit, scan.unit_exp) == (16, 0x1001, -4)   # 100 us


def test_feature_reports(device):
    rd = decoded(device)
    (maxc,) = fields(rd.feature_reports[device.REPORT_MAX_COUNT], CONTACT_MAX)
    assert maxc.logical_max == device.contacts
    cert = rd.feature_reports[device.REPORT_CERTIFICATION]
    assert cert.size == 1 + 256
    assert len(fields(cert, CERTIFICATION)) == 256
    assert all(f.size == 8 for f in cert.fields)
    mode = rd.feature_reports[device.REPORT_MODE]
    assert mode.application_name == "Device Configuration"
    assert [f.usage for f in mode.fields] == [INPUT_MODE, DEVICE_INDEX]


def test_mouse_collection(device):
    rd = decoded(device)
    if not device.mouse_buttons:
        assert device.REPORT_MOUSE not in rd.input_reports
        return
    mouse = rd.input_reports[device.REPORT_MOUSE]
    assert mouse.application_name == "Mouse"
    assert mouse.size == device.mouse_report_size
    buttons = [f for f in mouse.fields if f.usage and f.usage >> 16 == 0x09]
    assert [f.usage & 0xFFFF for f in buttons] == list(range(1, device.mouse_buttons + 1))
    assert [(f.usage, f.logical_max) for f in mouse.fields if f.usage in (X, Y)] == \
        [(X, 0x7FFF), (Y, 0x7FFF)]


def test_report_ids_are_the_c_constants(device):
    rd = decoded(device)
    assert set(rd.input_reports) == {device.REPORT_TOUCH} | (
        {device.REPORT_MOUSE} if device.mouse_buttons else set())
    assert set(rd.feature_reports) == {device.REPORT_MAX_COUNT,
                                       device.REPORT_CERTIFICATION, device.REPORT_MODE}


def test_descriptor_bytes_in_c_source(device):
    """The C array is the descriptor, byte for byte."""
    from generator.render import render_all
    out = {o.path: o.text for o in render_all([device], [])}
    c = out[f"qemu/{device.qemu_dir}/{device.c_file}"]
    body = c.split("_report_descriptor[] = {", 1)[1].split("};", 1)[0]
    values = [int(tok, 16) for tok in body.replace(",", " ").split()]
    assert bytes(values) == device.descriptor
