"""Every numeric command-line option of evac, and the range it must lie in: one table, checked in one place.

click converts `--speedup nan` or `--uplink-gbps inf` to floats without a word (and its ranges let NaN
through, since every comparison with NaN is false), so every command is wrapped to refuse a value
that is not finite or out of range before its body runs: exit 2, one message naming every bad option.
`tests/test_cli_numbers.py` fails when a command gains a numeric option missing from `BOUNDS`.

Why each bound: the solver's and simulator's own limits (CP-SAT refuses 100,000 workers with
MODEL_INVALID; beyond 10,000x the simulated fleet's wall-clock overhead dominates and migrations time
out) or what any fleet can hold (the inventory's own maxima).
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import typer
from typer.models import CommandInfo

from planner.errors import Problem, UsageError
from planner.inventory import MAX_LINK_GBPS, MIN_LINK_GBPS


@dataclass(frozen=True, slots=True)
class Bounds:
    lo: float
    hi: float
    lo_open: bool = False  # lo itself is refused ("must be > 0")
    unit: str = ""

    def problem(self, value: float) -> str | None:
        """Why `value` is refused, or None when it is fine."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number {self.text()}, got {value}"
        if (value <= self.lo if self.lo_open else value < self.lo) or value > self.hi:
            return f"must be {self.text()}, got {value:g}" if isinstance(value, float) else \
                f"must be {self.text()}, got {value}"
        return None

    def text(self) -> str:
        """"from 0.1 to 10000 times real time", "more than 0 and at most 86400 seconds"."""
        unit = f" {self.unit}" if self.unit else ""
        low, high = (_number(self.lo), _number(self.hi))
        return f"more than {low} and at most {high}{unit}" if self.lo_open else f"from {low} to {high}{unit}"


@dataclass(frozen=True, slots=True)
class OneOf:
    """A word option with a fixed set of values, checked with the numbers so one message names every bad
    option of a command (click's own choices stop at the first)."""

    values: tuple[str, ...]

    def problem(self, value: object) -> str | None:
        if value in self.values:
            return None
        return f"must be {', '.join(self.values[:-1])} or {self.values[-1]}, got {value!r}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


SPEEDUP = Bounds(0.1, 10_000.0, unit="times real time")
PLAN_TIME_LIMIT = Bounds(0.0, 86_400.0, lo_open=True, unit="seconds")

# (command path, parameter name) -> bounds. Command paths as typed: "plan", "inventory show".
BOUNDS: dict[tuple[str, str], Bounds | OneOf] = {
    ("plan", "time_limit"): PLAN_TIME_LIMIT,
    ("plan", "workers"): Bounds(1, 64, unit="threads"),
    ("run", "retries"): Bounds(0, 100),
    ("run", "speedup"): SPEEDUP,
    ("demo", "speedup"): SPEEDUP,
    ("demo", "time_limit_s"): PLAN_TIME_LIMIT,
    ("generate", "hosts"): Bounds(1, 100_000),
    ("generate", "vms"): Bounds(0, 1_000_000),
    ("generate", "racks"): Bounds(1, 10_000),
    ("generate", "seed"): Bounds(0, 2**63 - 1),
    ("generate", "uplink_gbps"): Bounds(MIN_LINK_GBPS, MAX_LINK_GBPS, unit="Gbit/s"),
    ("generate", "memory_used"): Bounds(0.0, 1.0, lo_open=True, unit="(a fraction of host memory)"),
    ("collect", "dirty_rate_seconds"): Bounds(1, 60, unit="seconds"),
    ("collect", "sample_s"): Bounds(0.0, 600.0, unit="seconds"),
    ("whatif", "time_limit"): PLAN_TIME_LIMIT,
    ("rebalance", "metric"): OneOf(("memory", "cpu", "both")),
    ("rebalance", "by"): OneOf(("allocation", "usage")),
    ("rebalance", "target_spread"): Bounds(0.0, 100.0, unit="% points"),
    ("rebalance", "max_moves"): Bounds(0, 10_000_000, unit="moves"),
    ("rebalance", "max_gib"): Bounds(0.0, 1e9, unit="GiB"),
    ("rebalance", "min_gain"): Bounds(0.0, 100.0, unit="% points"),
    ("rebalance", "time_limit"): PLAN_TIME_LIMIT,
    ("rebalance", "workers"): Bounds(1, 64, unit="threads"),
    ("whatif", "processes"): Bounds(1, 1024, unit="processes"),
    ("whatif", "host_failures"): Bounds(1, 1000, unit="hosts at once"),  # the sweep also caps the number of sets
    ("rolling", "max_hosts"): Bounds(1, 100_000, unit="hosts per round"),
    ("rolling", "maintenance_min"): Bounds(0.0, 10_080.0, unit="minutes (a week at most)"),
    ("collect", "timeout"): Bounds(0.1, 3600.0, unit="seconds"),
    ("collect", "read_timeout"): Bounds(0.1, 86_400.0, unit="seconds"),
    ("return", "time_limit"): PLAN_TIME_LIMIT,
    ("return", "workers"): Bounds(1, 64, unit="threads"),
    ("return", "timeout"): Bounds(0.1, 3600.0, unit="seconds"),
}


def numeric_bounds() -> dict[tuple[str, str], Bounds]:
    """The entries of BOUNDS that bound numbers (the rest are word choices)."""
    return {k: b for k, b in BOUNDS.items() if isinstance(b, Bounds)}


@dataclass(frozen=True, slots=True)
class NumericOption:
    command: str  # as typed: "plan", "inventory show"
    name: str  # the Python parameter name, as in BOUNDS
    flag: str  # the option as typed: "--time-limit"
    kind: type


def numeric_options(app: typer.Typer) -> list[NumericOption]:
    """Every int or float parameter of every command of `app` (sub-apps too)."""
    out = []
    for path, info in _commands(app):
        if info.callback is None:
            continue
        hints = typing.get_type_hints(inspect.unwrap(info.callback), include_extras=True)
        for name, hint in hints.items():
            if name == "return":
                continue
            base, meta = (typing.get_args(hint)[0], typing.get_args(hint)[1:]) \
                if typing.get_origin(hint) is typing.Annotated else (hint, ())
            kinds = {k for k in (typing.get_args(base) or (base,)) if k in (int, float)}
            if kinds:
                decls = [d for m in meta for d in getattr(m, "param_decls", ()) or () if d.startswith("--")]
                flag = decls[0] if decls else "--" + name.replace("_", "-")
                out.append(NumericOption(path, name, flag, float if float in kinds else int))
    return out


def install(app: typer.Typer) -> None:
    """Wraps every command of `app` so that its numeric options are checked against BOUNDS before it runs.

    The wrapper keeps the command's signature (functools.wraps), so typer builds the same options."""
    flags = {(o.command, o.name): o.flag for o in numeric_options(app)}
    for path, info in _commands(app):
        checks = {name: (flags.get((path, name), "--" + name.replace("_", "-")), bounds)
                  for (cmd, name), bounds in BOUNDS.items()
                  if cmd == path and ((path, name) in flags or isinstance(bounds, OneOf))}
        if checks and info.callback is not None and not hasattr(info.callback, "__evac_bounded__"):
            info.callback = _bounded(path, info.callback, checks)


def _bounded(path: str, fn: Callable[..., Any], checks: dict[str, tuple[str, Bounds | OneOf]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        problems = []
        for name, (flag, bounds) in checks.items():
            value = kwargs.get(name)
            if isinstance(bounds, OneOf):
                why = bounds.problem(value) if name in kwargs else None
            elif isinstance(value, int | float) and not isinstance(value, bool):
                why = bounds.problem(value)
            else:
                why = None  # an optional option not given
            if why is not None:
                problems.append(Problem(flag, why))
        if problems:
            raise UsageError(f"evac {path}", problems)
        return fn(*args, **kwargs)

    run.__evac_bounded__ = True  # type: ignore[attr-defined]
    return run


def _commands(app: typer.Typer, prefix: str = "") -> Iterator[tuple[str, CommandInfo]]:
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        yield f"{prefix}{name}", info
    for group in app.registered_groups:
        if group.typer_instance is not None:
            yield from _commands(group.typer_instance, f"{prefix}{group.name} ")
