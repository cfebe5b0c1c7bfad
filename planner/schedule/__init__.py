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

make_plan first improves the best greedy variants by local search over their choices (the order,
each task's slowest level, the deadline: `search`), then hands CP-SAT the result as hint.

The package: `tasks` (what is scheduled: tasks, levels, caps, waves), `greedy` (the list schedule),
`search` (the local search over it) and `cpsat` (the CP-SAT model). Everyone imports from here.
"""

from planner.schedule.cpsat import ProgressHook, solve_schedule
from planner.schedule.greedy import best_greedy, fair_levels, greedy_schedule, source_levels
from planner.schedule.tasks import (
    LEVEL_DIVISORS,
    MILLI,
    MIN_SOLVE_S,
    UNITS_PER_S,
    Level,
    Schedule,
    Task,
    build_tasks,
    capped_milli,
    resource_caps,
    task_of,
    waves_of,
)

__all__ = ["LEVEL_DIVISORS", "MILLI", "MIN_SOLVE_S", "UNITS_PER_S", "Level", "ProgressHook", "Schedule", "Task",
           "best_greedy", "build_tasks", "capped_milli", "fair_levels", "greedy_schedule", "resource_caps",
           "solve_schedule", "source_levels", "task_of", "waves_of"]
