"""Plan quality side by side, and evac against every baseline like-for-like; writes docs/benchmarks.md.

    .venv/bin/python bench/bench_quality.py                 # before = the code at BEFORE_REF, after = this tree
    .venv/bin/python bench/bench_quality.py --before DIR     # any other tree holding planner/
    .venv/bin/python bench/bench_quality.py --no-large --no-write

1. Gap table: for every bench fleet, `make_plan` of the "before" code and of this tree, run back to
   back in the same script run (each in its own subprocess importing its own tree), alternating
   before/after fleet by fleet so the machine's load hits both alike. Figures: plan time, makespan,
   lower bound, gap = makespan / lower bound, and after/before ratios.
2. Like-for-like table (this tree): the same fleet, placement rule and duration model for everyone,
   at two settings — capped (the fleet's policy: migration_share and slot limits) and uncapped
   (migration_share 1.0 and no slot limits, for everyone) — and at two fixed costs (1.75 s, the
   default, and 0.2 s, the lab's measurement). Each tool's ordering is held to plan v1
   (planner.contract_baselines: one bandwidth per migration, reserved from start to end) and
   checked: those are valid plans. The fluid measurements of planner.baselines (KubeVirt and Nova
   share links with rates changing mid-migration and hold no bandwidth through the fixed cost) are
   shown beside them, labelled: they are not valid plans under plan v1.
The machine (nproc, CPU model, load average) is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleets import LABEL, fleet_named  # after the sys.path line
from executor.outputs import write_atomic
from planner.baselines import ffd_placement, run_baselines
from planner.checker import check_plan
from planner.contract_baselines import contract_plans
from planner.duration import DurationModel
from planner.model import Inventory
from planner.solve import make_plan

ROOT = Path(__file__).resolve().parents[1]
BEFORE_REF = "f2292e2"  # main before this session's plan-quality work (deadline greedy, local search, exact dual cells)
DOC = ROOT / "docs" / "benchmarks.md"
FIXED_COSTS = (1.75, 0.2)
FLEETS = ("small", "medium", "hard", "gen500", "gen5000")

# Runs in a subprocess with the tree under test first on sys.path; prints one JSON line.
WORKER = r"""
import json, sys, time
tree, fleet, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
sys.path.insert(0, tree)
from planner.checker import check_plan
from planner.solve import make_plan
sys.path.insert(0, sys.argv[4])
from bench.fleets import fleet_named
inv, drained = fleet_named(fleet)
t0 = time.monotonic()
plan = make_plan(inv, drained, time_limit_s=limit, workers=2)
s = time.monotonic() - t0
print(json.dumps({"plan_s": s, "makespan_s": plan.makespan_s, "lower_bound_s": plan.lower_bound_s,
                  "moves": len(plan.migrations), "unplaced": len(plan.unplaced), "solver": plan.solver,
                  "valid": check_plan(inv, plan) == []}))
"""

def machine() -> str:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"nproc {os.cpu_count()}, CPU {model}, load average (1/5/15 min) {load}"


def before_tree(ref: str) -> Path:
    """The planner/ of `ref`, extracted from git into a temporary directory (the repository is not touched)."""
    out = Path(tempfile.mkdtemp(prefix="evac-before-"))
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "planner"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(out, filter="data")
    return out


def run_worker(tree: Path, fleet: str, limit: float) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", WORKER, str(tree), fleet, str(limit), str(ROOT)],
                         check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def gap_table(before: Path, fleets: list[str], limit: float, large_limit: float) -> list[str]:
    lines = ["| fleet | moves | unplaced | plan s before → after | makespan before → after "
             "| lower bound before → after | gap before → after | after / before makespan | checker |",
             "|" + "---|" * 9]
    for f in fleets:
        lim = large_limit if f == "gen5000" else limit
        b = run_worker(before, f, lim)
        a = run_worker(ROOT, f, lim)
        print(f"# {f}: before {b} after {a}", file=sys.stderr, flush=True)
        gb, ga = b["makespan_s"] / b["lower_bound_s"], a["makespan_s"] / a["lower_bound_s"]
        lines.append(f"| {LABEL[f]} | {a['moves']:.0f} | {a['unplaced']:.0f} | {b['plan_s']:.1f} → {a['plan_s']:.1f} "
                     f"| {b['makespan_s']:.1f} → {a['makespan_s']:.1f} "
                     f"| {b['lower_bound_s']:.1f} → {a['lower_bound_s']:.1f} "
                     f"| {gb:.3f} → {ga:.3f} | {a['makespan_s'] / b['makespan_s']:.3f} "
                     f"| {'valid' if a['valid'] and b['valid'] else 'INVALID'} |")
    return lines


def _ratio(x: float) -> str:
    return "–" if x != x else f"{x:.2f}"  # NaN: nothing comparable


def uncapped(inv: Inventory) -> Inventory:
    p = replace(inv.policy, migration_share=1.0, max_outbound_per_host=0, max_inbound_per_host=0, max_concurrent=0)
    return replace(inv, policy=p)


def like_for_like(fleets: list[str], limit: float) -> list[str]:
    names = ("sequential", "watcher", "kubevirt", "nova-evacuate-live")
    head = " | ".join(f"{n} (plan v1)" for n in names)
    lines = [f"| fleet | setting | fixed s | evac | {head} | best valid / evac | same placement: best / evac "
             f"| kubevirt fluid (not a plan) | nova fluid (not a plan) | moved evac / FFD |", "|" + "---|" * 12]
    for f in fleets:
        base, drained = fleet_named(f)
        for setting, inv in (("capped", base), ("uncapped", uncapped(base))):
            for fixed in FIXED_COSTS:
                model = DurationModel(fixed_cost_s=fixed)
                t0 = time.monotonic()
                plan = make_plan(inv, drained, time_limit_s=limit, workers=2, model=model)
                plan_s = time.monotonic() - t0
                ok = check_plan(inv, plan, model) == []
                ffd = ffd_placement(inv, drained)
                rivals = contract_plans(inv, drained, model)
                cells, valid = [], []
                for r in rivals:
                    good = check_plan(inv, r, model) == []
                    cells.append(f"{r.makespan_s:.1f}" + ("" if good else " (INVALID)"))
                    if good and len(r.migrations) >= len(plan.migrations):
                        valid.append(r.makespan_s)
                own = contract_plans(inv, drained, model, destination={m.vm: m.destination for m in plan.migrations})
                same = min(r.makespan_s for r in own) / plan.makespan_s if own and plan.makespan_s > 0 else float("nan")
                fluid = {r.name: r.makespan_s for r in run_baselines(inv, drained, model)}
                best = min(valid) / plan.makespan_s if valid and plan.makespan_s > 0 else float("nan")
                mark = "" if ok else " (INVALID)"
                lines.append(f"| {LABEL[f]} | {setting} | {fixed:g} | {plan.makespan_s:.1f}{mark} "
                             f"| {' | '.join(cells)} | {_ratio(best)} | {_ratio(same)} | {fluid['kubevirt']:.1f} "
                             f"| {fluid['nova-evacuate-live']:.1f} | {len(plan.migrations)} / {len(ffd.destination)} |")
                print(f"# {f} {setting} fixed {fixed}: evac {plan.makespan_s:.1f} ({plan_s:.1f} s) {cells}",
                      file=sys.stderr, flush=True)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, help="a tree holding the planner/ to compare with (default: BEFORE_REF)")
    ap.add_argument("--before-ref", default=BEFORE_REF)
    ap.add_argument("--time-limit", type=float, default=9.0)
    ap.add_argument("--large-time-limit", type=float, default=25.0)
    ap.add_argument("--no-large", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write docs/benchmarks.md")
    a = ap.parse_args()
    before = a.before or before_tree(a.before_ref)
    fleets = [f for f in FLEETS if not (a.no_large and f == "gen5000")]
    start = machine()
    gaps = gap_table(before, fleets, a.time_limit, a.large_time_limit)
    lfl = like_for_like([f for f in fleets if f != "gen5000"], a.time_limit)
    end = machine()
    doc = "\n".join([
        "# Benchmarks",
        "",
        "Generated by `bench/bench_quality.py` (`make bench`); do not edit by hand.",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine at the start: {start}; at the end: {end}.",
        "The machine may be shared with other work: absolute times vary with its load, so every comparison is",
        "a ratio of two figures measured in this same run.",
        "",
        "## Plan quality: before and after, side by side",
        "",
        f"`make_plan` with a {a.time_limit:g} s time limit ({a.large_time_limit:g} s for the 5,000-host fleet;",
        f"it bounds the whole call); \"before\" is the planner at {a.before or a.before_ref}, \"after\" this",
        "tree, each fleet run before then after in its own subprocess. gap = makespan / lower bound (both proven",
        "for the same inventory, drain set and duration model; a lower bound that rises is a tighter proof).",
        "",
        *gaps,
        "",
        "## Like-for-like: evac against every baseline, same limits for all",
        "",
        "Same fleet, drain set and duration model for everyone. *capped*: the fleet's policy (migration_share",
        "and slot limits); *uncapped*: migration_share 1.0 and no slot limits, for everyone. Fixed cost per",
        "migration 1.75 s (the default) and 0.2 s (the lab's measurement). Baselines use FFD placement. The",
        "\"(plan v1)\" columns are each tool's ordering held to plan v1 (planner.contract_baselines: one",
        "bandwidth per migration, reserved from its start to its end, fixed cost included), checked by the",
        "checker: valid plans. *best valid / evac* = the shortest valid baseline that moves at least as many VMs",
        "over evac's makespan (≥ 1.00: evac is no longer; – when FFD leaves more VMs behind, which is no",
        "like-for-like). *same placement*: the four orderings, held to plan v1, on evac's own placement (the",
        "ordering alone compared). The *fluid* columns are planner.baselines'",
        "measurements of what KubeVirt and Nova do (rates change mid-migration, no bandwidth held through the",
        "fixed cost, uncapped): NOT valid plans under plan v1, shown for reference only. Which measurements",
        "of planner.baselines are valid plans: `sequential` yes (its plan-v1 column is the same schedule);",
        "`watcher` as measured runs both migrations of a chunk at the full cap, which breaks the bandwidth rule",
        "whenever they share a NIC (bench/bench_plan.py prints those figures); `kubevirt` and `nova` no.",
        "",
        *lfl,
        "",
        "## Lab accuracy of the duration model",
        "",
        "See [lab-accuracy.md](lab-accuracy.md), written by `bench/bench_lab_accuracy.py` (real lab: predicted vs",
        "measured makespan and per migration on held-out scenarios, before and after `evac calibrate`).",
        "",
    ])
    print(doc)
    if not a.no_write:
        write_atomic(DOC, doc, "benchmarks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
