"""Schedule: when each migration runs and at what bandwidth (CP-SAT, with a greedy list schedule).

Placement and schedule are solved one after the other: the placement fixes each VM's destination
and path, then this module chooses start times and bandwidths for that placement.

Time is counted in units of 0.1 s. Each migration may run at one of a few bandwidth levels
(`cap`, `cap/2`, `cap/3`, `cap/4` of its path's capped capacity, rounded DOWN to 0.001 MiB/s);
less bandwidth lets more migrations share a link but lasts longer (the duration model at that
bandwidth, rounded UP to a whole unit so the plan never under-predicts).

CP-SAT model: per migration one start variable and one optional fixed-size interval per level
(exactly one present). `add_cumulative` on every host NIC direction and link direction with
capacity × migration_share (in 0.001 MiB/s, demands exact, capacities rounded down); cumulatives
of count 1 per interval for max_outbound_per_host, max_inbound_per_host and max_concurrent.
Objective: the makespan; when priorities differ, a secondary term Σ (priority − lowest) × start
makes higher priorities start earlier.

What needs no constraint here, and why: in a drain plan, sources are hosts being emptied and
destinations are hosts that are up and not drained, so no host is ever both. A destination only
gains VMs, hence its CPU, memory, copied-disk use and anti-affinity members at any instant are
a subset of its end state, which the placement already keeps within limits; a source only loses
VMs. So "holds the VM from the start of its migration" and "anti-affinity at every instant" are
implied by the end-state placement (the independent checker verifies them on every plan anyway).

The greedy list schedule (priority, longest first; at each event each waiting migration starts at
the highest level every cap and limit allows) is the CP-SAT hint, the horizon, and the fallback
when CP-SAT finds nothing within its time limit.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from ortools.sat.python import cp_model

from planner.duration import DEFAULT_MODEL, DurationModel, Estimate
from planner.migration_facts import MigrationFacts, migration_facts, vm_estimate
from planner.model import Inventory, Policy
from planner.topology import Resource, Topology

UNITS_PER_S = 10  # schedule time unit: 0.1 s
# Bandwidth levels: cap / k. Low levels matter: the fixed per-migration cost (~1.75 s) holds the
# migration's bandwidth too, so a link filled by many slow migrations wastes less than by few fast ones.
LEVEL_DIVISORS = (1, 2, 3, 4, 6, 8)
MILLI = 1000  # bandwidth in cumulatives: 0.001 MiB/s
MIN_SOLVE_S = 0.2  # less time than this left for CP-SAT: keep the greedy schedule


@dataclass(frozen=True, slots=True)
class Level:
    bandwidth_mibs: float
    demand: int  # bandwidth in 0.001 MiB/s
    duration_units: int
    estimate: Estimate


@dataclass(frozen=True, slots=True)
class Task:
    """One migration to schedule: facts fixed by the placement, and its bandwidth levels."""

    facts: MigrationFacts
    priority: int
    levels: tuple[Level, ...]  # highest bandwidth first
    resources: tuple[Resource, ...]

    @property
    def vm(self) -> str:
        return self.facts.vm


@dataclass(frozen=True)
class Schedule:
    start_units: Mapping[str, int]  # VM -> start
    level: Mapping[str, int]  # VM -> index into its task's levels
    makespan_units: int
    status: str  # "optimal", "feasible" (CP-SAT) or "greedy"


def build_tasks(inventory: Inventory, destination: Mapping[str, str], topology: Topology,
                model: DurationModel = DEFAULT_MODEL, divisors: Sequence[int] = LEVEL_DIVISORS) -> list[Task]:
    p = inventory.policy
    tasks = []
    for name, dest in destination.items():
        vm = inventory.vm[name]
        facts = migration_facts(vm, dest, inventory, topology)
        assert facts is not None  # candidates are reachable
        levels = []
        for k in divisors:
            bw = math.floor(facts.cap_mibs / k * MILLI) / MILLI
            if bw <= 0:
                continue
            est = vm_estimate(vm, bw, p, model)
            levels.append(Level(bw, round(bw * MILLI), max(1, math.ceil(est.duration_s * UNITS_PER_S - 1e-9)), est))
        tasks.append(Task(facts, vm.priority, tuple(levels), tuple(Topology.resources(facts.path))))
    return tasks


def resource_caps(tasks: Sequence[Task], topology: Topology, share: float) -> dict[Resource, int]:
    """Capped capacity of every resource some task uses, in 0.001 MiB/s (rounded down)."""
    caps: dict[Resource, int] = {}
    for t in tasks:
        for r in t.resources:
            if r not in caps:
                caps[r] = math.floor(topology.capacity_mibs(r) * share * MILLI)
    return caps


def _limit(n: int) -> int:
    """Policy counts: ≤ 0 means no limit."""
    return n if n > 0 else 1 << 30


def fair_levels(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy) -> dict[str, int]:
    """Per task, the level nearest to a fair share of its busiest resource.

    A resource r used by n_r tasks can have at most min(n_r, Σ per-source outbound limits,
    Σ per-destination inbound limits, max_concurrent) of them active; sharing it equally gives each
    cap_r / that. The task's fair bandwidth is the smallest such share along its path; its level is
    the lowest one at or above.
    """
    lim_out, lim_in = _limit(policy.max_outbound_per_host), _limit(policy.max_inbound_per_host)
    lim_all = _limit(policy.max_concurrent)
    per_source: dict[Resource, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_dest: dict[Resource, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in tasks:
        for r in t.resources:
            per_source[r][t.facts.source] += 1
            per_dest[r][t.facts.destination] += 1
    active = {r: min(lim_all, sum(min(lim_out, n) for n in srcs.values()),
                     sum(min(lim_in, n) for n in per_dest[r].values()))
              for r, srcs in per_source.items()}
    out = {}
    for t in tasks:
        fair = min(caps[r] / max(1, active[r]) for r in t.resources)
        li = 0
        for i, lvl in enumerate(t.levels):
            if lvl.demand >= fair:
                li = i
        out[t.vm] = li
    return out


def greedy_schedule(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy,
                    tries: Mapping[str, Sequence[int]] | None = None, interleave: bool = False) -> Schedule:
    """List schedule: priority then longest first; at every event start whatever fits.

    A task tries the levels `tries[vm]` in that order (default: only its full cap). Going below
    the level a task is meant to run at is a bad idea: a sliver of bandwidth left on a link would
    start a very slow migration that holds its slots for a long time.
    """
    if interleave:  # round-robin over sources, each longest first: keeps every source NIC busy
        rank: dict[str, int] = {}
        by_source: dict[str, list[Task]] = defaultdict(list)
        for t in tasks:
            by_source[t.facts.source].append(t)
        load = {s: sum(t.levels[0].duration_units for t in ts) for s, ts in by_source.items()}
        for ts in by_source.values():
            for i, t in enumerate(sorted(ts, key=lambda t: -t.levels[0].duration_units)):
                rank[t.vm] = i
        order = sorted(tasks, key=lambda t: (-t.priority, rank[t.vm], -load[t.facts.source], t.vm))
    else:
        order = sorted(tasks, key=lambda t: (-t.priority, -t.levels[0].duration_units, t.vm))
    # Everything by small integers (this loop runs for every event of a 2,500-migration drain):
    # task i = order[i]; keys 0..R-1 are resources, then one outbound slot key per source host,
    # then one inbound slot key per destination host.
    key_of: dict[object, int] = {}
    res_of: list[tuple[int, ...]] = []
    for t in order:
        res_of.append(tuple(key_of.setdefault(r, len(key_of)) for r in t.resources))
    n_res = len(key_of)
    cap = [0] * n_res
    for r, k in key_of.items():
        cap[k] = caps[r]  # type: ignore[index]
    out_key = [key_of.setdefault(("out", t.facts.source), len(key_of)) for t in order]
    in_key = [key_of.setdefault(("in", t.facts.destination), len(key_of)) for t in order]
    level_tries = [tuple(tries[t.vm]) if tries is not None else (0,) for t in order]
    demand_tries = [tuple(t.levels[li].demand for li in lt) for t, lt in zip(order, level_tries, strict=True)]
    min_demand = [min(d) for d in demand_tries]
    used = [0] * n_res
    slots = [0] * (len(key_of) - n_res)  # running migrations per slot key (index key - n_res)
    lim_out, lim_in = _limit(policy.max_outbound_per_host), _limit(policy.max_inbound_per_host)
    lim_all = _limit(policy.max_concurrent)
    total = 0
    running: list[tuple[int, int]] = []  # (end, task)
    start_of = [-1] * len(order)
    level_of = [0] * len(order)
    demand_of = [0] * len(order)
    # A task that cannot start waits on ONE key that blocks it: the outbound or inbound slot that
    # is full, or the first resource without room for its smallest demand. Until that key is
    # freed the task cannot start (between events usage only grows), and after, only if its
    # smallest demand fits the key's free room. So the waiting tasks are kept per (key, smallest
    # demand), in order; at an event only the groups of freed keys that fit now are merged, in
    # task order, and a group drops out of the merge as soon as it no longer fits (room only
    # shrinks while tasks start). On a 250-host drain that looks at a handful of tasks per event
    # instead of thousands, and gives the same schedule as re-trying every pending task.
    groups: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(len(key_of))]
    pending = len(order)
    now = 0
    examined = [-1] * len(order)  # the event at which a task was last looked at
    event = 0

    def fits(k: int, dem: int) -> bool:
        return used[k] + dem <= cap[k] if k < n_res else slots[k - n_res] < (lim_out if k in out_keys else lim_in)

    out_keys = set(out_key)
    in_keys = set(in_key)
    if out_keys & in_keys:  # a host both source and destination: impossible in a drain (see module doc)
        raise AssertionError("a host is both a source and a destination")

    def attempt(i: int) -> bool:
        """Start task i now if it fits, else park it on what blocks it; False when max_concurrent is full."""
        nonlocal total, pending
        if total >= lim_all:
            return False
        examined[i] = event
        ok, ik = out_key[i], in_key[i]
        if slots[ok - n_res] >= lim_out:
            heapq.heappush(groups[ok][0], i)
            return True
        if slots[ik - n_res] >= lim_in:
            heapq.heappush(groups[ik][0], i)
            return True
        rs = res_of[i]
        for li, dem in zip(level_tries[i], demand_tries[i], strict=True):
            if all(used[r] + dem <= cap[r] for r in rs):
                for r in rs:
                    used[r] += dem
                slots[ok - n_res] += 1
                slots[ik - n_res] += 1
                total += 1
                start_of[i], level_of[i], demand_of[i] = now, li, dem
                heapq.heappush(running, (now + order[i].levels[li].duration_units, i))
                pending -= 1
                return True
        dem = min_demand[i]
        blocker = next(r for r in rs if used[r] + dem > cap[r])
        heapq.heappush(groups[blocker][dem], i)
        return True

    full_scan: list[int] | None = list(range(len(order)))  # every pending task, in order
    freed: set[int] = set()
    while pending:
        if full_scan is not None:
            scan, full_scan = full_scan, None
            for i in scan:
                if start_of[i] < 0 and not attempt(i):  # max_concurrent full: all look again next time
                    full_scan = [j for j in range(len(order)) if start_of[j] < 0]
                    break
        else:
            front = [(g[0], k, dem) for k in freed for dem, g in groups[k].items() if g and fits(k, dem)]
            heapq.heapify(front)
            while front:
                _, k, dem = heapq.heappop(front)
                if not fits(k, dem):
                    continue  # the group waits for the next time k is freed
                g = groups[k][dem]
                i = heapq.heappop(g)
                if start_of[i] < 0 and examined[i] != event and not attempt(i):
                    full_scan = [j for j in range(len(order)) if start_of[j] < 0]
                    break
                if g and fits(k, dem):
                    heapq.heappush(front, (g[0], k, dem))
        if not pending:
            break
        if not running:  # cannot happen: alone, every task fits at its path cap
            raise AssertionError(f"greedy schedule stuck with {pending} migrations and nothing running")
        now = running[0][0]
        event += 1
        freed = set()
        while running and running[0][0] == now:
            _, i = heapq.heappop(running)
            dem = demand_of[i]
            for r in res_of[i]:
                used[r] -= dem
            slots[out_key[i] - n_res] -= 1
            slots[in_key[i] - n_res] -= 1
            total -= 1
            freed.update(res_of[i])
            freed.add(out_key[i])
            freed.add(in_key[i])
    start = {order[i].vm: start_of[i] for i in range(len(order))}
    level = {order[i].vm: level_of[i] for i in range(len(order))}
    makespan = max((start_of[i] + order[i].levels[level_of[i]].duration_units for i in range(len(order))), default=0)
    return Schedule(start, level, makespan, "greedy")


def source_levels(tasks: Sequence[Task], policy: Policy, target_units: int) -> dict[str, int]:
    """Per task, the lowest level at which its source host still empties within `target_units`.

    A source with n migrations of B MiB in all and k outbound slots needs about
    B / (k × (target − n × fixed / k)) MiB/s per migration. Lower bandwidth wastes less of a shared
    link on fixed costs (the bandwidth is held from the start), so slower is better as long as the
    source keeps up.
    """
    lim_out = _limit(policy.max_outbound_per_host)
    by_source: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_source[t.facts.source].append(t)
    out = {}
    for group in by_source.values():
        k = min(lim_out, len(group))
        total_mib = sum(t.levels[0].estimate.transferred_mib for t in group)
        fixed_units = sum(t.levels[0].duration_units for t in group) - total_mib / max(
            1e-9, min(t.levels[0].bandwidth_mibs for t in group)) * UNITS_PER_S
        room_units = max(1.0, target_units - max(0.0, fixed_units) / k)
        need_mibs = total_mib / k / (room_units / UNITS_PER_S)
        for t in group:
            li = 0
            for i, lvl in enumerate(t.levels):
                if lvl.bandwidth_mibs >= need_mibs:
                    li = i
            out[t.vm] = li
    return out


def best_greedy(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy,
                target_units: int = 0) -> Schedule:
    """The shortest of a few greedy variants (full cap only; cap or cap/2; the fair share or faster;
    the slowest level that lets each source finish by `target_units` or faster)."""
    fair = fair_levels(tasks, caps, policy)
    variants: list[dict[str, Sequence[int]]] = [
        {t.vm: (0,) for t in tasks},
        {t.vm: tuple(range(min(2, len(t.levels)))) for t in tasks},
        {t.vm: tuple(range(fair[t.vm], -1, -1)) for t in tasks},
    ]
    if target_units > 0:
        # Cheap (~15 ms per greedy run for 2,445 migrations): try several deadlines.
        for stretch in (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1):
            lv = source_levels(tasks, policy, int(target_units * stretch))
            variants.append({t.vm: tuple(range(lv[t.vm], -1, -1)) for t in tasks})
    runs = [greedy_schedule(tasks, caps, policy, v) for v in variants]
    runs += [greedy_schedule(tasks, caps, policy, v, interleave=True) for v in variants]
    return min(runs, key=lambda s: s.makespan_units)


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
                   greedy: Schedule | None = None) -> Schedule:
    """CP-SAT schedule of `tasks` (see the module docstring); the greedy schedule if CP-SAT finds nothing.

    `time_limit_s` bounds the whole call (the greedy schedules and building the model count);
    when less than MIN_SOLVE_S is left for CP-SAT, the greedy schedule is returned unsolved.
    `greedy`: `best_greedy` of these tasks, if the caller already has it.
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

    by_resource: dict[Resource, list[tuple[cp_model.IntervalVar, int]]] = defaultdict(list)
    by_source: dict[str, list[cp_model.IntervalVar]] = defaultdict(list)
    by_dest: dict[str, list[cp_model.IntervalVar]] = defaultdict(list)
    everything: list[cp_model.IntervalVar] = []
    for t in tasks:
        for iv, li in intervals[t.vm]:
            for r in t.resources:
                by_resource[r].append((iv, t.levels[li].demand))
            by_source[t.facts.source].append(iv)
            by_dest[t.facts.destination].append(iv)
            everything.append(iv)
    for r, items in by_resource.items():
        _cumulative(m, items, caps[r])
    n_per_source: dict[str, int] = defaultdict(int)
    n_per_dest: dict[str, int] = defaultdict(int)
    for t in tasks:
        n_per_source[t.facts.source] += 1
        n_per_dest[t.facts.destination] += 1
    for groups, counts, limit in ((by_source, n_per_source, policy.max_outbound_per_host),
                                  (by_dest, n_per_dest, policy.max_inbound_per_host)):
        if limit > 0:
            for host, host_ivs in groups.items():
                if counts[host] > limit:
                    _cumulative(m, [(iv, 1) for iv in host_ivs], limit)
    if 0 < policy.max_concurrent < len(tasks):
        _cumulative(m, [(iv, 1) for iv in everything], policy.max_concurrent)

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


def _cumulative(m: cp_model.CpModel, items: list[tuple[cp_model.IntervalVar, int]], capacity: int) -> None:
    """add_cumulative, skipped when even all demands at once fit (it could never bind)."""
    if sum(d for _, d in items) <= capacity:
        return
    m.add_cumulative([iv for iv, _ in items], [d for _, d in items], capacity)


def waves_of(start_units: Mapping[str, int]) -> dict[str, int]:
    """Waves: migrations with identical start times, numbered in start order."""
    distinct = sorted(set(start_units.values()))
    number = {s: i for i, s in enumerate(distinct)}
    return {vm: number[s] for vm, s in start_units.items()}
