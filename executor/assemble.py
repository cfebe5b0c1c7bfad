"""The pure half of `evac collect`: what was read from libvirt (parsed XML, numbers) -> an `Inventory`.

No libvirt import: `executor.collector` holds the connections, threads and calls and hands over
`HostSnapshot`s of plain values (executor/domain_xml.py parses the XML, executor/usage.py turns
statistics into use figures); `assemble` plus the site configuration (executor/site.py: hosts
file, topology) decides which storage is shared, which disks are local, each host's NIC speed and
CPU offer, each VM's needs and measured use, and which warnings to give. Tested on hand-made
snapshots (tests/test_assemble.py). A host that could not be read is a `HostFailure` and an
inventory `missing_hosts` entry, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from executor import domain_xml as dx
from executor.site import DeclaredStorage, SiteConfig
from executor.usage import NOT_SAMPLED, Usage, missing_summary
from planner.errors import Problem
from planner.inventory import CONTROL_CHARACTER_RE
from planner.model import VM, Disk, Host, HostState, Inventory, MissingHost, VMState

GIB = 1024**3
DEFAULT_NIC_GBPS = 1.0


# ------------------------------------------------------------------------------------------ what was read


@dataclass(frozen=True, slots=True)
class HostFailure:
    uri: str
    name: str  # the hosts-file name when known, else the URI's host part
    code: str  # unreachable, auth, timeout, other, read
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.uri}): {self.code}: {self.reason}"


@dataclass(frozen=True, slots=True)
class DomainSnapshot:
    definition: dx.DomainDefinition
    state: VMState
    persistent: bool
    disk_sizes: Mapping[str, tuple[int, int]]  # target -> (capacity, allocation) in bytes
    cpu_features: frozenset[str] | None  # expanded by libvirt; None when the host cannot expand
    dirty_rate_mibs: float | None = None
    virttype: str | None = None  # the domain type its CPU was expanded for (its own, or --virt-type)
    usage: Usage = NOT_SAMPLED  # measured use from the domain statistics (executor/usage.py)


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    definition: dx.PoolDefinition
    active: bool
    available_bytes: int


@dataclass(frozen=True, slots=True)
class CPUOffer:
    """What one host offers a guest of one domain type: its host-model CPU and the expanded features.
    kvm and qemu (TCG) offers differ: under KVM without nesting `svm` is missing, TCG emulates it."""

    host_cpu: dx.HostModelCPU | None
    features: frozenset[str] | None  # expanded host-model features; None when libvirt cannot expand


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    uri: str
    hostname: str
    cpus: int
    memory_mib: int
    free_memory_mib: int
    capabilities: dx.HostCapabilities
    host_cpu: dx.HostModelCPU | None
    host_cpu_features: frozenset[str] | None  # expanded host-model features
    pools: tuple[PoolSnapshot, ...]
    networks: frozenset[str]
    nics: tuple[dx.NetDevice, ...]
    domains: tuple[DomainSnapshot, ...]
    warnings: tuple[Problem, ...] = ()
    virttype: str | None = None  # the type host_cpu describes: --virt-type, else kvm when the host has it
    cpu_offers: Mapping[str, CPUOffer] = field(default_factory=dict)  # per domain type read on this host

    def offer(self, virttype: str | None) -> CPUOffer:
        """The CPU offer for guests of `virttype` (the host's default one when not read for that type)."""
        if virttype is not None and virttype in self.cpu_offers:
            return self.cpu_offers[virttype]
        return CPUOffer(self.host_cpu, self.host_cpu_features)


# ------------------------------------------------------------------------------------------ assembling


@dataclass(frozen=True, slots=True)
class _StorageMap:
    """Which storage id a pool or a network server belongs to, over all hosts."""

    pool_ids: Mapping[str, str]  # pool source key -> storage id
    declared: tuple[DeclaredStorage, ...]

    def for_pool(self, pool: dx.PoolDefinition) -> str | None:
        key = pool.source_key
        if key is not None:
            return self.pool_ids[key]
        for st in self.declared:
            if pool.target_path and st.holds_path(pool.target_path):
                return st.id
        return None

    def for_network_disk(self, disk: dx.DomainDisk) -> str:
        servers = {h.name for h in disk.hosts}
        for st in self.declared:
            if servers & set(st.servers):
                return st.id
        key = network_disk_storage_id(disk)
        return self.pool_ids.get(key, key)  # a pool with the same source on some host names it


def network_disk_storage_id(disk: dx.DomainDisk) -> str:
    """A stable id of the storage a network disk lives on: `nbd:10.0.9.2`, `rbd:mon1,mon2/pool`,
    `iscsi:san/iqn...`, `gluster:host/volume`; for rbd, iscsi and gluster it equals the source key of
    the pool (`PoolDefinition.source_key`) that serves the same data, so both give one storage id."""
    hosts = ",".join(sorted(h.name for h in disk.hosts)) or "?"
    first = (disk.network_name or "").split("/")[0]  # rbd pool, iSCSI target IQN, gluster volume
    if disk.protocol in ("rbd", "iscsi", "gluster"):
        return f"{disk.protocol}:{hosts}/{first}"
    return f"{disk.protocol}:{hosts}"


def _storage_map(snapshots: Sequence[HostSnapshot], declared: tuple[DeclaredStorage, ...]) -> _StorageMap:
    names_by_key: dict[str, set[str]] = {}
    for snap in snapshots:
        for p in snap.pools:
            if (key := p.definition.source_key) is not None:
                names_by_key.setdefault(key, set()).add(p.definition.name)
    # The pool name when every host calls it the same, else the id derived from its source.
    ids = {key: (next(iter(names)) if len(names) == 1 else key) for key, names in names_by_key.items()}
    return _StorageMap(ids, declared)


def _disk_storage(disk: dx.DomainDisk, pools: Sequence[dx.PoolDefinition], smap: _StorageMap) -> str | None:
    if disk.is_network:
        return smap.for_network_disk(disk)
    if disk.pool:
        pool = next((p for p in pools if p.name == disk.pool), None)
        return smap.for_pool(pool) if pool is not None else None
    if disk.path is None:
        return None
    for st in smap.declared:
        if st.holds_path(disk.path):
            return st.id
    # The pool whose target directory holds the file, deepest first.
    holders = [p for p in pools if p.target_path and disk.path.startswith(p.target_path.rstrip("/") + "/")]
    holders.sort(key=lambda p: -len(p.target_path or ""))
    return smap.for_pool(holders[0]) if holders else None


def _nic_gbps(snap: HostSnapshot, explicit: float | None, where: str,
              warnings: list[Problem]) -> float:
    if explicit is not None:
        return float(explicit)
    candidates = [n for n in snap.nics if n.link_up and n.speed_gbps and n.interface != "lo"]
    physical = [n for n in candidates if n.physical]
    best = max(physical or candidates, key=lambda n: n.speed_gbps or 0.0, default=None)
    if best is not None and best.speed_gbps:
        if len({n.speed_mbps for n in physical or candidates}) > 1:
            warnings.append(Problem(where, f"NICs of different speeds; using the fastest ({best.interface}, "
                                           f"{best.speed_gbps:g} Gbit/s): set nic_gbps in the hosts file if "
                                           "migration uses another", "warning"))
        return best.speed_gbps
    warnings.append(Problem(where, f"NIC speed unknown (no link speed from libvirt, none in the hosts/topology "
                                   f"file): assuming {DEFAULT_NIC_GBPS:g} Gbit/s", "warning"))
    return DEFAULT_NIC_GBPS


def _vm_cpu(snap: HostSnapshot, host: Host, dom: DomainSnapshot) -> tuple[str | None, frozenset[str]]:
    cpu = dom.definition.cpu
    if cpu.mode in ("host-passthrough", "maximum", "host-model"):
        # The guest got this host's CPU: a destination must offer the same model and every feature.
        return host.cpu_model, host.cpu_features
    if cpu.model is None:
        return None, frozenset()  # hypervisor default model: runs on any host of the arch
    if dom.cpu_features is not None:
        return None, dom.cpu_features  # the model is represented by its expanded features
    return cpu.model, cpu.features_required  # cannot expand: compare the model by name


def _assemble_host(snap: HostSnapshot, name: str, site: SiteConfig, smap: _StorageMap,
                   warnings: list[Problem], virttype: str | None = None) -> Host:
    override = site.override_for(snap.uri, snap.hostname)
    topo = site.hosts.get(name)
    explicit_nic = (override.nic_gbps if override else None) or (topo.nic_gbps if topo else None)
    local_pools = [p for p in snap.pools if p.active and smap.for_pool(p.definition) is None
                   and p.definition.type in ("dir", "fs", "logical", "zfs", "disk")]
    default = next((p for p in local_pools if p.definition.name == "default"), None)
    holder = default or max(local_pools, key=lambda p: p.available_bytes, default=None)
    if holder is None:
        warnings.append(Problem(name, "no active local storage pool: local_disk_free_gib = 0 (this host cannot "
                                      "receive copied disks)", "warning"))
    storage: set[str] = set()
    storage_free: dict[str, float] = {}
    for p in snap.pools:
        sid = smap.for_pool(p.definition)
        if sid is not None and p.active:
            storage.add(sid)
            storage_free[sid] = round(p.available_bytes / GIB, 3)
    for st in site.storage:
        if st.servers and (st.hosts is None or name in st.hosts):
            storage.add(st.id)
    caps = snap.capabilities
    offer = snap.offer(virttype)
    cpu_features = offer.features
    if cpu_features is None and offer.host_cpu is not None:
        cpu_features = offer.host_cpu.features
    return Host(
        name=name, uri=snap.uri, cpus=snap.cpus, memory_mib=snap.memory_mib,
        nic_gbps=_nic_gbps(snap, explicit_nic, name, warnings),
        migration_address=override.migration_address if override else None,
        reserved_memory_mib=(override.reserved_memory_mib or 0) if override else 0,
        arch=caps.arch,
        cpu_model=(offer.host_cpu.model if offer.host_cpu and offer.host_cpu.supported else None) or caps.cpu_model,
        cpu_features=cpu_features if cpu_features is not None else caps.cpu_features,
        switch=(override.switch if override else None) or (topo.switch if topo else None),
        local_disk_free_gib=round(holder.available_bytes / GIB, 3) if holder else 0.0,
        storage=frozenset(storage), networks=snap.networks,
        labels=dict(override.labels) if override else {},
        state=(override.state or HostState.UP) if override else HostState.UP,
        storage_free_gib=storage_free,
    )


def _assemble_vm(snap: HostSnapshot, host: Host, dom: DomainSnapshot, smap: _StorageMap,
                 auto_storage: set[str]) -> VM:
    d = dom.definition
    pools = [p.definition for p in snap.pools]
    disks = []
    for disk in d.disks:
        if disk.device not in ("disk", "lun"):
            continue  # cdrom/floppy media: not copied by a migration
        storage = _disk_storage(disk, pools, smap)
        if disk.is_network and storage is not None and storage not in {s.id for s in smap.declared}:
            auto_storage.add(storage)
        capacity, allocation = dom.disk_sizes.get(disk.target, (0, 0))
        disks.append(Disk(target=disk.target, source=disk.source, format=disk.format or "raw", storage=storage,
                          capacity_gib=round(capacity / GIB, 6), allocation_gib=round(allocation / GIB, 6),
                          cache=disk.cache))
    cpu_model, cpu_features = _vm_cpu(snap, host, dom)
    return VM(
        name=d.name, host=host.name, vcpus=d.vcpus, memory_mib=d.memory_mib, uuid=d.uuid, state=dom.state,
        dirty_rate_mibs=dom.dirty_rate_mibs or 0.0, cpu_model=cpu_model, cpu_features=cpu_features,
        disks=tuple(disks), networks=frozenset(i.source for i in d.interfaces if i.source),
        persistent=dom.persistent, cpu_used=dom.usage.cpu_used, memory_used_mib=dom.usage.memory_used_mib,
    )


def _fleet_virttype(snapshots: Sequence[HostSnapshot]) -> str | None:
    """The domain type whose CPU offer the inventory's hosts describe: the one most guests have, if every
    host was read for it; else None (each host its default). One type for every host, so that the planner
    compares like with like; on the lab (TCG guests on hosts with /dev/kvm) it is qemu."""
    counts: dict[str, int] = {}
    for snap in snapshots:
        for dom in snap.domains:
            if dom.virttype is not None:
                counts[dom.virttype] = counts.get(dom.virttype, 0) + 1
    for virttype in sorted(counts, key=lambda t: (-counts[t], t)):
        if all(virttype in snap.cpu_offers or snap.virttype == virttype for snap in snapshots):
            return virttype
    return None


def _fit_own_host(vm: VM, host: Host, dom: DomainSnapshot, virttype: str | None, warnings: list[Problem]) -> VM:
    """A live VM runs on its host, so that host offers the CPU it needs. If the needs as collected exceed
    the host's offer as collected, libvirt's views disagree (or a guest of another domain type is judged by
    this fleet's offer): say which features, and drop what its own host does not list, so that the
    inventory never says a VM cannot stay where it runs. Shut-off VMs only get the warning (a definition
    may well name a CPU its host cannot give)."""
    known = bool(host.cpu_features) or host.cpu_model is not None
    extra = vm.cpu_features - host.cpu_features
    model_differs = vm.cpu_model is not None and host.cpu_model is not None and vm.cpu_model != host.cpu_model
    if not known or not (extra or model_differs):
        return vm
    what = []
    if extra:
        what.append(f"CPU features {', '.join(sorted(extra))}")
    if model_differs:
        what.append(f"CPU model {vm.cpu_model} (the host offers {host.cpu_model})")
    kind = dom.virttype or "its"
    why = (f"a {kind} guest judged by the {virttype} CPU offer of this fleet" if virttype and dom.virttype
           and dom.virttype != virttype else "libvirt's domain capabilities and the guest's CPU disagree")
    if not vm.live:
        warnings.append(Problem(f"vms.{vm.name}", f"needs {' and '.join(what)} that its host {host.name} does not "
                                f"offer ({why}); it is shut off, so this is kept: it may not start anywhere",
                                "warning"))
        return vm
    warnings.append(Problem(f"vms.{vm.name}", f"runs on {host.name} but needs {' and '.join(what)} that {host.name} "
                            f"does not offer as collected ({why}); recorded without them, so that it can stay "
                            f"where it runs (check with virsh domcapabilities --virttype)", "warning"))
    return replace(vm, cpu_features=vm.cpu_features & host.cpu_features,
                   cpu_model=None if model_differs else vm.cpu_model)


def _host_names(snapshots: Sequence[HostSnapshot], site: SiteConfig, warnings: list[Problem]) -> list[str]:
    names = []
    for snap in snapshots:
        override = site.override_for(snap.uri, snap.hostname)
        names.append(override.name if override else snap.hostname)
    for i, n in enumerate(names):
        if names.count(n) > 1:
            warnings.append(Problem(snapshots[i].uri, f"libvirt hostname {n!r} is not unique: named {n}@{i + 1} "
                                                      "(give names in the hosts file)", "warning"))
            names[i] = f"{n}@{i + 1}"
    return names


def assemble(snapshots: Sequence[HostSnapshot], failures: Sequence[HostFailure], site: SiteConfig | None = None,
             ) -> tuple[Inventory, list[Problem]]:
    """The inventory of everything read; pure (no libvirt), so it is tested on hand-made snapshots."""
    site = site or SiteConfig()
    warnings: list[Problem] = []
    smap = _storage_map(snapshots, site.storage)
    names = _host_names(snapshots, site, warnings)
    for snap, name in zip(snapshots, names, strict=True):  # say the inventory's host name, not libvirt's
        warnings += [replace(w, where=name + w.where[len(snap.hostname):]) if w.where.startswith(snap.hostname)
                     else w for w in snap.warnings]
    for snap, name in zip(snapshots, names, strict=True):  # one line per host, not one per VM
        if (unmeasured := missing_summary(name, (d.usage for d in snap.domains))) is not None:
            warnings.append(unmeasured)
    virttype = _fleet_virttype(snapshots)
    hosts = [_assemble_host(s, n, site, smap, warnings, virttype) for s, n in zip(snapshots, names, strict=True)]
    auto_storage: set[str] = set()
    by_uuid: dict[str, VM] = {}
    by_name: dict[str, VM] = {}
    for snap, host in zip(snapshots, hosts, strict=True):
        for dom in snap.domains:
            vm = _fit_own_host(_assemble_vm(snap, host, dom, smap, auto_storage), host, dom, virttype, warnings)
            seen = by_uuid.get(vm.uuid or "") or by_name.get(vm.name)
            if seen is not None and vm.uuid and seen.uuid and vm.uuid != seen.uuid:
                # Two different guests with one name: both stay (the executor finds VMs by UUID), renamed.
                renamed = f"{vm.name}@{vm.host}"
                warnings.append(Problem(f"vms.{vm.name}", f"two different VMs (UUIDs {seen.uuid} on {seen.host}, "
                                        f"{vm.uuid} on {vm.host}) share this name; the one on {vm.host} is listed "
                                        f"as {renamed}", "warning"))
                vm = replace(vm, name=renamed)
                seen = None
            if seen is not None:
                # The same guest defined on two hosts (a migration that kept the source definition):
                # the running copy is the VM; the other is reported, not moved.
                keep, drop = (vm, seen) if seen.state is VMState.SHUTOFF and vm.live else (seen, vm)
                both = " (ACTIVE ON BOTH: a migration in flight or a split brain; check before draining)" \
                    if vm.live and seen.live else ""
                warnings.append(Problem(f"vms.{vm.name}", f"defined on {seen.host} and {vm.host}: keeping the copy "
                                        f"on {keep.host} ({keep.state.value}), ignoring the one on {drop.host}"
                                        f"{both}", "warning"))
                by_name.pop(seen.name, None)
                by_uuid.pop(seen.uuid or "", None)
                vm = keep
            by_name[vm.name] = vm
            if vm.uuid:
                by_uuid[vm.uuid] = vm
    vms = sorted(by_name.values(), key=lambda v: (v.host, v.name))
    # Network storage found only through disks: the hosts that use it reach it; others are unknown.
    for sid in sorted(auto_storage):
        users = {v.host for v in vms if sid in v.shared_storage}
        hosts = [replace(h, storage=h.storage | {sid}) if h.name in users else h for h in hosts]
        warnings.append(Problem(f"storage {sid}", f"network storage seen only in disks of {', '.join(sorted(users))}; "
                                "declare it under shared_storage in the hosts file if other hosts reach it too",
                                "warning"))
    # libvirt's error texts may span lines (ssh's stderr): the inventory holds printable text only.
    missing = tuple(MissingHost(f.name, f.uri, CONTROL_CHARACTER_RE.sub(" ", f"{f.code}: {f.reason}"))
                    for f in failures)
    return Inventory(hosts=tuple(hosts), vms=tuple(vms), links=site.links, missing_hosts=missing), warnings
