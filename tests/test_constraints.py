"""The rule values and the sweep they share (the checker's end-to-end tests are in test_checker.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from planner.balance import By, Metric, spread, utilisation
from planner.checker import check_plan
from planner.constraints import AntiAffinity, Capacity, CheckContext, Violation, all_rules, sweep_max
from planner.errors import PlanFileError, UsageError
from planner.model import HostState, Inventory
from planner.plan import Balance, PlanKind, Spread, plan_from_dict
from planner.repair import misplaced
from tests._planner_fixtures import flat, host, move, plan_of, vm
from tests._planner_fixtures import full_pair as _full_pair
from tests._planner_fixtures import staged_swap as _staged_swap


def test_sweep_counts_active_on_half_open_intervals() -> None:
    ivs = [(0.0, 10.0, 5.0), (10.0, 20.0, 7.0), (5.0, 15.0, 1.0)]
    assert list(sweep_max(ivs)) == [(0.0, 5.0, 1), (5.0, 6.0, 2), (10.0, 8.0, 2)]  # at 10, the first has ended


def test_sweep_same_instant_starts_add_up() -> None:
    assert list(sweep_max([(1.0, 2.0, 1.0), (1.0, 3.0, 2.0)])) == [(1.0, 3.0, 2)]
    assert list(sweep_max([])) == []


def test_rule_names_are_unique_and_every_rule_is_a_value() -> None:
    names = [r.name for r in all_rules()]
    assert len(names) == len(set(names))
    assert all(r == type(r)() for r in all_rules())  # frozen dataclasses: equal by value


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


# ---------------------------------------------------------------- reconfiguration plans (hops, kinds)


def test_a_swap_through_a_staging_host_is_valid_at_every_instant() -> None:
    inv = _full_pair()
    plan = plan_of(inv, _staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})
    assert check_plan(inv, plan) == []


def test_a_direct_swap_of_two_full_hosts_breaks_capacity_while_both_move() -> None:
    inv = _full_pair()
    plan = plan_of(inv, [move(inv, "x", "b"), move(inv, "y", "a")], drained=(), kind=PlanKind.TARGET,
                   target={"x": "b", "y": "a"})
    assert "capacity" in {v.rule for v in check_plan(inv, plan)}


@pytest.mark.parametrize(("change", "needle"), [
    (lambda ms: [ms[0], ms[1], replace(ms[2], start_s=ms[0].end_s - 1.0, end_s=ms[2].end_s - 1.0)], "before hop 0"),
    (lambda ms: [ms[0], ms[1], replace(ms[2], hop=0)], "hop 0 is the VM's migration #1"),
    (lambda ms: [replace(ms[0], staging=False), ms[1], ms[2]], "staging=False"),
    (lambda ms: [ms[0], ms[1], replace(ms[2], source="a")], "where the previous hop ended (c)"),
])
def test_broken_hop_chains_are_caught(change: Any, needle: str) -> None:
    inv = _full_pair()
    plan = plan_of(inv, change(_staged_swap(inv)), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})
    messages = [str(v) for v in check_plan(inv, plan)]
    assert any(needle in m for m in messages), messages


def test_a_drain_plan_still_moves_a_vm_at_most_once() -> None:
    inv = _full_pair()
    plan = plan_of(inv, _staged_swap(inv), drained=())
    assert any(v.rule == "at-most-once" and "more than once" in v.message for v in check_plan(inv, plan))


def test_a_target_plan_must_reach_the_target() -> None:
    inv = _full_pair()
    plan = plan_of(inv, [move(inv, "x", "c")], drained=(), kind=PlanKind.TARGET, target={"x": "b"})
    assert [v.message for v in check_plan(inv, plan) if v.rule == "target"] == ["ends on c, the target is b"]


def _repair_inventory() -> Inventory:
    """v needs avx512f, which its host h1 lacks; w is fine where it is."""
    hosts = [host("h1"), host("h2", cpu_features=frozenset({"avx512f"}))]
    return flat(hosts, [vm("v", "h1", cpu_features=frozenset({"avx512f"})), vm("w", "h1")])


def test_a_repair_must_move_the_vm_its_host_cannot_serve_and_only_that() -> None:
    inv = _repair_inventory()
    assert misplaced(inv) == {"v": ["host h1 lacks CPU features avx512f"]}
    nothing = plan_of(inv, [], drained=(), kind=PlanKind.REPAIR)
    assert [v.rule for v in check_plan(inv, nothing)] == ["repair"]
    fixed = plan_of(inv, [move(inv, "v", "h2")], drained=(), kind=PlanKind.REPAIR)
    assert check_plan(inv, fixed) == []
    v = move(inv, "v", "h2")
    too_much = plan_of(inv, [v, move(inv, "w", "h2", start_s=v.end_s, wave=1)], drained=(), kind=PlanKind.REPAIR)
    assert {v.rule for v in check_plan(inv, too_much)} == {"only-drained-move"}


def test_outside_a_drain_anti_affinity_peers_sharing_a_host_must_end_apart() -> None:
    inv = flat([host("h1"), host("h2")], [vm("p", "h1", anti_affinity=frozenset({"g"})),
                                          vm("q", "h1", anti_affinity=frozenset({"g"}))])
    assert list(misplaced(inv)) == ["q"]
    assert any("end together on h1" in v.message for v in check_plan(inv, plan_of(inv, [], drained=(),
                                                                                  kind=PlanKind.REPAIR)))
    assert check_plan(inv, plan_of(inv, [move(inv, "q", "h2")], drained=(), kind=PlanKind.REPAIR)) == []


def test_a_rebalance_plan_carries_the_balance_its_placement_gives() -> None:
    inv = flat([host("h1", memory_mib=8192), host("h2", memory_mib=8192)],
               [vm("a", "h1", memory_mib=2048), vm("b", "h1", memory_mib=2048)])
    migs = [move(inv, "b", "h2")]
    before = spread(utilisation(inv, {"a": "h1", "b": "h1"}, Metric.MEMORY, By.ALLOCATION))
    after = spread(utilisation(inv, {"a": "h1", "b": "h2"}, Metric.MEMORY, By.ALLOCATION))
    assert (before.spread_pct, after.spread_pct) == (50.0, 0.0)
    right = Balance("memory", "allocation", before, after, moved_gib=2.0)
    assert check_plan(inv, plan_of(inv, migs, drained=(), kind=PlanKind.REBALANCE, balance=right)) == []
    wrong = replace(right, after=before)
    assert {v.rule for v in check_plan(inv, plan_of(inv, migs, drained=(), kind=PlanKind.REBALANCE,
                                                    balance=wrong))} == {"balance"}
    assert {v.rule for v in check_plan(inv, plan_of(inv, migs, drained=(), kind=PlanKind.REBALANCE))} == {"balance"}


def test_reconfiguration_fields_round_trip_through_a_plan_file() -> None:
    inv = _full_pair()
    plan = plan_of(inv, _staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"},
                   balance=Balance("cpu", "usage", Spread(1, 2, 3), Spread(0.5, 1, 0.25), 12.5))
    again = plan_from_dict(json.loads(plan.to_json()))
    assert again.kind is PlanKind.TARGET and dict(again.target) == {"x": "b", "y": "a"}
    assert [(m.hop, m.staging) for m in again.migrations] == [(0, True), (0, False), (1, False)]
    assert again.balance == plan.balance
    as_drain = {**json.loads(plan.to_json()), "kind": "drain"}
    with pytest.raises(PlanFileError, match="more than once"):
        plan_from_dict(as_drain)


def test_evac_check_takes_a_multi_hop_plan_whose_later_hops_leave_from_staging_hosts(tmp_path: Any) -> None:
    from planner.plan_inputs import check_plan_matches

    inv = _full_pair()
    plan = plan_of(inv, _staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})
    check_plan_matches(plan, inv, "plan.json", "inv.json")  # x's second hop leaves c: not "x is on a now"
    wrong = replace(plan, migrations=(replace(plan.migrations[0], source="b"), *plan.migrations[1:]))
    with pytest.raises(UsageError, match="x is on a now, not b"):
        check_plan_matches(wrong, inv, "plan.json", "inv.json")
