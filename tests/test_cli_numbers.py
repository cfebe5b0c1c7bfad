"""Numeric command-line options: NaN, infinities and values out of range exit 2 naming the option, before
the command does any work (the inventory is not even read), never a hang or a traceback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from executor.cli.main import app, main
from executor.cli.numbers import BOUNDS, Bounds, numeric_options

pytestmark = pytest.mark.timeout(60)

NOWHERE = "/nonexistent/inventory.json"  # never read: the option is refused first
PLAN = "/nonexistent/plan.json"

CASES = [
    (["plan", NOWHERE, "--time-limit", "nan"], "--time-limit"),
    (["plan", NOWHERE, "--time-limit", "inf"], "--time-limit"),
    (["plan", NOWHERE, "--time-limit", "0"], "--time-limit"),
    (["plan", NOWHERE, "--workers", "100000"], "--workers"),
    (["plan", NOWHERE, "--workers", "0"], "--workers"),
    (["run", PLAN, "-i", NOWHERE, "--simulate", "--speedup", "nan"], "--speedup"),
    (["run", PLAN, "-i", NOWHERE, "--simulate", "--speedup", "inf"], "--speedup"),
    (["run", PLAN, "-i", NOWHERE, "--simulate", "--speedup", "1e-300"], "--speedup"),
    (["run", PLAN, "-i", NOWHERE, "--simulate", "--speedup", "1e300"], "--speedup"),
    (["run", PLAN, "-i", NOWHERE, "--retries", "1000000"], "--retries"),
    (["demo", NOWHERE, "--speedup", "-5"], "--speedup"),
    (["demo", NOWHERE, "--time-limit-s", "nan"], "--time-limit-s"),
    (["generate", "--uplink-gbps", "inf"], "--uplink-gbps"),
    (["generate", "--uplink-gbps", "1e-6"], "--uplink-gbps"),
    (["generate", "--hosts", "10000000"], "--hosts"),
    (["generate", "--memory-used", "nan"], "--memory-used"),
    (["generate", "--seed", "-1"], "--seed"),
    (["collect", "qemu:///system", "-o", "x.json", "--read-timeout", "inf"], "--read-timeout"),
]


@pytest.mark.parametrize(("argv", "flag"), CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_bad_numbers_exit_2_naming_the_option(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert "nonexistent" not in err  # refused before reading any file
    assert not any(tmp_path.iterdir())


def test_several_bad_numbers_are_named_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", NOWHERE, "--time-limit", "nan", "--workers", "100000"]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "--time-limit" in err and "--workers" in err


def test_every_numeric_option_has_bounds() -> None:
    """A new numeric option without an entry in BOUNDS would accept NaN: this test names it."""
    options = {(o.command, o.name) for o in numeric_options(app)}
    assert options - set(BOUNDS) == set()
    assert set(BOUNDS) - options == set()  # no stale entry either


def test_the_flags_are_found_as_typed() -> None:
    flags = {(o.command, o.flag) for o in numeric_options(app)}
    assert ("demo", "--time-limit-s") in flags and ("generate", "--uplink-gbps") in flags


def test_bounds_accept_their_ends() -> None:
    b = Bounds(0.1, 10.0)
    assert b.problem(0.1) is None and b.problem(10.0) is None and b.problem(3) is None
    assert b.problem(0.0999) and b.problem(10.01) and b.problem(math.nan) and b.problem(-math.inf)
    opened = Bounds(0.0, 1.0, lo_open=True)
    assert opened.problem(0.0) and opened.problem(1e-9) is None


def test_in_range_values_still_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--hosts", "2", "--vms", "2", "--racks", "2", "--uplink-gbps", "0.01",
                 "--seed", "0"]) == 0
    assert '"gbps": 0.01' in capsys.readouterr().out
