"""Benchmark of the real libvirt lab: start and stop times, and what one migration costs in it.

    .venv/bin/python bench/bench_lab.py [--hosts 3] [--memory-mib 128] [--cap-mibs 32]

Prints: lab up time cold (QEMU capabilities probed) and warm (probe reused from build/lab-cache), down
time, and for one memdirty guest an uncapped and a capped p2p live migration h1 -> h2 (wall time of the
call, job time, MiB sent, average rate, downtime). Needs root; uses its own lab directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt  # after the sys.path line

from tests.lab.harness import Lab, MigrationResult, environment_problems


def _row(label: str, result: MigrationResult) -> str:
    return (f"  {label:<22} wall {result.seconds:6.2f} s  job {result.time_elapsed_s:6.2f} s  "
            f"sent {result.data_processed_mib:6.1f} MiB  rate {result.rate_mibs:6.1f} MiB/s  "
            f"downtime {result.downtime_ms:4d} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--memory-mib", type=int, default=128)
    parser.add_argument("--cap-mibs", type=int, default=32)
    args = parser.parse_args()
    problems = environment_problems()
    if problems:
        print("bench_lab: cannot run the lab: " + "; ".join(problems), file=sys.stderr)
        return 3
    lab_dir = Path(f"/tmp/evac-lab-bench-{os.getpid()}")

    saved = os.environ.get("LAB_CAPS_CACHE")
    os.environ["LAB_CAPS_CACHE"] = ""  # cold: every lab of a fresh CI machine starts like this once
    try:
        cold = Lab.up(hosts=args.hosts, lab_dir=lab_dir)
    finally:
        if saved is None:
            del os.environ["LAB_CAPS_CACHE"]
        else:
            os.environ["LAB_CAPS_CACHE"] = saved
    cold_down_s = cold.down()
    print(f"lab of {args.hosts} hosts: up {cold.up_seconds:.2f} s cold (capabilities probed), "
          f"down {cold_down_s:.2f} s (idle)")

    lab = Lab.up(hosts=args.hosts, lab_dir=lab_dir)
    try:
        print(f"lab of {args.hosts} hosts: up {lab.up_seconds:.2f} s warm (capabilities cache reused)")
        h1, h2 = lab.hosts[0], lab.hosts[1]
        dom = lab.define_guest(h1, "bench", memory_mib=args.memory_mib, dirty_rate_mibs=2, wss_mib=16,
                               persistent=False)
        ready_s = lab.wait_ready(dom)
        print(f"guest {args.memory_mib} MiB (2 MiB/s over 16 MiB) ready in {ready_s:.2f} s; p2p live migrations:")
        dom, uncapped = lab.migrate(dom, h2)
        print(_row("h1->h2 uncapped", uncapped))
        dom, capped = lab.migrate(dom, h1, params={libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: args.cap_mibs})
        print(_row(f"h2->h1 cap {args.cap_mibs} MiB/s", capped))
        if not lab.heartbeat_advances(dom):
            print("guest heartbeat stopped after the migrations", file=sys.stderr)
            return 1
    finally:
        down_s = lab.down()
    print(f"lab down {down_s:.2f} s (after guests ran)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
