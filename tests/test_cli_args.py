"""`tabvm` command-line mistakes give argparse's clear one-line errors."""

import pytest

from tabvm.cli import parser


@pytest.mark.parametrize("argv, message", [
    (["run", "--touch-range", "bad"], "is not X0:X1,Y0:Y1"),
    (["run", "--touch-range", "10:5,0:9"], "each range must be increasing"),
    (["run", "--battery", "solar"], "invalid choice: 'solar'"),
    (["run", "--accel", "hvf"], "invalid choice: 'hvf'"),
    (["demo", "--duration", "soon"], "invalid float value"),
    (["explode"], "invalid choice: 'explode'"),
    (["run", "--bt", "bluez"], "expected one of bumble, unix:PATH, tcp:HOST:PORT, hci:N"),
    (["demo", "--bt", "hci:x"], "expected one of"),
    (["run", "--bt", "tcp:localhost:0"], "port 0"),
    (["run", "--audio", "pulse"], "invalid choice: 'pulse'"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_touch_range_parsed():
    args = parser().parse_args(["run", "--touch-range", "0:4095,100:2399",
                                "--touch-from", "/dev/input/event3"])
    assert args.touch_range == ((0, 4095), (100, 2399))
    assert args.touch_from == "/dev/input/event3"


@pytest.mark.parametrize("spec", ["bumble", "none", "unix:/run/bt.sock", "tcp:127.0.0.1:6402",
                                  "hci:0"])
def test_bt_spec_accepted(spec):
    assert parser().parse_args(["run", "--bt", spec]).bt == spec
