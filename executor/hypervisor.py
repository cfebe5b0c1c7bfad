"""The one interface between evac and a hypervisor fleet (STYLE.md §7).

Two implementations: `executor.libvirt_hv.LibvirtHypervisor` (real libvirt, p2p live migration) and
`executor.sim_hv.SimulatedHypervisor` (an in-process fleet that follows the duration model in
accelerated time, for `evac demo`, what-ifs and large tests). The runner, the journal's resume
logic and the CLI only ever see this interface, so the simulated fleet exercises the same code path
as production.

Hosts are named as in the inventory; the implementation maps names to URIs. VMs are addressed by
name and, when known, uuid (the uuid wins: names can be reused across hosts).

Threading contract: `migrate` blocks for the whole migration and is called from one worker thread
per migration; `job_progress`, `abort`, `set_max_downtime`, `start_postcopy` and `suspend` are called
from other threads while it runs, and must be safe to call concurrently.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from planner.errors import EvacError


class DomainState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    ABSENT = "absent"  # the host answered: no such domain
    OTHER = "other"  # crashed, pmsuspended, ...: needs a human
    UNKNOWN = "unknown"  # the host did not answer: never act on this


@dataclass(frozen=True, slots=True)
class DomainStatus:
    host: str
    vm: str
    uuid: str | None
    state: DomainState
    reason: int = 0  # libvirt's state reason, e.g. VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
    persistent: bool = False
    job_active: bool = False  # a (migration) job is running on it


@dataclass(frozen=True, slots=True)
class JobProgress:
    """A snapshot of libvirt's job statistics for a running migration (units converted)."""

    elapsed_s: float
    data_total_mib: float
    data_processed_mib: float
    data_remaining_mib: float
    memory_iteration: int = 0
    rate_mibs: float = 0.0  # current transfer rate
    dirty_rate_mibs: float = 0.0
    disk_total_mib: float = 0.0
    disk_processed_mib: float = 0.0
    expected_downtime_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class MigrationSpec:
    """Everything one `virsh migrate` of the virsh guide decides, for one VM."""

    vm: str
    uuid: str | None
    source: str
    destination: str
    bandwidth_mibs: float  # VIR_MIGRATE_PARAM_BANDWIDTH (virsh migrate-setspeed)
    max_downtime_ms: float  # virsh migrate-setmaxdowntime
    auto_converge: bool = False  # VIR_MIGRATE_AUTO_CONVERGE (--auto-converge)
    live: bool = True  # False: offline migration of a shut-off domain's definition
    persistent: bool = True  # PERSIST_DEST + UNDEFINE_SOURCE
    copy_storage: tuple[str, ...] = ()  # NON_SHARED_DISK + MIGRATE_DISKS (--copy-storage-all --migrate-disks)
    postcopy_allowed: bool = False  # VIR_MIGRATE_POSTCOPY set, so the runner may switch to post-copy
    unsafe: bool = False  # VIR_MIGRATE_UNSAFE: only when the user asked in this run
    tls: bool = False  # VIR_MIGRATE_TLS
    parallel_connections: int = 0  # VIR_MIGRATE_PARALLEL with this many connections when > 0


@dataclass(frozen=True, slots=True)
class MigrationOutcome:
    duration_s: float
    downtime_ms: float | None = None  # measured on the destination when libvirt reports it
    transferred_mib: float | None = None


class HypervisorError(EvacError):
    """A hypervisor call failed; `code` is libvirt's error code (0 when not from libvirt)."""

    exit_code = 3

    def __init__(self, host: str, code: int, message: str) -> None:
        self.host = host
        self.code = code
        self.message = message
        super().__init__(f"{host}: {message} (libvirt error {code})" if code else f"{host}: {message}")


class MigrationFailed(EvacError):
    """One migration failed; the VM's real state must be looked up on both hosts afterwards."""

    exit_code = 1

    def __init__(self, vm: str, destination: str, libvirt_code: int, message: str) -> None:
        self.vm = vm
        self.destination = destination
        self.libvirt_code = libvirt_code
        self.message = message
        super().__init__(f"{vm} → {destination}: {message} (libvirt error {libvirt_code})")


class Clock:
    """Wall time. The simulated hypervisor supplies an accelerated clock; the runner uses whichever
    clock its hypervisor gives, so timeouts and progress work the same in both worlds."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Waits up to `seconds` of this clock's time for `event`; True if it was set."""
        return event.wait(max(0.0, seconds))

    def track(self, thread: threading.Thread) -> None:
        """`thread` (not started yet) takes part in the run. A clock whose time passes only while
        every thread of the run waits on it (`executor.sim_hv.VirtualClock`) must know it before it
        starts; wall time ignores it."""

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """The calling thread blocks on something other than this clock (joining threads that wait
        on it): time may pass meanwhile. Nothing to do for wall time."""
        yield


class Hypervisor(ABC):
    clock: Clock = Clock()

    @abstractmethod
    def hosts(self) -> list[str]:
        """Names of the hosts this hypervisor can reach."""

    @abstractmethod
    def domain_status(self, host: str, vm: str, uuid: str | None = None) -> DomainStatus:
        """Where and how a VM is on one host; ABSENT when the host says it has no such domain,
        UNKNOWN when the host cannot be asked (never raise for an unreachable host)."""

    @abstractmethod
    def list_domains(self, host: str) -> list[DomainStatus]:
        """Every domain on a host (active and defined)."""

    @abstractmethod
    def precheck(self, spec: MigrationSpec) -> list[str]:
        """What would make this migration fail or be unsafe, checked now on both hosts: hosts answer,
        VM running with no job, destination room, CPU compatibility, networks, shared storage.
        Empty list = go."""

    @abstractmethod
    def prepare_storage(self, spec: MigrationSpec, announce: Callable[[list[str]], None] | None = None) -> list[str]:
        """Creates the destination volumes for `spec.copy_storage` (same path, format and capacity);
        returns what was created so a failed migration can clean up exactly that. `announce(paths)`
        is called with every path before the first is created (the runner journals it, write-ahead)."""

    @abstractmethod
    def cleanup_storage(self, spec: MigrationSpec, created: list[str]) -> None:
        """Deletes destination volumes created by `prepare_storage` after a failed migration."""

    @abstractmethod
    def migrate(self, spec: MigrationSpec) -> MigrationOutcome:
        """Runs one migration to completion (blocking); raises MigrationFailed."""

    @abstractmethod
    def job_progress(self, host: str, vm: str, uuid: str | None = None) -> JobProgress | None:
        """The running migration job's statistics on the source, None when no job is active."""

    @abstractmethod
    def abort(self, host: str, vm: str, uuid: str | None = None) -> None:
        """Aborts the running job; the VM keeps running on its source (libvirt error 78 in migrate)."""

    @abstractmethod
    def set_max_downtime(self, host: str, vm: str, downtime_ms: float, uuid: str | None = None) -> None:
        """Raises (or lowers) the tolerated downtime of a running migration."""

    @abstractmethod
    def start_postcopy(self, host: str, vm: str, uuid: str | None = None) -> None:
        """Switches a running migration (started with postcopy_allowed) to post-copy."""

    @abstractmethod
    def suspend(self, host: str, vm: str, uuid: str | None = None) -> None:
        """Pauses the guest so its migration completes (virsh migrate --timeout's action)."""

    @abstractmethod
    def resume(self, host: str, vm: str, uuid: str | None = None) -> None:
        """Resumes a guest paused by `suspend` (on its source, after an aborted migration)."""

    def close(self) -> None:  # noqa: B027 - optional hook: implementations without connections keep it
        """Releases connections."""
