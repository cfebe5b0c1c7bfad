"""The checker catches every rule of plan v1 broken one at a time, and passes valid plans."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.baselines import sequential_plan
from planner.checker import assert_plan_valid, check_plan
from planner.errors import InconsistentPlanError
from planner.migration_facts import migration_facts
from planner.model import HostState, Inventory, Link, Policy, VMState
from planner.plan import Plan, PlanStatus, Unplaced
from planner.topology import Topology
from tests._planner_fixtures import flat, host, local_disk, move, plan_of, shared_disk, two_racks, vm


def rules_broken(inv: Inventory, plan: Plan, **kw: object) -> set[str]:
    return {v.rule for v in check_plan(inv, plan, **kw)}  # type: ignore[arg-type]


@pytest.fixture
def inv() -> Inventory:
    """h1 drained (3 VMs, one with a local disk, one shutoff), h2 and h3 receive, h4 is in another room."""
    return flat(
        [host("h1", storage=frozenset({"nfs-1"})), host("h2", storage=frozenset({"nfs-1"})),
         host("h3", storage=frozenset({"nfs-1"})), host("h4")],
        [vm("v1", "h1", disks=(shared_disk(),)), vm("v2", "h1", disks=(local_disk("vdb", 2.0),)),
         vm("v3", "h1", state=VMState.SHUTOFF), vm("w1", "h2")])


@pytest.fixture
def good(inv: Inventory) -> Plan:
    """v1 and v2 leave h1 together to different hosts (within the NIC share), v3 after."""
    half = migration_facts(inv.vm["v1"], "h2", inv, Topology(inv))
    assert half is not None
    bw = half.cap_mibs / 2
    m1 = move(inv, "v1", "h2", 0.0, bw, wave=0)
    m2 = move(inv, "v2", "h3", 0.0, bw, wave=0)
    m3 = move(inv, "v3", "h4", max(m1.end_s, m2.end_s), wave=1)
    return plan_of(inv, [m1, m2, m3])


def test_a_valid_concurrent_plan_passes(inv: Inventory, good: Plan) -> None:
    assert check_plan(inv, good) == []
    assert_plan_valid(inv, good)


def test_the_sequential_baseline_plan_passes(inv: Inventory) -> None:
    assert check_plan(inv, sequential_plan(inv, ["h1"])) == []


def test_assert_raises_inconsistent_plan_error(inv: Inventory, good: Plan) -> None:
    bad = replace(good, makespan_s=1.0)
    with pytest.raises(InconsistentPlanError, match="makespan") as exc:
        assert_plan_valid(inv, bad)
    assert exc.value.plan is bad and exc.value.violations


def _with(plan: Plan, i: int, **changes: object) -> Plan:
    migs = list(plan.migrations)
    migs[i] = replace(migs[i], **changes)  # type: ignore[arg-type]
    return replace(plan, migrations=tuple(migs), makespan_s=max(m.end_s for m in migs))


def test_vm_left_behind_on_drained_host(inv: Inventory, good: Plan) -> None:
    plan = replace(good, migrations=good.migrations[:2], makespan_s=max(m.end_s for m in good.migrations[:2]))
    assert "drain" in rules_broken(inv, plan)


def test_unplaced_vm_is_not_left_behind(inv: Inventory, good: Plan) -> None:
    plan = replace(good, migrations=good.migrations[:2], makespan_s=max(m.end_s for m in good.migrations[:2]),
                   unplaced=(Unplaced("v3", ("test",)),), status=PlanStatus.INFEASIBLE)
    assert check_plan(inv, plan) == []


def test_maintenance_hosts_are_drained_even_if_not_named(inv: Inventory, good: Plan) -> None:
    hosts = tuple(replace(h, state=HostState.MAINTENANCE) if h.name == "h2" else h for h in inv.hosts)
    inv2 = replace(inv, hosts=hosts)
    plan = replace(good, inventory_sha256=inv2.sha256)
    broken = rules_broken(inv2, plan)
    assert "drain" in broken  # w1 on h2 must move
    assert "migration-facts" in broken  # v1 goes to a host in maintenance


def test_vm_of_a_host_not_drained_moves(inv: Inventory, good: Plan) -> None:
    plan = plan_of(inv, [*good.migrations, move(inv, "w1", "h3", 100.0, wave=2)])
    assert "only-drained-move" in rules_broken(inv, plan)
    assert "only-drained-move" not in rules_broken(inv, plan, rebalance=True)


def test_vm_migrates_twice(inv: Inventory, good: Plan) -> None:
    plan = plan_of(inv, [*good.migrations, move(inv, "v3", "h2", 100.0, wave=2)])
    assert "at-most-once" in rules_broken(inv, plan)


def test_status_must_say_infeasible_when_vms_are_unplaced(inv: Inventory, good: Plan) -> None:
    assert "status" in rules_broken(inv, replace(good, status=PlanStatus.INFEASIBLE))


def test_unknown_vm(inv: Inventory, good: Plan) -> None:
    assert "known" in rules_broken(inv, _with(good, 2, vm="ghost"))


@pytest.mark.parametrize(("change", "needle"), [
    ({"source": "h2"}, "source"),
    ({"destination": "h1"}, "not eligible"),
    ({"path": ("h1", "h2")}, "path"),
    ({"copy_storage": ()}, "copy_storage"),
    ({"copy_storage": ("vdb", "vdz")}, "the VM has no disk vdz"),  # a disk the VM does not have is named
    ({"live": True}, "live"),
])
def test_migration_facts(inv: Inventory, good: Plan, change: dict[str, object], needle: str) -> None:
    i = 1 if "copy_storage" in change else 2
    vs = [v for v in check_plan(inv, _with(good, i, **change)) if v.rule == "migration-facts"]
    assert any(needle in v.message for v in vs), vs


def test_destination_without_the_shared_storage(inv: Inventory, good: Plan) -> None:
    m = good.migrations[0]
    plan = _with(good, 0, destination="h4", path=("h1", "(flat)", "h4"))
    vs = [v.message for v in check_plan(inv, plan) if v.rule == "migration-facts"]
    assert any("does not mount storage nfs-1" in s for s in vs), vs
    assert m.destination == "h2"


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("cpu_features", frozenset({"avx512f"}), "lacks CPU features avx512f"),
    ("networks", frozenset({"br-db"}), "does not offer network br-db"),
    ("pinned", True, "pinned"),
    ("cpu_model", "Icelake-Server", None),  # hosts give no model: allowed
])
def test_destination_eligibility(inv: Inventory, field: str, value: object, needle: str | None) -> None:
    vms = tuple(replace(v, **{field: value}) if v.name == "v3" else v for v in inv.vms)  # type: ignore[arg-type]
    inv2 = replace(inv, vms=vms)
    plan = sequential_plan(inv, ["h1"])
    plan = replace(plan, inventory_sha256=inv2.sha256)
    msgs = [v.message for v in check_plan(inv2, plan) if v.rule == "migration-facts"]
    if needle is None:
        assert msgs == []
    else:
        assert any(needle in s for s in msgs), msgs


def test_bandwidth_over_the_path_cap(inv: Inventory, good: Plan) -> None:
    m = good.migrations[2]
    assert "bandwidth-cap" in rules_broken(inv, _with(good, 2, bandwidth_mibs=m.bandwidth_mibs * 1.01))


def test_too_short_for_the_model(inv: Inventory, good: Plan) -> None:
    m = good.migrations[0]
    assert "duration" in rules_broken(inv, _with(good, 0, end_s=m.start_s + m.duration_s * 0.99))
    assert "duration" not in rules_broken(inv, _with(good, 0, end_s=m.start_s + m.duration_s * 0.9995))


def test_convergence_flags_follow_the_model() -> None:
    inv = flat([host("h1"), host("h2")], [vm("hot", "h1", memory_mib=4096, dirty_rate_mibs=5000.0)])
    m = move(inv, "hot", "h2")
    assert not m.converges and m.auto_converge
    assert check_plan(inv, plan_of(inv, [m])) == []
    assert "duration" in rules_broken(inv, plan_of(inv, [replace(m, converges=True)]))
    assert "duration" in rules_broken(inv, plan_of(inv, [replace(m, auto_converge=False)]))
    strict = replace(inv, policy=replace(inv.policy, auto_converge=False))
    m2 = move(strict, "hot", "h2")
    assert check_plan(strict, plan_of(strict, [m2])) == []
    assert "duration" in rules_broken(strict, plan_of(strict, [replace(m2, auto_converge=True)]))


def test_nic_share_exceeded_by_two_full_rate_migrations(inv: Inventory, good: Plan) -> None:
    m1 = move(inv, "v1", "h2", 0.0, wave=0)
    m2 = move(inv, "v2", "h3", 0.0, wave=0)
    m3 = move(inv, "v3", "h4", 100.0, wave=1)
    vs = [v for v in check_plan(inv, plan_of(inv, [m1, m2, m3])) if v.rule == "link-bandwidth"]
    assert [v.subject for v in vs] == ["h1->(flat)"] and vs[0].time_s == 0.0
    # back to back (end == start) is not overlap
    m2b = move(inv, "v2", "h3", m1.end_s, wave=1)
    m3b = move(inv, "v3", "h4", m2b.end_s, wave=2)
    assert check_plan(inv, plan_of(inv, [m1, m2b, m3b])) == []


def test_link_share_exceeded_on_a_rack_uplink() -> None:
    inv = two_racks(vms=[vm("x", "a1"), vm("y", "a2")])
    mx, my = move(inv, "x", "b1"), move(inv, "y", "b2")  # each at the 10 Gb/s × 0.5 cap; uplink 10 Gb/s × 0.5
    vs = [v for v in check_plan(inv, plan_of(inv, [mx, my], drained=("a1", "a2"))) if v.rule == "link-bandwidth"]
    assert {v.subject for v in vs} == {"tor-a->spine", "spine->tor-b"}


def test_outbound_inbound_and_total_limits(inv: Inventory, good: Plan) -> None:
    one_out = replace(inv, policy=replace(inv.policy, max_outbound_per_host=1))
    vs = check_plan(one_out, replace(good, inventory_sha256=one_out.sha256))
    assert [(v.rule, v.subject) for v in vs] == [("concurrency", "h1")]
    total = replace(inv, policy=replace(inv.policy, max_concurrent=1))
    vs = check_plan(total, replace(good, inventory_sha256=total.sha256))
    assert [(v.rule, v.subject) for v in vs] == [("concurrency", "plan")]
    one_in = replace(inv, policy=replace(inv.policy, max_inbound_per_host=1))
    plan = _with(good, 1, **{f: getattr(move(inv, "v2", "h2", 0.0, good.migrations[1].bandwidth_mibs), f)
                             for f in ("destination", "path")})
    vs = check_plan(one_in, replace(plan, inventory_sha256=one_in.sha256))
    assert [(v.rule, v.subject) for v in vs] == [("concurrency", "h2")]


def test_capacity_counts_a_migrating_vm_on_both_hosts() -> None:
    """A swap fits before and after, never during: each host would hold both VMs."""
    inv = flat([host("h1", memory_mib=1024), host("h2", memory_mib=1024)],
               [vm("a", "h1"), vm("b", "h2")])
    ma = move(inv, "a", "h2", 0.0, wave=0)
    mb = move(inv, "b", "h1", ma.end_s, wave=1)
    vs = check_plan(inv, plan_of(inv, [ma, mb], drained=()))
    assert {(v.rule, v.subject) for v in vs} == {("capacity", "h2")}


def test_preexisting_overload_is_not_the_plans_fault(inv: Inventory, good: Plan) -> None:
    small = tuple(replace(h, memory_mib=512) if h.name == "h2" else h for h in inv.hosts)  # w1 alone overloads it
    inv2 = replace(inv, hosts=small)
    # v1 (1024 MiB) cannot go there now either: the rules say it, capacity included
    assert "capacity" in rules_broken(inv2, replace(good, inventory_sha256=inv2.sha256))
    other = plan_of(inv2, [*(replace(m, destination="h3") if m.vm == "v1" else m for m in good.migrations)])
    assert "capacity" not in rules_broken(inv2, other)


def test_copied_disk_room(inv: Inventory, good: Plan) -> None:
    tight = tuple(replace(h, local_disk_free_gib=1.0) if h.name == "h3" else h for h in inv.hosts)
    inv2 = replace(inv, hosts=tight)
    assert "capacity" in rules_broken(inv2, replace(good, inventory_sha256=inv2.sha256))


def test_anti_affinity_at_the_end() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", anti_affinity=frozenset({"g"})), vm("b", "h2", anti_affinity=frozenset({"g"}))])
    assert "anti-affinity" in rules_broken(inv, plan_of(inv, [move(inv, "a", "h2")]))
    assert check_plan(inv, plan_of(inv, [move(inv, "a", "h3")])) == []


def test_anti_affinity_during_the_plan() -> None:
    """b leaves h2 while a arrives: they overlap on h2 unless a starts when b has ended."""
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", anti_affinity=frozenset({"g"})), vm("b", "h2", anti_affinity=frozenset({"g"}))])
    mb = move(inv, "b", "h3", 0.0, wave=0)
    early = move(inv, "a", "h2", mb.end_s / 2, wave=1)
    vs = check_plan(inv, plan_of(inv, [mb, early], drained=()))
    assert [(v.rule, v.subject) for v in vs] == [("anti-affinity", "g")]
    on_time = move(inv, "a", "h2", mb.end_s, wave=1)
    assert check_plan(inv, plan_of(inv, [mb, on_time], drained=())) == []


def test_preexisting_anti_affinity_breach_is_not_blamed() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", anti_affinity=frozenset({"g"})), vm("b", "h1", anti_affinity=frozenset({"g"}))])
    ma = move(inv, "a", "h2", 0.0)
    ok = plan_of(inv, [ma, move(inv, "b", "h3", ma.end_s, wave=1)])
    assert check_plan(inv, ok) == []
    both = plan_of(inv, [move(inv, "a", "h2", 0.0), move(inv, "b", "h2", 20.0, wave=1)])
    assert "anti-affinity" in rules_broken(inv, both)


def test_affinity_at_the_end() -> None:
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("a", "h1", affinity=frozenset({"g"})), vm("b", "h1", affinity=frozenset({"g"}))])
    split = plan_of(inv, [move(inv, "a", "h2", 0.0), move(inv, "b", "h3", 0.0)])
    assert "affinity" in rules_broken(inv, split)
    ma = move(inv, "a", "h2", 0.0)
    together = plan_of(inv, [ma, move(inv, "b", "h2", ma.end_s, wave=1)])
    assert check_plan(inv, together) == []


@pytest.mark.parametrize("change", [
    {"makespan_s": 1.0},
    {"lower_bound_s": 1e6},
    {"inventory_sha256": "0" * 64},
])
def test_plan_totals(inv: Inventory, good: Plan, change: dict[str, object]) -> None:
    assert rules_broken(inv, replace(good, **change)) == {"totals"}  # type: ignore[arg-type]


def test_waves_start_together_and_in_order(inv: Inventory, good: Plan) -> None:
    assert "waves" in rules_broken(inv, _with(good, 2, wave=0))  # wave 0 would start at two instants
    assert "waves" in rules_broken(inv, _with(_with(good, 0, wave=5), 1, wave=5))  # wave 5 before wave 1


def test_plan_read_back_from_json_still_passes(inv: Inventory, good: Plan) -> None:
    """Plan files round times to 1 ms and bandwidths to 0.001 MiB/s: the tolerances absorb it."""
    import json

    from planner.plan import plan_from_dict
    back = plan_from_dict(json.loads(good.to_json()))
    assert check_plan(inv, back) == []


# ---------------------------------------------------------------- sweeps against brute force


def _brute_force(inv: Inventory, plan: Plan) -> set[str]:
    """The at-every-instant rules evaluated naively at every instant where something starts."""
    topo = Topology(inv)
    p = inv.policy
    broken: set[str] = set()
    start_of = {m.vm: m for m in plan.migrations}
    for t in sorted({m.start_s for m in plan.migrations}):
        active = [m for m in plan.migrations if m.start_s <= t < m.end_s]
        load: dict[tuple[str, str], float] = {}
        for m in active:
            for r in Topology.resources(m.path):
                load[r] = load.get(r, 0.0) + m.bandwidth_mibs
        if any(bw > topo.capacity_mibs(r) * p.migration_share + 1e-6 for r, bw in load.items()):
            broken.add("link-bandwidth")
        outs = [sum(m.source == h.name for m in active) for h in inv.hosts]
        ins = [sum(m.destination == h.name for m in active) for h in inv.hosts]
        if max(outs) > p.max_outbound_per_host or max(ins) > p.max_inbound_per_host or \
                (p.max_concurrent and len(active) > p.max_concurrent):
            broken.add("concurrency")
        for h in inv.hosts:
            def on(v_name: str, host: str = h.name, t: float = t) -> bool:
                m = start_of.get(v_name)
                v = inv.vm[v_name]
                if m is None:
                    return v.host == host
                return (v.host == host and t < m.end_s) or (m.destination == host and t >= m.start_s)
            here = [v for v in inv.vms if on(v.name)]
            mem = sum(v.memory_mib for v in here)
            before = sum(v.memory_mib for v in inv.vms if v.host == h.name)
            if mem > max(before, h.usable_memory_mib * p.memory_overcommit):
                broken.add("capacity")
            for a in here:
                for b in here:
                    if a.name < b.name and a.anti_affinity & b.anti_affinity and \
                            not (a.host == b.host == h.name):
                        broken.add("anti-affinity")
    return broken


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_sweeps_agree_with_brute_force(data: st.DataObject) -> None:
    g = frozenset({"g"})
    hosts = [host(f"h{i}", memory_mib=data.draw(st.sampled_from([2048, 4096, 8192])), cpus=64,
                  switch=f"s{i % 2}") for i in range(4)]
    vms = [vm(f"v{i}", data.draw(st.sampled_from(["h0", "h1", "h2"])), memory_mib=1024,
              anti_affinity=g if data.draw(st.booleans()) else frozenset()) for i in range(5)]
    inv = Inventory(hosts=tuple(hosts), vms=tuple(vms), links=(Link("s0", "sp", 5.0), Link("s1", "sp", 5.0)),
                    policy=Policy(max_outbound_per_host=data.draw(st.integers(1, 3)),
                                  max_inbound_per_host=data.draw(st.integers(1, 3)),
                                  max_concurrent=data.draw(st.integers(0, 3))))
    migs = []
    for v in inv.vms:
        if not data.draw(st.booleans()):
            continue
        dest = data.draw(st.sampled_from([h.name for h in inv.hosts if h.name != v.host]))
        cap = migration_facts(v, dest, inv, Topology(inv))
        assert cap is not None
        bw = cap.cap_mibs * data.draw(st.sampled_from([0.25, 0.5, 1.0]))
        migs.append(move(inv, v.name, dest, float(data.draw(st.integers(0, 6))), bw))
    starts = sorted({m.start_s for m in migs})
    migs = [replace(m, wave=starts.index(m.start_s)) for m in migs]
    plan = plan_of(inv, migs, drained=())
    instant_rules = {"link-bandwidth", "concurrency", "capacity", "anti-affinity"}
    got = {v.rule for v in check_plan(inv, plan, rebalance=True)}
    assert got - instant_rules == set()  # everything else about these plans is right by construction
    assert got == _brute_force(inv, plan)


@pytest.mark.parametrize("kw", [{}, {"n_hosts": 12, "vms_per_host": 2, "drained": ("h0", "h1"),
                                     "anti_affinity_every": 5, "local_disk_every": 2},
                                {"n_hosts": 8, "vms_per_host": 5, "dirty_rate_mibs": 80.0}])
def test_plans_of_the_executor_test_fleet_pass(kw: dict[str, object]) -> None:
    """An independent plan builder (tests/fleet.py, driven by the executor's PlanMonitor) agrees with the checker."""
    from planner.lowerbound import lower_bound
    from tests.fleet import greedy_plan, make_inventory

    inv = make_inventory(**kw)  # type: ignore[arg-type]
    plan = greedy_plan(inv)
    assert check_plan(inv, plan) == []
    assert lower_bound(inv, plan.drained).value_s <= plan.makespan_s
