"""Pure simulation: usage over time, and the final placement equals applying migrations in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.baselines import sequential_plan
from planner.model import Inventory
from planner.simulate import Placement, Usage, apply, simulate
from tests._planner_fixtures import flat, host, local_disk, move, plan_of, vm


def _inv() -> Inventory:
    return flat([host("h1"), host("h2"), host("h3")],
                [vm("a", "h1", memory_mib=1000, vcpus=1, disks=(local_disk("vdb", 3.0),)),
                 vm("b", "h1", memory_mib=2000, vcpus=2), vm("c", "h2", memory_mib=500, vcpus=4)])


def test_initial_placement_sums_residents() -> None:
    p = Placement.initial(_inv())
    assert p.host_of == {"a": "h1", "b": "h1", "c": "h2"}
    assert p.usage["h1"] == Usage(3, 3000.0, 0.0)
    assert p.usage["h3"] == Usage()


def test_apply_returns_a_new_value_and_leaves_the_old_one() -> None:
    inv = _inv()
    p0 = Placement.initial(inv)
    p1 = apply(p0, move(inv, "a", "h3"), inv)
    assert p0.host_of["a"] == "h1" and p0.usage["h3"] == Usage()
    assert p1.host_of["a"] == "h3"
    assert p1.usage["h1"] == Usage(2, 2000.0, 0.0)
    assert p1.usage["h3"] == Usage(1, 1000.0, 3.0)  # the copied disk takes room on the destination


def test_a_migrating_vm_counts_on_both_hosts() -> None:
    inv = _inv()
    m = move(inv, "a", "h3", 10.0)
    tl = simulate(inv, plan_of(inv, [m]))
    assert tl.usage_at("h3", 5.0) == Usage()
    mid = (m.start_s + m.end_s) / 2
    assert tl.usage_at("h1", mid).memory_mib == 3000 and tl.usage_at("h3", mid).memory_mib == 1000
    assert tl.usage_at("h1", m.end_s).memory_mib == 2000  # active on [start, end): gone at end_s
    assert tl.final.host_of["a"] == "h3"


def test_ends_are_applied_before_starts_at_one_instant() -> None:
    inv = _inv()
    ma = move(inv, "a", "h3", 0.0)
    mb = move(inv, "b", "h3", ma.end_s, wave=1)
    tl = simulate(inv, plan_of(inv, [ma, mb]))
    at_handover = [p for p in tl.points if p.time_s == ma.end_s]
    assert [p.host for p in at_handover] == ["h1", "h3"]
    assert at_handover[0].usage.memory_mib == 2000  # a left h1 before b was added to h3


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(["a", "b", "c"]), dests=st.lists(st.sampled_from(["h1", "h2", "h3"]), min_size=3,
                                                                  max_size=3))
def test_final_placement_equals_applying_migrations_in_order(order: list[str], dests: list[str]) -> None:
    inv = _inv()
    t, migs = 0.0, []
    for wave, (name, d) in enumerate(zip(order, dests, strict=True)):
        if d == inv.vm[name].host:
            continue
        m = move(inv, name, d, t, wave=wave)
        migs.append(m)
        t = m.end_s
    tl = simulate(inv, plan_of(inv, migs))
    p = Placement.initial(inv)
    for m in migs:
        p = apply(p, m, inv)
    assert dict(tl.final.host_of) == dict(p.host_of)
    assert dict(tl.final.usage) == dict(p.usage)


def test_sequential_plan_simulates_to_an_empty_drained_host() -> None:
    inv = _inv()
    tl = simulate(inv, sequential_plan(inv, ["h1"]))
    assert tl.final.usage["h1"].memory_mib == 0 and tl.final.usage["h1"].vcpus == 0
    assert sum(u.memory_mib for u in tl.final.usage.values()) == 3500
