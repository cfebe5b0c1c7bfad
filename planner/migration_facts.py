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

from planner.duration import DEFAULT_MODEL, DurationModel, Estimate, estimate, floor_estimate
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


def migration_facts(vm: VM, destination: str, inventory: Inventory, topology: Topology) -> MigrationFacts | None:
    """Facts of moving `vm` to `destination`; None when no network path joins the two hosts."""
    path = topology.path(vm.host, destination)
    if path is None:
        return None
    return MigrationFacts(
        vm=vm.name, source=vm.host, destination=destination, path=path,
        cap_mibs=topology.path_capacity_mibs(path, inventory.policy.migration_share),
        copy_storage=copy_storage_targets(vm), disk_mib=copied_disk_mib(vm),
        memory_mib=float(vm.memory_mib), live=vm.live)


# ---------------------------------------------------------------- eligibility


def drain_set(inventory: Inventory, drained: Iterable[str]) -> frozenset[str]:
    """Hosts to empty: those named plus every host in `maintenance` (plan v1, first paragraph)."""
    return frozenset(drained) | {h.name for h in inventory.hosts if h.state is HostState.MAINTENANCE}


def _fits_empty(vm: VM, host: Host, policy: Policy) -> bool:
    return (vm.vcpus <= host.cpus * policy.cpu_overcommit
            and vm.memory_mib <= host.usable_memory_mib * policy.memory_overcommit
            and vm.local_disk_alloc_gib <= host.local_disk_free_gib)


def can_receive(vm: VM, host: Host, inventory: Inventory, drained: Collection[str] = ()) -> bool:
    """`eligible(...) == []` without building messages: the hot loop of candidate pruning."""
    if vm.pinned or host.name == vm.host or host.state is not HostState.UP or host.name in drained:
        return False
    src = inventory.host.get(vm.host)
    if src is not None and src.arch is not None and host.arch is not None and src.arch != host.arch:
        return False
    if vm.cpu_model is not None and host.cpu_model is not None and vm.cpu_model != host.cpu_model:
        return False
    return (vm.cpu_features <= host.cpu_features and vm.networks <= host.networks
            and vm.shared_storage <= host.storage and _fits_empty(vm, host, inventory.policy))


def eligible(vm: VM, host: Host, inventory: Inventory, drained: Collection[str] = ()) -> list[str]:
    """Every reason `host` can never receive `vm` (empty list = it may, capacity permitting).

    Static facts only: state, drain, arch, CPU model and features, shared storage, networks, pinning,
    and a VM bigger than the whole (empty) host. Transient capacity and anti-affinity depend on
    the rest of the plan and are the checker's and the solver's business.
    """
    reasons: list[str] = []
    if vm.pinned:
        reasons.append(f"VM {vm.name} is pinned")
    if host.name == vm.host:
        reasons.append(f"host {host.name} is the VM's current host")
    if host.state is not HostState.UP:
        reasons.append(f"host {host.name} is {host.state.value}")
    elif host.name in drained:
        reasons.append(f"host {host.name} is being drained")
    src = inventory.host.get(vm.host)
    if src is not None and src.arch is not None and host.arch is not None and src.arch != host.arch:
        reasons.append(f"host {host.name} is {host.arch}, the VM runs on {src.arch}")
    if vm.cpu_model is not None and host.cpu_model is not None and vm.cpu_model != host.cpu_model:
        reasons.append(f"host {host.name} offers CPU model {host.cpu_model}, the VM needs {vm.cpu_model}")
    if missing := vm.cpu_features - host.cpu_features:
        reasons.append(f"host {host.name} lacks CPU features {', '.join(sorted(missing))}")
    if missing := vm.shared_storage - host.storage:
        reasons.append(f"host {host.name} does not mount storage {', '.join(sorted(missing))}")
    if missing := vm.networks - host.networks:
        reasons.append(f"host {host.name} does not offer network {', '.join(sorted(missing))}")
    p = inventory.policy
    if vm.vcpus > host.cpus * p.cpu_overcommit:
        reasons.append(f"VM needs {vm.vcpus} vCPUs, host {host.name} has {host.cpus * p.cpu_overcommit:g} in all")
    if vm.memory_mib > host.usable_memory_mib * p.memory_overcommit:
        reasons.append(f"VM needs {vm.memory_mib} MiB, host {host.name} has "
                       f"{host.usable_memory_mib * p.memory_overcommit:g} MiB in all")
    if vm.local_disk_alloc_gib > host.local_disk_free_gib:
        reasons.append(f"VM's local disks need {vm.local_disk_alloc_gib:g} GiB, host {host.name} has "
                       f"{host.local_disk_free_gib:g} GiB free")
    return reasons


RequirementKey = tuple[object, ...]


def requirement_key(vm: VM, inventory: Inventory) -> RequirementKey:
    """What a VM needs from a destination besides size: VMs with equal keys have the same compatible hosts."""
    src = inventory.host.get(vm.host)
    return (src.arch if src is not None else None, vm.cpu_model, vm.cpu_features, vm.shared_storage, vm.networks)


def compatible_hosts(inventory: Inventory, key: RequirementKey, drained: Collection[str] = ()) -> list[Host]:
    """Hosts that are up, not drained, and offer everything `key` asks for (size not considered)."""
    arch, cpu_model, features, storage, networks = key
    assert isinstance(features, frozenset) and isinstance(storage, frozenset) and isinstance(networks, frozenset)
    return [h for h in inventory.hosts
            if h.state is HostState.UP and h.name not in drained
            and not (arch is not None and h.arch is not None and arch != h.arch)
            and not (cpu_model is not None and h.cpu_model is not None and cpu_model != h.cpu_model)
            and features <= h.cpu_features and networks <= h.networks and storage <= h.storage]


def host_room(host: Host, policy: Policy) -> tuple[float, float, float]:
    """What an empty host offers: (vCPUs, memory MiB, copied-disk GiB) after overcommit and reserve."""
    return (host.cpus * policy.cpu_overcommit, host.usable_memory_mib * policy.memory_overcommit,
            host.local_disk_free_gib)


def candidate_hosts(inventory: Inventory, vms: Iterable[VM], drained: Collection[str] = (),
                    topology: Topology | None = None) -> Mapping[str, tuple[str, ...]]:
    """For each VM, the hosts that may receive it (static rules; reachable if `topology` is given).

    VMs with the same requirements share the work: the requirement key is checked against every
    host once, then each VM only filters that list by size and its own host.
    """
    drained_set = frozenset(drained)
    p = inventory.policy
    by_key: dict[RequirementKey, list[tuple[str, float, float, float]]] = {}
    check_reach = topology is not None and not topology.connected()
    out: dict[str, tuple[str, ...]] = {}
    for vm in vms:
        if vm.pinned:
            out[vm.name] = ()
            continue
        key = requirement_key(vm, inventory)
        rooms = by_key.get(key)
        if rooms is None:
            rooms = [(h.name, *host_room(h, p)) for h in compatible_hosts(inventory, key, drained_set)]
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
    src = inventory.host.get(vm.host)
    arch = src.arch if src is not None else None

    def names(s: frozenset[str]) -> str:
        return ", ".join(sorted(s))

    checks: list[tuple[str, str, Callable[[Host], bool]]] = [
        ("no other host is up and not being drained", "are down, in maintenance or being drained",
         lambda h: h.state is not HostState.UP or h.name in drained),
        (f"no host has arch {arch}", f"are not {arch}",
         lambda h: arch is not None and h.arch is not None and h.arch != arch),
        (f"no host offers CPU model {vm.cpu_model}", f"do not offer CPU model {vm.cpu_model}",
         lambda h: vm.cpu_model is not None and h.cpu_model is not None and h.cpu_model != vm.cpu_model),
        (f"no host offers CPU features {names(vm.cpu_features)}", f"lack CPU features {names(vm.cpu_features)}",
         lambda h: not vm.cpu_features <= h.cpu_features),
        (f"no host mounts storage {names(vm.shared_storage)}", f"do not mount storage {names(vm.shared_storage)}",
         lambda h: not vm.shared_storage <= h.storage),
        (f"no host offers network {names(vm.networks)}", f"do not offer network {names(vm.networks)}",
         lambda h: not vm.networks <= h.networks),
        (f"no host has {vm.vcpus} vCPUs to give", f"have fewer than {vm.vcpus} vCPUs in all",
         lambda h: vm.vcpus > h.cpus * p.cpu_overcommit),
        (f"no host has {vm.memory_mib} MiB of memory to give", f"have less than {vm.memory_mib} MiB in all",
         lambda h: vm.memory_mib > h.usable_memory_mib * p.memory_overcommit),
        (f"no host has {vm.local_disk_alloc_gib:g} GiB free for the VM's local disks",
         f"have less than {vm.local_disk_alloc_gib:g} GiB free for local disks",
         lambda h: vm.local_disk_alloc_gib > h.local_disk_free_gib),
    ]
    ranked: list[tuple[int, str]] = []
    for all_text, some_text, fails in checks:
        k = sum(1 for h in others if fails(h))
        if k:
            ranked.append((k, all_text if k == len(others) else f"{k} of {len(others)} hosts {some_text}"))
    ranked.sort(key=lambda kr: -kr[0])
    return [text for _, text in ranked] or ["no other host"]
