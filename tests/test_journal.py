"""The journal: write-ahead, append-only, single writer, crash-safe (NOTES §6)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from executor.journal import Journal, JournalLocked, plan_digest
from executor.states import Event, State
from planner.errors import UsageError
from tests.fleet import greedy_plan, make_inventory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def plan():  # type: ignore[no-untyped-def]
    return greedy_plan(make_inventory(3, 2))


def test_records_run_intent_and_states(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "j.db"
    with Journal.open(path, plan, flags={"unsafe": True, "mode": "default"}) as j:
        vm = plan.migrations[0].vm
        assert j.state_of(vm) is State.PENDING
        j.record(vm, State.PRECHECKED, Event.PRECHECK_OK, 0)
        j.intent(vm, "u", "h0", "h1", {"bandwidth_mibs": 10.0, "unsafe": True}, 1)
        j.record(vm, State.RUNNING, Event.MIGRATE, 1)
        assert j.in_flight() == [vm]
        assert j.attempts_of(vm) == 1
        j.record(vm, State.VERIFYING, Event.RETURNED, 1)
        j.record(vm, State.DONE, Event.VERIFIED, 1)
        assert j.state_of(vm) is State.DONE
        assert j.in_flight() == []
        assert j.summary() == {"done": 1, "pending": len(plan.migrations) - 1}
        assert j.flags()["unsafe"] is True
        assert j.runs()[0]["plan_sha256"] == plan_digest(plan)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 4  # append-only: every change is a row


def test_single_writer_lock(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "j.db"
    j = Journal.open(path, plan)
    code = f"import fcntl,os,sys; fd=os.open({str(path) + '.lock'!r}, os.O_RDWR)\n" \
           "try:\n fcntl.flock(fd, fcntl.LOCK_EX|fcntl.LOCK_NB); print('got')\nexcept BlockingIOError: print('busy')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "busy"
    j.close()
    with pytest.raises(UsageError, match="--resume"):
        Journal.open(path, plan)
    Journal.open(path, plan, resume=True).close()


def test_lock_is_exclusive_within_a_process_too(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    with Journal.open(tmp_path / "j.db", plan), pytest.raises(JournalLocked):
        Journal.open(tmp_path / "j.db", plan, resume=True)


def test_refuses_another_plan_on_resume(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    Journal.open(tmp_path / "j.db", plan).close()
    other = greedy_plan(make_inventory(3, 3))
    with pytest.raises(UsageError, match="different plan"):
        Journal.open(tmp_path / "j.db", other, resume=True)


def test_never_stores_credentials(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    with Journal.open(tmp_path / "j.db", plan) as j, pytest.raises(ValueError, match="credentials"):
        j.intent("vm0", None, "h0", "h1", {"password": "x"}, 1)


def test_read_only_view_and_records(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "j.db"
    with Journal.open(path, plan) as j:
        vm = plan.migrations[0].vm
        j.record(vm, State.PRECHECKED, Event.PRECHECK_OK)
        j.intent(vm, None, "h0", "h1", {}, 1)
        j.record(vm, State.RUNNING, Event.MIGRATE, 1)
        j.record(vm, State.VERIFYING, Event.ERROR, 1, "boom (libvirt error 91)")
        j.record(vm, State.FAILED, Event.ON_SOURCE_FINAL, 1, "boom (libvirt error 91)")
        ro = Journal.read(path)  # while the writer holds the lock
        rec = {r.vm: r for r in ro.records()}[vm]
        assert rec.state is State.FAILED and rec.attempts == 1 and "91" in rec.error
        assert rec.elapsed_s is not None
        ro.close()
    with pytest.raises(UsageError):
        Journal.read(tmp_path / "nope.db")


def test_survives_sigkill_mid_write(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    """A writer killed with SIGKILL loses nothing it committed; the journal reopens and the lock is free."""
    path = tmp_path / "j.db"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from executor.journal import Journal
        from executor.states import State, Event
        from tests.fleet import greedy_plan, make_inventory
        plan = greedy_plan(make_inventory(3, 2))
        j = Journal.open({str(path)!r}, plan)
        i = 0
        while True:
            j.event("tick", None, i=i)
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = -1
    deadline = time.time() + 20
    while last < 50 and time.time() < deadline:
        last = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Journal.open(path, plan, resume=True) as j:
        ticks = [e["i"] for e in j.events("tick")]
    assert ticks[: last + 1] == list(range(last + 1))  # every acknowledged row is there, in order


def _swap_plan():  # type: ignore[no-untyped-def]
    from planner.plan import PlanKind
    from tests._planner_fixtures import full_pair, plan_of, staged_swap

    inv = full_pair()
    return plan_of(inv, staged_swap(inv), drained=(), kind=PlanKind.TARGET, target={"x": "b", "y": "a"})


def test_states_are_kept_per_hop_and_a_vm_is_at_its_current_hop(tmp_path: Path) -> None:
    plan = _swap_plan()
    with Journal.open(tmp_path / "j.db", plan) as j:
        j.record("x", State.PRECHECKED, Event.PRECHECK_OK, 0, hop=0)
        j.intent("x", None, "a", "c", {}, 1, hop=0)
        j.record("x", State.RUNNING, Event.MIGRATE, 1, hop=0)
        j.record("x", State.VERIFYING, Event.RETURNED, 1, hop=0)
        j.record("x", State.DONE, Event.VERIFIED, 1, hop=0)
        assert j.hop_states() == {("x", 0): State.DONE, ("y", 0): State.PENDING, ("x", 1): State.PENDING}
        assert j.states()["x"] is State.PENDING  # on its staging host: its second hop has not started
        assert j.state_of("x", 0) is State.DONE and j.state_of("x", 1) is State.PENDING
        assert j.attempts_of("x", 0) == 1 and j.attempts_of("x", 1) == 0
        j.record("x", State.PRECHECKED, Event.PRECHECK_OK, 0, hop=1)
        assert j.in_flight() == ["x"]
    ro = Journal.read(tmp_path / "j.db")
    rec = {r.vm: r for r in ro.records()}
    assert (rec["x"].hop, rec["x"].route, rec["x"].state) == (1, ("a", "c", "b"), State.PRECHECKED)
    assert (rec["y"].hop, rec["y"].route) == (0, ())
    ro.close()
    with sqlite3.connect(tmp_path / "j.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_journal_from_before_hops_is_read_as_hop_0_and_resumed_with_the_column(tmp_path: Path, plan) -> None:  # type: ignore[no-untyped-def]
    """Schema version 1 (no `hop` column): `evac status` reads it, `--resume` adds the column."""
    path = tmp_path / "j.db"
    vm = plan.migrations[0].vm
    with Journal.open(path, plan) as j:
        j.record(vm, State.PRECHECKED, Event.PRECHECK_OK, 0)
    with sqlite3.connect(path) as db:
        for table in ("intent", "state"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN hop")
        db.execute("PRAGMA user_version = 0")
    ro = Journal.read(path)
    assert ro.state_of(vm) is State.PRECHECKED and ro.hop_states()[(vm, 0)] is State.PRECHECKED
    ro.close()
    with Journal.open(path, plan, resume=True) as j:
        j.record(vm, State.RUNNING, Event.MIGRATE, 1, hop=0)
        assert j.state_of(vm, 0) is State.RUNNING
