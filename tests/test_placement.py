from __future__ import annotations

from planner.candidates import find_candidates
from planner.placement import pair_frame, place
from planner.topology import Topology
from tests._planner_fixtures import flat, host, two_racks, vm


def _place(inv, drained):  # type: ignore[no-untyped-def]
    movers = [v for v in inv.vms if v.host in drained]
    topo = Topology(inv)
    c = find_candidates(inv, movers, drained, topo)
    return place(inv, movers, c, frozenset(drained), topo, time_limit_s=5, workers=1)


def test_memory_capacity_and_unplaced_when_short() -> None:
    inv = flat([host("h1"), host("h2", memory_mib=20000)],
               [vm("a", "h1", memory_mib=12000), vm("b", "h1", memory_mib=12000)])
    r = _place(inv, {"h1"})
    assert len(r.destination) == 1 and len(r.unplaced) == 1


def test_spreads_inbound_load_over_destinations() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")], [vm(f"v{i}", "h1", memory_mib=4096) for i in range(4)])
    r = _place(inv, {"h1"})
    assert sorted(list(r.destination.values()).count(h) for h in ("h2", "h3")) == [2, 2]


def test_affinity_all_on_one_host_and_anti_affinity_apart() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", affinity=frozenset({"p"})), vm("b", "h1", affinity=frozenset({"p"})),
                vm("x", "h1", anti_affinity=frozenset({"q"})), vm("y", "h1", anti_affinity=frozenset({"q"}))])
    r = _place(inv, {"h1"})
    assert r.destination["a"] == r.destination["b"]
    assert r.destination["x"] != r.destination["y"]


def test_pair_frame_lists_links_crossed() -> None:
    inv = two_racks(per_rack=2, vms=[vm("v", "a1")])
    topo = Topology(inv)
    c = find_candidates(inv, [inv.vm["v"]], {"a1"}, topo)
    frame = pair_frame(inv, [inv.vm["v"]], c, topo)
    assert frame.loc[("v", "a2"), "links"] == ()
    assert frame.loc[("v", "b1"), "links"] == (("tor-a", "spine"), ("spine", "tor-b"))
