"""The tools' orderings held to plan v1: valid plans, hand-checked shares, never below the lower bound."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from planner.baselines import ffd_placement
from planner.checker import check_plan
from planner.contract_baselines import ORDERINGS, contract_plans, contract_schedule
from planner.lowerbound import lower_bound
from planner.migration_facts import vm_estimate
from planner.model import Inventory
from planner.units import gbps_to_mibs
from tests._planner_fixtures import flat, host, vm
from tests.test_lowerbound import fleets

CAP = gbps_to_mibs(10) * 0.5


def _ordering(name: str):  # type: ignore[no-untyped-def]
    return next(o for o in ORDERINGS if o.name == name)


def test_all_at_once_shares_the_source_nic_and_holds_the_share_to_the_end() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")], [vm("v1", "h1"), vm("v2", "h1", memory_mib=4096)],
               max_outbound_per_host=0, max_inbound_per_host=0)
    plan = contract_schedule(inv, {"v2": "h2", "v1": "h3"}, _ordering("nova-evacuate-live"))
    assert [m.start_s for m in plan.migrations] == [0.0, 0.0]
    assert all(abs(m.bandwidth_mibs - CAP / 2) < 1e-3 for m in plan.migrations)
    # the small one ends first; the big one keeps its half (plan v1: one bandwidth per migration)
    big = plan.migration_of("v2")
    assert big is not None
    assert big.end_s == vm_estimate(inv.vm["v2"], big.bandwidth_mibs, inv.policy).duration_s
    assert check_plan(inv, plan) == []


def test_watcher_waits_for_the_whole_chunk() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", memory_mib=4096), vm("b", "h1"), vm("c", "h1")])
    plan = contract_schedule(inv, {"a": "h2", "b": "h3", "c": "h2"}, _ordering("watcher"))
    c = plan.migration_of("c")
    assert c is not None and c.start_s == max(m.end_s for m in plan.migrations if m.vm in ("a", "b"))
    assert check_plan(inv, plan) == []


def test_slot_limits_of_the_policy_hold_for_every_ordering() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")], [vm(f"v{i}", "h1") for i in range(5)],
               max_outbound_per_host=1)
    for plan in contract_plans(inv, ["h1"]):
        assert check_plan(inv, plan) == [], plan.solver
        starts = sorted(m.start_s for m in plan.migrations)
        assert len(set(starts)) == 5  # one at a time out of h1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_every_contract_ordering_is_a_valid_plan_above_the_lower_bound(case: tuple[Inventory, list[str]]) -> None:
    inv, drained = case
    placed = set(ffd_placement(inv, drained).destination)
    lb = lower_bound(inv, drained, moving=placed)
    for plan in contract_plans(inv, drained):
        assert check_plan(inv, plan) == [], plan.solver
        assert {m.vm for m in plan.migrations} == placed
        assert lb.value_s <= plan.makespan_s * (1 + 1e-9), (plan.solver, lb, plan.makespan_s)
