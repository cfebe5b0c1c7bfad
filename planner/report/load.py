"""Host load before and after a plan, from the one capacity formula (planner.capacity via planner.frames).

Before is `planner.frames.to_frames(inventory).hosts` (capacity, use); after moves each migrated
VM's vCPUs and memory from its source to its final destination. The before frame of an inventory
is computed once and reused (a sweep asks it of the same 5,000-host inventory thousands of times).
`load_pct` is the binding resource: the larger of vCPU and memory use, in % of capacity.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from planner.frames import to_frames
from planner.inventory_cache import per_inventory
from planner.model import HostState, Inventory
from planner.plan import Plan

LOAD_COLUMNS = ("state", "drained", "vcpus_capacity", "memory_capacity_mib", "vms_before", "vms_after",
                "vcpus_before", "vcpus_after", "memory_before_mib", "memory_after_mib", "vcpu_pct_before",
                "vcpu_pct_after", "memory_pct_before", "memory_pct_after", "load_pct_before", "load_pct_after")

def _hosts_frame(inventory: Inventory) -> pd.DataFrame:
    return per_inventory("hosts-frame", inventory, lambda inv: to_frames(inv).hosts)


def final_hosts(plan: Plan) -> dict[str, str]:
    """Each moved VM's final host: the destination of its last hop."""
    final: dict[str, str] = {}
    for m in sorted(plan.migrations, key=lambda m: (m.hop, m.end_s)):
        final[m.vm] = m.destination
    return final


def after_inventory(inventory: Inventory, plan: Plan) -> Inventory:
    """The inventory as it is once the plan has run: each moved VM on the destination of its last hop."""
    final = final_hosts(plan)
    vms = tuple(dataclasses.replace(v, host=final[v.name]) if v.name in final else v for v in inventory.vms)
    return dataclasses.replace(inventory, vms=vms)


def _pct(used: pd.Series, capacity: pd.Series) -> pd.Series:
    return (100.0 * used / capacity.where(capacity > 0)).fillna(0.0)


def host_load(inventory: Inventory, plan: Plan | None = None) -> pd.DataFrame:
    """One row per host: use and % of capacity before and after `plan` (after = before without a plan)."""
    before = _hosts_frame(inventory)
    out = pd.DataFrame(index=before.index)
    out["state"] = before["state"]
    drained = set(plan.drained) if plan is not None else set()
    out["drained"] = before.index.isin(drained)
    out["vcpus_capacity"] = before["vcpus_capacity"]
    out["memory_capacity_mib"] = before["memory_capacity_mib"]
    out["vms_before"] = before["vm_count"]
    out["vcpus_before"] = before["vcpus_used"]
    out["memory_before_mib"] = before["memory_used_mib"]
    vms, vcpus, memory = (before["vm_count"].copy(), before["vcpus_used"].astype(float),
                          before["memory_used_mib"].astype(float))
    for name, dest in (final_hosts(plan) if plan is not None else {}).items():
        v = inventory.vm[name]
        for host, sign in ((v.host, -1), (dest, 1)):
            vms[host] += sign
            vcpus[host] += sign * v.vcpus
            memory[host] += sign * v.memory_mib
    out["vms_after"] = vms
    out["vcpus_after"] = vcpus
    out["memory_after_mib"] = memory
    for when in ("before", "after"):
        out[f"vcpu_pct_{when}"] = _pct(out[f"vcpus_{when}"], out["vcpus_capacity"])
        out[f"memory_pct_{when}"] = _pct(out[f"memory_{when}_mib"], out["memory_capacity_mib"])
        out[f"load_pct_{when}"] = out[[f"vcpu_pct_{when}", f"memory_pct_{when}"]].max(axis=1)
    return out[list(LOAD_COLUMNS)]


def load_extremes(load: pd.DataFrame, inventory: Inventory) -> tuple[float, float]:
    """Max and min `load_pct_after` over the hosts that still run VMs for the fleet (up, not drained)."""
    up = per_inventory("up-hosts", inventory,
                       lambda inv: frozenset(h.name for h in inv.hosts if h.state is HostState.UP))
    serving = load[(~load["drained"]) & load.index.isin(up)]
    if serving.empty:
        return (float("nan"), float("nan"))
    return (float(serving["load_pct_after"].max()), float(serving["load_pct_after"].min()))
