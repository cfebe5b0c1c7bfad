"""Test fleets: small inventories and valid plans for them, without the CP-SAT planner.

`greedy_plan` picks destinations first-fit and schedules with the `PlanMonitor` itself as an event
simulation using the duration model, so its plans hold every plan-v1 rule at every instant.
`assert_nothing_lost` is the executor's invariant: every VM exists exactly once, on its source or
its planned destination (or, quarantined, untouched on both).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from executor.hypervisor import DomainState
from executor.journal import Journal
from executor.sim_hv import SimulatedHypervisor
from planner.duration import estimate
from planner.model import VM, Disk, Host, HostState, Inventory, Policy
from planner.monitor import dispatch_times
from planner.plan import Migration, Plan, PlanStatus
from planner.topology import Topology


def make_inventory(n_hosts: int = 4, vms_per_host: int = 3, *, drained: Sequence[str] = ("h0",),
                   memory_mib: int = 1024, dirty_rate_mibs: float = 5.0, nic_gbps: float = 1.0,
                   policy: Policy | None = None, anti_affinity_every: int = 0, local_disk_every: int = 0,
                   host_memory_mib: int = 16384) -> Inventory:
    hosts = tuple(Host(name=f"h{i}", cpus=16, memory_mib=host_memory_mib, nic_gbps=nic_gbps,
                       local_disk_free_gib=100.0,
                       state=HostState.MAINTENANCE if f"h{i}" in drained else HostState.UP)
                  for i in range(n_hosts))
    vms = []
    k = 0
    for h in hosts:
        for j in range(vms_per_host):
            disks: tuple[Disk, ...] = ()
            if local_disk_every and k % local_disk_every == 0:
                disks = (Disk("vda", f"/img/vm{k}.qcow2", "qcow2", None, 2.0, 0.5),)
            groups = frozenset({"g"}) if anti_affinity_every and k % anti_affinity_every == 0 else frozenset()
            vms.append(VM(name=f"vm{k}", host=h.name, vcpus=2, memory_mib=memory_mib,
                          uuid=f"00000000-0000-0000-0000-{k:012d}", dirty_rate_mibs=dirty_rate_mibs + j,
                          disks=disks, anti_affinity=groups, priority=j % 2))
            k += 1
    return Inventory(hosts=hosts, vms=tuple(vms), policy=policy or Policy(max_outbound_per_host=2,
                                                                             max_inbound_per_host=2))


def _fits(inv: Inventory, vm: VM, host: Host, placed: dict[str, list[VM]]) -> bool:
    p = inv.policy
    there = placed[host.name]
    if sum(v.vcpus for v in there) + vm.vcpus > host.cpus * p.cpu_overcommit:
        return False
    if sum(v.memory_mib for v in there) + vm.memory_mib > host.usable_memory_mib * p.memory_overcommit:
        return False
    return not any(vm.anti_affinity & v.anti_affinity for v in there)


def greedy_plan(inv: Inventory, drained: Iterable[str] | None = None, share_links_by: int = 2) -> Plan:
    drained = tuple(drained) if drained is not None else tuple(
        h.name for h in inv.hosts if h.state is HostState.MAINTENANCE)
    topo = Topology(inv)
    placed: dict[str, list[VM]] = {h.name: list(inv.vms_on[h.name]) for h in inv.hosts}
    moves: list[tuple[VM, str]] = []
    for vm in sorted((v for h in drained for v in inv.vms_on[h]), key=lambda v: -v.memory_mib):
        targets = [h for h in inv.hosts if h.receives and h.name not in drained and _fits(inv, vm, h, placed)]
        if not targets:
            raise AssertionError(f"test fleet too full for {vm.name}")
        best = max(targets, key=lambda h: h.usable_memory_mib - sum(v.memory_mib for v in placed[h.name]))
        placed[best.name].append(vm)
        moves.append((vm, best.name))
    p = inv.policy
    provisional = []
    for i, (vm, dest) in enumerate(moves):
        path = topo.path(vm.host, dest)
        assert path is not None
        bw = topo.path_capacity_mibs(path, p.migration_share) / share_links_by
        local = tuple(d.target for d in vm.local_disks)
        est = estimate(vm.memory_mib, vm.dirty_rate_mibs, bw, p.max_downtime_ms,
                       disk_mib=sum(d.allocation_gib for d in vm.local_disks) * 1024.0, live=vm.live,
                       auto_converge=p.auto_converge)
        provisional.append(Migration(vm.name, vm.host, dest, 0, float(i), float(i) + est.duration_s, bw, path,
                                     local, vm.live, est.converges, est.throttled, est.downtime_ms, vm.priority,
                                     float(vm.memory_mib), sum(d.allocation_gib for d in vm.local_disks) * 1024.0))
    return timed_plan(inv, provisional, "greedy-test", drained)


def assert_nothing_lost(sim: SimulatedHypervisor, plan: Plan, quarantined: Iterable[str] = ()) -> None:
    """Every VM runs exactly once, on its source or its planned destination (quarantined: untouched);
    a VM of several hops may also have stopped on a staging host, when its next hop failed."""
    q = set(quarantined)
    reached: dict[str, set[str]] = {}
    for m in plan.migrations:
        reached.setdefault(m.vm, set()).add(m.destination)
    for vm in sim.inventory.vms:
        where = sim.where(vm.name)
        if vm.name in q:
            assert where, f"{vm.name} vanished"
            continue
        assert len(where) == 1, f"{vm.name} is on {where}"
        host, state = where[0]
        allowed = {vm.host} | reached.get(vm.name, set())
        assert host in allowed, f"{vm.name} on {host}, expected one of {allowed}"
        expected = DomainState.SHUTOFF if not vm.live else DomainState.RUNNING
        assert state is expected, f"{vm.name} is {state} on {host}"


def timed_plan(inventory: Inventory, provisional: Sequence[Migration], solver: str,
               drained: Iterable[str] | None = None) -> Plan:
    """Plan v1 from migrations whose destinations and bandwidths are fixed: start times come from the
    duration model played through the executor's own plan monitor (`dispatch_times`); migrations
    starting at the same instant form one wave, numbered in time order."""
    drained_hosts = tuple(drained) if drained is not None else tuple(sorted({m.source for m in provisional}))
    draft = Plan(inventory.sha256, drained_hosts, PlanStatus.FEASIBLE, 0.0, 0.0, 0.0, tuple(provisional),
                 solver=solver)
    timed = dispatch_times(draft, inventory)
    stuck = [m.vm for m in provisional if m.vm not in timed]
    if stuck:
        raise AssertionError(f"{solver} schedule stuck: {stuck}")
    wave = {s: i for i, s in enumerate(sorted({s for s, _ in timed.values()}))}
    migs = tuple(dataclasses.replace(m, start_s=timed[m.vm][0], end_s=timed[m.vm][1], wave=wave[timed[m.vm][0]])
                 for m in provisional)
    return Plan(inventory.sha256, drained_hosts, PlanStatus.FEASIBLE, max((m.end_s for m in migs), default=0.0),
                0.0, 0.0, migs, solver=solver)


def sigkill_mid_run(script: str, journal_path: Path, ready: Callable[[Journal], bool], timeout_s: float = 60.0) -> bool:
    """Runs `script` (a Python program running a plan with that journal) and SIGKILLs it as soon as
    `ready(journal)` holds for the journal read from outside; False if the run ended first."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + timeout_s
    killed = False
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if not journal_path.exists():
            continue
        try:
            ro = Journal.read(journal_path)
            try:
                now = ready(ro)
            finally:
                ro.close()
        except Exception:  # the journal is being created, or a read raced a write: look again
            continue
        if now:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.wait()
    return killed
