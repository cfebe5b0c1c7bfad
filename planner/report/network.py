"""Bandwidth per NIC and link direction over time, against its cap.

A migration uses its bandwidth on every directed edge of its path for [start_s, end_s). The
timeline is a step function per resource: one row per instant the use changes, with the use from
that instant on. The cap is what the schedule keeps to: nominal capacity × `migration_share`;
`utilisation` is use / nominal capacity (so it never exceeds the share in a valid plan).
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from planner.inventory_cache import per_inventory
from planner.model import Inventory
from planner.plan import Plan
from planner.topology import Resource, Topology

TIMELINE_COLUMNS = ("resource", "kind", "time_s", "used_mibs", "cap_mibs", "capacity_mibs", "utilisation")
PEAK_COLUMNS = ("resource", "kind", "peak_mibs", "cap_mibs", "capacity_mibs", "peak_utilisation", "busy_s")


def resource_kind(resource: Resource, topology: Topology) -> str:
    """`nic-out` (host to switch), `nic-in` (switch to host) or `link` (switch to switch)."""
    u, v = resource
    if topology.graph.nodes[u].get("kind") == "host":
        return "nic-out"
    if topology.graph.nodes[v].get("kind") == "host":
        return "nic-in"
    return "link"


def resource_name(resource: Resource) -> str:
    return f"{resource[0]}→{resource[1]}"


def resource_timeline(plan: Plan, inventory: Inventory, topology: Topology | None = None) -> pd.DataFrame:
    """Step function of bandwidth used per directed edge the plan crosses (see the module docstring)."""
    topo = topology or per_inventory("topology", inventory, Topology)
    share = inventory.policy.migration_share
    deltas: dict[Resource, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for m in plan.migrations:
        for r in Topology.resources(m.path):
            deltas[r][m.start_s] += m.bandwidth_mibs
            deltas[r][m.end_s] -= m.bandwidth_mibs
    rows = []
    for r in sorted(deltas):
        capacity = topo.capacity_mibs(r) if topo.graph.has_edge(*r) else float("nan")
        kind = resource_kind(r, topo) if topo.graph.has_edge(*r) else "link"
        used = 0.0
        for t in sorted(deltas[r]):
            used += deltas[r][t]
            used = 0.0 if abs(used) < 1e-9 else used
            rows.append((resource_name(r), kind, t, used, capacity * share, capacity,
                         used / capacity if capacity else float("nan")))
    return pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))


def peak_utilisation(timeline: pd.DataFrame) -> pd.DataFrame:
    """Per resource: peak use, cap, peak use / nominal capacity, and seconds with any migration on it."""
    if timeline.empty:
        return pd.DataFrame(columns=list(PEAK_COLUMNS))
    rows = []
    for name, g in timeline.groupby("resource", sort=True):
        times = g["time_s"].tolist()
        used = g["used_mibs"].tolist()
        busy = sum(t1 - t0 for t0, t1, u in zip(times, times[1:], used, strict=False) if u > 0)
        first = g.iloc[0]
        rows.append((name, first["kind"], max(used), first["cap_mibs"], first["capacity_mibs"],
                     max(g["utilisation"]), busy))
    return pd.DataFrame(rows, columns=list(PEAK_COLUMNS)).sort_values(
        ["peak_utilisation", "resource"], ascending=[False, True], kind="stable").reset_index(drop=True)
