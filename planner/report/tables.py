"""A plan as tables: per migration, per wave, and per host (what leaves and enters it, when)."""

from __future__ import annotations

import pandas as pd

from planner.plan import Plan
from planner.units import mib_to_gib

PLAN_COLUMNS = ("vm", "source", "destination", "wave", "start_s", "end_s", "duration_s", "bandwidth_mibs",
                "memory_gib", "disk_gib", "gib", "path", "copy_storage", "live", "converges", "auto_converge",
                "predicted_downtime_ms", "priority", "hop", "staging")
WAVE_COLUMNS = ("wave", "vms", "first_vms", "start_s", "end_s", "gib")
HOST_TIMELINE_COLUMNS = ("host", "direction", "vm", "peer", "wave", "start_s", "end_s", "gib")


def plan_table(plan: Plan) -> pd.DataFrame:
    """One row per migration, in start order; `gib` is memory plus copied disk."""
    rows = [(m.vm, m.source, m.destination, m.wave, m.start_s, m.end_s, m.duration_s, m.bandwidth_mibs,
             mib_to_gib(m.memory_mib), mib_to_gib(m.disk_mib), mib_to_gib(m.memory_mib + m.disk_mib),
             " > ".join(m.path), ",".join(m.copy_storage), m.live, m.converges, m.auto_converge,
             m.predicted_downtime_ms, m.priority, m.hop, m.staging)
            for m in sorted(plan.migrations, key=lambda m: (m.start_s, m.vm))]
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS))


def wave_table(plan: Plan, names_shown: int = 4) -> pd.DataFrame:
    """One row per wave: how many VMs (and the first few names), when it starts and ends, GiB moved."""
    rows = []
    for w, migs in plan.waves.items():
        names = ", ".join(m.vm for m in migs[:names_shown]) + (
            f" +{len(migs) - names_shown}" if len(migs) > names_shown else "")
        rows.append((w, len(migs), names, min(m.start_s for m in migs), max(m.end_s for m in migs),
                     mib_to_gib(sum(m.memory_mib + m.disk_mib for m in migs))))
    return pd.DataFrame(rows, columns=list(WAVE_COLUMNS))


def in_flight(migrations: pd.DataFrame) -> pd.Series:
    """Migrations running at each instant: a step function (index: seconds, value: count from then on),
    from any frame with `start_s` and `end_s` (`plan_table`'s, or several plans' shifted onto one clock)."""
    events = pd.concat([pd.Series(1, index=migrations["start_s"].to_numpy()),
                        pd.Series(-1, index=migrations["end_s"].to_numpy())])
    return events.groupby(level=0).sum().sort_index().cumsum()


def host_timeline(plan: Plan) -> pd.DataFrame:
    """Two rows per migration: `out` on its source, `in` on its destination (a Gantt by host)."""
    rows = []
    for m in plan.migrations:
        gib = mib_to_gib(m.memory_mib + m.disk_mib)
        rows.append((m.source, "out", m.vm, m.destination, m.wave, m.start_s, m.end_s, gib))
        rows.append((m.destination, "in", m.vm, m.source, m.wave, m.start_s, m.end_s, gib))
    frame = pd.DataFrame(rows, columns=list(HOST_TIMELINE_COLUMNS))
    return frame.sort_values(["host", "start_s", "vm"], kind="stable").reset_index(drop=True)
