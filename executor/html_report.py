"""`evac report --html`: one self-contained HTML page (plotly, its JavaScript embedded: no network at view time).

Every chart is drawn from a frame of the report layer (planner.report): the Gantt by host
(`host_timeline`), by wave (`plan_table`), bandwidth per NIC and link against the cap
(`resource_timeline`), host load before/after (`host_load`), planned against executed
(`run_table`), and for a what-if result its comparison table and timelines.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.offline import get_plotlyjs

from planner.model import Inventory
from planner.plan import Plan
from planner.report import (
    host_load,
    host_timeline,
    in_flight,
    peak_utilisation,
    plan_table,
    resource_timeline,
    run_table,
    wave_table,
)
from planner.report.runs import ExecutedRow

MAX_GANTT_ROWS = 120  # hosts or VMs drawn in one Gantt (the busiest); the tables have every row
MAX_RESOURCES = 12  # NIC/link directions drawn in the bandwidth chart (the busiest)
STATE_COLOURS = {"done": "#2ca02c", "failed": "#d62728", "aborted": "#ff7f0e", "quarantined": "#9467bd",
                 "pending": "#7f7f7f"}
CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1350px}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;display:block;overflow-x:auto;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.ok{color:#2ca02c}.bad{color:#d62728}
.chart{margin:8px 0 16px 0}.note{color:#666;font-size:.9em}"""


def _div(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return '<div class="chart">' + fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                                               config={"displaylogo": False, "responsive": True}) + "</div>"


def _table(frame: pd.DataFrame, max_rows: int = 200) -> str:
    shown = frame.head(max_rows)
    note = f'<p class="note">{len(frame) - max_rows} more rows not shown</p>' if len(frame) > max_rows else ""
    return shown.to_html(index=False, float_format=lambda x: f"{x:.1f}", border=0, escape=True) + note


def gantt_by_host(plan: Plan) -> go.Figure:
    """One row per host; each migration a bar on its source (out) and on its destination (in)."""
    frame = host_timeline(plan)
    busiest = frame.groupby("host")["gib"].sum().sort_values(ascending=False).head(MAX_GANTT_ROWS).index
    frame = frame[frame["host"].isin(busiest)]
    fig = go.Figure()
    for direction, colour in (("out", "#1f77b4"), ("in", "#ff7f0e")):
        part = frame[frame["direction"] == direction]
        fig.add_trace(go.Bar(
            x=part["end_s"] - part["start_s"], base=part["start_s"], y=part["host"], orientation="h",
            name=f"migrating {direction}", marker_color=colour, opacity=0.75,
            customdata=part[["vm", "peer", "wave"]].to_numpy(),
            hovertemplate="%{customdata[0]} " + ("→" if direction == "out" else "←")
                          + " %{customdata[1]}<br>wave %{customdata[2]}<br>%{base:.1f}–%{x:.1f} s<extra></extra>"))
    fig.update_layout(barmode="overlay", title="Gantt by host (out of drained hosts, into destinations)",
                      xaxis_title="seconds since the start", height=max(320, 18 * len(busiest) + 120))
    fig.update_yaxes(autorange="reversed", categoryorder="category ascending")
    return fig


def _wave_colours(waves: list[int]) -> list[str]:
    top = max(waves, default=0) or 1
    return sample_colorscale("Viridis", [w / top for w in waves])


def gantt_by_wave(plan: Plan) -> go.Figure:
    """One row per VM in start order, coloured by wave."""
    frame = plan_table(plan).head(MAX_GANTT_ROWS * 2)
    fig = go.Figure(go.Bar(
        x=frame["duration_s"], base=frame["start_s"], y=frame["vm"], orientation="h",
        # colours computed here: plotly.js warns on every bar when it maps a numeric colour array itself
        marker={"color": _wave_colours(frame["wave"].tolist())},
        customdata=frame[["source", "destination", "wave", "gib"]].to_numpy(),
        hovertemplate="%{y}: %{customdata[0]} → %{customdata[1]}<br>wave %{customdata[2]}, "
                      "%{customdata[3]:.1f} GiB<br>%{base:.1f} s + %{x:.1f} s<extra></extra>"))
    fig.update_layout(title=f"Gantt by wave ({len(plan.waves)} waves; colour: wave, dark first)",
                      xaxis_title="seconds since the start",
                      height=max(320, 12 * len(frame) + 120), showlegend=False)
    fig.update_yaxes(autorange="reversed", showticklabels=len(frame) <= 80)
    return fig


def bandwidth_chart(plan: Plan, inventory: Inventory) -> go.Figure:
    """Utilisation of the busiest NIC and link directions over time, with the cap (migration_share)."""
    timeline = resource_timeline(plan, inventory)
    peaks = peak_utilisation(timeline)
    busiest = peaks.sort_values(["busy_s", "resource"], ascending=[False, True])["resource"].head(MAX_RESOURCES)
    fig = go.Figure()
    for name in busiest:
        part = timeline[timeline["resource"] == name]
        kind = part["kind"].iloc[0]
        fig.add_trace(go.Scatter(x=part["time_s"], y=part["utilisation"], mode="lines", line_shape="hv",
                                 name=f"{name} ({kind})"))
    share = inventory.policy.migration_share
    end = max((m.end_s for m in plan.migrations), default=1.0)
    fig.add_trace(go.Scatter(x=[0, end], y=[share, share], mode="lines", name=f"cap: migration_share {share:g}",
                             line={"dash": "dash", "color": "#d62728", "width": 2}))
    fig.update_layout(title=f"Bandwidth per NIC and link direction (the {len(busiest)} busiest), "
                            "fraction of nominal capacity", xaxis_title="seconds since the start",
                      yaxis_title="used / capacity", yaxis_range=[0, 1.05], height=460)
    return fig


def load_chart(inventory: Inventory, plan: Plan | None) -> go.Figure:
    """Load per host (the larger of vCPU and memory %) before and after the plan."""
    load = host_load(inventory, plan)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=load.index, y=load["load_pct_before"], name="before", marker_color="#9ecae1"))
    fig.add_trace(go.Bar(x=load.index, y=load["load_pct_after"], name="after", marker_color="#08519c"))
    fig.update_layout(barmode="group", title="Host load before / after (max of vCPU and memory, % of capacity)",
                      yaxis_title="% of capacity", height=420)
    return fig


def planned_vs_executed(plan: Plan, executed: Sequence[ExecutedRow]) -> go.Figure:
    frame = run_table(plan, executed).head(MAX_GANTT_ROWS * 2)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=frame["planned_end_s"] - frame["planned_start_s"], base=frame["planned_start_s"],
                         y=frame["vm"], orientation="h", name="planned", marker_color="#c6dbef"))
    ran = frame.dropna(subset=["started_s", "ended_s"])
    for state, part in ran.groupby("state"):
        fig.add_trace(go.Bar(x=part["ended_s"] - part["started_s"], base=part["started_s"], y=part["vm"],
                             orientation="h", name=f"executed ({state})", width=0.45,
                             marker_color=STATE_COLOURS.get(str(state), "#444")))
    fig.update_layout(barmode="overlay", title="Planned against executed", xaxis_title="seconds since the run started",
                      height=max(320, 12 * len(frame) + 120))
    fig.update_yaxes(autorange="reversed", showticklabels=len(frame) <= 80)
    return fig


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>\n")


def plan_page(plan: Plan, inventory: Inventory | None, executed: Sequence[ExecutedRow] | None = None,
              title: str = "evac plan report") -> str:
    """The page for a plan (and its run, when `executed` is given)."""
    status_class = "bad" if plan.unplaced else "ok"
    summary = pd.DataFrame([{
        "status": plan.status.value, "solver": plan.solver, "hosts drained": len(plan.drained),
        "migrations": len(plan.migrations), "waves": len(plan.waves), "makespan s": plan.makespan_s,
        "lower bound s": plan.lower_bound_s, "gap": round(plan.gap, 3),
        "GiB moved": sum(m.memory_mib + m.disk_mib for m in plan.migrations) / 1024,
        "VMs that cannot move": len(plan.unplaced), "not converging": sum(not m.converges for m in plan.migrations)}])
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="{status_class}">drains {html.escape(", ".join(plan.drained[:20]))}'
            + (" …" if len(plan.drained) > 20 else "") + "</p>", "<h2>Summary</h2>", _table(summary)]
    if executed is not None:
        runs = run_table(plan, executed)
        counts = runs["state"].value_counts().to_dict()
        done_end = runs["ended_s"].max()
        body += ["<h2>Planned against executed</h2>",
                 f"<p>executed makespan {0.0 if pd.isna(done_end) else done_end:.1f} s against planned "
                 f"{plan.makespan_s:.1f} s; states: "
                 + html.escape(", ".join(f"{k} {v}" for k, v in sorted(counts.items()))) + "</p>",
                 _div(planned_vs_executed(plan, executed), "planned-vs-executed"),
                 _table(runs[["vm", "state", "attempts", "planned_start_s", "planned_end_s", "started_s",
                              "ended_s", "late_s", "error"]])]
    if plan.migrations:
        body += ["<h2>Gantt by host</h2>", _div(gantt_by_host(plan), "gantt-host"),
                 "<h2>Gantt by wave</h2>", _div(gantt_by_wave(plan), "gantt-wave"), _table(wave_table(plan))]
    if inventory is not None and plan.migrations:
        peaks = peak_utilisation(resource_timeline(plan, inventory))
        body += ["<h2>Bandwidth per NIC and link</h2>", _div(bandwidth_chart(plan, inventory), "bandwidth"),
                 _table(peaks.head(30))]
    if inventory is not None:
        body += ["<h2>Host load before / after</h2>", _div(load_chart(inventory, plan), "load")]
    body.append("<h2>Blockers</h2>")
    if plan.unplaced:
        body.append(_table(pd.DataFrame([{"vm": u.vm, "reasons": "; ".join(u.reasons)} for u in plan.unplaced])))
    else:
        body.append('<p class="ok">none: every VM of the drained hosts moves</p>')
    return _page(title, body)


def whatif_page(document: dict[str, Any], title: str = "evac what-if report") -> str:
    """The page for an `evac whatif --json` result: the comparison table, makespans, and each timeline."""
    from planner.plan import plan_from_dict

    scenarios = document.get("scenarios", [])
    rows = pd.DataFrame([{k: s.get(k) for k in ("scenario", "feasible", "vms_moved", "vms_restarted", "vms_stranded",
                                                "makespan_s", "lower_bound_s", "gib_moved", "peak_nic_util",
                                                "peak_link_util", "not_converging", "load_max_pct",
                                                "load_min_pct", "top_blocker")} for s in scenarios])
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{html.escape(str(document.get('mode', '')))} on {html.escape(str(document.get('inventory', '')))}: "
            f"{len(scenarios)} scenarios, {int(rows['feasible'].sum()) if len(rows) else 0} feasible</p>",
            "<h2>Comparison</h2>", _table(rows, max_rows=500)]
    if len(rows):
        colours = ["#2ca02c" if f else "#d62728" for f in rows["feasible"]]
        fig = go.Figure(go.Bar(x=rows["scenario"], y=rows["makespan_s"], marker_color=colours, name="makespan"))
        fig.add_trace(go.Scatter(x=rows["scenario"], y=rows["lower_bound_s"], mode="markers", name="lower bound",
                                 marker={"symbol": "line-ew-open", "size": 18, "color": "#000"}))
        fig.update_layout(title="Makespan per scenario (green feasible, red not), with its lower bound",
                          yaxis_title="seconds", height=440)
        body.append(_div(fig, "makespans"))
    timeline = go.Figure()
    drawn = 0
    for s in scenarios[:MAX_RESOURCES]:
        if not s.get("plan"):
            continue
        frame = plan_table(plan_from_dict(s["plan"], f"scenario {s['scenario']}"))
        if frame.empty:
            continue
        steps = in_flight(frame)
        timeline.add_trace(go.Scatter(x=[0.0, *steps.index], y=[0, *steps.to_numpy()], mode="lines", line_shape="hv",
                                      name=s["scenario"]))
        drawn += 1
    if drawn:
        timeline.update_layout(title="Timeline: migrations running at each instant, per scenario",
                               xaxis_title="seconds since the start", yaxis_title="migrations running", height=440)
        body += ["<h2>Timelines</h2>", _div(timeline, "timelines")]
    blockers = [{"scenario": s["scenario"], "reason": b["reason"], "VMs": b["vms"], "e.g.": ", ".join(b["examples"])}
                for s in scenarios for b in s.get("blockers", [])]
    body.append("<h2>Blockers</h2>")
    body.append(_table(pd.DataFrame(blockers), max_rows=500) if blockers
                else '<p class="ok">none: every scenario is feasible</p>')
    return _page(title, body)


PHASE_COLOURS = {"drain": "#1f77b4", "maintenance": "#bbbbbb", "return": "#2ca02c"}


def rolling_page(document: dict[str, Any], plans: dict[str, Plan] | None = None,
                 title: str = "evac rolling maintenance report") -> str:
    """The page for an `evac rolling` result (rolling.json): its rounds, the roll's timeline, hosts not rolled.

    `plans` (file name -> plan, the round files found beside rolling.json) add the migrations in flight
    over the whole roll, each plan shifted to its phase's start."""
    from planner.report import roll_migrations, roll_rounds, roll_timeline
    from planner.report.rolling import clock

    rounds, phases = roll_rounds(document), roll_timeline(document)
    state = '<span class="ok">every host rolled, every VM home</span>' if document["feasible"] else \
        '<span class="bad">not every host can be rolled or every VM brought home</span>'
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{html.escape(str(document['mode']))} on {html.escape(str(document.get('inventory', '')))}: "
            f"{len(rounds)} rounds, {clock(float(document['total_s']))} in all "
            f"(drains {float(document['drain_s']) / 60:.1f} min, returns {float(document['return_s']) / 60:.1f} min); "
            f"{state}</p>", "<h2>Rounds</h2>", _table(rounds, max_rows=1000)]
    if len(phases):
        fig = go.Figure()
        for phase, part in phases.groupby("phase", sort=False):
            fig.add_trace(go.Bar(y=[f"round {r}" for r in part["round"]], x=part["duration_s"] / 60,
                                 base=part["start_s"] / 60, orientation="h", name=str(phase),
                                 marker_color=PHASE_COLOURS.get(str(phase), "#444"),
                                 hovertext=part["hosts"], hovertemplate="%{y} %{fullData.name}: %{base:.1f}–"
                                                                        "%{x:.1f} min<br>%{hovertext}<extra></extra>"))
        fig.update_layout(barmode="overlay", title="The roll: each round's drain, maintenance and return",
                          xaxis_title="minutes since the roll started", height=max(300, 28 * len(rounds) + 140))
        fig.update_yaxes(autorange="reversed")
        body += ["<h2>Timeline</h2>", _div(fig, "roll-timeline")]
    migrations = roll_migrations(document, plans or {})
    if len(migrations):
        steps = in_flight(migrations)
        fig = go.Figure(go.Scatter(x=[0.0, *(steps.index / 60)], y=[0, *steps.to_numpy()], mode="lines",
                                   line_shape="hv", name="migrations running"))
        fig.update_layout(title="Migrations running at each instant of the roll", xaxis_title="minutes since the "
                          "roll started", yaxis_title="migrations running", height=380)
        body += ["<h2>Migrations in flight</h2>", _div(fig, "roll-in-flight")]
    body.append("<h2>Not rolled</h2>")
    lost = pd.DataFrame([{"host": u.get("host"), "group": u.get("group"), "why": u.get("reason")}
                         for u in document.get("unrollable", []) if isinstance(u, dict)])
    body.append(_table(lost) if len(lost) else '<p class="ok">none: every host that is up is rolled</p>')
    notes = [str(n) for n in document.get("notes", [])] + [f"round {r['round']}: {n}" for r in document["rounds"]
                                                           for n in r.get("notes", [])]
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return _page(title, body)
