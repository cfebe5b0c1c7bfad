"""The runner on multi-hop plans (issue 9), on the simulated fleet: a swap of two full hosts through a
staging host, a cycle, dispatch by the room hosts really have, a failed hop, resume mid-chain.

A plan's times only order the hops: `RoomCheckingSim` looks at every host at each migration start (a VM
counts on both hosts while it migrates) and records any host whose memory would be overcommitted.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from executor.hypervisor import MigrationSpec
from executor.journal import Journal
from executor.reporter import RecordingReporter
from executor.runner import RunOptions, RunResult, run_plan
from executor.sim_hv import FailMigration, SimulatedHypervisor
from executor.states import State
from planner.capacity import host_capacity
from planner.checker import check_plan
from planner.model import Inventory
from planner.plan import Migration, Plan, PlanKind
from tests._planner_fixtures import flat, full_pair, host, move, plan_of, staged_swap, vm
from tests.fleet import assert_nothing_lost, sigkill_mid_run

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)
FAST = dict(backoff_s=2.0, poll_interval_s=0.5)


class RoomCheckingSim(SimulatedHypervisor):
    """The simulated fleet, checking at every migration start that no host holds more memory than its
    capacity (residents plus the incoming domains it holds)."""

    overfull: list[str]

    def _begin(self, spec: MigrationSpec, memory_mib: float, dirty_rate_mibs: float):  # type: ignore[no-untyped-def]
        job = super()._begin(spec, memory_mib, dirty_rate_mibs)
        for h in self.inventory.hosts:
            used = sum(self.inventory.vm[d.vm].memory_mib for d in self.list_domains(h.name))
            cap = host_capacity(h, self.inventory.policy).memory_mib
            if used > cap + 1e-6:
                self.overfull.append(f"{h.name}: {used} > {cap} MiB when {spec.vm} started to {spec.destination}")
        return job


def _sim(inv: Inventory, **kw: object) -> RoomCheckingSim:
    sim = RoomCheckingSim(inv, speedup=400, **kw)  # type: ignore[arg-type]
    sim.overfull = []
    return sim


def _run(tmp_path: Path, inv: Inventory, plan: Plan, sim: SimulatedHypervisor,
         **opts: object) -> tuple[RunResult, RecordingReporter, Journal]:
    options = RunOptions(**{**FAST, **opts})  # type: ignore[arg-type]
    journal = Journal.open(tmp_path / "j.db", plan, flags=options.journal_flags(), resume=options.resume)
    rep = RecordingReporter()
    try:
        result = run_plan(plan, inv, sim, journal, rep, options)
    finally:
        journal.close()
    return result, rep, Journal.read(tmp_path / "j.db")


def _swap() -> tuple[Inventory, Plan]:
    inv = full_pair()
    plan = plan_of(inv, staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})
    assert check_plan(inv, plan) == []
    return inv, plan


def _on(sim: SimulatedHypervisor, name: str) -> str:
    where = sim.where(name)
    assert len(where) == 1, where
    return where[0][0]


@pytest.mark.parametrize("mode", ["default", "barrier", "one_at_a_time"])
def test_two_full_hosts_swap_their_vms_through_a_staging_host(tmp_path: Path, mode: str) -> None:
    inv, plan = _swap()
    sim = _sim(inv)
    result, _, journal = _run(tmp_path, inv, plan, sim, barrier=mode == "barrier",
                              one_at_a_time=mode == "one_at_a_time")
    assert result.ok, result.summary()
    assert (_on(sim, "x"), _on(sim, "y")) == ("b", "a")
    assert sim.overfull == []
    assert [(s.vm, s.source, s.destination) for s in sim.migrate_calls] == [
        ("x", "a", "c"), ("y", "b", "a"), ("x", "c", "b")]
    assert {k: r.state for k, r in result.hops.items()} == {("x", 0): State.DONE, ("y", 0): State.DONE,
                                                           ("x", 1): State.DONE}
    assert result.results["x"].hop == 1 and result.results["x"].attempts == 2
    assert journal.hop_states() == {("x", 0): State.DONE, ("y", 0): State.DONE, ("x", 1): State.DONE}
    assert journal.summary() == {"done": 2}
    rec = {r.vm: r for r in journal.records()}
    assert rec["x"].route == ("a", "c", "b") and rec["x"].destination == "b" and rec["y"].route == ()
    assert_nothing_lost(sim, plan)


def test_a_cycle_of_three_full_hosts_through_one_staging_host(tmp_path: Path) -> None:
    """x a→b, y b→c, z c→a, every host full: x goes through d, then z, y and x follow one another."""
    hosts = [host(n, memory_mib=8192) for n in ("a", "b", "c", "d")]
    inv = flat(hosts, [vm("x", "a", memory_mib=6144), vm("y", "b", memory_mib=6144), vm("z", "c", memory_mib=6144)])
    x0 = move(inv, "x", "d", hop=0, staging=True)
    z0 = move(inv, "z", "a", start_s=x0.end_s, wave=1)
    y0 = move(inv, "y", "c", start_s=z0.end_s, wave=2)
    x1 = move(inv, "x", "b", start_s=y0.end_s, source="d", hop=1, wave=3)
    plan = plan_of(inv, [x0, z0, y0, x1], drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "c", "z": "a"})
    assert check_plan(inv, plan) == []
    sim = _sim(inv)
    result, _, _ = _run(tmp_path, inv, plan, sim)
    assert result.ok, result.summary()
    assert {n: _on(sim, n) for n in "xyz"} == {"x": "b", "y": "c", "z": "a"}
    assert sim.overfull == []
    assert_nothing_lost(sim, plan)


def test_a_hop_into_a_full_host_waits_for_the_hop_out_of_it_not_for_the_plans_clock(tmp_path: Path) -> None:
    """Every hop planned at t=0 (times that promise room too early): the runner still starts each one
    only once its destination has room in reality, and the swap completes."""
    inv, plan = _swap()
    at_zero = tuple(replace(m, start_s=0.0, end_s=m.duration_s, wave=0) for m in plan.migrations)
    plan = replace(plan, migrations=at_zero, makespan_s=max(m.end_s for m in at_zero))
    sim = _sim(inv)
    result, rep, _ = _run(tmp_path, inv, plan, sim)
    assert result.ok, result.summary()
    assert sim.overfull == []
    assert [s.vm for s in sim.migrate_calls] == ["x", "y", "x"]
    queued = [d["reason"] for h, d in rep.calls if h == "migration_queued" and d["vm"] == "y"]
    assert any("a: not enough memory now" in r for r in queued), queued


def test_a_failed_staging_hop_leaves_the_vm_on_its_source_and_its_next_hop_never_starts(tmp_path: Path) -> None:
    inv, plan = _swap()
    sim = _sim(inv, faults=(FailMigration("x", attempts=frozenset({1, 2, 3}), code=1, message="internal error"),))
    result, _, journal = _run(tmp_path, inv, plan, sim)
    assert not result.ok and result.exit_code == 1
    assert result.hops[("x", 0)].state is State.FAILED
    assert result.hops[("x", 1)].state is State.FAILED
    assert result.hops[("x", 1)].error.startswith("never started: hop 0 failed")
    assert result.hops[("y", 0)].state is State.FAILED  # a never had room for it
    assert (_on(sim, "x"), _on(sim, "y")) == ("a", "b")
    assert journal.hop_states()[("x", 1)] is State.FAILED
    assert_nothing_lost(sim, plan)


def _dead_run(tmp_path: Path, inv: Inventory, plan: Plan, done: list[Migration], running: Migration) -> None:
    """The journal an evac SIGKILLed during `running` leaves, after the hops `done` had completed."""
    with Journal.open(tmp_path / "j.db", plan, flags=RunOptions().journal_flags()) as j:
        for m in [*done, running]:
            j.record(m.vm, State.PRECHECKED, "precheck_ok", 0, hop=m.hop)
            j.intent(m.vm, inv.vm[m.vm].uuid, m.source, m.destination, {}, 1, hop=m.hop)
            j.record(m.vm, State.RUNNING, "migrate", 1, hop=m.hop)
            if m is not running:
                j.record(m.vm, State.VERIFYING, "returned", 1, hop=m.hop)
                j.record(m.vm, State.DONE, "verified", 1, hop=m.hop)


@pytest.mark.parametrize("completes", [True, False])
def test_resume_mid_chain_classifies_the_hop_with_its_own_two_hosts(tmp_path: Path, completes: bool) -> None:
    """Killed during x's second hop (c→b), its first (a→c) done: the job libvirt still runs is followed
    on c and b; completed, x is done; failed, x is back on c and its second hop is tried again."""
    inv, plan = _swap()
    x0, y0, x1 = sorted(plan.migrations, key=lambda m: m.start_s)
    sim = _sim(inv, virtual_time=True)  # the orphaned job runs 30 s of run time, however loaded the machine
    sim.orphan("x", "c", runs_s=0.0)  # x's first hop, done before the crash
    assert _on(sim, "x") == "c"
    sim.orphan("y", "a", runs_s=0.0)
    _dead_run(tmp_path, inv, plan, [x0, y0], x1)
    sim.orphan("x", "b", runs_s=30.0, completes=completes)
    result, _, journal = _run(tmp_path, inv, plan, sim, resume=True)
    assert result.ok, result.summary()
    assert (_on(sim, "x"), _on(sim, "y")) == ("b", "a")
    assert [(s.vm, s.source, s.destination) for s in sim.migrate_calls] == ([] if completes else [("x", "c", "b")])
    assert journal.attempts_of("x", 0) == 1  # the done hop is never migrated again
    assert {e["vm"] for e in journal.events("reattached")} == {"x"}
    assert_nothing_lost(sim, plan)


def test_resume_finds_a_vm_on_its_staging_host_and_goes_on_with_its_next_hop(tmp_path: Path) -> None:
    """Killed during x's first hop, which libvirt then completed: x is on c; resume marks hop 0 done
    and runs y's hop and x's second."""
    inv, plan = _swap()
    x0 = min(plan.migrations, key=lambda m: m.start_s)
    sim = _sim(inv)
    _dead_run(tmp_path, inv, plan, [], x0)
    sim.orphan("x", "c", runs_s=0.0)
    result, _, journal = _run(tmp_path, inv, plan, sim, resume=True)
    assert result.ok, result.summary()
    assert [(s.vm, s.source, s.destination) for s in sim.migrate_calls] == [("y", "b", "a"), ("x", "c", "b")]
    assert journal.attempts_of("x", 0) == 1 and journal.attempts_of("x", 1) == 1
    assert sim.overfull == []
    assert_nothing_lost(sim, plan)


@pytest.mark.parametrize("complete_inflight", [True, False])
def test_sigkill_mid_chain_then_resume(tmp_path: Path, complete_inflight: bool) -> None:
    """A real crash: the executor is SIGKILLed once a hop is done and another in flight; --resume
    finishes the swap, never migrating a done hop again."""
    state = tmp_path / "fleet.json"
    journal_path = tmp_path / "j.db"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from executor.journal import Journal
        from executor.reporter import Reporter
        from executor.runner import RunOptions, run_plan
        from executor.sim_hv import SimulatedHypervisor
        from tests.test_runner_hops import _swap
        inv, plan = _swap()
        sim = SimulatedHypervisor(inv, speedup=10, state_path={str(state)!r})
        j = Journal.open({str(journal_path)!r}, plan)
        run_plan(plan, inv, sim, j, Reporter(), RunOptions(backoff_s=2.0, poll_interval_s=0.2))
        print("finished", flush=True)
    """)
    killed = sigkill_mid_run(script, journal_path,
                             lambda j: {State.DONE, State.RUNNING} <= set(j.hop_states().values()))
    assert killed, "the run ended before it could be killed mid-chain"
    inv, plan = _swap()
    before = Journal.read(journal_path)
    done_before = {k for k, s in before.hop_states().items() if s is State.DONE}
    before.close()
    sim = _sim(inv, state_path=state, complete_inflight=complete_inflight)
    result, _, journal = _run(tmp_path, inv, plan, sim, resume=True)
    assert result.ok, result.summary()
    assert (_on(sim, "x"), _on(sim, "y")) == ("b", "a")
    for name, hop in done_before:
        assert journal.attempts_of(name, hop) == 1
        m = next(m for m in plan.migrations if (m.vm, m.hop) == (name, hop))
        assert (name, m.source, m.destination) not in {(s.vm, s.source, s.destination) for s in sim.migrate_calls}
    assert sim.overfull == []
    assert_nothing_lost(sim, plan)


def test_resume_keeps_a_split_hop_quarantined_and_its_next_hop_never_starts(tmp_path: Path) -> None:
    """Killed during x's staging hop, its staging host silent at resume: x is quarantined (touched no
    more), its second hop fails as never started, and y, which needed x's room on a, is blocked."""
    inv, plan = _swap()
    x0 = min(plan.migrations, key=lambda m: m.start_s)
    sim = _sim(inv)
    _dead_run(tmp_path, inv, plan, [], x0)
    sim.set_host_down("c")
    result, _, journal = _run(tmp_path, inv, plan, sim, resume=True, host_wait_s=2.0, host_backoff_s=0.5)
    assert result.hops[("x", 0)].state is State.QUARANTINED
    assert result.hops[("x", 1)].state is State.FAILED
    assert result.hops[("x", 1)].error.startswith("never started: hop 0 quarantined"), result.hops[("x", 1)]
    assert result.hops[("y", 0)].state is State.FAILED
    assert result.results["x"].state is State.QUARANTINED and not result.ok
    assert journal.hop_states()[("x", 1)] is State.FAILED
    assert sim.migrate_calls == []
