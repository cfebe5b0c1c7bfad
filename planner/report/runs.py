"""Planned against executed, per VM, from plain data (a RunResult's results or a journal's records).

The executor turns what it has into `ExecutedRow`s (seconds since the run started); this module
never reads a journal or talks to a hypervisor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from planner.plan import Plan

RUN_COLUMNS = ("vm", "source", "destination", "wave", "planned_start_s", "planned_end_s", "state", "attempts",
               "started_s", "ended_s", "executed_s", "late_s", "error")


@dataclass(frozen=True, slots=True)
class ExecutedRow:
    """What happened to one VM: final state and when it ran, in seconds since the run started."""

    vm: str
    state: str
    attempts: int = 0
    started_s: float | None = None
    ended_s: float | None = None
    error: str = ""


def run_table(plan: Plan, executed: Iterable[ExecutedRow]) -> pd.DataFrame:
    """One row per planned migration (first hop of each VM): planned times beside executed ones.

    `late_s` is executed end minus planned end (positive: later than planned); VMs with no
    executed row are `pending`.
    """
    by_vm = {r.vm: r for r in executed}
    rows = []
    for m in sorted(plan.migrations, key=lambda m: (m.start_s, m.vm)):
        if m.hop:
            continue
        r = by_vm.get(m.vm, ExecutedRow(m.vm, "pending"))
        took = r.ended_s - r.started_s if r.started_s is not None and r.ended_s is not None else None
        late = r.ended_s - m.end_s if r.ended_s is not None else None
        rows.append((m.vm, m.source, m.destination, m.wave, m.start_s, m.end_s, r.state, r.attempts,
                     r.started_s, r.ended_s, took, late, r.error))
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))
