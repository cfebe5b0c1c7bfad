"""planner.whatif.rolling: rounds that can be emptied together, each drain and return checked, one timeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from planner.checker import check_plan
from planner.model import HostState, Inventory, Link
from planner.plan import PlanKind, PlanStatus
from planner.reconfigure import Reconfiguration
from planner.report import after_inventory, roll_rounds, roll_timeline
from planner.whatif.rolling import Roll, plan_roll
from tests._planner_fixtures import flat, host, vm


def racks(per_rack: int = 3, vms_per_host: int = 2, memory_mib: int = 65536) -> Inventory:
    """Racks r1, r2 of `per_rack` hosts (a1.., b1..) on their own ToR, two VMs of 4 GiB per host."""
    hosts = [host(f"a{i}", switch="tor-a", labels={"rack": "r1"}, memory_mib=memory_mib)
             for i in range(1, per_rack + 1)]
    hosts += [host(f"b{i}", switch="tor-b", labels={"rack": "r2"}, memory_mib=memory_mib)
              for i in range(1, per_rack + 1)]
    vms = [vm(f"{h.name}-v{k}", h.name, memory_mib=4096) for h in hosts for k in range(vms_per_host)]
    inv = flat(hosts, vms)
    return dataclasses.replace(inv, links=(Link("tor-a", "spine", 10.0), Link("tor-b", "spine", 10.0)))


def assert_every_plan_checks(roll: Roll) -> None:
    for r in roll.rounds:
        assert check_plan(r.start_inventory, r.drain) == [], r.number
        assert check_plan(r.drained_inventory, r.back) == [], r.number


def assert_every_vm_home(inv: Inventory, roll: Roll) -> None:
    """After each round's return the VMs of its hosts are where they started, and the roll ends where it began."""
    start = {v.name: v.host for v in inv.vms}
    for r in roll.rounds:
        after = {v.name: v.host for v in after_inventory(r.drained_inventory, r.back).vms}
        assert set(r.home) == {v.name for v in r.start_inventory.vms if v.host in r.hosts}, r.number
        for name, home in r.home.items():
            assert start[name] == home and after[name] == home, (r.number, name)
        assert not r.not_returned
        drained = {v.name: v.host for v in r.drained_inventory.vms}
        assert not any(h in r.hosts for h in drained.values()), "the drain empties the round's hosts"
    last = roll.rounds[-1]
    assert {v.name: v.host for v in after_inventory(last.drained_inventory, last.back).vms} == start


def test_group_by_rack_makes_a_round_per_rack_each_checked_and_every_vm_comes_home() -> None:
    inv = racks()
    roll = plan_roll(inv, group_by="rack", maintenance_s=600)
    assert [(r.group, r.hosts) for r in roll.rounds] == [("rack=r1", ("a1", "a2", "a3")),
                                                         ("rack=r2", ("b1", "b2", "b3"))]
    assert roll.feasible and not roll.unrollable
    assert_every_plan_checks(roll)
    assert_every_vm_home(inv, roll)
    for r in roll.rounds:
        assert r.drain.drained == r.hosts and r.drain.drain_labels == (r.group,)
        assert r.drain_s > 0 and r.return_s > 0


def test_the_timeline_runs_each_round_drain_maintenance_return_then_the_next() -> None:
    roll = plan_roll(racks(), group_by="rack", maintenance_s=900)
    r1, r2 = roll.rounds
    assert r1.start_s == 0.0
    assert r1.end_s == pytest.approx(r1.drain_s + 900 + r1.return_s)
    assert r2.start_s == pytest.approx(r1.end_s)
    assert roll.total_s == pytest.approx(sum(r.drain_s + 900 + r.return_s for r in roll.rounds))
    doc = roll.to_dict()
    frame = roll_timeline(doc)
    assert list(frame["phase"]) == ["drain", "maintenance", "return"] * 2
    assert (frame["start_s"].iloc[1:].to_numpy() == pytest.approx(frame["end_s"].iloc[:-1].to_numpy(), abs=1e-3))
    assert frame["end_s"].iloc[-1] == pytest.approx(roll.total_s, abs=1e-3)
    rounds = roll_rounds(doc)
    assert list(rounds["hosts"]) == [3, 3] and list(rounds["vms"]) == [6, 6]
    assert doc["format"] == "evac-rolling/1" and doc["total_s"] == pytest.approx(roll.total_s, abs=1e-3)


def test_max_hosts_packs_at_most_n_hosts_per_round_and_rolls_every_host_once() -> None:
    inv = racks()
    roll = plan_roll(inv, max_hosts=2, maintenance_s=60)
    assert all(len(r.hosts) <= 2 for r in roll.rounds)
    rolled = [h for r in roll.rounds for h in r.hosts]
    assert sorted(rolled) == sorted(h.name for h in inv.hosts)
    assert len(roll.rounds) == 3 and roll.feasible
    assert_every_plan_checks(roll)
    assert_every_vm_home(inv, roll)


def test_anti_affinity_keeps_peers_hosts_in_different_rounds() -> None:
    """Three peers on a1, a2, a3 of a 4-host fleet: emptying two of those hosts at once leaves two hosts
    for three peers, so no round may hold two of them."""
    hosts = [host(n) for n in ("a1", "a2", "a3", "a4")]
    vms = [vm(f"p{i}", f"a{i}", anti_affinity=frozenset({"g"})) for i in (1, 2, 3)]
    inv = flat(hosts, vms)
    roll = plan_roll(inv, max_hosts=2, maintenance_s=60)
    assert roll.feasible
    for r in roll.rounds:
        assert len({"a1", "a2", "a3"} & set(r.hosts)) <= 1, r.hosts
    assert sorted(h for r in roll.rounds for h in r.hosts) == ["a1", "a2", "a3", "a4"]
    assert_every_plan_checks(roll)
    assert_every_vm_home(inv, roll)


def test_a_rack_too_full_to_empty_at_once_is_split_into_rounds_and_says_so() -> None:
    """Each host holds 48 GiB of VMs on 64 GiB: one rack (3 hosts, 144 GiB) cannot go to the other rack's
    3 × 16 GiB free, but one host at a time can."""
    inv = racks(vms_per_host=12)
    roll = plan_roll(inv, group_by="rack", maintenance_s=60)
    assert roll.feasible
    assert all(len(r.hosts) < 3 for r in roll.rounds)
    assert {r.group for r in roll.rounds} == {"rack=r1", "rack=r2"}
    assert any("rack=r1 cannot be emptied at once" in n and "rounds of fewer hosts" in n
               for n in roll.notes), roll.notes
    assert_every_plan_checks(roll)
    assert_every_vm_home(inv, roll)


def test_a_pinned_vm_makes_its_hosts_round_impossible_with_the_reason() -> None:
    inv = racks()
    vms = tuple(dataclasses.replace(v, pinned=True) if v.name == "a2-v0" else v for v in inv.vms)
    inv = dataclasses.replace(inv, vms=vms)
    roll = plan_roll(inv, group_by="rack", maintenance_s=60)
    assert not roll.feasible
    assert [u.host for u in roll.unrollable] == ["a2"]
    assert "pinned" in roll.unrollable[0].reason() and "a2-v0" in roll.unrollable[0].reason()
    rolled = sorted(h for r in roll.rounds for h in r.hosts)
    assert rolled == ["a1", "a3", "b1", "b2", "b3"]  # every other host is still rolled
    assert all(r.feasible for r in roll.rounds)
    assert any("rack=r1 cannot be emptied at once" in n and "pinned" in n and "1 hosts not at all" in n
               for n in roll.notes), roll.notes
    assert roll.to_dict()["unrollable"][0]["host"] == "a2"
    assert_every_plan_checks(roll)


def test_maintenance_hosts_are_emptied_first_and_not_returned_to_and_down_hosts_not_rolled() -> None:
    inv = racks()
    hosts = tuple(dataclasses.replace(h, state=HostState.MAINTENANCE) if h.name == "b3" else
                  dataclasses.replace(h, state=HostState.DOWN) if h.name == "a3" else h for h in inv.hosts)
    vms = tuple(v for v in inv.vms if v.host != "a3")
    inv = dataclasses.replace(inv, hosts=hosts, vms=vms)
    roll = plan_roll(inv, group_by="rack", maintenance_s=60)
    assert [r.hosts for r in roll.rounds] == [("a1", "a2"), ("b1", "b2")]
    first = roll.rounds[0]
    assert {m.vm for m in first.drain.migrations if m.source == "b3"} == {"b3-v0", "b3-v1"}
    assert not {"b3-v0", "b3-v1"} & set(first.home)
    assert roll.rounds[1].start_inventory.sha256 != inv.sha256  # b3's VMs stayed where round 1 put them
    assert any("maintenance" in n and "b3" in n for n in roll.notes)
    assert any("down" in n and "a3" in n for n in roll.notes)
    assert roll.feasible
    assert_every_plan_checks(roll)


def test_a_vm_that_cannot_go_home_is_named_with_the_reason_and_the_roll_is_not_feasible() -> None:
    """Host a1 does not come back from its maintenance (down when the return is planned): its VMs stay away."""
    from planner.whatif.rolling import return_plan

    def a1_stays_down(inventory: Inventory, home: Mapping[str, str]) -> Reconfiguration:
        hosts = tuple(dataclasses.replace(h, state=HostState.DOWN) if h.name == "a1" else h for h in inventory.hosts)
        return return_plan(dataclasses.replace(inventory, hosts=hosts), home)

    roll = plan_roll(racks(), group_by="rack", maintenance_s=60, plan_return=a1_stays_down)
    first = roll.rounds[0]
    assert first.not_returned == ("a1-v0", "a1-v1")
    assert first.back.kind is PlanKind.RETURN and first.back.status is not PlanStatus.INFEASIBLE
    assert {m.vm for m in first.back.migrations} == {"a2-v0", "a2-v1", "a3-v0", "a3-v1"}  # the others go home
    assert not roll.feasible and not first.feasible
    why = roll.to_dict()["rounds"][0]["not_returned_why"]
    assert set(why) == {"a1-v0", "a1-v1"} and all("a1" in w for w in why.values()), why
    assert any("2 VMs cannot go home" in n for n in first.notes), first.notes


def test_plan_roll_needs_a_way_to_choose_rounds() -> None:
    with pytest.raises(ValueError):
        plan_roll(racks())
    with pytest.raises(ValueError):
        plan_roll(racks(), max_hosts=0)


def test_medium_by_rack_each_round_drains_as_evac_plan_and_returns_every_vm_home() -> None:
    """The must-show roll: data/medium.json by rack, one round per rack; each drain is `evac plan --drain-label
    rack=… --greedy`'s plan (the same makespan as `evac whatif --each-label rack`)."""
    from pathlib import Path

    from planner.drain import resolve_drain
    from planner.inventory import load_inventory
    from planner.solve import make_plan

    inv = load_inventory(Path(__file__).resolve().parent.parent / "data" / "medium.json").inventory
    roll = plan_roll(inv, group_by="rack")
    assert [r.group for r in roll.rounds] == ["rack=r1", "rack=r2", "rack=r3", "rack=r4"] and roll.feasible
    for r in roll.rounds:
        ds = resolve_drain(inv, labels=[r.group])
        assert r.start_inventory.sha256 == inv.sha256  # every earlier return brought every VM home
        assert r.drain.makespan_s == make_plan(inv, ds.hosts, greedy_only=True).makespan_s, r.group
        assert r.back.kind is PlanKind.RETURN
    assert_every_plan_checks(roll)
    assert_every_vm_home(inv, roll)
    assert roll.total_s == pytest.approx(sum(r.drain_s + r.return_s for r in roll.rounds) + 4 * 1800)


def test_hosts_without_the_label_are_rolled_as_a_group_of_their_own_last() -> None:
    inv = racks()
    inv = dataclasses.replace(inv, hosts=tuple(dataclasses.replace(h, labels={}) if h.name in ("a2", "b3") else h
                                               for h in inv.hosts))
    roll = plan_roll(inv, group_by="rack", maintenance_s=60)
    assert [(r.group, r.hosts) for r in roll.rounds] == [("rack=r1", ("a1", "a3")), ("rack=r2", ("b1", "b2")),
                                                         ("no rack label", ("a2", "b3"))]
    assert any("without label rack" in n and "a2, b3" in n for n in roll.notes), roll.notes
    assert roll.feasible
    assert_every_plan_checks(roll)


def test_roll_migrations_put_every_migration_on_the_rolls_clock() -> None:
    from planner.report import in_flight, roll_migrations
    from planner.whatif.rolling import drain_file, return_file

    roll = plan_roll(racks(), group_by="rack", maintenance_s=300)
    plans = {}
    for r in roll.rounds:
        plans[drain_file(r.number)], plans[return_file(r.number)] = r.drain, r.back
    frame = roll_migrations(roll.to_dict(), plans)
    assert len(frame) == sum(len(r.drain.migrations) + len(r.back.migrations) for r in roll.rounds)
    for r in roll.rounds:
        mine = frame[frame["round"] == r.number]
        drain, back = mine[mine["phase"] == "drain"], mine[mine["phase"] == "return"]
        # (the document rounds to the millisecond)
        assert drain["start_s"].min() >= r.start_s - 1e-3 and drain["end_s"].max() <= r.start_s + r.drain_s + 1e-3
        assert back["start_s"].min() >= r.start_s + r.drain_s + 300 - 1e-3
        assert back["end_s"].max() == pytest.approx(r.end_s, abs=1e-3)
    steps = in_flight(frame)
    assert steps.iloc[-1] == 0 and steps.min() >= 0
    assert steps.max() == max(len(r.drain.migrations) for r in roll.rounds)  # each drain moves all 6 at once
    assert roll_migrations(roll.to_dict(), {}).empty
