"""The real `Hypervisor`: libvirt, peer-to-peer live migration, exactly the virsh guide automated.

One `migrate(spec)` is what an operator types by hand (/work/shared/reference/virsh-guide.md):

    virsh migrate-setmaxdowntime VM <ms>
    virsh migrate --live --p2p --persistent --undefinesource [--auto-converge]
          [--copy-storage-all --migrate-disks vda] [--postcopy] [--tls] [--parallel ...]
          --bandwidth <MiB/s> VM <peer uri>

with `--unsafe` only when the run asked for it (never a default). A shut-off VM gets an offline
migration of its definition (`--offline --persistent --undefinesource`).

Connections: the test process reaches each host through its inventory `uri` (or an override: the
lab uses unix sockets), while the SOURCE daemon dials the destination through the peer URI (default:
the same uri; the lab needs qemu+tcp://<addr>/system there). Each migration opens its own
connection to the source, so a blocked `migrateToURI3` never holds up anything else; status, job
statistics, abort and friends share one connection per host, serialised by a per-host lock and
reopened when it dies. A libvirt event loop thread runs so libvirt's keepalive can notice a daemon
that stopped answering (a shared call then fails after ~`KEEPALIVE_INTERVAL_S × (COUNT + 1)`
instead of blocking forever).

libvirt 9.0 facts this relies on (NOTES §1, §5, measured in the lab):
* p2p: the source daemon drives the migration; a killed destination daemon makes migrate raise at
  once and the VM keeps running on the source; `abortJob` makes migrate raise 78.
* copy-storage (`VIR_MIGRATE_NON_SHARED_DISK`) needs the destination file to exist (same path,
  format, capacity) or a pool whose target path holds it: `prepare_storage` creates it, else error 49.
* offline migration (`VIR_MIGRATE_OFFLINE`) moves the definition only and refuses
  `VIR_MIGRATE_NON_SHARED_DISK`: a shut-off VM with local disks is refused by `precheck` (copy its
  disks by hand, or start it and migrate it live).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt

from executor import faults
from executor.connection import ConnectError, open_connection, silence_libvirt_stderr
from executor.domain_xml import DomainDisk, parse_domain, parse_pool
from executor.hypervisor import (
    DomainState,
    DomainStatus,
    Hypervisor,
    HypervisorError,
    JobProgress,
    MigrationFailed,
    MigrationOutcome,
    MigrationSpec,
)
from executor.libvirt_errors import CONNECTION_LOST, LibvirtCode, describe
from executor.uri import check_run_uris, migration_uri
from planner.errors import UsageError
from planner.model import Inventory

log = logging.getLogger(__name__)

MIB = 2**20
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
T = TypeVar("T")

_STATE = {
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.RUNNING,  # running, waiting on a resource
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
}

_event_loop_lock = threading.Lock()
_event_loop_started = False


def _start_event_loop() -> None:
    """libvirt's keepalive needs an event loop in the client; one daemon thread for the process."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _code(exc: libvirt.libvirtError) -> int:
    return int(exc.get_error_code() or 0)


def _message(exc: libvirt.libvirtError) -> str:
    return str(exc.get_error_message() or exc)


@dataclass(frozen=True, slots=True)
class _SourceFacts:
    uuid: str
    xml: str
    memory_bytes: int
    disks: list[DomainDisk]


def _pool_target(pool: Any) -> str | None:
    path = parse_pool(pool.XMLDesc(0)).target_path
    return os.path.normpath(path) if path else None


def _find_pool_for_dir(conn: Any, directory: str) -> Any | None:
    """The active storage pool whose target path is `directory` (dir/fs/netfs pools), or None."""
    directory = os.path.normpath(directory)
    for pool in conn.listAllStoragePools(0):
        with contextlib.suppress(libvirt.libvirtError):
            if pool.isActive() and _pool_target(pool) == directory:
                return pool
    return None


class LibvirtHypervisor(Hypervisor):
    def __init__(self, inventory: Inventory, *, uri_overrides: Mapping[str, str] | None = None,
                 peer_uris: Mapping[str, str] | None = None, allow_insecure_transport: bool = False,
                 connect_timeout_s: float = 10, tls: bool = False,
                 keepalive_interval_s: int = KEEPALIVE_INTERVAL_S, keepalive_count: int = KEEPALIVE_COUNT) -> None:
        overrides = dict(uri_overrides or {})
        peers = dict(peer_uris or {})
        problems = check_run_uris(inventory, peers, allow_insecure_transport=allow_insecure_transport,
                                  uri_overrides=overrides, peer_option="peer URI of")
        self._uri: dict[str, str] = {}
        self._peer_uri: dict[str, str] = {}
        self._migration_address: dict[str, str] = {}
        for host in inventory.hosts:
            uri = overrides.get(host.name) or host.uri
            if not uri:
                continue  # a host without a URI is not reachable: its status is UNKNOWN
            self._uri[host.name] = uri
            self._peer_uri[host.name] = peers.get(host.name, uri)
            if host.migration_address:
                self._migration_address[host.name] = host.migration_address
        if any(p.severity == "error" for p in problems):
            raise UsageError("libvirt URIs", problems)
        self.inventory = inventory
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls
        self.keepalive = (keepalive_interval_s, keepalive_count)
        self._conns: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in self._uri}
        silence_libvirt_stderr()
        _start_event_loop()

    # ------------------------------------------------------------------ connections

    def hosts(self) -> list[str]:
        return list(self._uri)

    def uri(self, host: str) -> str:
        return self._uri[host]

    def peer_uri(self, host: str) -> str:
        return self._peer_uri[host]

    def _open(self, host: str) -> Any:
        if host not in self._uri:
            raise HypervisorError(host, 0, "no libvirt URI for this host in the inventory")
        try:
            conn = open_connection(self._uri[host], timeout_s=self.connect_timeout_s)
        except ConnectError as e:
            raise HypervisorError(host, e.libvirt_code or 0, f"cannot connect: {e.code.value}: {e.reason}") from e
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(*self.keepalive)
        return conn

    @contextlib.contextmanager
    def _shared(self, host: str) -> Iterator[Any]:
        """The host's shared connection, held under its lock; dropped when a call finds it dead."""
        lock = self._locks.get(host)
        if lock is None:
            raise HypervisorError(host, 0, "no libvirt URI for this host in the inventory")
        with lock:
            conn = self._conns.get(host)
            if conn is not None:
                try:
                    alive = conn.isAlive()
                except libvirt.libvirtError:
                    alive = False
                if not alive:
                    self._drop(host)
                    conn = None
            if conn is None:
                conn = self._conns[host] = self._open(host)
            try:
                yield conn
            except libvirt.libvirtError as e:
                if _code(e) in CONNECTION_LOST:
                    self._drop(host)
                raise

    def _drop(self, host: str) -> None:
        conn = self._conns.pop(host, None)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def _call(self, host: str, fn: Callable[[Any], T]) -> T:
        """fn(shared connection); libvirt errors become HypervisorError naming the host."""
        try:
            with self._shared(host) as conn:
                return fn(conn)
        except libvirt.libvirtError as e:
            raise HypervisorError(host, _code(e), _message(e)) from e

    def close(self) -> None:
        for host in list(self._conns):
            with self._locks[host]:
                self._drop(host)

    @staticmethod
    def _lookup(conn: Any, vm: str, uuid: str | None) -> Any:
        # The uuid wins: names can be reused across hosts; without one, the name is all we have.
        return conn.lookupByUUIDString(uuid) if uuid else conn.lookupByName(vm)

    def _domain(self, host: str, vm: str, uuid: str | None, fn: Callable[[Any], T]) -> T:
        return self._call(host, lambda conn: fn(self._lookup(conn, vm, uuid)))

    # ------------------------------------------------------------------ status

    @staticmethod
    def _status_of(host: str, dom: Any) -> DomainStatus:
        state, reason = dom.state(0)
        job_active = _job_active(dom)
        return DomainStatus(host=host, vm=dom.name(), uuid=dom.UUIDString(),
                            state=_STATE.get(state, DomainState.OTHER), reason=int(reason),
                            persistent=bool(dom.isPersistent()), job_active=job_active)

    def domain_status(self, host: str, vm: str, uuid: str | None = None) -> DomainStatus:
        try:
            return self._domain(host, vm, uuid, lambda dom: self._status_of(host, dom))
        except HypervisorError as e:
            state = DomainState.ABSENT if e.code == LibvirtCode.NO_DOMAIN else DomainState.UNKNOWN
            if state is DomainState.UNKNOWN:
                log.info("%s: status of %s unknown: %s", host, vm, e)
            return DomainStatus(host=host, vm=vm, uuid=uuid, state=state)
        except Exception as e:  # never raise from here: the runner classifies UNKNOWN (NOTES §5)
            log.warning("%s: status of %s unknown: %r", host, vm, e)
            return DomainStatus(host=host, vm=vm, uuid=uuid, state=DomainState.UNKNOWN)

    def list_domains(self, host: str) -> list[DomainStatus]:
        return self._call(host, lambda conn: [self._status_of(host, d) for d in conn.listAllDomains(0)])

    def job_progress(self, host: str, vm: str, uuid: str | None = None) -> JobProgress | None:
        try:
            stats = self._domain(host, vm, uuid, lambda dom: dom.jobStats(0))
        except HypervisorError as e:
            if e.code in (LibvirtCode.NO_DOMAIN, LibvirtCode.OPERATION_INVALID):
                return None  # it finished meanwhile: undefined (42) or shut off (55 "domain is not running")
            raise
        return job_progress_from_stats(stats)

    # ------------------------------------------------------------------ job control

    def abort(self, host: str, vm: str, uuid: str | None = None) -> None:
        self._domain(host, vm, uuid, lambda dom: dom.abortJob())

    def set_max_downtime(self, host: str, vm: str, downtime_ms: float, uuid: str | None = None) -> None:
        self._domain(host, vm, uuid, lambda dom: dom.migrateSetMaxDowntime(max(1, round(downtime_ms)), 0))

    def start_postcopy(self, host: str, vm: str, uuid: str | None = None) -> None:
        self._domain(host, vm, uuid, lambda dom: dom.migrateStartPostCopy(0))

    def suspend(self, host: str, vm: str, uuid: str | None = None) -> None:
        self._domain(host, vm, uuid, lambda dom: dom.suspend())

    def resume(self, host: str, vm: str, uuid: str | None = None) -> None:
        try:
            self._domain(host, vm, uuid, lambda dom: dom.resume())
        except HypervisorError as e:
            # A guest already running (libvirt resumes a migrated guest that was running when its
            # migration began, even if it was suspended to finish it) is what the caller wanted.
            if e.code != LibvirtCode.OPERATION_INVALID or self.domain_status(host, vm, uuid).state \
                    is not DomainState.RUNNING:
                raise

    # ------------------------------------------------------------------ precheck

    def precheck(self, spec: MigrationSpec) -> list[str]:
        problems: list[str] = []
        src, dst = spec.source, spec.destination
        for host in (src, dst):
            try:
                self._call(host, lambda conn: conn.getLibVersion())
            except HypervisorError as e:
                problems.append(f"{host} does not answer: {e.message}")
        if problems:
            return problems
        # One host's lock at a time: a concurrent precheck in the other direction must not deadlock.
        try:
            facts = self._call(src, lambda conn: self._precheck_source(conn, spec, problems))
        except HypervisorError as e:
            if e.code == LibvirtCode.NO_DOMAIN:
                return [f"{src}: VM {spec.vm} not found" + (f" (uuid {spec.uuid})" if spec.uuid else "")]
            return [*problems, f"{src}: checking VM {spec.vm} failed: {e.message} ({describe(e.code)})"]
        try:
            self._call(dst, lambda conn: self._precheck_destination(conn, spec, facts, problems))
        except HypervisorError as e:
            problems.append(f"{dst}: check failed: {e.message} ({describe(e.code)})")
        return problems

    def _precheck_source(self, conn: Any, spec: MigrationSpec, problems: list[str]) -> _SourceFacts:
        src = spec.source
        dom = self._lookup(conn, spec.vm, spec.uuid)
        state = _STATE.get(dom.state(0)[0], DomainState.OTHER)
        if spec.live and state not in (DomainState.RUNNING, DomainState.PAUSED):
            problems.append(f"{src}: VM {spec.vm} is {state.value}, a live migration needs it running")
        if not spec.live:
            if state is not DomainState.SHUTOFF:
                problems.append(f"{src}: VM {spec.vm} is {state.value}, an offline migration needs it shut off")
            if not dom.isPersistent():
                problems.append(f"{src}: VM {spec.vm} is transient: nothing to migrate offline")
            if spec.copy_storage:
                problems.append(f"{src}: VM {spec.vm} is shut off and has local disks "
                                f"({', '.join(spec.copy_storage)}): libvirt's offline migration moves the "
                                "definition only and cannot copy storage; start it and migrate it live, or "
                                "copy the disks by hand")
        if _job_active(dom):
            problems.append(f"{src}: VM {spec.vm} already has a job running (another migration or backup?)")
        xml = dom.XMLDesc(0)
        return _SourceFacts(uuid=spec.uuid or dom.UUIDString(), xml=xml, memory_bytes=int(dom.maxMemory()) * 1024,
                            disks=list(parse_domain(xml).data_disks))

    def _precheck_destination(self, conn: Any, spec: MigrationSpec, facts: _SourceFacts,
                              problems: list[str]) -> None:
        dst, vm = spec.destination, spec.vm
        uuid, xml, memory_bytes, disks = facts.uuid, facts.xml, facts.memory_bytes, facts.disks
        for how, key in (("uuid", uuid), ("name", vm)):
            try:
                other = conn.lookupByUUIDString(key) if how == "uuid" else conn.lookupByName(key)
                problems.append(f"{dst}: already has a domain with this {how} ({other.name()}, {key})")
                break
            except libvirt.libvirtError as e:
                if _code(e) != LibvirtCode.NO_DOMAIN:
                    raise
        if spec.live:
            free_bytes = int(conn.getFreeMemory())
            if free_bytes < memory_bytes:
                problems.append(f"{dst}: {free_bytes / MIB:.0f} MiB free memory, VM {vm} needs "
                                f"{memory_bytes / MIB:.0f} MiB")
        cpu_problem = _cpu_problem(conn, xml)
        if cpu_problem:
            problems.append(f"{dst}: {cpu_problem}")
        problems.extend(f"{dst}: {p}" for p in _network_problems(conn, xml))
        for disk in disks:
            if disk.type not in ("file", "block") or not disk.source:
                continue  # network disks (nbd, rbd, iscsi...) are shared by nature
            directory = os.path.dirname(disk.source)
            if disk.target in spec.copy_storage:
                if _vol_exists(conn, disk.source):
                    problems.append(f"{dst}: {disk.source} already exists; evac does not overwrite a file it did "
                                    f"not create ({vm}'s disk {disk.target}: remove it, or migrate by hand)")
                elif _find_pool_for_dir(conn, directory) is None:
                    problems.append(f"{dst}: no active storage pool with target path {directory} to create "
                                    f"{vm}'s disk {disk.target} for copy-storage (define a dir pool there)")
                continue
            pool = _find_pool_for_dir(conn, directory)
            if pool is None:
                problems.append(f"{dst}: no active storage pool with target path {directory}: {vm}'s disk "
                                f"{disk.target} ({disk.source}) would not be reachable there")
                continue
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)
            if not _vol_exists(conn, disk.source):
                problems.append(f"{dst}: {vm}'s disk {disk.target} ({disk.source}) is not visible in pool "
                                f"{pool.name()}: the storage is not shared (use copy-storage)")

    # ------------------------------------------------------------------ storage for copy-storage

    def prepare_storage(self, spec: MigrationSpec, announce: Callable[[list[str]], None] | None = None) -> list[str]:
        wanted = set(spec.copy_storage)
        disks = self._call(spec.source, lambda conn: self._source_disks(conn, spec, wanted))
        missing = wanted - {d[0].target for d in disks}
        if missing:
            raise HypervisorError(spec.source, 0, f"VM {spec.vm} has no disk {', '.join(sorted(missing))} to copy")
        if announce is not None:
            announce([d.source for d, _ in disks if d.source])
        created: list[str] = []
        try:
            for disk, capacity_bytes in disks:
                created.append(self._call(spec.destination, functools.partial(
                    self._create_volume, spec=spec, disk=disk, capacity_bytes=capacity_bytes)))
        except BaseException:
            self.cleanup_storage(spec, created)
            raise
        return created

    def _source_disks(self, conn: Any, spec: MigrationSpec, wanted: set[str]) -> list[tuple[DomainDisk, int]]:
        dom = self._lookup(conn, spec.vm, spec.uuid)
        out = []
        for disk in parse_domain(dom.XMLDesc(0)).data_disks:
            if disk.target not in wanted:
                continue
            if disk.type not in ("file", "block") or not disk.source:
                raise HypervisorError(spec.source, 0, f"{spec.vm}'s disk {disk.target} is a {disk.type} disk: "
                                                      "copy-storage creates file volumes only")
            capacity_bytes = int(dom.blockInfo(disk.target, 0)[0])
            out.append((disk, capacity_bytes))
        return out

    def _create_volume(self, conn: Any, spec: MigrationSpec, disk: DomainDisk, capacity_bytes: int) -> str:
        dst = spec.destination
        assert disk.source is not None
        directory, volume = os.path.split(disk.source)
        pool = _find_pool_for_dir(conn, directory)
        if pool is None:
            raise HypervisorError(dst, LibvirtCode.NO_STORAGE_POOL,
                                  f"no active storage pool with target path {directory} to create {disk.source} "
                                  f"({spec.vm}'s disk {disk.target}); define a dir pool there")
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
        if _vol_exists(conn, disk.source):
            raise HypervisorError(dst, 0, f"{disk.source} already exists; evac does not overwrite a file it did "
                                          "not create (remove it, or migrate by hand)")
        fmt = disk.format or "raw"
        vol = pool.createXML(f"<volume><name>{_xml_text(volume)}</name>"
                             f"<capacity unit='bytes'>{capacity_bytes}</capacity><allocation>0</allocation>"
                             f"<target><format type='{_xml_text(fmt)}'/></target></volume>", 0)
        path: str = vol.path()
        log.info("%s: created %s (%s, %d bytes) for %s", dst, path, fmt, capacity_bytes, spec.vm)
        faults.point("volume_created")
        return path

    def cleanup_storage(self, spec: MigrationSpec, created: list[str]) -> None:
        """Best effort: a volume that cannot be deleted is logged, never raised (the runner is unwinding)."""
        for path in created:
            try:
                self._call(spec.destination, functools.partial(_delete_volume, path=path))
            except HypervisorError as e:
                if e.code != LibvirtCode.NO_STORAGE_VOL:
                    log.warning("%s: could not delete %s created for %s: %s", spec.destination, path, spec.vm, e)

    # ------------------------------------------------------------------ migrate

    def migration_flags(self, spec: MigrationSpec, persistent: bool) -> int:
        if not spec.live:
            return (libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
        if persistent:
            flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if spec.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if spec.copy_storage:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        if spec.postcopy_allowed:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        if spec.tls or self.tls:
            flags |= libvirt.VIR_MIGRATE_TLS
        if spec.unsafe:
            flags |= libvirt.VIR_MIGRATE_UNSAFE  # only ever from the run's --unsafe (NOTES §5)
        if spec.parallel_connections > 0:
            flags |= libvirt.VIR_MIGRATE_PARALLEL
        return flags

    def migration_params(self, spec: MigrationSpec) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if spec.bandwidth_mibs > 0:
            # MiB/s, an integer for libvirt: round, but never to 0 (which means "unlimited").
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max(1, round(spec.bandwidth_mibs))
            if spec.postcopy_allowed and spec.live:
                # The pre-copy cap does not govern the post-copy phase (measured: a capped 128 MiB guest
                # finished at full speed after migrateStartPostCopy): cap it separately.
                params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = max(1, round(spec.bandwidth_mibs))
        address = self._migration_address.get(spec.destination)
        if address and spec.live:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = migration_uri(address)
        if spec.copy_storage and spec.live:
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(spec.copy_storage)
        if spec.parallel_connections > 0 and spec.live:
            params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(spec.parallel_connections)
        return params

    def migrate(self, spec: MigrationSpec) -> MigrationOutcome:
        t0 = time.monotonic()
        try:
            conn = self._open(spec.source)
        except HypervisorError as e:
            raise MigrationFailed(spec.vm, spec.destination, e.code, e.message) from e
        try:
            try:
                dom = self._lookup(conn, spec.vm, spec.uuid)
                persistent = bool(dom.isPersistent())
                flags = self.migration_flags(spec, persistent)
                params = self.migration_params(spec)
                if spec.live and spec.max_downtime_ms > 0:
                    dom.migrateSetMaxDowntime(max(1, round(spec.max_downtime_ms)), 0)
                log.info("%s → %s: migrateToURI3(%s, %s, flags=%#x)", spec.vm, spec.destination,
                         self._peer_uri[spec.destination], params, flags)
                dom.migrateToURI3(self._peer_uri[spec.destination], params, flags)
            except libvirt.libvirtError as e:
                raise MigrationFailed(spec.vm, spec.destination, _code(e), _message(e)) from e
            except KeyError as e:
                raise MigrationFailed(spec.vm, spec.destination, 0, f"no libvirt URI for host {e}") from e
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        duration_s = time.monotonic() - t0
        downtime_ms, transferred_mib = self._completed_figures(spec)
        return MigrationOutcome(duration_s=duration_s, downtime_ms=downtime_ms, transferred_mib=transferred_mib)

    def _completed_figures(self, spec: MigrationSpec) -> tuple[float | None, float | None]:
        """Real downtime and bytes sent, from the destination's completed-job statistics (when it has them)."""
        if not spec.live:
            return None, None
        try:
            stats = self._domain(spec.destination, spec.vm, spec.uuid,
                                 lambda dom: dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
        except HypervisorError as e:
            log.info("%s: no completed-job statistics for %s: %s", spec.destination, spec.vm, e)
            return None, None
        downtime = stats.get("downtime")
        processed = stats.get("data_processed")
        return (float(downtime) if downtime is not None else None,
                float(processed) / MIB if processed is not None else None)


def job_progress_from_stats(stats: Mapping[str, Any]) -> JobProgress | None:
    """libvirt's jobStats dict (bytes, ms, pages/s) as a JobProgress (MiB, s, MiB/s); None without a job."""
    if int(stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE)) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    page_bytes = float(stats.get("memory_page_size", 4096) or 4096)
    return JobProgress(
        elapsed_s=float(stats.get("time_elapsed", 0)) / 1000,
        data_total_mib=float(stats.get("data_total", 0)) / MIB,
        data_processed_mib=float(stats.get("data_processed", 0)) / MIB,
        data_remaining_mib=float(stats.get("data_remaining", 0)) / MIB,
        memory_iteration=int(stats.get("memory_iteration", 0)),
        rate_mibs=float(stats.get("memory_bps", 0)) / MIB,
        dirty_rate_mibs=float(stats.get("memory_dirty_rate", 0)) * page_bytes / MIB,
        disk_total_mib=float(stats.get("disk_total", 0)) / MIB,
        disk_processed_mib=float(stats.get("disk_processed", 0)) / MIB,
        expected_downtime_ms=float(stats.get("downtime", 0)),
    )


def _job_active(dom: Any) -> bool:
    try:
        return bool(dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE)
    except libvirt.libvirtError as e:
        if _code(e) in _UNSUPPORTED or _code(e) == LibvirtCode.OPERATION_INVALID:
            return False  # no jobs in this driver (test:///), or a shut-off domain (55): none running
        raise


def _delete_volume(conn: Any, path: str) -> None:
    conn.storageVolLookupByPath(path).delete(0)


def _vol_exists(conn: Any, path: str) -> bool:
    try:
        conn.storageVolLookupByPath(path)
        return True
    except libvirt.libvirtError as e:
        if _code(e) in (LibvirtCode.NO_STORAGE_VOL, LibvirtCode.NO_STORAGE_POOL):
            return False
        raise


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


_UNSUPPORTED = (LibvirtCode.NO_SUPPORT, LibvirtCode.ARGUMENT_UNSUPPORTED, LibvirtCode.OPERATION_UNSUPPORTED)


def _cpu_problem(conn: Any, xml: str) -> str | None:
    """Asks the destination whether it can run the VM's CPU; None when it can or nothing is specified.

    A domain without a `<cpu>` element (or host-passthrough) names no model to compare: skipped. A
    running domain's XML shows host-model expanded to its concrete model, which is compared."""
    domain = parse_domain(xml)
    cpu = domain.cpu
    if not cpu.names_a_cpu:
        return None
    try:
        result = conn.compareHypervisorCPU(None, domain.arch, None, domain.domain_type, cpu.xml, 0)
    except libvirt.libvirtError as e:
        if _code(e) in _UNSUPPORTED:
            return None
        if _code(e) == LibvirtCode.CPU_INCOMPATIBLE:
            return f"CPU incompatible: {_message(e)}"
        return f"CPU comparison failed: {_message(e)}"
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        model = cpu.model or "the VM's CPU"
        return f"CPU incompatible: cannot provide {model} with the VM's features"
    return None


def _network_problems(conn: Any, xml: str) -> list[str]:
    problems = []
    bridges: set[str] | None = None
    for iface in parse_domain(xml).host_networks:
        name = iface.source or ""
        if iface.type == "network":
            try:
                net = conn.networkLookupByName(name)
                if not net.isActive():
                    problems.append(f"network {name} is defined but not active")
            except libvirt.libvirtError as e:
                if _code(e) != LibvirtCode.NO_NETWORK:
                    raise
                problems.append(f"no network {name}")
        else:
            if bridges is None:
                bridges = set()
                for net in conn.listAllNetworks(0):
                    with contextlib.suppress(libvirt.libvirtError):
                        bridges.add(net.bridgeName())
            if name in bridges:
                continue
            try:
                conn.interfaceLookupByName(name)
            except libvirt.libvirtError as e:
                if _code(e) in _UNSUPPORTED:
                    continue  # no interface backend on that host: cannot tell, do not block
                problems.append(f"no bridge {name}")
    return problems
