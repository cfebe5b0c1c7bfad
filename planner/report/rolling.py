"""A rolling maintenance as tables: one row per phase of every round (drain, maintenance, return).

Reads the `evac-rolling/1` document (`planner.whatif.rolling.Roll.to_dict()`, or `rolling.json` read
back), so `evac rolling`'s table, `evac report rolling.json` and the notebooks draw the same timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

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
