"""The issue-#5 evacuation in the real libvirt lab, three ways: default (the plan monitor starts each
migration as soon as its room is free), --barrier (wave k+1 waits for all of wave k, Watcher-style)
and one-at-a-time (the `virsh migrate` loop).

Six memdirty guests (64-192 MiB, 0-8 MiB/s dirtied, one with a local qcow2 disk copied with
copy-storage) leave h1 for h2 and h3, each migration capped at 24 MiB/s (tests/lab/evac_scenario.py).
Per mode it prints: measured makespan, the plan's makespan, Σ migration wall time, the executor's
process CPU time during run_plan (all its threads: runner, workers, libvirt event loop) and that CPU
time / Σ migration wall time (target < 1 %), the highest measured rate over ≥2 s windows of job
statistics vs the cap, the worst downtime, and whether every VM ended where planned (heartbeat,
persistence, disk data).

    sudo .venv/bin/python bench/bench_executor_lab.py            # starts its own lab, stops it after
    sudo .venv/bin/python bench/bench_executor_lab.py --lab /tmp/evac-lab   # use a running lab

About 2-3 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.journal import Journal  # after the sys.path line
from executor.runner import RunOptions, run_plan
from tests.lab import evac_scenario as es
from tests.lab.harness import Lab, environment_problems

MODES = {
    "default": RunOptions(retries=0),
    "barrier": RunOptions(retries=0, barrier=True),
    "one-at-a-time": RunOptions(retries=0, one_at_a_time=True),
}


def run_mode(lab: Lab, mode: str, options: RunOptions, planner: str,
             first: es.Scenario | None) -> tuple[dict[str, float | str], es.Scenario]:
    lab.reset()
    sc = es.build(lab, planner=planner, same_plan_as=first)
    hv = es.hypervisor(lab, sc.inventory)
    recorder = es.BandwidthRecorder()
    with tempfile.TemporaryDirectory() as tmp, \
            Journal.open(Path(tmp) / "journal.db", sc.plan, inventory_sha256=sc.inventory.sha256) as journal:
        cpu0 = time.process_time()
        result = run_plan(sc.plan, sc.inventory, hv, journal, recorder, options)
        cpu_s = time.process_time() - cpu0
    problems = es.verify(sc, hv)
    hv.close()
    wall_s = sum(r.ended_s - r.started_s for r in result.results.values()
                 if r.ended_s is not None and r.started_s is not None)
    # Measured rate relative to each migration's own planned cap (all equal with the hand plan).
    rates = [r / m.bandwidth_mibs for m in sc.plan.migrations
             for r in es.measured_rates(recorder.samples.get(m.vm, []), 2.0)]
    downtimes = [r.downtime_ms for r in result.results.values() if r.downtime_ms is not None]
    return {
        "mode": mode,
        "makespan_s": result.makespan_s,
        "planned_s": sc.plan.makespan_s,
        "migration_wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_pct": 100 * cpu_s / wall_s if wall_s else float("nan"),
        "max_rate_pct_of_cap": 100 * max(rates, default=float("nan")),
        "caps": ",".join(sorted({f"{m.bandwidth_mibs:.0f}" for m in sc.plan.migrations})),
        "windows": len(rates),
        "max_downtime_ms": max(downtimes, default=float("nan")),
        "ok": "yes" if result.ok and not problems else f"NO: {result.summary()} {problems}",
    }, sc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", type=Path, help="use the lab running in this directory instead of starting one")
    parser.add_argument("--planner", choices=("hand", "cp-sat"), default="hand",
                        help="hand: fixed destinations, 24 MiB/s each; cp-sat: evac's planner chooses destinations "
                             "and caps (NICs declared 0.8 Gbit/s so the caps bind)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ", ".join(MODES))
    args = parser.parse_args()
    problems = environment_problems()
    if problems:
        print("cannot run the lab here: " + "; ".join(problems), file=sys.stderr)
        return 3
    t0 = time.monotonic()
    lab = Lab.attach(args.lab) if args.lab else Lab.up(3, Path(f"/tmp/evac-lab-bench-{os.getpid()}"))
    rows = []
    first: es.Scenario | None = None
    try:
        for mode in args.modes.split(","):
            row, sc = run_mode(lab, mode, MODES[mode], args.planner, first)  # every mode runs the first plan
            first = first or sc
            rows.append(row)
            print(f"  {mode}: done ({time.monotonic() - t0:.0f} s so far)", flush=True)
    finally:
        lab.reset()
        if not args.lab:
            lab.down()
    print(f"\nEvacuation of h1 (6 VMs, 704 MiB RAM + 24 MiB disk data) to h2+h3, {args.planner} plan, "
          "real libvirt 9.0 / QEMU 7.2 TCG lab")
    header = (f"{'mode':<14}{'makespan s':>11}{'planned s':>10}{'Σ mig wall s':>13}{'exec CPU s':>11}"
              f"{'CPU/wall %':>11}{'caps MiB/s':>11}{'max rate % cap':>15}{'windows':>8}{'max downtime ms':>16}  ok")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['mode']:<14}{r['makespan_s']:>11.1f}{r['planned_s']:>10.1f}{r['migration_wall_s']:>13.1f}"
              f"{r['cpu_s']:>11.3f}{r['cpu_pct']:>11.2f}{r['caps']:>11}{r['max_rate_pct_of_cap']:>15.1f}{r['windows']:>8}"
              f"{r['max_downtime_ms']:>16.0f}  {r['ok']}")
    print(f"\nrate = Δdata_processed/Δtime_elapsed of the runner's job-stats samples over ≥2 s windows (switchover "
          f"window excluded), as % of that migration's cap; tolerance {100 * (1 + es.RATE_TOLERANCE):.0f} %")
    print(f"total bench time {time.monotonic() - t0:.0f} s")
    return 0 if all(r["ok"] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
