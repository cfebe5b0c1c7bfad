"""`evac run --replan`: when a destination stops answering, re-plan the rest from the live state.

A loop around `executor.runner.run_plan`, in one run and one journal:

1. run the plan with `halt_on_unreachable`: the first destination found unreachable at precheck
   stops dispatching; what is in flight ends normally (nothing is aborted);
2. fold what happened into an inventory (`planner.replan.live_inventory`: VMs moved are where their
   last done hop took them — a staging host too —, the unreachable hosts are down) and plan again the
   VMs whose current hop never reached a migrate call (`planner.replan.replan`, checked by the plan
   checker: a drain with the original drained set; any other kind as a target of where the plan ends
   them, so a VM halted on its staging host still gets its last hop). The new plan's hops are numbered
   after the hops each VM already made (`planner.replan.renumber_hops`): the journal's (VM, hop) rows
   stay one chain per VM, and `evac status` shows the route as run;
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
from planner.monitor import HopKey, hop_key
from planner.plan import Migration, Plan, plan_from_dict
from planner.replan import live_inventory, renumber_hops, replan


def run_with_replan(plan: Plan, inventory: Inventory, hypervisor: Hypervisor, journal: Journal,
                    reporter: Reporter, options: RunOptions, *, time_limit_s: float = 5.0,
                    workers: int = 2) -> RunResult:
    """Executes `plan`, re-planning around destinations that stop answering (module docstring)."""
    clock = hypervisor.clock
    t_start = clock.now()
    final: dict[str, MigrationResult] = {}
    executed: dict[HopKey, Migration] = {hop_key(m): m for m in plan.migrations}
    done_moves: dict[str, str] = {}  # VM -> where its last done hop took it (quarantined: its destination)
    hops_done: dict[str, int] = {}  # VM -> how many hops it made (the journal's numbering)
    unavailable: set[str] = set()
    unreachable: dict[str, str] = {}
    current_plan, current_inv, resume = plan, inventory, options.resume
    if resume:
        resumed = _resume_replanned(journal, plan, inventory)
        if resumed is not None:  # continue the re-planned plan, not the original one
            current_plan, current_inv, done_moves, unavailable, hops_done = resumed
            replanned = {m.vm for m in current_plan.migrations}
            for rec in journal.records():  # what the resumed re-plan does not move: as the journal says
                if rec.vm not in replanned:
                    final[rec.vm] = MigrationResult(rec.vm, rec.state, rec.attempts, rec.error)
    while True:
        offset = clock.now() - t_start
        result = run_plan(current_plan, current_inv, hypervisor, journal, reporter,
                          dataclasses.replace(options, halt_on_unreachable=True, resume=resume))
        resume = False  # only the first round reconciles a previous run
        for vm, r in result.results.items():
            final[vm] = _shifted(r, offset)
        for m in current_plan.migrations:
            executed[hop_key(m)] = _shifted_migration(m, offset) if current_plan is not plan else m
        where, made = _positions(current_plan, result)
        done_moves.update(where)
        hops_done.update(made)
        unreachable.update(result.unreachable)
        new_hosts = set(result.unreachable.values()) - unavailable
        if result.cancelled or not new_hosts:
            break
        unavailable |= new_hosts
        # The current hop never reached a migrate call in this round: the VM is where its last done hop left it.
        to_move = _never_started(current_plan, result)
        if not to_move:
            break
        journal.event("replan_started", unavailable=sorted(unavailable), to_move=to_move)
        t0 = time.monotonic()
        live, checked = replan(inventory, plan, done_moves, unavailable, to_move, time_limit_s=time_limit_s,
                               workers=workers)
        new = renumber_hops(checked, hops_done)
        solve_s = time.monotonic() - t0
        journal.event("replan", unavailable=sorted(unavailable), plan_sha256=plan_digest(new),
                      inventory_sha256=live.sha256, migrations=len(new.migrations),
                      unplaced={u.vm: list(u.reasons) for u in new.unplaced}, solve_s=round(solve_s, 3),
                      makespan_s=new.makespan_s, done_moves=dict(done_moves), to_move=to_move, plan=new.to_dict(),
                      hops_done=dict(hops_done))
        reporter.run_replanned(tuple(sorted(unavailable)), new, solve_s)
        if options.cancel.is_set():
            break
        wanted = set(to_move)
        for u in new.unplaced:
            if u.vm in wanted:  # a target re-plan also lists VMs it keeps where they are: not its to report
                _not_moved(journal, final[u.vm], "not moved: re-plan found no destination: " + "; ".join(u.reasons))
        for vm in wanted - {m.vm for m in new.migrations} - {u.vm for u in new.unplaced}:
            _not_moved(journal, final[vm], "not moved: the re-plan leaves it where it is")
        for vm in {m.vm for m in new.migrations}:  # the hops the re-plan replaces are not run as planned
            for key in [k for k in executed if k[0] == vm and k[1] >= hops_done.get(vm, 0)]:
                del executed[key]
        for m in new.migrations:
            executed[hop_key(m)] = m
            state = journal.state_of(m.vm, m.hop)
            if state is not State.PENDING:
                journal.record(m.vm, transition(state, Event.REQUEUE), Event.REQUEUE, final[m.vm].attempts,
                               f"re-planned: {m.source} → {m.destination}", hop=m.hop)
        if not new.migrations:
            break
        current_plan, current_inv = new, live
    ended = [r.ended_s for r in final.values() if r.ended_s is not None]
    merged = dataclasses.replace(plan, migrations=tuple(executed.values()))
    return RunResult(merged, final, max(ended, default=0.0), cancelled=result.cancelled, unreachable=unreachable,
                     halted=False)


def _positions(plan: Plan, result: RunResult) -> tuple[dict[str, str], dict[str, int]]:
    """Per VM of `plan` that moved in this round: where its last done hop took it (a quarantined hop: its
    destination, the conservative count) and how many hops it has made (the journal's numbering)."""
    where: dict[str, str] = {}
    made: dict[str, int] = {}
    for vm, hops in _chains(plan).items():
        for m in hops:
            r = result.hops.get(hop_key(m))
            if r is None or r.state not in (State.DONE, State.QUARANTINED):
                break
            where[vm], made[vm] = m.destination, m.hop + 1
            if r.state is State.QUARANTINED:
                break
    return where, made


def _never_started(plan: Plan, result: RunResult) -> list[str]:
    """VMs whose current hop (their first not done) never reached a migrate call in this round."""
    out = []
    for vm, hops in _chains(plan).items():
        current = next((m for m in hops if result.hops[hop_key(m)].state is not State.DONE), None)
        if current is None:
            continue
        r = result.hops[hop_key(current)]
        if r.state in (State.PENDING, State.FAILED) and r.started_s is None:
            out.append(vm)
    return sorted(out)


def _chains(plan: Plan) -> dict[str, list[Migration]]:
    out: dict[str, list[Migration]] = {}
    for m in sorted(plan.migrations, key=lambda m: m.hop):
        out.setdefault(m.vm, []).append(m)
    return out


def _resume_replanned(journal: Journal, plan: Plan, inventory: Inventory
                      ) -> tuple[Plan, Inventory, dict[str, str], set[str], dict[str, int]] | None:
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
    return new, live, done_moves, unavailable, {str(k): int(v) for k, v in dict(last.get("hops_done", {})).items()}


def _not_moved(journal: Journal, result: MigrationResult, why: str) -> None:
    """A VM the re-plan cannot place: failed (still on its source), with the planner's reasons."""
    state = journal.state_of(result.vm, result.hop)  # its current hop's: a VM may be on its staging host
    if state is State.PENDING:
        journal.record(result.vm, transition(state, Event.BLOCKED), Event.BLOCKED, result.attempts, why,
                       hop=result.hop)
        result.state = State.FAILED
    result.error = f"{why} ({result.error})" if result.error else why


def _shifted(r: MigrationResult, offset: float) -> MigrationResult:
    """Times on the clock of the whole run (each round's runner counts from its own start)."""
    return dataclasses.replace(r, started_s=None if r.started_s is None else r.started_s + offset,
                               ended_s=None if r.ended_s is None else r.ended_s + offset)


def _shifted_migration(m: Migration, offset: float) -> Migration:
    return dataclasses.replace(m, start_s=m.start_s + offset, end_s=m.end_s + offset)
