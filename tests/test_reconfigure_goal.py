"""Where VMs must end: repairs, the operator's target (each refusal explained), the greedy placement."""

from __future__ import annotations

from typing import Any

import pytest

import planner.reconfigure.goal as goal_module
from planner.model import HostState
from planner.plan import PlanKind
from planner.reconfigure import REPAIR_SHARE, RESERVE_S_PER_MOVER, make_reconfiguration
from planner.reconfigure.goal import FinalState, must_move, place_greedy, repair_goal, target_goal
from planner.topology import Topology
from tests._planner_fixtures import flat, host, vm


def _inv():  # type: ignore[no-untyped-def]
    hosts = [host("h1", memory_mib=8192), host("h2", memory_mib=8192), host("h3", cpu_features=frozenset({"amx"})),
             host("h4", state=HostState.MAINTENANCE)]
    vms = [vm("a", "h1", memory_mib=4096), vm("b", "h2", memory_mib=4096),
           vm("hpc", "h1", memory_mib=2048, cpu_features=frozenset({"amx"})), vm("m", "h4")]
    return flat(hosts, vms)


def test_must_move_names_emptied_hosts_and_misplaced_vms() -> None:
    inv = _inv()
    got = must_move(inv, frozenset({"h2", "h4"}))
    assert set(got) == {"b", "hpc", "m"}
    assert got["b"] == ["host h2 is being emptied"]
    assert "host h1 lacks CPU features amx" in got["hpc"]


def test_repair_places_every_vm_that_must_move_on_a_host_that_suits_it() -> None:
    inv = _inv()
    goal = repair_goal(inv, frozenset({"h4"}), Topology(inv), time_limit_s=2, workers=1)
    assert goal.destination["hpc"] == "h3" and goal.destination["m"] in {"h1", "h2", "h3"}
    assert goal.unplaced == {}


def test_a_pinned_misplaced_vm_is_unplaced_with_both_reasons() -> None:
    inv = flat([host("h1"), host("h2", cpu_features=frozenset({"amx"}))],
               [vm("p", "h1", pinned=True, cpu_features=frozenset({"amx"}))])
    goal = repair_goal(inv, frozenset(), Topology(inv), time_limit_s=2, workers=1)
    assert goal.destination == {}
    assert any("lacks CPU features amx" in r for r in goal.unplaced["p"])
    assert any("pinned" in r for r in goal.unplaced["p"])


def test_target_refusals_name_their_reason() -> None:
    inv = _inv()
    goal = target_goal(inv, {"a": "h9", "b": "h3", "hpc": "h2"}, frozenset({"h4"}), Topology(inv))
    assert goal.unplaced["a"] == ["target host 'h9' is not in the inventory"]
    assert goal.unplaced["hpc"][0].startswith("target host h2 breaks a rule: host h2 lacks CPU features amx")
    assert goal.destination["b"] == "h3"
    assert "m" in goal.destination  # on a maintenance host and not in the target: repaired anyway


def test_a_target_that_overfills_a_host_drops_an_arrival() -> None:
    inv = flat([host("h1", memory_mib=4096), host("h2"), host("h3")],
               [vm("a", "h2", memory_mib=4096), vm("b", "h3", memory_mib=4096, priority=5)])
    goal = target_goal(inv, {"a": "h1", "b": "h1"}, frozenset(), Topology(inv))
    assert goal.destination == {"b": "h1"}
    assert "cannot hold every VM the target sends it" in goal.unplaced["a"][0]


def test_a_target_joining_anti_affinity_peers_is_refused() -> None:
    g = frozenset({"g"})
    inv = flat([host("h1"), host("h2")], [vm("p", "h1", anti_affinity=g), vm("q", "h2", anti_affinity=g)])
    goal = target_goal(inv, {"p": "h2"}, frozenset(), Topology(inv))
    assert goal.destination == {} and "with q" in goal.unplaced["p"][0]


def test_place_greedy_takes_the_emptiest_host_with_room_and_no_peer() -> None:
    g = frozenset({"g"})
    inv = flat([host("h1"), host("h2", memory_mib=8192), host("h3", memory_mib=16384), host("h4")],
               [vm("x", "h1", anti_affinity=g), vm("peer", "h4", anti_affinity=g)])
    placed, failed = place_greedy(inv, [inv.vm["x"]], FinalState(inv, {}), frozenset({"h1"}), Topology(inv))
    assert placed == {"x": "h3"} and failed == {}


def test_a_target_for_a_running_vm_on_a_down_host_is_refused_not_planned() -> None:
    inv = flat([host("h1", state=HostState.DOWN), host("h2")], [vm("a", "h1"), vm("b", "h2")])
    goal = target_goal(inv, {"a": "h2"}, frozenset(), Topology(inv))
    assert goal.destination == {}
    assert any("host h1 is down" in r for r in goal.unplaced["a"])


def test_a_target_splitting_an_affinity_group_keeps_its_members_home() -> None:
    af = frozenset({"pair"})
    inv = flat([host("h1"), host("h2")], [vm("a", "h1", affinity=af), vm("b", "h1", affinity=af)])
    goal = target_goal(inv, {"a": "h2"}, frozenset(), Topology(inv))
    assert goal.destination == {} and "affinity group pair would end on 2 hosts" in goal.unplaced["a"][0]
    both = target_goal(inv, {"a": "h2", "b": "h2"}, frozenset(), Topology(inv))
    assert both.destination == {"a": "h2", "b": "h2"} and both.unplaced == {}


def test_the_repair_placement_leaves_time_for_the_steps_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time limit bounds the whole reconfiguration: the repair placement's CP-SAT gets its share less a
    reserve per VM to move for the greedy sequence, bound and checker that always run after it (a
    5,000-host drain + repair took 49 s at --time-limit 25 when it got its share whole)."""
    given: list[float] = []
    real_place = goal_module.place

    def spy(*args: object, **kw: Any) -> object:
        given.append(kw["time_limit_s"])
        return real_place(*args, **kw)

    monkeypatch.setattr(goal_module, "place", spy)
    inv = flat([host("h1"), host("h2"), host("h3")], [vm(f"v{i}", "h1", memory_mib=256) for i in range(100)])
    make_reconfiguration(inv, PlanKind.REPAIR, drained=("h1",), time_limit_s=4, workers=1)
    assert given and given[0] <= 4 * REPAIR_SHARE - 100 * RESERVE_S_PER_MOVER
