"""Local search over the greedy list schedule's choices: the order tasks are offered a start, the
slowest level each may start at, and the deadline (planner.schedule.greedy).

The greedy variants are already good at filling the busiest link; what they lose is mostly at the
tail (the last migrations end at different times) and in the mix of levels (slow migrations waste
less of a link on the fixed cost but hold their slots longer). Small changes to one task's place in
the order or to its level, kept when the schedule gets no worse, walk that down. Each step is one
greedy run (a few ms for a few hundred migrations), far cheaper than a CP-SAT step on the same
model, and every schedule it returns is a greedy schedule: within every cap and slot limit by
construction (the checker verifies the plan anyway).

Judged by (makespan, the sum of the latest tenth of the end times): the second term lets a change
that shortens the tail without moving the makespan yet be kept, so the search is not lost on the
makespan's plateau. Random but seeded: the same time budget on an idle machine gives the same
answer, and a stop by the clock keeps the best found so far.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence

from planner.model import Policy
from planner.schedule.greedy import Recipe, greedy_order, greedy_runs
from planner.schedule.tasks import Schedule, Task
from planner.topology import Resource

MOVE_WINDOW = 20  # a task moved earlier in the order goes at most this many places up
# Stop after this many steps in a row (per task, at least STALL_MIN) without a better schedule: a
# small fleet's search is then over in a fraction of a second and CP-SAT, which may prove its
# schedule optimal, gets the time.
STALL_STEPS_PER_TASK = 10
STALL_MIN = 100
RESTARTS = 3  # after a stall, the search starts again from the next best greedy variant, up to this many
SEED = 0


def _score(tasks: Sequence[Task], s: Schedule) -> tuple[int, int]:
    ends = sorted((s.start_units[t.vm] + t.levels[s.level[t.vm]].duration_units for t in tasks), reverse=True)
    return s.makespan_units, sum(ends[:max(1, len(ends) // 10)])


def _neighbour(recipe: Recipe, tasks: Sequence[Task], order: list[Task], late: Sequence[int],
               rng: random.Random) -> Recipe:
    """One small change: a task earlier in the order, one task's slowest level one step, or the deadline ±1 %.
    Half the time the task is one of `late` (positions in `order` of the tasks that end last): the tail
    is where the makespan is lost."""
    pick = rng.random()
    focus = rng.random() < 0.5 and bool(late)
    if pick < 0.4 and len(order) > 1:
        new_order = list(order)
        i = rng.choice(late) if focus else rng.randrange(1, len(new_order))
        if i == 0:
            return recipe
        new_order.insert(rng.randrange(max(0, i - MOVE_WINDOW), i), new_order.pop(i))
        return Recipe(recipe.tries, recipe.interleave, recipe.deadline_units, tuple(new_order))
    if pick < 0.8 or recipe.deadline_units <= 0:
        t = order[rng.choice(late)] if focus else tasks[rng.randrange(len(tasks))]
        step = -1 if focus else rng.choice((-1, 1))  # a late task is made faster
        slowest = min(len(t.levels) - 1, max(0, max(recipe.tries[t.vm]) + step))
        tries = dict(recipe.tries)
        tries[t.vm] = tuple(range(slowest, -1, -1))
        return Recipe(tries, recipe.interleave, recipe.deadline_units, tuple(order))
    deadline = max(1, round(recipe.deadline_units * rng.choice((0.99, 1.01))))
    return Recipe(recipe.tries, recipe.interleave, deadline, tuple(order))


def _late(tasks_in_order: Sequence[Task], s: Schedule) -> list[int]:
    """Positions (in the order) of the tenth of the tasks that end last."""
    ends = [s.start_units[t.vm] + t.levels[s.level[t.vm]].duration_units for t in tasks_in_order]
    ranked = sorted(range(len(ends)), key=lambda i: -ends[i])
    return ranked[:max(1, len(ranked) // 10)]


def improve_greedy(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy, target_units: int,
                   time_limit_s: float, starts: Sequence[tuple[Schedule, Recipe]] = (), seed: int = SEED,
                   on_better: Callable[[int], None] | None = None) -> Schedule:
    """The first of `starts` (default: `greedy_runs`, the greedy variants shortest first) improved by
    local search for `time_limit_s` in all; when a search stalls, the next of the RESTARTS first starts
    is searched. Never worse than the first start; stops early at `target_units` (the lower bound).
    `on_better(makespan_units)` hears, after each search from a start, of a schedule shorter than all before."""
    t0 = time.monotonic()
    if not starts:
        starts = greedy_runs(tasks, caps, policy, target_units)
    best = starts[0][0]
    for i, start in enumerate(starts[:RESTARTS]):
        if not tasks or best.makespan_units <= target_units or time.monotonic() - t0 >= time_limit_s:
            break
        found = _search(tasks, caps, policy, target_units, start, t0 + time_limit_s, random.Random(seed + i))
        if found.makespan_units < best.makespan_units:
            best = found
            if on_better is not None:
                on_better(best.makespan_units)
    return best


def _search(tasks: Sequence[Task], caps: Mapping[Resource, int], policy: Policy, target_units: int,
            start: tuple[Schedule, Recipe], deadline: float, rng: random.Random) -> Schedule:
    """Local search from `start` until `deadline` (monotonic clock), a stall, or the target."""
    best, recipe = start
    score = _score(tasks, best)
    current, current_score = recipe, score
    current_order = list(recipe.order) if recipe.order is not None else greedy_order(tasks, recipe.interleave)
    late = _late(current_order, best)
    stall = 0
    stall_limit = max(STALL_MIN, STALL_STEPS_PER_TASK * len(tasks))
    while time.monotonic() < deadline and stall < stall_limit:
        stall += 1
        cand = _neighbour(current, tasks, current_order, late, rng)
        s = cand.run(tasks, caps, policy)
        sc = _score(tasks, s)
        if sc <= current_score:  # ties too: walking a plateau is how the tail gets shorter
            current, current_score = cand, sc
            current_order = list(cand.order) if cand.order is not None else current_order
            late = _late(current_order, s)
            if sc < score:
                best, score, stall = s, sc, 0
                if best.makespan_units <= target_units:
                    break
    return best
