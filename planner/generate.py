"""Synthetic but realistic fleets, deterministic per seed: benchmarks, notebooks, the sample data/.

What is realistic here comes from public data (shared/reference/NOTES.md §7):
* VM sizes follow the Azure V1 trace mix (1 vCPU/1.75 GB 42.7 %, 2/3.5 27.8 %, 4/7 11.3 %, 8/14 11.2 %,
  8/56 4.6 %, 1/0.75 2.3 %).
* Dirty rates follow BtrPlace's measured profiles: most VMs idle (~0 MiB/s cold rate), some stressed
  (~3 MiB/s), a few hot (tens of MiB/s, the ones that make pre-copy struggle).
* Racks: one ToR switch per rack (`tor-r1`...) with an uplink to one spine; hosts have 10 or 25 GbE NICs.
* Two shared storages mounted by every host; some VMs have a local disk (copied with copy-storage).
* Anti-affinity groups of 2-4 replicas, each group at most on as many hosts as the fleet has minus 5 %.
* Host memory is sized so that VMs use ~`memory_used` of it (default 65 %), but never so small that a host
  at average load has no room left for the biggest VM: then draining 5 % of the hosts fits. With few VMs per
  host (e.g. 6, where one 56 GiB VM is a big share) that second rule wins and hosts are emptier (~40 %).
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import replace

from planner.model import VM, Disk, Host, HostState, Inventory, Link, Policy

# (vcpus, memory MiB, share of VMs): Azure V1 trace; 1.75 GB is taken as 1792 MiB, and so on.
AZURE_SIZE_MIX: tuple[tuple[int, int, float], ...] = (
    (1, 1792, 0.427), (2, 3584, 0.278), (4, 7168, 0.113), (8, 14336, 0.112), (8, 57344, 0.046), (1, 768, 0.023))

# (profile, share of VMs, dirty rate range MiB/s): BtrPlace's idle and stressed profiles, plus a few hot VMs.
DIRTY_PROFILES: tuple[tuple[str, float, tuple[float, float]], ...] = (
    ("idle", 0.70, (0.0, 1.0)), ("stressed", 0.25, (2.0, 5.0)), ("hot", 0.05, (20.0, 80.0)))

ROLES = ("web", "app", "api", "db", "cache", "queue", "batch", "worker", "mon", "ci")
SHARED_STORAGES = ("nfs-1", "ceph-1")
NETWORKS = ("br-prod", "br-mgmt")
CPU_MODEL = "Icelake-Server"
CPU_FEATURES = frozenset({"avx512f", "pku", "vmx"})
RESERVED_MEMORY_MIB = 8192


def _weighted(rng: random.Random, weights: Sequence[float]) -> int:
    return rng.choices(range(len(weights)), weights=weights)[0]


def generate_fleet(hosts: int, vms: int, racks: int, seed: int = 0, *, uplink_gbps: float = 100.0,
                   nic_gbps_choices: Sequence[float] = (25.0, 10.0), memory_used: float = 0.65,
                   local_disk_share: float = 0.2, anti_affinity_share: float = 0.1,
                   maintenance: Sequence[str] = (), policy: Policy | None = None,
                   size_mix: Sequence[tuple[int, int, float]] = AZURE_SIZE_MIX) -> Inventory:
    """A fleet of `hosts` hosts in `racks` racks (one ToR each, uplinked to a spine) running `vms` VMs.

    `nic_gbps_choices` is cycled per rack (rack 1 at 25 GbE, rack 2 at 10 GbE, ...). `memory_used` is the
    fraction of usable host memory the VMs take (hosts are sized for it, in 8 GiB steps). Hosts named in
    `maintenance` get that state. `size_mix` is (vcpus, memory MiB, share) per VM size, the Azure mix by
    default. The result is valid inventory v1 (the loader accepts its `to_dict()`).
    """
    if hosts < 1 or vms < 0 or racks < 1 or racks > hosts:
        raise ValueError("need hosts >= 1, vms >= 0 and 1 <= racks <= hosts")
    if not 0 < memory_used <= 1:
        raise ValueError("memory_used must be in (0, 1]")
    rng = random.Random(seed)
    # Floats where the loader makes floats, so a generated fleet has the digest of its own JSON file.
    policy = policy or Policy(max_downtime_ms=500.0, progress_timeout_s=150.0, completion_timeout_per_gib_s=150.0)

    # VM sizes first: hosts are then sized for the memory those VMs need.
    size_weights = [w for _, _, w in size_mix]
    sizes = [size_mix[_weighted(rng, size_weights)][:2] for _ in range(vms)]
    total_memory_mib = sum(m for _, m in sizes)
    total_vcpus = sum(c for c, _ in sizes)
    biggest_mib = max((m for _, m in sizes), default=0)
    step_mib = 8 * 1024
    # A host at average load must still have room for the biggest VM, or draining any host that runs one
    # is infeasible; with few VMs per host this wins over `memory_used` (the fleet is then emptier).
    average_load_mib = total_memory_mib / hosts
    usable_needed = max(average_load_mib / memory_used, average_load_mib + 1.1 * biggest_mib, step_mib)
    host_memory_mib = int(math.ceil((usable_needed + RESERVED_MEMORY_MIB) / step_mib) * step_mib)
    cpus = 32
    while total_vcpus / hosts > cpus * policy.cpu_overcommit * 0.6:
        cpus *= 2

    width = max(2, len(str(math.ceil(hosts / racks))))
    host_list: list[Host] = []
    per_rack = [hosts // racks + (1 if r < hosts % racks else 0) for r in range(racks)]
    maintenance_set = set(maintenance)
    for r, count in enumerate(per_rack, start=1):
        nic = float(nic_gbps_choices[(r - 1) % len(nic_gbps_choices)])
        for k in range(1, count + 1):
            name = f"r{r}-h{k:0{width}d}"
            host_list.append(Host(
                name=name, cpus=cpus, memory_mib=host_memory_mib, nic_gbps=nic,
                uri=f"qemu+ssh://{name}.example.net/system", migration_address=f"10.{r // 256}.{r % 256}.{k}",
                reserved_memory_mib=RESERVED_MEMORY_MIB, arch="x86_64", cpu_model=CPU_MODEL,
                cpu_features=CPU_FEATURES, switch=f"tor-r{r}", local_disk_free_gib=float(rng.choice((800, 1600))),
                storage=frozenset(SHARED_STORAGES), networks=frozenset(NETWORKS),
                labels={"rack": f"r{r}", "zone": "a" if r % 2 else "b"},
                state=HostState.MAINTENANCE if name in maintenance_set else HostState.UP))
    links = tuple(Link(f"tor-r{r}", "spine", float(uplink_gbps)) for r in range(1, racks + 1)) if racks > 1 else ()

    # Names by role; some roles come in anti-affinity groups of replicas (web-01..03 share group "web-1").
    role_weights = [1.0] * len(ROLES)
    counters = dict.fromkeys(ROLES, 0)
    roles = [ROLES[_weighted(rng, role_weights)] for _ in range(vms)]
    for role in roles:
        counters[role] += 1
    name_width = {r: max(2, len(str(n))) for r, n in counters.items()}  # web-01, ..., web-123
    seq = dict.fromkeys(ROLES, 0)
    max_group = max(1, min(4, len(host_list) - max(1, len(host_list) // 20) - 1))
    groups: list[frozenset[str]] = [frozenset()] * vms
    i = 0
    group_id = 0
    while i < vms:
        if max_group >= 2 and rng.random() < anti_affinity_share / 3:
            size = min(rng.randint(2, max_group), vms - i)
            group_id += 1
            for j in range(i, i + size):
                groups[j] = frozenset({f"{roles[i]}-g{group_id}"})
                roles[j] = roles[i]
                sizes[j] = sizes[i]  # replicas are the same size
            i += size
        else:
            i += 1

    # Place largest first on the emptiest host (by memory) that respects capacity and anti-affinity.
    free_memory = {h.name: h.usable_memory_mib * policy.memory_overcommit for h in host_list}
    free_vcpus = {h.name: h.cpus * policy.cpu_overcommit for h in host_list}
    groups_on: dict[str, set[str]] = {h.name: set() for h in host_list}
    heap = [(-free_memory[h.name], k, h.name) for k, h in enumerate(host_list)]
    heapq.heapify(heap)
    order = sorted(range(vms), key=lambda j: (-sizes[j][1], j))
    placement = [""] * vms
    for j in order:
        vcpus, memory_mib = sizes[j]
        skipped = []
        chosen = None
        while heap:
            entry = heapq.heappop(heap)
            name = entry[2]
            if free_memory[name] >= memory_mib and free_vcpus[name] >= vcpus and not (groups[j] & groups_on[name]):
                chosen = entry
                break
            skipped.append(entry)
        if chosen is None:
            raise ValueError(f"cannot place {vms} VMs on {hosts} hosts with memory_used={memory_used}")
        name = chosen[2]
        placement[j] = name
        free_memory[name] -= memory_mib
        free_vcpus[name] -= vcpus
        groups_on[name] |= groups[j]
        heapq.heappush(heap, (-free_memory[name], chosen[1], name))
        for entry in skipped:
            heapq.heappush(heap, entry)

    profile_weights = [w for _, w, _ in DIRTY_PROFILES]
    vm_list = []
    for j in range(vms):
        role = roles[j]
        seq[role] += 1
        name = f"{role}-{seq[role]:0{name_width[role]}d}"
        vcpus, memory_mib = sizes[j]
        lo, hi = DIRTY_PROFILES[_weighted(rng, profile_weights)][2]
        root_gib = float(rng.choice((20, 40)))
        disks = [Disk("vda", f"/mnt/{SHARED_STORAGES[j % 2]}/{name}.qcow2", "qcow2", SHARED_STORAGES[j % 2],
                      root_gib, round(rng.uniform(0.2, 0.8) * root_gib, 1))]
        if rng.random() < local_disk_share:
            cap = float(rng.choice((10, 20, 50)))
            disks.append(Disk("vdb", f"/var/lib/libvirt/images/{name}-data.qcow2", "qcow2", None, cap,
                              round(rng.uniform(0.1, 0.6) * cap, 1)))
        vm_list.append(VM(
            name=name, host=placement[j], vcpus=vcpus, memory_mib=memory_mib,
            uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            dirty_rate_mibs=round(rng.uniform(lo, hi), 1), cpu_model=CPU_MODEL,
            cpu_features=frozenset({"avx512f"}), disks=tuple(disks), networks=frozenset({"br-prod"}),
            labels={"app": role}, anti_affinity=groups[j], priority=1 if role == "db" else 0))
    vm_list.sort(key=lambda v: (v.host, v.name))
    return Inventory(hosts=tuple(host_list), vms=tuple(vm_list), links=links, policy=policy)


def skew_fleet(inventory: Inventory, hot_share: float = 0.2, fill: float = 0.9, seed: int = 0) -> Inventory:
    """The same fleet with its load piled up: VMs of the other hosts move (on paper) to the first
    `hot_share` of each rack's hosts until those hold `fill` of their usable memory (vCPUs and anti-affinity
    respected), so a rebalance has work to do. Deterministic per seed; still valid inventory v1."""
    rng = random.Random(seed)
    p = inventory.policy
    by_rack: dict[str | None, list[Host]] = {}
    for h in inventory.hosts:
        by_rack.setdefault(h.switch, []).append(h)
    hot: list[str] = []
    for members in by_rack.values():
        hot += [h.name for h in members[:max(1, round(len(members) * hot_share))]]
    hot_set = set(hot)
    mem = {h.name: 0.0 for h in inventory.hosts}
    cpu = {h.name: 0.0 for h in inventory.hosts}
    groups: dict[str, set[str]] = {h.name: set() for h in inventory.hosts}
    for v in inventory.vms:
        mem[v.host] += v.memory_mib
        cpu[v.host] += v.vcpus
        groups[v.host] |= v.anti_affinity
    limit = {h.name: (h.usable_memory_mib * p.memory_overcommit * fill, h.cpus * p.cpu_overcommit * fill)
             for h in inventory.hosts}
    moved: dict[str, str] = {}
    cold = [v for v in inventory.vms if v.host not in hot_set]
    rng.shuffle(cold)
    switch_of = {h.name: h.switch for h in inventory.hosts}
    for v in cold:
        targets = [h for h in by_rack[switch_of[v.host]] if h.name in hot_set]
        rng.shuffle(targets)
        for h in targets:
            n = h.name
            if (mem[n] + v.memory_mib <= limit[n][0] and cpu[n] + v.vcpus <= limit[n][1]
                    and not (v.anti_affinity & groups[n])):
                mem[n] += v.memory_mib
                cpu[n] += v.vcpus
                groups[n] |= v.anti_affinity
                mem[v.host] -= v.memory_mib
                cpu[v.host] -= v.vcpus
                moved[v.name] = n
                break
    vms = tuple(sorted((replace(v, host=moved.get(v.name, v.host)) for v in inventory.vms),
                       key=lambda v: (v.host, v.name)))
    return replace(inventory, vms=vms)
