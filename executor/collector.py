"""`evac collect`: read every host over libvirt, in parallel, into an inventory v1.

Two halves. `read_host` talks to one libvirt daemon (one connection, in its own thread) and
returns a `HostSnapshot` of parsed XML and numbers. `assemble` is pure: it turns the snapshots of
all hosts plus the site configuration (executor/site.py) into an `Inventory`, deciding which
storage is shared, which disks are local, each host's NIC speed and CPU offer. A host that could
not be read is a `HostFailure` and an inventory `missing_hosts` entry, never silently dropped.

Decisions (docs/collect.md says why):
* CPU compatibility is checked on expanded feature sets: a host offers the features of its
  host-model CPU (domain capabilities) expanded with `baselineHypervisorCPU`, a guest needs the
  expanded features of its own CPU. Named custom models are therefore not compared by name (the
  VM's `cpu_model` stays empty); host-passthrough / maximum / host-model guests need the source
  host's model and features, because that is the CPU they were given.
* NIC speed: hosts/topology file, else the fastest link-up NIC libvirt's node devices report,
  else 1 Gbit/s with a warning (an under-estimate only makes the plan slower, never unsafe).
* Dirty rate: QEMU's calc-dirty-rate (page sampling) for every running VM at once, off by default.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import libvirt

from executor import domain_xml as dx
from executor.connection import DEFAULT_TIMEOUT_S, ConnectError, ConnectFailure, open_connection
from executor.site import DeclaredStorage, SiteConfig, load_site_config
from executor.uri import validate_uris
from planner.errors import Problem
from planner.inventory import CONTROL_CHARACTER_RE
from planner.model import VM, Disk, Host, HostState, Inventory, MissingHost, VMState

GIB = 1024**3
DEFAULT_NIC_GBPS = 1.0
_DIRTY_RATE_MARGIN_S = 10.0  # beyond the measuring period, before a measurement counts as lost
_LIVE_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: VMState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTDOWN: VMState.RUNNING,  # shutting down, still running
    libvirt.VIR_DOMAIN_NOSTATE: VMState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VMState.PAUSED,
}


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class HostFailure:
    uri: str
    name: str  # the hosts-file name when known, else the URI's host part
    code: str  # unreachable, auth, timeout, other, read
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.uri}): {self.code}: {self.reason}"


@dataclass(frozen=True)
class CollectResult:
    inventory: Inventory
    failures: tuple[HostFailure, ...]
    warnings: tuple[Problem, ...] = ()
    host_seconds: Mapping[str, float] = field(default_factory=dict)  # per URI: connect + read (+ dirty rate)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 all hosts read, 1 some failed (inventory written), 3 none reachable."""
        if not self.failures:
            return 0
        return 3 if not self.inventory.hosts else 1


class CollectReporter:
    """Progress hooks with no-op defaults; called from worker threads, so implementations must lock."""

    def host_started(self, uri: str) -> None:
        """Connecting to the host."""

    def host_connected(self, uri: str, name: str, seconds: float) -> None:
        """Connected; reading domains and pools."""

    def dirty_rate_started(self, uri: str, name: str, vms: int, seconds: float) -> None:
        """Measuring the dirty rate of `vms` running VMs for `seconds`."""

    def host_done(self, uri: str, name: str, vms: int, seconds: float) -> None:
        """The host was read completely."""

    def host_failed(self, failure: HostFailure, seconds: float) -> None:
        """The host could not be read."""


# ------------------------------------------------------------------------------------------ snapshots


@dataclass(frozen=True, slots=True)
class DomainSnapshot:
    definition: dx.DomainDefinition
    state: VMState
    persistent: bool
    disk_sizes: Mapping[str, tuple[int, int]]  # target -> (capacity, allocation) in bytes
    cpu_features: frozenset[str] | None  # expanded by libvirt; None when the host cannot expand
    dirty_rate_mibs: float | None = None
    virttype: str | None = None  # the domain type its CPU was expanded for (its own, or --virt-type)


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


# ------------------------------------------------------------------------------------------ reading one host


class _CPUExpander:
    """Expands a CPU definition to its full feature list on one host, caching by definition."""

    def __init__(self, conn: Any, arch: str | None, virttype: str | None) -> None:
        self.conn, self.arch, self.virttype = conn, arch, virttype
        self.cache: dict[str, frozenset[str] | None] = {}
        self.works = True

    def expand(self, cpu_xml: str) -> frozenset[str] | None:
        if not self.works:
            return None
        if cpu_xml not in self.cache:
            try:
                out = self.conn.baselineHypervisorCPU(None, self.arch, None, self.virttype, [cpu_xml],
                                                      libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
            except libvirt.libvirtError:
                if not self.cache:  # the driver cannot do it at all (test driver, old daemon)
                    self.works = False
                self.cache[cpu_xml] = None
            else:
                self.cache[cpu_xml] = dx.parse_domain_capabilities_cpu_features(out)
        return self.cache[cpu_xml]


_CPU_DOMAIN_TYPES = frozenset({"kvm", "qemu"})  # the domain types whose CPU offer domain capabilities describe


def _virttype(caps: dx.HostCapabilities) -> str | None:
    """kvm when the host offers it, else qemu (TCG), else None: the host's default guest type."""
    return next((t for t in ("kvm", "qemu") if t in caps.domain_types), None)


class _CPUOffers:
    """Reads one host's CPU offer per domain type on first need (domain capabilities + expansion), and
    expands guest CPUs against the offer of their own type."""

    def __init__(self, conn: Any, arch: str | None, hostname: str, warnings: list[Problem]) -> None:
        self.conn, self.arch, self.hostname, self.warnings = conn, arch, hostname, warnings
        self.offers: dict[str, CPUOffer] = {}
        self.expanders: dict[str | None, _CPUExpander] = {}

    def expander(self, virttype: str | None) -> _CPUExpander:
        if virttype not in self.expanders:
            self.expanders[virttype] = _CPUExpander(self.conn, self.arch, virttype)
        return self.expanders[virttype]

    def offer(self, virttype: str | None) -> CPUOffer:
        key = virttype or ""
        if key not in self.offers:
            host_cpu = None
            try:
                host_cpu = dx.parse_domain_capabilities(
                    self.conn.getDomainCapabilities(None, self.arch, None, virttype))
            except libvirt.libvirtError as exc:
                self.warnings.append(Problem(self.hostname, f"no domain capabilities"
                                             f"{f' for {virttype} guests' if virttype else ''} "
                                             f"({exc.get_error_message()}): CPU model and features of this host "
                                             "are unknown", "warning"))
            features = None
            if host_cpu is not None and host_cpu.supported and host_cpu.model:
                features = self.expander(virttype).expand(dx.host_model_cpu_xml(host_cpu))
            self.offers[key] = CPUOffer(host_cpu, features)
        return self.offers[key]


def _volume_info(conn: Any, pools: Sequence[tuple[Any, dx.PoolDefinition]], path: str) -> tuple[int, int] | None:
    """(capacity, allocation) of the pool volume at `path`, or None if no pool holds it."""
    try:
        _type, capacity, allocation = conn.storageVolLookupByPath(path).info()
        return int(capacity), int(allocation)
    except libvirt.libvirtError:
        pass
    directory, _, name = path.rpartition("/")
    for pool, pdef in pools:  # drivers whose lookup by path is incomplete: by name in the pool of the directory
        if pdef.target_path and pdef.target_path.rstrip("/") == directory:
            try:
                _type, capacity, allocation = pool.storageVolLookupByName(name).info()
                return int(capacity), int(allocation)
            except libvirt.libvirtError:
                continue
    return None


def _disk_sizes(conn: Any, dom: Any, d: dx.DomainDefinition, active: bool,
                pools: Sequence[tuple[Any, dx.PoolDefinition]]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Capacity and allocation per disk: the pool's volume info when a pool holds the file (authoritative
    for running and shut-off guests alike), else `blockInfo` (what QEMU sees; needs a running guest for
    network disks)."""
    sizes: dict[str, tuple[int, int]] = {}
    missing: list[str] = []
    for disk in d.disks:
        if disk.device not in ("disk", "lun"):
            continue
        found = _volume_info(conn, pools, disk.path) if disk.path else None
        if found is None and (active or not disk.is_network):
            try:
                capacity, allocation, _physical = dom.blockInfo(disk.target)
                found = int(capacity), int(allocation)
            except libvirt.libvirtError:
                pass
        if found is None:
            missing.append(disk.target)
        else:
            sizes[disk.target] = found
    return sizes, missing


def read_host(uri: str, timeout_s: float = DEFAULT_TIMEOUT_S, *, dirty_rate: bool = False,
              dirty_rate_seconds: int = 1, virt_type: str | None = None,
              reporter: CollectReporter | None = None) -> HostSnapshot:
    """Everything evac needs from one host; raises `ConnectError` if it cannot be reached.

    `virt_type` (kvm or qemu) picks the guest type whose CPU offer is read; by default kvm when the
    host has it. Use qemu for TCG hosts (the lab): CPU features differ between the two.
    """
    reporter = reporter or CollectReporter()
    t0 = time.monotonic()
    # Read-write: domain capabilities, CPU expansion and dirty-rate calculation are refused read-only.
    conn = open_connection(uri, timeout_s=timeout_s)
    try:
        hostname = conn.getHostname()
        reporter.host_connected(uri, hostname, time.monotonic() - t0)
        return _read_connected(conn, uri, hostname, dirty_rate, dirty_rate_seconds, virt_type, reporter)
    finally:
        conn.close()


def _read_connected(conn: Any, uri: str, hostname: str, dirty_rate: bool, dirty_rate_seconds: int,
                    virt_type: str | None, reporter: CollectReporter) -> HostSnapshot:
    warnings: list[Problem] = []
    info = conn.getInfo()  # [arch, memory MiB, active cpus, MHz, nodes, sockets, cores, threads]
    caps = dx.parse_capabilities(conn.getCapabilities())
    virttype = virt_type or _virttype(caps)
    arch = caps.arch or info[0]
    cpu = _CPUOffers(conn, arch, hostname, warnings)
    default_offer = cpu.offer(virttype)
    if virt_type is None:  # every type this host runs: the fleet's guests decide which one the inventory uses
        for other in sorted(_CPU_DOMAIN_TYPES & caps.domain_types):
            cpu.offer(other)

    pools = []
    pool_objects: list[tuple[Any, dx.PoolDefinition]] = []
    for p in conn.listAllStoragePools():
        try:
            pdef = dx.parse_pool(p.XMLDesc())
            active = bool(p.isActive())
            _state, capacity, allocation, available = p.info() if active else (0, 0, 0, 0)
            if available > capacity:  # seen from libvirt's test driver: an unsigned underflow
                available = max(capacity - allocation, 0)
        except libvirt.libvirtError as exc:
            warnings.append(Problem(hostname, f"pool {p.name()}: {exc.get_error_message()}", "warning"))
            continue
        pools.append(PoolSnapshot(pdef, active, available))
        if active:
            pool_objects.append((p, pdef))

    networks = {n.name() for n in conn.listAllNetworks() if n.isActive()}
    try:
        for iface in conn.listAllInterfaces():
            parsed = dx.parse_interface(iface.XMLDesc())
            if parsed.type == "bridge":
                networks.add(parsed.name)
    except libvirt.libvirtError:
        pass  # no interface driver on this daemon: bridges are then only known from libvirt networks
    nics = []
    try:
        for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET):
            nic = dx.parse_node_device_net(dev.XMLDesc())
            if nic is not None:
                nics.append(nic)
    except libvirt.libvirtError:
        pass

    domains: list[DomainSnapshot] = []
    live_doms: list[Any] = []
    for dom in conn.listAllDomains():
        try:
            d = dx.parse_domain(dom.XMLDesc())
            state_code = dom.state()[0]
            state = _LIVE_STATES.get(state_code, VMState.SHUTOFF)
            sizes, missing = _disk_sizes(conn, dom, d, dom.isActive() == 1, pool_objects)
            # A guest is judged by the offer of its own domain type (a TCG guest on a KVM host by the
            # qemu offer), unless --virt-type says which one to use.
            own = d.domain_type if d.domain_type in _CPU_DOMAIN_TYPES & caps.domain_types else None
            dom_type = virt_type or own or virttype
            if dom_type is not None:
                cpu.offer(dom_type)
            cpu_features = cpu.expander(dom_type).expand(dx.domain_cpu_xml(d.cpu)) if d.cpu.model else None
            persistent = dom.isPersistent() == 1
        except (libvirt.libvirtError, dx.XMLParseError) as exc:
            warnings.append(Problem(f"{hostname}: domain {dom.name()}", f"not read: {exc}", "error"))
            continue
        for target in missing:
            warnings.append(Problem(f"{hostname}: {d.name}.{target}", "disk size unknown, recorded as 0", "warning"))
        domains.append(DomainSnapshot(d, state, persistent, sizes, cpu_features, virttype=dom_type))
        if state is VMState.RUNNING:
            live_doms.append(dom)

    if dirty_rate and live_doms:
        reporter.dirty_rate_started(uri, hostname, len(live_doms), dirty_rate_seconds)
        rates, problems = measure_dirty_rates(conn, live_doms, dirty_rate_seconds)
        warnings.extend(Problem(f"{hostname}: {p.where}", p.message, p.severity) for p in problems)
        domains = [replace(s, dirty_rate_mibs=rates.get(s.definition.name)) for s in domains]

    return HostSnapshot(
        uri=uri, hostname=hostname, cpus=int(info[2]), memory_mib=int(info[1]),
        free_memory_mib=int(conn.getFreeMemory()) // 2**20, capabilities=caps, host_cpu=default_offer.host_cpu,
        host_cpu_features=default_offer.features, pools=tuple(pools), networks=frozenset(networks), nics=tuple(nics),
        domains=tuple(domains), warnings=tuple(warnings), virttype=virttype,
        cpu_offers={t: o for t, o in cpu.offers.items() if t},
    )


def measure_dirty_rates(conn: Any, doms: Sequence[Any], seconds: int) -> tuple[dict[str, float], list[Problem]]:
    """QEMU's dirty-rate calculation for all `doms` at once: {name: MiB/s}, and a problem per VM it failed for.

    libvirt reports `dirtyrate.megabytes_per_second`; QEMU computes it in units of 2^20 bytes, so
    it is MiB/s. Page sampling misses pages dirtied and re-dirtied between samples: a lower bound.
    """
    problems: list[Problem] = []
    started = []
    for dom in doms:
        try:
            dom.startDirtyRateCalc(seconds, 0)
            started.append(dom)
        except libvirt.libvirtError as exc:
            problems.append(Problem(dom.name(), f"dirty rate not measured ({exc.get_error_message()}); "
                                                "recorded as 0", "warning"))
    rates: dict[str, float] = {}
    deadline = time.monotonic() + seconds + _DIRTY_RATE_MARGIN_S
    pending = list(started)
    time.sleep(seconds)
    while pending and time.monotonic() < deadline:
        try:
            stats = conn.domainListGetStats(pending, libvirt.VIR_DOMAIN_STATS_DIRTYRATE)
        except libvirt.libvirtError as exc:
            for dom in pending:
                problems.append(Problem(dom.name(), f"dirty rate not read ({exc.get_error_message()})", "warning"))
            return rates, problems
        still = []
        for dom, st in stats:
            if st.get("dirtyrate.calc_status") == libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED:
                rates[dom.name()] = float(st.get("dirtyrate.megabytes_per_second", 0))
            else:
                still.append(dom)
        pending = still
        if pending:
            time.sleep(0.1)
    for dom in pending:
        problems.append(Problem(dom.name(), f"dirty rate not measured within {seconds + _DIRTY_RATE_MARGIN_S:g} s; "
                                            "recorded as 0", "warning"))
    return rates, problems


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
        persistent=dom.persistent,
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


# ------------------------------------------------------------------------------------------ driving it all


def _failure_name(uri: str, site: SiteConfig) -> str:
    override = site.override_for(uri, None)
    if override is not None:
        return override.name
    from urllib.parse import urlsplit

    return urlsplit(uri).hostname or uri


DEFAULT_READ_TIMEOUT_S = 120.0


def collect(uris: Iterable[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, dirty_rate: bool = False,
            dirty_rate_seconds: int = 1, topology: Path | None = None, hosts_file: Path | None = None,
            allow_insecure_transport: bool = False, reporter: CollectReporter | None = None,
            virt_type: str | None = None, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
            max_workers: int = 32) -> CollectResult:
    """Reads every host in parallel (one thread and one connection each).

    `timeout_s` bounds connecting; `read_timeout_s` (plus the dirty-rate period) bounds reading a host
    once connected, so a daemon that accepts and then stalls is reported as a timeout instead of
    holding up the whole collection. Workers are daemon threads: a stalled one is left behind.
    Raises `UsageError` (exit 2) for a bad URI or site file before connecting to anything.
    """
    uri_list = list(dict.fromkeys(uris))
    validate_uris(uri_list, allow_insecure_transport)
    site = load_site_config(hosts_file, topology)
    reporter = reporter or CollectReporter()
    t0 = time.monotonic()
    lock = threading.Lock()
    seconds: dict[str, float] = {}
    started: dict[str, float] = {}
    results: dict[str, HostSnapshot | HostFailure] = {}
    slots = threading.Semaphore(max(1, max_workers))
    budget_s = timeout_s + read_timeout_s + (dirty_rate_seconds + _DIRTY_RATE_MARGIN_S if dirty_rate else 0.0)

    def finish(uri: str, result: HostSnapshot | HostFailure) -> bool:
        with lock:
            if uri in results:  # already given up on: too late
                return False
            results[uri] = result
            seconds[uri] = time.monotonic() - started[uri]
            return True

    def one(uri: str) -> None:
        with slots:
            with lock:
                started[uri] = time.monotonic()
            reporter.host_started(uri)
            try:
                snap = read_host(uri, timeout_s, dirty_rate=dirty_rate, dirty_rate_seconds=dirty_rate_seconds,
                                 virt_type=virt_type, reporter=reporter)
            except ConnectError as exc:
                failure = HostFailure(uri, _failure_name(uri, site), exc.code.value, exc.reason)
            except (libvirt.libvirtError, dx.XMLParseError) as exc:
                # Connected, then lost: reported like an unreachable host, with what failed.
                failure = HostFailure(uri, _failure_name(uri, site), "read", str(exc))
            else:
                if finish(uri, snap):
                    reporter.host_done(uri, snap.hostname, len(snap.domains), seconds[uri])
                return
            if finish(uri, failure):
                reporter.host_failed(failure, seconds[uri])

    for uri in uri_list:
        threading.Thread(target=one, args=(uri,), name=f"collect {uri}", daemon=True).start()
    while True:
        with lock:
            if len(results) == len(uri_list):
                break
            now = time.monotonic()
            late = [u for u, t in started.items() if u not in results and now - t > budget_s]
        for uri in late:
            failure = HostFailure(uri, _failure_name(uri, site), ConnectFailure.TIMEOUT.value,
                                  f"connected but not read within {budget_s:g} s")
            if finish(uri, failure):
                reporter.host_failed(failure, seconds[uri])
        time.sleep(0.02)
    ordered = [results[u] for u in uri_list]
    snapshots = [r for r in ordered if isinstance(r, HostSnapshot)]
    failures = [r for r in ordered if isinstance(r, HostFailure)]
    inventory, warnings = assemble(snapshots, failures, site)
    return CollectResult(inventory, tuple(failures), tuple(warnings), seconds, time.monotonic() - t0)


__all__ = [
    "CollectReporter", "CollectResult", "ConnectFailure", "HostFailure", "HostSnapshot", "assemble", "collect",
    "measure_dirty_rates", "read_host",
]
