"""Hostile numeric command-line options, generated: for every int or float option of every command, values
that are NaN, infinite, negative, huge, empty or not numbers at all; in-process through `main()`.

Always exit 2, naming the option (or, for a value that is fine, the missing input file the command then
refuses); never a traceback, never a file written. The commands point at inputs that do not exist, so a
valid value costs nothing more than the refusal of the file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from executor.cli.main import app
from executor.cli.numbers import NumericOption, numeric_bounds, numeric_options
from tests.hostile import assert_refusal_names, count, hostile_settings, report_cases, run_cli

__all__ = ["report_cases"]
pytestmark = pytest.mark.timeout(300)

OPTIONS = sorted(numeric_options(app), key=lambda o: (o.command, o.name))
MISSING = "/nonexistent/evac-input"
VALUES = st.one_of(
    st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "1e309", "-1e309", "1e-300", "-0",
                     "0", "", " ", "0x10", "1_000", "١٢", "9" * 5000, "1e9999", "--", "-", "5e", "1,5", "½"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.text(max_size=8))


def _argv(option: NumericOption, value: str) -> list[str]:
    before = {"plan": ["plan", MISSING], "run": ["run", MISSING, "-i", MISSING], "demo": ["demo", MISSING],
              "collect": ["collect", "not a uri", "-o", "out.json"],
              "generate": ["generate", "--hosts", "2", "--vms", "2", "--racks", "1", "-o", "out.json"],
              "rebalance": ["rebalance", MISSING], "whatif": ["whatif", MISSING, "--each-host", "--serial"],
              "return": ["return", MISSING], "rolling": ["rolling", MISSING, "--group-by", "rack"]}
    return [*before[option.command], f"{option.flag}={value}"]


def _clearly_bad(option: NumericOption, value: str) -> bool:
    """Not a number, not finite, or out of the option's bounds: the refusal must name the option. (Other values
    may or may not be taken, as the CLI parser decides: "1.0" for an integer.)"""
    try:
        number = float(value)
    except ValueError:
        return True
    return not math.isfinite(number) or numeric_bounds()[(option.command, option.name)].problem(number) is not None


@hostile_settings(1600)
@given(option=st.sampled_from(OPTIONS), value=VALUES)
def test_hostile_numeric_options(option: NumericOption, value: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _clearly_bad(option, value)
    if option.command == "generate":
        assume(bad)  # a valid size would really generate a fleet
    count(f"{option.command} {option.flag}")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(_argv(option, value), capsys)
    assert code == 2, err
    assert_refusal_names(err, option.flag, MISSING, "not a uri")
    if bad:
        assert option.flag in err, err
    assert not any(tmp_path.iterdir())
