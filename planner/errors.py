"""Errors carry data and say whose fault they are.

* `InventoryError` / `PlanFileError` / `UsageError`: the user's input (exit code 2).
* `Infeasible` and `SolverTimeout`: kept apart, "no solution exists" vs "none found in time".
* `InconsistentPlanError`: a plan failed the independent checker, a bug in evac.
* `EnvironmentProblem`: libvirt unreachable, a missing dependency (exit code 3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner.plan import Plan


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input, and where: `vms[12].memory_mib`, `line 4 column 7`."""

    where: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        # Input is quoted in messages: its control characters (a newline in a key, an ANSI escape in a name)
        # are shown escaped, so that one problem stays one line and nothing is sent to the terminal raw.
        where, message = printable(self.where), printable(self.message)
        return f"{where}: {message}" if where else message


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class EvacError(Exception):
    """Root of every error evac raises on purpose."""

    exit_code: int = 1


class InputError(EvacError):
    """The user's input is wrong; the message names every problem and where it is."""

    exit_code = 2

    def __init__(self, what: str, problems: Sequence[Problem]) -> None:
        self.what = what
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = [f"{what}: {len(errors)} problem{'s' if len(errors) != 1 else ''}"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class InventoryError(InputError):
    """An inventory (JSON, YAML or CSV) that does not satisfy inventory v1."""


class PlanFileError(InputError):
    """A plan file that does not satisfy plan v1."""


class UsageError(InputError):
    """Bad command-line arguments (unknown host to drain, bad URI, ...)."""


class EnvironmentProblem(EvacError):
    """Something outside evac is missing or unreachable (libvirt daemon, package)."""

    exit_code = 3


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a VM cannot be placed; `weight` ranks causes, biggest first."""

    vm: str
    reason: str
    weight: float = 1.0


class Infeasible(EvacError):
    """No valid plan exists for these VMs; `causes` say why, ranked."""

    def __init__(self, causes: Sequence[Cause]) -> None:
        self.causes = sorted(causes, key=lambda c: -c.weight)
        super().__init__("; ".join(f"{c.vm}: {c.reason}" for c in self.causes[:10]))


class SolverTimeout(EvacError):
    """The solver found no solution within its time limit (not a proof that none exists)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        super().__init__(f"no solution found within the {limit_s:g} s time limit")


class InconsistentPlanError(EvacError):
    """A plan produced by evac broke a rule of plan v1: a bug in evac, never the user's fault."""

    exit_code = 1

    def __init__(self, plan: Plan | None, violations: Sequence[Any]) -> None:
        self.plan = plan
        self.violations = list(violations)
        shown = "\n".join(f"  - {v}" for v in self.violations[:20])
        more = f"\n  ... and {len(self.violations) - 20} more" if len(self.violations) > 20 else ""
        super().__init__(f"BUG: evac produced a plan that fails its own checker:\n{shown}{more}")


class PlanRejected(PlanFileError):
    """A well-formed plan file that fails the plan checker: `evac run` refuses it (exit 2), naming the
    first violations and how many there are (a plan for 30,000 VMs can break a rule 30,000 times)."""

    SHOWN = 10

    def __init__(self, source: str, violations: Sequence[Any]) -> None:
        self.violations = list(violations)
        shown = [Problem("", str(v)) for v in self.violations[:self.SHOWN]]
        more = len(self.violations) - len(shown)
        if more:
            shown.append(Problem("", f"… and {more} more (evac check lists them all)"))
        super().__init__(source, shown)
        n = len(self.violations)
        self.args = (f"{source}: {n} violation{'s' if n != 1 else ''} of plan v1; evac runs only plans that pass "
                     f"the plan checker (nothing was run)\n" + "\n".join(f"  - {p}" for p in shown),)

    def __str__(self) -> str:
        return str(self.args[0])
