"""The executor under load: a 1,000-migration plan with 50 in flight, on the simulated fleet.

Each size runs in its own process (so its peak RSS is its own) and prints:
* limits at every instant on the EXECUTED timeline: each migration as it really ran (run clock, from the
  run's result), holding its planned bandwidth, checked with the plan checker's at-every-instant rules
  (link and NIC bandwidth, concurrency, capacity, anti-affinity, affinity); and the peak in flight;
* starvation: every migration started, and how late against its planned start (max, median);
* executed makespan / planned makespan, wall time, peak RSS; then 100 vs 1,000 migrations side by side.

Prints figures; asserts only what must hold (limits, nothing lost, every migration started), never a time.
Usage: .venv/bin/python bench/bench_executor_load.py [--sizes 100,1000] [--in-flight 50] [--speedup 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor.journal import Journal
from executor.reporter import Reporter
from executor.runner import RunOptions, RunResult, run_plan
from executor.sim_hv import SimulatedHypervisor
from executor.states import State
from planner.checker import check_plan
from planner.constraints import Affinity, AntiAffinity, Capacity, ConcurrencyLimits, ResourceBandwidth
from planner.model import Inventory, Policy
from planner.plan import Plan
from tests.fleet import assert_nothing_lost, greedy_plan, make_inventory

AT_EVERY_INSTANT = (ResourceBandwidth(), ConcurrencyLimits(), Capacity(), AntiAffinity(), Affinity())


def fleet(migrations: int, in_flight: int) -> Inventory:
    """`in_flight` drained hosts sharing `migrations` VMs, one outbound migration each and `in_flight` in all, so
    every size keeps the same number going; receiving hosts with room for ~10 more VMs each."""
    per_host = max(1, migrations // in_flight)
    receivers = max(in_flight, migrations // 10 + 1)  # inbound 2 per host: never the bottleneck
    return make_inventory(in_flight + receivers, per_host, drained=tuple(f"h{i}" for i in range(in_flight)),
                          memory_mib=1024, nic_gbps=10.0, local_disk_every=25, anti_affinity_every=97,
                          host_memory_mib=(per_host + 12) * 1024,
                          policy=Policy(max_outbound_per_host=1, max_inbound_per_host=2, max_concurrent=in_flight,
                                        cpu_overcommit=8.0))


def executed_plan(plan: Plan, result: RunResult) -> Plan:
    """The plan as it ran: each migration over [started, ended) of the run clock, at its planned bandwidth."""
    migs = []
    for m in plan.migrations:
        r = result.results[m.vm]
        if r.started_s is not None and r.ended_s is not None:
            migs.append(dataclasses.replace(m, start_s=r.started_s, end_s=r.ended_s))
    return dataclasses.replace(plan, migrations=tuple(migs), makespan_s=result.makespan_s)


def peak_in_flight(plan: Plan) -> int:
    events = sorted([(m.start_s, 1) for m in plan.migrations] + [(m.end_s, -1) for m in plan.migrations])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def one(migrations: int, in_flight: int, speedup: float) -> dict[str, float]:
    inv = fleet(migrations, in_flight)
    t = time.monotonic()
    plan = greedy_plan(inv)
    plan_s = time.monotonic() - t
    sim = SimulatedHypervisor(inv, speedup=speedup)
    with tempfile.TemporaryDirectory() as d:
        journal = Journal.open(Path(d) / "load.db", plan, inventory_sha256=inv.sha256)
        wall0 = time.monotonic()
        result = run_plan(plan, inv, sim, journal, Reporter(), RunOptions())
        wall = time.monotonic() - wall0
        journal.close()
        done_in_journal = Journal.read(Path(d) / "load.db").summary().get("done", 0)
    n = len(plan.migrations)
    assert result.count(State.DONE) == n == done_in_journal, result.summary()
    assert_nothing_lost(sim, plan)
    ran = executed_plan(plan, result)
    assert len(ran.migrations) == n, "a migration never started"  # no starvation: every one started
    violations = check_plan(inv, ran, rules=AT_EVERY_INSTANT)
    assert not violations, violations[:5]
    waits = [result.results[m.vm].started_s - m.start_s for m in plan.migrations]  # type: ignore[operator]
    # Held back beyond the run's own stretch: a starved migration would start late even after scaling the plan
    stretch = result.makespan_s / plan.makespan_s
    held = [result.results[m.vm].started_s - m.start_s * stretch for m in plan.migrations]  # type: ignore[operator]
    return {"migrations": n, "planned_makespan_s": plan.makespan_s, "executed_makespan_s": result.makespan_s,
            "planned_peak_in_flight": peak_in_flight(plan), "executed_peak_in_flight": peak_in_flight(ran),
            "max_late_s": max(waits), "median_late_s": statistics.median(waits), "min_late_s": min(waits),
            "max_held_back_s": max(held), "stretch": stretch,
            "wall_s": wall, "plan_s": plan_s, "violations": len(violations),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--in-flight", type=int, default=50)
    # 5x: faster, and thread wake-up latency times the speed-up stretches the executed timeline (1.13x at 5x, 3.4x at
    # 20x on a shared 2-core machine)
    ap.add_argument("--speedup", type=float, default=5.0)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.in_flight, args.speedup)))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--in-flight", str(args.in_flight),
                              "--speedup", str(args.speedup)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{r['migrations']:>5} migrations, max {args.in_flight} in flight (planned peak "
              f"{r['planned_peak_in_flight']}, executed peak {r['executed_peak_in_flight']}): "
              f"limits at every instant on the executed timeline: {r['violations']} violations; "
              f"every migration started, at most {r['max_late_s']:.1f} s after its planned start "
              f"(median {r['median_late_s']:.1f} s, least {r['min_late_s']:.1f} s); against the plan stretched by the "
              f"run's own {r['stretch']:.2f}x, at most {r['max_held_back_s']:.1f} s late")
        print(f"      makespan executed {r['executed_makespan_s']:.1f} s / planned {r['planned_makespan_s']:.1f} s "
              f"= {r['executed_makespan_s'] / r['planned_makespan_s']:.3f}; wall {r['wall_s']:.1f} s at "
              f"{args.speedup:g}x (plan built in {r['plan_s']:.1f} s); peak RSS {r['peak_rss_mib']:.0f} MiB")
    if len(rows) == 2:
        a, b = rows
        print(f"side by side, {b['migrations']} vs {a['migrations']} migrations: peak RSS "
              f"{b['peak_rss_mib']:.0f} / {a['peak_rss_mib']:.0f} MiB = {b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x "
              f"for {b['migrations'] / a['migrations']:.0f}x the migrations; wall "
              f"{b['wall_s'] / a['wall_s']:.2f}x; executed/planned makespan "
              f"{b['executed_makespan_s'] / b['planned_makespan_s']:.3f} vs "
              f"{a['executed_makespan_s'] / a['planned_makespan_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
