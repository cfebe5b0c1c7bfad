"""The reconfiguration lower bound: only terms that no staging detour can avoid."""

from __future__ import annotations

from planner.migration_facts import vm_floor_estimate
from planner.model import Inventory, Link
from planner.plan import PlanKind
from planner.reconfigure import make_reconfiguration
from planner.reconfigure.bound import moves_lower_bound
from planner.topology import Topology
from tests._planner_fixtures import flat, host, vm


def test_one_move_is_bounded_by_its_own_floor_duration() -> None:
    inv = flat([host("a"), host("b")], [vm("x", "a", memory_mib=8192)])
    lb = moves_lower_bound(inv, {"x": "b"})
    cap = Topology(inv).capacity_mibs(("a", "(flat)")) * inv.policy.migration_share
    assert abs(lb.terms["longest_migration"] - vm_floor_estimate(inv.vm["x"], cap, inv.policy).duration_s) < 1e-9
    assert lb.value_s > 0


def test_vms_that_stay_count_for_nothing() -> None:
    inv = flat([host("a"), host("b")], [vm("x", "a")])
    assert moves_lower_bound(inv, {"x": "a"}).value_s == 0.0


def test_links_that_a_detour_can_avoid_give_no_term() -> None:
    """Two spines: no link is a bridge, so only NIC, slot and longest-move terms remain."""
    hosts = [host("a", switch="tor-a"), host("b", switch="tor-b")]
    links = (Link("tor-a", "s1", 1.0), Link("tor-b", "s1", 1.0), Link("tor-a", "s2", 1.0), Link("tor-b", "s2", 1.0))
    inv = Inventory(hosts=tuple(hosts), vms=(vm("x", "a"),), links=links)
    assert "link" not in moves_lower_bound(inv, {"x": "b"}).terms
    tree = Inventory(hosts=tuple(hosts), vms=(vm("x", "a"),), links=links[:2])
    assert "link" in moves_lower_bound(tree, {"x": "b"}).terms  # one spine: the uplinks are bridges


def test_the_bound_stays_below_a_staged_plan() -> None:
    inv = flat([host("a", memory_mib=8192), host("b", memory_mib=8192), host("c")],
               [vm("x", "a", memory_mib=8192), vm("y", "b", memory_mib=8192)])
    plan = make_reconfiguration(inv, PlanKind.TARGET, target={"x": "b", "y": "a"})
    assert 0 < plan.lower_bound_s <= plan.makespan_s
    assert plan.lower_bound_s == moves_lower_bound(inv, {"x": "b", "y": "a"}).value_s
