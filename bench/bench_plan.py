"""Plan quality and speed on every data/ fleet and a generated one; prints a markdown table (and CSV with --csv).

    .venv/bin/python bench/bench_plan.py            # data/*.json (one rack or one host drained) + 500-host fleet
    .venv/bin/python bench/bench_plan.py --large    # also 5,000 hosts / 30,000 VMs draining 250 hosts

Columns: plan time (s), makespan (s), lower bound (s), gap = makespan / lower bound, checker verdict,
and each baseline's makespan (same duration model, FFD placement; kubevirt and nova are UNCAPPED:
they ignore migration_share, so they are not valid plans, only what those tools would do).
Targets (issue 11): gap ≤ 1.05 on every feasible fleet up to 3,000 VMs within 10 s of planning (small and
hard leave VMs unplaced: infeasible), ≤ 1.08 on the 5,000-host / 30,000-VM fleet within 30 s.
The time limit bounds the whole make_plan call (see docs/planner.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from planner.baselines import run_baselines
from planner.checker import check_plan
from planner.generate import generate_fleet
from planner.inventory import load_inventory
from planner.model import Inventory
from planner.solve import make_plan

DATA = Path(__file__).resolve().parent.parent / "data"
BASELINES = ("sequential", "watcher", "kubevirt", "nova-evacuate-live")


def rack_hosts(inv: Inventory, rack: str) -> list[str]:
    return [h.name for h in inv.hosts if h.labels.get("rack") == rack]


def run(name: str, inv: Inventory, drained: list[str], time_limit_s: float, baselines: bool) -> dict[str, str]:
    t0 = time.monotonic()
    plan = make_plan(inv, drained, time_limit_s=time_limit_s, workers=2)
    plan_s = time.monotonic() - t0
    violations = check_plan(inv, plan)
    row = {"fleet": name, "hosts": str(len(inv.hosts)), "vms": str(len(inv.vms)), "drained": str(len(drained)),
           "moves": str(len(plan.migrations)), "unplaced": str(len(plan.unplaced)), "status": plan.status.value,
           "solver": plan.solver, "plan_s": f"{plan_s:.1f}", "makespan_s": f"{plan.makespan_s:.1f}",
           "lower_bound_s": f"{plan.lower_bound_s:.1f}", "gap": f"{plan.gap:.3f}",
           "checker": "valid" if not violations else f"{len(violations)} violations"}
    if baselines:
        results = {r.name: r.makespan_s for r in run_baselines(inv, drained)}
        for b in BASELINES:
            row[b] = f"{results[b]:.1f}" if b in results else "-"
    print(f"# {name}: {row}", file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", action="store_true", help="add the 5,000-host / 30,000-VM fleet")
    ap.add_argument("--csv", action="store_true", help="print CSV instead of markdown")
    ap.add_argument("--time-limit", type=float, default=9.0, help="time limit per fleet (the whole make_plan call), s")
    args = ap.parse_args()
    rows = []
    for path in sorted(DATA.glob("*.json")):
        inv = load_inventory(path).inventory
        racks = sorted({h.labels["rack"] for h in inv.hosts if "rack" in h.labels})
        drained = rack_hosts(inv, racks[0]) if racks else [inv.hosts[0].name]
        rows.append(run(f"{path.stem} ({'rack ' + racks[0] if racks else inv.hosts[0].name})", inv, drained,
                        args.time_limit, True))
    gen = generate_fleet(hosts=500, vms=3000, racks=25, seed=7)
    # the generator fills racks unevenly (r1 holds few VMs): drain the last rack, the fullest
    rows.append(run("generated 500h/3000vm, rack r25", gen, rack_hosts(gen, "r25"), args.time_limit, True))
    if args.large:
        big = generate_fleet(hosts=5000, vms=30000, racks=100, seed=11)
        drained = [h.name for h in big.hosts if h.labels.get("rack") in {f"r{i}" for i in range(96, 101)}][:250]
        rows.append(run("generated 5000h/30000vm, 250 hosts", big, drained, 25.0, False))
    cols = list(rows[0].keys()) + [b for b in BASELINES if b not in rows[0]]
    if args.csv:
        print(",".join(cols))
        for r in rows:
            print(",".join(r.get(c, "-") for c in cols))
    else:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(r.get(c, "-") for c in cols) + " |")


if __name__ == "__main__":
    main()
