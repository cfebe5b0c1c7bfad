"""Every tests/cases/*.json: an inventory, a drain set and the expected outcome (STYLE §12).

`expect` keys: status ("feasible" = optimal or feasible, "infeasible"); makespan_max_s /
makespan_min_s; unplaced {vm: [substrings of its reasons]}; unplaced_count; reasons_contain
[substrings found among all reasons]; moved [VMs that must move]; destinations {vm: [allowed
hosts]}; same_destination [[vm, ...]]; live / converges / auto_converge {vm: bool}.
Every plan must also pass the independent checker (make_plan asserts it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planner.checker import check_plan
from planner.inventory import parse_inventory
from planner.solve import make_plan

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    inv = parse_inventory(case["inventory"], str(path)).inventory
    plan = make_plan(inv, case["drain"], time_limit_s=5, workers=1)
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
    moved = {m.vm: m for m in plan.migrations}
    for vm in exp.get("moved", []):
        assert vm in moved
    for vm, allowed in exp.get("destinations", {}).items():
        assert moved[vm].destination in allowed
    for group in exp.get("same_destination", []):
        assert len({moved[v].destination for v in group}) == 1
    for field in ("live", "converges", "auto_converge"):
        for vm, value in exp.get(field, {}).items():
            assert getattr(moved[vm], field) is value
