"""What today's tools would take to drain part of a fleet, against evac's proven lower bound.

    .venv/bin/python bench/bench_baselines.py [--hosts 200] [--racks 10] [--drain 10] [--vms-per-source 8]

Same synthetic fleet as bench_checker.py (25 Gb/s NICs, 100 Gb/s uplinks, mixed VM sizes and dirty
rates, some local disks), `drain` hosts emptied. Prints, for the FFD placement shared by every baseline,
each baseline's makespan and its ratio to the lower bound of any valid plan, plus run times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_checker import build  # after the sys.path line
from planner.baselines import run_baselines, sequential_plan
from planner.checker import check_plan
from planner.lowerbound import lower_bound
from planner.topology import Topology


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--racks", type=int, default=10)
    ap.add_argument("--drain", type=int, default=10)
    ap.add_argument("--vms-per-source", type=int, default=8)
    a = ap.parse_args()
    inv, sources = build(a.hosts, a.vms_per_source, a.racks)
    drained = sources[:a.drain]
    topo = Topology(inv)
    moving = sum(len(inv.vms_on[h]) for h in drained)
    print(f"fleet: {len(inv.hosts)} hosts, {len(inv.vms)} VMs; draining {len(drained)} hosts ({moving} VMs)")
    t0 = time.perf_counter()
    lb = lower_bound(inv, drained, topology=topo)
    print(f"  lower bound {lb.value_s:8.1f} s  ({lb.binding}; {time.perf_counter() - t0:.2f} s)")
    t0 = time.perf_counter()
    results = run_baselines(inv, drained, topology=topo)
    elapsed = time.perf_counter() - t0
    for r in results:
        print(f"  {r.name:<20} {r.makespan_s:8.1f} s  = {r.makespan_s / lb.value_s:5.2f} x LB"
              f"  ({len(r.migrations)} moved, {len(r.unplaced)} unplaced)")
    print(f"  baselines computed in {elapsed:.2f} s")
    plan = sequential_plan(inv, drained, topology=topo, lower_bound_s=lb.value_s)
    print(f"  sequential plan v1 passes the checker: {check_plan(inv, plan, topology=topo) == []}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
