"""Speed of the planner's solver-free half on a big synthetic fleet: eligibility, checker, lower bound.

    .venv/bin/python bench/bench_checker.py [--hosts 6000] [--vms-per-source 10] [--racks 100]

Builds `hosts` hosts in `racks` racks (25 Gb/s NICs, 100 Gb/s uplinks); half of them are drained,
each holding `vms-per-source` VMs (mixed sizes, dirty rates, some local disks, anti-affinity groups);
the other half are empty. The plan moves every VM of a drained host, one at a time per source, to
its neighbour in the same rack: a valid plan with hosts/2 × vms-per-source migrations (30,000 by
default). Prints the time of: candidate pruning (`candidate_hosts` for 2,000 VMs × every host, and
`can_receive` pairs per second), `check_plan` (must find no violation), `lower_bound`,
`placement_lower_bound`, the checker's time on a plan with one broken rule, and the whole check
`evac run` makes before it starts (`planner.plan_inputs.refuse_unless_valid`: inventory match +
checker, its own topology).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.checker import check_plan  # after the sys.path line
from planner.lowerbound import lower_bound, placement_lower_bound
from planner.migration_facts import can_receive, candidate_hosts, migration_facts, vm_estimate
from planner.model import VM, Disk, Host, Inventory, Link, Policy
from planner.plan import Migration, Plan, PlanStatus
from planner.plan_inputs import refuse_unless_valid
from planner.topology import Topology


def build(n_hosts: int, per_source: int, racks: int) -> tuple[Inventory, list[str]]:
    hosts = [Host(name=f"h{i:05d}", cpus=64, memory_mib=262144, nic_gbps=25, switch=f"tor{i % racks:03d}",
                  local_disk_free_gib=2000, networks=frozenset({"br-prod"}), storage=frozenset({"nfs-1"}))
             for i in range(n_hosts)]
    links = tuple(Link(f"tor{r:03d}", "spine", 100) for r in range(racks))
    drained = [h.name for i, h in enumerate(hosts) if (i // racks) % 2 == 0]
    vms = []
    k = 0
    for name in drained:
        for j in range(per_source):
            disks = (Disk("vdb", storage=None, capacity_gib=40, allocation_gib=4.0),) if k % 7 == 0 else \
                (Disk("vda", storage="nfs-1", capacity_gib=20, allocation_gib=5.0),)
            vms.append(VM(name=f"vm{k:06d}", host=name, vcpus=2 + j % 4, memory_mib=(1 + k % 8) * 2048,
                          dirty_rate_mibs=float(k % 50), disks=disks, networks=frozenset({"br-prod"}),
                          anti_affinity=frozenset({f"g{k % 997}"}) if k % 3 == 0 else frozenset()))
            k += 1
    return Inventory(hosts=tuple(hosts), vms=tuple(vms), links=links, policy=Policy()), drained


def sequential_per_source(inv: Inventory, drained: list[str], racks: int, topo: Topology) -> Plan:
    """Each drained host sends its VMs one by one to the next host of its rack, all hosts in parallel."""
    migs: list[Migration] = []
    for name in drained:
        i = int(name[1:])
        dest = f"h{i + racks:05d}"  # same rack, in the half that receives
        t = 0.0
        for v in inv.vms_on[name]:
            f = migration_facts(v, dest, inv, topo)
            assert f is not None
            est = vm_estimate(v, f.cap_mibs, inv.policy)
            migs.append(Migration(v.name, name, dest, 0, t, t + est.duration_s, f.cap_mibs, f.path, f.copy_storage,
                                  v.live, est.converges, est.throttled, est.downtime_ms))
            t += est.duration_s
    starts = sorted({m.start_s for m in migs})
    wave = {s: w for w, s in enumerate(starts)}
    migs = [replace(m, wave=wave[m.start_s]) for m in migs]
    return Plan(inv.sha256, tuple(drained), PlanStatus.FEASIBLE, max(m.end_s for m in migs), 0.0, 0.0, tuple(migs))


def timed(label: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    print(f"  {label:<44} {time.perf_counter() - t0:7.2f} s")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=6000)
    ap.add_argument("--vms-per-source", type=int, default=10)
    ap.add_argument("--racks", type=int, default=100)
    a = ap.parse_args()
    t0 = time.perf_counter()
    inv, drained = build(a.hosts, a.vms_per_source, a.racks)
    topo = Topology(inv)
    print(f"fleet: {len(inv.hosts)} hosts, {len(inv.vms)} VMs, {len(drained)} drained "
          f"(built in {time.perf_counter() - t0:.2f} s)")
    sample = inv.vms[:2000]
    timed(f"candidate_hosts, {len(sample)} VMs x {len(inv.hosts)} hosts", candidate_hosts, inv, sample, drained, topo)
    pairs = [(v, h) for v in inv.vms[:200] for h in inv.hosts]
    t1 = time.perf_counter()
    drained_set = frozenset(drained)  # can_receive tests membership: give it a set
    n_ok = sum(can_receive(v, h, inv, drained_set) for v, h in pairs)
    dt = time.perf_counter() - t1
    print(f"  can_receive: {len(pairs)} pairs in {dt:.2f} s = {len(pairs) / dt / 1e6:.2f} M pairs/s ({n_ok} yes)")
    plan = timed("build the plan", sequential_per_source, inv, drained, a.racks, topo)
    print(f"plan: {len(plan.migrations)} migrations, makespan {plan.makespan_s:.1f} s")
    violations = timed("check_plan (valid plan)", check_plan, inv, plan, topology=topo)
    print(f"  violations: {len(violations)}" + "".join(f"\n    {v}" for v in violations[:5]))
    timed("refuse_unless_valid (evac run, at load)", refuse_unless_valid, plan, inv, "plan", "inventory")
    lb = timed("lower_bound", lower_bound, inv, drained, topology=topo)
    print(f"  lower bound {lb.value_s:.1f} s ({lb.binding}); plan makespan / LB = {plan.makespan_s / lb.value_s:.2f}")
    plb = timed("placement_lower_bound", placement_lower_bound, inv, plan, topology=topo)
    print(f"  placement bound {plb.value_s:.1f} s ({plb.binding})")
    m0 = plan.migrations[0]
    broken = replace(plan, migrations=(replace(m0, end_s=m0.start_s + 0.5 * m0.duration_s), *plan.migrations[1:]))
    violations = timed("check_plan (one migration too short)", check_plan, inv, broken, topology=topo)
    print(f"  violations: {[str(v) for v in violations]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
