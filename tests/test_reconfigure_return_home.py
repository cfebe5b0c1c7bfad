"""planner/reconfigure/return_home.py: VMs a finished run moved go back home; the others are skipped with
a reason; every plan is of kind `return` and passes the checker (reconfigure asserts it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.checker import check_plan
from planner.model import HostState, Inventory
from planner.plan import Migration, PlanKind
from planner.reconfigure.return_home import Trip, fleet_now, homes_from_records, plan_return
from tests._planner_fixtures import flat, host, move, plan_of, vm


@dataclass(frozen=True)
class _Record:
    vm: str
    source: str
    destination: str
    state: str


def _ends(inv: Inventory, migrations: tuple[Migration, ...]) -> dict[str, str]:
    final = {v.name: v.host for v in inv.vms}
    for m in sorted(migrations, key=lambda m: m.hop):
        final[m.vm] = m.destination
    return final


def test_homes_are_read_from_the_vms_the_run_finished_moving() -> None:
    records = [_Record("x", "a", "b", "done"), _Record("y", "a", "c", "failed"), _Record("z", "a", "a", "done"),
               _Record("w", "b", "c", "pending")]
    assert homes_from_records(records) == {"x": Trip("x", "a", "b")}


def test_after_a_drain_every_vm_goes_back_to_its_host() -> None:
    inv = flat([host("a"), host("b"), host("c")], [vm("x", "b"), vm("y", "c"), vm("z", "b")])
    trips = {"x": Trip("x", "a", "b"), "y": Trip("y", "a", "c")}
    result = plan_return(inv, trips, time_limit_s=2, workers=1)
    plan = result.plan
    assert plan.kind is PlanKind.RETURN and result.skipped == {}
    assert {m.vm: (m.source, m.destination) for m in plan.migrations} == {"x": ("b", "a"), "y": ("c", "a")}
    assert dict(plan.target) == {"x": "a", "y": "a"}
    assert check_plan(inv, plan) == []


def test_vms_gone_moved_since_already_home_or_without_a_home_are_skipped_and_the_others_return() -> None:
    inv = flat([host("a"), host("b"), host("c")], [vm("x", "b"), vm("moved", "c"), vm("home", "a")])
    trips = {n: Trip(n, h, r) for n, h, r in (("x", "a", "b"), ("moved", "a", "b"), ("home", "a", "b"),
                                               ("gone", "a", "b"))}
    trips["lost"] = Trip("lost", "old-host", "b")
    result = plan_return(replace(inv, vms=(*inv.vms, vm("lost", "b"))), trips, time_limit_s=2, workers=1)
    assert {m.vm for m in result.plan.migrations} == {"x"}
    why = result.skipped
    assert set(why) == {"moved", "home", "gone", "lost"}
    assert "moved since" in why["moved"] and "on c now" in why["moved"]
    assert "already back on a" in why["home"]
    assert "gone" in why["gone"]
    assert "old-host" in why["lost"]


def test_a_home_that_no_longer_fits_or_breaks_a_rule_is_skipped_and_the_vm_stays() -> None:
    hosts = [host("a", memory_mib=4096), host("b"), host("m", state=HostState.MAINTENANCE), host("c")]
    # a filled up while x was away; m is in maintenance again
    inv = flat(hosts, [vm("x", "b", memory_mib=2048), vm("newcomer", "a", memory_mib=3072), vm("y", "c"),
                       vm("z", "b")])
    trips = {"x": Trip("x", "a", "b"), "y": Trip("y", "m", "c"), "z": Trip("z", "c", "b")}
    result = plan_return(inv, trips, time_limit_s=2, workers=1)
    assert {m.vm: m.destination for m in result.plan.migrations} == {"z": "c"}
    assert set(result.skipped) == {"x", "y"}
    assert "cannot hold" in result.skipped["x"] or "room" in result.skipped["x"], result.skipped
    assert "maintenance" in result.skipped["y"], result.skipped
    assert dict(result.plan.target) == {"z": "c"} and not result.plan.unplaced
    assert check_plan(inv, result.plan) == []


def test_two_full_hosts_return_their_vms_through_a_staging_host() -> None:
    """x came from a, y from b; the run swapped them and each host holds one: one goes through c."""
    hosts = [host(n, memory_mib=8192) for n in ("a", "b", "c")]
    inv = flat(hosts, [vm("x", "b", memory_mib=6144), vm("y", "a", memory_mib=6144)])
    result = plan_return(inv, {"x": Trip("x", "a", "b"), "y": Trip("y", "b", "a")}, time_limit_s=2, workers=1)
    plan = result.plan
    assert result.skipped == {}
    assert _ends(inv, plan.migrations) == {"x": "a", "y": "b"}
    assert [m for m in plan.migrations if m.staging], plan.migrations
    assert check_plan(inv, plan) == []


def test_nothing_to_return_gives_an_empty_plan() -> None:
    inv = flat([host("a"), host("b")], [vm("x", "a")])
    result = plan_return(inv, {"x": Trip("x", "a", "b")}, time_limit_s=1, workers=1)
    assert result.plan.migrations == () and result.plan.kind is PlanKind.RETURN
    assert set(result.skipped) == {"x"}


def test_the_checker_holds_a_return_plan_to_its_homes() -> None:
    inv = flat([host("a"), host("b"), host("c")], [vm("x", "b")])
    wrong = plan_of(inv, [move(inv, "x", "c")], drained=(), kind=PlanKind.RETURN, target={"x": "a"})
    assert "target" in {v.rule for v in check_plan(inv, wrong)}
    right = plan_of(inv, [move(inv, "x", "a")], drained=(), kind=PlanKind.RETURN, target={"x": "a"})
    assert check_plan(inv, right) == []


def test_the_fleet_now_puts_vms_where_the_hosts_say_and_ends_the_maintenance_of_emptied_hosts() -> None:
    hosts = [host("a", state=HostState.MAINTENANCE), host("b"), host("c"), host("m", state=HostState.MAINTENANCE)]
    inv = flat(hosts, [vm("x", "a"), vm("y", "a"), vm("gone", "b"), vm("far", "c")])
    now = fleet_now(inv, {"x": "b", "y": "a"}, unread={"c"}, maintenance_over={"a", "c"},
                    newcomers=[vm("new", "b"), vm("x", "c")])
    assert {v.name: v.host for v in now.vms} == {"x": "b", "y": "a", "far": "c", "new": "b"}
    assert {h.name: h.state for h in now.hosts} == {"a": HostState.UP, "b": HostState.UP, "c": HostState.DOWN,
                                                    "m": HostState.MAINTENANCE}
