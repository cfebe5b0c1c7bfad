"""planner.eta: the live ETA follows the plan's model and the measured rates of running migrations."""

from __future__ import annotations

import dataclasses

import pytest

from executor.hypervisor import JobProgress
from executor.reporter import EtaTracker
from planner.duration import DurationModel, remaining_s
from planner.eta import SWITCHOVER_DOWNTIME_MS, Running, eta_s
from planner.plan import Migration, Plan, PlanStatus


def _m(vm: str, start: float, end: float) -> Migration:
    return Migration(vm, "a", "b", 0, start, end, 10.0, ("a", "b"), memory_mib=100.0)


PLAN = Plan("x", ("a",), PlanStatus.FEASIBLE, 30.0, 0.0, 0.0, (_m("v1", 0, 10), _m("v2", 10, 20), _m("v3", 20, 30)))


def test_before_anything_runs_the_eta_is_the_plans_makespan() -> None:
    assert eta_s(PLAN, 0.0, {}, {}) == pytest.approx(30.0)


def test_a_running_migration_ends_at_its_measured_rate_and_what_waits_shifts_with_it() -> None:
    slow = Running(0.0, remaining_mib=50.0, rate_mibs=2.0, dirty_rate_mibs=0.0)  # 25 s left at 2 MiB/s
    left = eta_s(PLAN, 5.0, {("v1", 0): slow}, {})
    # v1 ends at 30 (20 s late), so v2 and v3 start 20 s late: 30 + 10 + 10 = 50, i.e. 45 s from t=5
    assert left == pytest.approx(45.0)
    dirty = dataclasses.replace(slow, dirty_rate_mibs=1.0)  # re-sent pages add rounds
    assert eta_s(PLAN, 5.0, {("v1", 0): dirty}, {}) > left


def test_without_a_sample_the_planned_duration_counts_and_failed_ones_add_nothing() -> None:
    assert eta_s(PLAN, 4.0, {("v1", 0): Running(0.0)}, {}) == pytest.approx(26.0)
    assert eta_s(PLAN, 12.0, {}, {("v1", 0): 12.0}, given_up={("v3", 0)}) == pytest.approx(10.0)  # v2: 12 → 22


def test_the_eta_uses_the_plans_model_for_the_remaining_rounds() -> None:
    slow_rounds = DurationModel(dirty_rate_factor=1.0, max_rounds=2)
    with_model = dataclasses.replace(PLAN, model=slow_rounds)
    running = {("v3", 0): Running(20.0, remaining_mib=40.0, rate_mibs=4.0, dirty_rate_mibs=3.0)}
    expected = remaining_s(40.0, 3.0, 4.0, SWITCHOVER_DOWNTIME_MS, slow_rounds)
    done = {("v1", 0): 10.0, ("v2", 0): 20.0}
    assert eta_s(with_model, 25.0, running, done) == pytest.approx(expected)
    assert eta_s(PLAN, 25.0, running, done) != pytest.approx(expected)


def test_the_reporters_tracker_follows_the_hooks() -> None:
    t = EtaTracker()
    assert t.eta_s() is None
    t.started(PLAN)
    m1, m2 = PLAN.migrations[0], PLAN.migrations[1]
    t.migration_started(m1, 0.0)
    t.progress(m1, JobProgress(elapsed_s=5.0, data_total_mib=100.0, data_processed_mib=50.0, data_remaining_mib=50.0,
                               rate_mibs=10.0))
    assert t.now_s == 5.0 and t.eta_s() == pytest.approx(25.0)  # on time: v1 ends at 10, then 20 s more
    t.ended_at(m1, 10.0, done=True)
    t.migration_started(m2, 10.0)
    assert t.eta_s() == pytest.approx(20.0)
