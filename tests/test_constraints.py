"""The rule values and the sweep they share (the checker's end-to-end tests are in test_checker.py)."""

from __future__ import annotations

from planner.constraints import ALL_RULES, AntiAffinity, Capacity, CheckContext, Violation, _sweep_max
from planner.model import HostState
from tests._planner_fixtures import flat, host, move, plan_of, vm


def test_sweep_counts_active_on_half_open_intervals() -> None:
    ivs = [(0.0, 10.0, 5.0), (10.0, 20.0, 7.0), (5.0, 15.0, 1.0)]
    assert list(_sweep_max(ivs)) == [(0.0, 5.0, 1), (5.0, 6.0, 2), (10.0, 8.0, 2)]  # at 10, the first has ended


def test_sweep_same_instant_starts_add_up() -> None:
    assert list(_sweep_max([(1.0, 2.0, 1.0), (1.0, 3.0, 2.0)])) == [(1.0, 3.0, 2)]
    assert list(_sweep_max([])) == []


def test_rule_names_are_unique_and_every_rule_is_a_value() -> None:
    names = [r.name for r in ALL_RULES]
    assert len(names) == len(set(names))
    assert all(r == type(r)() for r in ALL_RULES)  # frozen dataclasses: equal by value


def test_context_drain_set_and_rebalance_default() -> None:
    inv = flat([host("h1"), host("h2", state=HostState.MAINTENANCE), host("h3")], [vm("a", "h1")])
    ctx = CheckContext(inv, plan_of(inv, [], drained=("h1",)))
    assert ctx.drained == {"h1", "h2"} and not ctx.is_rebalance
    inv2 = flat([host("h1"), host("h2")], [vm("a", "h1")])
    assert CheckContext(inv2, plan_of(inv2, [], drained=())).is_rebalance
    assert not CheckContext(inv2, plan_of(inv2, [], drained=()), rebalance=False).is_rebalance


def test_rules_can_run_alone() -> None:
    g = frozenset({"g"})
    inv = flat([host("h1", memory_mib=1024), host("h2", memory_mib=1024)],
               [vm("a", "h1", anti_affinity=g), vm("b", "h2", anti_affinity=g)])
    ctx = CheckContext(inv, plan_of(inv, [move(inv, "a", "h2")]))
    assert [v.subject for v in Capacity().violations(ctx)] == ["h2"]
    assert [v.subject for v in AntiAffinity().violations(ctx)] == ["g"]


def test_violation_reads_well() -> None:
    assert str(Violation("capacity", "h2", 1.5, "too much")) == "[capacity] h2 at t=1.500s: too much"
    assert str(Violation("totals", "plan", None, "x")) == "[totals] plan: x"
