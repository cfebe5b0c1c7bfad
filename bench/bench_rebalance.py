"""Rebalancing a skewed fleet: evac against greedy most-loaded → least-loaded, in the same run; a markdown table.

    .venv/bin/python bench/bench_rebalance.py            # 500 hosts / 3,000 VMs (generate_fleet, then skew_fleet)
    .venv/bin/python bench/bench_rebalance.py --large    # also 5,000 hosts / 30,000 VMs (target: < 60 s)

Per fleet and target spread: spread before and after (memory by allocation), moves and GiB moved by evac
and by the baseline (`planner.reconfigure.baseline.most_to_least_rebalance`) and their ratios, evac's makespan,
lower bound and gap, its plan time (the whole `reconfigure` call: repairs, choice, greedy sequence, the
CP-SAT re-timing in what is left of `--time-limit` (up to 2,000 hops), bound, checker, and the
balance-vs-cost ladder, which comes on top) and the checker's verdict. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from planner.checker import check_plan
from planner.generate import generate_fleet, skew_fleet
from planner.model import Inventory
from planner.plan import PlanKind
from planner.reconfigure import RebalanceOptions, reconfigure
from planner.reconfigure.baseline import most_to_least_rebalance


def run(name: str, inv: Inventory, target: float | None, ladder: bool, time_limit_s: float) -> dict[str, str]:
    options = RebalanceOptions(target_spread_pct=target)
    t0 = time.monotonic()
    result = reconfigure(inv, PlanKind.REBALANCE, rebalance_options=options, ladder=ladder,
                         time_limit_s=time_limit_s)
    plan_s = time.monotonic() - t0
    plan, b = result.plan, result.plan.balance
    assert b is not None
    t1 = time.monotonic()
    base = most_to_least_rebalance(inv, (), options)
    base_s = time.monotonic() - t1
    moves = len({m.vm for m in plan.migrations})
    violations = check_plan(inv, plan)
    row = {"fleet": name, "target %": "-" if target is None else f"{target:g}",
           "spread before %": f"{b.before.spread_pct:.1f}", "evac after %": f"{b.after.spread_pct:.1f}",
           "baseline after %": f"{base.after.spread_pct:.1f}", "evac moves": str(moves),
           "baseline moves": str(len(base.moves)),
           "moves ratio": f"{moves / len(base.moves):.2f}" if base.moves else "-",
           "evac GiB": f"{b.moved_gib:.0f}", "baseline GiB": f"{base.moved_gib:.0f}",
           "GiB ratio": f"{b.moved_gib / base.moved_gib:.2f}" if base.moved_gib else "-",
           "staged": str(sum(m.staging for m in plan.migrations)), "solver": plan.solver,
           "makespan s": f"{plan.makespan_s:.0f}",
           "lower bound s": f"{plan.lower_bound_s:.0f}", "gap": f"{plan.gap:.2f}", "plan s": f"{plan_s:.1f}",
           "baseline s": f"{base_s:.1f}", "checker": "valid" if not violations else f"{len(violations)} violations"}
    print(f"# {name}: {row}", file=sys.stderr, flush=True)
    for r in result.ladder:
        print(f"#   ladder {r.moves:>5} moves: spread {r.spread_pct:5.1f} %, {r.moved_gib:8.0f} GiB, "
              f"{r.makespan_s / 60:6.1f} min", file=sys.stderr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", action="store_true", help="add the 5,000-host / 30,000-VM fleet")
    ap.add_argument("--time-limit", type=float, default=10.0,
                    help="reconfigure's time limit (CP-SAT uses what is left)")
    args = ap.parse_args()
    rows = []
    medium = skew_fleet(generate_fleet(hosts=500, vms=3000, racks=25, seed=7), seed=7)
    for target in (None, 40.0, 30.0):
        rows.append(run("500h/3000vm skewed", medium, target, ladder=target is None, time_limit_s=args.time_limit))
    if args.large:
        big = skew_fleet(generate_fleet(hosts=5000, vms=30000, racks=100, seed=11), seed=11)
        rows.append(run("5000h/30000vm skewed", big, None, ladder=True, time_limit_s=args.time_limit))
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
