"""The reconfiguration sequence: hops safe at every instant, staging hops for cycles, cycles explained."""

from __future__ import annotations

import random

import pytest

from planner.capacity import host_limits
from planner.checker import check_plan
from planner.duration import DEFAULT_MODEL
from planner.model import Inventory, Link
from planner.plan import PlanKind
from planner.reconfigure import make_reconfiguration
from planner.reconfigure.sequence import _Run, sequence_moves
from planner.topology import Topology
from tests._planner_fixtures import flat, host, vm


def _full_pair(spare_mib: int = 8192) -> Inventory:
    """a and b each full with one VM; c has `spare_mib`."""
    hosts = [host("a", memory_mib=8192), host("b", memory_mib=8192), host("c", memory_mib=spare_mib)]
    return flat(hosts, [vm("x", "a", memory_mib=8192), vm("y", "b", memory_mib=8192)])


def _route(seq: object) -> list[tuple[str, str, str, bool]]:
    return [(h.vm, h.task.facts.source, h.task.facts.destination, h.staging) for h in seq.hops]  # type: ignore[attr-defined]


def test_a_swap_of_two_full_hosts_goes_through_one_staging_hop() -> None:
    seq = sequence_moves(_full_pair(), {"x": "b", "y": "a"})
    (staged,) = seq.staged  # one VM goes through c, the other moves straight, then the first goes on
    other, src = ("y", "b") if staged == "x" else ("x", "a")
    home = {"x": "a", "y": "b"}
    assert _route(seq) == [(staged, home[staged], "c", True), (other, src, home[staged], False),
                           (staged, "c", src, False)]
    assert seq.blocked == {}
    first, second, third = seq.hops
    assert second.start_units >= first.end_units and third.start_units >= second.end_units


def test_a_move_into_a_full_host_waits_for_the_move_out_of_it() -> None:
    inv = flat([host("h1", memory_mib=4096), host("h2"), host("h3")],
               [vm("a", "h1", memory_mib=4096), vm("b", "h3", memory_mib=4096)])
    seq = sequence_moves(inv, {"a": "h2", "b": "h1"})
    by_vm = {h.vm: h for h in seq.hops}
    assert not seq.staged and by_vm["b"].start_units >= by_vm["a"].end_units


def test_moves_that_do_not_block_each_other_run_together() -> None:
    inv = flat([host("h1"), host("h2"), host("h3"), host("h4")], [vm("a", "h1"), vm("b", "h2")])
    seq = sequence_moves(inv, {"a": "h3", "b": "h4"})
    assert [h.start_units for h in seq.hops] == [0, 0]


def test_anti_affinity_peers_swapping_hosts_need_a_staging_hop() -> None:
    """p may not enter h2 while q is there, nor q h1 while p is: a cycle of anti-affinity, not of room."""
    inv = flat([host("h1"), host("h2"), host("h3")],
               [vm("p", "h1", anti_affinity=frozenset({"g"})), vm("q", "h2", anti_affinity=frozenset({"g"}))])
    plan = make_reconfiguration(inv, PlanKind.TARGET, target={"p": "h2", "q": "h1"})
    assert check_plan(inv, plan) == []
    assert sum(m.staging for m in plan.migrations) == 1 and len(plan.migrations) == 3


def test_a_cycle_no_host_can_stage_is_explained_and_left_in_place() -> None:
    seq = sequence_moves(_full_pair(spare_mib=4096), {"x": "b", "y": "a"})
    assert seq.hops == ()
    assert set(seq.blocked) == {"x", "y"}
    text = seq.blocked["x"][0]
    assert "cycle" in text and "x on a -> b" in text and "y on b -> a" in text


def test_vms_outside_an_unbreakable_cycle_still_move() -> None:
    inv = flat([host("a", memory_mib=8192), host("b", memory_mib=8192), host("c", memory_mib=4096),
                host("d", memory_mib=2048)],
               [vm("x", "a", memory_mib=8192), vm("y", "b", memory_mib=8192), vm("z", "c", memory_mib=1024)])
    seq = sequence_moves(inv, {"x": "b", "y": "a", "z": "d"})
    assert set(seq.blocked) == {"x", "y"} and _route(seq) == [("z", "c", "d", False)]


def test_the_staging_host_is_the_cheapest_in_bandwidth() -> None:
    """Two hosts with room: the one on the VM's own switch (no thin uplink crossed) is chosen."""
    hosts = [host("a", memory_mib=8192, switch="tor-a"), host("b", memory_mib=8192, switch="tor-a"),
             host("near", switch="tor-a"), host("far", switch="tor-b")]
    inv = Inventory(hosts=tuple(hosts), vms=(vm("x", "a", memory_mib=8192), vm("y", "b", memory_mib=8192)),
                    links=(Link("tor-a", "spine", 1.0), Link("tor-b", "spine", 1.0)))
    seq = sequence_moves(inv, {"x": "b", "y": "a"})
    assert [h.task.facts.destination for h in seq.hops if h.staging] == ["near"]


def test_a_staging_host_must_suit_the_vm() -> None:
    """c has room but lacks the VM's CPU feature; d suits it."""
    hosts = [host("a", memory_mib=8192, cpu_features=frozenset({"avx512f"})),
             host("b", memory_mib=8192, cpu_features=frozenset({"avx512f"})), host("c"),
             host("d", cpu_features=frozenset({"avx512f"}))]
    inv = flat(hosts, [vm("x", "a", memory_mib=8192, cpu_features=frozenset({"avx512f"})),
                       vm("y", "b", memory_mib=8192, cpu_features=frozenset({"avx512f"}))])
    seq = sequence_moves(inv, {"x": "b", "y": "a"})
    assert [h.task.facts.destination for h in seq.hops if h.staging] == ["d"]


def test_an_overloaded_host_may_stay_so_but_never_gets_worse() -> None:
    inv = flat([host("h1", memory_mib=4096), host("h2")],
               [vm("a", "h1", memory_mib=3072), vm("b", "h1", memory_mib=3072)])
    assert host_limits(inv)["h1"].memory_mib == 6144
    seq = sequence_moves(inv, {"a": "h2"})
    assert _route(seq) == [("a", "h1", "h2", False)]


@pytest.mark.parametrize("seed", [*range(12), 92, 120, 155])  # 92, 120, 155: stuck when staging one VM at a time
def test_any_permutation_of_full_hosts_is_reached_through_one_spare(seed: int) -> None:
    """Full hosts hand their VMs on along a random permutation (cycles of every length); one empty host
    as big as the others lets staging hops break every cycle: each VM ends on its target, checked."""
    rng = random.Random(seed)
    n = rng.randint(2, 7)
    hosts = [host(f"h{i}", memory_mib=4096, switch=rng.choice(["ta", "tb"])) for i in range(n)]
    hosts.append(host("spare", memory_mib=4096, switch="ta"))
    vms, target = [], {}
    perm = list(range(n))
    rng.shuffle(perm)
    for i in range(n):
        sizes = rng.choice([[4096], [2048, 2048], [1024, 1024, 2048]])
        for k, size in enumerate(sizes):
            name = f"v{i}-{k}"
            vms.append(vm(name, f"h{i}", memory_mib=size))
            target[name] = f"h{perm[i]}"
    inv = Inventory(hosts=tuple(hosts), vms=tuple(vms), links=(Link("ta", "sp", 10.0), Link("tb", "sp", 10.0)))
    plan = make_reconfiguration(inv, PlanKind.TARGET, target=target)  # asserts the checker passes
    assert plan.unplaced == ()
    assert {m.vm: m.destination for m in plan.migrations if not m.staging} == \
        {v: h for v, h in target.items() if inv.vm[v].host != h}


def test_a_long_cycle_unwinds_in_as_many_pieces_as_the_staging_room_takes() -> None:
    """Eight full hosts pass their VM on around one cycle; the spare holds two VMs: two staging hops (one
    after the other: they share the spare's NIC) cut the cycle into two chains that run side by side."""
    hosts = [host(f"h{i}", memory_mib=4096) for i in range(8)] + [host("spare", memory_mib=8192)]
    inv = flat(hosts, [vm(f"v{i}", f"h{i}", memory_mib=4096) for i in range(8)])
    goal = {f"v{i}": f"h{(i + 1) % 8}" for i in range(8)}
    one_at_a_time = _Run(inv, goal, frozenset(), Topology(inv), DEFAULT_MODEL, parallel=False)
    serial = max(h.end_units for h in one_at_a_time.run())
    seq = sequence_moves(inv, goal)
    assert len(seq.staged) == 2 and seq.makespan_units < 0.8 * serial


def test_vms_behind_a_busy_link_are_not_tried_at_every_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """40 VMs leave one host through its NIC, two at a time: each end frees room for one or two, so the
    others stay parked untried (it was ~N²/2 tries, minutes of planning on a 5,000-host fleet)."""
    n = 40
    inv = flat([host("src", memory_mib=1 << 20), host("dst", cpus=64, memory_mib=1 << 20)],
               [vm(f"v{i:02d}", "src", memory_mib=2048) for i in range(n)],
               max_outbound_per_host=0, max_inbound_per_host=0)
    tries = 0
    attempt = _Run.attempt

    def counted(self: _Run, name: str, now: int) -> None:
        nonlocal tries
        tries += 1
        attempt(self, name, now)

    monkeypatch.setattr(_Run, "attempt", counted)
    seq = sequence_moves(inv, {f"v{i:02d}": "dst" for i in range(n)})
    assert len(seq.hops) == n and not seq.blocked
    assert tries <= 4 * n
