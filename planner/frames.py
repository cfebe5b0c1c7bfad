"""An inventory as two pandas DataFrames, for reports, `evac inventory show` and notebooks.

`to_frames(inv)` gives `hosts` indexed by host name (capacity, use and room per resource, VM counts)
and `vms` indexed by VM name. Capacities are those the planner uses: `cpus x cpu_overcommit` vCPUs and
`(memory_mib - reserved_memory_mib) x memory_overcommit` MiB; free may be negative on an over-full host.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from planner.capacity import host_capacity
from planner.model import Inventory

HOST_COLUMNS = ("state", "switch", "nic_gbps", "cpus", "vcpus_capacity", "vcpus_used", "vcpus_free", "memory_mib",
                "memory_capacity_mib", "memory_used_mib", "memory_free_mib", "local_disk_used_gib",
                "local_disk_free_gib", "vm_count", "running_vms")
VM_COLUMNS = ("host", "switch", "state", "vcpus", "memory_mib", "dirty_rate_mibs", "local_disk_gib",
              "shared_disk_gib", "disk_count", "anti_affinity", "affinity", "pinned", "priority")


@dataclass(frozen=True)
class Frames:
    hosts: pd.DataFrame
    vms: pd.DataFrame


def to_frames(inv: Inventory) -> Frames:
    policy = inv.policy
    host_rows = []
    for h in inv.hosts:
        on = inv.vms_on.get(h.name, ())
        cap = host_capacity(h, policy)
        vcpus_capacity, memory_capacity = cap.vcpus, cap.memory_mib
        vcpus_used = sum(v.vcpus for v in on)
        memory_used = sum(v.memory_mib for v in on)
        host_rows.append((h.state.value, h.switch or "", h.nic_gbps, h.cpus, vcpus_capacity, vcpus_used,
                          vcpus_capacity - vcpus_used, h.memory_mib, memory_capacity, memory_used,
                          memory_capacity - memory_used, sum(v.local_disk_alloc_gib for v in on),
                          h.local_disk_free_gib, len(on), sum(1 for v in on if v.live)))
    hosts = pd.DataFrame(host_rows, columns=list(HOST_COLUMNS),
                         index=pd.Index([h.name for h in inv.hosts], name="name"))
    switch_of = {h.name: h.switch or "" for h in inv.hosts}
    vm_rows = [(v.host, switch_of.get(v.host, ""), v.state.value, v.vcpus, v.memory_mib, v.dirty_rate_mibs,
                v.local_disk_alloc_gib, sum(d.allocation_gib for d in v.disks if d.shared), len(v.disks),
                ";".join(sorted(v.anti_affinity)), ";".join(sorted(v.affinity)), v.pinned, v.priority)
               for v in inv.vms]
    vms = pd.DataFrame(vm_rows, columns=list(VM_COLUMNS), index=pd.Index([v.name for v in inv.vms], name="name"))
    return Frames(hosts=hosts, vms=vms)
