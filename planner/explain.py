"""Why a VM cannot be placed, in words an operator can act on, most decisive reason first.

Two kinds of reasons:
* static — no plan could ever move the VM: pinned, its host is down, or no host offers what it
  needs (network, CPU model/features, storage, arch, size). Each requirement is tested against
  every host that can receive VMs, so "no host offers network br-db" is said only when it is true
  of the whole fleet; when each requirement is met somewhere but never all on one host, the
  closest host and what it lacks are named;
* dynamic — the VM fits somewhere in principle but not in this drain: capacity short by N MiB
  (given what stays and what the other VMs of the drain took), an anti-affinity group larger than
  its candidate hosts, an affinity group no single host can take. Each plan-level rule of
  `planner.rules` gives its own reasons (`explain`); this module gathers and ranks them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping

from planner.candidates import resident_groups, resident_room
from planner.capacity import host_capacities
from planner.host_rules import HOST_RULES, Needs, needs_of
from planner.inventory_cache import per_inventory
from planner.migration_facts import can_receive, eligible
from planner.model import VM, HostState, Inventory
from planner.rules import plan_rules
from planner.rules.base import ExplainContext
from planner.topology import Topology


class StaticExplainer:
    """`static_reasons` for many VMs of one drain: what the receiving hosts offer is computed once."""

    def __init__(self, inventory: Inventory, drained: Collection[str], topology: Topology) -> None:
        self.inventory = inventory
        self.drained = frozenset(drained)
        self.topology = topology
        self.connected = topology.connected()
        self.receivers = [h for h in inventory.hosts if h.state is HostState.UP and h.name not in self.drained]
        self._nowhere: dict[Needs, list[str]] = {}
        # per resource, the most any receiver offers: the first host not drained in the hosts that are up,
        # largest first (sorted once per inventory object; the max over the receivers, without the scan)
        largest = per_inventory("largest-first", inventory, _largest_first)
        self.max_room = tuple(next((x for x, name in dim if name not in self.drained), 0.0) for dim in largest)

    def nowhere(self, needs: Needs) -> list[str]:
        """What no receiving host offers at all, per host rule (cached: many VMs share their needs)."""
        found = self._nowhere.get(needs)
        if found is None:
            found = [r for rule in HOST_RULES for r in rule.nowhere(needs, self.receivers)]
            self._nowhere[needs] = found
        return found

    def reasons(self, vm: VM) -> list[str]:
        """Reasons no valid plan can move `vm` at all (empty: it can move if room allows), ranked."""
        inventory, drained = self.inventory, self.drained
        reasons: list[tuple[int, str]] = []
        src = inventory.host.get(vm.host)
        if vm.pinned:
            reasons.append((100, f"VM is pinned and its host {vm.host} is being drained"))
        if src is not None and src.state is HostState.DOWN and vm.live:
            reasons.append((100, f"host {vm.host} is down: a {vm.state.value} VM cannot be live-migrated"))
        receivers = [h for h in self.receivers if h.name != vm.host] if vm.host not in drained else self.receivers
        if not receivers:
            reasons.append((95, "no host can receive VMs (every other host is drained, in maintenance or down)"))
            return [r for _, r in sorted(reasons, key=lambda x: -x[0])]
        reasons += [(90, r) for r in self.nowhere(needs_of(vm, inventory))]
        cpu, mem, disk = self.max_room
        if vm.memory_mib > mem:
            reasons.append((80, f"needs {vm.memory_mib} MiB, the largest host offers {mem:g} MiB"))
        if vm.vcpus > cpu:
            reasons.append((80, f"needs {vm.vcpus} vCPUs, the largest host offers {cpu:g}"))
        if vm.local_disk_alloc_gib > disk:
            reasons.append((80, f"its local disks need {vm.local_disk_alloc_gib:g} GiB, the most free on any host "
                                f"is {disk:g} GiB"))
        if not reasons:
            # any() stops at the first host that may receive it: cheap on big fleets
            if not any(can_receive(vm, h, inventory, drained) for h in receivers):
                per_host = [(eligible(vm, h, inventory, drained), h.name) for h in receivers]
                best, name = min(per_host, key=lambda x: (len(x[0]), x[1]))
                reasons.append((70, f"no host offers all it needs together; closest, {name}: " + "; ".join(best)))
            elif not self.connected and not any(
                    self.topology.reachable(vm.host, h.name) for h in receivers
                    if can_receive(vm, h, inventory, drained)):
                ok = [h for h in receivers if can_receive(vm, h, inventory, drained)]
                reasons.append((70, f"no network path from {vm.host} to any of the {len(ok)} compatible hosts"))
        return [r for _, r in sorted(reasons, key=lambda x: -x[0])]


def _largest_first(inventory: Inventory) -> tuple[tuple[tuple[float, str], ...], ...]:
    """Per resource (vCPUs, memory, copied disk), (capacity, host) of every host that is up, largest first."""
    caps = host_capacities(inventory)
    up = [h.name for h in inventory.hosts if h.state is HostState.UP]
    return tuple(tuple(sorted(((caps[n].as_tuple()[i], n) for n in up), reverse=True)) for i in range(3))


def static_reasons(inventory: Inventory, vm: VM, drained: Collection[str], topology: Topology) -> list[str]:
    """Reasons no valid plan can move `vm` at all (empty: it can move if room allows), ranked."""
    return StaticExplainer(inventory, drained, topology).reasons(vm)


def dynamic_reasons(inventory: Inventory, vm: VM, drained: Collection[str], topology: Topology,
                    destination: Mapping[str, str], candidates: Collection[str] | None = None) -> list[str]:
    """Why `vm` found no room, given where the other VMs of the drain went (`destination`)."""
    room = resident_room(inventory, drained)
    for name, h in destination.items():
        other = inventory.vm[name]
        r = room[h]
        room[h] = type(r)(r.vcpus - other.vcpus, r.memory_mib - other.memory_mib,
                          r.disk_mib - other.local_disk_alloc_mib)
    staying_groups = resident_groups(inventory, drained)
    groups_at: dict[str, set[str]] = defaultdict(set)
    for h, gs in staying_groups.items():
        groups_at[h].update(gs)
    for name, h in destination.items():
        groups_at[h].update(inventory.vm[name].anti_affinity)
    compatible = [h.name for h in inventory.hosts
                  if h.name in room and not eligible(vm, h, inventory, drained)
                  and topology.reachable(vm.host, h.name)]
    if candidates is not None and len(candidates) < len(compatible):
        searched = f" (searched {len(candidates)} of {len(compatible)} compatible hosts)"
    else:
        searched = ""
    reasons: list[tuple[float, str]] = []
    if not compatible:
        return static_reasons(inventory, vm, drained, topology) or ["no compatible host"]
    # Capacity, anti-affinity, affinity and every other plan-level rule say their own (planner.rules).
    ec = ExplainContext(inventory, vm, frozenset(drained), room, groups_at, compatible, searched)
    for rule in plan_rules():
        reasons += rule.explain(ec)
    if not reasons:
        fits = [h for h in compatible if vm.memory_mib <= room[h].memory_mib and vm.vcpus <= room[h].vcpus
                and vm.local_disk_alloc_mib <= room[h].disk_mib and not (vm.anti_affinity & groups_at[h])]
        reasons.append((10, f"no room left on its candidate hosts after the other moves ({len(fits)} compatible "
                            f"hosts would fit it alone){searched}"))
    return [r for _, r in sorted(reasons, key=lambda x: -x[0])]
