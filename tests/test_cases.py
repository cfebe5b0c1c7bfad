"""Every tests/cases/*.json: an inventory, a drain set and the expected outcome (STYLE §12).

A case is a drain (`make_plan`) unless it says `kind` ("repair", "target", "rebalance", "return"):
then `make_reconfiguration` makes it, with the case's `target` ({vm: host}; a return's homes) and
`rebalance` options (`metric`, `by`, `target_spread_pct`, `max_moves`, `max_gib`, `min_gain_pct`, `group_by`).

`expect` keys: status ("feasible" = optimal or feasible, "infeasible"); makespan_max_s /
makespan_min_s; unplaced {vm: [substrings of its reasons]}; unplaced_count; reasons_contain
[substrings found among all reasons]; moved [VMs that must move]; destinations {vm: [allowed
hosts]} (where the VM ends); same_destination [[vm, ...]]; live / converges / auto_converge {vm: bool}.
Reconfiguration keys: hops (migrations in all); staged_count (VMs with a staging hop); after [[b, a]]
(b's first hop starts once a's last one has ended); serial_into [host] (no two hops into it overlap);
moved_only [VMs] (exactly these move); balance_spread_max (the plan's spread after, in %).
Every plan must also pass the independent checker (make_plan asserts it).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from planner.balance import By, Metric
from planner.checker import check_plan
from planner.inventory import parse_inventory
from planner.plan import Plan, PlanKind
from planner.reconfigure import RebalanceOptions, make_reconfiguration
from planner.solve import make_plan

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    inv = parse_inventory(case["inventory"], str(path)).inventory
    plan = _plan_for(case, inv)
    exp = case["expect"]
    assert check_plan(inv, plan) == []
    if exp["status"] == "infeasible":
        assert plan.status.value == "infeasible"
    else:
        assert plan.status.value in ("optimal", "feasible"), [u.reasons for u in plan.unplaced]
    if "makespan_max_s" in exp:
        assert plan.makespan_s <= exp["makespan_max_s"]
    if "makespan_min_s" in exp:
        assert plan.makespan_s >= exp["makespan_min_s"]
    assert plan.lower_bound_s <= plan.makespan_s + 1e-6
    reasons = {u.vm: u.reasons for u in plan.unplaced}
    for vm, wanted in exp.get("unplaced", {}).items():
        assert vm in reasons, f"{vm} should be unplaced"
        for w in wanted:
            assert any(w in r for r in reasons[vm]), (vm, w, reasons[vm])
    if "unplaced_count" in exp:
        assert len(plan.unplaced) == exp["unplaced_count"]
    for w in exp.get("reasons_contain", []):
        assert any(w in r for rs in reasons.values() for r in rs), (w, reasons)
    moved = {m.vm: m for m in sorted(plan.migrations, key=lambda m: m.hop)}  # a VM's last hop: where it ends
    for vm in exp.get("moved", []):
        assert vm in moved
    for vm, allowed in exp.get("destinations", {}).items():
        assert moved[vm].destination in allowed
    for group in exp.get("same_destination", []):
        assert len({moved[v].destination for v in group}) == 1
    for field in ("live", "converges", "auto_converge"):
        for vm, value in exp.get(field, {}).items():
            assert getattr(moved[vm], field) is value
    _check_reconfiguration(plan, exp)


def _plan_for(case: dict[str, Any], inv: Any) -> Plan:
    kind = PlanKind(case.get("kind", "drain"))
    if kind is PlanKind.DRAIN:
        return make_plan(inv, case["drain"], time_limit_s=5, workers=1)
    raw = dict(case.get("rebalance", {}))
    options = RebalanceOptions(metric=Metric(raw.pop("metric", "memory")), by=By(raw.pop("by", "allocation")), **raw)
    return make_reconfiguration(inv, kind, drained=case.get("drain", []), target=case.get("target"),
                                rebalance_options=options, time_limit_s=5, workers=1)


def _check_reconfiguration(plan: Plan, exp: dict[str, Any]) -> None:
    if "hops" in exp:
        assert len(plan.migrations) == exp["hops"], [(m.vm, m.source, m.destination) for m in plan.migrations]
    if "staged_count" in exp:
        assert len({m.vm for m in plan.migrations if m.staging}) == exp["staged_count"]
    for later, first in exp.get("after", []):
        assert min(m.start_s for m in plan.hops_of(later)) >= max(m.end_s for m in plan.hops_of(first)) - 1e-6
    for host in exp.get("serial_into", []):
        into = sorted((m.start_s, m.end_s) for m in plan.migrations if m.destination == host)
        assert all(b[0] >= a[1] - 1e-6 for a, b in itertools.pairwise(into)), into
    if "moved_only" in exp:
        assert {m.vm for m in plan.migrations} == set(exp["moved_only"])
    if "balance_spread_max" in exp:
        assert plan.balance is not None
        assert plan.balance.after.spread_pct <= exp["balance_spread_max"], plan.balance
