"""A destination host stops answering before its wave, on the real lab (3 hosts).

h1 is drained: two guests planned to h2, two to h3; h3's libvirtd is killed before the run.
Without `--replan` the two h3 guests are reported "not moved" and keep running on h1 (exit 1),
the rest of the plan proceeds. With `--replan` the run re-plans from the live state and the h3
guests go to h2 in the same run (exit 0). After each: every guest runs exactly once, where the
report says, heartbeat advancing (h3 is restarted first so that its domain list can be read too).
A third case stops h3's libvirtd (SIGSTOP) instead: a host that hangs, as behind a network partition.
A fourth kills h3 after its first guest arrived: that one stays on h3, the re-plan counts it there.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from executor.journal import Journal
from tests.lab import evac_scenario as es
from tests.lab.fault_helpers import assert_each_runs_once, evac, write_run_files
from tests.lab.harness import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

# Small guests so that h2 alone can take them all; the two bigger ones (h2) are planned first.
GUESTS = (
    es.GuestSpec("ur-a", 80, 1, 8, True, "h2"),
    es.GuestSpec("ur-b", 72, 1, 8, False, "h2"),
    es.GuestSpec("ur-c", 64, 1, 8, True, "h3"),
    es.GuestSpec("ur-d", 64, 2, 8, False, "h3"),
)
CAP_MIBS = 48.0


def _run(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str, hang: bool = False,
         guests: tuple[es.GuestSpec, ...] = GUESTS) -> tuple[es.Scenario, int, str, Path, float]:
    """Before any wave h3 stops answering: its libvirtd killed (connections refused at once), or with
    `hang` stopped (SIGSTOP: what a network partition looks like, every call waits for its timeout)."""
    sc = es.build(lab, guests, cap_mibs=CAP_MIBS)
    inventory, plan = write_run_files(sc, tmp_path)
    journal = tmp_path / "run.db"
    pid = lab.daemon_pid(3)
    assert pid is not None
    if hang:
        os.kill(pid, signal.SIGSTOP)
    else:
        lab.kill_daemon(3)
    try:
        t0 = time.monotonic()
        code, out = evac(capsys, "run", str(plan), "-i", str(inventory), "--journal", str(journal), *extra)
        took = time.monotonic() - t0
    finally:
        if hang:
            os.kill(pid, signal.SIGCONT)
    lab.restart_daemon(3)  # so that its domain list can be read: it must hold none of the guests
    return sc, code, out, journal, took


def test_unreachable_destination_without_replan_leaves_its_vms_on_the_source(
        lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc, code, out, journal, took = _run(lab, tmp_path, capsys)
    assert code == 1, out
    to_h3 = [g.name for g in GUESTS if g.destination == "h3"]
    j = Journal.read(journal)
    for r in j.records():
        if r.vm in to_h3:
            assert r.state.value == "failed" and r.attempts == 0, r  # migrate was never called
            assert r.error.startswith("not moved: destination h3 unreachable, the VM stays on h1"), r.error
        else:
            assert r.state.value == "done", r
    assert "not moved: destination h3 unreachable" in out
    assert [e["host"] for e in j.events("destination_unreachable")] == ["h3"]
    assert_each_runs_once(lab, sc.uuids, {g.name: "h1" if g.destination == "h3" else "h2" for g in GUESTS})
    print(f"\nunreachable destination, no --replan: run {took:.1f} s")


def test_unreachable_destination_with_replan_moves_everything_to_the_hosts_that_answer(
        lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc, code, out, journal, took = _run(lab, tmp_path, capsys, "--replan")
    assert code == 0, out
    j = Journal.read(journal)
    assert j.summary() == {"done": len(GUESTS)}
    (replan,) = j.events("replan")
    assert replan["unavailable"] == ["h3"] and not replan["unplaced"]
    assert {m["vm"]: m["destination"] for m in replan["plan"]["migrations"]} == {"ur-c": "h2", "ur-d": "h2"}
    assert "re-planned" in out
    found_by = {e["vm"] for e in j.events("destination_unreachable")}  # the first precheck to h3 found it
    assert len(found_by) == 1 and found_by <= {"ur-c", "ur-d"}
    assert_each_runs_once(lab, sc.uuids, {g.name: "h2" for g in GUESTS})
    print(f"\nunreachable destination, --replan: run {took:.1f} s, re-plan {replan['solve_s']:.2f} s")


def test_hung_destination_with_replan_is_found_within_the_connect_timeout(
        lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One guest for h3: each call to a hung host waits for the connect timeout (10 s), one at a time
    # (one connection per host), so every guest headed there would add two timeouts to the run.
    guests = GUESTS[:3]
    sc, code, out, journal, took = _run(lab, tmp_path, capsys, "--replan", hang=True, guests=guests)
    assert code == 0, out
    j = Journal.read(journal)
    assert j.summary() == {"done": len(guests)}
    (replan,) = j.events("replan")
    assert replan["unavailable"] == ["h3"]
    assert_each_runs_once(lab, sc.uuids, {g.name: "h2" for g in guests})
    print(f"\nhung destination (SIGSTOP), --replan: run {took:.1f} s, re-plan {replan['solve_s']:.2f} s")


def test_destination_dies_between_its_waves_with_replan(lab: Lab, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """h3 receives its first guest, then dies: that guest stays on h3 (the re-plan counts it there), the
    other guest planned to h3 goes to h2. One migration at a time, so h3 dies while ur-b (h2) runs."""
    guests = (es.GuestSpec("ur-a", 80, 1, 8, True, "h3"), es.GuestSpec("ur-b", 72, 1, 8, False, "h2"),
              es.GuestSpec("ur-c", 64, 1, 8, True, "h3"), es.GuestSpec("ur-d", 64, 2, 8, False, "h2"))
    sc = es.build(lab, guests, cap_mibs=CAP_MIBS)
    order = sorted(sc.plan.migrations, key=lambda m: (m.start_s, -m.priority, m.vm))
    assert [m.vm for m in order][:2] == ["ur-a", "ur-b"], order
    inventory, plan = write_run_files(sc, tmp_path)
    journal = tmp_path / "run.db"
    killer = _KillWhenDone(lab, journal, "ur-a", 3)
    t0 = time.monotonic()
    code, out = evac(capsys, "run", str(plan), "-i", str(inventory), "--journal", str(journal), "--one-at-a-time",
                     "--replan")
    took = time.monotonic() - t0
    killer.close()
    assert killer.killed, "h3 was not killed after ur-a reached it"
    lab.restart_daemon(3)
    assert code == 0, out
    j = Journal.read(journal)
    assert j.summary() == {"done": len(guests)}
    (replan,) = j.events("replan")
    assert replan["done_moves"]["ur-a"] == "h3" and replan["unavailable"] == ["h3"]
    assert {m["vm"]: m["destination"] for m in replan["plan"]["migrations"]} == {"ur-c": "h2", "ur-d": "h2"}
    assert_each_runs_once(lab, sc.uuids, {"ur-a": "h3", "ur-b": "h2", "ur-c": "h2", "ur-d": "h2"})
    print(f"\ndestination dies between its waves, --replan: run {took:.1f} s, re-plan {replan['solve_s']:.2f} s")


class _KillWhenDone:
    """Kills a lab host's libvirtd as soon as the journal says `vm` is done."""

    def __init__(self, lab: Lab, journal: Path, vm: str, host: int) -> None:
        self.lab, self.journal, self.vm, self.host = lab, journal, vm, host
        self.killed = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stop.wait(0.05):
            try:
                ro = Journal.read(self.journal)
                done = ro.state_of(self.vm).value == "done"
                ro.close()
            except Exception:  # not created yet, or being written: look again
                continue
            if done:
                self.lab.kill_daemon(self.host)
                self.killed = True
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
