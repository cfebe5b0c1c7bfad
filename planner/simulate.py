"""Pure simulation of a plan: where every VM is, and what every host holds, at every instant.

STYLE §5 (BtrPlace `MigrateVM.applyAction`): a `Placement` is a value and `apply` returns a new
one. `simulate` walks the plan's events in time order and records each host's usage after every
change. While a VM migrates it counts on BOTH hosts (plan v1: "a VM counts on both source and
destination while it migrates"): it is added to the destination at `start_s` and removed from the
source at `end_s`. At one instant, ends are applied before starts (a migration is active on
[start_s, end_s)).

Copied disks take `local_disk_free_gib` on the destination and are never given back on the source:
libvirt leaves the source image in place after a copy-storage migration, so counting the room as
freed would be optimistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from planner.inventory_cache import per_inventory
from planner.migration_facts import copy_storage_targets
from planner.model import VM, Inventory
from planner.plan import Migration, Plan


@dataclass(frozen=True, slots=True)
class Usage:
    """What a host holds: vCPUs and memory of its VMs, GiB of disks copied onto it."""

    vcpus: int = 0
    memory_mib: float = 0.0
    copied_disk_gib: float = 0.0

    def plus(self, other: Usage) -> Usage:
        return Usage(self.vcpus + other.vcpus, self.memory_mib + other.memory_mib,
                     self.copied_disk_gib + other.copied_disk_gib)

    def minus_vm(self, other: Usage) -> Usage:
        """Removes a VM's CPU and memory; copied disk room stays taken (see module docstring)."""
        return Usage(self.vcpus - other.vcpus, self.memory_mib - other.memory_mib, self.copied_disk_gib)


def vm_demand(vm: VM, copies_disks: bool) -> Usage:
    return Usage(vm.vcpus, float(vm.memory_mib), vm.local_disk_alloc_gib if copies_disks else 0.0)


@dataclass(frozen=True)
class Placement:
    """Which host every VM is on, and each host's usage. Never mutated: `apply` makes a new one."""

    host_of: Mapping[str, str]
    usage: Mapping[str, Usage]
    demand: Mapping[str, Usage] = field(repr=False)  # per VM, CPU and memory (shared, read-only)

    @classmethod
    def initial(cls, inventory: Inventory) -> Placement:
        usage: dict[str, Usage] = {h.name: Usage() for h in inventory.hosts}
        demand = {v.name: vm_demand(v, False) for v in inventory.vms}
        for v in inventory.vms:
            usage[v.host] = usage.get(v.host, Usage()).plus(demand[v.name])
        return cls({v.name: v.host for v in inventory.vms}, usage, demand)


def _disk_usage(inventory: Inventory | None, migration: Migration) -> float:
    if not migration.copy_storage or inventory is None:
        return 0.0
    vm = inventory.vm.get(migration.vm)
    return vm.local_disk_alloc_gib if vm is not None else 0.0


def apply(placement: Placement, migration: Migration, inventory: Inventory | None = None) -> Placement:
    """The placement after `migration` completed. Give `inventory` to account copied disk room."""
    d = placement.demand[migration.vm]
    src = placement.host_of[migration.vm]
    usage = dict(placement.usage)
    usage[src] = usage.get(src, Usage()).minus_vm(d)
    disk = _disk_usage(inventory, migration)
    usage[migration.destination] = usage.get(migration.destination, Usage()).plus(
        Usage(d.vcpus, d.memory_mib, disk))
    host_of = dict(placement.host_of)
    host_of[migration.vm] = migration.destination
    return Placement(host_of, usage, placement.demand)


@dataclass(frozen=True, slots=True)
class UsagePoint:
    """Host `host` holds `usage` from `time_s` until its next point."""

    time_s: float
    host: str
    usage: Usage


@dataclass(frozen=True)
class Timeline:
    initial: Placement
    points: tuple[UsagePoint, ...]  # in time order; only hosts that change appear
    final: Placement

    def usage_at(self, host: str, time_s: float) -> Usage:
        """Usage of `host` at `time_s` (after every event at or before that instant)."""
        current = self.initial.usage.get(host, Usage())
        for p in self.points:
            if p.time_s > time_s:
                break
            if p.host == host:
                current = p.usage
        return current


def simulate(inventory: Inventory, plan: Plan) -> Timeline:
    """Per-host usage over time and the final placement of `plan` applied to `inventory`.

    Migrations of VMs the inventory does not know are skipped (the checker reports them).
    """
    # A value (never mutated) of the inventory alone: computed once per inventory object, so a sweep
    # of thousands of small drains of one 30,000-VM fleet does not rebuild it for every plan checked.
    initial = per_inventory("initial-placement", inventory, Placement.initial)
    usage = dict(initial.usage)
    host_of = dict(initial.host_of)
    known = [m for m in plan.migrations if m.vm in initial.demand]
    # (time, 0 = end / 1 = start, index): ends first at one instant, then the plan's order
    events = sorted([(m.end_s, 0, i) for i, m in enumerate(known)] + [(m.start_s, 1, i) for i, m in enumerate(known)])
    points: list[UsagePoint] = []
    for t, kind, i in events:
        m = known[i]
        d = initial.demand[m.vm]
        if kind == 1:
            vm = inventory.vm[m.vm]
            disk = vm.local_disk_alloc_gib if copy_storage_targets(vm) and m.copy_storage else 0.0
            host = m.destination
            usage[host] = usage.get(host, Usage()).plus(Usage(d.vcpus, d.memory_mib, disk))
        else:
            host = host_of[m.vm]
            usage[host] = usage.get(host, Usage()).minus_vm(d)
            host_of[m.vm] = m.destination
        points.append(UsagePoint(t, host, usage[host]))
    return Timeline(initial, tuple(points), Placement(host_of, usage, initial.demand))
