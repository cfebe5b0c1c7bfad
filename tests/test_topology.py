"""planner.topology: paths through switches, per-direction capacities, flat fleets, connectivity."""

from __future__ import annotations

import pytest

from planner.inventory import parse_inventory
from planner.model import Host, Inventory, Link
from planner.topology import FLAT_SWITCH, Topology
from planner.units import gbps_to_mibs
from tests.test_inventory import valid_doc


@pytest.fixture
def topo() -> Topology:
    return Topology(parse_inventory(valid_doc()).inventory)


def test_paths_cross_switches(topo: Topology) -> None:
    assert topo.path("h01", "h02") == ("h01", "tor-a", "h02")
    assert topo.path("h01", "h03") == ("h01", "tor-a", "spine", "tor-b", "h03")
    assert topo.reachable("h03", "h01") and topo.connected()
    assert topo.switch_of == {"h01": "tor-a", "h02": "tor-a", "h03": "tor-b"}


def test_resources_are_directed_edges(topo: Topology) -> None:
    path = topo.path("h01", "h03")
    assert path is not None
    assert list(topo.resources(path)) == [("h01", "tor-a"), ("tor-a", "spine"), ("spine", "tor-b"), ("tor-b", "h03")]
    resources = set(topo.all_resources())
    assert ("h01", "tor-a") in resources and ("tor-a", "h01") in resources and len(resources) == 2 * 5


def test_capacities_per_direction_and_share(topo: Topology) -> None:
    assert topo.capacity_mibs(("h01", "tor-a")) == pytest.approx(gbps_to_mibs(25))
    assert topo.capacity_mibs(("spine", "tor-b")) == pytest.approx(gbps_to_mibs(100))
    path = topo.path("h01", "h03")
    assert path is not None
    assert topo.path_capacity_mibs(path, 0.5) == pytest.approx(gbps_to_mibs(25) * 0.5)
    assert gbps_to_mibs(1) == pytest.approx(119.209, abs=1e-3)


def test_slow_uplink_is_the_bottleneck() -> None:
    doc = valid_doc()
    doc["links"][1]["gbps"] = 1
    topo = Topology(parse_inventory(doc).inventory)
    path = topo.path("h01", "h03")
    assert path is not None and topo.path_capacity_mibs(path) == pytest.approx(gbps_to_mibs(1))


def test_flat_fleet_has_one_switch() -> None:
    inv = Inventory(hosts=(Host("a", 4, 4096, 10), Host("b", 4, 4096, 1)), vms=())
    topo = Topology(inv)
    assert topo.path("a", "b") == ("a", FLAT_SWITCH, "b")
    assert topo.path_capacity_mibs(("a", FLAT_SWITCH, "b")) == pytest.approx(gbps_to_mibs(1))
    assert topo.connected()


def test_unreachable_hosts() -> None:
    # The loader refuses this; Topology must still answer rather than crash (e.g. for hand-built inventories).
    inv = Inventory(hosts=(Host("a", 4, 4096, 10, switch="s1"), Host("b", 4, 4096, 10, switch="s2")), vms=(),
                    links=(Link("s1", "x", 10),))
    topo = Topology(inv)
    assert topo.path("a", "b") is None and not topo.reachable("a", "b") and not topo.connected()


def test_many_hosts_share_switch_paths() -> None:
    hosts = tuple(Host(f"r{r}-h{k}", 4, 4096, 25, switch=f"tor-{r}") for r in range(20) for k in range(50))
    links = tuple(Link(f"tor-{r}", "spine", 100) for r in range(20))
    topo = Topology(Inventory(hosts=hosts, vms=(), links=links))
    assert topo.path("r0-h0", "r19-h49") == ("r0-h0", "tor-0", "spine", "tor-19", "r19-h49")
    assert topo.path("r3-h1", "r3-h2") == ("r3-h1", "tor-3", "r3-h2")
