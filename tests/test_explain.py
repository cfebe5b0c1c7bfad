from __future__ import annotations

import pytest

from planner.drain import resolve_drain
from planner.errors import UsageError
from planner.explain import dynamic_reasons, static_reasons
from planner.model import HostState
from planner.topology import Topology
from tests._planner_fixtures import flat, host, vm


def test_names_the_missing_network_and_ranks_pinned_first() -> None:
    inv = flat([host("h1", networks=frozenset({"br-db"})), host("h2")],
               [vm("db", "h1", networks=frozenset({"br-db"}), pinned=True)])
    reasons = static_reasons(inv, inv.vm["db"], {"h1"}, Topology(inv))
    assert "pinned" in reasons[0] and any("no host offers network br-db" in r for r in reasons)


def test_down_host_and_too_big() -> None:
    inv = flat([host("h1", state=HostState.DOWN), host("h2")], [vm("big", "h1", memory_mib=10**6)])
    reasons = static_reasons(inv, inv.vm["big"], {"h1"}, Topology(inv))
    assert any("down" in r for r in reasons) and any("largest host offers" in r for r in reasons)


def test_capacity_short_by_n_mib() -> None:
    inv = flat([host("h1"), host("h2", memory_mib=16384)], [vm("a", "h1", memory_mib=8192),
                                                            vm("r", "h2", memory_mib=12288)])
    assert static_reasons(inv, inv.vm["a"], {"h1"}, Topology(inv)) == []
    reasons = dynamic_reasons(inv, inv.vm["a"], {"h1"}, Topology(inv), {})
    assert reasons[0].startswith("capacity short by 4096 MiB")


def test_resolve_drain_labels_and_unknowns() -> None:
    inv = flat([host("h1", labels={"rack": "r1"}), host("h2", labels={"rack": "r1"}),
                host("h3", state=HostState.MAINTENANCE)], [])
    ds = resolve_drain(inv, [], ["rack=r1"])
    assert ds.hosts == ("h1", "h2", "h3") and ds.maintenance == ("h3",)
    with pytest.raises(UsageError) as e:
        resolve_drain(inv, ["x", "y"], ["rack=r9", "bad"])
    assert len(e.value.problems) == 4
