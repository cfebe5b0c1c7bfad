"""The issue-#5 evacuation in the real lab, shared by tests/lab/test_executor_lab.py and
bench/bench_executor_lab.py.

Host h1 carries six memdirty guests of 64-192 MiB dirtying 0-8 MiB/s; two are persistent, one of
those has a local qcow2 disk (pool `default`, 24 MiB of random data written before it starts, copied
with copy-storage). The inventory comes from evac's collector (`executor.collector.collect`, dirty
rates measured by QEMU). The plan is either written by hand (fixed destinations, every migration
capped at `CAP_MIBS`, start times from the duration model and the plan monitor; checked with
`planner.checker.check_plan`) or made by evac's CP-SAT planner (`planner.solve.make_plan`), which
chooses destinations and per-migration caps itself.

`BandwidthRecorder` is a Reporter: it keeps every job-statistics sample the runner polls, from which
`measured_rates` computes Δdata_processed/Δtime_elapsed per window (libvirt's own clock).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from executor.collector import collect
from executor.hypervisor import DomainStatus, JobProgress
from executor.libvirt_hv import LibvirtHypervisor
from executor.reporter import Reporter
from planner.checker import check_plan
from planner.duration import estimate
from planner.model import Inventory
from planner.plan import Migration, Plan
from planner.topology import Topology
from tests.fleet import timed_plan
from tests.lab.harness import Lab, LabDisk

CAP_MIBS = 24.0  # per migration (virsh migrate --bandwidth 24)
CPSAT_NIC_GBPS = 0.8  # for planner="cp-sat": see build()
RATE_TOLERANCE = 0.10  # measured window rate may exceed the cap by at most 10 %
DISK_DATA_MIB = 24


@dataclass(frozen=True, slots=True)
class GuestSpec:
    name: str
    memory_mib: int
    dirty_rate_mibs: int
    wss_mib: int
    persistent: bool
    destination: str
    local_disk_mib: int = 0


GUESTS: tuple[GuestSpec, ...] = (
    GuestSpec("ev-a", 64, 0, 8, False, "h2"),
    GuestSpec("ev-b", 96, 2, 8, True, "h3"),
    GuestSpec("ev-c", 128, 4, 16, False, "h2"),
    GuestSpec("ev-d", 160, 8, 16, False, "h3"),
    GuestSpec("ev-e", 192, 1, 8, True, "h2"),
    GuestSpec("ev-f", 64, 2, 8, True, "h3", local_disk_mib=48),
)


@dataclass
class Scenario:
    lab: Lab
    inventory: Inventory
    plan: Plan
    uuids: dict[str, str]
    disk_digest: dict[str, str]  # vm -> sha256 of the data written to its local disk
    disks: dict[str, LabDisk]
    persistent: dict[str, bool]
    collect_warnings: list[str] = field(default_factory=list)


def _write_random(disk: LabDisk, mib: int, seed: str) -> str:
    """Writes `mib` MiB of pseudo-random (incompressible) bytes at offset 0; returns their sha256."""
    chunk = b"".join(hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(2**15))  # 1 MiB
    data = b"".join(bytes(b ^ (i & 0xFF) for b in chunk[:64]) + chunk[64:] for i in range(mib))
    raw = Path(f"/tmp/evac-scenario-{os.getpid()}-{seed}.bin")
    raw.write_bytes(data)
    try:
        subprocess.run(["qemu-img", "dd", "-f", "raw", "-O", disk.format, f"if={raw}", f"of={disk.file}",
                        "bs=1M", f"count={mib}", "conv=notrunc"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        # Older qemu-img dd has no conv=notrunc: write through qemu-io instead.
        subprocess.run(["qemu-io", "-f", disk.format, "-c", f"write -s {raw} 0 {mib}M", str(disk.file)],
                       check=True, capture_output=True)
    finally:
        raw.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def read_disk_digest(path: Path, fmt: str, mib: int) -> str:
    """sha256 of the first `mib` MiB of an image another process (QEMU) may hold open."""
    out = Path(f"/tmp/evac-scenario-{os.getpid()}-read.bin")
    try:
        subprocess.run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(path), str(out)],
                       check=True, capture_output=True)
        with out.open("rb") as f:
            return hashlib.sha256(f.read(mib * 2**20)).hexdigest()
    finally:
        out.unlink(missing_ok=True)


def build(lab: Lab, guests: Sequence[GuestSpec] = GUESTS, cap_mibs: float = CAP_MIBS,
          planner: str = "hand", same_plan_as: Scenario | None = None) -> Scenario:
    """Defines and starts the guests on h1, collects the inventory, plans: by hand (fixed destinations,
    every migration at `cap_mibs`) or with evac's CP-SAT planner (`planner="cp-sat"`)."""
    uuids: dict[str, str] = {}
    digests: dict[str, str] = {}
    disks: dict[str, LabDisk] = {}
    doms = []
    for g in guests:
        attach: list[tuple[LabDisk, str]] = []
        if g.local_disk_mib:
            disk = lab.create_local_disk(1, f"{g.name}.qcow2", g.local_disk_mib)
            digests[g.name] = _write_random(disk, DISK_DATA_MIB, g.name)
            disks[g.name] = disk
            attach.append((disk, "vda"))
        dom = lab.define_guest(1, g.name, memory_mib=g.memory_mib, dirty_rate_mibs=g.dirty_rate_mibs,
                               wss_mib=g.wss_mib, persistent=g.persistent, disks=attach)
        uuids[g.name] = dom.UUIDString()
        doms.append(dom)
    for dom in doms:
        lab.wait_ready(dom, timeout_s=120)
    # virt_type="qemu": the lab's guests run under TCG, so the hosts' CPU offer is TCG's (with KVM's
    # host-model the TCG guests' `svm` would make every lab host look CPU-incompatible).
    result = collect([h.uri for h in lab.hosts], dirty_rate=True, dirty_rate_seconds=1, virt_type="qemu")
    if result.failures:
        raise RuntimeError(f"collector could not read: {result.failures}")
    inventory = result.inventory
    if same_plan_as is not None:
        # Same plan and inventory as an earlier run, with the uuids of the guests just started: modes
        # compared on one plan, not on plans of slightly different measured dirty rates.
        inventory = dataclasses.replace(same_plan_as.inventory, vms=tuple(
            dataclasses.replace(v, uuid=uuids[v.name]) for v in same_plan_as.inventory.vms))
        plan = dataclasses.replace(same_plan_as.plan, inventory_sha256=inventory.sha256)
    elif planner == "cp-sat":
        # Slow the lab's NICs down on paper so the plan's caps bind (TCG migrates ~210 MiB/s uncapped):
        # 0.8 Gbit/s × migration_share 0.5 = 47.7 MiB/s per NIC direction, shared by its migrations.
        inventory = dataclasses.replace(inventory, hosts=tuple(
            dataclasses.replace(h, nic_gbps=CPSAT_NIC_GBPS) for h in inventory.hosts))
        from planner.solve import make_plan

        plan = make_plan(inventory, ["h1"], time_limit_s=10)
        if plan.unplaced or len(plan.migrations) != len(guests):
            raise RuntimeError(f"CP-SAT left VMs unplaced: {plan.unplaced}")
    else:
        plan = hand_plan(inventory, {g.name: g.destination for g in guests}, cap_mibs)
    violations = check_plan(inventory, plan)
    if violations:
        raise RuntimeError("hand-written plan invalid: " + "; ".join(str(v) for v in violations))
    return Scenario(lab, inventory, plan, uuids, digests, disks, {g.name: g.persistent for g in guests},
                    [str(w) for w in result.warnings])


def hand_plan(inventory: Inventory, destinations: dict[str, str], cap_mibs: float) -> Plan:
    """Plan v1 with fixed destinations: every migration at `cap_mibs`, bigger first, start times from
    the duration model played through the plan monitor (as evac's greedy schedule does)."""
    topo = Topology(inventory)
    p = inventory.policy
    provisional = []
    order = sorted(destinations, key=lambda n: -inventory.vm[n].memory_mib)
    for i, name in enumerate(order):
        vm, dest = inventory.vm[name], destinations[name]
        path = topo.path(vm.host, dest)
        assert path is not None
        disk_mib = sum(d.allocation_gib for d in vm.local_disks) * 1024.0
        est = estimate(vm.memory_mib, vm.dirty_rate_mibs, cap_mibs, p.max_downtime_ms, disk_mib=disk_mib,
                       live=vm.live, auto_converge=p.auto_converge)
        provisional.append(Migration(name, vm.host, dest, 0, float(i), float(i) + est.duration_s, cap_mibs, path,
                                     tuple(d.target for d in vm.local_disks), vm.live, est.converges,
                                     est.throttled, est.downtime_ms, vm.priority, float(vm.memory_mib), disk_mib))
    return timed_plan(inventory, provisional, "hand")


def hypervisor(lab: Lab, inventory: Inventory) -> LibvirtHypervisor:
    """The test process talks to the lab over unix sockets; the source daemons dial peers over tcp."""
    return LibvirtHypervisor(inventory, peer_uris={h.name: h.peer_uri for h in lab.hosts},
                             allow_insecure_transport=True)


class BandwidthRecorder(Reporter):
    """Keeps every job-statistics sample the runner took, per VM."""

    def __init__(self) -> None:
        self.samples: dict[str, list[JobProgress]] = {}
        self._lock = threading.Lock()

    def migration_progress(self, migration: Migration, progress: JobProgress) -> None:
        with self._lock:
            self.samples.setdefault(migration.vm, []).append(progress)


def measured_rates(samples: Sequence[JobProgress], window_s: float) -> list[float]:
    """Δdata_processed / Δtime_elapsed over consecutive windows of at least `window_s` (libvirt's clock).

    The last sample is left out: QEMU lifts the rate limit for the switchover (the guest is paused,
    the remainder goes at full speed), so the window that ends in it is not governed by the cap."""
    pts = sorted({(s.elapsed_s, s.data_processed_mib) for s in samples})[:-1]
    rates = []
    i = 0
    for j in range(1, len(pts)):
        dt = pts[j][0] - pts[i][0]
        if dt >= window_s:
            rates.append((pts[j][1] - pts[i][1]) / dt)
            i = j
    return rates


def verify(sc: Scenario, hv: LibvirtHypervisor) -> list[str]:
    """Every problem with the end state: VM on its planned destination running with a ticking heartbeat,
    gone from its source, persistent exactly where it was, local-disk data intact on the destination."""
    problems = []
    for m in sc.plan.migrations:
        uuid = sc.uuids[m.vm]
        src = hv.domain_status(m.source, m.vm, uuid)
        dst = hv.domain_status(m.destination, m.vm, uuid)
        if src.state.value != "absent":
            problems.append(f"{m.vm}: still on {m.source} ({src.state.value})")
        problems += _runs_intact(sc, m.vm, m.destination, dst)
    return problems


def _runs_intact(sc: Scenario, vm: str, host: str, st: DomainStatus) -> list[str]:
    """Problems with `vm` on `host`: not running, heartbeat stopped, persistence changed, disk data differs."""
    if st.state.value != "running":
        return [f"{vm}: {st.state.value} on {host}"]
    problems = []
    if st.persistent != sc.persistent[vm]:
        problems.append(f"{vm}: persistent={st.persistent} on {host}, was {sc.persistent[vm]}")
    if not sc.lab.heartbeat_advances(sc.lab.connect(_index(host)).lookupByUUIDString(sc.uuids[vm])):
        problems.append(f"{vm}: heartbeat not advancing on {host}")
    if vm in sc.disk_digest:
        disk = sc.disks[vm]
        path = sc.lab.host(_index(host)).local_path(disk.name)
        if read_disk_digest(path, disk.format, DISK_DATA_MIB) != sc.disk_digest[vm]:
            problems.append(f"{vm}: disk data differs on {host} ({path})")
    return problems


def _index(host: str) -> int:
    return int(host.removeprefix("h"))


def wait_migrating(hv: LibvirtHypervisor, host: str, vm: str, uuid: str, min_processed_mib: float = 4.0,
                   timeout_s: float = 30.0) -> JobProgress:
    """Blocks until the VM's migration job has sent `min_processed_mib`; returns that sample."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        p = hv.job_progress(host, vm, uuid)
        if p is not None and p.data_processed_mib >= min_processed_mib:
            return p
        time.sleep(0.1)
    raise TimeoutError(f"{vm} did not start migrating from {host} within {timeout_s} s")


def nothing_lost(sc: Scenario, hv: LibvirtHypervisor, quarantined: Sequence[str] = ()) -> list[str]:
    """Every problem with the "nothing lost" rule: each VM of the plan runs exactly once (no other
    copy on any lab host), on its source or its planned destination, heartbeat ticking, persistent
    exactly where it was; a local disk's data intact wherever the VM runs, and no copy-storage volume
    left on the destination of a VM that stayed on its source. Quarantined VMs: at least one copy
    left, untouched (evac destroys nothing)."""
    problems = []
    for m in sc.plan.migrations:
        uuid = sc.uuids[m.vm]
        found = {h.name: hv.domain_status(h.name, m.vm, uuid) for h in sc.lab.hosts}
        unknown = [h for h, st in found.items() if st.state.value == "unknown"]
        if unknown:
            problems.append(f"{m.vm}: {', '.join(unknown)} did not answer")
            continue
        present = {h: st for h, st in found.items() if st.state.value != "absent"}
        if m.vm in quarantined:
            if not present:
                problems.append(f"{m.vm}: quarantined but found on no host")
            continue
        if len(present) != 1:
            problems.append(f"{m.vm}: on {sorted((h, st.state.value) for h, st in present.items())}, expected one host")
            continue
        (host, st), = present.items()
        if host not in (m.source, m.destination):
            problems.append(f"{m.vm}: on {host}, neither its source {m.source} nor destination {m.destination}")
        problems += _runs_intact(sc, m.vm, host, st)
        if m.vm in sc.disks and host == m.source and \
                sc.lab.host(_index(m.destination)).local_path(sc.disks[m.vm].name).exists():
            problems.append(f"{m.vm}: runs on {host} but a copy-storage volume is left on {m.destination}")
    return problems


def assert_nothing_lost(sc: Scenario, hv: LibvirtHypervisor, quarantined: Sequence[str] = ()) -> None:
    problems = nothing_lost(sc, hv, quarantined)
    assert not problems, "; ".join(problems)
