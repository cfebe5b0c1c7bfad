"""Writes the notebooks (what-if, rebalancing) from plain Python cells, so their source is reviewable as code.

Run: .venv/bin/python notebooks/build_notebooks.py   (CI executes the .ipynb files it writes)
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

WHAT_IF_RACKS = [
    ("md", """# What if we drain each rack of the medium fleet?

For every rack of `data/medium.json` (50 hosts, 600 VMs, 4 racks), evac plans the evacuation of the
whole rack, proves a lower bound on how fast *any* plan could be, and measures the same evacuation
under the usual alternatives with the same duration model: the virsh guide's one-at-a-time loop,
OpenStack Watcher's chunks of two, KubeVirt's defaults and Nova's `host-evacuate-live`.

KubeVirt and Nova do not cap migration bandwidth: their migrations may take the whole NIC, starving
tenant traffic, while evac keeps to `policy.migration_share` (here 0.5). For a like-for-like figure the
table also shows evac planned with the cap lifted (`migration_share = 1.0`)."""),
    ("code", """import os, time
from pathlib import Path
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
from dataclasses import replace

ROOT = Path(os.environ.get("EVAC_ROOT", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
import sys; sys.path.insert(0, str(ROOT))  # this checkout's evac, whatever the environment has installed
from planner.inventory import load_inventory
from planner.frames import to_frames
from planner.drain import resolve_drain
from planner.solve import make_plan
from planner.baselines import run_baselines
from planner.checker import check_plan

inv = load_inventory(ROOT / "data" / "medium.json").inventory
TIME_LIMIT_S = float(os.environ.get("EVAC_NB_TIME_LIMIT", "6"))
frames = to_frames(inv)
frames.hosts.groupby(frames.hosts["switch"]).agg(
    hosts=("vm_count", "size"), vms=("vm_count", "sum"),
    memory_used_mib=("memory_used_mib", "sum"), memory_capacity_mib=("memory_capacity_mib", "sum"))"""),
    ("code", """racks = sorted({h.labels["rack"] for h in inv.hosts if "rack" in h.labels})
rows = []
plans = {}
for rack in racks:
    drain = resolve_drain(inv, labels=[f"rack={rack}"])
    t0 = time.monotonic()
    plan = make_plan(inv, drain.hosts, time_limit_s=TIME_LIMIT_S, workers=2, drain_labels=drain.labels)
    assert check_plan(inv, plan) == []   # make_plan already checked it; this notebook checks again
    plans[rack] = plan
    row = {"rack": rack, "hosts drained": len(drain.hosts), "VMs moved": len(plan.migrations),
           "unplaced": len(plan.unplaced), "status": plan.status.value,
           "evac makespan s": round(plan.makespan_s, 1), "lower bound s": round(plan.lower_bound_s, 1),
           "gap": round(plan.gap, 3), "solve s": round(plan.solve_s, 1)}
    uncapped = replace(inv, policy=replace(inv.policy, migration_share=1.0))
    row["evac uncapped s"] = round(make_plan(uncapped, drain.hosts, time_limit_s=TIME_LIMIT_S).makespan_s, 1)
    for b in run_baselines(inv, drain.hosts):
        row[f"{b.name} s"] = round(b.makespan_s, 1)
    rows.append(row)
table = pd.DataFrame(rows).set_index("rack")
table"""),
    ("code", """cols = [c for c in table.columns if c.endswith(" s") and c not in ("solve s",)]
ax = table[cols].plot.bar(figsize=(11, 4.5), logy=True, rot=0)
ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
ax.set_ylabel("makespan, s (log scale)")
ax.set_title("Draining one rack of the medium fleet: evac vs lower bound vs the usual alternatives")
plt.tight_layout()
plt.show()"""),
    ("md", """## What if migration traffic may use more or less of each NIC?

`policy.migration_share` caps the fraction of every NIC and link that migrations may use. Halving it
protects tenant traffic; the plan says what that costs in maintenance time."""),
    ("code", """rack = racks[0]
drain = resolve_drain(inv, labels=[f"rack={rack}"])
share_rows = []
for share in (0.25, 0.5, 0.75):
    what_if = replace(inv, policy=replace(inv.policy, migration_share=share))
    p = make_plan(what_if, drain.hosts, time_limit_s=TIME_LIMIT_S, workers=2)
    share_rows.append({"migration_share": share, "makespan s": round(p.makespan_s, 1),
                       "lower bound s": round(p.lower_bound_s, 1), "gap": round(p.gap, 3)})
pd.DataFrame(share_rows).set_index("migration_share")"""),
    ("md", "## The plan for the first rack, as a Gantt chart (one row per VM, coloured by destination)"),
    ("code", """from planner.report import plan_table   # the report layer: the same frame as evac report's Gantt
plan = plans[racks[0]]
migs = plan_table(plan)
dests = sorted(set(migs["destination"]))
colour = {d: plt.cm.tab20(i % 20) for i, d in enumerate(dests)}
fig, ax = plt.subplots(figsize=(10, 6))
for i, m in enumerate(migs.itertuples()):
    ax.barh(i, m.duration_s, left=m.start_s, color=colour[m.destination], height=0.8)
ax.axvline(plan.lower_bound_s, color="black", linestyle="--", label=f"lower bound {plan.lower_bound_s:.0f} s")
ax.set_xlabel("seconds from start"); ax.set_ylabel("migration"); ax.set_yticks([])
ax.set_title(f"rack {racks[0]}: {len(migs)} migrations, makespan {plan.makespan_s:.0f} s")
ax.legend(loc="lower right")
plt.tight_layout()
plt.show()"""),
]


WHAT_IF_SCENARIOS = [
    ("md", """# What if: two ways to take rack r2 of the medium fleet down

The fleet of `data/medium.json` as pandas frames, then two scenarios side by side, in the scenario
language of `evac whatif` (docs/whatif.md):

* **today**: `drain-label=rack=r2`, the rack emptied with the fleet as it is;
* **quieter, with new hosts**: `drain-label=rack=r2+migration-share=0.3+add-hosts=4:cpus=64,memory_gib=512,rack=r1`:
  migrations may use only 30 % of each NIC and link (tenant traffic keeps the rest), and four new hosts
  join rack r1 first.

Every figure comes from evac's report layer (`planner.report`), the frames `evac report` draws too.
Plans are made with the greedy planner, as `evac whatif` does by default: the same answer every run."""),
    ("code", """import os, sys
from pathlib import Path
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

ROOT = Path(os.environ.get("EVAC_ROOT", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
sys.path.insert(0, str(ROOT))  # this checkout's evac, whatever the environment has installed
from planner.inventory import load_inventory
from planner.frames import to_frames
from planner.whatif import parse_scenarios, prepare, evaluate, host_failures, evaluate_scenario
from planner.report import host_load, plan_table, resource_timeline, peak_utilisation

inv = load_inventory(ROOT / "data" / "medium.json").inventory
frames = to_frames(inv)
hosts = frames.hosts.assign(rack=[inv.host[h].labels.get("rack", "") for h in frames.hosts.index])
hosts.groupby("rack").agg(hosts=("vm_count", "size"), vms=("vm_count", "sum"),
                          memory_used_gib=("memory_used_mib", lambda s: round(s.sum() / 1024)),
                          memory_free_gib=("memory_free_mib", lambda s: round(s.sum() / 1024)),
                          vcpus_used=("vcpus_used", "sum"), vcpus_free=("vcpus_free", "sum"))"""),
    ("code", """SCENARIOS = ["drain-label=rack=r2",
             "drain-label=rack=r2+migration-share=0.3+add-hosts=4:cpus=64,memory_gib=512,rack=r1"]
NAMES = ["today", "quieter, with new hosts"]
prepared = prepare(inv, parse_scenarios(SCENARIOS))
results = [evaluate(p) for p in prepared]
pd.DataFrame([r.row() for r in results], index=NAMES).drop(columns=["scenario"]).T"""),
    ("md", """## Timelines: how many migrations run at each instant, and the busiest uplink against its cap"""),
    ("code", """fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2))
for name, p, r in zip(NAMES, prepared, results):
    migs = plan_table(r.plan)
    events = pd.concat([pd.Series(1, index=migs["start_s"]), pd.Series(-1, index=migs["end_s"])])
    running = events.groupby(level=0).sum().sort_index().cumsum()
    ax1.step(running.index, running.to_numpy(), where="post", label=f"{name}: {r.makespan_s:.0f} s")
    tl = resource_timeline(r.plan, p.inventory)
    links = peak_utilisation(tl[tl["kind"] == "link"])
    busiest = links.sort_values("busy_s", ascending=False)["resource"].iloc[0]
    part = tl[tl["resource"] == busiest]
    line, = ax2.step(part["time_s"], part["utilisation"], where="post", label=f"{name}: {busiest}")
    ax2.axhline(p.inventory.policy.migration_share, color=line.get_color(), linestyle="--", linewidth=1)
ax1.set_xlabel("seconds from start"); ax1.set_ylabel("migrations running"); ax1.legend()
ax1.set_title("migrations in flight")
ax2.set_xlabel("seconds from start"); ax2.set_ylabel("used / capacity"); ax2.set_ylim(0, 1); ax2.legend()
ax2.set_title("busiest uplink (dashed: its cap, migration_share)")
plt.tight_layout()
plt.show()"""),
    ("md", """## Host load before and after (the larger of vCPU and memory use, % of capacity)"""),
    ("code", """fig, axes = plt.subplots(2, 1, figsize=(13, 6.5), sharey=True)
for ax, name, p, r in zip(axes, NAMES, prepared, results):
    load = host_load(p.inventory, r.plan)
    load[["load_pct_before", "load_pct_after"]].plot.bar(ax=ax, width=0.8, color=["#9ecae1", "#08519c"])
    ax.set_title(f"{name}: after, max {r.load_max_pct:.0f} % / min {r.load_min_pct:.0f} % on the hosts left")
    ax.set_ylabel("% of capacity"); ax.set_xlabel(""); ax.tick_params(axis="x", labelsize=6)
plt.tight_layout()
plt.show()"""),
    ("md", """## N+1: if one host fails tonight, do its VMs restart elsewhere?

A failed host's running VMs are restarted, not migrated: only capacity, anti-affinity and the host
rules matter. VMs with local disks die with their host."""),
    ("code", """n1 = [evaluate_scenario(inv, s) for s in host_failures(inv, 1)]
stranded = pd.DataFrame([{"host": r.scenario.removeprefix("fail="), "restarted": r.vms_restarted,
                          "stranded": r.vms_stranded, "why (most VMs)": r.blockers[0].reason if r.blockers else ""}
                         for r in n1]).set_index("host")
print(f"{(stranded['stranded'] > 0).sum()} of {len(stranded)} hosts would strand VMs "
      f"({stranded['stranded'].sum()} VMs in all)")
stranded.sort_values("stranded", ascending=False).head(10)"""),
]


REBALANCING = [
    ("md", """# Rebalancing a skewed fleet: balance against cost

A generated fleet (40 hosts in 4 racks, 400 VMs, `planner.generate.generate_fleet`) with its load piled
onto a fifth of each rack's hosts (`skew_fleet`): some hosts near 90 % of their memory, others nearly empty.
`evac rebalance` (here its core, `planner.reconfigure` with `RebalanceOptions`) levels utilisation with the
fewest GiB moved, never a move that gains less than `min_gain_pct` (no thrashing), every hop safe at every
instant (capacity with the VM counted on both hosts during its move, anti-affinity, bandwidth caps), and
prints the balance-vs-cost ladder: the spread reachable with 1, 2, 4, 8 … moves and what each costs, so
the operator chooses with numbers. Every figure comes from evac's report layer (`planner.report`)."""),
    ("code", """import os, sys
from pathlib import Path
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

ROOT = Path(os.environ.get("EVAC_ROOT", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
sys.path.insert(0, str(ROOT))  # this checkout's evac, whatever the environment has installed
from planner.balance import By, Metric
from planner.checker import check_plan
from planner.generate import generate_fleet, skew_fleet
from planner.plan import PlanKind
from planner.reconfigure import RebalanceOptions, reconfigure
from planner.reconfigure.baseline import most_to_least_rebalance
from planner.report import host_load, in_flight, plan_table

TIME_LIMIT_S = float(os.environ.get("EVAC_NB_TIME_LIMIT", "3"))
inv = skew_fleet(generate_fleet(hosts=40, vms=400, racks=4, seed=2), seed=2)
before = host_load(inv)
before = before.assign(rack=[inv.host[h].labels.get("rack", inv.host[h].switch) for h in before.index])
before.groupby("rack").agg(hosts=("vms_before", "size"), vms=("vms_before", "sum"),
                           memory_max_pct=("memory_pct_before", "max"), memory_min_pct=("memory_pct_before", "min"),
                           memory_mean_pct=("memory_pct_before", "mean")).round(1)"""),
    ("code", """colours = {r: plt.cm.tab10(i) for i, r in enumerate(sorted(before["rack"].unique()))}
order = before.sort_values("memory_pct_before", ascending=False)
fig, ax = plt.subplots(figsize=(13, 3.8))
ax.bar(range(len(order)), order["memory_pct_before"], color=[colours[r] for r in order["rack"]])
ax.set_xticks([]); ax.set_xlabel("hosts, busiest first"); ax.set_ylabel("memory used, % of capacity")
ax.set_title(f"Before: memory spread {order['memory_pct_before'].max() - order['memory_pct_before'].min():.0f} "
             "points (max − min)")
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], labels=list(colours),
          title="rack")
plt.tight_layout()
plt.show()"""),
    ("md", """## The rebalance, and a greedy baseline beside it

The baseline is the usual greedy "most-loaded → least-loaded" (`planner.reconfigure.baseline`): one VM at
a time from the busiest host to the idlest, with the same limits. evac chooses each move for its gain per
GiB, so it reaches the same spread with fewer GiB on the wire."""),
    ("code", """options = RebalanceOptions(metric=Metric.MEMORY, by=By.ALLOCATION, min_gain_pct=1.0)
result = reconfigure(inv, PlanKind.REBALANCE, rebalance_options=options, time_limit_s=TIME_LIMIT_S, workers=1)
plan, b = result.plan, result.plan.balance
assert check_plan(inv, plan) == []   # reconfigure already checked it; the notebook checks again
base = most_to_least_rebalance(inv, (), options)
pd.DataFrame([
    {"plan": "before", "spread %": b.before.spread_pct, "max %": b.before.max_pct, "std-dev": b.before.stddev_pct,
     "moves": 0, "GiB moved": 0.0, "makespan s": 0.0},
    {"plan": "evac", "spread %": b.after.spread_pct, "max %": b.after.max_pct, "std-dev": b.after.stddev_pct,
     "moves": len({m.vm for m in plan.migrations}), "GiB moved": b.moved_gib, "makespan s": plan.makespan_s},
    {"plan": "most → least", "spread %": base.after.spread_pct, "max %": base.after.max_pct,
     "std-dev": base.after.stddev_pct, "moves": len(base.moves), "GiB moved": base.moved_gib, "makespan s": None},
]).set_index("plan").round(1)"""),
    ("md", """## Balance against cost: the ladder

The first k moves evac chose are the best k it found, so the ladder says what stopping early buys: the
spread after 1, 2, 4, 8 … moves, the GiB they move and the minutes they take (each prefix planned and
timed on its own)."""),
    ("code", """ladder = pd.DataFrame([{"moves": r.moves, "spread %": r.spread_pct, "GiB moved": r.moved_gib,
                        "minutes": r.makespan_s / 60} for r in result.ladder]).set_index("moves")
fig, ax = plt.subplots(figsize=(9, 4))
ax.plot(ladder["GiB moved"], ladder["spread %"], marker="o")
for k, row in ladder.iterrows():
    ax.annotate(f"{k} moves, {row['minutes']:.1f} min", (row["GiB moved"], row["spread %"]),
                textcoords="offset points", xytext=(6, 4), fontsize=8)
ax.axhline(base.after.spread_pct, color="grey", linestyle="--", linewidth=1,
           label=f"most → least: {base.moved_gib:.0f} GiB for {base.after.spread_pct:.0f} %")
ax.set_xlabel("GiB moved"); ax.set_ylabel("spread after, % points"); ax.legend()
ax.set_title("Balance vs cost: spread reachable with the first k moves")
plt.tight_layout()
plt.show()
ladder.round(1)"""),
    ("md", """## Load after, and the plan's timeline"""),
    ("code", """load = host_load(inv, plan).loc[order.index]
fig, ax = plt.subplots(figsize=(13, 3.8))
ax.bar(range(len(load)), load["memory_pct_before"], color="#c6dbef", label="before")
ax.bar(range(len(load)), load["memory_pct_after"], width=0.45, color="#08519c", label="after")
ax.set_xticks([]); ax.set_xlabel("hosts, busiest before first"); ax.set_ylabel("memory used, % of capacity")
ax.set_title(f"After: spread {b.after.spread_pct:.0f} points, max {b.after.max_pct:.0f} % "
             f"({len(plan.migrations)} hops, {b.moved_gib:.0f} GiB)")
ax.legend()
plt.tight_layout()
plt.show()"""),
    ("code", """migs = plan_table(plan)
dests = sorted(set(migs["destination"]))
colour = {d: plt.cm.tab20(i % 20) for i, d in enumerate(dests)}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
for i, m in enumerate(migs.itertuples()):
    ax1.barh(i, m.duration_s, left=m.start_s, color=colour[m.destination], height=0.8,
             hatch="//" if m.staging else None)
ax1.axvline(plan.lower_bound_s, color="black", linestyle="--", label=f"lower bound {plan.lower_bound_s:.0f} s")
ax1.set_xlabel("seconds from start"); ax1.set_ylabel("migration (hop)"); ax1.set_yticks([]); ax1.legend()
ax1.invert_yaxis()  # the first hop on top
ax1.set_title(f"{len(migs)} hops, makespan {plan.makespan_s:.0f} s (colour: destination)")
running = in_flight(migs)  # the report layer's step function, as evac report draws it
ax2.step(running.index, running.to_numpy(), where="post")
ax2.set_xlabel("seconds from start"); ax2.set_ylabel("migrations running"); ax2.set_title("in flight")
plt.tight_layout()
plt.show()
print(*result.notes, sep="\\n")"""),
]


def build(cells: list[tuple[str, str]], path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nbformat.write(nb, path)


NOTEBOOKS = {"rebalancing.ipynb": REBALANCING, "what_if_racks.ipynb": WHAT_IF_RACKS,
             "what_if_scenarios.ipynb": WHAT_IF_SCENARIOS}

if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        build(cells, HERE / name)
        print("wrote", HERE / name)
