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


def _reference_greedy(tasks, caps, policy, tries, deadline=0):  # type: ignore[no-untyped-def]
    """The list schedule written plainly: at every event, every pending task in order tries to start
    (under a deadline, only its levels that end by it, or its fastest when none does)."""
    import heapq

    def limit(n: int) -> int:
        return n if n > 0 else 1 << 30

    order = sorted(tasks, key=lambda t: (-t.priority, -t.levels[0].duration_units, t.vm))
    used: dict[object, int] = {}
    out_n: dict[str, int] = {}
    in_n: dict[str, int] = {}
    running: list[tuple[int, str]] = []
    start: dict[str, int] = {}
    level: dict[str, int] = {}
    by_vm = {t.vm: t for t in tasks}
    now = 0
    while len(start) < len(tasks):
        for t in order:
            if t.vm in start:
                continue
            if len(running) >= limit(policy.max_concurrent):
                break
            s, d = t.facts.source, t.facts.destination
            if out_n.get(s, 0) >= limit(policy.max_outbound_per_host) or \
                    in_n.get(d, 0) >= limit(policy.max_inbound_per_host):
                continue
            allowed = tries[t.vm]
            if deadline > 0:
                allowed = [li for li in allowed if now + t.levels[li].duration_units <= deadline] or [min(allowed)]
            for li in allowed:
                dem = t.levels[li].demand
                if all(used.get(r, 0) + dem <= caps[r] for r in t.resources):
                    for r in t.resources:
                        used[r] = used.get(r, 0) + dem
                    out_n[s] = out_n.get(s, 0) + 1
                    in_n[d] = in_n.get(d, 0) + 1
                    start[t.vm], level[t.vm] = now, li
                    heapq.heappush(running, (now + t.levels[li].duration_units, t.vm))
                    break
        if len(start) == len(tasks):
            break
        now = running[0][0]
        while running and running[0][0] == now:
            _, name = heapq.heappop(running)
            t = by_vm[name]
            for r in t.resources:
                used[r] -= t.levels[level[name]].demand
            out_n[t.facts.source] -= 1
            in_n[t.facts.destination] -= 1
    return start, level


def test_greedy_matches_the_plain_list_schedule() -> None:
    """The event-driven greedy (tasks parked on what blocks them) gives exactly the plain schedule."""
    from dataclasses import replace

    from planner.candidates import find_candidates
    from planner.generate import generate_fleet
    from planner.placement import greedy_placement, pair_frame

    base = generate_fleet(hosts=40, vms=300, racks=4, seed=3)
    drained = frozenset(h.name for h in base.hosts if h.labels.get("rack") == "r4")
    limits: list[dict[str, int]] = [{}, {"max_concurrent": 4}, {"max_outbound_per_host": 1, "max_inbound_per_host": 0},
                                    {"max_outbound_per_host": 0, "max_inbound_per_host": 1, "max_concurrent": 9}]
    for extra in limits:
        inv = replace(base, policy=replace(base.policy, **extra))  # type: ignore[arg-type]
        topo = Topology(inv)
        movers = [v for v in inv.vms if v.host in drained and not v.pinned]
        cands = find_candidates(inv, movers, drained, topo)
        dest = greedy_placement(inv, movers, pair_frame(inv, movers, cands, topo), drained, topo)
        tasks = build_tasks(inv, dest, topo)
        assert len(tasks) > 20
        caps = resource_caps(tasks, topo, inv.policy.migration_share)
        for tries in ({t.vm: (0,) for t in tasks}, {t.vm: tuple(range(len(t.levels) - 1, -1, -1)) for t in tasks},
                      {t.vm: (i % len(t.levels), 0) for i, t in enumerate(tasks)}):
            s = greedy_schedule(tasks, caps, inv.policy, tries)
            assert (dict(s.start_units), dict(s.level)) == _reference_greedy(tasks, caps, inv.policy, tries), extra
            # under a deadline (levels chosen as each task starts): the deadline falls mid-schedule
            deadline = s.makespan_units * 2 // 3
            d = greedy_schedule(tasks, caps, inv.policy, tries, deadline_units=deadline)
            assert (dict(d.start_units), dict(d.level)) == \
                _reference_greedy(tasks, caps, inv.policy, tries, deadline), (extra, deadline)


def test_no_time_left_gives_the_greedy_schedule_and_reports_it() -> None:
    inv, topo, tasks = _tasks(6)
    caps = resource_caps(tasks, topo, inv.policy.migration_share)
    heard: list[tuple[float, float, float]] = []
    s = solve_schedule(tasks, topo, inv.policy, time_limit_s=0.0, workers=1, lower_bound_units=1,
                       progress=lambda *a: heard.append(a))
    g = greedy_schedule(tasks, caps, inv.policy)
    assert s.status == "greedy" and s.makespan_units <= g.makespan_units
    assert [h[1:] for h in heard] == [(float(s.makespan_units), 1.0)]


def test_greedy_at_the_lower_bound_is_optimal_without_cp_sat(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ortools.sat.python import cp_model

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("CP-SAT called although the greedy schedule meets the bound")

    monkeypatch.setattr(cp_model.CpSolver, "solve", refuse)
    inv, topo, tasks = _tasks(1)
    s = solve_schedule(tasks, topo, inv.policy, time_limit_s=5, workers=1, lower_bound_units=10**6)
    assert s.status == "optimal"


def test_the_slowest_network_the_inventory_allows_still_schedules() -> None:
    """nic_gbps 1e-6 left a migration without one bandwidth level (IndexError); validation now refuses NICs and
    links below 0.01 Gbit/s and shares below 0.01, and at those floors every level exists."""
    from planner.inventory import MIN_MIGRATION_SHARE, MIN_NIC_GBPS

    inv = flat([host("h1", nic_gbps=MIN_NIC_GBPS), host("h2", nic_gbps=MIN_NIC_GBPS)],
               [vm("v0", "h1", memory_mib=1024), vm("v1", "h1", memory_mib=512)],
               migration_share=MIN_MIGRATION_SHARE)
    topo = Topology(inv)
    tasks = build_tasks(inv, {"v0": "h2", "v1": "h2"}, topo)
    assert all(len(t.levels) == 6 and t.levels[-1].bandwidth_mibs > 0 for t in tasks)
    caps = resource_caps(tasks, topo, inv.policy.migration_share)
    s = greedy_schedule(tasks, caps, inv.policy, {t.vm: (0, 1) for t in tasks})
    assert s.makespan_units > 0
