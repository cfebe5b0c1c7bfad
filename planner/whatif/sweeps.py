"""The scenario lists of the sweeps: `--each-host`, `--each-label KEY` and `--host-failures K`.

Every scenario of a sweep is independent of the others (so the executor may run them anywhere).
Each sweep is written in the scenario language, so a sweep row can be re-run alone with
`evac whatif INV --scenario TEXT` and gives the same row.
"""

from __future__ import annotations

import itertools
import math

from planner.errors import Problem, UsageError
from planner.model import HostState, Inventory
from planner.whatif.scenario import COMMAND, Scenario

MAX_FAILURE_SETS = 200_000  # --host-failures 2 on a 600-host fleet is ~180,000 pairs


def each_host(inv: Inventory) -> list[Scenario]:
    """`drain=H` for every host that is up (hosts in maintenance are emptied by every plan anyway)."""
    return [Scenario(text=f"drain={h.name}", drain=(h.name,)) for h in inv.hosts if h.state is HostState.UP]


def each_label(inv: Inventory, key: str) -> list[Scenario]:
    """`drain-label=KEY=V` for every value V of label KEY, sorted; a key no host has is a usage error."""
    values = sorted({h.labels[key] for h in inv.hosts if key in h.labels})
    if not values:
        keys = sorted({k for h in inv.hosts for k in h.labels})
        raise UsageError(COMMAND, [Problem("--each-label", f"no host has label {key!r}; labels: "
                                                           f"{', '.join(keys) or 'none'}")])
    return [Scenario(text=f"drain-label={key}={v}", drain_labels=(f"{key}={v}",)) for v in values]


def host_failures(inv: Inventory, k: int) -> list[Scenario]:
    """`fail=H1,…,Hk` for every set of k hosts that are up and run VMs (a host with none strands nothing)."""
    if k < 1:
        raise UsageError(COMMAND, [Problem("--host-failures", f"{k} must be 1 or more")])
    hosts = [h.name for h in inv.hosts if h.state is HostState.UP and inv.vms_on.get(h.name)]
    count = math.comb(len(hosts), k)
    if count > MAX_FAILURE_SETS:
        raise UsageError(COMMAND, [Problem("--host-failures", f"{count} sets of {k} hosts out of {len(hosts)} "
                                                              f"is more than {MAX_FAILURE_SETS}; try a smaller k")])
    return [Scenario(text="fail=" + ",".join(c), fail=c) for c in itertools.combinations(hosts, k)]
