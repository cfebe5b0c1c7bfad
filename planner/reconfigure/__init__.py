"""Reconfiguration: every kind of plan but a drain — repair, target, rebalance, return — with staging hops.

`reconfigure(inventory, kind, ...)` (and `make_reconfiguration`, its plan only):
1. the goal (`goal`): where every VM that moves ends. Every kind repairs: VMs of hosts being emptied
   and misplaced VMs (`planner.repair`) go to hosts that suit them. `target` adds the operator's
   placement (each refused target explained); `rebalance` adds the moves `rebalance.choose_moves`
   picks to level utilisation; `return` is a target of homes (`goal.return_goal`; made from a journal by
   `planner.reconfigure.return_home`) in which a home that is refused, or that no safe order reaches,
   is skipped with its reason (`Reconfiguration.skipped`) instead of leaving the VM unplaced;
2. the sequence (`sequence`): hops safe at every instant (capacity with a VM on both hosts during its
   hop, anti-affinity, bandwidth, slots), staging hops breaking cycles, cycles no staging host can
   break explained and their VMs left in place;
3. the lower bound (`bound`): valid for any plan ending VMs where this one does, whatever its hops;
4. the plan, checked: every plan returned passes `planner.checker.assert_plan_valid`.
The greedy sequence fixes each VM's route; `cpsat.improve` then re-times its hops with CP-SAT (host
capacity as cumulatives over each VM's stays, the greedy as hint) in the time left, up to
`CPSAT_MAX_HOPS` hops; the plan's `solver` says which one won.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from planner.balance import moved_gib, spread, utilisation
from planner.checker import assert_plan_valid
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.migration_facts import drain_set
from planner.model import Inventory
from planner.plan import Balance, Migration, Plan, PlanKind, PlanStatus, Unplaced
from planner.reconfigure.bound import moves_lower_bound
from planner.reconfigure.cpsat import improve
from planner.reconfigure.goal import Goal, must_move, repair_goal, return_goal, target_goal
from planner.reconfigure.rebalance import Choice, RebalanceOptions, choose_moves
from planner.reconfigure.sequence import Sequence, sequence_moves
from planner.schedule import UNITS_PER_S
from planner.solve import SolverReporter
from planner.topology import Topology

REPAIR_SHARE = 0.5  # of the time limit, for the repair placement's CP-SAT
CPSAT_MAX_HOPS = 2000  # more hops than this: the greedy sequence only (the model would not improve it in time)
FINISH_S = 0.5  # kept for the bound, the plan and the checker after the sequence's CP-SAT
# Taken off the repair placement's time per VM to move, for what always runs after it (greedy sequence,
# bound, plan, checker): 13 s for the 2,445 hops of a 5,000-host drain + repair on 2 cores shared with
# other work, ~5 ms per hop; 4 ms keeps some of it for the placement's CP-SAT on a quieter machine.
RESERVE_S_PER_MOVER = 0.004


@dataclass(frozen=True, slots=True)
class LadderRow:
    """Balance against cost after the first `moves` moves a rebalance chose."""

    moves: int
    spread_pct: float
    worst_group_spread_pct: float
    moved_gib: float
    makespan_s: float


@dataclass(frozen=True)
class Reconfiguration:
    plan: Plan
    notes: tuple[str, ...] = ()  # what the operator should know: a target not reached, ignored inputs
    ladder: tuple[LadderRow, ...] = ()
    target_reached: bool = True
    skipped: Mapping[str, str] = field(default_factory=dict)  # return: VM -> why it is not sent home


def reconfigure(inventory: Inventory, kind: PlanKind, *, drained: Iterable[str] = (),
                target: Mapping[str, str] | None = None, rebalance_options: RebalanceOptions | None = None,
                time_limit_s: float = 30.0, workers: int = 2, model: DurationModel = DEFAULT_MODEL,
                reporter: SolverReporter | None = None, ladder: bool = True,
                keep: Iterable[str] = ()) -> Reconfiguration:
    """A checked plan of `kind` (repair, target, rebalance or return) and what the operator should know about it.

    For `return`, `target` is each VM's home (VM -> host). For `target`, the VMs of `keep` stay where they
    are even when their host breaks a rule (unplaced, with the reason): a re-plan mid-run
    (`planner.replan`) must not move again a VM the run already attempted."""
    if kind is PlanKind.DRAIN:
        raise ValueError("reconfigure makes repair, target, rebalance and return plans, not drain")
    t0 = time.monotonic()
    inventory.sha256  # noqa: B018 -- cached; counted in the solve time
    empty = drain_set(inventory, tuple(drained))
    topology = Topology(inventory)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    if kind is PlanKind.TARGET:
        goal = target_goal(inventory, dict(target or {}), empty, topology, keep=frozenset(keep))
    elif kind is PlanKind.RETURN:
        goal, skipped = return_goal(inventory, dict(target or {}), empty, topology)
    else:
        left = time_limit_s - (time.monotonic() - t0)
        goal = repair_goal(inventory, empty, topology, time_limit_s=left * REPAIR_SHARE, workers=workers,
                           model=model, reserve_s_per_mover=RESERVE_S_PER_MOVER)
    options = rebalance_options or RebalanceOptions()
    choice: Choice | None = None
    if kind is PlanKind.REBALANCE:
        start = {v.name: goal.destination.get(v.name, v.host) for v in inventory.vms}
        choice = choose_moves(inventory, start, empty, options, topology,
                              frozen=set(goal.destination) | set(goal.unplaced))
        goal.destination.update(dict(choice.moves))
    seq = sequence_moves(inventory, goal.destination, drained=empty, topology=topology, model=model)
    if choice is not None:  # a rebalance move that cannot be sequenced is dropped, not a VM left unplaced
        optional = {name for name, _ in choice.moves}
        dropped = sorted(optional & set(seq.blocked))
        if dropped:
            notes.append(f"{len(dropped)} rebalance moves dropped (no safe order): {', '.join(dropped[:10])}")
            seq = Sequence(seq.hops, {n: w for n, w in seq.blocked.items() if n not in optional})
    if kind is PlanKind.RETURN:  # a home no safe order reaches is skipped; a VM that must move stays unplaced
        optional = {n for n in target or {} if n not in skipped} - set(must_move(inventory, empty))
        for name in sorted(optional & set(seq.blocked)):
            skipped[name] = "no safe order brings it home: " + "; ".join(seq.blocked[name])
        seq = Sequence(seq.hops, {n: w for n, w in seq.blocked.items() if n not in optional})
        target = {n: h for n, h in (target or {}).items() if n not in skipped}
    if reporter is not None:
        reporter.solver_progress(time.monotonic() - t0, seq.makespan_units / UNITS_PER_S, 0.0)
    solver = "greedy"
    left = time_limit_s - (time.monotonic() - t0) - FINISH_S
    if len(seq.hops) <= CPSAT_MAX_HOPS:
        better = improve(inventory, seq, topology, time_limit_s=left, workers=workers)
        if better is not None:
            seq, solver = better, "cp-sat"
            if reporter is not None:
                reporter.solver_progress(time.monotonic() - t0, seq.makespan_units / UNITS_PER_S, 0.0)
    plan = assemble(inventory, kind, empty, goal, seq, topology, model, t0, target=target, options=options,
                    solver=solver)
    assert_plan_valid(inventory, plan, model, topology=topology)
    rows: tuple[LadderRow, ...] = ()
    reached = True
    if choice is not None:
        rows = cost_ladder(inventory, goal, choice, empty, options, topology, model) if ladder else ()
        t = options.target_spread_pct
        after = plan.balance.after.spread_pct if plan.balance is not None else 0.0
        if t is not None and choice.worst_spread[-1] > t + 1e-9:
            reached = False
            notes.append(f"target spread {t:g}% not reached: the best reachable is {choice.worst_spread[-1]:.1f}% "
                         f"with {len(choice.moves)} moves ({choice.gib[-1] if choice.gib else 0.0:.1f} GiB); "
                         f"stopped: {choice.stop}")
        else:
            notes.append(f"spread {plan.balance.before.spread_pct if plan.balance else 0.0:.1f}% -> {after:.1f}% "
                         f"with {len(choice.moves)} moves; stopped: {choice.stop}")
    if seq.staged:
        notes.append(f"{len(seq.staged)} VMs take a staging hop to break a cycle of full hosts: "
                     f"{', '.join(seq.staged[:10])}{' …' if len(seq.staged) > 10 else ''}")
    return Reconfiguration(plan, tuple(notes), rows, reached, skipped)


def make_reconfiguration(inventory: Inventory, kind: PlanKind, *, drained: Iterable[str] = (),
                         target: Mapping[str, str] | None = None, rebalance_options: RebalanceOptions | None = None,
                         time_limit_s: float = 30.0, workers: int = 2, model: DurationModel = DEFAULT_MODEL,
                         reporter: SolverReporter | None = None, keep: Iterable[str] = ()) -> Plan:
    """The checked plan of `reconfigure` (see there)."""
    return reconfigure(inventory, kind, drained=drained, target=target, rebalance_options=rebalance_options,
                       time_limit_s=time_limit_s, workers=workers, model=model, reporter=reporter,
                       ladder=False, keep=keep).plan


def migrations_of(inventory: Inventory, seq: Sequence) -> list[Migration]:
    """Plan v1 migrations of the hops, waves numbered by distinct start time."""
    starts = sorted({h.start_units for h in seq.hops})
    wave = {s: i for i, s in enumerate(starts)}
    last = {h.vm: max(x.hop for x in seq.hops if x.vm == h.vm) for h in seq.hops if h.staging}
    out = []
    for h in seq.hops:
        f, lvl = h.task.facts, h.task.levels[h.level]
        est = lvl.estimate
        out.append(Migration(
            vm=h.vm, source=f.source, destination=f.destination, wave=wave[h.start_units],
            start_s=h.start_units / UNITS_PER_S, end_s=h.end_units / UNITS_PER_S, bandwidth_mibs=lvl.bandwidth_mibs,
            path=f.path, copy_storage=f.copy_storage, live=f.live, converges=est.converges,
            auto_converge=est.throttled, predicted_downtime_ms=est.downtime_ms,
            priority=inventory.vm[h.vm].priority, memory_mib=f.memory_mib, disk_mib=f.disk_mib, hop=h.hop,
            staging=h.hop < last.get(h.vm, 0)))
    out.sort(key=lambda m: (m.start_s, m.vm, m.hop))
    return out


def assemble(inventory: Inventory, kind: PlanKind, empty: frozenset[str], goal: Goal, seq: Sequence,
             topology: Topology, model: DurationModel, t0: float, *, target: Mapping[str, str] | None,
             options: RebalanceOptions, solver: str = "greedy") -> Plan:
    migrations = migrations_of(inventory, seq)
    reasons = dict(goal.unplaced)
    for name, why in seq.blocked.items():
        reasons[name] = list(why)
    final = {v.name: v.host for v in inventory.vms}
    final.update({m.vm: m.destination for m in migrations if not m.staging})
    lb = moves_lower_bound(inventory, final, model, topology=topology)
    makespan = max((m.end_s for m in migrations), default=0.0)
    if reasons:
        status = PlanStatus.INFEASIBLE
    elif makespan <= lb.value_s + 1.0 / UNITS_PER_S:
        status = PlanStatus.OPTIMAL
    else:
        status = PlanStatus.FEASIBLE
    balance = None
    if kind is PlanKind.REBALANCE:
        start = {v.name: v.host for v in inventory.vms}
        before = spread(utilisation(inventory, start, options.metric, options.by, empty))
        after = spread(utilisation(inventory, final, options.metric, options.by, empty))
        gib = sum(moved_gib(inventory.vm[m.vm], m) for m in migrations)
        balance = Balance(options.metric.value, options.by.value, before, after, gib)
    order = {h.name: i for i, h in enumerate(inventory.hosts)}
    known_target = {vm: h for vm, h in (target or {}).items() if vm in inventory.vm}
    return Plan(inventory_sha256=inventory.sha256, drained=tuple(sorted(empty, key=order.__getitem__)),
                status=status, makespan_s=makespan, lower_bound_s=min(lb.value_s, makespan),
                solve_s=time.monotonic() - t0, migrations=tuple(migrations),
                unplaced=tuple(Unplaced(n, tuple(reasons[n])) for n in sorted(reasons)), solver=solver,
                kind=kind, balance=balance,
                target=known_target if kind in (PlanKind.TARGET, PlanKind.RETURN) else {})


def cost_ladder(inventory: Inventory, goal: Goal, choice: Choice, empty: frozenset[str], options: RebalanceOptions,
                topology: Topology, model: DurationModel) -> tuple[LadderRow, ...]:
    """Spread, GiB and makespan after the first 1, 2, 4, 8 … moves (and all of them), repairs included."""
    n = len(choice.moves)
    counts = sorted({*(k for k in (2 ** i for i in range(n.bit_length())) if k <= n), n} - {0})
    rows = []
    for k in counts:
        dest = dict(goal.destination)
        for name, _ in choice.moves[k:]:
            dest.pop(name, None)
        final = {v.name: dest.get(v.name, v.host) for v in inventory.vms}
        seq = sequence_moves(inventory, dest, drained=empty, topology=topology, model=model)
        for name in seq.blocked:
            final[name] = inventory.vm[name].host
        s = spread(utilisation(inventory, final, options.metric, options.by, empty))
        gib = sum(moved_gib(inventory.vm[m.vm], m) for m in migrations_of(inventory, seq))
        rows.append(LadderRow(k, s.spread_pct, choice.worst_spread[k], gib, seq.makespan_units / UNITS_PER_S))
    return tuple(rows)


__all__ = ["LadderRow", "RebalanceOptions", "Reconfiguration", "make_reconfiguration", "reconfigure"]
