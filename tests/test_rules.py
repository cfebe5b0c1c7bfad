"""planner.rules: a plan-level rule is ONE module, picked up by the checker, the CP-SAT models and the explainer.

The proof: rules defined here, in the test, registered for the test only (`registered`, or dropped as a
module where the package finds its rules), touch no other module, yet the checker flags plans breaking
them, the placement and the drain schedule obey them, and the explainer gives their reasons.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

import planner.rules
from planner.checker import check_plan
from planner.constraints import all_rules
from planner.explain import dynamic_reasons
from planner.model import Inventory
from planner.rules import REGISTRY, plan_rules, registered
from planner.rules.base import CheckContext, ExplainContext, MovesModel, PlacementModel, PlanRule, Violation
from planner.schedule import UNITS_PER_S, build_tasks, solve_schedule
from planner.solve import make_plan
from planner.topology import Topology
from tests._planner_fixtures import flat, host, move, plan_of, vm


@dataclass(frozen=True, slots=True)
class NeverOn(PlanRule):
    """Test rule: VM `vm` never lands on host `host` (an end-state rule: checker, placement, explainer)."""

    name: ClassVar[str] = "test-never-on"
    vm: str = "a"
    host: str = "h2"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        return [Violation(self.name, m.vm, m.start_s, f"may never run on {self.host}")
                for m, _v in ctx.known if m.vm == self.vm and m.destination == self.host]

    def encode_placement(self, pm: PlacementModel) -> None:
        for (v, h), xv in zip(pm.keys, pm.xs, strict=True):
            if (v, h) == (self.vm, self.host):
                pm.m.add(xv == 0)

    def explain(self, ec: ExplainContext) -> list[tuple[float, str]]:
        return [(99, f"may never run on {self.host}")] if ec.vm.name == self.vm else []


@dataclass(frozen=True, slots=True)
class NotBefore(PlanRule):
    """Test rule: VM `vm` starts migrating no earlier than `at_s` (a timing rule: checker, moves models)."""

    name: ClassVar[str] = "test-not-before"
    vm: str = "b"
    at_s: float = 3.0

    def violations(self, ctx: CheckContext) -> list[Violation]:
        return [Violation(self.name, m.vm, m.start_s, f"starts before {self.at_s} s")
                for m, _v in ctx.known if m.vm == self.vm and m.start_s < self.at_s - 1e-3]

    def encode_moves(self, mm: MovesModel) -> None:
        for mv in mm.moves:
            if mv.vm == self.vm:
                mm.m.add(mv.start >= round(self.at_s * UNITS_PER_S))


def _drain() -> Inventory:
    """h1 and h4 drain a and b; h2 is empty, h3 already half full: every objective prefers h2 for a; b, on
    its own NIC, can start at once."""
    return flat([host("h1"), host("h2"), host("h3"), host("h4")],
                [vm("a", "h1", memory_mib=4096), vm("b", "h4", memory_mib=1024),
                 vm("big", "h3", memory_mib=32768)])


def test_the_registry_is_what_the_checker_holds_and_registered_is_temporary() -> None:
    assert [r.name for r in plan_rules()] == ["link-bandwidth", "concurrency", "capacity", "anti-affinity", "affinity"]
    with registered(NeverOn()) as rule:
        assert rule in all_rules() and rule in REGISTRY
    assert NeverOn() not in all_rules() and len(REGISTRY) == 5


def test_a_rule_registered_in_a_test_is_checked() -> None:
    inv = _drain()
    plan = plan_of(inv, [move(inv, "a", "h2"), move(inv, "b", "h3")], drained=("h1", "h4"))
    assert check_plan(inv, plan) == []
    with registered(NeverOn()):
        got = check_plan(inv, plan)
    assert [(v.rule, v.subject) for v in got] == [("test-never-on", "a")]


def test_a_rule_registered_in_a_test_binds_the_placement() -> None:
    inv = _drain()
    free = make_plan(inv, ["h1", "h4"], time_limit_s=10, workers=1)
    assert {m.vm: m.destination for m in free.migrations}["a"] == "h2"  # without the rule: the best place
    with registered(NeverOn()):
        plan = make_plan(inv, ["h1", "h4"], time_limit_s=10, workers=1)
        assert check_plan(inv, plan) == []  # make_plan's own checker held it to the rule too
    assert {m.vm: m.destination for m in plan.migrations}["a"] == "h3"


def test_a_rule_registered_in_a_test_binds_the_cp_sat_schedule() -> None:
    inv = _drain()
    topo = Topology(inv)
    tasks = build_tasks(inv, {"a": "h2", "b": "h3"}, topo)
    free = solve_schedule(tasks, topo, inv.policy, time_limit_s=5, workers=1, inventory=inv)
    assert free.start_units["b"] < 3 * UNITS_PER_S  # b has its own NIC: it starts at once
    with registered(NotBefore()):
        held = solve_schedule(tasks, topo, inv.policy, time_limit_s=5, workers=1, inventory=inv)
    assert held.start_units["b"] >= 3 * UNITS_PER_S and held.makespan_units == free.makespan_units


def test_a_rule_registered_in_a_test_is_explained() -> None:
    inv = _drain()
    with registered(NeverOn()):
        reasons = dynamic_reasons(inv, inv.vm["a"], {"h1", "h4"}, Topology(inv), {})
    assert reasons[0] == "may never run on h2"
    assert "may never run on h2" not in dynamic_reasons(inv, inv.vm["a"], {"h1", "h4"}, Topology(inv), {})


def test_a_rule_module_dropped_into_the_package_is_in_force_with_no_other_edit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registration is discovery: a module defining RULE and CHECK_ORDER is found where the package
    looks for its modules; no list elsewhere to edit."""
    (tmp_path / "zz_test_never_on.py").write_text(textwrap.dedent("""
        from tests.test_rules import NeverOn
        RULE = NeverOn(vm="a", host="h2")
        CHECK_ORDER = 99
    """))
    monkeypatch.setattr(planner.rules, "__path__", [*planner.rules.__path__, str(tmp_path)])
    try:
        found = planner.rules.discover()
    finally:
        sys.modules.pop("planner.rules.zz_test_never_on", None)
    assert [r.name for r in found][:-1] == [r.name for r in REGISTRY] and found[-1] == NeverOn(vm="a", host="h2")


def test_a_rule_module_without_its_value_is_refused_not_silently_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zz_forgotten.py").write_text("X = 1\n")
    monkeypatch.setattr(planner.rules, "__path__", [*planner.rules.__path__, str(tmp_path)])
    try:
        with pytest.raises(TypeError, match="zz_forgotten"):
            planner.rules.discover()
    finally:
        sys.modules.pop("planner.rules.zz_forgotten", None)
