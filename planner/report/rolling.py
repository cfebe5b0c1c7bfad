"""A rolling maintenance as tables: one row per phase of every round (drain, maintenance, return).

Reads the `evac-rolling/1` document (`planner.whatif.rolling.Roll.to_dict()`, or `rolling.json` read
back), so `evac rolling`'s table, `evac report rolling.json` and the notebooks draw the same timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from planner.plan import Plan
from planner.report.tables import PLAN_COLUMNS, plan_table

ROLL_COLUMNS = ("round", "group", "hosts", "phase", "start_s", "end_s", "duration_s")
ROUND_COLUMNS = ("round", "group", "hosts", "vms", "drain_s", "maintenance_s", "return_s", "start_s", "end_s",
                 "feasible")


def clock(seconds: float) -> str:
    """1:02:03 (hours:minutes:seconds) for a point or length on the roll's clock."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def roll_timeline(document: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (round, phase) in time order: when each round's drain, maintenance and return run."""
    rows = []
    for r in document.get("rounds", []):
        hosts = ",".join(r["hosts"])
        for p in r["phases"]:
            rows.append((r["round"], r["group"], hosts, p["phase"], float(p["start_s"]), float(p["end_s"]),
                         float(p["end_s"]) - float(p["start_s"])))
    return pd.DataFrame(rows, columns=list(ROLL_COLUMNS))


def roll_rounds(document: Mapping[str, Any]) -> pd.DataFrame:
    """One row per round: its hosts, VMs drained, drain / maintenance / return seconds, start and end."""
    rows = [(r["round"], r["group"], len(r["hosts"]), r["vms_drained"], float(r["drain_s"]),
             float(r["maintenance_s"]), float(r["return_s"]), float(r["start_s"]), float(r["end_s"]), r["feasible"])
            for r in document.get("rounds", [])]
    return pd.DataFrame(rows, columns=list(ROUND_COLUMNS))


def roll_migrations(document: Mapping[str, Any], plans: Mapping[str, Plan]) -> pd.DataFrame:
    """Every migration of the roll on its clock: `plan_table` of each round's drain and return plan (by the
    file names the document gives, looked up in `plans`), shifted to its phase's start, with `round` and
    `phase` columns. A round whose plan is not in `plans` contributes nothing."""
    parts = []
    for r in document.get("rounds", []):
        starts = {p["phase"]: float(p["start_s"]) for p in r["phases"]}
        for key, phase in (("drain_plan", "drain"), ("return_plan", "return")):
            plan = plans.get(str(r.get(key)))
            if plan is None or not plan.migrations or phase not in starts:
                continue
            frame = plan_table(plan)
            frame["start_s"] += starts[phase]
            frame["end_s"] += starts[phase]
            parts.append(frame.assign(round=r["round"], phase=phase))
    if not parts:
        return pd.DataFrame(columns=["round", "phase", *PLAN_COLUMNS])
    frame = pd.concat(parts, ignore_index=True)
    return frame[["round", "phase", *PLAN_COLUMNS]]
