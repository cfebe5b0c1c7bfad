"""An in-process fleet behind the `Hypervisor` interface, in accelerated time.

`SimulatedHypervisor(inventory, speedup=100, faults=[...])` keeps the domains of every host of the
inventory and runs each migration the way QEMU pre-copy does (planner.duration's model, NOTES §2):
a fixed cost, copied disks first, then memory rounds at the migration's own bandwidth cap, each
round re-sending what the guest dirtied meanwhile, until the rest fits in the max downtime. Time is
its own clock, so the runner's timeouts, polling and backoff behave exactly as against libvirt, only
quicker: `SimClock` (`speedup` times faster than wall time) or, with `virtual_time=True`,
`VirtualClock` (time passes only while every thread of the run waits: the executor's own work takes
no simulated time and a run that follows the model reproduces its plan exactly).

Real concurrency semantics: `migrate` blocks its worker thread; `job_progress`, `abort`,
`set_max_downtime`, `suspend`, `start_postcopy` act on the running job from other threads; the
destination holds a paused incoming domain while the job runs; an aborted or failed job leaves
the VM on its source (libvirt p2p semantics, NOTES §1, §5).

Faults (`faults=`) make the runner's failure paths testable: `FailMigration` (libvirt code N on
given attempts), `HostDown` (a host stops answering, from the start or later), `NeverConverges`
(dirties faster than any cap, auto-converge cannot save it), `Hang` (no progress at all),
`SplitBrain` (fails leaving the guest paused on both hosts), `Slow` (runs at a fraction of its cap).

Not simulated: bandwidth sharing on NICs and links beyond each migration's own cap (the plan and
the monitor already keep the sum of caps within capacity), CPU compatibility, networks and
storage pools in `precheck`, and real downtime measurement (the model's figure is reported).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from executor import faults
from executor.hypervisor import (
    Clock,
    DomainState,
    DomainStatus,
    Hypervisor,
    HypervisorError,
    JobProgress,
    MigrationFailed,
    MigrationOutcome,
    MigrationSpec,
)
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.model import Inventory, VMState

# libvirt codes the simulation raises, as the real daemon would (NOTES §5).
OPERATION_ABORTED = 78
RPC = 39
OPERATION_INVALID = 55
INTERNAL = 1
PAUSED_USER = 1  # VIR_DOMAIN_PAUSED_USER
PAUSED_MIGRATION = 2  # VIR_DOMAIN_PAUSED_MIGRATION (incoming domain)
PAUSED_POSTCOPY = 12  # VIR_DOMAIN_PAUSED_POSTCOPY (source side after the switch)


class SimClock(Clock):
    """Simulated seconds run `speedup` times faster than wall seconds."""

    def __init__(self, speedup: float = 1.0) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = speedup
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speedup

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / self.speedup)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds) / self.speedup)


class VirtualClock(Clock):
    """Simulated seconds that pass only while every thread of the run waits on this clock.

    With `SimClock` a simulated second is a fixed slice of wall time, so whatever the executor does
    between two waits (journal writes, thread starts, Python itself) costs `speedup` times its wall
    time in simulated time: at 20× a 3 ms journal commit is 60 simulated ms, and the demo's run took
    4 % longer than its plan with no cause in the plan or the model. Here the executor's own work takes
    no simulated time, as it takes next to none against migrations of seconds on a real fleet: time
    jumps to the earliest deadline only once every participant waits (discrete-event simulation
    driven by the real threads), so a run that follows the model reproduces its plan exactly.

    Participants: every thread that has waited on the clock, each thread handed to `track` before it
    starts (the runner's workers) and the thread that handed it, until they end. A participant that
    blocks on anything else for long must say so with `idle()`, or time stops. `speedup` paces the
    jumps against wall time (the demo stays watchable); `math.inf`: as fast as the threads go.
    """

    _RECHECK_S = 0.002  # wall seconds between a waiter's looks at the clock (an event set wakes it at once)

    def __init__(self, speedup: float = math.inf) -> None:
        if not speedup > 0:
            raise ValueError("speedup must be positive")
        self.speedup = speedup
        self._t = 0.0
        self._lock = threading.Lock()
        self._participants: dict[int, threading.Thread] = {}  # by id(thread): known before they start
        self._waiting: dict[int, tuple[float, threading.Event]] = {}  # by id(thread): deadline, event
        self._wall0 = time.monotonic()
        self._never = threading.Event()

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        self.wait(self._never, seconds)

    def track(self, thread: threading.Thread) -> None:
        me = threading.current_thread()
        with self._lock:
            self._participants[id(thread)] = thread
            self._participants[id(me)] = me  # the thread starting participants takes part (it may start more)

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        me = threading.current_thread()
        with self._lock:
            self._waiting[id(me)] = (math.inf, self._never)
        try:
            yield
        finally:
            with self._lock:
                self._waiting.pop(id(me), None)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        me = threading.current_thread()
        with self._lock:
            self._participants[id(me)] = me
            deadline = self._t + max(0.0, seconds)
            self._waiting[id(me)] = (deadline, event)
        try:
            while not event.is_set():
                with self._lock:
                    if self._t < deadline:
                        self._advance()
                    if self._t >= deadline:
                        return event.is_set()
                event.wait(self._RECHECK_S)
            return True
        finally:
            with self._lock:
                self._waiting.pop(id(me), None)

    def _advance(self) -> None:
        """Moves time to the earliest deadline if nobody has anything to do now (under the lock)."""
        for deadline, event in self._waiting.values():
            if deadline <= self._t or event.is_set():
                return  # a waiter is due at this instant and has not run yet
        for key, thread in list(self._participants.items()):
            if thread.ident is not None and not thread.is_alive():
                del self._participants[key]  # ended
            elif key not in self._waiting:
                return  # busy (or tracked and not started yet): it acts at this instant
        target = min((d for d, _ in self._waiting.values()), default=math.inf)
        if math.isinf(target):
            return
        if not math.isinf(self.speedup):  # paced: never ahead of wall time × speedup
            target = min(target, (time.monotonic() - self._wall0) * self.speedup)
        self._t = max(self._t, target)


# ---------------------------------------------------------------- faults


@dataclass(frozen=True, slots=True)
class FailMigration:
    vm: str
    code: int
    attempts: frozenset[int] = frozenset({1})
    message: str = "injected failure"


@dataclass(frozen=True, slots=True)
class HostDown:
    host: str
    after_s: float = 0.0  # simulated seconds after the fleet was created
    until_s: float | None = None  # answers again from then on (a daemon restarted); None: for good


@dataclass(frozen=True, slots=True)
class NeverConverges:
    vm: str


@dataclass(frozen=True, slots=True)
class Hang:
    vm: str


@dataclass(frozen=True, slots=True)
class SplitBrain:
    vm: str


@dataclass(frozen=True, slots=True)
class Slow:
    vm: str
    factor: float  # 2.0 = takes twice as long as its cap allows


Fault = FailMigration | HostDown | NeverConverges | Hang | SplitBrain | Slow


@dataclass
class _Domain:
    name: str
    uuid: str | None
    state: DomainState
    persistent: bool
    reason: int = 0
    job_active: bool = False


@dataclass
class _Job:
    spec: MigrationSpec
    started_s: float
    memory_mib: float
    disk_mib: float
    dirty_rate_mibs: float
    bandwidth_mibs: float
    max_downtime_ms: float
    poke: threading.Event = field(default_factory=threading.Event)
    aborted: bool = False
    suspended: bool = False
    postcopy: bool = False
    processed_mib: float = 0.0
    iteration: int = 0
    phase_started_s: float = 0.0
    phase_mib: float = 0.0  # what the current transfer phase sends
    round_mib: float = 0.0  # memory left to send in this round (for data_remaining)
    in_disk_phase: bool = False


@dataclass
class _Orphan:
    """A migration job nobody's client waits for any more (the evac that started it died): the source
    daemon drives it on (p2p, NOTES §5) and it ends by itself at `ends_s`, unless aborted."""

    vm: str
    source: str
    destination: str
    started_s: float
    ends_s: float
    completes: bool
    memory_mib: float
    aborted: bool = False


class SimulatedHypervisor(Hypervisor):
    def __init__(self, inventory: Inventory, *, speedup: float = 100.0, faults: Iterable[Fault] = (),
                 model: DurationModel = DEFAULT_MODEL, jitter: float = 0.0, seed: int = 0,
                 state_path: str | Path | None = None, complete_inflight: bool = True,
                 inflight_runs_s: float = 0.0, virtual_time: bool = False) -> None:
        self.inventory = inventory
        # `virtual_time`: simulated time passes only while every thread of the run waits (VirtualClock,
        # exact; `speedup` paces it); otherwise it is wall time × `speedup` (SimClock: tests that act on
        # the fleet from outside the run, at wall-clock moments, need that).
        self.clock: SimClock | VirtualClock = VirtualClock(speedup) if virtual_time else SimClock(speedup)
        self.model = model
        self.faults = list(faults)
        self.jitter = jitter
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._domains: dict[str, dict[str, _Domain]] = {h.name: {} for h in inventory.hosts}
        for v in inventory.vms:
            state = {VMState.RUNNING: DomainState.RUNNING, VMState.PAUSED: DomainState.PAUSED,
                     VMState.SHUTOFF: DomainState.SHUTOFF}[v.state]
            self._domains.setdefault(v.host, {})[v.name] = _Domain(v.name, v.uuid, state, v.persistent)
        self._down: set[str] = set()
        self._jobs: dict[str, _Job] = {}  # by VM name
        self._orphans: dict[str, _Orphan] = {}  # by VM name
        self._attempts: dict[str, int] = {}
        self.volumes: dict[str, set[str]] = {h.name: set() for h in inventory.hosts}
        self.migrate_calls: list[MigrationSpec] = []
        # `state_path`: the fleet outlives the process (crash tests): domains are saved at every change
        # and loaded here. Jobs that were in flight when the process died either completed (p2p: the
        # source daemon drives the migration without the client, `complete_inflight`) or failed; with
        # `inflight_runs_s` > 0 they are still running when the fleet is loaded and end that many
        # simulated seconds later (what a resume right after a crash finds, NOTES §5).
        self.state_path = Path(state_path) if state_path is not None else None
        if self.state_path is not None and self.state_path.exists():
            self._load(complete_inflight, inflight_runs_s)

    def _save(self) -> None:
        if self.state_path is None:
            return
        doc = {h: [asdict(d) for d in doms.values()] for h, doms in self._domains.items()}
        jobs = {vm: [j.spec.source, j.spec.destination] for vm, j in self._jobs.items()}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"domains": doc, "jobs": jobs}))
        os.replace(tmp, self.state_path)

    def _load(self, complete_inflight: bool, inflight_runs_s: float) -> None:
        assert self.state_path is not None
        doc = json.loads(self.state_path.read_text())
        self._domains = {h: {d["name"]: _Domain(**{**d, "state": DomainState(d["state"])}) for d in doms}
                         for h, doms in doc["domains"].items()}
        for vm, (src, dst) in doc["jobs"].items():
            source_dom = self._domains[src].get(vm)
            if source_dom is not None:
                source_dom.job_active = False
            self._domains[dst].pop(vm, None)
            if source_dom is None:
                continue
            if inflight_runs_s > 0:
                self.orphan(vm, dst, inflight_runs_s, completes=complete_inflight)
            elif complete_inflight:
                del self._domains[src][vm]
                self._domains[dst][vm] = _Domain(vm, source_dom.uuid, DomainState.RUNNING, source_dom.persistent)

    # ------------------------------------------------------------------ jobs whose client died

    def orphan(self, vm: str, destination: str, runs_s: float, *, completes: bool = True) -> None:
        """Starts a migration of `vm` to `destination` that no client waits for, as if the evac that
        called migrate had been SIGKILLed: the source shows the job, the destination the paused incoming
        domain, and after `runs_s` simulated seconds it completes (or fails: VM back to normal on its
        source). `abort` on the source ends it at once, the VM on its source."""
        with self._lock:
            source = next(h for h, doms in self._domains.items() if vm in doms)
            dom = self._domains[source][vm]
            dom.job_active = True
            self._domains[destination][vm] = _Domain(vm, dom.uuid, DomainState.PAUSED, False, PAUSED_MIGRATION)
            now = self.clock.now()
            memory = self.inventory.vm[vm].memory_mib if vm in self.inventory.vm else 0.0
            self._orphans[vm] = _Orphan(vm, source, destination, now, now + runs_s, completes, memory)

    def _settle_orphans(self) -> None:
        """Ends the orphan jobs whose time has come (called under the lock by every query)."""
        now = self.clock.now()
        for vm, o in list(self._orphans.items()):
            if not o.aborted and now < o.ends_s:
                continue
            del self._orphans[vm]
            src = self._domains[o.source].get(vm)
            self._domains[o.destination].pop(vm, None)
            if src is None:
                continue
            src.job_active = False
            if o.completes and not o.aborted:
                del self._domains[o.source][vm]
                self._domains[o.destination][vm] = _Domain(vm, src.uuid, DomainState.RUNNING, src.persistent)
            self._save()

    # ------------------------------------------------------------------ faults and inspection

    def _fault(self, kind: type, vm: str) -> Fault | None:
        for f in self.faults:
            if isinstance(f, kind) and getattr(f, "vm", None) == vm:
                return f
        return None

    def is_down(self, host: str) -> bool:
        if host in self._down:
            return True
        now = self.clock.now()
        return any(isinstance(f, HostDown) and f.host == host and now >= f.after_s
                   and (f.until_s is None or now < f.until_s) for f in self.faults)

    def set_host_down(self, host: str) -> None:
        """Takes a host off the network now: its jobs fail, it answers nothing."""
        with self._lock:
            self._down.add(host)
            for job in self._jobs.values():
                if host in (job.spec.source, job.spec.destination):
                    job.poke.set()

    def set_host_up(self, host: str) -> None:
        """The host answers again (its daemon restarted); its domains are as it left them."""
        with self._lock:
            self._down.discard(host)

    def where(self, vm: str) -> list[tuple[str, DomainState]]:
        """Every host holding a domain of this name, with its state (for "nothing is lost" checks)."""
        with self._lock:
            self._settle_orphans()
            return [(h, doms[vm].state) for h, doms in self._domains.items() if vm in doms]

    # ------------------------------------------------------------------ Hypervisor: queries

    def hosts(self) -> list[str]:
        return [h for h in self._domains if not self.is_down(h)]

    def domain_status(self, host: str, vm: str, uuid: str | None = None) -> DomainStatus:
        if self.is_down(host) or host not in self._domains:
            return DomainStatus(host, vm, uuid, DomainState.UNKNOWN)
        with self._lock:
            self._settle_orphans()
            dom = self._find(host, vm, uuid)
            if dom is None:
                return DomainStatus(host, vm, uuid, DomainState.ABSENT)
            return DomainStatus(host, dom.name, dom.uuid, dom.state, dom.reason, dom.persistent, dom.job_active)

    def list_domains(self, host: str) -> list[DomainStatus]:
        if self.is_down(host):
            raise HypervisorError(host, RPC, "unable to connect to server")
        with self._lock:
            self._settle_orphans()
            return [DomainStatus(host, d.name, d.uuid, d.state, d.reason, d.persistent, d.job_active)
                    for d in self._domains.get(host, {}).values()]

    def _find(self, host: str, vm: str, uuid: str | None) -> _Domain | None:
        doms = self._domains.get(host, {})
        if uuid is not None:
            return next((d for d in doms.values() if d.uuid == uuid), None)
        return doms.get(vm)

    def precheck(self, spec: MigrationSpec) -> list[str]:
        problems = []
        for host in (spec.source, spec.destination):
            if self.is_down(host):
                problems.append(f"{host} does not answer")
        if problems:
            return problems
        with self._lock:
            self._settle_orphans()
            dom = self._find(spec.source, spec.vm, spec.uuid)
            if dom is None:
                problems.append(f"{spec.vm} is not on {spec.source}")
            else:
                want = {DomainState.RUNNING, DomainState.PAUSED} if spec.live else {DomainState.SHUTOFF}
                if dom.state not in want:
                    problems.append(f"{spec.vm} is {dom.state} on {spec.source}")
                if dom.job_active:
                    problems.append(f"{spec.vm} already has a job running")
            if self._find(spec.destination, spec.vm, spec.uuid) is not None:
                problems.append(f"{spec.vm} already exists on {spec.destination}")
        return problems

    def prepare_storage(self, spec: MigrationSpec, announce: Callable[[list[str]], None] | None = None) -> list[str]:
        created = [f"/var/lib/libvirt/images/{spec.vm}-{t}" for t in spec.copy_storage]
        if announce is not None:
            announce(created)
        with self._lock:
            self.volumes.setdefault(spec.destination, set()).update(created)
        faults.point("volume_created")
        return created

    def cleanup_storage(self, spec: MigrationSpec, created: list[str]) -> None:
        with self._lock:
            self.volumes.get(spec.destination, set()).difference_update(created)

    # ------------------------------------------------------------------ Hypervisor: the migration

    def migrate(self, spec: MigrationSpec) -> MigrationOutcome:
        self.migrate_calls.append(spec)
        vm = self.inventory.vm[spec.vm]
        job = self._begin(spec, vm.memory_mib, vm.dirty_rate_mibs)
        try:
            return self._run(job)
        finally:
            with self._lock:
                self._jobs.pop(spec.vm, None)
                src = self._find(spec.source, spec.vm, spec.uuid)
                if src is not None:
                    src.job_active = False
                self._save()

    def _begin(self, spec: MigrationSpec, memory_mib: float, dirty_rate_mibs: float) -> _Job:
        with self._lock:
            self._settle_orphans()
            attempt = self._attempts.get(spec.vm, 0) + 1
            self._attempts[spec.vm] = attempt
            if self.is_down(spec.source):
                raise MigrationFailed(spec.vm, spec.destination, RPC, f"{spec.source}: unable to connect to server")
            src = self._find(spec.source, spec.vm, spec.uuid)
            if src is None:
                raise MigrationFailed(spec.vm, spec.destination, 42, f"domain {spec.vm} not found on {spec.source}")
            if src.job_active:
                raise MigrationFailed(spec.vm, spec.destination, 68,
                                      "Timed out during operation: cannot acquire state change lock")
            if self.is_down(spec.destination):
                raise MigrationFailed(spec.vm, spec.destination, RPC,
                                      f"unable to connect to server at '{spec.destination}': No route to host")
            fail = self._fault(FailMigration, spec.vm)
            if isinstance(fail, FailMigration) and attempt in fail.attempts:
                raise MigrationFailed(spec.vm, spec.destination, fail.code, fail.message)
            disk_mib = sum(d.allocation_gib for d in self.inventory.vm[spec.vm].disks
                           if d.target in spec.copy_storage) * 1024.0
            # What the wire sees: the cap times the model's efficiency, the inventory's rate times its factor.
            bw, dirty = self.model.effective(spec.bandwidth_mibs, dirty_rate_mibs)
            slow = self._fault(Slow, spec.vm)
            if isinstance(slow, Slow):
                bw /= slow.factor
            if self.jitter:
                bw *= 1.0 - self._rng.uniform(0.0, self.jitter)
            if self._fault(NeverConverges, spec.vm) is not None:
                dirty = max(dirty, 4.0 * bw)
            job = _Job(spec, self.clock.now(), memory_mib if spec.live else 0.0, disk_mib, dirty, bw,
                       spec.max_downtime_ms)
            src.job_active = True
            if spec.live:  # the incoming domain, paused until the switchover
                self._domains[spec.destination][spec.vm] = _Domain(spec.vm, spec.uuid, DomainState.PAUSED, False,
                                                                   PAUSED_MIGRATION)
            self._jobs[spec.vm] = job
            self._save()
            return job

    def _run(self, job: _Job) -> MigrationOutcome:
        spec = job.spec
        hang = self._fault(Hang, spec.vm) is not None
        self._pause(job, self.model.fixed_cost_s + (self.model.copy_setup_s if job.disk_mib else 0.0))
        if hang:
            while True:
                self._pause(job, 3600.0)
        if job.disk_mib:
            job.in_disk_phase = True
            self._send(job, job.disk_mib)
            job.in_disk_phase = False
        if not spec.live:
            return self._finish(job, downtime_ms=0.0)
        if self._fault(SplitBrain, spec.vm) is not None:
            self._send(job, job.memory_mib / 2)
            with self._lock:
                src = self._find(spec.source, spec.vm, spec.uuid)
                if src is not None:
                    src.state, src.reason = DomainState.PAUSED, PAUSED_USER
            raise MigrationFailed(spec.vm, spec.destination, INTERNAL,
                                  "internal error: qemu unexpectedly closed the monitor")
        to_send = job.memory_mib
        while True:
            job.round_mib = to_send
            started = self.clock.now()
            self._send(job, to_send)
            round_s = self.clock.now() - started
            job.iteration += 1
            if job.postcopy:
                to_send = 0.0  # the rest is pulled by the destination; modelled as done with this round
                break
            rate = 0.0 if job.suspended else job.dirty_rate_mibs
            never = self._fault(NeverConverges, spec.vm) is not None
            if spec.auto_converge and not never and job.iteration >= self.model.throttle_after_rounds:
                level = self.model.throttle_initial + self.model.throttle_increment * (
                    job.iteration - self.model.throttle_after_rounds)
                rate *= 1.0 - min(level, self.model.throttle_max)
            to_send = min(job.memory_mib, rate * round_s)
            if to_send <= job.bandwidth_mibs * job.max_downtime_ms / 1000.0:
                break
        job.round_mib = to_send
        stop_copy_s = to_send / job.bandwidth_mibs
        self._send(job, to_send)
        job.round_mib = 0.0
        return self._finish(job, downtime_ms=stop_copy_s * 1000.0 + self.model.resume_cost_ms)

    def _finish(self, job: _Job, downtime_ms: float) -> MigrationOutcome:
        spec = job.spec
        with self._lock:
            self._check_interrupt(job, allow_postcopy=True)
            src = self._domains[spec.source].pop(spec.vm)
            persistent = src.persistent and spec.persistent
            if spec.live:
                state, reason = DomainState.RUNNING, 0  # the destination resumes it, even after `suspend`
            else:
                state, reason = DomainState.SHUTOFF, 0
            self._domains[spec.destination][spec.vm] = _Domain(spec.vm, src.uuid, state, persistent, reason)
        return MigrationOutcome(self.clock.now() - job.started_s, downtime_ms if spec.live else None,
                                job.processed_mib)

    def _send(self, job: _Job, mib: float) -> None:
        """Puts `mib` on the wire at the job's bandwidth; returns early (after switching) on post-copy."""
        job.phase_started_s = self.clock.now()
        job.phase_mib = mib
        remaining_s = mib / job.bandwidth_mibs
        while remaining_s > 1e-9:
            t0 = self.clock.now()
            poked = self.clock.wait(job.poke, remaining_s)
            remaining_s -= self.clock.now() - t0
            if poked:
                job.poke.clear()
                with self._lock:
                    self._check_interrupt(job, allow_postcopy=True)
        job.processed_mib += mib
        job.phase_mib = 0.0

    def _pause(self, job: _Job, seconds: float) -> None:
        """Time passes with nothing on the wire (fixed cost, or a hung job)."""
        job.phase_started_s = self.clock.now()
        job.phase_mib = 0.0
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            if self.clock.wait(job.poke, end - self.clock.now()):
                job.poke.clear()
                with self._lock:
                    self._check_interrupt(job, allow_postcopy=False)

    def _check_interrupt(self, job: _Job, allow_postcopy: bool) -> None:
        """Called under the lock when the job was poked: abort, or a host went away."""
        spec = job.spec
        if self.is_down(spec.source) or self.is_down(spec.destination):
            if not self.is_down(spec.destination):
                self._domains[spec.destination].pop(spec.vm, None)
            elif not job.postcopy:
                self._domains[spec.destination].pop(spec.vm, None)  # its QEMU died with the host
            raise MigrationFailed(spec.vm, spec.destination, RPC, "internal error: client socket is closed")
        if job.aborted and not job.postcopy:
            self._domains[spec.destination].pop(spec.vm, None)
            raise MigrationFailed(spec.vm, spec.destination, OPERATION_ABORTED,
                                  "operation aborted: migration out job: canceled by client")

    def job_progress(self, host: str, vm: str, uuid: str | None = None) -> JobProgress | None:
        if self.is_down(host):
            raise HypervisorError(host, RPC, "unable to connect to server")
        with self._lock:
            self._settle_orphans()
            orphan = self._orphans.get(vm)
            if orphan is not None and orphan.source == host:
                now = self.clock.now()
                left = orphan.memory_mib * max(0.0, orphan.ends_s - now) / max(orphan.ends_s - orphan.started_s, 1e-9)
                return JobProgress(elapsed_s=now - orphan.started_s, data_total_mib=orphan.memory_mib,
                                   data_processed_mib=orphan.memory_mib - left, data_remaining_mib=left)
            job = self._jobs.get(vm)
            if job is None or job.spec.source != host:
                return None
            now = self.clock.now()
            in_phase = min(job.phase_mib, max(0.0, now - job.phase_started_s) * job.bandwidth_mibs)
            processed = job.processed_mib + in_phase
            if job.in_disk_phase:
                disk_done = in_phase
                remaining = job.disk_mib - in_phase + job.memory_mib
            elif job.phase_mib:  # a memory round: what is left of it plus what the guest dirtied meanwhile
                disk_done = job.disk_mib
                dirtied = 0.0 if job.suspended else job.dirty_rate_mibs * max(0.0, now - job.phase_started_s)
                remaining = min(job.memory_mib, max(0.0, job.round_mib - in_phase) + dirtied)
            else:
                disk_done = job.disk_mib if job.processed_mib else 0.0
                remaining = job.memory_mib + job.disk_mib - job.processed_mib
            return JobProgress(
                elapsed_s=now - job.started_s,
                data_total_mib=processed + remaining,
                data_processed_mib=processed,
                data_remaining_mib=remaining,
                memory_iteration=job.iteration,
                rate_mibs=job.bandwidth_mibs if job.phase_mib else 0.0,
                dirty_rate_mibs=0.0 if job.suspended else job.dirty_rate_mibs,
                disk_total_mib=job.disk_mib,
                disk_processed_mib=disk_done,
                expected_downtime_ms=remaining / job.bandwidth_mibs * 1000.0,
            )

    # ------------------------------------------------------------------ Hypervisor: controls

    def _job(self, host: str, vm: str) -> _Job:
        job = self._jobs.get(vm)
        if job is None or job.spec.source != host:
            raise HypervisorError(host, OPERATION_INVALID, f"requested operation is not valid: no job on {vm}")
        return job

    def abort(self, host: str, vm: str, uuid: str | None = None) -> None:
        with self._lock:
            orphan = self._orphans.get(vm)
            if orphan is not None and orphan.source == host:
                orphan.aborted = True
                self._settle_orphans()
                return
            job = self._job(host, vm)
            job.aborted = True
            job.poke.set()

    def set_max_downtime(self, host: str, vm: str, downtime_ms: float, uuid: str | None = None) -> None:
        with self._lock:
            self._job(host, vm).max_downtime_ms = downtime_ms

    def start_postcopy(self, host: str, vm: str, uuid: str | None = None) -> None:
        with self._lock:
            job = self._job(host, vm)
            if not job.spec.postcopy_allowed:
                raise HypervisorError(host, OPERATION_INVALID, "post-copy not enabled for this migration")
            job.postcopy = True
            # The guest now runs on the destination; the source keeps the rest of its memory.
            src = self._find(job.spec.source, vm, uuid)
            if src is not None:
                src.state, src.reason = DomainState.PAUSED, PAUSED_POSTCOPY
            dst = self._domains[job.spec.destination].get(vm)
            if dst is not None:
                dst.state, dst.reason = DomainState.RUNNING, 0
            job.poke.set()

    def suspend(self, host: str, vm: str, uuid: str | None = None) -> None:
        with self._lock:
            dom = self._find(host, vm, uuid)
            if dom is None or self.is_down(host):
                raise HypervisorError(host, 42, f"domain {vm} not found")
            dom.state, dom.reason = DomainState.PAUSED, PAUSED_USER
            job = self._jobs.get(vm)
            if job is not None and job.spec.source == host:
                job.suspended = True

    def resume(self, host: str, vm: str, uuid: str | None = None) -> None:
        with self._lock:
            dom = self._find(host, vm, uuid)
            if dom is None or self.is_down(host):
                raise HypervisorError(host, 42, f"domain {vm} not found")
            dom.state, dom.reason = DomainState.RUNNING, 0
