"""LibvirtHypervisor and the runner against REAL libvirt: the 3-host lab (tests/lab/harness.py).

Every test here runs real libvirtd daemons and TCG guests; `lab.reset()` runs after each. The
evacuation test is issue #5's must-show: six guests of 64-192 MiB dirtying 0-8 MiB/s leave h1 for
h2 and h3 under a 24 MiB/s cap per migration, through `executor.runner.run_plan`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import libvirt
import pytest

from executor.collector import collect
from executor.hypervisor import DomainState, HypervisorError, MigrationFailed, MigrationOutcome, MigrationSpec
from executor.journal import Journal
from executor.libvirt_hv import LibvirtHypervisor
from executor.runner import RunOptions, run_plan
from planner.model import Host, Inventory
from tests.lab import evac_scenario as es
from tests.lab.harness import Lab, guest_xml

pytestmark = pytest.mark.lab


def _hv(lab: Lab) -> LibvirtHypervisor:
    hosts = tuple(Host(name=h.name, cpus=2, memory_mib=4096, nic_gbps=10, uri=h.uri) for h in lab.hosts)
    return es.hypervisor(lab, Inventory(hosts=hosts, vms=()))


def _spec(vm: str, uuid: str | None, dst: str = "h2", **kwargs: object) -> MigrationSpec:
    base: dict[str, object] = {"vm": vm, "uuid": uuid, "source": "h1", "destination": dst, "bandwidth_mibs": 16.0,
                               "max_downtime_ms": 300.0}
    base.update(kwargs)
    return MigrationSpec(**base)  # type: ignore[arg-type]


def _define_shutoff(lab: Lab, name: str, extra_devices: str = "", cpu: str = "") -> libvirt.virDomain:
    xml = guest_xml(name, 64, 0, 8, lab.kernel)
    xml = xml.replace("<devices>", "<devices>\n    " + extra_devices).replace("<features>", cpu + "<features>")
    return lab.connect(1).defineXML(xml)


class _Migration:
    """hv.migrate in a thread, so the test can act while it runs."""

    def __init__(self, hv: LibvirtHypervisor, spec: MigrationSpec) -> None:
        self.outcome: MigrationOutcome | None = None
        self.error: MigrationFailed | None = None
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(hv, spec))
        self._thread.start()

    def _run(self, hv: LibvirtHypervisor, spec: MigrationSpec) -> None:
        try:
            self.outcome = hv.migrate(spec)
        except MigrationFailed as e:
            self.error = e
        self.ended_at = time.monotonic()

    def join(self, timeout_s: float = 60) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "migrate did not return"


# ---------------------------------------------------------------- precheck


def test_precheck_finds_missing_network_pool_cpu_and_absent_domain(lab: Lab) -> None:
    hv = _hv(lab)
    iface = "<interface type='network'><source network='prod'/></interface>"
    disk = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source file='/var/lib/libvirt/elsewhere/x.qcow2'/><target dev='vda' bus='virtio'/></disk>")
    dom = _define_shutoff(lab, "pc-off", iface + disk)
    problems = hv.precheck(_spec("pc-off", dom.UUIDString(), live=False))
    assert "h2: no network prod" in problems, problems
    assert any(p.startswith("h2: no active storage pool with target path /var/lib/libvirt/elsewhere") for p in problems)
    assert hv.precheck(_spec("nope", None)) == ["h1: VM nope not found"]
    assert any("a live migration needs it running" in p for p in hv.precheck(_spec("pc-off", dom.UUIDString())))

    avx = _define_shutoff(lab, "pc-cpu", cpu="<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64"
                                             "</model><feature policy='require' name='avx512f'/></cpu>")
    assert any(p.startswith("h2: CPU incompatible") for p in hv.precheck(_spec("pc-cpu", avx.UUIDString(), live=False)))
    plain = _define_shutoff(lab, "pc-q64", cpu="<cpu mode='custom' match='exact'><model>qemu64</model></cpu>")
    assert hv.precheck(_spec("pc-q64", plain.UUIDString(), live=False)) == []  # TCG provides qemu64 (SUPERSET)


def test_precheck_local_disk_needs_copy_storage_and_a_free_destination(lab: Lab) -> None:
    hv = _hv(lab)
    disk = lab.create_local_disk(1, "pl.qcow2", 32)
    dom = lab.define_guest(1, "pl", memory_mib=64, disks=[(disk, "vda")])
    uuid = dom.UUIDString()
    problems = hv.precheck(_spec("pl", uuid))
    assert any("pl's disk vda" in p and "is not visible in pool default" in p for p in problems), problems
    assert hv.precheck(_spec("pl", uuid, copy_storage=("vda",))) == []
    lab.define_guest(2, "pl", memory_mib=64, start=False)  # a same-named domain waiting on h2
    assert any(p.startswith("h2: already has a domain with this name") for p in
               hv.precheck(_spec("pl", uuid, copy_storage=("vda",))))


# ---------------------------------------------------------------- storage


def test_prepare_storage_same_format_and_capacity_and_error_49(lab: Lab) -> None:
    hv = _hv(lab)
    disk = lab.create_local_disk(1, "ps.qcow2", 48)
    dom = lab.define_guest(1, "ps", memory_mib=64, disks=[(disk, "vda")])
    spec = _spec("ps", dom.UUIDString(), copy_storage=("vda",))
    created = hv.prepare_storage(spec)
    assert created == ["/var/lib/libvirt/images/ps.qcow2"]
    local = lab.hosts[1].local_path("ps.qcow2")
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(local)], check=True,
                                     capture_output=True, text=True).stdout)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 48 * 2**20)
    hv.cleanup_storage(spec, created)
    assert not local.exists()

    pool = lab.connect(3).storagePoolLookupByName("default")
    pool.destroy()
    try:
        with pytest.raises(HypervisorError) as err:
            hv.prepare_storage(_spec("ps", dom.UUIDString(), dst="h3", copy_storage=("vda",)))
        assert err.value.code == 49 and "/var/lib/libvirt/images" in err.value.message
    finally:
        pool.create()


# ---------------------------------------------------------------- migrate


def test_migrate_capped_persistent_reports_downtime(lab: Lab) -> None:
    hv = _hv(lab)
    dom = lab.define_guest(1, "mc", memory_mib=96, dirty_rate_mibs=2, wss_mib=8)
    lab.wait_ready(dom)
    uuid = dom.UUIDString()
    samples = []
    run = _Migration(hv, _spec("mc", uuid, bandwidth_mibs=16))
    while run.ended_at == 0.0:
        p = hv.job_progress("h1", "mc", uuid)
        if p is not None:
            samples.append(p)
        time.sleep(0.3)
    run.join()
    assert run.error is None and run.outcome is not None
    assert run.outcome.downtime_ms is not None and run.outcome.downtime_ms < 1000
    assert run.outcome.duration_s >= 96 / 16 * 0.9  # the cap held: cannot be faster than memory / cap
    rates = es.measured_rates(samples, 2.0)
    assert rates and max(rates) <= 16 * (1 + es.RATE_TOLERANCE), rates
    assert hv.domain_status("h1", "mc", uuid).state is DomainState.ABSENT
    moved = hv.domain_status("h2", "mc", uuid)
    assert (moved.state, moved.persistent) == (DomainState.RUNNING, True)
    assert lab.heartbeat_advances(lab.connect(2).lookupByUUIDString(uuid))


def test_offline_migration_moves_the_definition(lab: Lab) -> None:
    hv = _hv(lab)
    dom = _define_shutoff(lab, "off1")
    spec = _spec("off1", dom.UUIDString(), live=False)
    assert hv.precheck(spec) == []
    hv.migrate(spec)
    moved = hv.domain_status("h2", "off1", dom.UUIDString())
    assert (moved.state, moved.persistent) == (DomainState.SHUTOFF, True)
    assert hv.domain_status("h1", "off1", dom.UUIDString()).state is DomainState.ABSENT


def test_abort_mid_migration_leaves_vm_running_on_source(lab: Lab) -> None:
    hv = _hv(lab)
    dom = lab.define_guest(1, "ab", memory_mib=128, dirty_rate_mibs=1, wss_mib=8)
    lab.wait_ready(dom)
    uuid = dom.UUIDString()
    run = _Migration(hv, _spec("ab", uuid, bandwidth_mibs=8))
    es.wait_migrating(hv, "h1", "ab", uuid)
    aborted_at = time.monotonic()
    hv.abort("h1", "ab", uuid)
    run.join()
    assert run.error is not None and run.error.libvirt_code == 78, run.error
    assert run.ended_at - aborted_at < 5
    assert hv.domain_status("h1", "ab", uuid).state is DomainState.RUNNING
    assert hv.domain_status("h2", "ab", uuid).state is DomainState.ABSENT
    assert lab.heartbeat_advances(dom)
    assert hv.job_progress("h1", "ab", uuid) is None


def test_destination_daemon_killed_fails_fast_and_status_is_unknown(lab: Lab) -> None:
    hv = _hv(lab)
    dom = lab.define_guest(1, "kd", memory_mib=128, dirty_rate_mibs=1, wss_mib=8)
    lab.wait_ready(dom)
    uuid = dom.UUIDString()
    assert hv.domain_status("h2", "kd", uuid).state is DomainState.ABSENT  # opens the shared connection
    run = _Migration(hv, _spec("kd", uuid, bandwidth_mibs=8))
    es.wait_migrating(hv, "h1", "kd", uuid)
    killed_at = time.monotonic()
    lab.kill_daemon(2)
    run.join()
    assert run.error is not None, "migration succeeded although the destination daemon died"
    assert run.ended_at - killed_at < 5, run.ended_at - killed_at
    assert hv.domain_status("h1", "kd", uuid).state is DomainState.RUNNING
    assert lab.heartbeat_advances(dom)
    assert hv.domain_status("h2", "kd", uuid).state is DomainState.UNKNOWN  # never ABSENT for a dead host
    lab.restart_daemon(2)
    assert hv.domain_status("h2", "kd", uuid).state is DomainState.ABSENT  # reconnected by itself


# ---------------------------------------------------------------- the evacuation (issue #5 must-show)


@pytest.mark.parametrize("planner", ["hand", "cp-sat"])
def test_evacuate_six_vms_under_a_cap(lab: Lab, tmp_path: Path, planner: str) -> None:
    sc = es.build(lab, planner=planner)
    hv = es.hypervisor(lab, sc.inventory)
    recorder = es.BandwidthRecorder()
    with Journal.open(tmp_path / "journal.db", sc.plan, inventory_sha256=sc.inventory.sha256) as journal:
        result = run_plan(sc.plan, sc.inventory, hv, journal, recorder, RunOptions(retries=0))
    assert result.ok, result.summary()
    assert es.verify(sc, hv) == []
    windows = 0
    for m in sc.plan.migrations:
        samples = recorder.samples.get(m.vm, [])
        rates = es.measured_rates(samples, 2.0)
        windows += len(rates)
        assert all(r <= m.bandwidth_mibs * (1 + es.RATE_TOLERANCE) for r in rates), (m.vm, m.bandwidth_mibs, rates)
        # A migration that ran for two windows before its last sample was sampled every 0.5 s, so it must
        # have given at least one window: the caps were really observed, not skipped for want of samples.
        # (A fixed total count failed on a loaded CI machine, where the CP-SAT plan's faster caps left
        # fewer long migrations.)
        if len(samples) >= 2 and sorted(s.elapsed_s for s in samples)[-2] >= 4.0:
            assert rates, (m.vm, [s.elapsed_s for s in samples])
    assert windows >= 3, windows
    hv.close()


def test_postcopy_switch_completes_on_destination_and_stays_capped(lab: Lab) -> None:
    hv = _hv(lab)
    dom = lab.define_guest(1, "pc", memory_mib=128, dirty_rate_mibs=4, wss_mib=16)
    lab.wait_ready(dom)
    uuid = dom.UUIDString()
    run = _Migration(hv, _spec("pc", uuid, bandwidth_mibs=8, postcopy_allowed=True))
    started = time.monotonic()
    es.wait_migrating(hv, "h1", "pc", uuid, min_processed_mib=8)
    hv.start_postcopy("h1", "pc", uuid)
    run.join()
    assert run.error is None, run.error
    # The post-copy phase is capped too (VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY): 128 MiB at 8 MiB/s.
    assert run.ended_at - started >= 128 / 8 * 0.8
    assert hv.domain_status("h2", "pc", uuid).state is DomainState.RUNNING
    assert hv.domain_status("h1", "pc", uuid).state is DomainState.ABSENT
    assert lab.heartbeat_advances(lab.connect(2).lookupByUUIDString(uuid))


def test_suspend_lets_a_migration_finish_and_resume_is_idempotent(lab: Lab) -> None:
    hv = _hv(lab)
    dom = lab.define_guest(1, "su", memory_mib=64, dirty_rate_mibs=8, wss_mib=32)
    lab.wait_ready(dom)
    uuid = dom.UUIDString()
    run = _Migration(hv, _spec("su", uuid, bandwidth_mibs=4))  # dirtying 8 MiB/s at 4 MiB/s: never converges
    es.wait_migrating(hv, "h1", "su", uuid)
    hv.suspend("h1", "su", uuid)
    assert hv.domain_status("h1", "su", uuid).state is DomainState.PAUSED
    run.join(90)
    assert run.error is None and run.outcome is not None, run.error
    hv.resume("h2", "su", uuid)  # libvirt resumed it already (it was running when the job began): no error
    assert hv.domain_status("h2", "su", uuid).state is DomainState.RUNNING
    assert lab.heartbeat_advances(lab.connect(2).lookupByUUIDString(uuid))


def test_hung_daemon_gives_unknown_within_keepalive_bound(lab: Lab) -> None:
    hosts = tuple(Host(name=h.name, cpus=2, memory_mib=4096, nic_gbps=10, uri=h.uri) for h in lab.hosts)
    hv = LibvirtHypervisor(Inventory(hosts=hosts, vms=()), connect_timeout_s=3, keepalive_interval_s=1,
                           keepalive_count=2)
    assert hv.domain_status("h3", "nobody").state is DomainState.ABSENT
    pid = lab.daemon_pid(3)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(2):  # once on the cached connection (keepalive), once reconnecting (connect timeout)
            t0 = time.monotonic()
            assert hv.domain_status("h3", "nobody").state is DomainState.UNKNOWN
            assert time.monotonic() - t0 < 8
    finally:
        os.kill(pid, signal.SIGCONT)
    assert hv.domain_status("h3", "nobody").state is DomainState.ABSENT


def test_runner_aborts_a_stalled_migration_and_the_vm_stays_on_its_source(lab: Lab, tmp_path: Path) -> None:
    # 32 MiB rewritten at 8 MiB/s, capped at 4 MiB/s, no auto-converge: pre-copy can never finish.
    dom = lab.define_guest(1, "st", memory_mib=64, dirty_rate_mibs=8, wss_mib=32)
    lab.wait_ready(dom)
    collected = collect([h.uri for h in lab.hosts], virt_type="qemu").inventory
    inventory = dataclasses.replace(collected, policy=dataclasses.replace(
        collected.policy, progress_timeout_s=4, auto_converge=False))
    plan = es.hand_plan(inventory, {"st": "h2"}, cap_mibs=4)
    hv = es.hypervisor(lab, inventory)
    with Journal.open(tmp_path / "journal.db", plan, inventory_sha256=inventory.sha256) as journal:
        t0 = time.monotonic()
        result = run_plan(plan, inventory, hv, journal, es.BandwidthRecorder(), RunOptions(retries=0))
        took_s = time.monotonic() - t0
    outcome = result.results["st"]
    assert outcome.state.value == "aborted", outcome
    # 64 MiB × completion_timeout_per_gib_s 150 = 9.4 s: the completion timeout fires before the downtime
    # ladder of the 4 s progress timeout gets far; either way the runner's abort went through libvirt.
    assert "abort" in outcome.escalations and "timeout" in outcome.error, outcome
    assert took_s < 60
    assert hv.domain_status("h1", "st", dom.UUIDString()).state is DomainState.RUNNING
    assert hv.domain_status("h2", "st", dom.UUIDString()).state is DomainState.ABSENT
    assert lab.heartbeat_advances(dom)
