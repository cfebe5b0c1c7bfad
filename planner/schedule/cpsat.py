"""The CP-SAT schedule: one start variable and one optional interval per bandwidth level.

`add_cumulative` on every host NIC direction and link direction, counts for the slot limits (each
plan-level rule of `planner.rules` encodes itself: `encode_moves`); the objective is the makespan,
then priorities (see the package docstring).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pandas as pd
from ortools.sat.python import cp_model

from planner.model import Inventory, Policy
from planner.rules import plan_rules
from planner.rules.base import MoveOption, MovesModel, MoveVars
from planner.schedule.greedy import best_greedy
from planner.schedule.tasks import MIN_SOLVE_S, Schedule, Task, resource_caps
from planner.topology import Topology

ProgressHook = Callable[[float, float, float], None]


class _Progress(cp_model.CpSolverSolutionCallback):
    """Reports (wall time, makespan units, lower bound units) at every improving solution."""

    def __init__(self, hook: ProgressHook, makespan: cp_model.IntVar, bound_units: int) -> None:
        super().__init__()
        self.hook = hook
        self.makespan = makespan
        self.bound_units = bound_units

    def on_solution_callback(self) -> None:
        self.hook(self.wall_time, float(self.value(self.makespan)), float(self.bound_units))


def solve_schedule(tasks: Sequence[Task], topology: Topology, policy: Policy, *, time_limit_s: float, workers: int,
                   lower_bound_units: int = 0, progress: ProgressHook | None = None,
                   greedy: Schedule | None = None, inventory: Inventory | None = None) -> Schedule:
    """CP-SAT schedule of `tasks` (see the module docstring); the greedy schedule if CP-SAT finds nothing.

    `time_limit_s` bounds the whole call (the greedy schedules and building the model count);
    when less than MIN_SOLVE_S is left for CP-SAT, the greedy schedule is returned unsolved.
    `greedy`: `best_greedy` of these tasks, if the caller already has it. `inventory`: the tasks' own, for
    plan-level rules that need more than the policy (`planner.rules.base.MovesModel`).
    """
    t0 = time.monotonic()
    caps = resource_caps(tasks, topology, policy.migration_share)
    if greedy is None:
        greedy = best_greedy(tasks, caps, policy, lower_bound_units)
    if not tasks:
        return Schedule({}, {}, 0, "optimal")
    if greedy.makespan_units <= lower_bound_units or time_limit_s - (time.monotonic() - t0) < MIN_SOLVE_S:
        # Proven optimal by the bound, or no time left for CP-SAT to improve it: the greedy
        # schedule is the answer (the reporter still hears of it, as of a solver's solution).
        if progress is not None:
            progress(time.monotonic() - t0, float(greedy.makespan_units), float(lower_bound_units))
        if greedy.makespan_units <= lower_bound_units:
            return Schedule(greedy.start_units, greedy.level, greedy.makespan_units, "optimal")
        return greedy
    horizon = greedy.makespan_units
    m = cp_model.CpModel()
    index = pd.Index([t.vm for t in tasks], name="vm")
    starts = m.new_int_var_series("start", index, 0, horizon)
    makespan = m.new_int_var(min(lower_bound_units, horizon), horizon, "makespan")
    present: dict[str, list[cp_model.IntVar]] = {}
    intervals: dict[str, list[tuple[cp_model.IntervalVar, int]]] = {}
    for t in tasks:
        ps, ivs = [], []
        for li, lvl in enumerate(t.levels):
            if lvl.duration_units > horizon:
                continue  # cannot end within the greedy makespan: never better
            pv = m.new_bool_var(f"lvl_{t.vm}_{li}")
            iv = m.new_optional_fixed_size_interval_var(starts[t.vm], lvl.duration_units, pv, f"iv_{t.vm}_{li}")
            m.add(starts[t.vm] + lvl.duration_units <= makespan).only_enforce_if(pv)
            ps.append(pv)
            ivs.append((iv, li))
        m.add_exactly_one(ps)
        present[t.vm], intervals[t.vm] = ps, ivs

    # Bandwidth, migration slots and every other plan-level rule encode themselves (planner.rules).
    moves = [MoveVars(t.vm, 0, t.facts.source, t.facts.destination, starts[t.vm],
                      [MoveOption(iv, t.levels[li].duration_units, pv, t.levels[li].demand)
                       for (iv, li), pv in zip(intervals[t.vm], present[t.vm], strict=True)], t.resources)
             for t in tasks]
    rules_model = MovesModel(m, policy, inventory, moves, horizon, caps)
    for rule in plan_rules():
        rule.encode_moves(rules_model)
    if rules_model.unsupported is not None:  # a rule this model cannot state: keep the greedy schedule
        return greedy

    low = min(t.priority for t in tasks)
    tie_terms = [(t.priority - low) * starts[t.vm] for t in tasks if t.priority > low]
    if tie_terms:
        weight = sum(t.priority - low for t in tasks) * horizon + 1
        m.minimize(weight * makespan + sum(tie_terms))
    else:
        m.minimize(makespan)

    for t in tasks:
        m.add_hint(starts[t.vm], greedy.start_units[t.vm])
        for pv, (_iv, li) in zip(present[t.vm], intervals[t.vm], strict=True):
            m.add_hint(pv, li == greedy.level[t.vm])
    m.add_hint(makespan, horizon)

    solver = cp_model.CpSolver()
    left_s = time_limit_s - (time.monotonic() - t0)
    if left_s < MIN_SOLVE_S:  # building the model took the time left
        if progress is not None:
            progress(time.monotonic() - t0, float(greedy.makespan_units), float(lower_bound_units))
        return greedy
    solver.parameters.max_time_in_seconds = left_s
    solver.parameters.num_workers = max(1, workers)
    status = solver.solve(m, _Progress(progress, makespan, lower_bound_units) if progress is not None else None)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        start = {t.vm: int(solver.value(starts[t.vm])) for t in tasks}
        level = {}
        for t in tasks:
            chosen = [li for pv, (_iv, li) in zip(present[t.vm], intervals[t.vm], strict=True)
                      if solver.boolean_value(pv)]
            level[t.vm] = chosen[0]
        span = max(start[t.vm] + t.levels[level[t.vm]].duration_units for t in tasks)
        return Schedule(start, level, span, "optimal" if status == cp_model.OPTIMAL else "feasible")
    if status == cp_model.UNKNOWN:  # time limit with no solution: the greedy schedule is valid
        return greedy
    if status == cp_model.INFEASIBLE:
        raise AssertionError("schedule model infeasible although the greedy schedule fits its horizon")
    raise AssertionError(f"schedule model invalid: {solver.status_name(status)}")

