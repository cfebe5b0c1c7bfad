"""Choosing a rebalance's moves: level to the target spread with few GiB, never a move that gains too little."""

from __future__ import annotations

from planner.balance import By, Metric, spread, utilisation
from planner.checker import check_plan
from planner.generate import generate_fleet, skew_fleet
from planner.plan import PlanKind
from planner.reconfigure import RebalanceOptions, make_reconfiguration, reconfigure
from planner.reconfigure.baseline import most_to_least_rebalance
from planner.reconfigure.rebalance import choose_moves
from planner.topology import Topology
from tests._planner_fixtures import flat, host, vm


def _hot_and_cold():  # type: ignore[no-untyped-def]
    """hot holds 6 GiB of 8 in 1-GiB VMs, c1 and c2 are empty, plus one 4-GiB VM on c3."""
    hosts = [host(n, memory_mib=8192) for n in ("hot", "c1", "c2", "c3")]
    vms = [vm(f"w{i}", "hot", memory_mib=1024) for i in range(6)] + [vm("big", "c3", memory_mib=4096)]
    return flat(hosts, vms)


def _start(inv):  # type: ignore[no-untyped-def]
    return {v.name: v.host for v in inv.vms}


def test_moves_level_the_load_and_each_lowers_the_busier_host() -> None:
    inv = _hot_and_cold()
    choice = choose_moves(inv, _start(inv), (), RebalanceOptions(), Topology(inv))
    assert choice.worst_spread[0] == 75.0 and choice.worst_spread[-1] < choice.worst_spread[0]
    assert choice.gib == tuple(float(k) for k in range(1, len(choice.moves) + 1))  # 1 GiB each, counted up
    assert {d for _, d in choice.moves} <= {"c1", "c2"}  # the cold hosts receive, c3 (50 %) is not made hotter


def test_a_balanced_fleet_does_not_move_for_a_small_gain() -> None:
    inv = flat([host("a", memory_mib=8192), host("b", memory_mib=8192)],
               [vm("x", "a", memory_mib=2048), vm("y", "b", memory_mib=1024)])
    assert choose_moves(inv, _start(inv), (), RebalanceOptions(min_gain_pct=15.0), Topology(inv)).moves == ()
    # moving y would put b at 0 and a at 37.5: the busier host does not drop, so never a swap back and forth
    assert choose_moves(inv, _start(inv), (), RebalanceOptions(min_gain_pct=0.0), Topology(inv)).moves == ()


def test_budgets_and_target_stop_the_descent() -> None:
    inv = _hot_and_cold()
    assert len(choose_moves(inv, _start(inv), (), RebalanceOptions(max_moves=1), Topology(inv)).moves) == 1
    assert choose_moves(inv, _start(inv), (), RebalanceOptions(max_gib=1.5), Topology(inv)).gib == (1.0,)
    loose = choose_moves(inv, _start(inv), (), RebalanceOptions(target_spread_pct=70.0), Topology(inv))
    assert len(loose.moves) == 1 and "within the target" in loose.stop


def test_group_by_keeps_moves_inside_each_group() -> None:
    hosts = [host("a1", memory_mib=8192, labels={"zone": "a"}), host("a2", memory_mib=8192, labels={"zone": "a"}),
             host("b1", memory_mib=8192, labels={"zone": "b"}), host("b2", memory_mib=8192, labels={"zone": "b"})]
    vms = [vm(f"x{i}", "a1", memory_mib=1024) for i in range(6)] + [vm(f"y{i}", "b1", memory_mib=1024)
                                                                     for i in range(4)]
    inv = flat(hosts, vms)
    choice = choose_moves(inv, _start(inv), (), RebalanceOptions(group_by="zone"), Topology(inv))
    zone = {h.name: h.labels["zone"] for h in inv.hosts}
    assert choice.moves and all(zone[inv.vm[v].host] == zone[d] for v, d in choice.moves)


def test_a_rebalance_plan_reports_the_balance_the_checker_recomputes() -> None:
    inv = _hot_and_cold()
    r = reconfigure(inv, PlanKind.REBALANCE, rebalance_options=RebalanceOptions(metric=Metric.MEMORY))
    b = r.plan.balance
    assert b is not None and check_plan(inv, r.plan) == []
    final = {**_start(inv), **{m.vm: m.destination for m in r.plan.migrations}}
    assert abs(b.after.spread_pct - spread(utilisation(inv, final, Metric.MEMORY, By.ALLOCATION)).spread_pct) < 1e-9
    assert [row.moves for row in r.ladder][:2] == [1, 2] and r.ladder[-1].moved_gib == b.moved_gib


def test_an_unreachable_target_spread_says_the_best_reachable() -> None:
    inv = _hot_and_cold()
    r = reconfigure(inv, PlanKind.REBALANCE, rebalance_options=RebalanceOptions(target_spread_pct=0.0, max_moves=1))
    assert not r.target_reached
    assert any("not reached" in n and "best reachable" in n for n in r.notes)


def test_misplaced_vms_are_repaired_before_balancing() -> None:
    inv = flat([host("h1", memory_mib=8192), host("h2", memory_mib=8192, cpu_features=frozenset({"amx"}))],
               [vm("need", "h1", cpu_features=frozenset({"amx"}))])
    plan = make_reconfiguration(inv, PlanKind.REBALANCE)
    assert [(m.vm, m.destination) for m in plan.migrations] == [("need", "h2")]


def test_fewer_gib_than_the_most_to_least_baseline_on_a_skewed_fleet() -> None:
    inv = skew_fleet(generate_fleet(40, 240, 4, seed=3))
    options = RebalanceOptions(target_spread_pct=30.0)
    plan = make_reconfiguration(inv, PlanKind.REBALANCE, rebalance_options=options)
    base = most_to_least_rebalance(inv, (), options)
    assert plan.balance is not None and plan.balance.after.spread_pct <= 30.0 and base.after.spread_pct <= 30.0
    assert plan.balance.moved_gib < base.moved_gib  # the baseline moves the largest VM of the busiest host
