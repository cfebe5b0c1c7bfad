"""`evac whatif --each-host` on a generated fleet: wall time on a local Dask cluster vs serial, same run.

    .venv/bin/python bench/bench_whatif.py                      # 5,000 hosts / 30,000 VMs, first 200 hosts swept
    .venv/bin/python bench/bench_whatif.py --sweep 0            # every host (hours on a 2-core machine)
    .venv/bin/python bench/bench_whatif.py --scheduler tcp://10.0.0.5:8786   # also on your Dask cluster

Both paths evaluate the SAME scenarios (`drain=H` for the first --sweep up hosts, greedy planner)
and must give the same rows; the script prints per-scenario time, the Dask/serial ratio and the
full-sweep time extrapolated from the measured rate. The local cluster has one process per core;
its start-up is counted in the Dask wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor.whatif_runner import local_workers, run_dask, run_serial
from planner.generate import generate_fleet
from planner.whatif import Settings, each_host


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--vms", type=int, default=30000)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--sweep", type=int, default=200, help="hosts swept (0 = every host)")
    ap.add_argument("--processes", type=int, default=0, help="local Dask workers (0 = one per core)")
    ap.add_argument("--scheduler", default=None, help="also run on this Dask scheduler, tcp://HOST:PORT")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))  # for --scheduler workers

    t0 = time.monotonic()
    inv = generate_fleet(args.hosts, args.vms, args.racks, seed=1)
    scenarios = each_host(inv)
    everything = len(scenarios)
    if args.sweep:
        scenarios = scenarios[:args.sweep]
    settings = Settings()
    print(f"fleet: {len(inv.hosts)} hosts, {len(inv.vms)} VMs (generated in {time.monotonic() - t0:.1f} s); "
          f"sweeping {len(scenarios)} of {everything} hosts; {local_workers()} cores")

    t0 = time.monotonic()
    serial = run_serial(inv, scenarios, settings)
    serial_s = time.monotonic() - t0
    processes = args.processes or local_workers()
    t0 = time.monotonic()
    dask = run_dask(inv, scenarios, settings, processes=processes)
    dask_s = time.monotonic() - t0
    same = [r.row() | {"solve_s": 0} for r in serial] == [r.row() | {"solve_s": 0} for r in dask]
    rows = [("serial", serial_s), (f"local Dask, {processes} processes", dask_s)]
    if args.scheduler:
        t0 = time.monotonic()
        remote = run_dask(inv, scenarios, settings, scheduler=args.scheduler)
        rows.append((f"Dask at {args.scheduler}", time.monotonic() - t0))
        same = same and [r.row() | {"solve_s": 0} for r in remote] == [r.row() | {"solve_s": 0} for r in serial]

    print("\n| run | wall s | per scenario s | vs serial | full sweep, extrapolated |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, wall in rows:
        per = wall / len(scenarios)
        print(f"| {name} | {wall:.1f} | {per:.3f} | {serial_s / wall:.2f}x | {per * everything / 60:.0f} min |")
    feasible = sum(r.feasible for r in serial)
    print(f"\nsame rows on every path: {same}; {feasible} of {len(serial)} hosts can be emptied; "
          f"longest drain {max(r.makespan_s for r in serial):.1f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
