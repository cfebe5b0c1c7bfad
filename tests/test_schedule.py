from __future__ import annotations

from planner.schedule import UNITS_PER_S, build_tasks, greedy_schedule, resource_caps, solve_schedule, waves_of
from planner.topology import Topology
from tests._planner_fixtures import flat, host, vm


def _tasks(n: int, **policy: object):  # type: ignore[no-untyped-def]
    inv = flat([host("h1"), host("h2"), host("h3")], [vm(f"v{i}", "h1", memory_mib=4096) for i in range(n)],
               **policy)
    dest = {f"v{i}": ("h2" if i % 2 else "h3") for i in range(n)}
    topo = Topology(inv)
    return inv, topo, build_tasks(inv, dest, topo)


def test_durations_round_up_and_levels_decrease() -> None:
    _inv, _topo, tasks = _tasks(1)
    t = tasks[0]
    bws = [lv.bandwidth_mibs for lv in t.levels]
    assert bws == sorted(bws, reverse=True) and bws[0] <= t.facts.cap_mibs
    for lv in t.levels:
        assert lv.duration_units / UNITS_PER_S >= lv.estimate.duration_s


def test_greedy_respects_source_nic_and_outbound_limit() -> None:
    inv, topo, tasks = _tasks(5, max_outbound_per_host=2)
    caps = resource_caps(tasks, topo, inv.policy.migration_share)
    s = greedy_schedule(tasks, caps, inv.policy, {t.vm: (0, 1) for t in tasks})
    events = sorted({s.start_units[t.vm] for t in tasks})
    for at in events:
        active = [t for t in tasks
                  if s.start_units[t.vm] <= at < s.start_units[t.vm] + t.levels[s.level[t.vm]].duration_units]
        assert len(active) <= 2
        assert sum(t.levels[s.level[t.vm]].demand for t in active) <= caps[("h1", "(flat)")]


def test_cp_sat_is_no_worse_than_greedy() -> None:
    inv, topo, tasks = _tasks(6)
    caps = resource_caps(tasks, topo, inv.policy.migration_share)
    g = greedy_schedule(tasks, caps, inv.policy)
    s = solve_schedule(tasks, topo, inv.policy, time_limit_s=5, workers=1)
    assert s.makespan_units <= g.makespan_units
    assert s.status in ("optimal", "feasible")


def test_waves_group_identical_starts_in_order() -> None:
    assert waves_of({"a": 5, "b": 0, "c": 5, "d": 2}) == {"b": 0, "d": 1, "a": 2, "c": 2}
