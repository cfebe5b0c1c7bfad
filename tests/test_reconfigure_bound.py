"""The reconfiguration lower bound: only terms that no staging detour can avoid."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.checker import check_plan
from planner.migration_facts import vm_floor_estimate
from planner.model import Inventory, Link
from planner.plan import Plan, PlanKind
from planner.reconfigure import make_reconfiguration
from planner.reconfigure.bound import moves_lower_bound
from planner.topology import Topology
from tests._planner_fixtures import flat, full_pair, host, plan_of, staged_swap, vm


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


def _floor_s(inv: Inventory, name: str) -> float:
    cap = Topology(inv).capacity_mibs((inv.vm[name].host, "(flat)")) * inv.policy.migration_share
    return vm_floor_estimate(inv.vm[name], cap, inv.policy).duration_s


def test_a_swap_of_two_full_hosts_counts_its_staging_hop() -> None:
    """x and y swap full hosts a and b: one of them must stage (two hops one after the other), and the
    other enters only once the first has left. The bound sees both; the hand-made staged plan meets it."""
    inv = full_pair()
    lb = moves_lower_bound(inv, {"x": "b", "y": "a"})
    two = 2 * _floor_s(inv, "x")
    assert abs(lb.terms["staging"] - two) < 1e-9 and abs(lb.terms["chain"] - two) < 1e-9
    assert lb.value_s > 1.9 * lb.terms["longest_migration"]  # it was the longest move alone: gap 3.0
    plan = plan_of(inv, staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})
    assert check_plan(inv, plan) == [] and lb.value_s <= plan.makespan_s


def test_a_chain_into_a_full_host_cannot_overlap() -> None:
    """h1 is full: b may enter only once a has left, so the two moves add up (no staging needed)."""
    inv = flat([host("h1", memory_mib=4096), host("h2"), host("h3")],
               [vm("a", "h1", memory_mib=4096), vm("b", "h3", memory_mib=4096)])
    lb = moves_lower_bound(inv, {"a": "h2", "b": "h1"})
    assert abs(lb.terms["chain"] - _floor_s(inv, "a") - _floor_s(inv, "b")) < 1e-9
    assert "staging" not in lb.terms
    plan = make_reconfiguration(inv, PlanKind.TARGET, target={"a": "h2", "b": "h1"}, time_limit_s=5, workers=1)
    assert lb.value_s <= plan.makespan_s


def test_room_enough_means_no_chain() -> None:
    inv = flat([host("h1", memory_mib=8192), host("h2"), host("h3")],
               [vm("a", "h1", memory_mib=4096), vm("b", "h3", memory_mib=4096)])
    assert "chain" not in moves_lower_bound(inv, {"a": "h2", "b": "h1"}).terms


def _final(plan: Plan) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in sorted(plan.migrations, key=lambda m: (m.vm, m.hop)):
        out[m.vm] = m.destination
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from([1024, 2048, 4096]), min_size=1, max_size=2), min_size=2, max_size=3),
       st.lists(st.sampled_from([0, 0, 2048]), min_size=3, max_size=3),
       st.lists(st.sampled_from([4096, 8192]), min_size=1, max_size=2),
       st.lists(st.integers(0, 4), min_size=6, max_size=6), st.sampled_from([0.0, 50.0]))
def test_the_bound_never_exceeds_a_valid_plan(full: list[list[int]], slack: list[int], spare: list[int],
                                              to: list[int], dirty: float) -> None:
    """Hosts full (or nearly) of their VMs, one or two spare hosts, VMs sent to random full hosts: swaps,
    chains and cycles that need staging. Every plan evac makes (greedy sequence, staging hops, CP-SAT
    re-timing; each checked) takes at least the bound with its chain and staging terms. (In 200 such
    cases the new terms bound 32 of them, staging hops were needed in 19; makespan / bound ≥ 1.003.)"""
    hosts, vms, target = [], [], {}
    names = [f"f{i}" for i in range(len(full))]
    for i, sizes in enumerate(full):
        hosts.append(host(names[i], memory_mib=sum(sizes) + slack[i]))
        vms += [vm(f"v{i}{j}", names[i], memory_mib=mib, dirty_rate_mibs=dirty) for j, mib in enumerate(sizes)]
    hosts += [host(f"s{k}", memory_mib=m) for k, m in enumerate(spare)]
    target = {v.name: names[to[n] % len(names)] for n, v in enumerate(vms)}
    inv = flat(hosts, vms)
    plan = make_reconfiguration(inv, PlanKind.TARGET, target=target, time_limit_s=2, workers=1)
    assert check_plan(inv, plan) == []
    assert moves_lower_bound(inv, _final(plan)).value_s <= plan.makespan_s * (1 + 1e-9) + 1e-6
