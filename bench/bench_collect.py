#!/usr/bin/env python3
"""Cost and accuracy of `evac collect` on the real libvirt lab (tests/lab/harness.py).

Defines K memdirty guests per lab host with known memory and dirty rates, then times `collect()`
without and with use sampling (`--sample-s`) and `--dirty-rate`, prints the measured use
(`cpu_used`, `memory_used_mib`) and compares each measured rate with the guest's configured one.

    LAB=/tmp/evac-lab .venv/bin/python bench/bench_collect.py --vms-per-host 3 --rates 0,4,16
    (starts a lab of --hosts hosts if none is up in $LAB; --keep leaves the guests defined)

Prints figures only; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.collector import collect
from tests.lab.harness import Lab, lab_dir_from_env, lab_is_live


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=2, help="hosts of a lab started by this script")
    ap.add_argument("--vms-per-host", type=int, default=3)
    ap.add_argument("--rates", default="0,4,16", help="dirty rates (MiB/s) cycled over the guests")
    ap.add_argument("--memory-mib", type=int, default=96)
    ap.add_argument("--wss-mib", type=int, default=48)
    ap.add_argument("--seconds", default="1,2", help="dirty-rate measuring periods to try")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample-s", type=float, default=2.0, help="use-sampling window to time besides 0")
    ap.add_argument("--defined-vms", type=int, default=0,
                    help="extra shut-off guests per host (cheap: measures read cost per VM)")
    ap.add_argument("--keep", action="store_true", help="leave the guests defined")
    args = ap.parse_args()

    lab_dir = lab_dir_from_env()
    started = not lab_is_live(lab_dir)
    lab = Lab.up(hosts=args.hosts, lab_dir=lab_dir) if started else Lab.attach(lab_dir)
    rates = [int(r) for r in args.rates.split(",")]
    configured: dict[str, int] = {}
    try:
        doms = []
        for host in lab.hosts:
            for i in range(args.vms_per_host):
                name = f"bench-{host.name}-{i}"
                rate = rates[(host.index + i) % len(rates)]
                configured[name] = rate
                doms.append(lab.define_guest(host, name, memory_mib=args.memory_mib, dirty_rate_mibs=rate,
                                             wss_mib=args.wss_mib))
        for host in lab.hosts:
            for i in range(args.defined_vms):
                lab.define_guest(host, f"bench-{host.name}-off-{i}", memory_mib=64, start=False)
        for dom in doms:
            lab.wait_ready(dom)
        uris = [h.uri for h in lab.hosts]
        n_vms = len(doms)
        print(f"lab: {len(uris)} hosts, {args.vms_per_host} running VMs per host ({n_vms} in all) + "
              f"{args.defined_vms} shut-off VMs per host, "
              f"{args.memory_mib} MiB each, wss {args.wss_mib} MiB, rates {rates} MiB/s (TCG guests)")

        for sample_s in (0.0, args.sample_s):
            walls = []
            for _ in range(args.repeats):
                r = collect(uris, timeout_s=10, virt_type="qemu", sample_s=sample_s)
                assert not r.failures, r.failures
                walls.append(r.seconds)
            print(f"collect, no dirty rate, --sample-s {sample_s:g}: wall {statistics.median(walls):.3f} s median of "
                  f"{args.repeats} (min {min(walls):.3f}, max {max(walls):.3f}); per host "
                  f"{statistics.median(r.host_seconds.values()):.3f} s")
        for vm in r.inventory.vms:  # the last run's use figures
            if vm.name in configured:
                print(f"  {vm.name}: rate {configured[vm.name]} MiB/s, cpu_used {vm.cpu_used} cores, "
                      f"memory_used_mib {vm.memory_used_mib} of {vm.memory_mib}")
        print(f"  memory figures from: {dict(r.memory_sources)}")

        for seconds in (int(s) for s in args.seconds.split(",")):
            errors: list[float] = []
            rows = []
            walls = []
            for _ in range(args.repeats):
                r = collect(uris, timeout_s=10, virt_type="qemu", dirty_rate=True, dirty_rate_seconds=seconds)
                walls.append(r.seconds)
                for vm in r.inventory.vms:
                    if vm.name in configured:
                        rows.append((vm.name, configured[vm.name], vm.dirty_rate_mibs))
                        errors.append(vm.dirty_rate_mibs - configured[vm.name])
            print(f"collect --dirty-rate --dirty-rate-seconds {seconds}: wall {statistics.median(walls):.3f} s "
                  f"median of {args.repeats} ({n_vms} VMs measured concurrently)")
            by_rate: dict[int, list[float]] = {}
            for _name, want, got in rows:
                by_rate.setdefault(want, []).append(got)
            for want in sorted(by_rate):
                measured = by_rate[want]
                print(f"  configured {want:3d} MiB/s: measured min {min(measured):6.1f}  median "
                      f"{statistics.median(measured):6.1f}  max {max(measured):6.1f} MiB/s  (n={len(measured)})")
            print(f"  error: mean {statistics.mean(errors):+.2f} MiB/s, max |error| "
                  f"{max(abs(e) for e in errors):.2f} MiB/s")
    finally:
        if not args.keep:
            lab.destroy_all_domains()
        if started:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
