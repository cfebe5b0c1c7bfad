"""`evac run --replan`: when a destination stops answering, re-plan the rest from the live state.

A loop around `executor.runner.run_plan`, in one run and one journal:

1. run the plan with `halt_on_unreachable`: the first destination found unreachable at precheck
   stops dispatching; what is in flight ends normally (nothing is aborted);
2. fold what happened into an inventory (`planner.replan.live_inventory`: VMs moved are on their
   destinations, the unreachable hosts are down) and plan again, with the original drained set, the
   VMs that never reached a migrate call (`planner.replan.replan`, checked by the plan checker);
3. journal the re-plan (event `replan`: the unreachable hosts, the new plan and its digest, the solve
   time), requeue the VMs it moves, mark those it cannot place as failed with the planner's reasons;
4. run the new plan; repeat while new hosts stop answering (at most once per host).

VMs whose migration was attempted and failed, was aborted or quarantined are not re-planned: they
keep their state and are reported as without `--replan`. The result covers every VM of the
original plan; its `plan` is the original with each re-planned migration replaced by the one run.

`--resume` of a run that re-planned continues its last re-plan (rebuilt from the journal's `replan`
event and checked against the digests recorded there): in-flight VMs are reconciled against the
hosts the re-plan chose, not the original plan's.
"""

from __future__ import annotations

import dataclasses
import time

from executor.hypervisor import Hypervisor
from executor.journal import Journal, plan_digest
from executor.reporter import Reporter
from executor.runner import MigrationResult, RunOptions, RunResult, run_plan
from executor.states import Event, State, transition
from planner.errors import Problem, UsageError
from planner.model import Inventory
from planner.plan import Migration, Plan, plan_from_dict
from planner.replan import live_inventory, replan


def run_with_replan(plan: Plan, inventory: Inventory, hypervisor: Hypervisor, journal: Journal,
                    reporter: Reporter, options: RunOptions, *, time_limit_s: float = 5.0,
                    workers: int = 2) -> RunResult:
    """Executes `plan`, re-planning around destinations that stop answering (module docstring)."""
    clock = hypervisor.clock
    t_start = clock.now()
    final: dict[str, MigrationResult] = {}
    executed: dict[str, Migration] = {m.vm: m for m in plan.migrations}
    done_moves: dict[str, str] = {}
    unavailable: set[str] = set()
    unreachable: dict[str, str] = {}
    current_plan, current_inv, resume = plan, inventory, options.resume
    if resume:
        resumed = _resume_replanned(journal, plan, inventory)
        if resumed is not None:  # continue the re-planned plan, not the original one
            current_plan, current_inv, done_moves, unavailable = resumed
            replanned = {m.vm for m in current_plan.migrations}
            for rec in journal.records():  # what the resumed re-plan does not move: as the journal says
                if rec.vm not in replanned:
                    final[rec.vm] = MigrationResult(rec.vm, rec.state, rec.attempts, rec.error)
    while True:
        offset = clock.now() - t_start
        result = run_plan(current_plan, current_inv, hypervisor, journal, reporter,
                          dataclasses.replace(options, halt_on_unreachable=True, resume=resume))
        resume = False  # only the first round reconciles a previous run
        planned = {m.vm: m for m in current_plan.migrations}
        for vm, r in result.results.items():
            final[vm] = _shifted(r, offset)
            m = planned[vm]
            executed[vm] = _shifted_migration(m, offset) if current_plan is not plan else m
            if r.state in (State.DONE, State.QUARANTINED):  # quarantined: counted where it may be
                done_moves[vm] = m.destination
        unreachable.update(result.unreachable)
        new_hosts = set(result.unreachable.values()) - unavailable
        if result.cancelled or not new_hosts:
            break
        unavailable |= new_hosts
        # Never reached a migrate call in this round: still on their sources, untouched.
        to_move = sorted(vm for vm, r in result.results.items()
                         if r.state in (State.PENDING, State.FAILED) and r.started_s is None)
        if not to_move:
            break
        journal.event("replan_started", unavailable=sorted(unavailable), to_move=to_move)
        t0 = time.monotonic()
        live, new = replan(inventory, plan, done_moves, unavailable, to_move, time_limit_s=time_limit_s,
                           workers=workers)
        solve_s = time.monotonic() - t0
        journal.event("replan", unavailable=sorted(unavailable), plan_sha256=plan_digest(new),
                      inventory_sha256=live.sha256, migrations=len(new.migrations),
                      unplaced={u.vm: list(u.reasons) for u in new.unplaced}, solve_s=round(solve_s, 3),
                      makespan_s=new.makespan_s, done_moves=dict(done_moves), to_move=to_move, plan=new.to_dict())
        reporter.run_replanned(tuple(sorted(unavailable)), new, solve_s)
        if options.cancel.is_set():
            break
        for u in new.unplaced:
            _not_moved(journal, final[u.vm], "not moved: re-plan found no destination: " + "; ".join(u.reasons))
        for vm in set(to_move) - {m.vm for m in new.migrations} - {u.vm for u in new.unplaced}:
            _not_moved(journal, final[vm], "not moved: the re-plan leaves it where it is")
        for m in new.migrations:
            state = journal.state_of(m.vm)
            if state is not State.PENDING:
                journal.record(m.vm, transition(state, Event.REQUEUE), Event.REQUEUE, final[m.vm].attempts,
                               f"re-planned: {m.source} → {m.destination}")
        if not new.migrations:
            break
        current_plan, current_inv = new, live
    ended = [r.ended_s for r in final.values() if r.ended_s is not None]
    merged = dataclasses.replace(plan, migrations=tuple(executed[m.vm] for m in plan.migrations))
    return RunResult(merged, final, max(ended, default=0.0), cancelled=result.cancelled, unreachable=unreachable,
                     halted=False)


def _resume_replanned(journal: Journal, plan: Plan, inventory: Inventory
                      ) -> tuple[Plan, Inventory, dict[str, str], set[str]] | None:
    """The last re-plan the journal records, with the live inventory it was made for (rebuilt from the
    recorded facts and checked against the recorded digests), or None when the run never re-planned."""
    events = journal.events("replan")
    if not events:
        return None
    last = events[-1]
    done_moves, unavailable = dict(last["done_moves"]), set(last["unavailable"])
    live = live_inventory(inventory, done_moves, unavailable, to_move=last["to_move"], drained=plan.drained)
    new = plan_from_dict(last["plan"], f"{journal.path} (re-plan)")
    if live.sha256 != last["inventory_sha256"] or plan_digest(new) != last["plan_sha256"]:
        raise UsageError("journal", [Problem(str(journal.path), "its last re-plan does not match this inventory; "
                                                                 "resume with the inventory the run started with")])
    journal.event("resume_replanned", plan_sha256=last["plan_sha256"])
    return new, live, done_moves, unavailable


def _not_moved(journal: Journal, result: MigrationResult, why: str) -> None:
    """A VM the re-plan cannot place: failed (still on its source), with the planner's reasons."""
    state = journal.state_of(result.vm)
    if state is State.PENDING:
        journal.record(result.vm, transition(state, Event.BLOCKED), Event.BLOCKED, result.attempts, why)
        result.state = State.FAILED
    result.error = f"{why} ({result.error})" if result.error else why


def _shifted(r: MigrationResult, offset: float) -> MigrationResult:
    """Times on the clock of the whole run (each round's runner counts from its own start)."""
    return dataclasses.replace(r, started_s=None if r.started_s is None else r.started_s + offset,
                               ended_s=None if r.ended_s is None else r.ended_s + offset)


def _shifted_migration(m: Migration, offset: float) -> Migration:
    return dataclasses.replace(m, start_s=m.start_s + offset, end_s=m.end_s + offset)
