"""Does the simulated fleet reproduce the plan it runs? Simulated makespan / planned makespan per fleet.

The fleet follows the duration model the plan used (no jitter, no faults), so any gap is the executor's
or the simulator's own. Each fleet is planned once and run side by side in one process:

* `virtual`: the simulated fleet on virtual time (executor.sim_hv.VirtualClock: simulated time passes
  only while every thread of the run waits; what `evac demo` and `evac run --simulate` use now);
* `old run`: the old clock, wall time × `--speedup` (the executor's own work — journal commits, thread
  starts — counted `speedup` times in simulated time), and the old dispatch (whatever has room starts,
  early or not: the monitor without its backfilling rule); `demo-old` (demo fleet only): the old demo
  exactly, that and a 15 % bandwidth jitter.

Beside them, `dispatch`: the monitor's dispatch of model durations (planner.monitor.dispatch_hop_times):
what the run must reproduce if nothing else lags; `old dispatch`: the same without backfilling. `plan`
rounds each duration up to its schedule grid (0.1 s), so a faithful run may end a little before the plan.

Fleets: the demo (data/small.json, its maintenance host), the four racks of data/medium.json, a generated
fleet (60 hosts / 360 VMs, one rack drained), and two multi-hop target plans (a swap of two full hosts
beside twelve independent moves; a rebalance of a skewed generated fleet).

Prints figures; asserts only that every run completed. Usage:
    .venv/bin/python bench/bench_sim_fidelity.py [--speedup 20] [--time-limit 5] [--no-wall]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor.journal import Journal
from executor.reporter import Reporter
from executor.runner import RunOptions, RunResult, run_plan
from executor.sim_hv import SimulatedHypervisor
from planner.duration import estimate
from planner.inventory import load_inventory
from planner.model import HostState, Inventory
from planner.monitor import PlanMonitor, dispatch_hop_times, hop_key
from planner.plan import Migration, Plan, PlanKind

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Fleet:
    name: str
    inventory: Inventory
    plan: Plan


def _drain(name: str, inv: Inventory, hosts: list[str], time_limit_s: float) -> Fleet:
    from planner.solve import make_plan

    return Fleet(name, inv, make_plan(inv, hosts, time_limit_s=time_limit_s, workers=2))


def _swap_beside_moves(time_limit_s: float) -> Fleet:
    """Two full hosts swap their VMs (one staging hop through c) beside twelve independent moves."""
    from planner.reconfigure import make_reconfiguration
    from tests._planner_fixtures import swap_beside_moves

    inv, target = swap_beside_moves()
    plan = make_reconfiguration(inv, PlanKind.TARGET, target=target, time_limit_s=time_limit_s, workers=2)
    return Fleet("target: swap + 12 moves", inv, plan)


def _rebalance(time_limit_s: float) -> Fleet:
    from planner.generate import generate_fleet, skew_fleet
    from planner.reconfigure import make_reconfiguration

    inv = skew_fleet(generate_fleet(hosts=40, vms=240, racks=4, seed=3), hot_share=0.2, fill=0.9, seed=3)
    plan = make_reconfiguration(inv, PlanKind.REBALANCE, time_limit_s=time_limit_s, workers=2)
    return Fleet("rebalance: skewed 40 hosts", inv, plan)


def fleets(time_limit_s: float) -> list[Fleet]:
    from planner.generate import generate_fleet

    small = load_inventory(ROOT / "data" / "small.json").inventory
    out = [_drain("demo (small.json)", small, [h.name for h in small.hosts if h.state is HostState.MAINTENANCE],
                  time_limit_s)]
    medium = load_inventory(ROOT / "data" / "medium.json").inventory
    for rack in sorted({h.labels.get("rack", "") for h in medium.hosts} - {""}):
        out.append(_drain(f"medium rack {rack}", medium, [h.name for h in medium.hosts if h.labels.get("rack") == rack],
                          time_limit_s))
    gen = generate_fleet(hosts=60, vms=360, racks=6, seed=5)
    out.append(_drain("generated 60 hosts, rack r6", gen, [h.name for h in gen.hosts if h.labels.get("rack") == "r6"],
                      time_limit_s))
    out.append(_swap_beside_moves(time_limit_s))
    out.append(_rebalance(time_limit_s))
    return out


def run(fleet: Fleet, hv: SimulatedHypervisor) -> tuple[RunResult, float]:
    with tempfile.TemporaryDirectory() as d:
        journal = Journal.open(Path(d) / "journal.db", fleet.plan)
        t0 = time.monotonic()
        try:
            result = run_plan(fleet.plan, fleet.inventory, hv, journal, Reporter(), RunOptions(backoff_s=5.0))
        finally:
            journal.close()
    assert result.ok, f"{fleet.name}: the run did not complete"
    return result, time.monotonic() - t0


def dispatch_makespan(fleet: Fleet) -> float:
    """The monitor's dispatch when every hop lasts exactly its model duration."""
    inv = fleet.inventory
    model_s = {hop_key(m): estimate(inv.vm[m.vm].memory_mib, inv.vm[m.vm].dirty_rate_mibs, m.bandwidth_mibs,
                                    inv.policy.max_downtime_ms, m.disk_mib, m.live, m.auto_converge).duration_s
               for m in fleet.plan.migrations}
    return max((end for _, end in dispatch_hop_times(fleet.plan, inv, duration_s=model_s).values()), default=0.0)


@contextlib.contextmanager
def old_dispatch() -> Iterator[None]:
    """The monitor as it was: whatever has room starts, early or not (no backfilling rule)."""
    new = PlanMonitor.startable

    def resources_only(self: PlanMonitor, now_s: float = math.inf) -> list[Migration]:
        return new(self, math.inf)

    PlanMonitor.startable = resources_only  # type: ignore[method-assign]
    try:
        yield
    finally:
        PlanMonitor.startable = new  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--speedup", type=float, default=20.0, help="wall-clock runs: simulated seconds per wall second "
                                                                 "(the demo's default)")
    ap.add_argument("--time-limit", type=float, default=5.0, help="planner time limit per fleet")
    ap.add_argument("--no-wall", action="store_true", help="skip the old wall-clock runs")
    args = ap.parse_args()
    print(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}; wall-clock runs at {args.speedup:g}×")
    rows: list[tuple[str, ...]] = []
    for fleet in fleets(args.time_limit):
        plan = fleet.plan
        hops = sum(1 for m in plan.migrations if m.hop > 0)
        virtual, vwall = run(fleet, SimulatedHypervisor(fleet.inventory, speedup=math.inf, virtual_time=True))
        with old_dispatch():
            old_dispatch_ratio = dispatch_makespan(fleet) / plan.makespan_s
        cells = [fleet.name, f"{len(plan.migrations)}" + (f" ({hops} later hops)" if hops else ""),
                 f"{plan.makespan_s:.1f}", f"{dispatch_makespan(fleet) / plan.makespan_s:.3f}",
                 f"{virtual.makespan_s / plan.makespan_s:.3f}", f"{vwall:.1f}", f"{old_dispatch_ratio:.3f}"]
        if not args.no_wall:
            variants = [("wall", 0.0)] + ([("demo-old", 0.15)] if fleet.name.startswith("demo") else [])
            shown = []
            for label, jitter in variants:
                with old_dispatch():
                    old, _ = run(fleet, SimulatedHypervisor(fleet.inventory, speedup=args.speedup, jitter=jitter,
                                                            seed=1))
                shown.append(f"{old.makespan_s / plan.makespan_s:.3f}" + (f" ({label})" if label != "wall" else ""))
            cells.append(", ".join(shown))
        rows.append(tuple(cells))
        print("  " + " | ".join(cells), flush=True)
    header = ("fleet", "migrations", "plan s", "dispatch/plan", "virtual/plan", "virtual wall s", "old dispatch/plan")
    header += () if args.no_wall else (f"old run/plan at {args.speedup:g}×",)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
