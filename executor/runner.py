"""Runs a plan: a thin loop over the pure `PlanMonitor` (STYLE §6).

The control thread (the caller of `run_plan`) asks the monitor what may start, gives each started
migration a worker thread, polls job statistics about every `poll_interval_s` of the hypervisor's
clock, escalates stalled migrations, calls the reporter, and commits endings to the monitor.
A worker does for one VM exactly what the virsh guide does by hand, and journals each step:

    precheck → prepare_storage (copy-storage disks) → journal intent → migrate (cap, max downtime,
    auto-converge) → look the VM up on BOTH hosts → done | retry | failed | aborted | quarantined

After any error the VM is looked up on both hosts and classified (`executor.states.classify`,
NOTES §5): on the source only → failed or retried (bounded, with backoff, only for errors that can
succeed on retry); on the destination only → done; a migration libvirt still runs is followed until
its job ends, a host that does not answer is waited for (`host_wait_s`, with backoff), then looked
at again (`_settle`); what is still unclear after that → quarantined, touched no more.

Resume (`reconcile`): every VM the journal has in flight, and every quarantined one, is settled the
same way before anything new starts (the jobs still running keep their room): done, retried from
its source (destination volumes the dead run created for it are removed first), or quarantined.

Hops (plans of kind other than drain): each of a VM's migrations is one hop, run by its own worker
once the previous hop is done (the monitor says when); journal rows, results and resume are per hop
`(vm, hop)`, each hop classified with its own two hosts. A VM found on its staging host after a crash
has its hop k done and hop k+1 pending: the run goes on from there. A hop that fails leaves the VM on
that hop's source; its later hops never start ("never started: hop k …"). `RunResult.hops` has every
hop; `RunResult.results` one row per VM (its current hop: the first not done, or the last).

Escalation of a stalled migration (no decrease of data_remaining for policy.progress_timeout_s):
raise the max downtime ×`downtime_step_factor` up to `max_downtime_ceiling_ms`, one step every
`escalation_interval_s` without progress; then, if it was started with auto-converge, give the
throttle one more interval; then the operator's timeout action (abort | suspend | postcopy; post-copy
only with allow_postcopy, otherwise abort). The completion timeout (policy.completion_timeout_per_gib_s
× GiB of memory + copied disk) goes straight to the timeout action. A suspended migration that still
does not finish within another interval is aborted (its guest is resumed on the source).

Ctrl-C (`options.cancel` set): no new migration starts, running jobs are aborted (the VMs stay on
their sources), threads are joined, the journal says `aborted`; `RunResult.cancelled` is True.

A destination that does not answer at precheck: its VMs are reported "not moved" (they stay on their
sources) and recorded in `RunResult.unreachable`; the monitor still starts every migration whose room
does not depend on them. With `RunOptions.halt_on_unreachable` (`--replan`, executor/replanner.py) the
first one stops dispatching instead: the run returns once what is in flight has ended, to be re-planned.
"""

from __future__ import annotations

import queue
import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from executor import faults
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
from executor.journal import Journal
from executor.libvirt_errors import RETRYABLE, permanent_cause
from executor.reporter import Reporter
from executor.states import Event, Placement, State, classify, transition
from planner.model import Inventory
from planner.monitor import HopKey, Phase, PlanMonitor, hop_key
from planner.plan import Migration, Plan

# libvirt errors that can succeed when tried again: one list, kept with the code names (NOTES §5).
RETRYABLE_CODES = frozenset(int(c) for c in RETRYABLE)


class TimeoutAction(StrEnum):
    ABORT = "abort"
    SUSPEND = "suspend"
    POSTCOPY = "postcopy"


@dataclass(frozen=True)
class RunOptions:
    barrier: bool = False
    one_at_a_time: bool = False
    timeout_action: TimeoutAction = TimeoutAction.ABORT
    allow_postcopy: bool = False
    unsafe: bool = False  # VIR_MIGRATE_UNSAFE: only from --unsafe, recorded in the journal
    tls: bool = False
    retries: int = 2  # extra attempts after the first (3 attempts in all)
    backoff_s: float = 20.0  # KubeVirt: 20 s, doubling per failure
    backoff_factor: float = 2.0
    retryable_codes: frozenset[int] = RETRYABLE_CODES
    poll_interval_s: float = 0.5
    downtime_step_factor: float = 2.0
    max_downtime_ceiling_ms: float = 2000.0
    escalation_interval_s: float | None = None  # default: progress_timeout_s / 3
    parallel_connections: int = 0
    resume: bool = False
    # --replan (executor.replanner): on the first destination found unreachable, start nothing new and
    # return once what is in flight has ended, so the rest can be re-planned from the live state.
    halt_on_unreachable: bool = False
    host_wait_s: float = 60.0  # a host that does not answer is waited for this long before quarantine
    host_backoff_s: float = 1.0  # first wait for it; doubles up to host_backoff_max_s
    host_backoff_max_s: float = 10.0
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def mode(self) -> str:
        return "barrier" if self.barrier else "one-at-a-time" if self.one_at_a_time else "default"

    def journal_flags(self) -> dict[str, Any]:
        return {"mode": self.mode, "timeout_action": str(self.timeout_action), "allow_postcopy": self.allow_postcopy,
                "unsafe": self.unsafe, "tls": self.tls, "retries": self.retries, "resume": self.resume}


@dataclass
class MigrationResult:
    vm: str
    state: State
    attempts: int = 0
    error: str = ""
    started_s: float | None = None  # run clock: seconds since the run started
    ended_s: float | None = None
    downtime_ms: float | None = None
    escalations: list[str] = field(default_factory=list)
    hop: int = 0  # which of the VM's migrations (a VM's row in `RunResult.results`: its current hop)


def vm_result(hops: list[MigrationResult]) -> MigrationResult:
    """One VM's row from its hops' results (in hop order): the state, error and hop of its current hop
    (the first not done; the last when all are), attempts and escalations of all, from the first
    start to the current hop's end. A VM of one migration: that migration's result itself."""
    if len(hops) == 1:
        return hops[0]
    i, current = next(((i, r) for i, r in enumerate(hops) if r.state is not State.DONE), (len(hops) - 1, hops[-1]))
    error = current.error
    if current.state is State.PENDING and i > 0:
        error = error or f"hop {current.hop} never started: the VM is on a staging host"
    ended = current.ended_s if current.ended_s is not None or i == 0 else hops[i - 1].ended_s
    return MigrationResult(current.vm, current.state, sum(r.attempts for r in hops), error,
                           next((r.started_s for r in hops if r.started_s is not None), None), ended,
                           current.downtime_ms, [e for r in hops for e in r.escalations], current.hop)


@dataclass
class RunResult:
    plan: Plan
    results: dict[str, MigrationResult]  # per VM (`vm_result` of its hops)
    makespan_s: float
    cancelled: bool = False
    unreachable: dict[str, str] = field(default_factory=dict)  # VM -> destination that did not answer
    halted: bool = False  # halt_on_unreachable stopped dispatching: some migrations never started
    hops: dict[HopKey, MigrationResult] = field(default_factory=dict)  # per migration; empty: `results`

    @property
    def ok(self) -> bool:
        """Every VM of the plan moved: all migrations (every hop) done, none cancelled, and none the plan
        left unplaced (an infeasible plan leaves VMs on a host being drained: not a success)."""
        return (not self.cancelled and not self.plan.unplaced
                and all(r.state is State.DONE for r in self.results.values())
                and all(r.state is State.DONE for r in self.hops.values()))

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def count(self, state: State) -> int:
        return sum(1 for r in self.results.values() if r.state is state)

    def summary(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for r in self.results.values():
            states[r.state.value] = states.get(r.state.value, 0) + 1
        return {"ok": self.ok, "cancelled": self.cancelled, "makespan_s": round(self.makespan_s, 3),
                "planned_makespan_s": round(self.plan.makespan_s, 3), "states": states,
                "unplaced": [{"vm": u.vm, "reasons": list(u.reasons)} for u in self.plan.unplaced]}


def build_spec(migration: Migration, inventory: Inventory, options: RunOptions) -> MigrationSpec:
    """The one `virsh migrate` of the virsh guide for this migration, as evac will issue it."""
    vm = inventory.vm[migration.vm]
    return MigrationSpec(
        vm=migration.vm,
        uuid=vm.uuid,
        source=migration.source,
        destination=migration.destination,
        bandwidth_mibs=migration.bandwidth_mibs,
        max_downtime_ms=inventory.policy.max_downtime_ms,
        auto_converge=migration.auto_converge,
        live=migration.live,
        persistent=vm.persistent,
        copy_storage=migration.copy_storage,
        postcopy_allowed=options.allow_postcopy and options.timeout_action is TimeoutAction.POSTCOPY,
        unsafe=options.unsafe,
        tls=options.tls,
        parallel_connections=options.parallel_connections,
    )


def virsh_command(spec: MigrationSpec, destination_uri: str | None = None, *, source_uri: str | None = None,
                  migrate_uri: str | None = None) -> str:
    """The equivalent `virsh migrate` command line (for --dry-run and the journal's readers).

    Every argument is shell-quoted (`shlex.quote`): names come from an inventory, untrusted input, and
    a line an operator pastes into a shell must mean exactly one migration of exactly that VM.
    `source_uri` adds `-c URI` (the daemon the VM is on); `migrate_uri` adds `--migrateuri` (the
    destination's migration address, as evac passes it)."""
    connect = ["-c", source_uri] if source_uri else []
    parts = ["virsh", *connect, "migrate"]
    parts += ["--live"] if spec.live else ["--offline"]
    parts += ["--p2p"]
    if spec.persistent:
        parts += ["--persistent", "--undefinesource"]
    if spec.auto_converge:
        parts.append("--auto-converge")
    if spec.postcopy_allowed:
        parts.append("--postcopy")
    if spec.copy_storage:
        parts += ["--copy-storage-all", "--migrate-disks", ",".join(spec.copy_storage)]
    if spec.tls:
        parts.append("--tls")
    if spec.unsafe:
        parts.append("--unsafe")
    if spec.parallel_connections:
        parts += ["--parallel", "--parallel-connections", str(spec.parallel_connections)]
    parts += ["--bandwidth", f"{max(1, round(spec.bandwidth_mibs))}"]
    if migrate_uri and spec.live:
        parts += ["--migrateuri", migrate_uri]
    parts += [spec.vm, destination_uri or f"qemu+tcp://{spec.destination}/system"]
    # As the virsh guide orders it: the max downtime is set first, then the migration starts.
    downtime = ["virsh", *connect, "migrate-setmaxdowntime", spec.vm, f"{spec.max_downtime_ms:g}"]
    return " && ".join(shlex.join(words) for words in (downtime, parts))


def spec_flags(spec: MigrationSpec) -> dict[str, Any]:
    return {"live": spec.live, "bandwidth_mibs": spec.bandwidth_mibs, "max_downtime_ms": spec.max_downtime_ms,
            "auto_converge": spec.auto_converge, "copy_storage": list(spec.copy_storage),
            "postcopy_allowed": spec.postcopy_allowed, "unsafe": spec.unsafe, "tls": spec.tls,
            "persistent": spec.persistent, "parallel_connections": spec.parallel_connections}


# ---------------------------------------------------------------- one migration's worker


class _Worker:
    """Runs one VM's migration (with its retries) in its own thread; talks to the control thread
    through `events` only, so the reporter and the monitor are used from one thread."""

    def __init__(self, runner: _Runner, migration: Migration, state: State, attempts: int) -> None:
        self.r = runner
        self.m = migration
        self.spec = build_spec(migration, runner.inventory, runner.options)
        self.state = state
        self.attempt = attempts
        self.migrating = False  # migrate() is running: progress polling and escalation apply
        self.migrate_started_s = 0.0
        self.best_remaining_mib = float("inf")
        self.last_progress_s = 0.0
        self.last_escalation_s = 0.0
        self.downtime_ms = self.spec.max_downtime_ms
        self.ladder_done: list[str] = []  # escalation steps of the current attempt
        self.escalations: list[str] = []  # of every attempt
        self.final_action: str | None = None  # the timeout action taken, if any
        self.suspended = False
        self.abort_reason = ""
        self.abort_sent = False
        self.last_detail = ""
        self.busy_waits = 0  # waits for another client's job on the domain (before precheck)
        self.dispatched_s = runner.clock_s()  # the run clock when the monitor started this migration
        self.samples: list[JobProgress] = []  # job statistics of the current attempt (the measured rates)
        self.thread = threading.Thread(target=self._main, name=f"evac-{migration.vm}-{migration.hop}", daemon=True)

    # -- journal + state helpers

    def _move(self, event: Event, detail: str = "") -> None:
        self.state = transition(self.state, event)
        self.last_detail = detail
        self.r.journal.record(self.m.vm, self.state, event, self.attempt, detail, hop=self.m.hop)

    def _emit(self, kind: str, **data: Any) -> None:
        self.r.events.put((kind, self.m.vm, data))
        self.r.wake.set()

    def _main(self) -> None:
        try:
            self._run()
        except Exception as e:  # a bug or an unexpected hypervisor error: never leave the control loop hanging
            detail = f"unexpected error: {type(e).__name__}: {e}"
            self.r.journal.event("worker_crashed", self.m.vm, error=detail)
            self._emit("ended", state=State.QUARANTINED, error=detail)

    def _run(self) -> None:
        hv, opts = self.r.hv, self.r.options
        while True:
            if opts.cancel.is_set() and self.state in (State.PRECHECKED, State.RETRY_WAIT):
                self._move(Event.ON_SOURCE_ABORTED, "cancelled before migrate")
                self._emit("ended", state=self.state, error="cancelled")
                return
            if self._busy_elsewhere():
                continue
            try:
                problems = hv.precheck(self.spec)
            except HypervisorError as e:
                problems = [str(e)]
            if problems:
                unreachable = self.r.destination_unreachable(self.spec)
                why = "; ".join(problems)
                if unreachable:
                    why = f"not moved: destination {unreachable} unreachable, the VM stays on {self.m.source} ({why})"
                self._move(Event.PRECHECK_FAILED, why)
                self._emit("ended", state=self.state, error=why if unreachable else "precheck: " + why,
                           unreachable=unreachable)
                return
            self._move(Event.PRECHECK_OK)
            faults.point("prechecked")
            if opts.cancel.is_set():
                continue
            self.attempt += 1
            self._new_attempt()
            created: list[str] = []
            error: MigrationFailed | None = None
            outcome = None
            try:
                if self.spec.copy_storage:
                    created = hv.prepare_storage(self.spec, announce=self._announce_volumes)
            except HypervisorError as e:
                error = MigrationFailed(self.m.vm, self.m.destination, e.code, f"prepare_storage: {e.message}")
            if error is None and opts.cancel.is_set():
                self._cleanup(created)
                self._move(Event.ON_SOURCE_ABORTED, "cancelled before migrate")
                self._emit("ended", state=self.state, error="cancelled")
                return
            if error is None:
                self.r.journal.intent(self.m.vm, self.spec.uuid, self.m.source, self.m.destination,
                                      spec_flags(self.spec), self.attempt, hop=self.m.hop)
                faults.point("intent")
                self._move(Event.MIGRATE)
                now = self.r.clock_s()
                self.migrate_started_s = self.last_progress_s = self.last_escalation_s = now
                self.best_remaining_mib = float("inf")
                self._emit("started", attempt=self.attempt, now_s=now)
                self.migrating = True
                try:
                    outcome = hv.migrate(self.spec)
                except MigrationFailed as e:
                    error = e
                except HypervisorError as e:
                    error = MigrationFailed(self.m.vm, self.m.destination, e.code, e.message)
                finally:
                    self.migrating = False
                if error is None:
                    faults.point("migrated")
                self._move(Event.RETURNED if error is None else Event.ERROR,
                           "" if error is None else str(error))
            else:
                self._move(Event.ERROR, str(error))
            faults.point("verifying")
            verdict = self._verify(error)
            if verdict == "retry":
                self._cleanup(created)
                delay = opts.backoff_s * opts.backoff_factor ** (self.attempt - 1)
                self._emit("retry", attempt=self.attempt + 1, delay_s=delay, error=str(error))
                self.r.clock.wait(opts.cancel, delay)
                continue
            if verdict in ("failed", "aborted"):
                self._cleanup(created)
            downtime = outcome.downtime_ms if outcome is not None else None
            if self.state is State.DONE and outcome is not None:
                self._journal_measured(outcome)
            self._emit("ended", state=self.state, error="" if self.state is State.DONE else self._error_text(error),
                       downtime_ms=downtime)
            return

    def _journal_measured(self, outcome: MigrationOutcome) -> None:
        """What `evac calibrate` fits the duration model to (docs/calibrate.md): the migration's wall time
        from dispatch to verified, the migrate call's own time, bytes sent, downtime, the inventory's
        dirty rate the plan used, the mean measured rates, and whether anything disturbed the run (retries,
        escalations: such a migration is not fitted)."""
        vm = self.r.inventory.vm[self.m.vm]
        rates = [p.rate_mibs for p in self.samples if p.rate_mibs > 0]
        dirty = [p.dirty_rate_mibs for p in self.samples]
        self.r.journal.event(
            "migration_measured", self.m.vm, hop=self.m.hop, attempt=self.attempt,
            dispatched_s=round(self.dispatched_s, 3), migrate_started_s=round(self.migrate_started_s, 3),
            ended_s=round(self.r.clock_s(), 3), migrate_s=round(outcome.duration_s, 3),
            transferred_mib=outcome.transferred_mib, downtime_ms=outcome.downtime_ms,
            memory_mib=vm.memory_mib if self.spec.live else 0, disk_mib=self.m.disk_mib,
            dirty_rate_mibs=vm.dirty_rate_mibs, bandwidth_mibs=self.spec.bandwidth_mibs,
            max_downtime_ms=self.spec.max_downtime_ms, live=self.spec.live, auto_converge=self.spec.auto_converge,
            escalations=len(self.escalations), iterations=max((p.memory_iteration for p in self.samples), default=0),
            measured_rate_mibs=round(sum(rates) / len(rates), 3) if rates else None,
            measured_dirty_mibs=round(sum(dirty) / len(dirty), 3) if dirty else None)

    def _busy_elsewhere(self) -> bool:
        """Another client's job holds the domain (a backup, someone's migration: NOTES §5, error 68
        if we went on): wait with the retry backoff, up to `retries + 1` times, instead of failing.
        True when it waited (look again); False to go on to the precheck (which names the job)."""
        opts = self.r.options
        if self.busy_waits > opts.retries:
            return False
        src = self.r.hv.domain_status(self.m.source, self.m.vm, self.spec.uuid)
        if not src.job_active:
            return False
        delay = opts.backoff_s * opts.backoff_factor ** self.busy_waits
        self.busy_waits += 1
        why = f"{self.m.source}: another job holds {self.m.vm}; waiting {delay:g} s"
        self.r.journal.event("job_busy", self.m.vm, detail=why)
        self._emit("retry", attempt=self.attempt + 1, delay_s=delay, error=why)
        self.r.clock.wait(opts.cancel, delay)
        return True

    def _new_attempt(self) -> None:
        """Escalation state is per attempt; `escalations` keeps every step for the report."""
        self.downtime_ms = self.spec.max_downtime_ms
        self.ladder_done = []
        self.samples = []
        self.final_action = None
        self.suspended = False
        self.abort_sent = False

    def _announce_volumes(self, paths: list[str]) -> None:
        """Write-ahead: the volumes about to be created, so a resume after a crash can remove them."""
        self.r.journal.event("volumes_creating", self.m.vm, attempt=self.attempt, paths=paths)
        faults.point("volumes_creating")

    def _cleanup(self, created: list[str]) -> None:
        """Removes the destination volumes this attempt created (the VM is on its source)."""
        if created:
            self.r.remove_volumes(self.m.vm, self.spec, created)

    def _error_text(self, error: MigrationFailed | None) -> str:
        if self.state is State.ABORTED:
            return self.last_detail + (f" ({error})" if error else "")
        return self.last_detail

    def _verify(self, error: MigrationFailed | None) -> str:
        """Looks at both hosts and moves to done / retry_wait / failed / aborted / quarantined."""
        hv, opts = self.r.hv, self.r.options

        def waiting(event: str, why: str) -> None:
            self._move(Event.REATTACH, why)
            self.r.journal.event(event, self.m.vm, detail=why)

        placement, why, src, dst = self.r.settle(self.m, self.spec, waiting)
        if placement is Placement.ON_DESTINATION:
            faults.point("verified")
            if self.suspended and dst.state is DomainState.PAUSED:
                try:  # we paused it: give it back running
                    hv.resume(self.m.destination, self.m.vm, self.spec.uuid)
                except HypervisorError as e:
                    why += f"; could not resume it after the suspend timeout action: {e}"
            self._move(Event.VERIFIED, why)
            faults.point("done")
            return "done"
        if placement is Placement.SPLIT:
            self._move(Event.SPLIT, why + (f"; migrate said: {error}" if error else ""))
            return "quarantined"
        # On the source only.
        if self.suspended and src.state is DomainState.PAUSED:
            try:
                hv.resume(self.m.source, self.m.vm, self.spec.uuid)
            except HypervisorError as e:
                self.r.journal.event("resume_failed", self.m.vm, error=str(e))
        if error is None:
            self._move(Event.ON_SOURCE_FINAL, f"migrate returned but the VM is still on {self.m.source}")
            return "failed"
        if self.abort_reason or opts.cancel.is_set():
            self._move(Event.ON_SOURCE_ABORTED, self.abort_reason or "cancelled")
            return "aborted"
        if error.libvirt_code in opts.retryable_codes and permanent_cause(error.message) is None \
                and self.attempt <= opts.retries:
            self._move(Event.ON_SOURCE_RETRY, str(error))
            return "retry"
        self._move(Event.ON_SOURCE_FINAL, str(error))
        return "failed"


# ---------------------------------------------------------------- the control loop


class _Runner:
    def __init__(self, plan: Plan, inventory: Inventory, hv: Hypervisor, journal: Journal, reporter: Reporter,
                 options: RunOptions) -> None:
        self.plan = plan
        self.inventory = inventory
        self.hv = hv
        self.clock = hv.clock
        self.journal = journal
        self.reporter = reporter
        self.options = options
        self.monitor = PlanMonitor(plan, inventory, barrier=options.barrier, one_at_a_time=options.one_at_a_time)
        self.events: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
        self.wake = threading.Event()
        self.workers: dict[str, _Worker] = {}
        self.hop_results: dict[HopKey, MigrationResult] = {hop_key(m): MigrationResult(m.vm, State.PENDING, hop=m.hop)
                                                       for m in plan.migrations}
        self.queued_reason: dict[str, str] = {}
        self.unreachable: dict[str, str] = {}
        self.halted = False
        self.t0 = self.clock.now()
        p = inventory.policy
        self.escalation_interval_s = options.escalation_interval_s or max(p.progress_timeout_s / 3.0, 1.0)

    def clock_s(self) -> float:
        return self.clock.now() - self.t0

    def destination_unreachable(self, spec: MigrationSpec) -> str | None:
        """After a failed precheck: the destination's name if it does not answer (UNKNOWN), else None."""
        status = self.hv.domain_status(spec.destination, spec.vm, spec.uuid)
        return spec.destination if status.state is DomainState.UNKNOWN else None

    # -- resume

    def reconcile(self) -> dict[HopKey, State]:
        """Brings the journal's view in line with both hosts before continuing (NOTES §6.3).

        In-flight VMs (and quarantined ones: their hosts may answer now) are settled in parallel:
        a migration libvirt still runs is followed to its end, a silent host waited for.
        Per hop: a VM whose hop k is done and hop k+1 pending (it was on its staging host) goes on
        with hop k+1; an in-flight hop is settled with that hop's two hosts."""
        faults.point("reconcile")
        start_states: dict[HopKey, State] = {}
        to_settle: list[HopKey] = []
        for key, state in sorted(self.journal.hop_states().items()):
            if key not in self.hop_results:
                continue
            vm, hop = key
            res = self.hop_results[key]
            res.attempts = self.journal.attempts_of(vm, hop)
            if state.in_flight or state is State.QUARANTINED:
                event = Event.RECONCILE if state.in_flight else Event.REEXAMINE
                state = transition(state, event)
                self.journal.record(vm, state, event, res.attempts, "resume: looking at both hosts", hop=hop)
                to_settle.append(key)
            elif state in (State.FAILED, State.ABORTED):
                state = transition(state, Event.REQUEUE)
                self.journal.record(vm, state, Event.REQUEUE, res.attempts, "resume: trying again", hop=hop)
            start_states[key] = state
        settled: dict[HopKey, tuple[Placement, str]] = {}
        threads = [threading.Thread(target=self._reconcile_one, args=(key, settled),
                                    name=f"evac-resume-{key[0]}-{key[1]}", daemon=True) for key in to_settle]
        for t in threads:
            self.clock.track(t)
            t.start()
        with self.clock.idle():  # they wait on the clock while following jobs: time must pass
            for t in threads:
                t.join()
        announced = self._announced_volumes() if to_settle else {}
        for key in to_settle:
            vm, hop = key
            m, res = self.monitor.migration(key), self.hop_results[key]
            placement, why = settled.get(key, (Placement.SPLIT, "could not be looked at"))
            event = {Placement.ON_DESTINATION: Event.VERIFIED,
                     Placement.ON_SOURCE: Event.ON_SOURCE_RETRY}.get(placement, Event.SPLIT)
            if placement is Placement.ON_SOURCE and announced.get(vm):
                # The dead run may have created destination volumes for it: remove them, or the next
                # precheck refuses to overwrite them.
                self.remove_volumes(vm, build_spec(m, self.inventory, self.options), announced[vm])
            state = transition(State.VERIFYING, event)
            self.journal.record(vm, state, event, res.attempts, f"resume: {why}", hop=hop)
            start_states[key] = state
        for key, state in sorted(start_states.items()):  # a VM's hops in order
            if self.monitor.phase[key] is not Phase.PENDING:
                continue  # an earlier hop quarantined: the monitor failed this one, `_fail_later_hops` said why
            self.hop_results[key].state = state
            if state is State.DONE:
                self.monitor.commit(key)
            elif state is State.QUARANTINED:
                self.monitor.quarantine(key)
                self._fail_later_hops(key, "quarantined")
        return start_states

    def _reconcile_one(self, key: HopKey, out: dict[HopKey, tuple[Placement, str]]) -> None:
        m = self.monitor.migration(key)
        spec = build_spec(m, self.inventory, self.options)

        def waiting(event: str, why: str) -> None:
            self.journal.record(m.vm, State.VERIFYING, Event.REATTACH, self.hop_results[key].attempts, f"resume: {why}",
                                hop=m.hop)
            self.journal.event(event, m.vm, detail=why)
            faults.point(event)

        try:
            placement, why, _, _ = self.settle(m, spec, waiting)
        except Exception as e:  # never let one VM's surprise stop the resume: it is quarantined
            placement, why = Placement.SPLIT, f"unexpected error: {type(e).__name__}: {e}"
        out[key] = (placement, why)

    def _completion_limit_s(self, m: Migration) -> float:
        """policy.completion_timeout_per_gib_s × GiB of memory + copied disk (as `_poll` applies it)."""
        size_gib = (m.memory_mib or self.inventory.vm[m.vm].memory_mib) / 1024.0 + m.disk_mib / 1024.0
        return self.inventory.policy.completion_timeout_per_gib_s * max(size_gib, 1.0 / 1024.0)

    def settle(self, m: Migration, spec: MigrationSpec, waiting: Callable[[str, str], None]
               ) -> tuple[Placement, str, DomainStatus, DomainStatus]:
        """Looks at both hosts until the answer is settled (NOTES §5), bounded:

        * MIGRATING (libvirt still runs the job): followed, polling; past the completion limit (or
          on Ctrl-C) the job is aborted — it is evac's own migration, its intent is journaled — and
          if it still runs `host_wait_s` later it is SPLIT; an incoming domain on the destination
          with no job on the source is given `host_wait_s` (a switchover ending) before SPLIT;
        * UNANSWERED: the host is asked again with backoff for up to `host_wait_s`, then SPLIT.
        `waiting(kind, why)` is told once per kind ("reattached", "host_wait")."""
        opts, clock = self.options, self.clock
        never = threading.Event()  # waits that Ctrl-C must not cut short (it has its own handling)
        t0 = clock.now()
        backoff = opts.host_backoff_s
        told: set[Placement] = set()
        aborted_at: float | None = None
        host_since: float | None = None
        lingering_since: float | None = None
        while True:
            src = self.hv.domain_status(m.source, m.vm, spec.uuid)
            dst = self.hv.domain_status(m.destination, m.vm, spec.uuid)
            placement, why = classify(src, dst, live=spec.live, persistent=spec.persistent)
            if placement.settled:
                return placement, why, src, dst
            if placement not in told:
                told.add(placement)
                waiting("reattached" if placement is Placement.MIGRATING else "host_wait", why)
            now = clock.now()
            if placement is Placement.UNANSWERED:
                host_since = now if host_since is None else host_since
                if now - host_since >= opts.host_wait_s or opts.cancel.is_set():
                    return Placement.SPLIT, f"{why} (asked again for {now - host_since:.0f} s)", src, dst
                clock.wait(never, backoff)
                backoff = min(backoff * 2, opts.host_backoff_max_s)
                continue
            host_since, backoff = None, opts.host_backoff_s
            if src.job_active:
                lingering_since = None
                limit = self._completion_limit_s(m)
                if aborted_at is None and (now - t0 >= limit or opts.cancel.is_set()):
                    aborted_at = now
                    reason = "cancelled by the operator" if opts.cancel.is_set() else \
                        f"completion timeout: followed {now - t0:.0f} s > {limit:.0f} s"
                    try:
                        self.hv.abort(m.source, m.vm, spec.uuid)
                        self.journal.event("escalation", m.vm, step="abort", detail=reason)
                    except HypervisorError as e:
                        self.journal.event("abort_failed", m.vm, error=str(e))
                if aborted_at is not None and now - aborted_at >= opts.host_wait_s:
                    return Placement.SPLIT, f"{why}, still {now - aborted_at:.0f} s after abort", src, dst
            else:  # an incoming domain with no job on the source: the end of a switchover, or debris
                lingering_since = now if lingering_since is None else lingering_since
                if now - lingering_since >= opts.host_wait_s:
                    return Placement.SPLIT, f"{why}, with no job on {m.source} for {now - lingering_since:.0f} s", \
                        src, dst
            clock.wait(never, opts.poll_interval_s)

    def remove_volumes(self, vm: str, spec: MigrationSpec, paths: list[str]) -> None:
        """Deletes destination volumes evac created for `vm` (the VM runs on its source only)."""
        try:
            self.hv.cleanup_storage(spec, paths)
            self.journal.event("volumes_removed", vm, paths=paths)
        except HypervisorError as e:
            self.journal.event("cleanup_failed", vm, volumes=paths, error=str(e))

    def _announced_volumes(self) -> dict[str, list[str]]:
        """Per VM, the destination volumes the journal announced (`volumes_creating`) and no
        `volumes_removed` took back since: what a crashed run may have left behind."""
        announced: dict[str, list[str]] = {}
        for e in self.journal.events():
            if e["kind"] == "volumes_creating":
                announced[e["vm"]] = list(e.get("paths", []))
            elif e["kind"] == "volumes_removed":
                announced[e["vm"]] = [p for p in announced.get(e["vm"], []) if p not in e.get("paths", [])]
        return announced

    # -- main loop

    def run(self) -> RunResult:
        self.journal.event("run_started", mode=self.options.mode, resume=self.options.resume)
        faults.point("run_started")
        start_states = self.reconcile() if self.options.resume else {}
        self.reporter.run_started(self.plan, self.options.mode)
        cancelling = False
        first = True
        last_poll = -1e9
        due: float | None = None  # the next planned start of a migration held back from starting early
        while True:
            changed = self._drain_events() or first
            first = False
            if self.options.cancel.is_set() and not cancelling:
                cancelling = True
                self.journal.event("cancel_requested")
                for w in list(self.workers.values()):
                    self._abort(w, "cancelled by the operator")
            # The answer only changes when something ended, or when a held-back migration is due.
            if not cancelling and not self.halted and (changed or (due is not None and self.clock_s() >= due)):
                self._start_ready(start_states)
                self._fail_blocked()
                due = self.monitor.next_planned_start(self.clock_s())
            if not self.workers and (cancelling or self.halted or self.monitor.finished):
                break
            now = self.clock_s()
            if now - last_poll >= self.options.poll_interval_s * 0.999:
                last_poll = now
                self._poll()
            # Woken by a worker's event (an end dispatches at once), a poll tick, or the next planned start.
            wait_s = self.options.poll_interval_s - (self.clock_s() - last_poll)
            if due is not None:
                wait_s = min(wait_s, due - self.clock_s())
            self.clock.wait(self.wake, max(wait_s, 0.0))
            self.wake.clear()
        ended = [r.ended_s for r in self.hop_results.values() if r.ended_s is not None]
        result = RunResult(self.plan, self.vm_results(), max(ended, default=0.0), cancelled=cancelling,
                           unreachable=dict(self.unreachable), halted=self.halted, hops=dict(self.hop_results))
        faults.point("run_finished")
        self.journal.event("run_finished", **result.summary())
        self.reporter.run_finished(result)
        return result

    def vm_results(self) -> dict[str, MigrationResult]:
        """One row per VM (`vm_result` of its hops), in plan order."""
        hops: dict[str, list[MigrationResult]] = {}
        for key in sorted(self.hop_results, key=lambda k: k[1]):
            hops.setdefault(key[0], []).append(self.hop_results[key])
        return {vm: vm_result(rs) for vm, rs in hops.items()}

    def _start_ready(self, start_states: dict[HopKey, State]) -> None:
        for m in self.monitor.startable(self.clock_s()):
            key = hop_key(m)
            self.monitor.start(key)
            self.queued_reason.pop(m.vm, None)
            state = start_states.pop(key, State.PENDING)
            if state is State.PENDING and self.journal.state_of(m.vm, m.hop) is State.RETRY_WAIT:
                state = State.RETRY_WAIT
            w = _Worker(self, m, state, self.hop_results[key].attempts)
            self.workers[m.vm] = w
            self.clock.track(w.thread)  # a virtual clock must not move on while it prechecks and journals
            w.thread.start()
        for vm, reason in self.monitor.waiting_reasons().items():
            kind = re.sub(r"[\d.]+", "#", reason)  # report a new kind of wait, not every changed figure
            if reason and self.queued_reason.get(vm) != kind:
                self.queued_reason[vm] = kind
                self.reporter.migration_queued(self.monitor.migration(vm), reason)

    def _fail_blocked(self) -> None:
        for vm, reason in self.monitor.blocked().items():
            key = self.monitor.key(vm)
            m = self.monitor.migration(key)
            new = transition(self.journal.state_of(vm, m.hop), Event.BLOCKED)
            self.journal.record(vm, new, Event.BLOCKED, self.hop_results[key].attempts, reason, hop=m.hop)
            self.monitor.fail(key)
            res = self.hop_results[key]
            res.state, res.error = new, f"never started: {reason}"
            self.reporter.migration_failed(m, new.value, res.error, self.clock_s())
            self._fail_later_hops(key, "failed")

    def _fail_later_hops(self, key: HopKey, how: str) -> None:
        """Journals the VM's later hops the monitor failed with hop `key` (they leave from its destination)."""
        for later in self.monitor.later_hops_failed(key):
            lk = hop_key(later)
            res = self.hop_results[lk]
            if res.state is not State.PENDING:
                continue
            why = f"hop {key[1]} {how}: the VM never reached {later.source}"
            new = transition(self.journal.state_of(later.vm, later.hop), Event.BLOCKED)
            self.journal.record(later.vm, new, Event.BLOCKED, res.attempts, why, hop=later.hop)
            res.state, res.error = new, f"never started: {why}"

    def _drain_events(self) -> bool:
        """Handles what the workers reported; True when a migration ended (the monitor changed)."""
        ended = False
        while True:
            try:
                kind, vm, data = self.events.get_nowait()
            except queue.Empty:
                return ended
            m = self.workers[vm].m  # a VM has at most one hop in flight: its worker's
            key = hop_key(m)
            res = self.hop_results[key]
            if kind == "started":
                res.attempts = data["attempt"]
                if res.started_s is None:
                    res.started_s = data["now_s"]
                in_flight = tuple(x.vm for x in self.monitor.in_flight)
                self.reporter.migration_started(m, data["attempt"], data["now_s"], in_flight)
            elif kind == "retry":
                self.reporter.migration_retry(m, data["attempt"], data["delay_s"], data["error"])
            elif kind == "ended":
                ended = True
                w = self.workers.pop(vm)
                w.thread.join()
                res.state = data["state"]
                res.error = data.get("error", "")
                res.downtime_ms = data.get("downtime_ms")
                res.ended_s = self.clock_s()
                res.escalations = list(w.escalations)
                if data.get("unreachable"):
                    self._destination_unreachable(vm, data["unreachable"])
                if res.state is State.DONE:
                    self.monitor.commit(key)
                    self.reporter.migration_done(m, res.ended_s - (res.started_s or 0.0), res.ended_s)
                elif res.state is State.QUARANTINED:
                    self.monitor.quarantine(key)
                    self.reporter.migration_failed(m, res.state.value, res.error, res.ended_s)
                    self._fail_later_hops(key, "quarantined")
                else:
                    self.monitor.fail(key)
                    self.reporter.migration_failed(m, res.state.value, res.error, res.ended_s)
                    self._fail_later_hops(key, str(res.state))

    def _destination_unreachable(self, vm: str, host: str) -> None:
        if host not in self.unreachable.values():
            self.journal.event("destination_unreachable", vm, host=host, halting=self.options.halt_on_unreachable)
        self.unreachable[vm] = host
        if self.options.halt_on_unreachable and not self.halted:
            self.halted = True  # nothing new starts; what is in flight ends; then re-plan (executor.replanner)

    # -- progress, timeouts, escalation

    def _poll(self) -> None:
        policy = self.inventory.policy
        for w in list(self.workers.values()):
            if not w.migrating:
                continue
            if self.options.cancel.is_set() and not w.abort_sent:
                self._abort(w, "cancelled by the operator")  # it started migrating after the first abort round
                continue
            try:
                p = self.hv.job_progress(w.m.source, w.m.vm, w.spec.uuid)
            except Exception as e:  # a failed sample is not a failed migration: migrate() has the last word
                self.journal.event("progress_unavailable", w.m.vm, error=str(e))
                continue
            if p is None:
                continue
            w.samples.append(p)
            self.reporter.migration_progress(w.m, p)
            faults.point("disk_copy" if p.disk_total_mib and p.disk_processed_mib < p.disk_total_mib
                         else "memory_copy")
            now = self.clock_s()
            if p.data_remaining_mib < w.best_remaining_mib - 1e-6:
                w.best_remaining_mib = p.data_remaining_mib
                w.last_progress_s = now
            completion_limit_s = self._completion_limit_s(w.m)
            if now - w.migrate_started_s > completion_limit_s and w.final_action is None:
                self._final_action(w, f"completion timeout: running {now - w.migrate_started_s:.0f} s > "
                                      f"{completion_limit_s:.0f} s")
                continue
            stalled_s = now - w.last_progress_s
            if stalled_s < policy.progress_timeout_s:
                continue
            if now - w.last_escalation_s < self.escalation_interval_s and w.ladder_done:
                continue
            self._escalate(w, stalled_s)

    def _escalate(self, w: _Worker, stalled_s: float) -> None:
        w.last_escalation_s = self.clock_s()
        why = f"no progress for {stalled_s:.0f} s"
        opts = self.options
        if w.final_action is not None:
            if w.final_action == "suspend":  # even paused it does not finish: give up, resume on source
                self._abort(w, f"still stalled after suspend ({why})")
            return
        if w.downtime_ms * opts.downtime_step_factor <= opts.max_downtime_ceiling_ms + 1e-9:
            w.downtime_ms *= opts.downtime_step_factor
            try:
                self.hv.set_max_downtime(w.m.source, w.m.vm, w.downtime_ms, w.spec.uuid)
            except HypervisorError as e:
                self._note(w, "max_downtime", f"could not raise max downtime: {e}")
                return
            self._note(w, "max_downtime", f"{why}: max downtime raised to {w.downtime_ms:g} ms")
            return
        if w.spec.auto_converge and "auto_converge" not in w.ladder_done:
            self._note(w, "auto_converge", f"{why}: auto-converge is throttling the guest, one more interval")
            return
        self._final_action(w, why)

    def _final_action(self, w: _Worker, why: str) -> None:
        action = self.options.timeout_action
        if action is TimeoutAction.POSTCOPY and not w.spec.postcopy_allowed:
            action = TimeoutAction.ABORT
            why += " (post-copy not allowed: pass --allow-postcopy)"
        w.final_action = action.value
        w.last_escalation_s = self.clock_s()
        try:
            if action is TimeoutAction.SUSPEND:
                self.hv.suspend(w.m.source, w.m.vm, w.spec.uuid)
                w.suspended = True
                self._note(w, "suspend", f"{why}: guest suspended so the migration completes")
            elif action is TimeoutAction.POSTCOPY:
                self.hv.start_postcopy(w.m.source, w.m.vm, w.spec.uuid)
                self._note(w, "postcopy", f"{why}: switched to post-copy")
            else:
                self._abort(w, f"timeout: {why}")
        except HypervisorError as e:
            self._note(w, action.value, f"{why}: {action.value} failed: {e}")

    def _abort(self, w: _Worker, reason: str) -> None:
        w.abort_reason = reason
        if w.migrating:
            try:
                self.hv.abort(w.m.source, w.m.vm, w.spec.uuid)
                w.abort_sent = True
            except HypervisorError as e:
                self.journal.event("abort_failed", w.m.vm, error=str(e))
        self._note(w, "abort", reason)

    def _note(self, w: _Worker, step: str, detail: str) -> None:
        w.ladder_done.append(step)
        w.escalations.append(step)
        self.journal.event("escalation", w.m.vm, step=step, detail=detail)
        self.reporter.migration_escalated(w.m, step, detail)


def run_plan(plan: Plan, inventory: Inventory, hypervisor: Hypervisor, journal: Journal, reporter: Reporter,
             options: RunOptions | None = None) -> RunResult:
    """Executes `plan` on `hypervisor`; blocks until every migration ended (or Ctrl-C aborted them).

    Returns what happened to each VM; never raises for a failed migration (see `RunResult.ok`)."""
    return _Runner(plan, inventory, hypervisor, journal, reporter, options or RunOptions()).run()
