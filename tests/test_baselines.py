"""Baselines on cases small enough to compute by hand."""

from __future__ import annotations

import pytest

from planner.baselines import (
    ffd_placement,
    kubevirt,
    max_min_fair,
    nova_evacuate_live,
    run_baselines,
    sequential,
    sequential_plan,
    watcher,
)
from planner.checker import check_plan
from planner.model import Inventory
from planner.units import gbps_to_mibs
from tests._planner_fixtures import flat, host, local_disk, vm

FULL = gbps_to_mibs(10)  # MiB/s of a 10 Gb/s NIC
CAP = FULL * 0.5
FIXED = 1.75


@pytest.fixture
def inv() -> Inventory:
    """h1 drained: two idle 1 GiB VMs and one with a 1 GiB local disk; h2 has room for all."""
    return flat([host("h1"), host("h2"), host("h3")],
                [vm("v1", "h1"), vm("v2", "h1"), vm("v3", "h1", disks=(local_disk("vdb", 1.0),))])


def test_ffd_is_memory_descending_first_fit() -> None:
    inv = flat([host("h1"), host("h2", memory_mib=3000), host("h3")],
               [vm("small", "h1", memory_mib=1000), vm("big", "h1", memory_mib=2500), vm("mid", "h1", memory_mib=1500)])
    p = ffd_placement(inv, ["h1"])
    assert list(p.destination) == ["big", "mid", "small"]
    assert p.destination == {"big": "h2", "mid": "h3", "small": "h3"}


def test_ffd_keeps_anti_affinity_and_affinity_and_reports_what_it_cannot_place() -> None:
    g = frozenset({"g"})
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", anti_affinity=g), vm("b", "h1", anti_affinity=g), vm("c", "h1", anti_affinity=g),
                vm("x", "h1", affinity=frozenset({"f"})), vm("y", "h1", affinity=frozenset({"f"})),
                vm("p", "h1", pinned=True)])
    p = ffd_placement(inv, ["h1"])
    assert p.destination["a"] != p.destination["b"]
    assert "c" in p.unplaced  # two hosts, three VMs that must be apart
    assert p.destination["x"] == p.destination["y"]
    assert "pinned" in p.unplaced["p"][0]


def test_sequential_by_hand(inv: Inventory) -> None:
    r = sequential(inv, ffd_placement(inv, ["h1"]))
    one, disk = FIXED + 1024 / CAP, FIXED + 2048 / CAP
    assert [m.vm for m in r.migrations] == ["v1", "v2", "v3"]
    assert r.makespan_s == pytest.approx(2 * one + disk)
    assert r.migrations[1].start_s == pytest.approx(one)


def test_watcher_by_hand(inv: Inventory) -> None:
    r = watcher(inv, ffd_placement(inv, ["h1"]))
    one, disk = FIXED + 1024 / CAP, FIXED + 2048 / CAP
    assert r.makespan_s == pytest.approx(one + disk)  # chunk {v1, v2}, barrier, chunk {v3}
    assert r.migrations[2].start_s == pytest.approx(one)


def test_kubevirt_by_hand(inv: Inventory) -> None:
    # 2 outbound from h1: v1 and v2 share the full NIC (CAP each); then v3 alone at FULL
    r = kubevirt(inv, ffd_placement(inv, ["h1"]))
    one = FIXED + 1024 / CAP
    assert r.makespan_s == pytest.approx(one + FIXED + 2048 / FULL)


def test_nova_by_hand(inv: Inventory) -> None:
    # all three share the NIC: FULL/3 each; v1, v2 finish after 1024 MiB; v3 then sends its last 1024 at FULL
    r = nova_evacuate_live(inv, ffd_placement(inv, ["h1"]))
    first = FIXED + 1024 / (FULL / 3)
    assert {m.vm: m.end_s for m in r.migrations}["v1"] == pytest.approx(first)
    assert r.makespan_s == pytest.approx(first + 1024 / FULL)


def test_fluid_inflates_bytes_when_bandwidth_is_shared() -> None:
    """Dirtying VMs sharing a NIC send more than alone (NOTES §2): all-at-once is no faster than one by one."""
    hot = [vm(f"v{i}", "h1", memory_mib=2048, dirty_rate_mibs=200.0) for i in range(4)]
    inv = flat([host("h1"), host("h2")], hot, migration_share=1.0, max_outbound_per_host=4)
    p = ffd_placement(inv, ["h1"])
    all_at_once_transfer_s = nova_evacuate_live(inv, p).makespan_s - FIXED
    one_by_one_transfer_s = sequential(inv, p).makespan_s - 4 * FIXED
    assert all_at_once_transfer_s > one_by_one_transfer_s * 1.1


def test_max_min_fair() -> None:
    rates = max_min_fair({"a": [("x", "y"), ("y", "z")], "b": [("x", "y")]}, {("x", "y"): 10.0, ("y", "z"): 3.0})
    assert rates == {"a": pytest.approx(3.0), "b": pytest.approx(7.0)}


def test_run_baselines_names_and_unplaced(inv: Inventory) -> None:
    results = run_baselines(inv, ["h1"])
    assert [r.name for r in results] == ["sequential", "watcher", "kubevirt", "nova-evacuate-live"]
    assert all(len(r.migrations) == 3 and r.unplaced == () for r in results)
    makespans = {r.name: r.makespan_s for r in results}
    assert makespans["nova-evacuate-live"] < makespans["kubevirt"] < makespans["watcher"] < makespans["sequential"]


def test_sequential_plan_is_a_valid_plan(inv: Inventory) -> None:
    plan = sequential_plan(inv, ["h1"])
    assert check_plan(inv, plan) == []
    assert plan.makespan_s == pytest.approx(sequential(inv, ffd_placement(inv, ["h1"])).makespan_s)
    assert [m.copy_storage for m in plan.migrations] == [(), (), ("vdb",)]


def test_most_to_least_moves_the_largest_vm_of_the_busiest_host() -> None:
    from planner.reconfigure import RebalanceOptions
    from planner.reconfigure.baseline import most_to_least_rebalance
    from tests._planner_fixtures import flat, host, vm

    inv = flat([host("hot", memory_mib=8192), host("cold", memory_mib=8192)],
               [vm("small", "hot", memory_mib=1024), vm("big", "hot", memory_mib=3072),
                vm("mid", "hot", memory_mib=2048)])
    base = most_to_least_rebalance(inv, (), RebalanceOptions())
    assert base.moves == (("big", "cold"),)  # then hot 37.5 %, cold 37.5 %: nothing gains any more
    assert base.before.spread_pct == 75.0 and base.after.spread_pct == 0.0 and base.moved_gib == 3.0
