"""How much a host can hold and how much a VM takes: the ONE capacity formula of inventory v1.

A host holds at most `cpus × cpu_overcommit` vCPUs, `(memory_mib − reserved_memory_mib) ×
memory_overcommit` MiB of VM memory, and `local_disk_free_gib` of disks copied to it (docs/inventory.md,
"Policy"). Candidates, placement, schedule, monitor, checker, explainer, lower bound, baselines, the
frames and the validator all ask `host_capacity`, so no two of them can read the policy differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from planner.inventory_cache import per_inventory
from planner.model import VM, Host, Inventory, Policy


@dataclass(frozen=True, slots=True)
class Capacity:
    """vCPUs, memory MiB and copied-disk GiB: what a host offers, or what VMs take."""

    vcpus: float = 0.0
    memory_mib: float = 0.0
    local_disk_gib: float = 0.0

    def __add__(self, other: Capacity) -> Capacity:
        return Capacity(self.vcpus + other.vcpus, self.memory_mib + other.memory_mib,
                        self.local_disk_gib + other.local_disk_gib)

    def __sub__(self, other: Capacity) -> Capacity:
        return Capacity(self.vcpus - other.vcpus, self.memory_mib - other.memory_mib,
                        self.local_disk_gib - other.local_disk_gib)

    def fits_in(self, room: Capacity) -> bool:
        """Every resource of `self` is within `room`."""
        return (self.vcpus <= room.vcpus and self.memory_mib <= room.memory_mib
                and self.local_disk_gib <= room.local_disk_gib)

    def at_least(self, other: Capacity) -> Capacity:
        """Per resource, the larger of the two: a limit never below what is already there."""
        return Capacity(max(self.vcpus, other.vcpus), max(self.memory_mib, other.memory_mib),
                        max(self.local_disk_gib, other.local_disk_gib))

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.vcpus, self.memory_mib, self.local_disk_gib)


def host_capacity(host: Host, policy: Policy) -> Capacity:
    """What an empty `host` offers after overcommit and reserve."""
    return Capacity(host.cpus * policy.cpu_overcommit, host.usable_memory_mib * policy.memory_overcommit,
                    host.local_disk_free_gib)


def host_capacities(inventory: Inventory) -> dict[str, Capacity]:
    """`host_capacity` of every host of `inventory`, by name: computed once per inventory object (a what-if
    sweep asks it of every host for every scenario); the dict is shared, callers must not change it."""
    return per_inventory("host-capacities", inventory,
                         lambda inv: {h.name: host_capacity(h, inv.policy) for h in inv.hosts})


def vm_demand(vm: VM) -> Capacity:
    """What `vm` takes on a host it is moved to: its vCPUs, memory and the local disks copied with it."""
    return Capacity(vm.vcpus, vm.memory_mib, vm.local_disk_alloc_gib)


def total_demand(vms: Iterable[VM]) -> Capacity:
    """vCPUs and memory of `vms` (their resident footprint; copied-disk room is counted on arrival only)."""
    vcpus = memory = 0.0
    for v in vms:
        vcpus += v.vcpus
        memory += v.memory_mib
    return Capacity(vcpus, memory, 0.0)


def host_limits(inventory: Inventory) -> dict[str, Capacity]:
    """The checker's limit per host over a plan: its capacity, or what it already holds when that is more
    (a host already overloaded is not the plan's fault, but the plan may never make it worse). Depends on the
    inventory alone: computed once per inventory object (a what-if sweep checks a plan per scenario)."""
    return dict(per_inventory("host-limits", inventory, _host_limits))


def host_limit_tuples(inventory: Inventory) -> dict[str, tuple[float, float, float]]:
    """`host_limits` as (vCPUs, memory MiB, copied-disk GiB) tuples, once per inventory object (shared: read only)."""
    return per_inventory("host-limit-tuples", inventory,
                         lambda inv: {h: c.as_tuple() for h, c in _host_limits(inv).items()})


def _host_limits(inventory: Inventory) -> dict[str, Capacity]:
    p = inventory.policy
    return {h.name: host_capacity(h, p).at_least(total_demand(inventory.vms_on.get(h.name, ())))
            for h in inventory.hosts}
