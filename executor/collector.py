"""`evac collect`: read every host over libvirt, in parallel, into an inventory v1.

This module holds the libvirt half: `read_host` talks to one libvirt daemon (one connection, in
its own thread) and returns a `HostSnapshot` of parsed XML and numbers; `collect` drives the
threads. `executor.assemble.assemble` is the pure half that turns the snapshots of all hosts plus
the site configuration into an `Inventory`; `executor.usage` turns domain statistics into use.

Decisions (docs/collect.md says why):
* CPU compatibility is checked on expanded feature sets: a host offers the features of its
  host-model CPU (domain capabilities) expanded with `baselineHypervisorCPU`, a guest needs the
  expanded features of its own CPU. Named custom models are therefore not compared by name (the
  VM's `cpu_model` stays empty); host-passthrough / maximum / host-model guests need the source
  host's model and features, because that is the CPU they were given.
* NIC speed: hosts/topology file, else the fastest link-up NIC libvirt's node devices report,
  else 1 Gbit/s with a warning (an under-estimate only makes the plan slower, never unsafe).
* Use: two domain-statistics samples `sample_s` apart (CPU time delta; balloon/RSS memory), one
  call per host for all its active domains; a dirty-rate measurement runs inside that window.
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
from executor import usage as use
from executor.assemble import (
    CPUOffer,
    DomainSnapshot,
    HostFailure,
    HostSnapshot,
    PoolSnapshot,
    assemble,
    network_disk_storage_id,
)
from executor.connection import DEFAULT_TIMEOUT_S, ConnectError, ConnectFailure, open_connection
from executor.site import SiteConfig, load_site_config
from executor.uri import validate_uris
from planner.errors import Problem
from planner.model import Inventory, VMState

DEFAULT_SAMPLE_S = 2.0  # the window of the CPU-time delta behind cpu_used
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


@dataclass(frozen=True)
class CollectResult:
    inventory: Inventory
    failures: tuple[HostFailure, ...]
    warnings: tuple[Problem, ...] = ()
    host_seconds: Mapping[str, float] = field(default_factory=dict)  # per URI: connect + read (+ sampling)
    seconds: float = 0.0
    memory_sources: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # per URI: statistic -> VMs

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

    def sampling_started(self, uri: str, name: str, vms: int, seconds: float) -> None:
        """Waiting `seconds` between the two statistics samples of `vms` active VMs."""

    def host_done(self, uri: str, name: str, vms: int, seconds: float) -> None:
        """The host was read completely."""

    def host_failed(self, failure: HostFailure, seconds: float) -> None:
        """The host could not be read."""


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
              reporter: CollectReporter | None = None, sample_s: float = DEFAULT_SAMPLE_S) -> HostSnapshot:
    """Everything evac needs from one host; raises `ConnectError` if it cannot be reached.

    `virt_type` (kvm or qemu) picks the guest type whose CPU offer is read; by default kvm when the
    host has it. Use qemu for TCG hosts (the lab): CPU features differ between the two.
    `sample_s` is the window between the two statistics samples behind `cpu_used` (0: not measured).
    """
    reporter = reporter or CollectReporter()
    t0 = time.monotonic()
    # Read-write: domain capabilities, CPU expansion and dirty-rate calculation are refused read-only.
    conn = open_connection(uri, timeout_s=timeout_s)
    try:
        hostname = conn.getHostname()
        reporter.host_connected(uri, hostname, time.monotonic() - t0)
        return _read_connected(conn, uri, hostname, dirty_rate, dirty_rate_seconds, virt_type, reporter, sample_s)
    finally:
        conn.close()


def _read_connected(conn: Any, uri: str, hostname: str, dirty_rate: bool, dirty_rate_seconds: int,
                    virt_type: str | None, reporter: CollectReporter, sample_s: float) -> HostSnapshot:
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
    active_doms: list[tuple[Any, dx.DomainDefinition]] = []  # running or paused: their use is sampled
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
        if state.live:
            active_doms.append((dom, d))

    free_memory_mib = int(conn.getFreeMemory()) // 2**20
    # Last, so that a daemon lost during the waits below costs only the figures it owed. The use window
    # opens before the dirty-rate measurement, so that one wait serves both.
    first, first_why = _stats_sample(conn, [dom for dom, _ in active_doms], _FIRST_STATS, "statistics")
    if dirty_rate and live_doms:
        reporter.dirty_rate_started(uri, hostname, len(live_doms), dirty_rate_seconds)
        rates, problems = measure_dirty_rates(conn, live_doms, dirty_rate_seconds)
        warnings.extend(Problem(f"{hostname}: {p.where}", p.message, p.severity) for p in problems)
        domains = [replace(s, dirty_rate_mibs=rates.get(s.definition.name)) for s in domains]
    second, second_why = _second_sample(conn, uri, hostname, [dom for dom, _ in active_doms], first, first_why,
                                        sample_s, reporter)
    usages = {d.name: use.measure(d.name, first, second, hugepages=d.hugepages, first_missing=first_why,
                                  second_missing=second_why) for _, d in active_doms}
    domains = [replace(s, usage=usages.get(s.definition.name, use.not_running())) for s in domains]

    return HostSnapshot(
        uri=uri, hostname=hostname, cpus=int(info[2]), memory_mib=int(info[1]),
        free_memory_mib=free_memory_mib, capabilities=caps, host_cpu=default_offer.host_cpu,
        host_cpu_features=default_offer.features, pools=tuple(pools), networks=frozenset(networks), nics=tuple(nics),
        domains=tuple(domains), warnings=tuple(warnings), virttype=virttype,
        cpu_offers={t: o for t, o in cpu.offers.items() if t},
    )


_FIRST_STATS = libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
# Never wait behind a domain's job (a migration, a stuck monitor): what needs the job (balloon.rss and the
# guest's own figures) is then left out for that domain, and its memory figure falls back to balloon.current.
_STATS_NOWAIT = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT


def _stats_sample(conn: Any, doms: Sequence[Any], stats: int, what: str) -> tuple[use.StatsSample | None, str]:
    """One `domainListGetStats` call for all `doms` (one round trip per host, not per VM), or why not.
    Only active domains are asked: for a shut-off one libvirt 9.0 reports the cpu.time of its own
    daemon (no QEMU pid), which is not the VM's."""
    if not doms:
        return use.StatsSample(time.monotonic(), {}), ""
    t0 = time.monotonic()
    try:
        answer = conn.domainListGetStats(list(doms), stats, _STATS_NOWAIT)
    except libvirt.libvirtError as exc:
        return None, f"{what} not read ({exc.get_error_message()})"
    t1 = time.monotonic()
    return use.StatsSample((t0 + t1) / 2, {dom.name(): dict(st) for dom, st in answer}), ""


def _second_sample(conn: Any, uri: str, hostname: str, doms: Sequence[Any], first: use.StatsSample | None,
                   first_why: str, sample_s: float, reporter: CollectReporter) -> tuple[use.StatsSample | None, str]:
    """The CPU-time sample closing the window `sample_s` after `first`; no wait when it could not help."""
    if sample_s <= 0:
        return None, use.NO_SAMPLING
    if first is None:
        return None, first_why
    if not any("cpu.time" in st for st in first.stats.values()):
        return None, "no cpu.time in the domain statistics"
    remaining = first.at_s + sample_s - time.monotonic()
    if remaining > 0:
        reporter.sampling_started(uri, hostname, len(doms), remaining)
        time.sleep(remaining)
    return _stats_sample(conn, doms, libvirt.VIR_DOMAIN_STATS_CPU_TOTAL, "second sample")


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
            max_workers: int = 32, sample_s: float = DEFAULT_SAMPLE_S) -> CollectResult:
    """Reads every host in parallel (one thread and one connection each).

    `timeout_s` bounds connecting; `read_timeout_s` (plus the sampling window) bounds reading a host
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
    budget_s = timeout_s + read_timeout_s + max(sample_s, 0.0) + (dirty_rate_seconds + _DIRTY_RATE_MARGIN_S
                                                                  if dirty_rate else 0.0)

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
                                 virt_type=virt_type, reporter=reporter, sample_s=sample_s)
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
    sources = {snap.uri: use.source_counts(d.usage for d in snap.domains) for snap in snapshots}
    return CollectResult(inventory, tuple(failures), tuple(warnings), seconds, time.monotonic() - t0, sources)


__all__ = [
    "CPUOffer", "CollectReporter", "CollectResult", "ConnectFailure", "DomainSnapshot", "HostFailure",
    "HostSnapshot", "PoolSnapshot", "assemble", "collect", "measure_dirty_rates", "network_disk_storage_id",
    "read_host",
]
