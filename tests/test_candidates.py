from __future__ import annotations

from planner.candidates import find_candidates
from planner.generate import generate_fleet
from planner.migration_facts import drain_set
from planner.topology import Topology
from tests._planner_fixtures import flat, host, vm


def test_small_fleet_keeps_every_host_that_fits() -> None:
    inv = flat([host("h1"), host("h2"), host("h3", memory_mib=4096), host("h4")],
               [vm("a", "h1", memory_mib=8192), vm("full", "h4", memory_mib=60000)])
    c = find_candidates(inv, [inv.vm["a"]], {"h1"}, Topology(inv))
    assert c.hosts["a"] == ("h2",)  # h3 too small, h4 has no room left after the VM staying there
    assert c.complete["a"]


def test_staying_anti_affinity_peer_excludes_a_host() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", anti_affinity=frozenset({"g"})), vm("b", "h2", anti_affinity=frozenset({"g"}))])
    assert find_candidates(inv, [inv.vm["a"]], {"h1"}, Topology(inv)).hosts["a"] == ("h3",)


def test_pruning_spreads_vms_over_many_hosts() -> None:
    inv = generate_fleet(hosts=200, vms=1000, racks=10, seed=1)
    drained = drain_set(inv, [h.name for h in inv.hosts if h.labels["rack"] == "r1"])
    movers = [v for v in inv.vms if v.host in drained]
    c = find_candidates(inv, movers, drained, Topology(inv), per_vm=6, keep_all_below=20)
    assert all(0 < len(c.hosts[v.name]) <= 6 + 50 for v in movers)
    used = {h for hs in c.hosts.values() for h in hs}
    assert len(used) > 60  # rotating windows: not everyone on the same emptiest few
    assert not any(h in drained for h in used)
