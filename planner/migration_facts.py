"""What one migration is, derived in ONE place: VM + destination → disks to copy, path, cap, duration.

The solver (candidate pruning, durations), the checker, the lower bound, the baselines and the
infeasibility explanations all ask this module, so they cannot disagree about, say, whether a disk
is copied. Rules (inventory v1):

* a disk with `storage=None` is host-local: it is copied (copy-storage) and needs `allocation_gib`
  of the destination's `local_disk_free_gib`; a disk on shared storage is never copied and needs a
  destination that mounts that storage;
* a `shutoff` VM migrates offline (definition + copied disks), every other VM live;
* one migration may use at most the smallest capped capacity along its path
  (`Topology.path_capacity_mibs(path, policy.migration_share)`);
* the duration is `duration.estimate(...)` with `auto_converge = policy.auto_converge`.

`eligible` runs for millions of (VM, host) pairs on a big fleet: it is a handful of comparisons and
frozenset differences, and `can_receive` is the allocation-free version for the hot loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

from planner.capacity import host_capacities, host_capacity, vm_demand
from planner.duration import DEFAULT_MODEL, DurationModel, Estimate, estimate, floor_estimate
from planner.host_rules import HOST_RULES, Needs, needs_of, suits, unsuited_reasons
from planner.inventory_cache import per_inventory
from planner.model import VM, Host, HostState, Inventory, Policy
from planner.topology import Topology


def copy_storage_targets(vm: VM) -> tuple[str, ...]:
    """Targets of the disks a migration must copy: exactly the host-local ones, in disk order."""
    return tuple(d.target for d in vm.disks if d.storage is None)


def copied_disk_mib(vm: VM) -> float:
    """MiB put on the wire for copied disks: their allocation, not their capacity."""
    return vm.local_disk_alloc_mib


def vm_estimate(vm: VM, bandwidth_mibs: float, policy: Policy, model: DurationModel = DEFAULT_MODEL) -> Estimate:
    """The duration model's prediction for moving `vm` at a fixed `bandwidth_mibs`."""
    return estimate(vm.memory_mib, vm.dirty_rate_mibs, bandwidth_mibs, policy.max_downtime_ms,
                    disk_mib=copied_disk_mib(vm), live=vm.live, auto_converge=policy.auto_converge, model=model)


def vm_floor_estimate(vm: VM, bandwidth_mibs: float, policy: Policy,
                      model: DurationModel = DEFAULT_MODEL) -> Estimate:
    """The fewest MiB / shortest time any bandwidth ≤ `bandwidth_mibs` gives (`duration.floor_estimate`)."""
    return floor_estimate(vm.memory_mib, vm.dirty_rate_mibs, bandwidth_mibs, policy.max_downtime_ms,
                          disk_mib=copied_disk_mib(vm), live=vm.live, auto_converge=policy.auto_converge,
                          model=model)


@dataclass(frozen=True, slots=True)
class MigrationFacts:
    """Everything fixed about moving `vm` to `destination`, before a bandwidth is chosen."""

    vm: str
    source: str
    destination: str
    path: tuple[str, ...]
    cap_mibs: float  # smallest capped capacity along the path: the most this migration may use
    copy_storage: tuple[str, ...]
    disk_mib: float
    memory_mib: float
    live: bool

    def estimate(self, vm: VM, bandwidth_mibs: float, policy: Policy,
                 model: DurationModel = DEFAULT_MODEL) -> Estimate:
        return vm_estimate(vm, bandwidth_mibs, policy, model)


def migration_facts(vm: VM, destination: str, inventory: Inventory, topology: Topology,
                    source: str | None = None) -> MigrationFacts | None:
    """Facts of moving `vm` from `source` (default: its host in the inventory; a later hop starts where
    the previous one ended) to `destination`; None when no network path joins the two hosts."""
    src = vm.host if source is None else source
    path = topology.path(src, destination)
    if path is None:
        return None
    return MigrationFacts(
        vm=vm.name, source=src, destination=destination, path=path,
        cap_mibs=topology.path_capacity_mibs(path, inventory.policy.migration_share),
        copy_storage=copy_storage_targets(vm), disk_mib=copied_disk_mib(vm),
        memory_mib=float(vm.memory_mib), live=vm.live)


# ---------------------------------------------------------------- eligibility


def drain_set(inventory: Inventory, drained: Iterable[str]) -> frozenset[str]:
    """Hosts to empty: those named plus every host in `maintenance` (plan v1, first paragraph)."""
    maintenance = per_inventory("maintenance-hosts", inventory, lambda inv: frozenset(
        h.name for h in inv.hosts if h.state is HostState.MAINTENANCE))
    return frozenset(drained) | maintenance


def vms_on_hosts(inventory: Inventory, hosts: Collection[str]) -> list[VM]:
    """The VMs now on `hosts`, in inventory order: `[v for v in inventory.vms if v.host in hosts]` from the
    per-host lists, so a drain of a few hosts of a 30,000-VM fleet does not scan every VM."""
    order = per_inventory("vm-order", inventory, lambda inv: {id(v): i for i, v in enumerate(inv.vms)})
    return sorted((v for h in set(hosts) for v in inventory.vms_on.get(h, ())), key=lambda v: order[id(v)])


def affinity_vms(inventory: Inventory) -> tuple[VM, ...]:
    """The VMs in some affinity group, in inventory order (once per inventory object)."""
    return per_inventory("affinity-vms", inventory, lambda inv: tuple(v for v in inv.vms if v.affinity))


def anti_affinity_vms(inventory: Inventory) -> tuple[VM, ...]:
    """The VMs in some anti-affinity group, in inventory order (once per inventory object)."""
    return per_inventory("anti-affinity-vms", inventory, lambda inv: tuple(v for v in inv.vms if v.anti_affinity))


def _fits_empty(vm: VM, host: Host, policy: Policy) -> bool:
    return vm_demand(vm).fits_in(host_capacity(host, policy))


def can_receive(vm: VM, host: Host, inventory: Inventory, drained: Collection[str] = ()) -> bool:
    """`eligible(...) == []` without building messages: the hot loop of candidate pruning."""
    if vm.pinned or host.name == vm.host or host.state is not HostState.UP or host.name in drained:
        return False
    return suits(needs_of(vm, inventory), host) and _fits_empty(vm, host, inventory.policy)


def size_reasons(vm: VM, host: Host, policy: Policy) -> list[str]:
    """Why `vm` is bigger than the whole (empty) `host` after overcommit and reserve."""
    cap = host_capacity(host, policy)
    reasons = []
    if vm.vcpus > cap.vcpus:
        reasons.append(f"VM needs {vm.vcpus} vCPUs, host {host.name} has {cap.vcpus:g} in all")
    if vm.memory_mib > cap.memory_mib:
        reasons.append(f"VM needs {vm.memory_mib} MiB, host {host.name} has {cap.memory_mib:g} MiB in all")
    if vm.local_disk_alloc_gib > cap.local_disk_gib:
        reasons.append(f"VM's local disks need {vm.local_disk_alloc_gib:g} GiB, host {host.name} has "
                       f"{cap.local_disk_gib:g} GiB free")
    return reasons


def eligible(vm: VM, host: Host, inventory: Inventory, drained: Collection[str] = (),
             source: str | None = None) -> list[str]:
    """Every reason `host` can never receive `vm` (empty list = it may, capacity permitting).

    Static facts only: state, drain, the host rules (`planner.host_rules`: arch, CPU model and
    features, shared storage, networks, host labels), pinning, and a VM bigger than the whole (empty)
    host. Transient capacity and anti-affinity depend on the rest of the plan and are the checker's
    and the solver's business. `source`: where the VM is when it leaves (default: its inventory host).
    """
    reasons: list[str] = []
    if vm.pinned:
        reasons.append(f"VM {vm.name} is pinned")
    if host.name == (vm.host if source is None else source):
        reasons.append(f"host {host.name} is the VM's current host")
    if host.state is not HostState.UP:
        reasons.append(f"host {host.name} is {host.state.value}")
    elif host.name in drained:
        reasons.append(f"host {host.name} is being drained")
    reasons += unsuited_reasons(needs_of(vm, inventory), host)
    reasons += size_reasons(vm, host, inventory.policy)
    return reasons


def compatible_hosts(inventory: Inventory, needs: Needs, drained: Collection[str] = ()) -> list[Host]:
    """Hosts that are up, not drained, and offer everything `needs` asks for (size not considered), in
    inventory order. The hosts that are up and suit `needs` do not depend on the drain: they are
    remembered per inventory object (a what-if sweep asks them for every scenario) and only the
    drained ones are left out per call."""
    memo: dict[Needs, tuple[Host, ...]] = per_inventory("compatible-hosts", inventory, lambda _inv: {})
    suited = memo.get(needs)
    if suited is None:
        suited = memo[needs] = tuple(h for h in inventory.hosts if h.state is HostState.UP and suits(needs, h))
    return [h for h in suited if h.name not in drained]


def candidate_hosts(inventory: Inventory, vms: Iterable[VM], drained: Collection[str] = (),
                    topology: Topology | None = None) -> Mapping[str, tuple[str, ...]]:
    """For each VM, the hosts that may receive it (static rules; reachable if `topology` is given).

    VMs with the same requirements share the work: the requirement key is checked against every
    host once, then each VM only filters that list by size and its own host.
    """
    drained_set = frozenset(drained)
    caps = host_capacities(inventory)
    by_key: dict[Needs, list[tuple[str, float, float, float]]] = {}
    check_reach = topology is not None and not topology.connected()
    out: dict[str, tuple[str, ...]] = {}
    for vm in vms:
        if vm.pinned:
            out[vm.name] = ()
            continue
        key = needs_of(vm, inventory)
        rooms = by_key.get(key)
        if rooms is None:
            rooms = [(h.name, *caps[h.name].as_tuple()) for h in compatible_hosts(inventory, key, drained_set)]
            by_key[key] = rooms
        cpu, mem, disk, own = vm.vcpus, vm.memory_mib, vm.local_disk_alloc_gib, vm.host
        names = [n for n, c, m, d in rooms if cpu <= c and mem <= m and disk <= d and n != own]
        if check_reach:
            assert topology is not None
            names = [n for n in names if topology.reachable(own, n)]
        out[vm.name] = tuple(names)
    return out


def why_no_destination(vm: VM, inventory: Inventory, drained: Collection[str] = ()) -> list[str]:
    """Why no host at all can receive `vm`, ranked (the rule that excludes most hosts first).

    Empty when some host can. Words for plan v1's `unplaced[].reasons`: "no host offers network
    br-db" when a rule excludes every host, "7 of 9 hosts lack CPU features avx512f" otherwise.
    """
    if vm.pinned:
        return [f"VM {vm.name} is pinned"]
    others = [h for h in inventory.hosts if h.name != vm.host]
    if any(can_receive(vm, h, inventory, drained) for h in others):
        return []
    p = inventory.policy
    needs = needs_of(vm, inventory)
    checks: list[tuple[str, str, Callable[[Host], bool]]] = [
        ("no other host is up and not being drained", "are down, in maintenance or being drained",
         lambda h: h.state is not HostState.UP or h.name in drained)]
    for rule in HOST_RULES:
        every = "; ".join(rule.nowhere(needs, others)) or f"all {len(others)} hosts {rule.some(needs)}"
        checks.append((every, rule.some(needs), partial(rule.fails, needs)))
    checks += [
        (f"no host has {vm.vcpus} vCPUs to give", f"have fewer than {vm.vcpus} vCPUs in all",
         lambda h: vm.vcpus > host_capacity(h, p).vcpus),
        (f"no host has {vm.memory_mib} MiB of memory to give", f"have less than {vm.memory_mib} MiB in all",
         lambda h: vm.memory_mib > host_capacity(h, p).memory_mib),
        (f"no host has {vm.local_disk_alloc_gib:g} GiB free for the VM's local disks",
         f"have less than {vm.local_disk_alloc_gib:g} GiB free for local disks",
         lambda h: vm.local_disk_alloc_gib > host_capacity(h, p).local_disk_gib),
    ]
    ranked: list[tuple[int, str]] = []
    for all_text, some_text, fails in checks:
        k = sum(1 for h in others if fails(h))
        if k:
            ranked.append((k, all_text if k == len(others) else f"{k} of {len(others)} hosts {some_text}"))
    ranked.sort(key=lambda kr: -kr[0])
    return [text for _, text in ranked] or ["no other host"]
