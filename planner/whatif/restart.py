"""Host failures: can the running VMs of failed hosts RESTART elsewhere? (N+1, vSphere HA admission control.)

A failed host's VMs are not migrated: they are restarted on other hosts, so there is no bandwidth
schedule, only a placement under the same rules as any plan: capacity (planner.capacity, via the
candidates), anti-affinity with what already runs there, and the host rules (planner.host_rules).
A VM is stranded when it is pinned (it may run nowhere else), when it had local disks (they died
with the host), or when the placement finds no room for it (the explainer says why).

The placement is the planner's own (planner.placement): its greedy first-fit by default (the same
answer every run), CP-SAT within a time limit when asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass

from planner.candidates import find_candidates
from planner.explain import StaticExplainer, dynamic_reasons
from planner.inventory_cache import per_inventory
from planner.model import VM, HostState, Inventory
from planner.placement import place
from planner.topology import Topology


@dataclass(frozen=True)
class Restart:
    """Where the running VMs of the failed hosts restart, and which cannot (with reasons, ranked)."""

    failed: tuple[str, ...]
    destination: dict[str, str]  # VM -> host it restarts on
    stranded: dict[str, tuple[str, ...]]  # VM -> reasons
    inventory_after: Inventory  # failed hosts down; restarted VMs on their new hosts

    @property
    def needed(self) -> int:
        return len(self.destination) + len(self.stranded)


def _fixed_reasons(vm: VM) -> list[str]:
    out = []
    if vm.pinned:
        out.append(f"VM is pinned to failed host {vm.host}: it may run nowhere else")
    if vm.local_disks:
        names = ", ".join(d.target for d in vm.local_disks)
        out.append(f"its local disks ({names}) were on failed host {vm.host}")
    return out


def restart_placement(inventory: Inventory, failed: Collection[str], *, time_limit_s: float = 0.0,
                      workers: int = 1) -> Restart:
    """Restart placement of the running VMs of `failed` (see the module docstring).

    `time_limit_s` 0 keeps the greedy placement (deterministic); more lets CP-SAT place more VMs.
    """
    failed_set = frozenset(failed)
    topology = per_inventory("topology", inventory, Topology)
    need = [v for v in inventory.vms if v.host in failed_set and v.live]
    stranded: dict[str, list[str]] = {}
    movable = []
    explainer = StaticExplainer(inventory, failed_set, topology)
    for v in need:
        reasons = _fixed_reasons(v) or [r for r in explainer.reasons(v) if "pinned" not in r]
        if reasons:
            stranded[v.name] = reasons
        else:
            movable.append(v)
    cands = find_candidates(inventory, movable, failed_set, topology)
    result = place(inventory, movable, cands, failed_set, topology, time_limit_s=time_limit_s, workers=workers)
    if any(not cands.complete[v] for v in result.unplaced):  # pruning cost a VM its place: every host
        cands = find_candidates(inventory, movable, failed_set, topology, per_vm=0)
        wider = place(inventory, movable, cands, failed_set, topology, time_limit_s=time_limit_s, workers=workers)
        if len(wider.unplaced) < len(result.unplaced):
            result = wider
    for name in result.unplaced:
        stranded[name] = dynamic_reasons(inventory, inventory.vm[name], failed_set, topology, result.destination,
                                         cands.hosts.get(name))
    dest = dict(result.destination)
    hosts = tuple(dataclasses.replace(h, state=HostState.DOWN) if h.name in failed_set else h
                  for h in inventory.hosts)
    vms = tuple(dataclasses.replace(v, host=dest[v.name]) if v.name in dest else v for v in inventory.vms)
    after = dataclasses.replace(inventory, hosts=hosts, vms=vms)
    ordered = tuple(h.name for h in inventory.hosts if h.name in failed_set)
    return Restart(ordered, dest, {k: tuple(r) for k, r in stranded.items()}, after)
