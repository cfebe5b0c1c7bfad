"""NIC and link bandwidth at every instant: per direction, Σ bandwidth of active migrations ≤ capacity × share."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from ortools.sat.python import cp_model

from planner.rules.base import (
    BANDWIDTH_ABS_TOL_MIBS,
    CheckContext,
    MovesModel,
    PlanRule,
    Violation,
    add_cumulative,
    sweep_max,
)
from planner.topology import Resource, Topology


@dataclass(frozen=True, slots=True)
class ResourceBandwidth(PlanRule):
    """Per NIC direction and link direction: Σ bandwidth of active migrations ≤ capacity × share."""

    name: ClassVar[str] = "link-bandwidth"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        share = ctx.inventory.policy.migration_share
        per_resource: dict[Resource, list[tuple[float, float, float]]] = defaultdict(list)
        graph = ctx.topo.graph
        for m, _vm in ctx.known:
            if m.end_s <= m.start_s:
                continue
            for r in Topology.resources(tuple(m.path)):
                if graph.has_edge(*r):
                    per_resource[r].append((m.start_s, m.end_s, m.bandwidth_mibs))
        out: list[Violation] = []
        for r, ivs in per_resource.items():
            cap = ctx.topo.capacity_mibs(r) * share
            for t, total, count in sweep_max(ivs):
                if total > cap * (1 + 1e-9) + BANDWIDTH_ABS_TOL_MIBS * count:
                    out.append(Violation(self.name, f"{r[0]}->{r[1]}", t,
                                         f"{count} migrations use {total:.3f} MiB/s, capped capacity is "
                                         f"{cap:.3f} MiB/s"))
                    break  # first instant per resource is enough to act on
        return out

    def encode_moves(self, mm: MovesModel) -> None:
        """`add_cumulative` per NIC and link direction: each option's interval takes its bandwidth."""
        by_resource: dict[Resource, list[tuple[cp_model.IntervalVar, int]]] = defaultdict(list)
        for mv in mm.moves:
            for o in mv.options:
                for r in mv.resources:
                    by_resource[r].append((o.interval, o.demand_milli))
        for r, items in by_resource.items():
            add_cumulative(mm.m, items, mm.caps_milli[r])


# Registration: the package finds RULE in every module of planner/rules (CHECK_ORDER: where it is checked).
RULE = ResourceBandwidth()
CHECK_ORDER = 10
