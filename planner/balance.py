"""How evenly a placement loads the fleet: utilisation per host and its spread (plan v1, `balance`).

A host's utilisation is its VMs' total over its capacity (`planner.capacity.host_capacity`: memory
`(memory_mib − reserved_memory_mib) × memory_overcommit`, cpu `cpus × cpu_overcommit`), over the
hosts that are `up` and not drained. `by="allocation"` counts what VMs are given (memory_mib,
vcpus); `by="usage"` what they were measured to use (`memory_used_mib`, `cpu_used`), falling back
to the allocation for a VM with no measurement. `metric="both"` takes, per host, the larger of the
two utilisations (the resource that binds first). `spread_pct` = max − min.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from enum import StrEnum

from planner.capacity import host_capacity
from planner.model import VM, HostState, Inventory
from planner.plan import Migration, Spread
from planner.units import mib_to_gib


class Metric(StrEnum):
    MEMORY = "memory"
    CPU = "cpu"
    BOTH = "both"


class By(StrEnum):
    ALLOCATION = "allocation"
    USAGE = "usage"


def vm_load(vm: VM, by: By) -> tuple[float, float]:
    """(vCPUs or cores, memory MiB) the VM counts for."""
    if by is By.USAGE:
        cpu = vm.cpu_used if vm.cpu_used is not None else float(vm.vcpus)
        mem = vm.memory_used_mib if vm.memory_used_mib is not None else vm.memory_mib
        return cpu, float(mem)
    return float(vm.vcpus), float(vm.memory_mib)


def balanced_hosts(inventory: Inventory, drained: Collection[str] = ()) -> list[str]:
    """The hosts a balance is measured over: up and not drained."""
    return [h.name for h in inventory.hosts if h.state is HostState.UP and h.name not in drained]


def utilisation(inventory: Inventory, host_of: Mapping[str, str], metric: Metric, by: By,
                drained: Collection[str] = ()) -> dict[str, float]:
    """Per balanced host, its utilisation in % when every VM is where `host_of` says."""
    hosts = balanced_hosts(inventory, drained)
    cpu = dict.fromkeys(hosts, 0.0)
    mem = dict.fromkeys(hosts, 0.0)
    for v in inventory.vms:
        h = host_of.get(v.name, v.host)
        if h in cpu:
            c, m = vm_load(v, by)
            cpu[h] += c
            mem[h] += m
    out: dict[str, float] = {}
    for name in hosts:
        cap = host_capacity(inventory.host[name], inventory.policy)
        cpu_pct = 100.0 * cpu[name] / cap.vcpus if cap.vcpus > 0 else 0.0
        mem_pct = 100.0 * mem[name] / cap.memory_mib if cap.memory_mib > 0 else 0.0
        out[name] = {Metric.CPU: cpu_pct, Metric.MEMORY: mem_pct, Metric.BOTH: max(cpu_pct, mem_pct)}[metric]
    return out


def spread(loads: Mapping[str, float]) -> Spread:
    """max − min, max and population standard deviation of per-host utilisations."""
    if not loads:
        return Spread(0.0, 0.0, 0.0)
    values = list(loads.values())
    mean = sum(values) / len(values)
    return Spread(max(values) - min(values), max(values),
                  math.sqrt(sum((x - mean) ** 2 for x in values) / len(values)))


def moved_gib(vm: VM, migration: Migration) -> float:
    """GiB one hop puts on the wire at the least: the VM's memory and the disks it copies."""
    return vm_moved_gib(vm, copies_disks=bool(migration.copy_storage))


def vm_moved_gib(vm: VM, copies_disks: bool = True) -> float:
    """GiB moving `vm` puts on the wire at the least: its memory, and its local disks when they are copied."""
    return mib_to_gib(vm.memory_mib) + (vm.local_disk_alloc_gib if copies_disks else 0.0)
