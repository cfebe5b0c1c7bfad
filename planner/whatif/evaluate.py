"""One scenario, evaluated: the comparison row `evac whatif` prints (and the plan behind it).

`evaluate(prepared, settings)`: failures first (restart placement, planner.whatif.restart), then
the drain plan on the fleet that is left (planner.solve.make_plan, exactly as `evac plan` makes
it), then the report layer's figures: makespan and lower bound, GiB moved, peak utilisation per
NIC and link, VMs that will not converge, max/min host load after. Blockers are the reasons VMs
cannot move or restart, grouped and ranked by how many VMs each one stops.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from planner.duration import DEFAULT_MODEL, DurationModel
from planner.model import Inventory
from planner.plan import Plan, PlanStatus
from planner.report import host_load, load_extremes, peak_utilisation, resource_timeline
from planner.solve import make_plan
from planner.units import mib_to_gib
from planner.whatif.restart import restart_placement
from planner.whatif.scenario import Prepared, Scenario, prepare

TOP_BLOCKERS = 5


@dataclass(frozen=True, slots=True)
class Settings:
    """How each scenario is solved. `greedy` (default): no CP-SAT, the same answer every run."""

    greedy: bool = True
    time_limit_s: float = 10.0
    workers: int = 1
    model: DurationModel = DEFAULT_MODEL  # the duration model every scenario is planned with (`--model`)


@dataclass(frozen=True, slots=True)
class Blocker:
    reason: str
    vms: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    feasible: bool
    hosts_emptied: tuple[str, ...]
    hosts_failed: tuple[str, ...]
    vms_moved: int
    vms_restarted: int
    vms_stranded: int  # running VMs of failed hosts with nowhere to restart
    vms_unplaced: int  # VMs of drained hosts the plan cannot move
    blockers: tuple[Blocker, ...]
    makespan_s: float
    lower_bound_s: float
    gib_moved: float
    peak_nic_utilisation: float
    peak_link_utilisation: float
    peak_utilisation: dict[str, float]  # per NIC / link direction the plan crosses
    not_converging: tuple[str, ...]
    load_max_pct: float
    load_min_pct: float
    solver: str
    solve_s: float
    plan: Plan | None = field(default=None, compare=False)
    restart_to: dict[str, str] = field(default_factory=dict, compare=False)

    def row(self) -> dict[str, Any]:
        """The comparison-table row (flat, for --csv and DataFrames)."""
        return {"scenario": self.scenario, "feasible": self.feasible, "hosts_emptied": len(self.hosts_emptied),
                "hosts_failed": len(self.hosts_failed), "vms_moved": self.vms_moved,
                "vms_restarted": self.vms_restarted, "vms_stranded": self.vms_stranded,
                "vms_unplaced": self.vms_unplaced, "makespan_s": round(self.makespan_s, 1),
                "lower_bound_s": round(self.lower_bound_s, 1), "gib_moved": round(self.gib_moved, 1),
                "peak_nic_util": round(self.peak_nic_utilisation, 3),
                "peak_link_util": round(self.peak_link_utilisation, 3),
                "not_converging": len(self.not_converging), "load_max_pct": round(self.load_max_pct, 1),
                "load_min_pct": round(self.load_min_pct, 1),
                "top_blocker": f"{self.blockers[0].reason} ({self.blockers[0].vms} VMs)" if self.blockers else "",
                "solver": self.solver, "solve_s": round(self.solve_s, 2)}

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able (`evac whatif --json`; `evac report` draws the timeline from `plan`)."""
        out = self.row()
        out.update(drained_hosts=list(self.hosts_emptied), failed_hosts=list(self.hosts_failed),
                   blockers=[{"reason": b.reason, "vms": b.vms, "examples": list(b.examples)} for b in self.blockers],
                   makespan_s=self.makespan_s, lower_bound_s=self.lower_bound_s, gib_moved=self.gib_moved,
                   peak_utilisation=self.peak_utilisation, not_converging_vms=list(self.not_converging),
                   restart_to=self.restart_to, plan=self.plan.to_dict() if self.plan is not None else None)
        return out


def rank_blockers(reasons: dict[str, tuple[str, ...]], top: int = TOP_BLOCKERS) -> tuple[Blocker, ...]:
    """The first (most decisive) reason of each VM, grouped; most VMs first, then by text."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for vm, rs in reasons.items():
        first = rs[0] if rs else "no reason given"
        counts[first] += 1
        examples.setdefault(first, []).append(vm)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return tuple(Blocker(r, n, tuple(sorted(examples[r])[:3])) for r, n in ranked)


def evaluate(prepared: Prepared, settings: Settings = Settings()) -> ScenarioResult:
    """The scenario's comparison row (see the module docstring)."""
    t0 = time.monotonic()
    inv: Inventory = prepared.inventory
    reasons: dict[str, tuple[str, ...]] = {}
    restart_to: dict[str, str] = {}
    stranded = 0
    if prepared.fail:
        restart = restart_placement(inv, prepared.fail, time_limit_s=0.0 if settings.greedy else settings.time_limit_s,
                                    workers=settings.workers)
        reasons.update(restart.stranded)
        restart_to = restart.destination
        stranded = len(restart.stranded)
        inv = restart.inventory_after
    plan: Plan | None = None
    if prepared.drain:
        plan = make_plan(inv, prepared.drain, time_limit_s=settings.time_limit_s, workers=settings.workers,
                         drain_labels=prepared.drain_labels, greedy_only=settings.greedy, model=settings.model)
        reasons.update({u.vm: u.reasons for u in plan.unplaced})
    load = host_load(inv, plan)
    high, low = load_extremes(load, inv)
    peaks = peak_utilisation(resource_timeline(plan, inv)) if plan is not None and plan.migrations else None
    per_resource = {} if peaks is None else dict(zip(peaks["resource"], peaks["peak_utilisation"], strict=True))

    def peak(kinds: tuple[str, ...]) -> float:
        if peaks is None:
            return 0.0
        sel = peaks[peaks["kind"].isin(kinds)]
        return float(sel["peak_utilisation"].max()) if not sel.empty else 0.0

    migrations = plan.migrations if plan is not None else ()
    unplaced = len(plan.unplaced) if plan is not None else 0
    feasible = stranded == 0 and (plan is None or plan.status is not PlanStatus.INFEASIBLE)
    return ScenarioResult(
        scenario=prepared.scenario.text, feasible=feasible,
        hosts_emptied=plan.drained if plan is not None else (), hosts_failed=prepared.fail,
        vms_moved=len(migrations), vms_restarted=len(restart_to), vms_stranded=stranded, vms_unplaced=unplaced,
        blockers=rank_blockers(reasons), makespan_s=plan.makespan_s if plan is not None else 0.0,
        lower_bound_s=plan.lower_bound_s if plan is not None else 0.0,
        gib_moved=mib_to_gib(sum(m.memory_mib + m.disk_mib for m in migrations)),
        peak_nic_utilisation=peak(("nic-out", "nic-in")), peak_link_utilisation=peak(("link",)),
        peak_utilisation=per_resource, not_converging=tuple(sorted(m.vm for m in migrations if not m.converges)),
        load_max_pct=high, load_min_pct=low,
        solver=("greedy" if settings.greedy else plan.solver) if plan is not None else "placement",
        solve_s=time.monotonic() - t0, plan=plan, restart_to=restart_to)


def evaluate_scenario(inventory: Inventory, scenario: Scenario, settings: Settings = Settings()) -> ScenarioResult:
    """`prepare` + `evaluate` of one scenario on the (unchanged) base inventory: the unit of work a sweep
    sends to a Dask worker (the inventory is sent once per worker, each scenario is a few bytes)."""
    return evaluate(prepare(inventory, [scenario])[0], settings)
