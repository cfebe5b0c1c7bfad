"""The runner on the simulated fleet: modes, limits at every instant, faults, Ctrl-C, resume.

Every test ends with the executor's invariant: nothing is lost (each VM runs exactly once, on its
source or its planned destination; quarantined VMs are left untouched on both hosts).
"""

from __future__ import annotations

import json
import math
import textwrap
import threading
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from executor.hypervisor import DomainState
from executor.journal import Journal
from executor.reporter import RecordingReporter
from executor.runner import RunOptions, RunResult, TimeoutAction, build_spec, run_plan, virsh_command
from executor.sim_hv import FailMigration, Hang, HostDown, NeverConverges, SimulatedHypervisor, Slow, SplitBrain
from executor.states import State
from planner.duration import estimate
from planner.model import Inventory, Policy
from planner.monitor import dispatch_hop_times, hop_key
from planner.plan import Plan
from planner.topology import Topology
from tests.fleet import assert_nothing_lost, greedy_plan, make_inventory, sigkill_mid_run

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)

FAST = dict(backoff_s=2.0, poll_interval_s=0.5)


def _fleet(**kw: object) -> tuple[Inventory, Plan]:
    policy = kw.pop("policy", Policy(max_outbound_per_host=2, max_inbound_per_host=2, max_concurrent=4,
                                     progress_timeout_s=20, completion_timeout_per_gib_s=600))
    inv = make_inventory(**{"n_hosts": 5, "vms_per_host": 4, "drained": ("h0", "h1"), "anti_affinity_every": 7,
                            "local_disk_every": 5, "policy": policy, **kw})  # type: ignore[arg-type]
    return inv, greedy_plan(inv)


def _run(tmp_path: Path, inv: Inventory, plan: Plan, *, faults: tuple = (), speedup: float = 400,
         journal_name: str = "j.db", sim: SimulatedHypervisor | None = None,
         **opts: object) -> tuple[RunResult, SimulatedHypervisor, RecordingReporter, Journal]:
    sim = sim or SimulatedHypervisor(inv, speedup=speedup, faults=faults)
    options = RunOptions(**{**FAST, **opts})  # type: ignore[arg-type]
    journal = Journal.open(tmp_path / journal_name, plan, flags=options.journal_flags(), resume=options.resume)
    rep = RecordingReporter()
    try:
        result = run_plan(plan, inv, sim, journal, rep, options)
    finally:
        journal.close()
    return result, sim, rep, Journal.read(tmp_path / journal_name)


def _assert_limits(inv: Inventory, plan: Plan, rep: RecordingReporter) -> None:
    """At every start (when concurrency peaks), slot and bandwidth limits held for what was in flight."""
    p, topo = inv.policy, Topology(inv)
    by_vm = {m.vm: m for m in plan.migrations}
    assert rep.in_flight_sets
    for names in rep.in_flight_sets:
        ms = [by_vm[n] for n in names]
        assert not p.max_concurrent or len(ms) <= p.max_concurrent
        assert max(Counter(m.source for m in ms).values()) <= p.max_outbound_per_host
        assert max(Counter(m.destination for m in ms).values()) <= p.max_inbound_per_host
        used: dict[tuple[str, str], float] = defaultdict(float)
        for m in ms:
            for r in Topology.resources(m.path):
                used[r] += m.bandwidth_mibs
        for r, u in used.items():
            assert u <= topo.capacity_mibs(r) * p.migration_share + 1e-6


@pytest.mark.parametrize("mode", ["default", "barrier", "one_at_a_time"])
def test_full_run_in_every_mode(tmp_path: Path, mode: str) -> None:
    inv, plan = _fleet()
    result, sim, rep, journal = _run(tmp_path, inv, plan, barrier=mode == "barrier",
                                     one_at_a_time=mode == "one_at_a_time")
    assert result.ok and result.exit_code == 0, result.summary()
    assert journal.summary() == {"done": len(plan.migrations)}
    _assert_limits(inv, plan, rep)
    if mode == "one_at_a_time":
        assert max(len(s) for s in rep.in_flight_sets) == 1
    if mode == "barrier":  # nothing of wave k+1 started before every migration of wave k had ended
        done: set[str] = set()
        waves = {m.vm: m.wave for m in plan.migrations}
        for hook, data in rep.calls:
            if hook == "migration_started":
                assert all(v in done for v, w in waves.items() if w < waves[data["vm"]])
            elif hook == "migration_done":
                done.add(data["vm"])
    assert all(not s.unsafe for s in sim.migrate_calls)  # never unless asked
    assert {s.vm for s in sim.migrate_calls if s.copy_storage} == {m.vm for m in plan.migrations if m.copy_storage}
    assert sim.volumes and any(sim.volumes.values())
    assert_nothing_lost(sim, plan)


def test_default_mode_does_not_wait_for_stragglers(tmp_path: Path) -> None:
    inv, plan = _fleet()
    slow_vm = min(plan.migrations, key=lambda m: (m.wave, m.vm)).vm  # in the first wave
    ends = {}
    for mode in ("default", "barrier"):
        result, sim, _, _ = _run(tmp_path, inv, plan, faults=(Slow(slow_vm, 2.5),), barrier=mode == "barrier",
                                 journal_name=f"{mode}.db")
        assert result.ok
        ends[mode] = max(r.ended_s or 0.0 for v, r in result.results.items() if v != slow_vm)
        assert_nothing_lost(sim, plan)
    # with a barrier every later wave waits for the straggler; without, only what shares its slot or room
    assert ends["default"] < ends["barrier"]


def test_retryable_error_then_success(tmp_path: Path) -> None:
    inv, plan = _fleet()
    vm = plan.migrations[1].vm
    result, sim, rep, journal = _run(tmp_path, inv, plan, faults=(FailMigration(vm, 68, frozenset({1, 2})),))
    assert result.ok
    assert result.results[vm].attempts == 3
    assert [d["attempt"] for h, d in rep.calls if h == "migration_retry"] == [2, 3]
    assert journal.attempts_of(vm) == 3
    assert_nothing_lost(sim, plan)


def test_retries_are_bounded(tmp_path: Path) -> None:
    inv, plan = _fleet()
    vm = plan.migrations[1].vm
    result, sim, _, _ = _run(tmp_path, inv, plan, faults=(FailMigration(vm, 39, frozenset(range(1, 9))),),
                             retries=1)
    assert result.results[vm].state is State.FAILED and result.results[vm].attempts == 2
    assert "39" in result.results[vm].error
    assert_nothing_lost(sim, plan)


def test_non_retryable_error_fails_that_vm_only(tmp_path: Path) -> None:
    inv, plan = _fleet()
    vm = plan.migrations[0].vm
    result, sim, _, journal = _run(tmp_path, inv, plan, faults=(FailMigration(vm, 91, message="CPU incompatible"),))
    assert not result.ok and result.exit_code == 1
    r = result.results[vm]
    assert r.state is State.FAILED and r.attempts == 1 and "91" in r.error and "CPU incompatible" in r.error
    others = [x for v, x in result.results.items() if v != vm]
    assert sum(x.state is State.DONE for x in others) >= len(others) - 1  # at most one blocked by it
    assert journal.state_of(vm) is State.FAILED
    assert_nothing_lost(sim, plan)


def test_storage_full_is_not_retried_and_the_volumes_are_removed(tmp_path: Path) -> None:
    # libvirt reports a full destination as error 9 (operation failed), retryable in general; a full
    # disk stays full, so evac fails it at once (as measured on the lab: tests/lab/test_storage_lab.py).
    inv, plan = _fleet()
    m = next(m for m in plan.migrations if m.copy_storage)
    enospc = "operation failed: migration of disk vda failed: No space left on device"
    result, sim, _, journal = _run(tmp_path, inv, plan, faults=(FailMigration(m.vm, 9, message=enospc),))
    r = result.results[m.vm]
    assert r.state is State.FAILED and r.attempts == 1 and "No space left on device" in r.error, r
    assert not any(p.startswith(f"/var/lib/libvirt/images/{m.vm}-") for p in sim.volumes[m.destination])
    assert journal.state_of(m.vm) is State.FAILED
    assert_nothing_lost(sim, plan)


def test_destination_down(tmp_path: Path) -> None:
    inv, plan = _fleet()
    down = plan.migrations[0].destination
    result, sim, _, _ = _run(tmp_path, inv, plan, faults=(HostDown(down),))
    for m in plan.migrations:
        r = result.results[m.vm]
        if m.destination == down:
            assert r.state is State.FAILED and "does not answer" in r.error
        else:
            assert r.state in (State.DONE, State.FAILED)
    assert_nothing_lost(sim, plan)


def test_destination_dies_mid_migration(tmp_path: Path) -> None:
    inv, plan = _fleet()
    m0 = plan.migrations[0]
    sim = SimulatedHypervisor(inv, speedup=200, faults=(Slow(m0.vm, 10.0),))
    threading.Timer(0.3, sim.set_host_down, args=(m0.destination,)).start()
    result, sim, _, _ = _run(tmp_path, inv, plan, sim=sim)
    r = result.results[m0.vm]
    # RPC error 39, and the destination cannot say whether it holds the VM: never act on UNKNOWN.
    assert r.state is State.QUARANTINED and "39" in r.error and "did not answer" in r.error
    assert sim.where(m0.vm) == [(m0.source, DomainState.RUNNING)]  # untouched, still running
    assert_nothing_lost(sim, plan)


def _non_converging(**kw: object) -> tuple[Inventory, Plan]:
    return _fleet(policy=Policy(max_outbound_per_host=2, max_inbound_per_host=2, max_concurrent=4,
                                progress_timeout_s=10, completion_timeout_per_gib_s=100000), **kw)


@pytest.mark.parametrize(("action", "allow", "expected"), [
    (TimeoutAction.ABORT, False, State.ABORTED),
    (TimeoutAction.SUSPEND, False, State.DONE),
    (TimeoutAction.POSTCOPY, True, State.DONE),
    (TimeoutAction.POSTCOPY, False, State.ABORTED),  # post-copy needs --allow-postcopy: falls back to abort
])
def test_never_converging_vm_and_each_timeout_action(tmp_path: Path, action: TimeoutAction, allow: bool,
                                                     expected: State) -> None:
    inv, plan = _non_converging()
    vm = plan.migrations[0].vm
    result, sim, rep, journal = _run(tmp_path, inv, plan, faults=(NeverConverges(vm),), timeout_action=action,
                                     allow_postcopy=allow, escalation_interval_s=3.0, max_downtime_ceiling_ms=2000)
    r = result.results[vm]
    assert r.state is expected, (r, [c for c in rep.calls if c[0] == "migration_escalated"])
    steps = [d["step"] for h, d in rep.calls if h == "migration_escalated" and d["vm"] == vm]
    assert steps[:2] == ["max_downtime", "max_downtime"]  # 500 → 1000 → 2000 ms first
    assert steps[-1] == ("abort" if expected is State.ABORTED else action.value)
    assert journal.events("escalation")
    where = sim.where(vm)
    assert len(where) == 1 and where[0][1] is DomainState.RUNNING  # suspended guests are resumed
    assert where[0][0] == (plan.migrations[0].destination if expected is State.DONE else plan.migrations[0].source)
    assert all(x.state is State.DONE for v, x in result.results.items() if v != vm)
    assert_nothing_lost(sim, plan)


def test_hung_migration_hits_the_progress_timeout(tmp_path: Path) -> None:
    inv, plan = _non_converging()
    vm = plan.migrations[0].vm
    result, sim, _, _ = _run(tmp_path, inv, plan, faults=(Hang(vm),), escalation_interval_s=3.0)
    assert result.results[vm].state is State.ABORTED
    assert "no progress" in result.results[vm].error
    assert_nothing_lost(sim, plan)


def test_completion_timeout_goes_straight_to_the_action(tmp_path: Path) -> None:
    inv, plan = _fleet(policy=Policy(max_outbound_per_host=2, max_inbound_per_host=2, progress_timeout_s=10000,
                                     completion_timeout_per_gib_s=15))
    vm = plan.migrations[0].vm
    result, sim, _, _ = _run(tmp_path, inv, plan, faults=(Slow(vm, 20.0),))
    assert result.results[vm].state is State.ABORTED
    assert "completion timeout" in result.results[vm].error
    assert_nothing_lost(sim, plan)


def test_split_brain_is_quarantined_and_untouched(tmp_path: Path) -> None:
    inv, plan = _fleet()
    m0 = plan.migrations[0]
    result, sim, _, journal = _run(tmp_path, inv, plan, faults=(SplitBrain(m0.vm),))
    assert result.results[m0.vm].state is State.QUARANTINED
    assert sorted(sim.where(m0.vm)) == sorted([(m0.source, DomainState.PAUSED),
                                               (m0.destination, DomainState.PAUSED)])
    assert journal.state_of(m0.vm) is State.QUARANTINED
    assert_nothing_lost(sim, plan, quarantined=[m0.vm])
    journal.close()
    # --resume looks at it again (issue 8) and, still split, leaves it quarantined and untouched.
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, resume=True)
    assert result.results[m0.vm].state is State.QUARANTINED
    assert sorted(sim.where(m0.vm)) == sorted([(m0.source, DomainState.PAUSED), (m0.destination, DomainState.PAUSED)])
    assert [s.vm for s in sim.migrate_calls].count(m0.vm) == 1
    assert_nothing_lost(sim, plan, quarantined=[m0.vm])


def test_ctrl_c_aborts_in_flight_and_resume_finishes(tmp_path: Path) -> None:
    inv, plan = _fleet()
    cancel = threading.Event()
    sim = SimulatedHypervisor(inv, speedup=100)
    threading.Timer(0.3, cancel.set).start()
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, cancel=cancel)
    assert result.cancelled and result.exit_code == 1
    states = journal.summary()
    assert states.get("aborted", 0) >= 1 and "running" not in states and "prechecked" not in states
    assert_nothing_lost(sim, plan)
    journal.close()
    result2, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, resume=True)
    assert result2.ok, result2.summary()
    assert journal.summary() == {"done": len(plan.migrations)}
    assert_nothing_lost(sim, plan)


def test_unsafe_only_when_asked_and_recorded(tmp_path: Path) -> None:
    inv, plan = _fleet()
    result, sim, _, journal = _run(tmp_path, inv, plan, unsafe=True)
    assert result.ok
    assert sim.migrate_calls and all(s.unsafe for s in sim.migrate_calls)
    assert journal.flags()["unsafe"] is True


def test_virsh_command_equivalent() -> None:
    inv, plan = _fleet()
    m = next(m for m in plan.migrations if m.copy_storage)
    cmd = virsh_command(build_spec(m, inv, RunOptions()))
    assert cmd.startswith(f"virsh migrate-setmaxdowntime {m.vm} 500 && "
                          "virsh migrate --live --p2p --persistent --undefinesource")
    assert "--copy-storage-all --migrate-disks vda" in cmd and "--unsafe" not in cmd
    assert f"--bandwidth {round(m.bandwidth_mibs)}" in cmd


@pytest.mark.parametrize(("complete_inflight", "inflight_runs_s"), [(True, 0.0), (False, 0.0), (True, 30.0)])
def test_crash_mid_run_then_resume(tmp_path: Path, complete_inflight: bool, inflight_runs_s: float) -> None:
    """SIGKILL the executor mid-run; --resume reconciles in-flight VMs with both hosts and finishes:
    no VM lost or duplicated, no VM migrated again once done."""
    state = tmp_path / "fleet.json"
    journal_path = tmp_path / "j.db"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from executor.journal import Journal
        from executor.reporter import Reporter
        from executor.runner import RunOptions, run_plan
        from executor.sim_hv import SimulatedHypervisor
        from tests.test_runner import _fleet
        inv, plan = _fleet()
        sim = SimulatedHypervisor(inv, speedup=20, state_path={str(state)!r})
        j = Journal.open({str(journal_path)!r}, plan)
        run_plan(plan, inv, sim, j, Reporter(), RunOptions(backoff_s=2.0))
        print("finished", flush=True)
    """)
    killed = sigkill_mid_run(script, journal_path,
                             lambda j: j.summary().get("done", 0) >= 1 and j.summary().get("running", 0) >= 1)
    assert killed, "the run ended before it could be killed mid-flight"
    inv, plan = _fleet()
    before = Journal.read(journal_path)
    done_before = {vm for vm, s in before.states().items() if s is State.DONE}
    in_flight_before = set(before.in_flight())
    migrating_before = {vm for vm, s in before.states().items() if s in (State.RUNNING, State.VERIFYING)}
    jobs_at_kill = set(json.loads(state.read_text())["jobs"])
    intents_before = {vm: before.attempts_of(vm) for vm in done_before}
    before.close()
    assert in_flight_before
    # inflight_runs_s > 0: the jobs still run when we look. On virtual time they surely do: at 400× wall
    # time their 30 s were 75 ms, which a loaded machine could spend before the resume looked.
    sim = SimulatedHypervisor(inv, speedup=400, state_path=state, complete_inflight=complete_inflight,
                              inflight_runs_s=inflight_runs_s, virtual_time=True)
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, resume=True)
    assert result.ok, result.summary()
    assert journal.summary() == {"done": len(plan.migrations)}
    for vm in done_before:  # never migrated twice
        assert journal.attempts_of(vm) == intents_before[vm]
    assert not {s.vm for s in sim.migrate_calls} & done_before
    if complete_inflight:  # the source daemon finished them: reconciled as done without a new attempt
        assert not {s.vm for s in sim.migrate_calls} & migrating_before  # (prechecked ones had no job yet)
        if inflight_runs_s:  # followed to their end, not classified while they ran
            assert jobs_at_kill and {e["vm"] for e in journal.events("reattached")} >= jobs_at_kill
    else:  # the jobs that were running failed with the client: migrated again
        assert jobs_at_kill <= {s.vm for s in sim.migrate_calls}
    assert_nothing_lost(sim, plan)


def test_a_failed_vm_blocks_only_what_needed_its_room(tmp_path: Path) -> None:
    from planner.model import VM, Host, HostState
    from planner.plan import Migration, PlanStatus

    inv = Inventory(hosts=(Host("a", 8, 8192, 1.0, state=HostState.MAINTENANCE), Host("b", 8, 2048, 1.0),
                           Host("c", 8, 8192, 1.0)),
                    vms=(VM("x", "b", 1, 2048), VM("y", "a", 1, 2048), VM("z", "a", 1, 512)))
    topo = Topology(inv)

    def mig(vm: str, src: str, dst: str, start: float, end: float) -> Migration:
        path = topo.path(src, dst)
        assert path is not None
        return Migration(vm, src, dst, 0, start, end, 20.0, path, memory_mib=inv.vm[vm].memory_mib)

    plan = Plan(inv.sha256, ("a",), PlanStatus.FEASIBLE, 40.0, 0.0, 0.0,
                (mig("x", "b", "c", 0, 20), mig("y", "a", "b", 20, 40), mig("z", "a", "c", 0, 10)))
    result, sim, _, journal = _run(tmp_path, inv, plan, faults=(FailMigration("x", 91),))
    assert result.results["x"].state is State.FAILED
    assert result.results["y"].state is State.FAILED and "never started" in result.results["y"].error
    assert result.results["z"].state is State.DONE
    assert journal.attempts_of("y") == 0  # y was never tried: b never had room for it
    assert_nothing_lost(sim, plan)


@pytest.mark.parametrize("seed", range(3))
def test_random_faults_never_lose_a_vm(tmp_path: Path, seed: int) -> None:
    import random

    rng = random.Random(seed)
    inv, plan = _non_converging()
    vms = [m.vm for m in plan.migrations]
    rng.shuffle(vms)
    kinds = [lambda v: FailMigration(v, rng.choice([9, 39, 68]), frozenset({1})),
             lambda v: FailMigration(v, rng.choice([1, 55, 81, 91]), frozenset({1, 2, 3})),
             lambda v: Slow(v, rng.uniform(1.2, 2.0)), Hang, SplitBrain, NeverConverges]
    faults = tuple(rng.choice(kinds)(v) for v in vms[:4])
    action = rng.choice(list(TimeoutAction))
    result, sim, _, journal = _run(tmp_path, inv, plan, faults=faults, timeout_action=action,
                                   allow_postcopy=True, escalation_interval_s=3.0)
    final = journal.states()
    assert all(s.final for s in final.values()), final
    quarantined = [v for v, s in final.items() if s is State.QUARANTINED]
    assert all(isinstance(f, SplitBrain) for f in faults if getattr(f, "vm", None) in quarantined)
    assert_nothing_lost(sim, plan, quarantined=quarantined)
    for vm, r in result.results.items():  # the journal and the result agree, and done means at the destination
        assert r.state is final[vm]
        if r.state is State.DONE:
            assert sim.where(vm) == [(plan.migration_of(vm).destination, DomainState.RUNNING)]  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["default", "barrier", "one_at_a_time"])
def test_a_cp_sat_plan_of_the_sample_fleet_runs_in_every_mode(tmp_path: Path, mode: str) -> None:
    from planner.inventory import load_inventory
    from planner.model import HostState
    from planner.solve import make_plan

    inv = load_inventory(ROOT / "data" / "small.json").inventory
    drained = [h.name for h in inv.hosts if h.state is HostState.MAINTENANCE] or [inv.hosts[0].name]
    plan = make_plan(inv, drained, time_limit_s=5, workers=1)
    assert plan.migrations
    result, sim, rep, _ = _run(tmp_path, inv, plan, speedup=200, barrier=mode == "barrier",
                               one_at_a_time=mode == "one_at_a_time")
    assert result.ok, result.summary()
    _assert_limits(inv, plan, rep)
    assert_nothing_lost(sim, plan)


# ---------------------------------------------------------------- resume re-attaches, waits, re-examines (issue 8)


def _dead_run(tmp_path: Path, inv: Inventory, plan: Plan, running: list[str], state: State = State.RUNNING) -> None:
    """The journal an evac SIGKILLed mid-migration leaves: `running` VMs had their intent written and
    migrate called (state `state`), nothing else had started."""
    with Journal.open(tmp_path / "j.db", plan, flags=RunOptions().journal_flags()) as j:
        for vm in running:
            m = plan.migration_of(vm)
            assert m is not None
            j.record(vm, State.PRECHECKED, "precheck_ok", 0)
            j.intent(vm, inv.vm[vm].uuid, m.source, m.destination, {}, 1)
            j.record(vm, State.RUNNING, "migrate", 1)
            if state is not State.RUNNING:
                j.record(vm, state, "split" if state is State.QUARANTINED else "returned", 1,
                         f"{m.destination} did not answer: VM location unknown")


def test_resume_reattaches_to_migrations_libvirt_is_still_running(tmp_path: Path) -> None:
    """Found 2: the source daemon still drives the dead run's migrations (p2p); resume follows their
    jobs until they end and marks them done, without migrating them again and without quarantine."""
    inv, plan = _fleet()
    running = [m.vm for m in plan.migrations[:2]]
    _dead_run(tmp_path, inv, plan, running)
    sim = SimulatedHypervisor(inv, speedup=400)
    for vm in running:
        sim.orphan(vm, plan.migration_of(vm).destination, runs_s=30.0)  # type: ignore[union-attr]
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, resume=True)
    assert result.ok, result.summary()
    assert journal.summary() == {"done": len(plan.migrations)}
    assert not {s.vm for s in sim.migrate_calls} & set(running)  # followed, not migrated again
    assert all(journal.attempts_of(vm) == 1 for vm in running)
    reattached = {e["vm"] for e in journal.events("reattached")}
    assert reattached == set(running)
    assert_nothing_lost(sim, plan)


def test_resume_reattaches_then_retries_a_migration_that_failed_meanwhile(tmp_path: Path) -> None:
    inv, plan = _fleet()
    vm = plan.migrations[0].vm
    _dead_run(tmp_path, inv, plan, [vm])
    sim = SimulatedHypervisor(inv, speedup=400)
    sim.orphan(vm, plan.migrations[0].destination, runs_s=20.0, completes=False)
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, resume=True)
    assert result.ok, result.summary()
    assert [s.vm for s in sim.migrate_calls].count(vm) == 1 and journal.attempts_of(vm) == 2
    assert_nothing_lost(sim, plan)


def test_a_host_that_does_not_answer_is_waited_for_before_classifying(tmp_path: Path) -> None:
    """Found 2, second case: the destination's daemon dies mid-migration and is back seconds later:
    the VM, running on its source, is retried, not quarantined as 'location unknown'."""
    inv, plan = _fleet()
    m0 = plan.migrations[0]
    sim = SimulatedHypervisor(inv, speedup=100)  # vm0 migrates from ~4 to ~65 simulated seconds
    threading.Timer(0.3, sim.set_host_down, args=(m0.destination,)).start()
    threading.Timer(0.4, sim.set_host_up, args=(m0.destination,)).start()  # ~10 simulated seconds later
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim)
    r = result.results[m0.vm]
    assert r.state is State.DONE and r.attempts == 2, r
    assert journal.events("host_wait")
    assert_nothing_lost(sim, plan)


def test_resume_reexamines_a_vm_quarantined_because_a_host_did_not_answer(tmp_path: Path) -> None:
    inv, plan = _fleet()
    vm = plan.migrations[0].vm
    _dead_run(tmp_path, inv, plan, [vm], state=State.QUARANTINED)
    result, sim, _, journal = _run(tmp_path, inv, plan, resume=True)
    assert result.ok, result.summary()
    assert journal.state_of(vm) is State.DONE and journal.attempts_of(vm) == 2
    assert_nothing_lost(sim, plan)



def test_another_clients_job_on_the_domain_is_waited_for_not_a_failure(tmp_path: Path) -> None:
    """NOTES §5: a job held by someone else (here another client's migration that is then aborted)
    means wait and retry with backoff; the plan still completes."""
    inv, plan = _fleet()
    m0 = plan.migrations[0]
    other = next(h.name for h in inv.hosts if h.name not in (m0.source, m0.destination))
    sim = SimulatedHypervisor(inv, speedup=400)
    sim.orphan(m0.vm, other, runs_s=200.0, completes=False)  # someone else's job, gone after 200 s
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, backoff_s=100.0)  # waits 100, 200 s
    assert result.results[m0.vm].state is State.DONE, result.results[m0.vm]
    assert journal.events("job_busy") and journal.attempts_of(m0.vm) == 1
    assert_nothing_lost(sim, plan)


def test_resume_removes_the_volumes_a_dead_run_created_before_retrying(tmp_path: Path) -> None:
    """Killed between creating a copy-storage volume and migrating: the resume finds the VM on its
    source and deletes the announced volume first (else the precheck refuses the existing file)."""
    inv, plan = _fleet()
    m = next(m for m in plan.migrations if m.copy_storage)
    with Journal.open(tmp_path / "j.db", plan, flags=RunOptions().journal_flags()) as j:
        j.record(m.vm, State.PRECHECKED, "precheck_ok", 0)
        j.event("volumes_creating", m.vm, attempt=1, paths=["/var/lib/libvirt/images/left-behind"])
    sim = SimulatedHypervisor(inv, speedup=400)
    sim.volumes[m.destination].add("/var/lib/libvirt/images/left-behind")
    result, sim, _, journal = _run(tmp_path, inv, plan, sim=sim, resume=True)
    assert result.ok, result.summary()
    assert "/var/lib/libvirt/images/left-behind" not in sim.volumes[m.destination]
    removed = [e for e in journal.events("volumes_removed") if e["vm"] == m.vm]
    assert removed and removed[0]["paths"] == ["/var/lib/libvirt/images/left-behind"]
    assert_nothing_lost(sim, plan)


def test_on_virtual_time_a_run_reproduces_the_dispatch_the_model_predicts(tmp_path: Path) -> None:
    """No hidden lag: with the fleet following the model and time virtual, every migration starts when the
    monitor's dispatch of model durations says (`dispatch_hop_times`) and lasts its model duration. (This
    test plan is loose, so the run ends well before it: the monitor starts what has room; a planner's plan
    is reproduced within 2 %, see test_cli_run and bench/bench_sim_fidelity.py.)"""
    inv, plan = _fleet()
    sim = SimulatedHypervisor(inv, speedup=math.inf, virtual_time=True)
    result, sim, _, _ = _run(tmp_path, inv, plan, sim=sim)
    assert result.ok
    model_s = {hop_key(m): estimate(inv.vm[m.vm].memory_mib, inv.vm[m.vm].dirty_rate_mibs, m.bandwidth_mibs,
                                    inv.policy.max_downtime_ms, m.disk_mib, m.live, m.auto_converge).duration_s
               for m in plan.migrations}
    predicted = dispatch_hop_times(plan, inv, duration_s=model_s)
    for m in plan.migrations:
        r = result.results[m.vm]
        assert (r.started_s, r.ended_s) == pytest.approx(predicted[hop_key(m)], abs=1e-6), m.vm
    assert result.makespan_s == pytest.approx(max(end for _, end in predicted.values()), abs=1e-6)
    assert_nothing_lost(sim, plan)
