"""The greedy list schedule: the CP-SAT hint, the horizon, and the fallback.

Priority, longest first; at each event each waiting migration starts at the highest level every
cap and limit allows. Several variants (full cap only; cap or cap/2; a fair share; per-source
deadlines), plain and interleaved, and the shortest wins.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from planner.model import Policy
from planner.schedule.tasks import UNITS_PER_S, Schedule, Task
from planner.topology import Resource

SOURCE_STRETCHES = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1)  # × target: the per-source deadlines tried
# Where between the target and a slow variant's own makespan its deadlines are put.
DEADLINE_POINTS = (0.0, 0.2, 0.4, 0.6, 0.8)
DEADLINE_BASES = 2  # how many of the best slow variants are tried under those deadlines
THOROUGH_MAX_TASKS = 1000  # greedy_runs(thorough=True): every slow variant, up to this many tasks


def _limit(n: int) -> int:
    """Policy counts: ≤ 0 means no limit."""
    return n if n > 0 else 1 << 30


def _slowest_level_at_least(values: Sequence[float], threshold: float) -> int:
    """Index of the slowest level (levels go highest bandwidth first) whose value is still ≥ `threshold`;
    the fastest level (0) when none is."""
    chosen = 0
    for i, value in enumerate(values):
        if value >= threshold:
            chosen = i
    return chosen


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
        out[t.vm] = _slowest_level_at_least([lvl.demand for lvl in t.levels], fair)
    return out


def greedy_order(tasks: Sequence[Task], interleave: bool = False) -> list[Task]:
    """The order tasks are offered a start: priority, then longest first; `interleave`: round-robin over
    sources, each longest first, which keeps every source NIC busy."""
    if interleave:
        rank: dict[str, int] = {}
        by_source: dict[str, list[Task]] = defaultdict(list)
        for t in tasks:
            by_source[t.facts.source].append(t)
        load = {s: sum(t.levels[0].duration_units for t in ts) for s, ts in by_source.items()}
        for ts in by_source.values():
            for i, t in enumerate(sorted(ts, key=lambda t: -t.levels[0].duration_units)):
                rank[t.vm] = i
        return sorted(tasks, key=lambda t: (-t.priority, rank[t.vm], -load[t.facts.source], t.vm))
    return sorted(tasks, key=lambda t: (-t.priority, -t.levels[0].duration_units, t.vm))


def greedy_schedule(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy,
                    tries: Mapping[str, Sequence[int]] | None = None, interleave: bool = False,
                    deadline_units: int = 0, order: Sequence[Task] | None = None) -> Schedule:
    """List schedule: priority then longest first; at every event start whatever fits.

    A task tries the levels `tries[vm]` in that order (default: only its full cap). Going below
    the level a task is meant to run at is a bad idea: a sliver of bandwidth left on a link would
    start a very slow migration that holds its slots for a long time.

    `deadline_units` > 0: as a migration starts, the levels of its tries that would end after the
    deadline are dropped (the fastest of its tries is kept when none ends in time). Slow wastes
    less of a shared link on the fixed cost (its bandwidth is held from the start), and the
    deadline makes the last migrations fast, so the tail of the schedule stays short.

    `order`: the tasks in the order they are offered a start (instead of the two orders above).
    """
    order = list(order) if order is not None else greedy_order(tasks, interleave)
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
        lt, dt = level_tries[i], demand_tries[i]
        if deadline_units > 0:
            lt = _deadline_tries(order[i], lt, deadline_units - now)
            dt = tuple(order[i].levels[li].demand for li in lt)
        for li, dem in zip(lt, dt, strict=True):
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
        # Parked under its smallest demand now: under a deadline that only grows as time passes, so
        # the task is still unable to start before the key that blocks it is freed.
        dem = min(dt)
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


def _deadline_tries(task: Task, tries: tuple[int, ...], room_units: int) -> tuple[int, ...]:
    """`tries` without the levels that would end after `room_units`; the fastest of them when none ends in time."""
    kept = tuple(li for li in tries if task.levels[li].duration_units <= room_units)
    return kept or (min(tries),)


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
            out[t.vm] = _slowest_level_at_least([lvl.bandwidth_mibs for lvl in t.levels], need_mibs)
    return out


@dataclass(frozen=True)
class Recipe:
    """What one greedy run is given: each task's level tries, the order, the deadline."""

    tries: Mapping[str, tuple[int, ...]]
    interleave: bool = False
    deadline_units: int = 0
    order: tuple[Task, ...] | None = None  # None: greedy_order(tasks, interleave)

    def run(self, tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy) -> Schedule:
        return greedy_schedule(tasks, caps, policy, self.tries, self.interleave, self.deadline_units, self.order)


def greedy_recipes(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy,
                   target_units: int = 0) -> list[Recipe]:
    """The greedy variants without a deadline that `best_greedy` tries (see there); the slow ones
    (fair share, per-source levels) from index SLOW_FROM on."""
    fair = fair_levels(tasks, caps, policy)
    variants: list[dict[str, tuple[int, ...]]] = [
        {t.vm: (0,) for t in tasks},
        {t.vm: tuple(range(min(2, len(t.levels)))) for t in tasks},
        {t.vm: tuple(range(fair[t.vm], -1, -1)) for t in tasks},
    ]
    if target_units > 0:
        # Cheap (~15 ms per greedy run for 2,445 migrations): try several deadlines.
        for stretch in SOURCE_STRETCHES:
            lv = source_levels(tasks, policy, int(target_units * stretch))
            variants.append({t.vm: tuple(range(lv[t.vm], -1, -1)) for t in tasks})
    return [Recipe(v, il) for v in variants for il in (False, True)]


SLOW_FROM = 4  # greedy_recipes: the first two variants (× plain, interleaved) run at full or half cap


def best_greedy(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy,
                target_units: int = 0) -> Schedule:
    """The shortest of a few greedy variants (full cap only; cap or cap/2; the fair share or faster;
    the slowest level that lets each source finish by `target_units` or faster), each plain and
    interleaved, and the best slow ones again under deadlines a little past `target_units`."""
    return best_recipe(tasks, caps, policy, target_units)[0]


def best_recipe(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy,
                target_units: int = 0) -> tuple[Schedule, Recipe]:
    """`best_greedy`'s schedule and the recipe that made it (the first of the shortest)."""
    return greedy_runs(tasks, caps, policy, target_units)[0]


def greedy_runs(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy,
                target_units: int = 0, thorough: bool = False) -> list[tuple[Schedule, Recipe]]:
    """Every variant `best_greedy` tries, with its schedule, shortest first (ties in the order tried).

    `thorough`: the deadlines on every slow variant, not only the DEADLINE_BASES best, up to
    THOROUGH_MAX_TASKS tasks (medium: a search from there ends 0.8 % shorter; ~0.5 s more there).
    """
    recipes = greedy_recipes(tasks, caps, policy, target_units)
    runs = [(r.run(tasks, caps, policy), r) for r in recipes]
    if target_units > 0:
        # The slow variants lose most at the tail, where a slow migration started late ends late: a
        # deadline a little past the target speeds those up. Tried on the DEADLINE_BASES best slow
        # variants only (each greedy run of 2,445 migrations takes ~0.15 s on a loaded machine).
        # The deadlines lie between the target and the variant's own makespan (the best fall at a
        # fifth to three fifths of the way on the bench fleets, 1.02-1.06 × the lower bound).
        bases = len(runs) if thorough and len(tasks) <= THOROUGH_MAX_TASKS else DEADLINE_BASES
        slow = sorted(range(SLOW_FROM, len(runs)), key=lambda i: runs[i][0].makespan_units)[:bases]
        for i in slow:
            base_run, base = runs[i]
            room = max(0, base_run.makespan_units - target_units)
            for d in DEADLINE_POINTS:
                r = Recipe(base.tries, base.interleave, target_units + int(room * d))
                runs.append((r.run(tasks, caps, policy), r))
    return sorted(runs, key=lambda sr: sr[0].makespan_units)
