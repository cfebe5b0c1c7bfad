"""The report layer: plans, timelines, host load and run results as pandas DataFrames.

Pure functions of plain data (plan, inventory, executed rows). The CLI tables (`evac whatif`,
`evac report`), the HTML report, the demo's Gantt chart and the notebooks all draw from these
frames, so every picture of a plan says the same thing.

* `plan_table(plan)`: one row per migration; `in_flight(frame)`: how many run at each instant.
* `wave_table(plan)`: one row per wave.
* `host_timeline(plan)`: one row per (host, migration): what leaves and enters each host, when.
* `resource_timeline(plan, inventory)`: per NIC and link direction, bandwidth used over time
  against the cap (`capacity × migration_share`); `peak_utilisation` summarises it.
* `host_load(inventory, plan)`: every host's CPU and memory use before and after the plan.
* `run_table(plan, executed)`: planned against executed per VM (from a RunResult or a journal).
* `roll_timeline(document)`, `roll_rounds(document)`, `roll_migrations(document, plans)`: a rolling
  maintenance (`evac rolling`), per phase of every round, per round, and every migration on the roll's clock.
"""

from planner.report.load import after_inventory, host_load, load_extremes
from planner.report.network import peak_utilisation, resource_kind, resource_timeline
from planner.report.rolling import roll_migrations, roll_rounds, roll_timeline
from planner.report.runs import ExecutedRow, run_table
from planner.report.tables import host_timeline, in_flight, plan_table, wave_table

__all__ = ["ExecutedRow", "after_inventory", "host_load", "host_timeline", "in_flight", "load_extremes",
           "peak_utilisation", "plan_table", "resource_kind", "resource_timeline", "roll_migrations", "roll_rounds",
           "roll_timeline", "run_table", "wave_table"]
