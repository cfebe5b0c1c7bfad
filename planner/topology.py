"""The migration network as a networkx graph: hosts, switches, and capacity per link direction.

Nodes are host and switch names (inventory v1 keeps them distinct). A host's NIC is the edge
host—switch with capacity `nic_gbps`; `links` join switches. No `switch` on any host means one flat
switch, named `FLAT_SWITCH`. Every edge is full duplex: each direction is its own resource, so a
resource is an ordered pair `(u, v)`; a host's outbound NIC is `(host, switch)`, its inbound NIC
`(switch, host)`.

Paths between hosts are shortest paths by hop count, computed once per pair of switches and cached
(a 5,000-host fleet has ~100 switches but 25 million host pairs).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from functools import lru_cache

import networkx as nx

from planner.model import Inventory
from planner.units import gbps_to_mibs

FLAT_SWITCH = "(flat)"

Resource = tuple[str, str]  # one direction of one edge: (from, to)


class Topology:
    def __init__(self, inventory: Inventory) -> None:
        self.graph: nx.Graph = nx.Graph()
        flat = all(h.switch is None for h in inventory.hosts)
        self.switch_of: dict[str, str] = {}
        for h in inventory.hosts:
            sw = FLAT_SWITCH if flat or h.switch is None else h.switch
            self.switch_of[h.name] = sw
            self.graph.add_node(h.name, kind="host")
            self.graph.add_node(sw, kind="switch")
            self.graph.add_edge(h.name, sw, gbps=float(h.nic_gbps))
        for lk in inventory.links:
            for n in (lk.a, lk.b):
                if n not in self.graph:
                    self.graph.add_node(n, kind="switch")
            self.graph.add_edge(lk.a, lk.b, gbps=float(lk.gbps))
        self._switch_graph = self.graph.subgraph(
            [n for n, k in self.graph.nodes(data="kind") if k == "switch"]).copy()
        self._switch_path = lru_cache(maxsize=None)(self._compute_switch_path)
        self._connected: bool | None = None

    def _compute_switch_path(self, a: str, b: str) -> tuple[str, ...] | None:
        try:
            return tuple(nx.shortest_path(self._switch_graph, a, b))
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return None

    def path(self, source: str, destination: str) -> tuple[str, ...] | None:
        """Hosts and switches crossed from source to destination, source first; None if unreachable."""
        sw = self._switch_path(self.switch_of[source], self.switch_of[destination])
        return None if sw is None else (source, *sw, destination)

    def reachable(self, source: str, destination: str) -> bool:
        return self._switch_path(self.switch_of[source], self.switch_of[destination]) is not None

    @staticmethod
    def resources(path: tuple[str, ...]) -> Iterator[Resource]:
        """The directed edges a path uses, in order (source NIC out first, destination NIC in last)."""
        return itertools.pairwise(path)

    def capacity_mibs(self, resource: Resource) -> float:
        """Nominal capacity of one direction of an edge, MiB/s (before `migration_share`)."""
        return gbps_to_mibs(self.graph.edges[resource]["gbps"])

    def path_capacity_mibs(self, path: tuple[str, ...], share: float = 1.0) -> float:
        """The smallest capped capacity along a path: the most one migration may use."""
        return min(self.capacity_mibs(r) for r in self.resources(path)) * share

    def all_resources(self) -> Iterator[Resource]:
        for u, v in self.graph.edges:
            yield (u, v)
            yield (v, u)

    def connected(self) -> bool:
        """Every node reaches every other. Asked several times per plan (candidates, explainer, checker):
        computed once, since a Topology is never changed after it is built."""
        if self._connected is None:
            self._connected = self.graph.number_of_nodes() == 0 or nx.is_connected(self.graph)
        return self._connected
