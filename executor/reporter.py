"""Progress through hooks with no-op defaults (STYLE §8, resolvelib's `BaseReporter`).

The runner calls these from its control thread (never from migration worker threads), so an
implementation needs no locking. `RecordingReporter` keeps every call for tests; `RichReporter`
draws bars in a terminal; `JsonReporter` prints one JSON event per line (`evac run --json`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from executor.hypervisor import JobProgress
from planner.eta import Running, eta_s
from planner.plan import Migration, Plan


class Reporter:
    def run_started(self, plan: Plan, mode: str) -> None:
        """The run begins; `mode` is default, barrier or one-at-a-time."""

    def migration_queued(self, migration: Migration, reason: str) -> None:
        """A migration waits; `reason` says for what (first time, and when the reason changes)."""

    def migration_started(self, migration: Migration, attempt: int, now_s: float,
                          in_flight: tuple[str, ...]) -> None:
        """migrate is being called; `in_flight` names every migration in flight, this one included."""

    def migration_progress(self, migration: Migration, progress: JobProgress) -> None:
        """A fresh job statistics sample (about every 0.5 s of clock time)."""

    def migration_escalated(self, migration: Migration, step: str, detail: str) -> None:
        """A stalled migration was pushed: raise downtime, rely on auto-converge, suspend, post-copy, abort."""

    def migration_retry(self, migration: Migration, attempt: int, delay_s: float, error: str) -> None:
        """A retryable error: the next attempt starts after `delay_s`."""

    def migration_done(self, migration: Migration, elapsed_s: float, now_s: float) -> None:
        """Verified on the destination."""

    def migration_failed(self, migration: Migration, state: str, error: str, now_s: float) -> None:
        """Ended without moving: failed, aborted or quarantined (`state`), with the libvirt error."""

    def run_finished(self, result: Any) -> None:
        """The run ended (a `RunResult`)."""

    def run_replanned(self, unavailable: tuple[str, ...], plan: Plan, solve_s: float) -> None:
        """`--replan`: these hosts stopped answering; the rest runs as `plan` (made in `solve_s`)."""

    def solver_progress(self, elapsed_s: float, objective: float, bound: float) -> None:
        """The planner found a better solution (used by `evac plan` / `evac demo`)."""


class EtaTracker:
    """What the live ETA needs (planner.eta), kept from the reporter hooks: the run clock is the latest
    `now_s` a hook gave, or a running migration's start plus libvirt's own job time (the hypervisor's
    clock: on the simulated fleet, simulated seconds)."""

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.now_s = 0.0
        self.running: dict[tuple[str, int], Running] = {}
        self.ended: dict[tuple[str, int], float] = {}
        self.given_up: set[tuple[str, int]] = set()

    def started(self, plan: Plan) -> None:
        self.plan = plan

    def migration_started(self, migration: Migration, now_s: float) -> None:
        self.now_s = max(self.now_s, now_s)
        self.running[(migration.vm, migration.hop)] = Running(now_s)

    def progress(self, migration: Migration, progress: JobProgress) -> None:
        key = (migration.vm, migration.hop)
        start = self.running[key].started_s if key in self.running else self.now_s
        self.now_s = max(self.now_s, start + progress.elapsed_s)
        self.running[key] = Running(start, progress.data_remaining_mib, progress.rate_mibs, progress.dirty_rate_mibs)

    def ended_at(self, migration: Migration, now_s: float, done: bool) -> None:
        key = (migration.vm, migration.hop)
        self.now_s = max(self.now_s, now_s)
        self.running.pop(key, None)
        if done:
            self.ended[key] = now_s
        else:
            self.given_up.add(key)

    def eta_s(self) -> float | None:
        if self.plan is None:
            return None
        return eta_s(self.plan, self.now_s, self.running, self.ended, self.given_up)


@dataclass
class RecordingReporter(Reporter):
    """Keeps every call as (hook name, data) for tests, and the in-flight sets seen at each start."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    in_flight_sets: list[tuple[str, ...]] = field(default_factory=list)

    def names(self, hook: str) -> list[str]:
        return [d["vm"] for h, d in self.calls if h == hook and "vm" in d]

    def run_started(self, plan: Plan, mode: str) -> None:
        self.calls.append(("run_started", {"mode": mode}))

    def migration_queued(self, migration: Migration, reason: str) -> None:
        self.calls.append(("migration_queued", {"vm": migration.vm, "reason": reason}))

    def migration_started(self, migration: Migration, attempt: int, now_s: float,
                          in_flight: tuple[str, ...]) -> None:
        self.in_flight_sets.append(in_flight)
        self.calls.append(("migration_started", {"vm": migration.vm, "attempt": attempt, "now_s": now_s}))

    def migration_progress(self, migration: Migration, progress: JobProgress) -> None:
        self.calls.append(("migration_progress", {"vm": migration.vm, "remaining_mib": progress.data_remaining_mib}))

    def migration_escalated(self, migration: Migration, step: str, detail: str) -> None:
        self.calls.append(("migration_escalated", {"vm": migration.vm, "step": step, "detail": detail}))

    def migration_retry(self, migration: Migration, attempt: int, delay_s: float, error: str) -> None:
        self.calls.append(("migration_retry", {"vm": migration.vm, "attempt": attempt, "delay_s": delay_s,
                                               "error": error}))

    def migration_done(self, migration: Migration, elapsed_s: float, now_s: float) -> None:
        self.calls.append(("migration_done", {"vm": migration.vm, "elapsed_s": elapsed_s, "now_s": now_s}))

    def migration_failed(self, migration: Migration, state: str, error: str, now_s: float) -> None:
        self.calls.append(("migration_failed", {"vm": migration.vm, "state": state, "error": error}))

    def run_finished(self, result: Any) -> None:
        self.calls.append(("run_finished", {"result": result}))

    def run_replanned(self, unavailable: tuple[str, ...], plan: Plan, solve_s: float) -> None:
        self.calls.append(("run_replanned", {"unavailable": unavailable, "plan": plan, "solve_s": solve_s}))

    def solver_progress(self, elapsed_s: float, objective: float, bound: float) -> None:
        self.calls.append(("solver_progress", {"elapsed_s": elapsed_s, "objective": objective, "bound": bound}))


class JsonReporter(Reporter):
    """One JSON object per line on `out` (stdout by default): `{"event": ..., "t": ..., ...}`."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.eta = EtaTracker()

    def _eta(self) -> float | None:
        left = self.eta.eta_s()
        return round(left, 1) if left is not None else None

    def _emit(self, event: str, **data: Any) -> None:
        self.out.write(json.dumps({"event": event, "t": round(time.time(), 3), **data}, default=str) + "\n")
        self.out.flush()

    def run_started(self, plan: Plan, mode: str) -> None:
        self.eta.started(plan)
        self._emit("run_started", mode=mode, migrations=len(plan.migrations), planned_makespan_s=plan.makespan_s)

    def migration_queued(self, migration: Migration, reason: str) -> None:
        self._emit("migration_queued", vm=migration.vm, reason=reason)

    def migration_started(self, migration: Migration, attempt: int, now_s: float,
                          in_flight: tuple[str, ...]) -> None:
        self.eta.migration_started(migration, now_s)
        self._emit("migration_started", vm=migration.vm, hop=migration.hop, source=migration.source,
                   destination=migration.destination, attempt=attempt, now_s=round(now_s, 3),
                   in_flight=len(in_flight))

    def migration_progress(self, migration: Migration, progress: JobProgress) -> None:
        self.eta.progress(migration, progress)
        self._emit("migration_progress", vm=migration.vm, processed_mib=round(progress.data_processed_mib, 1),
                   remaining_mib=round(progress.data_remaining_mib, 1), iteration=progress.memory_iteration,
                   rate_mibs=round(progress.rate_mibs, 1), eta_s=self._eta())

    def migration_escalated(self, migration: Migration, step: str, detail: str) -> None:
        self._emit("migration_escalated", vm=migration.vm, step=step, detail=detail)

    def migration_retry(self, migration: Migration, attempt: int, delay_s: float, error: str) -> None:
        self._emit("migration_retry", vm=migration.vm, attempt=attempt, delay_s=delay_s, error=error)

    def migration_done(self, migration: Migration, elapsed_s: float, now_s: float) -> None:
        self.eta.ended_at(migration, now_s, done=True)
        self._emit("migration_done", vm=migration.vm, hop=migration.hop, elapsed_s=round(elapsed_s, 3),
                   now_s=round(now_s, 3),
                   planned_s=round(migration.duration_s, 3), eta_s=self._eta())

    def migration_failed(self, migration: Migration, state: str, error: str, now_s: float) -> None:
        self.eta.ended_at(migration, now_s, done=False)
        self._emit("migration_failed", vm=migration.vm, hop=migration.hop, state=state, error=error,
                   now_s=round(now_s, 3), eta_s=self._eta())

    def run_finished(self, result: Any) -> None:
        summary = result.summary() if hasattr(result, "summary") else {}
        self._emit("run_finished", **summary)

    def run_replanned(self, unavailable: tuple[str, ...], plan: Plan, solve_s: float) -> None:
        self._emit("run_replanned", unavailable=list(unavailable), migrations=len(plan.migrations),
                   unplaced=[u.vm for u in plan.unplaced], solve_s=round(solve_s, 3), makespan_s=plan.makespan_s)

    def solver_progress(self, elapsed_s: float, objective: float, bound: float) -> None:
        self._emit("solver_progress", elapsed_s=round(elapsed_s, 3), objective=objective, bound=bound)


class RichReporter(Reporter):
    """rich.progress: one bar per running migration (bytes, rate, pre-copy iteration) and an overall
    bar whose ETA (planner.eta) comes from the plan's duration model and the measured rates of the
    running migrations. Import of rich happens here, in the shell."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
            TextColumn("{task.fields[note]}"), TimeRemainingColumn(),
            console=self.console, transient=False)
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None
        self._total_mib = 0.0
        self._done_mib: dict[str, float] = {}
        self.eta = EtaTracker()

    def run_started(self, plan: Plan, mode: str) -> None:
        self.eta.started(plan)
        self._total_mib = sum(max(m.memory_mib + m.disk_mib, 1.0) for m in plan.migrations)
        self.progress.start()
        self._overall = self.progress.add_task(f"[bold]evacuation ({mode})", total=self._total_mib * 2**20,
                                               note=f"0/{len(plan.migrations)}")
        self._n = len(plan.migrations)
        self._finished = 0

    def migration_started(self, migration: Migration, attempt: int, now_s: float,
                          in_flight: tuple[str, ...]) -> None:
        self.eta.migration_started(migration, now_s)
        note = f"→ {migration.destination}" + (f" (attempt {attempt})" if attempt > 1 else "")
        total = max(migration.memory_mib + migration.disk_mib, 1.0) * 2**20
        if migration.vm in self._tasks:
            self.progress.reset(self._tasks[migration.vm], total=total, note=note)
        else:
            self._tasks[migration.vm] = self.progress.add_task(migration.vm, total=total, note=note)

    def migration_progress(self, migration: Migration, progress: JobProgress) -> None:
        self.eta.progress(migration, progress)
        task = self._tasks.get(migration.vm)
        if task is None:
            return
        total = max(progress.data_total_mib, progress.data_processed_mib + progress.data_remaining_mib, 1.0)
        self.progress.update(task, total=total * 2**20, completed=progress.data_processed_mib * 2**20,
                             note=f"→ {migration.destination} {progress.rate_mibs:.0f} MiB/s "
                                  f"iter {progress.memory_iteration}")
        self._done_mib[migration.vm] = min(progress.data_processed_mib, migration.memory_mib + migration.disk_mib)
        self._update_overall()

    def migration_escalated(self, migration: Migration, step: str, detail: str) -> None:
        self.console.print(f"[yellow]{migration.vm}: {step}[/] {detail}")

    def migration_retry(self, migration: Migration, attempt: int, delay_s: float, error: str) -> None:
        self.console.print(f"[yellow]{migration.vm}: retry {attempt} in {delay_s:g} s[/] ({error})")

    def migration_done(self, migration: Migration, elapsed_s: float, now_s: float) -> None:
        self.eta.ended_at(migration, now_s, done=True)
        self._end(migration, max(migration.memory_mib + migration.disk_mib, 1.0))

    def migration_failed(self, migration: Migration, state: str, error: str, now_s: float) -> None:
        self.eta.ended_at(migration, now_s, done=False)
        self.console.print(f"[red]{migration.vm}: {state}[/] {error}")
        self._end(migration, max(migration.memory_mib + migration.disk_mib, 1.0))

    def _end(self, migration: Migration, size_mib: float) -> None:
        task = self._tasks.pop(migration.vm, None)
        if task is not None:
            self.progress.remove_task(task)
        self._done_mib[migration.vm] = size_mib
        self._finished += 1
        self._update_overall()

    def _update_overall(self) -> None:
        if self._overall is not None:
            left = self.eta.eta_s()
            self.progress.update(self._overall, completed=sum(self._done_mib.values()) * 2**20,
                                 note=f"{self._finished}/{self._n}" + (f" · ETA {left:.0f} s" if left else ""))

    def run_replanned(self, unavailable: tuple[str, ...], plan: Plan, solve_s: float) -> None:
        moves = ", ".join(f"{m.vm} → {m.destination}" for m in plan.migrations)
        self.console.print(f"[yellow]re-planned[/] around {', '.join(unavailable)} (unreachable) in {solve_s:.1f} s: "
                           f"{len(plan.migrations)} migrations ({moves})"
                           + (f"; cannot place {', '.join(u.vm for u in plan.unplaced)}" if plan.unplaced else ""))

    def run_finished(self, result: Any) -> None:
        self.progress.stop()
