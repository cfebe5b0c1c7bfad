"""How long a run still has to go: the live ETA of `evac run` (executor.reporter shows it).

Inputs: the plan (its durations follow the model it records, `Plan.duration_model`: a calibrated one
when it was made with `evac plan --model`), the run clock, what is done, and for each running
migration when it started and its latest job statistics (libvirt's measured transfer and dirty rates).

* A running migration with a measured rate ends after the pre-copy of what remains at THAT rate
  (`duration.remaining_s`: the rounds its measured dirty rate still causes); without a sample yet,
  after what is left of its planned duration.
* A pending migration takes its planned duration, starting no earlier than now and no earlier than
  its planned start plus the run's lateness: how far behind the plan the migrations already seen
  end (the worst of the running ones' predicted ends and the done ones' real ends, 0 when ahead;
  the executor dispatches by free resources, so what is late holds back what waits for it).

ETA = the latest predicted end − now.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from planner.duration import remaining_s
from planner.plan import Plan

HopKey = tuple[str, int]
# The planner's default policy downtime limit: the switchover test of the remaining rounds (the plan does
# not carry the policy; its effect on the ETA is one round at most).
SWITCHOVER_DOWNTIME_MS = 500.0


@dataclass(frozen=True, slots=True)
class Running:
    started_s: float  # run clock
    remaining_mib: float | None = None  # latest job statistics, None before the first sample
    rate_mibs: float = 0.0
    dirty_rate_mibs: float = 0.0


def eta_s(plan: Plan, now_s: float, running: Mapping[HopKey, Running], ended: Mapping[HopKey, float],
          given_up: Collection[HopKey] = ()) -> float:
    """Seconds until the last migration of `plan` should end; `ended` maps done migrations to their real end
    (run clock), `given_up` are failed or never to start (they add nothing)."""
    model = plan.duration_model
    late = 0.0
    latest = now_s
    by_key = {(m.vm, m.hop): m for m in plan.migrations}
    for key, end in ended.items():
        if key in by_key:
            late = max(late, end - by_key[key].end_s)
    for key, r in running.items():
        m = by_key.get(key)
        if m is None:
            continue
        if r.remaining_mib is not None and r.rate_mibs > 0:
            end = now_s + remaining_s(r.remaining_mib, r.dirty_rate_mibs, r.rate_mibs, SWITCHOVER_DOWNTIME_MS, model)
        else:
            end = max(now_s, r.started_s + m.duration_s)
        late = max(late, end - m.end_s)
        latest = max(latest, end)
    for key, m in by_key.items():
        if key in running or key in ended or key in given_up:
            continue
        latest = max(latest, max(now_s, m.start_s + late) + m.duration_s)
    return latest - now_s
