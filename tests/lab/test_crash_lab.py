"""Crashes and daemon faults on the REAL lab (issue 8): `evac run` SIGKILLed at named points of a
multi-VM run (`EVAC_FAULT_KILL_AT`, executor/faults.py) and on timers, then `evac run --resume`;
the destination's libvirtd killed and restarted; the destination QEMU killed; another client holding
the domain's job; a post-copy migration whose network breaks.

After every case the "nothing lost" rule (`evac_scenario.assert_nothing_lost`): each VM runs exactly
once, on its source or its planned destination, persistent where it was, local-disk data intact,
no copy-storage volume left behind; and the journal says what happened (nothing quarantined that
libvirt completed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import libvirt
import pytest

from executor.hypervisor import DomainState
from executor.journal import Journal
from executor.reporter import Reporter
from executor.runner import RunOptions, TimeoutAction, run_plan
from executor.states import PAUSED_POSTCOPY_FAILED, State
from tests.lab import evac_scenario as es
from tests.lab.harness import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]

# Three small guests leaving h1: one with a local disk (copy-storage, 24 MiB of data), one transient.
# In plan order (bigger first): cr-c, cr-a, cr-b.
CRASH_GUESTS: tuple[es.GuestSpec, ...] = (
    es.GuestSpec("cr-a", 64, 1, 8, True, "h2", local_disk_mib=32),
    es.GuestSpec("cr-b", 64, 2, 8, False, "h3"),
    es.GuestSpec("cr-c", 96, 1, 8, True, "h2"),
)
CRASH_CAP_MIBS = 16.0


class _Cli:
    """`python -m executor.cli.main run PLAN -i INV --journal J` against the lab, as an operator runs it."""

    def __init__(self, sc: es.Scenario, tmp: Path, *extra: str) -> None:
        self.sc = sc
        self.inv, self.plan, self.journal = tmp / "inv.json", tmp / "plan.json", tmp / "run.db"
        self.inv.write_text(json.dumps(sc.inventory.to_dict()))
        self.plan.write_text(sc.plan.to_json())
        self.extra = extra
        self.outputs: list[str] = []

    def argv(self, resume: bool) -> list[str]:
        peers = [a for h in self.sc.lab.hosts for a in ("--peer-uri", f"{h.name}={h.peer_uri}")]
        return [sys.executable, "-m", "executor.cli.main", "run", str(self.plan), "-i", str(self.inv),
                "--journal", str(self.journal), "--allow-insecure-transport", *peers, *self.extra,
                *(["--resume"] if resume else [])]

    def start(self, resume: bool, kill_at: str | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != "EVAC_FAULT_KILL_AT"}
        if kill_at:
            env["EVAC_FAULT_KILL_AT"] = kill_at
        return subprocess.Popen(self.argv(resume), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def run(self, resume: bool, kill_at: str | None = None, timeout_s: float = 120) -> int:
        proc = self.start(resume, kill_at)
        out, _ = proc.communicate(timeout=timeout_s)
        self.outputs.append(out)
        assert "Traceback" not in out, out
        return proc.returncode

    def kill_at(self, point: str, resume: bool) -> None:
        """Runs until the process SIGKILLs itself at `point` (a test that never got there fails)."""
        code = self.run(resume, kill_at=point)
        assert code == -signal.SIGKILL, f"not killed at {point} (exit {code}): {self.outputs[-1][-2000:]}"

    def kill_after(self, seconds: float, resume: bool) -> None:
        proc = self.start(resume)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        self.outputs.append(out)
        assert proc.returncode == -signal.SIGKILL, f"the run ended before {seconds} s: {out[-2000:]}"

    def history(self) -> str:
        """Every state row of the journal (for a failure message)."""
        with Journal.read(self.journal) as j:
            rows = j._conn.execute("SELECT run_id, vm, state, event, attempt, detail FROM state ORDER BY id")
            events = j._conn.execute("SELECT run_id, kind, vm, data FROM event ORDER BY id")
            return "\n".join(map(str, [*rows.fetchall(), *events.fetchall()]))

    def states(self) -> dict[str, State]:
        with Journal.read(self.journal) as j:
            return j.states()


def _finish_and_check(cli: _Cli, hv: object) -> None:
    """The last `--resume`: exit 0, every VM done (none quarantined), nothing lost."""
    code = cli.run(resume=True)
    assert code == 0, cli.outputs[-1][-3000:] + cli.history()
    assert set(cli.states().values()) == {State.DONE}, cli.history()
    es.assert_nothing_lost(cli.sc, hv)  # type: ignore[arg-type]
    assert es.verify(cli.sc, hv) == []  # type: ignore[arg-type]


def _intents(cli: _Cli) -> dict[str, int]:
    with Journal.read(cli.journal) as j:
        return {m.vm: j.attempts_of(m.vm) for m in cli.sc.plan.migrations}


@pytest.mark.slow
def test_kill_points_one_at_a_time_then_resume(lab: Lab, tmp_path: Path) -> None:
    """Nine crash points in one run of three VMs (one at a time, so the n-th pass is a known VM),
    each followed by `--resume` that is itself killed at the next point; the last resume finishes."""
    sc = es.build(lab, CRASH_GUESTS, cap_mibs=CRASH_CAP_MIBS)
    hv = es.hypervisor(lab, sc.inventory)
    cli = _Cli(sc, tmp_path, "--one-at-a-time")
    order = [m.vm for m in sorted(sc.plan.migrations, key=lambda m: (m.start_s, -m.priority, m.vm))]
    assert order == ["cr-a", "cr-c", "cr-b"], order  # the disk's copy makes cr-a the longest
    points = [
        "run_started",  # before any hypervisor call
        "reconcile",  # a resume killed before it looked at anything
        "prechecked",  # cr-a prechecked, nothing created
        "volumes_creating",  # cr-a's volume announced, not created
        "volume_created",  # cr-a's volume created, migrate not called: the resume removes it
        "intent",  # cr-a's volume created again, intent journaled, migrate not called
        "disk_copy",  # cr-a mid-copy of its disk: libvirt goes on without the client
        "verified",  # cr-c done in libvirt and seen on both hosts, not journaled
        "migrated",  # cr-b migrated, not journaled
    ]
    for i, point in enumerate(points):
        cli.kill_at(point, resume=i > 0)
        states = cli.states()
        assert State.QUARANTINED not in states.values(), (point, states)
    intents = _intents(cli)
    _finish_and_check(cli, hv)
    after = _intents(cli)
    # cr-a was finished by libvirt while no evac ran: followed to the end, never migrated again.
    assert after["cr-c"] == intents["cr-c"] and after["cr-a"] == intents["cr-a"] and after["cr-b"] == intents["cr-b"]
    with Journal.read(cli.journal) as j:
        reattached = {e["vm"] for e in j.events("reattached")}
        removed = [e for e in j.events("volumes_removed") if e["vm"] == "cr-a"]
    assert "cr-a" in reattached, reattached
    assert len(removed) >= 2, "the volumes the killed runs created for cr-a were not removed before its retries"
    hv.close()


@pytest.mark.slow
def test_kill_points_with_migrations_in_flight(lab: Lab, tmp_path: Path) -> None:
    """Concurrent run killed mid-memory of the first sample, every migration running in libvirt
    (issue 8's Found 2); the resume killed while it follows them (re-attached); the next killed just
    before it journals the run's end; the last resume finishes, none quarantined."""
    sc = es.build(lab, CRASH_GUESTS, cap_mibs=CRASH_CAP_MIBS)
    hv = es.hypervisor(lab, sc.inventory)
    cli = _Cli(sc, tmp_path)
    cli.kill_at("memory_copy", resume=False)
    in_flight = {vm for vm, s in cli.states().items() if s.in_flight}
    cli.kill_at("reattached", resume=True)
    cli.kill_at("run_finished", resume=True)
    assert State.QUARANTINED not in cli.states().values(), cli.states()
    _finish_and_check(cli, hv)
    assert in_flight, "nothing was in flight when the run was killed"
    hv.close()


@pytest.mark.slow
def test_found2_six_vms_killed_six_seconds_in_resume_quarantines_nothing(lab: Lab, tmp_path: Path) -> None:
    """Issue 8, Found 2 as reported: six VMs leaving h1 under a 0.5 Gbit/s link, `evac run` SIGKILLed
    6 s in (a timer: wherever it lands), `--resume`: before the fix two VMs libvirt completed were
    quarantined. Here the first resume is SIGKILLed too, 3 s in, and a second one finishes."""
    sc = es.build(lab)
    lab.shape(1, gbps=0.5)
    hv = es.hypervisor(lab, sc.inventory)
    cli = _Cli(sc, tmp_path)
    cli.kill_after(6.0, resume=False)
    running = {vm for vm, s in cli.states().items() if s is State.RUNNING}
    intents = _intents(cli)
    cli.kill_after(3.0, resume=True)
    _finish_and_check(cli, hv)  # none quarantined
    assert running, "no migration was running at the kill"
    after = _intents(cli)
    assert all(after[vm] == intents[vm] for vm in running), (intents, after)  # libvirt finished them: not redone
    hv.close()


# ---------------------------------------------------------------- daemon and QEMU faults (in-process runs)


def _run_in_thread(sc: es.Scenario, tmp: Path, options: RunOptions) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}
    hv = es.hypervisor(sc.lab, sc.inventory)

    def go() -> None:
        with Journal.open(tmp / "run.db", sc.plan, inventory_sha256=sc.inventory.sha256,
                          flags=options.journal_flags(), resume=options.resume) as journal:
            out["result"] = run_plan(sc.plan, sc.inventory, hv, journal, Reporter(), options)

    t = threading.Thread(target=go)
    t.start()
    return t, out


def _resume_to_the_end(sc: es.Scenario, tmp: Path, options: RunOptions) -> None:
    t, out = _run_in_thread(sc, tmp, dataclasses.replace(options, resume=True))
    t.join(240)
    assert out["result"].ok, out["result"].summary()  # type: ignore[attr-defined]


def _two_to_h2(lab: Lab) -> es.Scenario:
    guests = (es.GuestSpec("df-a", 80, 1, 8, True, "h2"), es.GuestSpec("df-b", 64, 1, 8, True, "h3"))
    return es.build(lab, guests, cap_mibs=12.0)


def _wait_job(lab: Lab, vm: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with_job = lab.connect(1).lookupByName(vm).jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        if with_job and lab.connect(1).lookupByName(vm).jobStats().get("data_processed", 0) > 4 * 2**20:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{vm} never started migrating")


def test_destination_daemon_killed_mid_migration_then_restarted(lab: Lab, tmp_path: Path) -> None:
    """Found 2, second case: h2's libvirtd SIGKILLed while a VM migrates to it, back 2 s later. The
    VM runs on its source; evac waits for h2 instead of quarantining 'location unknown'; the resume
    (or the run's own retry) finishes the plan."""
    sc = _two_to_h2(lab)
    options = RunOptions(backoff_s=2.0, host_wait_s=30.0)
    t, out = _run_in_thread(sc, tmp_path, options)
    _wait_job(lab, "df-a")
    lab.kill_daemon(2)
    time.sleep(2.0)
    lab.restart_daemon(2)
    t.join(240)
    result = out["result"]
    states = {vm: r.state for vm, r in result.results.items()}  # type: ignore[attr-defined]
    assert State.QUARANTINED not in states.values(), states
    hv = es.hypervisor(lab, sc.inventory)
    es.assert_nothing_lost(sc, hv)
    if states["df-a"] is not State.DONE:  # a non-retryable error (1: client socket closed): resume finishes
        _resume_to_the_end(sc, tmp_path, options)
    assert es.verify(sc, hv) == []
    hv.close()


def test_destination_qemu_killed_mid_migration(lab: Lab, tmp_path: Path) -> None:
    """The destination's incoming QEMU dies: the migration fails at once (libvirt error 9 "job
    'migration out' failed", or 1 "qemu unexpectedly closed the monitor", depending on the moment),
    the VM keeps running on its source; evac retries (9 is retryable) or reports it failed, and the
    resume finishes the plan."""
    sc = _two_to_h2(lab)
    options = RunOptions(backoff_s=2.0)
    t, out = _run_in_thread(sc, tmp_path, options)
    _wait_job(lab, "df-a")
    pidfile = lab.host(2).dir / "run" / "libvirt" / "qemu" / "df-a.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    t.join(240)
    r = out["result"].results["df-a"]  # type: ignore[attr-defined]
    assert (r.state is State.DONE and r.attempts == 2) or (r.state is State.FAILED and "libvirt error 1" in r.error), r
    hv = es.hypervisor(lab, sc.inventory)
    es.assert_nothing_lost(sc, hv)
    if r.state is State.FAILED:
        _resume_to_the_end(sc, tmp_path, options)
    assert es.verify(sc, hv) == []
    hv.close()


def test_another_client_holding_the_job_is_waited_for(lab: Lab, tmp_path: Path) -> None:
    """Another client migrates df-a elsewhere (slowly) and aborts after 4 s: while its job holds the
    domain (NOTES §5: error 68 for anyone else), evac waits with backoff, then migrates it."""
    sc = _two_to_h2(lab)
    other = libvirt.open(lab.hosts[0].uri)
    dom = other.lookupByName("df-a")
    holder_error: list[int] = []

    def hold() -> None:
        try:
            dom.migrateToURI3(lab.hosts[2].peer_uri, {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 2},
                              libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER)
        except libvirt.libvirtError as e:
            holder_error.append(e.get_error_code())

    holder = threading.Thread(target=hold)
    holder.start()
    _wait_job(lab, "df-a", timeout_s=30)
    threading.Timer(4.0, dom.abortJob).start()
    t, out = _run_in_thread(sc, tmp_path, RunOptions(backoff_s=2.0))
    t.join(240)
    holder.join(30)
    other.close()
    assert holder_error == [libvirt.VIR_ERR_OPERATION_ABORTED], holder_error
    result = out["result"]
    assert result.ok, result.summary()  # type: ignore[attr-defined]
    with Journal.read(tmp_path / "run.db") as j:
        assert [e for e in j.events("job_busy") if e["vm"] == "df-a"]
    hv = es.hypervisor(lab, sc.inventory)
    assert es.verify(sc, hv) == []
    hv.close()


@pytest.mark.slow
def test_postcopy_failure_is_quarantined_and_neither_side_destroyed(lab: Lab, tmp_path: Path) -> None:
    """--allow-postcopy, timeout action post-copy on a guest that cannot converge; once it runs in
    post-copy the destination's libvirtd dies. libvirt pauses the source (post-copy failed) at once
    (measured the same with the destination's link cut, after libvirt's ~30 s keepalive); the guest
    on the destination reads running (post-copy). evac quarantines the VM, destroys nothing, and says why."""
    guests = (es.GuestSpec("pf-a", 64, 8, 32, True, "h2"),)  # 32 MiB rewritten at 8 MiB/s, cap 4
    sc = es.build(lab, guests, cap_mibs=4.0)
    policy = dataclasses.replace(sc.inventory.policy, progress_timeout_s=3, auto_converge=False)
    inventory = dataclasses.replace(sc.inventory, policy=policy)
    plan = dataclasses.replace(es.hand_plan(inventory, {"pf-a": "h2"}, 4.0), inventory_sha256=inventory.sha256)
    plan = dataclasses.replace(plan, migrations=tuple(dataclasses.replace(m, auto_converge=False)
                                                      for m in plan.migrations))
    sc = dataclasses.replace(sc, inventory=inventory, plan=plan)
    options = RunOptions(timeout_action=TimeoutAction.POSTCOPY, allow_postcopy=True, retries=0,
                         escalation_interval_s=1.0, host_wait_s=10.0)
    t, out = _run_in_thread(sc, tmp_path, options)
    uuid = sc.uuids["pf-a"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the runner's switch to post-copy
        state, reason = lab.connect(1).lookupByUUIDString(uuid).state()
        if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the runner never switched pf-a to post-copy")
    lab.kill_daemon(2)  # the source daemon loses its peer at once (a cut network: after ~30 s of keepalive)
    try:
        t.join(240)
    finally:
        lab.restart_daemon(2)
    r = out["result"].results["pf-a"]  # type: ignore[attr-defined]
    assert r.state is State.QUARANTINED and "post-copy failed" in r.error, r
    hv = es.hypervisor(lab, sc.inventory)
    src, dst = hv.domain_status("h1", "pf-a", uuid), hv.domain_status("h2", "pf-a", uuid)
    assert (src.state, src.reason) == (DomainState.PAUSED, PAUSED_POSTCOPY_FAILED), src
    assert dst.state is not DomainState.ABSENT, dst  # neither side destroyed
    with Journal.read(tmp_path / "run.db") as j:
        assert j.state_of("pf-a") is State.QUARANTINED
    es.assert_nothing_lost(sc, hv, quarantined=["pf-a"])
    hv.close()
