"""CP-SAT for a reconfiguration's sequence: same hops as the greedy one, better start times and bandwidths.

The greedy sequence (`sequence`) fixes each VM's route (its hops, staging ones included); this model
re-times them, the greedy as its hint and its horizon:
* per hop, a start and one optional fixed-size interval per bandwidth level (exactly one present);
  a VM's hops in order (the next starts once the previous has ended);
* every plan-level rule of `planner.rules` encodes itself on the hops (`encode_moves`), as in the
  drain's model: `add_cumulative` on every NIC and link direction (bandwidth in 0.001 MiB/s); the
  slot limits (outbound per source, inbound per destination, max_concurrent); host capacity at every
  instant, as BtrPlace models it (a VM holds its source until its hop ENDS and its destination from
  its hop STARTS: one interval per stay in a cumulative per resource); anti-affinity (the stays of one
  group's members on one host never overlap). Capacity and anti-affinity are needed only on hosts
  that hops both leave and enter (elsewhere the peak is the start or the end state, whatever the
  timing). A rule that cannot be stated (members of a group already sharing such a host) leaves the
  model unused.
Objective: the makespan. A result is used only when it is shorter than the greedy one.
"""

from __future__ import annotations

import itertools

from ortools.sat.python import cp_model

from planner.model import Inventory
from planner.reconfigure.sequence import Hop, Sequence
from planner.rules import plan_rules
from planner.rules.base import MoveOption, MovesModel, MoveVars
from planner.schedule import resource_caps
from planner.topology import Topology

MIN_SOLVE_S = 0.2


def improve(inventory: Inventory, seq: Sequence, topology: Topology, *, time_limit_s: float,
            workers: int) -> Sequence | None:
    """A shorter timing of `seq`'s hops, or None (nothing better found, no time, or a case not modelled)."""
    hops = list(seq.hops)
    horizon = seq.makespan_units
    if len(hops) < 2 or time_limit_s < MIN_SOLVE_S or horizon <= 0:
        return None
    p = inventory.policy
    m = cp_model.CpModel()
    start = [m.new_int_var(0, horizon, f"s{i}") for i in range(len(hops))]
    end = [m.new_int_var(0, horizon, f"e{i}") for i in range(len(hops))]
    makespan = m.new_int_var(0, horizon, "makespan")
    chosen: list[list[tuple[cp_model.IntVar, int]]] = []
    moves: list[MoveVars] = []
    for i, h in enumerate(hops):
        opts = []
        options = []
        for li, lvl in enumerate(h.task.levels):
            if lvl.duration_units > horizon:
                continue
            pv = m.new_bool_var(f"l{i}_{li}")
            iv = m.new_optional_fixed_size_interval_var(start[i], lvl.duration_units, pv, f"iv{i}_{li}")
            m.add(end[i] == start[i] + lvl.duration_units).only_enforce_if(pv)
            opts.append((pv, li))
            options.append(MoveOption(iv, lvl.duration_units, pv, lvl.demand))
            m.add_hint(pv, li == h.level)
        m.add_exactly_one([pv for pv, _ in opts])
        chosen.append(opts)
        moves.append(MoveVars(h.vm, h.hop, h.task.facts.source, h.task.facts.destination, start[i], options,
                              h.task.resources, end[i]))
        m.add(makespan >= end[i])
        m.add_hint(start[i], h.start_units)
        m.add_hint(end[i], h.end_units)
    m.add_hint(makespan, horizon)
    caps = resource_caps([h.task for h in hops], topology, p.migration_share)
    rules_model = MovesModel(m, p, inventory, moves, horizon, caps)
    for ix in rules_model.chains.values():
        for a, b in itertools.pairwise(ix):
            m.add(start[b] >= end[a])
    # Bandwidth, slots, host capacity and anti-affinity over time: every plan-level rule (planner.rules).
    for rule in plan_rules():
        rule.encode_moves(rules_model)
    if rules_model.unsupported is not None:
        return None
    m.minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = max(1, workers)
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE) or solver.value(makespan) >= horizon:
        return None
    out = []
    for i, h in enumerate(hops):
        level = next(li for pv, li in chosen[i] if solver.boolean_value(pv))
        out.append(Hop(h.task, level, solver.value(start[i]), h.hop, h.staging))
    out.sort(key=lambda h: (h.start_units, h.vm, h.hop))
    return Sequence(tuple(out), seq.blocked)

