"""CP-SAT re-timing of a reconfiguration's hops: shorter than the greedy one, never breaking a rule."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from planner.checker import check_plan
from planner.inventory import parse_inventory
from planner.model import Inventory
from planner.plan import PlanKind
from planner.reconfigure import make_reconfiguration, migrations_of
from planner.reconfigure.cpsat import improve
from planner.reconfigure.sequence import sequence_moves
from planner.topology import Topology
from tests._planner_fixtures import flat, host, plan_of, swap_beside_moves, vm

CASES = Path(__file__).parent / "cases"


def _case(name: str) -> Inventory:
    return parse_inventory(json.loads((CASES / f"{name}.json").read_text())["inventory"]).inventory


def _shortened_and_checked(inv: Inventory) -> None:
    """CP-SAT shortens the greedy sequence of the first case's moves, and the result checks."""
    goal = {"r1": "c3", "w1": "c1", "w2": "c2", "w3": "c3"}
    seq = sequence_moves(inv, goal)
    better = improve(inv, seq, Topology(inv), time_limit_s=5, workers=1)
    assert better is not None and better.makespan_units < seq.makespan_units
    plan = plan_of(inv, migrations_of(inv, better), drained=(), kind=PlanKind.TARGET, target=goal)
    assert check_plan(inv, plan) == []


def test_it_shortens_a_greedy_sequence_and_the_result_checks() -> None:
    """hot sends four VMs away one after the other at full cap; two at a time at half cap each end sooner."""
    _shortened_and_checked(_case("rebalance_anti_affinity"))


def test_capacity_over_time_keeps_a_chain_in_order() -> None:
    """h1 is full: b may enter it only once a has left, whatever CP-SAT would gain by overlapping them."""
    inv = flat([host("h1", memory_mib=4096), host("h2"), host("h3")],
               [vm("a", "h1", memory_mib=4096), vm("b", "h3", memory_mib=4096), vm("c", "h3", memory_mib=1024)])
    plan = make_reconfiguration(inv, PlanKind.TARGET, target={"a": "h2", "b": "h1", "c": "h2"})
    hops = {m.vm: m for m in plan.migrations}
    assert hops["b"].start_s >= hops["a"].end_s and check_plan(inv, plan) == []


def test_peers_already_sharing_a_host_only_left_do_not_stop_the_model() -> None:
    """The first case, with r0 beside r1 on hot before the plan: hops only leave hot, so who is there at
    any instant is a subset of the start (the checker excuses that pair): CP-SAT re-times, and it checks."""
    base = _case("rebalance_anti_affinity")
    _shortened_and_checked(replace(base, vms=(*base.vms, vm("r0", "hot", memory_mib=1024,
                                                            anti_affinity=frozenset({"replicas"})))))


def test_peers_already_sharing_a_host_that_also_receives_are_left_to_the_greedy_sequence() -> None:
    """As above, but a VM of c1 also enters hot: there the checker excuses the r0–r1 pair only, which
    no_overlap cannot say, so the greedy timing stays although CP-SAT could shorten it."""
    base = _case("rebalance_anti_affinity")
    inv = replace(base, vms=(*base.vms, vm("r0", "hot", memory_mib=1024, anti_affinity=frozenset({"replicas"})),
                             vm("z", "c1", memory_mib=1024)))
    seq = sequence_moves(inv, {"r1": "c3", "w1": "c1", "w2": "c2", "w3": "c3", "z": "hot"})
    assert improve(inv, seq, Topology(inv), time_limit_s=5, workers=1) is None


def test_staging_hops_move_earlier_than_the_deadlock_that_made_them() -> None:
    """A swap of two full hosts beside twelve independent moves: the greedy sequence stages only once
    nothing else runs, CP-SAT runs the swap alongside the others."""
    inv, target = swap_beside_moves()
    greedy = sequence_moves(inv, target)
    plan = make_reconfiguration(inv, PlanKind.TARGET, target=target, time_limit_s=10, workers=1)
    assert plan.solver == "cp-sat" and plan.makespan_s < 0.6 * greedy.makespan_units / 10
    assert sum(m.staging for m in plan.migrations) == 1
