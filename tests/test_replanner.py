"""executor/replanner.py (`evac run --replan`) on the simulated fleet: a destination stops answering
before its wave; without --replan its VMs are not moved, with it the rest is re-planned and completes.

Every test ends with the invariant: each VM runs exactly once, on its source or where the run put it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from executor.hypervisor import DomainState
from executor.journal import Journal, plan_digest
from executor.replanner import run_with_replan
from executor.reporter import RecordingReporter
from executor.runner import RunOptions, RunResult, run_plan
from executor.sim_hv import FailMigration, HostDown, SimulatedHypervisor
from executor.states import State
from planner.checker import check_plan
from planner.model import Inventory, Policy
from planner.plan import Migration, Plan
from planner.solve import make_plan
from tests.fleet import assert_nothing_lost, make_inventory

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)

FAST = RunOptions(backoff_s=2.0, poll_interval_s=0.5)


def _inventory() -> Inventory:
    return make_inventory(n_hosts=3, vms_per_host=6, drained=("h0",), local_disk_every=4,
                          host_memory_mib=16384, policy=Policy(max_outbound_per_host=2, max_inbound_per_host=2))


def _fleet() -> tuple[Inventory, Plan]:
    """h0 drained, its six VMs planned onto h1 and h2; h1 alone can take them all."""
    inv = _inventory()
    plan = make_plan(inv, ["h0"], time_limit_s=2)
    assert {m.destination for m in plan.migrations} == {"h1", "h2"} and not plan.unplaced
    return inv, plan


def _run(tmp_path: Path, inv: Inventory, plan: Plan, sim: SimulatedHypervisor, replan: bool,
         options: RunOptions = FAST) -> tuple[RunResult, RecordingReporter, Journal]:
    rep = RecordingReporter()
    with Journal.open(tmp_path / "j.db", plan, flags=options.journal_flags()) as journal:
        if replan:
            result = run_with_replan(plan, inv, sim, journal, rep, options, time_limit_s=2)
        else:
            result = run_plan(plan, inv, sim, journal, rep, options)
    return result, rep, Journal.read(tmp_path / "j.db")


def test_without_replan_the_unreachable_destinations_vms_are_not_moved(tmp_path: Path) -> None:
    inv, plan = _fleet()
    sim = SimulatedHypervisor(inv, speedup=400, faults=(HostDown("h2"),))
    result, _, journal = _run(tmp_path, inv, plan, sim, replan=False)
    assert result.exit_code == 1
    for m in plan.migrations:
        r = result.results[m.vm]
        if m.destination == "h2":
            assert r.state is State.FAILED and r.error.startswith("not moved: destination h2 unreachable"), r
            assert result.unreachable[m.vm] == "h2"
        else:
            assert r.state is State.DONE, r
    assert [e["host"] for e in journal.events("destination_unreachable")] == ["h2"]
    assert_nothing_lost(sim, plan)


class _CutAfter(RecordingReporter):
    """Takes `host` off the network right after `vm`'s migration ends (done or failed): deterministic,
    whatever the simulated clock's latency."""

    def __init__(self, sim: SimulatedHypervisor, vm: str, host: str) -> None:
        super().__init__()
        self.sim, self.vm, self.host = sim, vm, host

    def migration_done(self, migration: Migration, elapsed_s: float, now_s: float) -> None:
        super().migration_done(migration, elapsed_s, now_s)
        if migration.vm == self.vm:
            self.sim.set_host_down(self.host)

    def migration_failed(self, migration: Migration, state: str, error: str, now_s: float) -> None:
        super().migration_failed(migration, state, error, now_s)
        if migration.vm == self.vm:
            self.sim.set_host_down(self.host)


def _replanned(rep: RecordingReporter) -> Plan:
    plans = [d["plan"] for h, d in rep.calls if h == "run_replanned"]
    assert len(plans) == 1, plans
    plan: Plan = plans[0]
    return plan


def test_replan_from_the_start_moves_everything_onto_the_host_that_answers(tmp_path: Path) -> None:
    inv, plan = _fleet()
    sim = SimulatedHypervisor(inv, speedup=400, faults=(HostDown("h2"),))
    result, rep, journal = _run(tmp_path, inv, plan, sim, replan=True)
    assert result.ok and result.exit_code == 0, result.summary()
    assert journal.summary() == {"done": len(plan.migrations)}
    replans = journal.events("replan")
    assert len(replans) == 1 and replans[0]["unavailable"] == ["h2"]
    new = _replanned(rep)
    assert replans[0]["plan_sha256"] == plan_digest(new)
    assert {m.destination for m in new.migrations} == {"h1"}
    for m in result.plan.migrations:  # the plan as run: every VM went to h1
        assert m.destination == "h1"
        assert sim.where(m.vm) == [("h1", DomainState.RUNNING)]
    assert {r.destination for r in journal.records()} == {"h1"}  # what `evac status` shows
    assert_nothing_lost(sim, result.plan)


def test_replan_after_some_vms_reached_the_host_that_dies(tmp_path: Path) -> None:
    inv, plan = _fleet()
    first_h2 = next(m.vm for m in plan.migrations if m.destination == "h2")
    sim = SimulatedHypervisor(inv, speedup=400)
    rep = _CutAfter(sim, first_h2, "h2")
    with Journal.open(tmp_path / "j.db", plan) as journal:
        result = run_with_replan(plan, inv, sim, journal, rep, FAST, time_limit_s=2)
    assert result.ok, result.summary()
    new = _replanned(rep)
    assert first_h2 not in {m.vm for m in new.migrations} and {m.destination for m in new.migrations} == {"h1"}
    for m in result.plan.migrations:
        assert m.destination == ("h2" if m.vm == first_h2 else "h1"), m
        assert sim.where(m.vm) == [(m.destination, DomainState.RUNNING)]  # first_h2 stays on the dead host
    assert_nothing_lost(sim, result.plan)


def test_replan_keeps_an_attempted_failure_and_marks_what_no_longer_fits(tmp_path: Path) -> None:
    inv, plan = _fleet()
    to_h1 = [m.vm for m in plan.migrations if m.destination == "h1"]
    to_h2 = [m.vm for m in plan.migrations if m.destination == "h2"]
    # h1 has room for exactly what the plan sends it: after h2 dies, h2's VMs do not fit anywhere.
    tight = dataclasses.replace(inv, hosts=tuple(
        dataclasses.replace(h, memory_mib=(len(inv.vms_on["h1"]) + len(to_h1)) * 1024) if h.name == "h1" else h
        for h in inv.hosts))
    plan = dataclasses.replace(plan, inventory_sha256=tight.sha256)
    assert check_plan(tight, plan) == []
    failing = to_h1[0]
    sim = SimulatedHypervisor(tight, speedup=400, faults=(FailMigration(failing, 1),))
    rep = _CutAfter(sim, failing, "h2")  # h2 dies right after the failure
    with Journal.open(tmp_path / "j.db", plan) as journal:
        result = run_with_replan(plan, tight, sim, journal, rep, FAST, time_limit_s=2)
    assert result.exit_code == 1
    r = result.results[failing]
    assert r.state is State.FAILED and "injected failure" in r.error, r  # attempted: kept, not re-planned
    new = _replanned(rep)
    assert failing not in {m.vm for m in new.migrations} | {u.vm for u in new.unplaced}
    assert new.unplaced and {u.vm for u in new.unplaced} <= set(to_h2)
    for u in new.unplaced:
        assert result.results[u.vm].state is State.FAILED
        assert result.results[u.vm].error.startswith("not moved: re-plan found no destination"), result.results[u.vm]
        assert sim.where(u.vm) == [("h0", DomainState.RUNNING)]
    read = Journal.read(tmp_path / "j.db")
    assert all(read.state_of(u.vm) is State.FAILED for u in new.unplaced)
    assert all(result.results[m.vm].state is State.DONE for m in new.migrations)
    assert_nothing_lost(sim, result.plan)


def test_resume_after_a_crash_continues_the_replanned_plan(tmp_path: Path) -> None:
    """SIGKILL the executor while the re-planned plan runs; --resume must reconcile the in-flight VMs
    against the hosts the re-plan chose (h1), not the original plan's (h2, dead: "location unknown")."""
    state, journal_path, plan_path = tmp_path / "fleet.json", tmp_path / "j.db", tmp_path / "plan.json"
    inv, plan = _fleet()
    plan_path.write_text(plan.to_json())  # the planner's answer may vary from one process to the next
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from executor.journal import Journal
        from executor.reporter import Reporter
        from executor.replanner import run_with_replan
        from executor.runner import RunOptions
        from executor.sim_hv import HostDown, SimulatedHypervisor
        from planner.plan import load_plan
        from tests.test_replanner import _inventory
        inv, plan = _inventory(), load_plan({str(plan_path)!r})
        sim = SimulatedHypervisor(inv, speedup=20, state_path={str(state)!r}, faults=(HostDown("h2"),))
        j = Journal.open({str(journal_path)!r}, plan)
        run_with_replan(plan, inv, sim, j, Reporter(), RunOptions(backoff_s=2.0), time_limit_s=2)
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    killed = False
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None and not killed:
        time.sleep(0.05)
        try:
            ro = Journal.read(journal_path)
            replanned, running = bool(ro.events("replan")), ro.summary().get("running", 0)
            ro.close()
        except Exception:
            continue
        if replanned and running:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
    proc.wait()
    assert killed, "the run ended before it could be killed while running the re-plan"
    sim = SimulatedHypervisor(inv, speedup=400, state_path=state, faults=(HostDown("h2"),))
    options = dataclasses.replace(FAST, resume=True)
    with Journal.open(journal_path, plan, flags=options.journal_flags(), resume=True) as journal:
        result = run_with_replan(plan, inv, sim, journal, RecordingReporter(), options, time_limit_s=2)
    assert result.ok, {vm: (r.state, r.error) for vm, r in result.results.items()}
    assert Journal.read(journal_path).summary() == {"done": len(plan.migrations)}
    for m in result.plan.migrations:
        assert m.destination == "h1" and sim.where(m.vm) == [("h1", DomainState.RUNNING)], m


@pytest.mark.parametrize("replan", [False, True])
def test_evac_run_replan_option(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                replan: bool) -> None:
    from executor.cli import run_cmds
    from executor.cli.main import main

    inv, plan = _fleet()
    inv_path, plan_path = tmp_path / "inv.json", tmp_path / "plan.json"
    inv_path.write_text(json.dumps(inv.to_dict()))
    plan_path.write_text(plan.to_json())
    monkeypatch.setattr(run_cmds, "_hypervisor",
                        lambda inventory, *a: SimulatedHypervisor(inventory, speedup=400, faults=(HostDown("h2"),)))
    code = main(["run", str(plan_path), "-i", str(inv_path), "--simulate", "--journal", str(tmp_path / "j.db"),
                 "--json", *(["--replan"] if replan else [])])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    to_h2 = {m.vm for m in plan.migrations if m.destination == "h2"}
    if replan:
        assert code == 0 and kinds.count("run_replanned") == 1
        (ev,) = [e for e in events if e["event"] == "run_replanned"]
        assert ev["unavailable"] == ["h2"] and ev["migrations"] >= len(to_h2) and not ev["unplaced"]
        assert kinds.count("migration_done") == len(plan.migrations)
    else:
        assert code == 1 and "run_replanned" not in kinds
        failed = {e["vm"]: e["error"] for e in events if e["event"] == "migration_failed"}
        assert set(failed) == to_h2 and all(err.startswith("not moved: destination h2 unreachable")
                                            for err in failed.values())
    status = Journal.read(tmp_path / "j.db").runs()[0]["flags"]
    assert status["replan"] is replan


def test_evac_run_replan_refuses_a_plan_that_drains_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    from executor.cli.main import main

    inv, plan = _fleet()
    inv_path, plan_path = tmp_path / "inv.json", tmp_path / "plan.json"
    inv_path.write_text(json.dumps(inv.to_dict()))
    plan_path.write_text(dataclasses.replace(plan, drained=()).to_json())
    journal = tmp_path / "j.db"
    code = main(["run", str(plan_path), "-i", str(inv_path), "--simulate", "--journal", str(journal), "--replan"])
    assert code == 2 and "this plan drains no host" in capsys.readouterr().err
    assert not journal.exists()


def _swap_and_z() -> tuple[Inventory, Plan]:
    """a and b full (x on a, y on b, each to the other's host), c a staging host that also holds z, d where
    z goes: a target plan x a→c (staging) with z c→d, then y b→a, then x c→b."""
    from planner.plan import PlanKind
    from tests._planner_fixtures import flat, host, move, plan_of, vm

    inv = flat([host(n, memory_mib=8192) for n in "abcd"],
               [vm("x", "a", memory_mib=6144), vm("y", "b", memory_mib=6144), vm("z", "c", memory_mib=1024)])
    x0 = move(inv, "x", "c", hop=0, staging=True)
    z0 = move(inv, "z", "d")
    y0 = move(inv, "y", "a", start_s=max(x0.end_s, z0.end_s), wave=1)
    x1 = move(inv, "x", "b", start_s=y0.end_s, source="c", hop=1, wave=2)
    plan = plan_of(inv, [x0, z0, y0, x1], drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a", "z": "d"})
    assert check_plan(inv, plan) == []
    return inv, plan


def test_replan_mid_chain_keeps_the_last_hop_of_a_vm_on_its_staging_host(tmp_path: Path) -> None:
    """d stops answering once x is on its staging host c: the re-plan must still take x from c to b (its
    last hop, numbered 1 as in the journal), y to a, and leave z on c (its target is gone)."""
    inv, plan = _swap_and_z()
    sim = SimulatedHypervisor(inv, speedup=400)
    rep = _CutAfter(sim, "x", "d")  # after x's first hop (a→c)
    options = dataclasses.replace(FAST, one_at_a_time=True)  # x a→c, then z c→d finds d gone
    with Journal.open(tmp_path / "j.db", plan) as journal:
        result = run_with_replan(plan, inv, sim, journal, rep, options, time_limit_s=2)
    new = _replanned(rep)
    assert {(m.vm, m.source, m.destination, m.hop) for m in new.migrations} >= {("x", "c", "b", 1)}
    assert sim.where("x") == [("b", DomainState.RUNNING)] and sim.where("y") == [("a", DomainState.RUNNING)]
    assert sim.where("z") == [("c", DomainState.RUNNING)]
    assert result.results["x"].state is State.DONE and result.results["y"].state is State.DONE
    assert result.results["z"].state is State.FAILED and "re-plan" in result.results["z"].error
    read = Journal.read(tmp_path / "j.db")
    assert read.hop_states()[("x", 0)] is State.DONE and read.hop_states()[("x", 1)] is State.DONE
    routes = {r.vm: r for r in read.records()}
    assert routes["x"].state is State.DONE and routes["x"].route == ("a", "c", "b")
    assert [(m.vm, m.hop) for m in result.plan.migrations if m.vm == "x"] == [("x", 0), ("x", 1)]
    assert_nothing_lost(sim, result.plan)
