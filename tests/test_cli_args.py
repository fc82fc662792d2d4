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


def test_bad_balloon_choice(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--balloon", "maybe"])
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


def test_run_with_a_broken_balloon_spec_says_where(tmp_path, capsys):
    """A profile whose policy spec does not check stops `tabvm run` with the
    policy's file:line errors, before anything starts."""
    import glue.cli

    bad = tmp_path / "balloon.yaml"
    bad.write_text("kind: balloon-policy\nname: balloon\ndescription: x\n"
                   "guest: {ram_mib: 1024, min_size_mib: 2048}\nlevels: []\n")
    profile = tmp_path / "broken.yaml"
    profile.write_text(f"name: broken\ndevices:\n  balloon: {{policy: {bad}}}\n")
    args = parser().parse_args(["run", str(profile), "--duration", "1"])
    args.builddir = None
    assert glue.cli.run(args) == 1
    err = capsys.readouterr().err
    assert "balloon.yaml:5: levels: min length is 2" in err, err
    assert "Traceback" not in err


def test_run_with_a_broken_profile_says_where(tmp_path, capsys):
    import glue.cli

    profile = tmp_path / "p.yaml"
    profile.write_text("name: Bad_Name\nmemory_mib: 12\ncpus: two\n")
    args = parser().parse_args(["run", str(profile)])
    assert glue.cli.run(args) == 1
    err = capsys.readouterr().err
    assert "p.yaml:1: name:" in err and "p.yaml:2: memory_mib:" in err and \
        "p.yaml:3: cpus:" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("text", ["512", "0M", "1T", "big"])
def test_bad_memory_sizes(text, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--memory", text])
    assert "is not a size like 512M or 2G" in capsys.readouterr().err


def test_memory_sizes():
    assert parser().parse_args(["run", "--memory", "2G"]).memory == "2048M"
    assert parser().parse_args(["run", "--memory", "768m"]).memory == "768M"


def test_run_with_a_missing_memory_cgroup_is_a_clear_error(build_outputs, guest_image,
                                                           capsys):
    import glue.cli

    args = parser().parse_args(["run", "--bt", "none", "--audio", "none", "--accel", "tcg",
                                "--memory-cgroup", "/nonexistent/cg", "--duration", "1"])
    args.builddir = build_outputs.root
    assert glue.cli.run(args) == 1
    err = capsys.readouterr().err
    assert "tabvm: error: --memory-cgroup /nonexistent/cg: " in err, err
    assert "Traceback" not in err
