"""What-if analysis: scenarios (drain, fail, add hosts, policy changes), sweeps and N+1, all pure.

`parse_scenarios` → `prepare` (checked against the inventory) → `evaluate` (one comparison row per
scenario). `sweeps` builds the scenario lists of `--each-host`, `--each-label` and `--host-failures`.
The executor runs them serially or on Dask; nothing here knows how.
"""

from planner.whatif.evaluate import Blocker, ScenarioResult, Settings, evaluate, evaluate_scenario, rank_blockers
from planner.whatif.restart import Restart, restart_placement
from planner.whatif.scenario import Prepared, Scenario, parse_scenarios, prepare
from planner.whatif.sweeps import each_host, each_label, host_failures

__all__ = ["Blocker", "Prepared", "Restart", "Scenario", "ScenarioResult", "Settings", "each_host", "each_label",
           "evaluate", "evaluate_scenario", "host_failures", "parse_scenarios", "prepare", "rank_blockers",
           "restart_placement"]
