"""The simulated fleet: follows the duration model, real concurrency semantics, faults."""

from __future__ import annotations

import threading
import time

import pytest

from executor.hypervisor import DomainState, HypervisorError, MigrationFailed, MigrationSpec
from executor.sim_hv import FailMigration, HostDown, NeverConverges, SimClock, SimulatedHypervisor, VirtualClock
from planner.duration import estimate
from planner.model import VM, Host, Inventory

pytestmark = pytest.mark.timeout(60)


def _inv(dirty: float = 2.0) -> Inventory:
    return Inventory(hosts=(Host("a", 8, 8192, 1.0), Host("b", 8, 8192, 1.0)),
                     vms=(VM("v", "a", 1, 512, uuid="u-1", dirty_rate_mibs=dirty), VM("w", "a", 1, 256)))


def _spec(vm: str = "v", bw: float = 64.0, **kw: object) -> MigrationSpec:
    return MigrationSpec(vm, "u-1" if vm == "v" else None, "a", "b", bw, 300.0, **kw)  # type: ignore[arg-type]


def test_clock_runs_faster() -> None:
    c = SimClock(1000)
    t0, w0 = c.now(), time.monotonic()
    c.sleep(50)
    assert c.now() - t0 >= 50
    assert time.monotonic() - w0 < 1.0


def test_migration_follows_the_duration_model() -> None:
    sim = SimulatedHypervisor(_inv(), speedup=50)
    out = sim.migrate(_spec())
    est = estimate(512, 2.0, 64.0, 300.0)
    assert out.duration_s == pytest.approx(est.duration_s, rel=0.1)
    assert sim.where("v") == [("b", DomainState.RUNNING)]
    st = sim.domain_status("b", "v", "u-1")
    assert st.persistent and not st.job_active
    assert sim.domain_status("a", "v").state is DomainState.ABSENT


def test_progress_abort_and_incoming_domain() -> None:
    sim = SimulatedHypervisor(_inv(), speedup=20)
    err: list[Exception] = []
    t = threading.Thread(target=lambda: _catch(err, lambda: sim.migrate(_spec(bw=16.0))))
    t.start()
    time.sleep(0.2)  # ~4 simulated s: past the fixed cost, sending memory
    p1 = sim.job_progress("a", "v")
    time.sleep(0.1)
    p2 = sim.job_progress("a", "v")
    assert p1 is not None and p2 is not None and p2.data_processed_mib > p1.data_processed_mib
    assert sim.domain_status("b", "v").state is DomainState.PAUSED  # the incoming domain
    assert sim.domain_status("a", "v").job_active
    assert sim.precheck(_spec()) != []  # a job is already running
    sim.abort("a", "v")
    t.join(5)
    assert isinstance(err[0], MigrationFailed) and err[0].libvirt_code == 78
    assert sim.where("v") == [("a", DomainState.RUNNING)]
    assert sim.job_progress("a", "v") is None


def _catch(out: list[Exception], fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except Exception as e:
        out.append(e)


def test_never_converging_until_suspended() -> None:
    sim = SimulatedHypervisor(_inv(), speedup=50, faults=(NeverConverges("v"),))
    done = threading.Event()
    t = threading.Thread(target=lambda: (sim.migrate(_spec(bw=32.0)), done.set()))
    t.start()
    time.sleep(1.0)  # 50 simulated seconds: a 512 MiB VM at 32 MiB/s would be done in ~18 s
    assert not done.is_set()
    p = sim.job_progress("a", "v")
    assert p is not None and p.memory_iteration >= 2
    sim.suspend("a", "v")
    t.join(5)
    assert done.is_set()
    assert sim.where("v") == [("b", DomainState.RUNNING)]  # the destination resumes it


def test_faults_fail_on_given_attempts_and_hosts_go_down() -> None:
    sim = SimulatedHypervisor(_inv(), speedup=100, faults=(FailMigration("w", 68, frozenset({1})), HostDown("c")))
    with pytest.raises(MigrationFailed) as e:
        sim.migrate(_spec("w"))
    assert e.value.libvirt_code == 68
    assert sim.where("w") == [("a", DomainState.RUNNING)]
    sim.migrate(_spec("w"))
    assert sim.where("w") == [("b", DomainState.RUNNING)]
    sim.set_host_down("b")
    assert sim.domain_status("b", "w").state is DomainState.UNKNOWN
    assert "b does not answer" in sim.precheck(_spec())
    with pytest.raises(HypervisorError):
        sim.list_domains("b")


def test_postcopy_needs_permission() -> None:
    sim = SimulatedHypervisor(_inv(), speedup=20, faults=(NeverConverges("v"),))
    t = threading.Thread(target=lambda: sim.migrate(_spec(bw=32.0, postcopy_allowed=True)))
    t.start()
    time.sleep(0.3)
    sim.start_postcopy("a", "v")
    t.join(5)
    assert sim.where("v") == [("b", DomainState.RUNNING)]
    sim2 = SimulatedHypervisor(_inv(), speedup=20, faults=(NeverConverges("v"),))
    t2 = threading.Thread(target=lambda: _catch([], lambda: sim2.migrate(_spec(bw=32.0))))
    t2.start()
    time.sleep(0.3)
    with pytest.raises(HypervisorError):
        sim2.start_postcopy("a", "v")
    sim2.abort("a", "v")
    t2.join(5)


def test_copy_storage_volumes() -> None:
    sim = SimulatedHypervisor(_inv(), speedup=100)
    spec = _spec(copy_storage=("vda",))
    created = sim.prepare_storage(spec)
    assert sim.volumes["b"] == set(created)
    sim.cleanup_storage(spec, created)
    assert sim.volumes["b"] == set()


# ---------------------------------------------------------------- virtual time


def test_virtual_time_passes_only_while_every_participant_waits() -> None:
    clock = VirtualClock()
    go, seen = threading.Event(), []

    def busy() -> None:
        go.wait(5)  # real work of any wall length: no simulated time passes
        seen.append(clock.now())
        clock.wait(threading.Event(), 2.0)
        seen.append(clock.now())

    t = threading.Thread(target=busy)
    clock.track(t)
    t.start()
    waiter = threading.Thread(target=lambda: seen.append(clock.wait(threading.Event(), 10.0)))
    waiter.start()
    time.sleep(0.05)
    assert clock.now() == 0.0  # the tracked thread has not waited yet: time stands still
    go.set()
    with clock.idle():  # this thread started participants: it takes part, and says it only joins them
        t.join(5)
        waiter.join(5)
    assert seen == [0.0, 2.0, False]
    assert clock.now() == 10.0  # the waiter's deadline, exactly


def test_virtual_time_an_event_set_wakes_its_waiter_at_the_same_instant() -> None:
    clock, ev, woke = VirtualClock(), threading.Event(), []

    def setter() -> None:
        clock.wait(threading.Event(), 3.5)
        ev.set()

    def waiter() -> None:
        woke.append((clock.wait(ev, 100.0), clock.now()))

    threads = [threading.Thread(target=f) for f in (setter, waiter)]
    for t in threads:
        clock.track(t)
        t.start()
    with clock.idle():
        for t in threads:
            t.join(5)
    assert woke == [(True, 3.5)]


def test_virtual_time_a_thread_joining_waiters_marks_itself_idle() -> None:
    clock = VirtualClock()
    clock.wait(threading.Event(), 0.0)  # the caller takes part (as the runner's control thread does)
    t = threading.Thread(target=clock.sleep, args=(7.0,))
    clock.track(t)
    t.start()
    with clock.idle():
        t.join(5)
    assert not t.is_alive() and clock.now() == 7.0


def test_virtual_time_the_thread_that_starts_participants_takes_part() -> None:
    """The runner's control thread starts its workers one by one: time must not pass between two starts,
    although every worker started so far waits (the medium racks' later workers began 1.75 s late)."""
    clock = VirtualClock()
    t = threading.Thread(target=clock.sleep, args=(5.0,))
    clock.track(t)
    t.start()
    time.sleep(0.05)  # still busy (starting the next worker): the first one waits, time stands still
    assert clock.now() == 0.0
    with clock.idle():
        t.join(5)
    assert clock.now() == 5.0


def test_virtual_time_migration_takes_the_model_duration_exactly() -> None:
    sim = SimulatedHypervisor(_inv(), virtual_time=True)
    out = sim.migrate(_spec())
    assert out.duration_s == pytest.approx(estimate(512, 2.0, 64.0, 300.0).duration_s, abs=1e-9)
    assert sim.clock.now() == pytest.approx(out.duration_s, abs=1e-9)
