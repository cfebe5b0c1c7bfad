from __future__ import annotations

from collections import Counter

from planner.candidates import find_candidates
from planner.generate import generate_fleet
from planner.lowerbound import lower_bound
from planner.placement import greedy_placement, pair_frame
from planner.schedule import UNITS_PER_S, Schedule, Task, best_greedy, build_tasks, resource_caps
from planner.schedule.greedy import best_recipe
from planner.schedule.search import improve_greedy
from planner.topology import Resource, Topology


def _drain():  # type: ignore[no-untyped-def]
    inv = generate_fleet(hosts=40, vms=300, racks=4, seed=3)
    drained = [h.name for h in inv.hosts if h.labels.get("rack") == "r4"]
    topo = Topology(inv)
    movers = [v for v in inv.vms if v.host in drained and not v.pinned]
    cands = find_candidates(inv, movers, frozenset(drained), topo)
    dest = greedy_placement(inv, movers, pair_frame(inv, movers, cands, topo), frozenset(drained), topo)
    tasks = build_tasks(inv, dest, topo)
    lb = lower_bound(inv, drained, moving=set(dest), topology=topo)
    return inv, topo, tasks, resource_caps(tasks, topo, inv.policy.migration_share), int(lb.value_s * UNITS_PER_S)


def _assert_within_limits(tasks: list[Task], s: Schedule, caps: dict[Resource, int], out_limit: int,
                          in_limit: int) -> None:
    for at in sorted(set(s.start_units.values())):
        active = [t for t in tasks
                  if s.start_units[t.vm] <= at < s.start_units[t.vm] + t.levels[s.level[t.vm]].duration_units]
        use: Counter[Resource] = Counter()
        for t in active:
            for r in t.resources:
                use[r] += t.levels[s.level[t.vm]].demand
        assert all(use[r] <= caps[r] for r in use), at
        assert max(Counter(t.facts.source for t in active).values()) <= out_limit
        assert max(Counter(t.facts.destination for t in active).values()) <= in_limit
    assert s.makespan_units == max(s.start_units[t.vm] + t.levels[s.level[t.vm]].duration_units for t in tasks)


def test_search_starts_from_the_best_greedy_and_never_worsens_it() -> None:
    inv, _topo, tasks, caps, target = _drain()
    start = best_recipe(tasks, caps, inv.policy, target)
    assert start[0].makespan_units == best_greedy(tasks, caps, inv.policy, target).makespan_units
    s = improve_greedy(tasks, caps, inv.policy, target, 1.0, starts=[start])
    assert target <= s.makespan_units <= start[0].makespan_units
    _assert_within_limits(tasks, s, caps, inv.policy.max_outbound_per_host, inv.policy.max_inbound_per_host)


def test_no_time_gives_the_start() -> None:
    inv, _topo, tasks, caps, target = _drain()
    start = best_recipe(tasks, caps, inv.policy, target)
    assert improve_greedy(tasks, caps, inv.policy, target, 0.0, starts=[start]) is start[0]


def test_every_better_schedule_is_reported_shortest_last() -> None:
    inv, _topo, tasks, caps, target = _drain()
    heard: list[int] = []
    s = improve_greedy(tasks, caps, inv.policy, target, 1.0, on_better=heard.append)
    assert heard == sorted(heard, reverse=True) and len(set(heard)) == len(heard)
    assert (heard[-1] == s.makespan_units) if heard else s.makespan_units == best_greedy(
        tasks, caps, inv.policy, target).makespan_units
