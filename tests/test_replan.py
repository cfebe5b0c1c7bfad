"""planner/replan.py: the live state of a run as an inventory, and the re-plan made from it."""

from __future__ import annotations

import dataclasses

import pytest

from planner import replan as replan_mod
from planner.checker import check_plan
from planner.errors import InconsistentPlanError
from planner.model import HostState
from planner.replan import live_inventory, replan
from planner.solve import make_plan
from tests.fleet import make_inventory


def _fleet():  # type: ignore[no-untyped-def]
    inv = make_inventory(n_hosts=3, vms_per_host=4, drained=("h0",), local_disk_every=3)
    return inv, make_plan(inv, ["h0"], time_limit_s=5)


def test_live_inventory_moves_done_vms_and_downs_unreachable_hosts() -> None:
    inv, _ = _fleet()
    moved = inv.vms_on["h0"][0]  # vm0: has a local disk (local_disk_every=3)
    assert moved.local_disks
    live = live_inventory(inv, {moved.name: "h2"}, ["h1"])
    assert live.vm[moved.name].host == "h2"
    assert live.host["h1"].state is HostState.DOWN and live.host["h2"].state is HostState.UP
    assert live.host["h2"].local_disk_free_gib == pytest.approx(inv.host["h2"].local_disk_free_gib
                                                                 - moved.local_disk_alloc_gib)
    assert live.host["h0"].state is HostState.MAINTENANCE  # the drained host stays drained
    assert {v.name for v in live.vms} == {v.name for v in inv.vms}  # without to_move nobody is left out
    assert live.sha256 != inv.sha256


def test_live_inventory_leaves_out_drained_vms_not_to_move() -> None:
    inv, _ = _fleet()
    on_h0 = [v.name for v in inv.vms_on["h0"]]
    live = live_inventory(inv, {on_h0[0]: "h1"}, ["h2"], to_move=on_h0[2:], drained=["h0"])
    assert {v.name for v in live.vms_on["h0"]} == set(on_h0[2:])  # on_h0[1]: failed earlier, stays put
    assert on_h0[1] not in live.vm and live.vm[on_h0[0]].host == "h1"
    assert len(live.vms_on["h1"]) == len(inv.vms_on["h1"]) + 1  # VMs of other hosts are all kept


def test_live_inventory_refuses_unknown_hosts() -> None:
    inv, _ = _fleet()
    with pytest.raises(ValueError, match="h9"):
        live_inventory(inv, {}, ["h9"])


def test_replan_moves_the_rest_onto_the_hosts_that_answer() -> None:
    inv, plan = _fleet()
    to_h2 = [m.vm for m in plan.migrations if m.destination == "h2"]
    to_h1 = [m.vm for m in plan.migrations if m.destination == "h1"]
    assert to_h2 and to_h1
    done = {to_h1[0]: "h1"}
    live, new = replan(inv, plan, done, ["h2"], to_move=[*to_h1[1:], *to_h2], time_limit_s=5)
    assert check_plan(live, new) == []
    assert new.inventory_sha256 == live.sha256 and new.drained == plan.drained
    assert {m.vm for m in new.migrations} == set(to_h1[1:] + to_h2) and not new.unplaced
    assert {m.destination for m in new.migrations} == {"h1"}
    assert all(m.source == "h0" for m in new.migrations)


def test_replan_lists_what_no_longer_fits_as_unplaced() -> None:
    inv, plan = _fleet()
    small = dataclasses.replace(inv, hosts=tuple(dataclasses.replace(h, memory_mib=5 * 1024) if h.name == "h1" else h
                                                 for h in inv.hosts))
    plan = make_plan(small, ["h0"], time_limit_s=5)
    assert not plan.unplaced  # h1 (1 GiB free) and h2 take the four VMs together
    live, new = replan(small, plan, {}, ["h2"], to_move=[m.vm for m in plan.migrations], time_limit_s=5)
    assert check_plan(live, new) == []
    assert len(new.migrations) == 1 and len(new.unplaced) == 3
    assert all(u.reasons for u in new.unplaced)


def test_replan_refuses_a_plan_moving_a_vm_it_was_not_asked_to(monkeypatch: pytest.MonkeyPatch) -> None:
    inv, plan = _fleet()
    first = plan.migrations[0].vm
    monkeypatch.setattr(replan_mod, "make_plan", lambda live, drained, **kw: plan)  # moves every VM
    with pytest.raises(InconsistentPlanError, match="not to be moved again"):
        replan(inv, plan, {}, [], to_move=[first])



def test_a_target_plan_is_replanned_from_the_staging_host_with_hops_from_zero() -> None:
    """x stopped on its staging host c: the re-plan of the swap takes it from c to b (first hop of the new
    plan, numbered 0 for the checker), y to a; renumbered after x's one hop made, x's hop is 1 again."""
    from planner.plan import PlanKind
    from planner.replan import renumber_hops
    from tests._planner_fixtures import full_pair, plan_of, staged_swap

    inv = full_pair()
    plan = plan_of(inv, staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})
    live, new = replan(inv, plan, {"x": "c"}, [], ["x", "y"], time_limit_s=2, workers=1)
    assert live.vm["x"].host == "c"
    assert check_plan(live, new) == []
    assert {(m.vm, m.source, m.destination, m.hop) for m in new.migrations} == {("x", "c", "b", 0), ("y", "b", "a", 0)}
    run = renumber_hops(new, {"x": 1})
    assert {(m.vm, m.hop) for m in run.migrations} == {("x", 1), ("y", 0)}


def test_a_target_replan_leaves_out_an_end_host_that_stopped_answering_and_keeps_what_is_not_to_move() -> None:
    from planner.plan import PlanKind
    from tests._planner_fixtures import flat, host, move, plan_of, vm

    inv = flat([host(n) for n in "abc"], [vm("x", "a"), vm("y", "a"), vm("w", "b", cpu_features=frozenset({"amx"}))])
    plan = plan_of(inv, [move(inv, "x", "c"), move(inv, "y", "b")], drained=(), kind=PlanKind.TARGET,
                   target={"x": "c", "y": "b"})
    # w is misplaced on b (b lacks amx) but not to move again: the re-plan keeps it there, listed unplaced
    live, new = replan(inv, plan, {}, ["c"], ["x", "y"], time_limit_s=2, workers=1)
    assert check_plan(live, new) == []
    assert {m.vm for m in new.migrations} == {"y"}
    assert "w" in {u.vm for u in new.unplaced} and "x" not in {u.vm for u in new.unplaced}
