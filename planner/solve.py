"""`make_plan`: inventory + drain set → a checked plan v1 (placement, then schedule).

Steps: the drain set (named hosts + maintenance hosts); VMs no plan can move (pinned, live VM on
a down host, no compatible host) are unplaced with their reasons; candidates per VM
(planner.candidates, pruned on big fleets); placement (planner.placement, CP-SAT, widened and
re-solved when pruning may have cost a VM its place); schedule (planner.schedule: the greedy list
schedule's variants, a local search over their choices (planner.schedule.search), then CP-SAT with
that as hint and fallback); the lower bound (planner.lowerbound); and finally the
independent checker: every plan returned passes `assert_plan_valid`, else `InconsistentPlanError`.

Status: `infeasible` when a VM is unplaced; `optimal` when the makespan equals the proven lower
bound (to the 0.1 s time unit) or both solves were proven optimal (the placement for its makespan
proxy, the schedule for that placement); `feasible` otherwise. `solver` is "greedy" when either
phase fell back to its greedy answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Protocol

from planner.baselines import ffd_placement
from planner.candidates import Candidates, find_candidates
from planner.checker import assert_plan_valid
from planner.contract_baselines import contract_plans
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.explain import StaticExplainer, dynamic_reasons
from planner.inventory_cache import per_inventory
from planner.lowerbound import lower_bound
from planner.migration_facts import drain_set, vms_on_hosts
from planner.model import Inventory
from planner.placement import PlacementResult, place
from planner.plan import Migration, Plan, PlanStatus, Unplaced
from planner.schedule import UNITS_PER_S, build_tasks, resource_caps, solve_schedule, waves_of
from planner.schedule.greedy import greedy_runs
from planner.schedule.search import improve_greedy
from planner.topology import Topology

PLACEMENT_SHARE = 0.25  # of the time left for solving; the schedule gets the rest (it gains more from time)
# Of the time left for the schedule, the share of the greedy's local search (the rest is CP-SAT's,
# starting from the search's answer). Measured: after the search CP-SAT improved none of medium,
# 500 or 5,000 hosts within the time; on small fleets the search stalls early and CP-SAT, which can
# prove its schedule optimal there, gets the time left.
SEARCH_SHARE = 0.8
# Time kept for what follows the schedule solve (plan assembly, the checker): measured ~0.2 s for
# 2,445 migrations on the 2-core dev machine; kept generously so the whole call fits its limit.
FINISH_BASE_S = 0.1
RIVAL_MAX_MOVES = 1000  # above this, no contract-held baseline is computed (see _best_contract_rival)
FINISH_PER_MIGRATION_S = 0.0002


class SolverReporter(Protocol):
    """The one hook the planner calls (executor.reporter.Reporter implements it)."""

    def solver_progress(self, elapsed_s: float, objective: float, bound: float) -> None: ...


def make_plan(inventory: Inventory, drained: Iterable[str], *, time_limit_s: float = 30.0, workers: int = 2,
              model: DurationModel = DEFAULT_MODEL, reporter: SolverReporter | None = None,
              drain_labels: Iterable[str] = (), greedy_only: bool = False) -> Plan:
    """A valid plan v1 emptying `drained` and every host in maintenance (see the module docstring).

    `time_limit_s` bounds the whole call as closely as practical: every step counts against it,
    the placement solve gets PLACEMENT_SHARE of what is left, the schedule solve the rest less a
    reserve for the checker. Steps without a solver (candidates, greedy answers, lower bound,
    checker) always run, so a tiny limit still returns a valid (greedy) plan, a little late.

    `greedy_only`: no CP-SAT at all, the greedy placement and schedule: the same plan on every run
    whatever the machine's load (a CP-SAT solve stopped by the clock is not), in well under a second
    per thousand VMs. `evac whatif` compares scenarios with it; `evac plan --greedy` gives the same plan.
    """
    t0 = time.monotonic()
    deadline = t0 + time_limit_s
    inventory.sha256  # noqa: B018 -- cached; computed now so its time counts before the budget is split
    named = tuple(drained)
    empty = drain_set(inventory, named)
    topology = per_inventory("topology", inventory, Topology)  # never mutated; a sweep reuses it per fleet
    movers_all = vms_on_hosts(inventory, empty)
    reasons: dict[str, list[str]] = {}
    movable = []
    explainer = StaticExplainer(inventory, empty, topology)
    for v in movers_all:
        r = explainer.reasons(v)
        if r:
            reasons[v.name] = r
        else:
            movable.append(v)

    reserve_s = FINISH_BASE_S + FINISH_PER_MIGRATION_S * len(movable)

    def left_s() -> float:  # zero for greedy_only: placement and schedule then keep their greedy answers
        return 0.0 if greedy_only else deadline - time.monotonic() - reserve_s

    cands = find_candidates(inventory, movable, empty, topology)
    result = place(inventory, movable, cands, empty, topology,
                   time_limit_s=left_s() * PLACEMENT_SHARE, workers=workers, model=model)
    for widen in (4, 0):  # pruning may have cost a VM its place: widen the windows, then keep every host
        if not any(not cands.complete[v] for v in result.unplaced):
            break
        cands = find_candidates(inventory, movable, empty, topology, per_vm=cands.per_vm * widen)
        left = left_s() * PLACEMENT_SHARE
        result = _better(result, place(inventory, movable, cands, empty, topology, time_limit_s=left,
                                       workers=workers, model=model))
    for name in result.unplaced:
        reasons[name] = dynamic_reasons(inventory, inventory.vm[name], empty, topology, result.destination,
                                        cands.hosts.get(name))

    tasks = build_tasks(inventory, result.destination, topology, model)
    lb = lower_bound(inventory, named, model, moving=set(result.destination), topology=topology)
    lb_units = int(lb.value_s * UNITS_PER_S)
    share = inventory.policy.migration_share
    caps = resource_caps(tasks, topology, share)
    thorough = not greedy_only  # greedy_only (what-if sweeps): the cheaper set of greedy variants
    runs = greedy_runs(tasks, caps, inventory.policy, lb_units, thorough)
    greedy = runs[0][0]
    if result.status != "greedy" and result.greedy and set(result.greedy) == set(result.destination) \
            and dict(result.greedy) != dict(result.destination):
        # The placement objective is a proxy for the makespan: when the greedy placement moves the
        # same VMs, let the greedy scheduler judge both and keep the one it schedules shorter.
        alt = build_tasks(inventory, result.greedy, topology, model)
        alt_caps = resource_caps(alt, topology, share)
        alt_runs = greedy_runs(alt, alt_caps, inventory.policy, lb_units, thorough)
        if alt_runs[0][0].makespan_units < greedy.makespan_units:
            tasks, caps, runs, greedy = alt, alt_caps, alt_runs, alt_runs[0][0]
            result = PlacementResult(result.greedy, result.unplaced, result.status, result.predicted_load_s,
                                     result.greedy)

    def progress(elapsed_s: float, objective: float, bound: float) -> None:
        if reporter is not None:
            reporter.solver_progress(time.monotonic() - t0, objective / UNITS_PER_S, bound / UNITS_PER_S)

    # computed before the schedule solve so that its time counts against the limit
    rival = _best_contract_rival(inventory, tuple(sorted(empty)), result.destination, model, topology)
    # The greedy's own local search first (planner.schedule.search), then CP-SAT from its answer.
    greedy = improve_greedy(tasks, caps, inventory.policy, lb_units, left_s() * SEARCH_SHARE, starts=runs,
                            on_better=None if reporter is None else lambda u: progress(0.0, float(u), float(lb_units)))
    sched = solve_schedule(tasks, topology, inventory.policy, time_limit_s=left_s(), workers=workers,
                           lower_bound_units=lb_units, progress=progress if reporter is not None else None,
                           greedy=greedy, inventory=inventory)
    waves = waves_of(sched.start_units)
    migrations = []
    for t in tasks:
        lvl = t.levels[sched.level[t.vm]]
        start = sched.start_units[t.vm] / UNITS_PER_S
        f, est = t.facts, lvl.estimate
        migrations.append(Migration(
            vm=t.vm, source=f.source, destination=f.destination, wave=waves[t.vm], start_s=start,
            end_s=(sched.start_units[t.vm] + lvl.duration_units) / UNITS_PER_S, bandwidth_mibs=lvl.bandwidth_mibs,
            path=f.path, copy_storage=f.copy_storage, live=f.live, converges=est.converges,
            auto_converge=est.throttled, predicted_downtime_ms=est.downtime_ms, priority=t.priority,
            memory_mib=f.memory_mib, disk_mib=f.disk_mib))
    migrations.sort(key=lambda m: (m.start_s, m.vm))
    makespan = sched.makespan_units / UNITS_PER_S
    solver = "greedy" if "greedy" in (sched.status, result.status) and tasks else "cp-sat"
    # Never worse than a tool's ordering held to the same contract (planner.contract_baselines): on
    # this placement, and on FFD's when it moves the same VMs. A shorter one is the plan. The tools admit
    # migrations in the order they are given, so evac's own start order is one more order to try.
    if migrations and len(migrations) <= RIVAL_MAX_MOVES:
        in_plan_order = {m.vm: m.destination for m in migrations}
        own_order = min(contract_plans(inventory, tuple(sorted(empty)), model, topology, destination=in_plan_order),
                        key=lambda p: p.makespan_s)
        if rival is None or own_order.makespan_s < rival.makespan_s:
            rival = own_order
    if rival is not None and rival.makespan_s < makespan - 1e-9:
        migrations, makespan, solver = list(rival.migrations), rival.makespan_s, f"baseline:{rival.solver}"
    unplaced = tuple(Unplaced(v.name, tuple(reasons[v.name])) for v in movers_all if v.name in reasons)
    if unplaced:
        status = PlanStatus.INFEASIBLE
    elif makespan <= lb.value_s + 1.0 / UNITS_PER_S or (sched.status == "optimal" and result.status == "optimal"
                                                         and not solver.startswith("baseline")):
        status = PlanStatus.OPTIMAL
    else:
        status = PlanStatus.FEASIBLE
    plan = Plan(inventory_sha256=inventory.sha256, drained=tuple(sorted(empty, key=_host_order(inventory))),
                status=status, makespan_s=makespan, lower_bound_s=lb.value_s,
                solve_s=time.monotonic() - t0, migrations=tuple(migrations), unplaced=unplaced, solver=solver,
                drain_labels=tuple(drain_labels))
    assert_plan_valid(inventory, plan, model, topology=topology)
    return plan


def _host_order(inventory: Inventory):  # type: ignore[no-untyped-def]
    order = per_inventory("host-order", inventory, lambda inv: {h.name: i for i, h in enumerate(inv.hosts)})
    return lambda name: order.get(name, len(order))


def _best_contract_rival(inventory: Inventory, drained: tuple[str, ...], destination: Mapping[str, str],
                         model: DurationModel, topology: Topology) -> Plan | None:
    """The shortest contract-held baseline moving exactly the VMs of `destination` (None if none).

    Skipped above RIVAL_MAX_MOVES migrations: there the baselines take seconds each (FFD 8 s, the
    all-at-once ordering 8 s on the 5,000-host fleet) and are several times longer than the plan.
    """
    if not destination or len(destination) > RIVAL_MAX_MOVES:
        return None
    placements = [destination]
    ffd = ffd_placement(inventory, drained, topology)
    if set(ffd.destination) == set(destination):
        placements.append(ffd.destination)
    # each placement in priority order first (a tie goes to the one that honours priorities), then as given
    orders = [dict(sorted(d.items(), key=lambda kv: -inventory.vm[kv[0]].priority)) for d in placements] + placements
    rivals = [p for d in orders for p in contract_plans(inventory, drained, model, topology, destination=d)]
    return min(rivals, key=lambda p: p.makespan_s)


def _better(a: PlacementResult, b: PlacementResult) -> PlacementResult:
    """The placement with fewer VMs left out (the first on a tie)."""
    return b if len(b.unplaced) < len(a.unplaced) else a


__all__ = ["Candidates", "make_plan"]
