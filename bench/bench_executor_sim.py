"""Executor CPU overhead per migration, on the simulated fleet (a few hundred migrations).

Prints: process CPU time / migration (runner + journal + simulated fleet, all in this process: an
upper bound on the executor's own cost), the control thread's CPU / migration (monitor, polling,
escalation checks, reporter), and both as % of the mean simulated migration duration.
Usage: .venv/bin/python bench/bench_executor_sim.py [--hosts 100] [--drain 50] [--speedup 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor.journal import Journal
from executor.reporter import Reporter
from executor.runner import RunOptions, run_plan
from executor.sim_hv import SimulatedHypervisor
from executor.states import State
from planner.model import Policy
from tests.fleet import assert_nothing_lost, greedy_plan, make_inventory


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--drain", type=int, default=50)
    ap.add_argument("--vms-per-host", type=int, default=6)
    ap.add_argument("--speedup", type=float, default=40.0)
    args = ap.parse_args()
    inv = make_inventory(args.hosts, args.vms_per_host, drained=tuple(f"h{i}" for i in range(args.drain)),
                         memory_mib=1024, nic_gbps=10.0, local_disk_every=10,
                         policy=Policy(max_outbound_per_host=2, max_inbound_per_host=2, max_concurrent=0))
    t = time.monotonic()
    plan = greedy_plan(inv)
    print(f"fleet: {len(inv.hosts)} hosts, {len(inv.vms)} VMs; plan: {len(plan.migrations)} migrations, "
          f"planned makespan {plan.makespan_s:.0f} s (built in {time.monotonic() - t:.1f} s)")
    sim = SimulatedHypervisor(inv, speedup=args.speedup)
    with tempfile.TemporaryDirectory() as d:
        journal = Journal.open(Path(d) / "j.db", plan)
        wall0, cpu0, thread0 = time.monotonic(), time.process_time(), time.thread_time()
        result = run_plan(plan, inv, sim, journal, Reporter(), RunOptions())
        wall, cpu, thread = time.monotonic() - wall0, time.process_time() - cpu0, time.thread_time() - thread0
        journal.close()
    n = len(plan.migrations)
    assert result.count(State.DONE) == n, result.summary()
    assert_nothing_lost(sim, plan)
    sim_durations = [r.ended_s - r.started_s for r in result.results.values()
                     if r.ended_s is not None and r.started_s is not None]
    mean_sim_s = sum(sim_durations) / len(sim_durations)
    planned_mean_s = sum(m.duration_s for m in plan.migrations) / n
    print(f"executed: makespan {result.makespan_s:.0f} simulated s in {wall:.1f} wall s at {args.speedup:g}x; "
          f"mean migration {mean_sim_s:.1f} simulated s (planned {planned_mean_s:.1f} s; the difference is "
          f"thread wake-up latency × speedup on a shared machine)")
    print(f"process CPU (runner + journal + simulated fleet): {cpu:.2f} s = {1000 * cpu / n:.2f} ms/migration "
          f"= {100 * cpu / n / mean_sim_s:.4f} % of a simulated migration's duration")
    print(f"control thread CPU (monitor, polling, escalation): {thread:.2f} s = {1000 * thread / n:.2f} ms/migration "
          f"= {100 * thread / n / mean_sim_s:.4f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
