"""PlanMonitor: limits hold given what is really in flight, the ordering rules, barrier, one at a time."""

from __future__ import annotations

import heapq
import random
from collections import Counter, defaultdict

import pytest

from planner.model import VM, Host, HostState, Inventory, Policy
from planner.monitor import Phase, PlanMonitor, dispatch_hop_times, plan_order
from planner.plan import Migration, Plan, PlanStatus
from planner.topology import Topology
from tests.fleet import greedy_plan, make_inventory


def _mig(vm: str, src: str, dst: str, start: float, end: float, bw: float = 10.0, wave: int = 0,
         priority: int = 0) -> Migration:
    return Migration(vm, src, dst, wave, start, end, bw, (), priority=priority)


def _plan(inv: Inventory, *migs: Migration) -> Plan:
    return Plan(inv.sha256, ("a",), PlanStatus.FEASIBLE, max(m.end_s for m in migs), 0.0, 0.0, tuple(migs))


def _inv(hosts: list[Host], vms: list[VM], **policy: float) -> Inventory:
    return Inventory(hosts=tuple(hosts), vms=tuple(vms), policy=Policy(**policy))  # type: ignore[arg-type]


def _host(name: str, memory_mib: int = 4096, nic_gbps: float = 10.0, state: HostState = HostState.UP) -> Host:
    return Host(name=name, cpus=8, memory_mib=memory_mib, nic_gbps=nic_gbps, state=state)


def test_order_is_start_then_priority_then_name() -> None:
    ms = [_mig("b", "a", "x", 0, 1), _mig("a", "a", "x", 0, 1), _mig("c", "a", "x", 0, 1, priority=5),
          _mig("d", "a", "x", -1, 1)]
    assert [m.vm for m in plan_order(ms)] == ["d", "c", "a", "b"]


def test_outbound_limit_holds_and_frees_on_commit() -> None:
    inv = _inv([_host("a"), _host("b"), _host("c")],
               [VM(f"v{i}", "a", 1, 256) for i in range(4)], max_outbound_per_host=2, max_inbound_per_host=9)
    plan = _plan(inv, *[_mig(f"v{i}", "a", "b" if i % 2 else "c", i, i + 1) for i in range(4)])
    mon = PlanMonitor(plan, inv)
    first = mon.startable()
    assert [m.vm for m in first] == ["v0", "v1"]
    for m in first:
        mon.start(m.vm)
    assert mon.startable() == []
    assert "outbound" in mon.why_waiting("v2")
    assert [m.vm for m in mon.commit("v1")] == ["v2"]  # v1 ended before v0: no straggler barrier


def test_bandwidth_cap_per_link_direction() -> None:
    # 1 Gb/s NIC, share 0.5 → 59.6 MiB/s for migrations; two at 40 MiB/s do not fit together.
    inv = _inv([_host("a", nic_gbps=1), _host("b", nic_gbps=1), _host("c", nic_gbps=1)],
               [VM("v0", "a", 1, 256), VM("v1", "a", 1, 256)], max_outbound_per_host=5, max_inbound_per_host=5)
    plan = _plan(inv, _mig("v0", "a", "b", 0, 5, bw=40), _mig("v1", "a", "c", 0, 5, bw=40))
    mon = PlanMonitor(plan, inv)
    assert [m.vm for m in mon.startable()] == ["v0"]
    mon.start("v0")
    assert "link a→" in mon.why_waiting("v1")
    assert [m.vm for m in mon.commit("v0")] == ["v1"]


def test_memory_counts_in_flight_vms_on_both_hosts() -> None:
    # b has room for one 2 GiB VM at a time; x must leave b (planned by t=5) before y may arrive.
    inv = _inv([_host("a"), _host("b", memory_mib=4096), _host("c")],
               [VM("x", "b", 1, 2048), VM("y", "a", 1, 2048), VM("z", "a", 1, 1024)],
               max_outbound_per_host=5, max_inbound_per_host=5)
    plan = _plan(inv, _mig("x", "b", "c", 0, 5), _mig("y", "a", "b", 5, 10), _mig("z", "a", "c", 6, 8))
    mon = PlanMonitor(plan, inv)
    assert [m.vm for m in mon.startable()] == ["x", "z"]  # z overtakes y: its destination is free
    mon.start("x")
    mon.start("z")
    assert "waits for x to leave b" in mon.why_waiting("y")
    assert [m.vm for m in mon.commit("x")] == ["y"]


def test_failed_leaver_blocks_dependents_and_is_reported() -> None:
    inv = _inv([_host("a"), _host("b", memory_mib=2048), _host("c")],
               [VM("x", "b", 1, 2048), VM("y", "a", 1, 2048)])
    plan = _plan(inv, _mig("x", "b", "c", 0, 5), _mig("y", "a", "b", 5, 10))
    mon = PlanMonitor(plan, inv)
    mon.start("x")
    assert mon.blocked() == {}
    assert mon.fail("x") == []
    assert set(mon.blocked()) == {"y"}
    assert "x" in mon.blocked()["y"]


def test_failed_migration_releases_its_destination() -> None:
    inv = _inv([_host("a"), _host("b", memory_mib=2048)], [VM("x", "a", 1, 2048), VM("y", "a", 1, 2048)],
               max_outbound_per_host=5, max_inbound_per_host=5)
    plan = _plan(inv, _mig("x", "a", "b", 0, 5), _mig("y", "a", "b", 5, 10))
    mon = PlanMonitor(plan, inv)
    mon.start("x")
    assert "memory" in mon.why_waiting("y")
    assert [m.vm for m in mon.fail("x")] == ["y"]


def test_no_overtaking_into_the_same_destination() -> None:
    inv = _inv([_host("a"), _host("b"), _host("c")], [VM("x", "a", 1, 256), VM("y", "c", 1, 256),
                                                       VM("w", "a", 1, 256)],
               max_outbound_per_host=1, max_inbound_per_host=5)
    plan = _plan(inv, _mig("w", "a", "c", 0, 5), _mig("x", "a", "b", 1, 6), _mig("y", "c", "b", 2, 7))
    mon = PlanMonitor(plan, inv)
    assert [m.vm for m in mon.startable()] == ["w"]  # x waits for a's outbound slot, y must not pass x
    assert "x goes to b first" in mon.why_waiting("y")


def test_anti_affinity_holds_at_every_instant() -> None:
    g = frozenset({"db"})
    inv = _inv([_host("a"), _host("b"), _host("c")],
               [VM("x", "a", 1, 256, anti_affinity=g), VM("y", "c", 1, 256, anti_affinity=g)],
               max_outbound_per_host=5, max_inbound_per_host=5)
    # x to b and y to b is not allowed at all; y to a only once x is gone from a.
    plan = _plan(inv, _mig("x", "a", "b", 0, 5), _mig("y", "c", "a", 5, 10))
    mon = PlanMonitor(plan, inv)
    assert [m.vm for m in mon.startable()] == ["x"]
    mon.start("x")
    assert mon.why_waiting("y")
    mon.commit("x")
    assert mon.why_waiting("y") == ""


def test_barrier_waits_for_the_whole_wave() -> None:
    inv = make_inventory(4, 3)
    plan = greedy_plan(inv)
    mon = PlanMonitor(plan, inv, barrier=True)
    first = mon.startable()
    assert {m.wave for m in first} == {0}
    for m in first:
        mon.start(m.vm)
    mon.commit(first[0].vm)
    if len(first) > 1:
        assert all(m.wave == 0 for m in mon.startable())


def test_one_at_a_time_is_a_loop_in_plan_order() -> None:
    inv = make_inventory(4, 3)
    plan = greedy_plan(inv)
    mon = PlanMonitor(plan, inv, one_at_a_time=True)
    seen = []
    while not mon.finished:
        nxt = mon.startable()
        assert len(nxt) == 1
        mon.start(nxt[0].vm)
        assert mon.startable() == []
        seen.append(nxt[0].vm)
        mon.commit(nxt[0].vm)
    assert seen == [m.vm for m in plan_order(plan.migrations)]


def test_exclusive_modes() -> None:
    inv = make_inventory(2, 1)
    with pytest.raises(ValueError):
        PlanMonitor(greedy_plan(inv), inv, barrier=True, one_at_a_time=True)


def _check_instant(inv: Inventory, running: list[Migration], on_host: dict[str, set[str]]) -> None:
    p = inv.policy
    topo = Topology(inv)
    assert not p.max_concurrent or len(running) <= p.max_concurrent
    assert max(Counter(m.source for m in running).values(), default=0) <= p.max_outbound_per_host
    assert max(Counter(m.destination for m in running).values(), default=0) <= p.max_inbound_per_host
    used: dict[tuple[str, str], float] = defaultdict(float)
    for m in running:
        for r in Topology.resources(m.path):
            used[r] += m.bandwidth_mibs
    for r, u in used.items():
        assert u <= topo.capacity_mibs(r) * p.migration_share + 1e-6, (r, u)
    for h in inv.hosts:
        vms = [inv.vm[v] for v in on_host[h.name]]
        assert sum(v.memory_mib for v in vms) <= h.usable_memory_mib * p.memory_overcommit
        assert sum(v.vcpus for v in vms) <= h.cpus * p.cpu_overcommit
        groups = Counter(g for v in vms for g in v.anti_affinity)
        assert max(groups.values(), default=0) <= 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["default", "barrier", "one"])
def test_reality_slower_or_faster_than_the_plan_never_breaks_limits_or_deadlocks(seed: int, mode: str) -> None:
    rng = random.Random(seed)
    inv = make_inventory(6, 4, drained=("h0", "h1"), anti_affinity_every=7, host_memory_mib=7168,
                         policy=Policy(max_outbound_per_host=2, max_inbound_per_host=1, max_concurrent=3))
    plan = greedy_plan(inv)
    mon = PlanMonitor(plan, inv, barrier=mode == "barrier", one_at_a_time=mode == "one")
    on_host: dict[str, set[str]] = defaultdict(set)
    for v in inv.vms:
        on_host[v.host].add(v.name)
    t, ends = 0.0, []
    while not mon.finished:
        for m in mon.startable():
            mon.start(m.vm)
            on_host[m.destination].add(m.vm)
            heapq.heappush(ends, (t + m.duration_s * rng.uniform(0.3, 3.0), m.vm))
            _check_instant(inv, mon.in_flight, on_host)
        assert ends, mon.blocked()
        t, vm = heapq.heappop(ends)
        m = mon.migration(vm)
        if rng.random() < 0.1:
            on_host[m.destination].discard(vm)
            mon.fail(vm)
            for b in mon.blocked():
                mon.fail(b)
        else:
            on_host[m.source].discard(vm)
            mon.commit(vm)


def test_dispatch_times_follow_the_mode() -> None:
    from planner.monitor import dispatch_times

    inv = make_inventory(5, 4, drained=("h0", "h1"))
    plan = greedy_plan(inv)
    times = dispatch_times(plan, inv)
    assert set(times) == {m.vm for m in plan.migrations}
    for m in plan.migrations:
        assert times[m.vm][1] - times[m.vm][0] == pytest.approx(m.duration_s)
    serial = dispatch_times(plan, inv, one_at_a_time=True)
    assert max(e for _, e in serial.values()) == pytest.approx(sum(m.duration_s for m in plan.migrations))
    barrier = dispatch_times(plan, inv, barrier=True)
    waves = {m.vm: m.wave for m in plan.migrations}
    for vm, (start, _) in barrier.items():
        assert all(end <= start + 1e-9 for other, (_, end) in barrier.items() if waves[other] < waves[vm])


# ---------------------------------------------------------------- hops (reconfiguration plans)


def _swap_plan(migs: list[Migration] | None = None) -> tuple[Inventory, Plan]:
    from planner.plan import PlanKind
    from tests._planner_fixtures import full_pair, plan_of, staged_swap

    inv = full_pair()
    return inv, plan_of(inv, migs if migs is not None else staged_swap(inv), drained=(), kind=PlanKind.TARGET,
                        target={"x": "b", "y": "a"})


def test_a_staged_swap_runs_hop_by_hop() -> None:
    inv, plan = _swap_plan()
    mon = PlanMonitor(plan, inv)
    assert [(m.vm, m.hop) for m in mon.startable()] == [("x", 0)]
    mon.start("x")
    assert "waits for its hop 0" in mon.why_waiting(("x", 1))
    assert [(m.vm, m.hop) for m in mon.commit("x")] == [("y", 0)]  # x left a: y may enter it
    assert mon.key("x") == ("x", 1)  # the VM's current hop is now its second
    mon.start("y")
    assert [(m.vm, m.hop) for m in mon.commit("y")] == [("x", 1)]  # y left b: x may enter it
    mon.start("x")
    mon.commit("x")
    assert mon.finished


def test_a_hop_into_a_full_host_waits_for_the_hop_out_of_it_whatever_the_plan_times_say() -> None:
    """All three hops planned at t=0: only the room on the hosts, as it is, decides."""
    from dataclasses import replace

    inv, plan = _swap_plan()
    at_zero = [replace(m, start_s=0.0, end_s=m.duration_s, wave=0) for m in plan.migrations]
    inv, plan = _swap_plan(at_zero)
    mon = PlanMonitor(plan, inv)
    assert [(m.vm, m.hop) for m in mon.startable()] == [("x", 0)]
    assert "a: not enough memory now" in mon.why_waiting("y")
    mon.start("x")
    assert "a: not enough memory now" in mon.why_waiting("y")  # x counts on a until its hop is done
    assert [(m.vm, m.hop) for m in mon.commit("x")] == [("y", 0)]
    mon.start("y")
    assert "b: not enough memory now" in mon.why_waiting(("x", 1))
    assert [(m.vm, m.hop) for m in mon.commit("y")] == [("x", 1)]


def test_a_failed_hop_fails_the_vms_later_hops_and_blocks_what_needed_its_room() -> None:
    inv, plan = _swap_plan()
    mon = PlanMonitor(plan, inv)
    mon.start("x")
    assert mon.fail("x") == []
    assert mon.phase[("x", 1)] is Phase.FAILED
    assert [(m.vm, m.hop) for m in mon.later_hops_failed(("x", 0))] == [("x", 1)]
    assert set(mon.blocked()) == {"y"}  # x never left a
    mon.fail("y")
    assert mon.finished


def test_committing_a_later_hop_found_done_commits_the_earlier_ones() -> None:
    """Resume: x found on b — both of its hops are done; y's room on a was freed by x's first."""
    inv, plan = _swap_plan()
    mon = PlanMonitor(plan, inv)
    mon.commit(("x", 1))
    assert mon.phase[("x", 0)] is Phase.DONE
    assert [(m.vm, m.hop) for m in mon.startable()] == [("y", 0)]


def test_dispatch_times_of_a_swap_chain_the_hops() -> None:
    from planner.monitor import dispatch_hop_times

    inv, plan = _swap_plan()
    times = dispatch_hop_times(plan, inv)
    x0, y0, x1 = (times[k] for k in (("x", 0), ("y", 0), ("x", 1)))
    assert x0[1] <= y0[0] + 1e-9 and y0[1] <= x1[0] + 1e-9


def test_an_early_start_never_delays_an_earlier_migration_of_the_plan() -> None:
    """S has one outbound slot. The critical chain: u leaves D (0–10) so that w fits on D (10–40), and w
    leaving S makes room for z to come in (40–70). e (S→E) is ready at once, planned after w. Started
    early, e took S's slot and w, then z, ran 5 s late: 75 s for a 70 s plan with every migration exactly
    as long as planned. Backfilled, e waits: it would not end before w's planned start."""
    inv = _inv([_host("S", memory_mib=3072), _host("D", memory_mib=2048), _host("E"), _host("X"), _host("Y")],
               [VM("u", "D", 1, 2048), VM("w", "S", 1, 2048), VM("e", "S", 1, 512), VM("z", "Y", 1, 2048)],
               max_outbound_per_host=1, max_inbound_per_host=4)
    plan = _plan(inv, _mig("u", "D", "X", 0, 10), _mig("w", "S", "D", 10, 40), _mig("e", "S", "E", 40, 55),
                 _mig("z", "Y", "S", 40, 70))
    times = dispatch_hop_times(plan, inv)
    assert times[("e", 0)] == (40, 55)
    assert max(end for _, end in times.values()) == 70
    mon = PlanMonitor(plan, inv)
    assert [m.vm for m in mon.startable(0.0)] == ["u"]
    assert [m.vm for m in mon.startable()] == ["u", "e"]  # resources alone (no clock): e fits now
    assert mon.next_planned_start(0.0) == 10
