"""Candidate destinations per VM: every eligible host on small fleets, a pruned few on large ones.

A host may receive a VM now when `migration_facts.can_receive` says so (state, drain, arch, CPU
model and features, shared storage, networks, size of an empty host), the network reaches it, it
still has room for the VM after the VMs that stay on it (CPU × overcommit, (memory − reserved) ×
memory overcommit, local disk for copied disks), and no VM that stays on it shares an
anti-affinity group with the VM. Those filters are exact: a host they drop can never receive the
VM in any valid drain plan (hosts that are not drained only gain VMs during a drain).

Pruning (only when a VM has more than `keep_all_below` such hosts). Hosts with the same
requirement signature (arch, CPU model, features, storage, networks) are interchangeable for a
VM except for their switch and their free room, so per signature the hosts are sorted emptiest
first and each VM gets a window of `per_vm` of them (plus its largest anti-affinity group's size,
so a group can always spread), about a third from its own switch (no uplink crossed) and the rest
from the whole fleet. The windows ROTATE from VM to VM, so the VMs of a drain spread over many
hosts instead of all competing for the same few emptiest ones.

Why this keeps feasibility in practice, and when it might not: a drain fails for lack of room
when the total free room of the compatible hosts is short, which no pruning changes; with
rotation the union of the windows of the VMs of one signature covers min(all, VMs × per_vm)
hosts, the emptiest first, i.e. far more room than those VMs need on any fleet where they fit
with some slack. It can lose feasibility when the fleet is nearly full (the few hosts with room
are outside a VM's window) or with many affinity/anti-affinity constraints. Hence the fallback
in `planner.solve`: when the pruned model leaves a VM unplaced that has hosts outside its window,
the candidates are widened (`per_vm` × 4, then every host) and the model solved again. VMs in an
affinity group always keep every host (the group must find ONE common host).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from planner.capacity import host_capacity, total_demand
from planner.host_rules import Needs, needs_of
from planner.inventory_cache import per_inventory
from planner.migration_facts import can_receive, compatible_hosts
from planner.model import VM, Host, Inventory
from planner.topology import Topology
from planner.units import gib_to_mib

KEEP_ALL_BELOW = 48  # a VM with at most this many possible hosts keeps them all
PER_VM = 10  # hosts per VM when pruning


@dataclass(frozen=True, slots=True)
class Room:
    """What a host can still take after the VMs that stay on it: vCPUs, memory MiB, copied-disk MiB."""

    vcpus: float
    memory_mib: float
    disk_mib: float


def resident_room(inventory: Inventory, drained: Collection[str]) -> dict[str, Room]:
    """Free room per host that is not drained, after the VMs that stay on it (can be negative).

    In a drain every VM of a host that is not drained stays, so a host's room does not depend on
    the drain set: the rooms of all hosts are computed once per inventory object (`_every_room`)
    and each call leaves out the drained hosts (a fresh dict: callers may change it)."""
    return {h: r for h, r in per_inventory("resident-room", inventory, _every_room).items() if h not in drained}


def _every_room(inventory: Inventory) -> dict[str, Room]:
    out = {}
    for h in inventory.hosts:
        free = host_capacity(h, inventory.policy) - total_demand(inventory.vms_on.get(h.name, ()))
        out[h.name] = Room(free.vcpus, free.memory_mib, gib_to_mib(free.local_disk_gib))
    return out


def resident_groups(inventory: Inventory, drained: Collection[str]) -> dict[str, frozenset[str]]:
    """Anti-affinity groups of the VMs that stay on each host that is not drained (per inventory
    object the groups of every host, once; the drained hosts left out per call, as in `resident_room`)."""
    return {h: g for h, g in per_inventory("resident-groups", inventory, _every_group).items() if h not in drained}


def _every_group(inventory: Inventory) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for v in inventory.vms:
        if v.anti_affinity:
            out[v.host].update(v.anti_affinity)
    return {k: frozenset(g) for k, g in out.items()}


def group_sizes(vms: Iterable[VM]) -> dict[str, int]:
    sizes: dict[str, int] = defaultdict(int)
    for v in vms:
        for g in v.anti_affinity:
            sizes[g] += 1
    return dict(sizes)


@dataclass(frozen=True)
class Candidates:
    hosts: Mapping[str, tuple[str, ...]]  # VM -> the hosts the model may choose from
    complete: Mapping[str, bool]  # VM -> True when `hosts` is every host that may receive it
    per_vm: int  # the window size used (0 = nothing pruned)

    def pairs(self) -> int:
        return sum(len(h) for h in self.hosts.values())


class _Filter:
    """The exact per-(VM, host) test: eligible, reachable, room left, no staying anti-affinity peer."""

    def __init__(self, inventory: Inventory, drained: frozenset[str], topology: Topology) -> None:
        self.inventory = inventory
        self.drained = drained
        self.topology = topology
        self.room = resident_room(inventory, drained)
        self.groups = resident_groups(inventory, drained)
        self.check_reach = not topology.connected()

    def ok(self, vm: VM, host: Host) -> bool:
        r = self.room.get(host.name)
        if r is None or not can_receive(vm, host, self.inventory, self.drained):
            return False
        if vm.vcpus > r.vcpus + 1e-9 or vm.memory_mib > r.memory_mib + 1e-9 or vm.local_disk_alloc_mib > r.disk_mib:
            return False
        if vm.anti_affinity & self.groups.get(host.name, frozenset()):
            return False
        return not self.check_reach or self.topology.reachable(vm.host, host.name)


def _emptiest_first(inventory: Inventory, key: Needs) -> tuple[Host, ...]:
    """The hosts compatible with `key` (drain aside), emptiest first: the hosts most likely to take anything
    (memory is the usual binding resource). A host's room after its residents is the same in every drain
    and the order is total (name last), so one sort per inventory object and key serves every drain set,
    its drained hosts left out."""
    memo: dict[Needs, tuple[Host, ...]] = per_inventory("emptiest-first", inventory, lambda _inv: {})
    hosts = memo.get(key)
    if hosts is None:
        room = per_inventory("resident-room", inventory, _every_room)
        hosts = memo[key] = tuple(sorted(compatible_hosts(inventory, key),
                                         key=lambda h: (-room[h.name].memory_mib, -room[h.name].vcpus, h.name)))
    return hosts


def find_candidates(inventory: Inventory, movers: Iterable[VM], drained: Collection[str], topology: Topology, *,
                    per_vm: int = PER_VM, keep_all_below: int = KEEP_ALL_BELOW) -> Candidates:
    """Candidate hosts for each VM of `movers` (see the module docstring for the pruning rule).

    `per_vm <= 0` keeps every host for every VM (the widest fallback).
    """
    drained_set = frozenset(drained)
    movers = list(movers)
    filt = _Filter(inventory, drained_set, topology)
    sizes = group_sizes(movers)
    by_key: dict[Needs, list[Host]] = {}
    same_switch: dict[tuple[Needs, str], list[Host]] = {}
    cursor: dict[tuple[Needs, str], int] = defaultdict(int)
    out: dict[str, tuple[str, ...]] = {}
    complete: dict[str, bool] = {}
    for vm in movers:
        key = needs_of(vm, inventory)
        hosts = by_key.get(key)
        if hosts is None:
            hosts = [h for h in _emptiest_first(inventory, key) if h.name not in drained_set]
            by_key[key] = hosts
        if per_vm <= 0 or len(hosts) <= keep_all_below or vm.affinity:
            out[vm.name] = tuple(h.name for h in hosts if filt.ok(vm, h))
            complete[vm.name] = True
            continue
        need = per_vm + max((sizes.get(g, 1) for g in vm.anti_affinity), default=0)
        src_switch = topology.switch_of.get(vm.host, "")
        local_key = (key, src_switch)
        local = same_switch.get(local_key)
        if local is None:
            local = [h for h in hosts if topology.switch_of.get(h.name) == src_switch]
            same_switch[local_key] = local
        chosen: list[str] = []
        seen: set[str] = set()
        for pool, quota, ck in ((local, math.ceil(need / 3), local_key), (hosts, need, (key, ""))):
            start = cursor[ck]
            n = len(pool)
            taken = scanned = 0
            while len(chosen) < need and taken < quota and scanned < n:
                h = pool[(start + scanned) % n]
                scanned += 1
                if h.name not in seen and filt.ok(vm, h):
                    seen.add(h.name)
                    chosen.append(h.name)
                    taken += 1
            cursor[ck] = (start + scanned) % max(n, 1)
        out[vm.name] = tuple(chosen)
        # Complete only if the scan saw every host of the signature (then nothing was left out).
        complete[vm.name] = len(chosen) < need
    return Candidates(out, complete, max(per_vm, 0))
