"""Migrations that cannot finish, on the real lab (issue 8, "faults on the real lab"): evac's runner drives
them through its escalation ladder to the timeout action, and the VM is never lost.

* never converges: a memdirty guest rewrites a 32 MiB working set at 32 MiB/s, the plan caps its migration
  at 8 MiB/s; even at the ladder's 2 s max downtime (16 MiB sendable during the pause) pre-copy cannot end.
  The plan says so (`converges: false`), the runner raises the max downtime 500 → 1000 → 2000 ms, gives
  auto-converge one interval, then aborts: the VM keeps running on its source.
* stall: an idle guest's migration starts normally, then the source's link is shaped to 1 kbit/s; the
  progress timeout fires, the same ladder runs, the abort leaves the VM running on its source.

Policies are shortened for the lab (progress timeout 6 s, so one ladder step every 2 s) and the completion
timeout is made long, so that it is the progress timeout that acts. After each case every VM runs exactly
once, on its source or its planned destination (both hosts looked at), and its heartbeat advances.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import libvirt
import pytest

from executor.collector import collect
from executor.journal import Journal
from executor.runner import RunOptions, RunResult, run_plan
from planner.model import Inventory
from planner.plan import Plan
from tests.lab import evac_scenario as es
from tests.lab.harness import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

LADDER = ["max_downtime", "max_downtime", "auto_converge", "abort"]


def _one_guest_to_h2(lab: Lab, name: str, dirty_rate_mibs: int, wss_mib: int,
                     cap_mibs: float) -> tuple[libvirt.virDomain, Inventory, Plan]:
    """A 64 MiB memdirty guest on h1; the lab as `evac collect` sees it (default settings), with the guest's
    dirty rate as the operator knows it (page sampling under-counts on 64 MiB guests) and a lab-sized
    policy; a plan moving it to h2 at `cap_mibs` (the duration model decides `converges`)."""
    dom = lab.define_guest(1, name, memory_mib=64, dirty_rate_mibs=dirty_rate_mibs, wss_mib=wss_mib)
    lab.wait_ready(dom)
    collected = collect([h.uri for h in lab.hosts], timeout_s=10).inventory
    vms = tuple(dataclasses.replace(v, dirty_rate_mibs=float(dirty_rate_mibs)) if v.name == name else v
                for v in collected.vms)
    policy = dataclasses.replace(collected.policy, progress_timeout_s=6, completion_timeout_per_gib_s=2000,
                                 max_downtime_ms=500, auto_converge=True)
    inventory = dataclasses.replace(collected, vms=vms, policy=policy)
    return dom, inventory, es.hand_plan(inventory, {name: "h2"}, cap_mibs=cap_mibs)


def _run(lab: Lab, inventory: Inventory, plan: Plan, journal_path: Path) -> tuple[RunResult, list[dict[str, Any]]]:
    hv = es.hypervisor(lab, inventory)
    try:
        with Journal.open(journal_path, plan, inventory_sha256=inventory.sha256) as journal:
            result = run_plan(plan, inventory, hv, journal, es.BandwidthRecorder(), RunOptions(retries=0))
            events = journal.events("escalation")
    finally:
        hv.close()
    return result, events


def _timeline(events: list[dict[str, Any]]) -> str:
    """The escalation steps with their journal timestamps, relative to the first (printed, not asserted)."""
    if not events:
        return "none"
    first = float(events[0]["at"])
    return ", ".join(f"{e['step']} +{float(e['at']) - first:.1f} s" for e in events)


def _runs_once_on(lab: Lab, uuid: str, source: str, destination: str, expected: str, timeout_s: float = 20) -> None:
    """Exactly one active copy of the VM, on `expected` (its source or planned destination), heartbeat
    advancing; no other host holds a domain of it (libvirt removes the incoming one after an abort)."""
    deadline = time.monotonic() + timeout_s
    while True:
        where: dict[str, bool] = {}
        for host in lab.hosts:
            try:
                where[host.name] = bool(lab.connect(host).lookupByUUIDString(uuid).isActive())
            except libvirt.libvirtError:
                continue
        if list(where) == [expected] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert expected in (source, destination)
    assert where == {expected: True}, where
    host = next(h for h in lab.hosts if h.name == expected)
    assert lab.heartbeat_advances(lab.connect(host).lookupByUUIDString(uuid))


def test_a_migration_that_never_converges_climbs_the_ladder_then_aborts(lab: Lab, tmp_path: Path) -> None:
    dom, inventory, plan = _one_guest_to_h2(lab, "nc", dirty_rate_mibs=32, wss_mib=32, cap_mibs=8)
    [m] = plan.migrations
    assert m.converges is False and m.auto_converge is True  # flagged in the plan: needs throttling

    t0 = time.monotonic()
    result, events = _run(lab, inventory, plan, tmp_path / "journal.db")
    print(f"\nnever converges: aborted after {time.monotonic() - t0:.1f} s; ladder: {_timeline(events)}")

    outcome = result.results["nc"]
    assert outcome.state.value == "aborted" and not result.ok, outcome
    assert outcome.escalations == LADDER, outcome.escalations
    assert "timeout: no progress" in outcome.error, outcome.error
    steps = [(e["step"], e["detail"]) for e in events if e["vm"] == "nc"]
    assert [s for s, _ in steps] == LADDER, steps
    assert "max downtime raised to 1000 ms" in steps[0][1] and "max downtime raised to 2000 ms" in steps[1][1]
    assert "auto-converge" in steps[2][1] and steps[3][1].startswith("timeout: no progress")
    _runs_once_on(lab, dom.UUIDString(), "h1", "h2", expected="h1")


def test_a_stalled_link_times_out_and_the_vm_stays_on_its_source(lab: Lab, tmp_path: Path) -> None:
    dom, inventory, plan = _one_guest_to_h2(lab, "sl", dirty_rate_mibs=0, wss_mib=8, cap_mibs=4)
    [m] = plan.migrations
    assert m.converges is True and m.auto_converge is False  # nothing wrong with it, until the link dies
    uuid = dom.UUIDString()

    watcher = es.hypervisor(lab, inventory)
    shaped = threading.Event()

    def stall_the_link() -> None:
        try:
            es.wait_migrating(watcher, "h1", "sl", uuid, min_processed_mib=8, timeout_s=60)
            lab.shape(1, mbit=0.001)  # 1 kbit/s: a few pages a minute
            shaped.set()
        finally:
            watcher.close()

    saboteur = threading.Thread(target=stall_the_link)
    saboteur.start()
    t0 = time.monotonic()
    try:
        result, events = _run(lab, inventory, plan, tmp_path / "journal.db")
    finally:
        saboteur.join(60)
        lab.unshape(1)
    after_abort_s = time.time() - float(events[-1]["at"]) if events else float("nan")
    print(f"\nstall: aborted after {time.monotonic() - t0:.1f} s; ladder: {_timeline(events)}; the run returned "
          f"{after_abort_s:.1f} s after the abort (libvirt's cancellation crosses the shaped link)")
    assert shaped.is_set(), "the migration never started"

    outcome = result.results["sl"]
    assert outcome.state.value == "aborted", outcome
    assert outcome.escalations == ["max_downtime", "max_downtime", "abort"], outcome.escalations
    assert "timeout: no progress" in outcome.error, outcome.error
    assert [e["step"] for e in events if e["vm"] == "sl"] == outcome.escalations
    _runs_once_on(lab, uuid, "h1", "h2", expected="h1")
