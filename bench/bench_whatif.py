"""`evac whatif --each-host` on a generated fleet: wall time on a local Dask cluster vs serial, same run.

    .venv/bin/python bench/bench_whatif.py                      # 5,000 hosts / 30,000 VMs, first 200 hosts swept
    .venv/bin/python bench/bench_whatif.py --sweep 0            # every host (hours on a 2-core machine)
    .venv/bin/python bench/bench_whatif.py --scheduler tcp://10.0.0.5:8786   # also on your Dask cluster
    .venv/bin/python bench/bench_whatif.py --real-cluster   # also on a `dask scheduler` + `dask worker` started here
    .venv/bin/python bench/bench_whatif.py --uncached --sweep 100   # also serial with no per-inventory cache

Both paths evaluate the SAME scenarios (`drain=H` for the first --sweep up hosts, greedy planner)
and must give the same rows; the script prints per-scenario time, the Dask/serial ratio and the
full-sweep time extrapolated from the measured rate. The local cluster has one process per core;
its start-up is counted in the Dask wall time. `--uncached`: one more serial run with
`planner.inventory_cache.disabled()` (every fleet-wide fact rebuilt per scenario, as before the
sweep reused them): its time side by side, and its rows must be the same.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor.whatif_runner import local_workers, run_dask, run_serial
from planner.generate import generate_fleet
from planner.inventory_cache import disabled
from planner.whatif import Settings, each_host


@contextlib.contextmanager
def real_cluster(processes: int) -> Iterator[str]:
    """`dask scheduler` and `dask worker --nworkers N` on 127.0.0.1, free ports, stopped after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              **quiet)]  # type: ignore[call-overload]
    procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", str(processes), "--nthreads", "1",
                                   "--no-dashboard"], **quiet))  # type: ignore[call-overload]
    try:
        from distributed import Client

        time.sleep(2)
        with Client(address, timeout=30) as client:
            client.wait_for_workers(processes, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--vms", type=int, default=30000)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--sweep", type=int, default=200, help="hosts swept (0 = every host)")
    ap.add_argument("--processes", type=int, default=0, help="local Dask workers (0 = one per core)")
    ap.add_argument("--scheduler", default=None, help="also run on this Dask scheduler, tcp://HOST:PORT")
    ap.add_argument("--real-cluster", action="store_true",
                    help="also start a dask scheduler and a dask worker (one process per core) here and run on them")
    ap.add_argument("--uncached", action="store_true", help="also run serially with no per-inventory cache")
    ap.add_argument("--serial-only", action="store_true", help="no Dask run (the serial figures alone)")
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

    rows = []
    same = True
    if args.uncached:
        t0 = time.monotonic()
        with disabled():
            reference = run_serial(inv, scenarios, settings)
        rows.append(("serial, no per-inventory cache", time.monotonic() - t0))
    t0 = time.monotonic()
    serial = run_serial(inv, scenarios, settings)
    serial_s = time.monotonic() - t0
    rows.append(("serial", serial_s))
    if args.uncached:
        same = [r.row() | {"solve_s": 0} for r in serial] == [r.row() | {"solve_s": 0} for r in reference]
    processes = args.processes or local_workers()
    if not args.serial_only:
        t0 = time.monotonic()
        dask = run_dask(inv, scenarios, settings, processes=processes)
        rows.append((f"local Dask, {processes} processes", time.monotonic() - t0))
        same = same and [r.row() | {"solve_s": 0} for r in serial] == [r.row() | {"solve_s": 0} for r in dask]
    with real_cluster(processes) if args.real_cluster else contextlib.nullcontext(args.scheduler) as address:
        if address:
            t0 = time.monotonic()
            remote = run_dask(inv, scenarios, settings, scheduler=address)
            rows.append((f"dask scheduler + worker at {address}", time.monotonic() - t0))
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
