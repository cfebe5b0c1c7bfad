"""Migration slots: max_outbound_per_host, max_inbound_per_host and max_concurrent at every instant."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from ortools.sat.python import cp_model

from planner.rules.base import CheckContext, MovesModel, PlanRule, Violation, add_cumulative, sweep_max


@dataclass(frozen=True, slots=True)
class ConcurrencyLimits(PlanRule):
    """max_outbound_per_host, max_inbound_per_host and max_concurrent at every instant."""

    name: ClassVar[str] = "concurrency"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        p = ctx.inventory.policy
        out_ivs: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        in_ivs: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        all_ivs: list[tuple[float, float, float]] = []
        for m, _vm in ctx.known:
            if m.end_s <= m.start_s:
                continue
            iv = (m.start_s, m.end_s, 1.0)
            out_ivs[m.source].append(iv)
            in_ivs[m.destination].append(iv)
            all_ivs.append(iv)
        out: list[Violation] = []
        for label, groups, limit in (("outbound", out_ivs, p.max_outbound_per_host),
                                     ("inbound", in_ivs, p.max_inbound_per_host)):
            if limit <= 0:
                continue
            for host, ivs in groups.items():
                for t, _total, count in sweep_max(ivs):
                    if count > limit:
                        out.append(Violation(self.name, host, t, f"{count} {label} migrations, limit {limit}"))
                        break
        if p.max_concurrent > 0:
            for t, _total, count in sweep_max(all_ivs):
                if count > p.max_concurrent:
                    out.append(Violation(self.name, "plan", t,
                                         f"{count} concurrent migrations, limit {p.max_concurrent}"))
                    break
        return out

    def encode_moves(self, mm: MovesModel) -> None:
        """A cumulative of count 1 per hop interval for each limit a group of hops could exceed."""
        p = mm.policy
        by_source: dict[str, list[cp_model.IntervalVar]] = defaultdict(list)
        by_dest: dict[str, list[cp_model.IntervalVar]] = defaultdict(list)
        everything: list[cp_model.IntervalVar] = []
        for mv in mm.moves:
            for o in mv.options:
                by_source[mv.source].append(o.interval)
                by_dest[mv.destination].append(o.interval)
                everything.append(o.interval)
        hops_from = defaultdict(int, {h: sum(1 for mv in mm.moves if mv.source == h) for h in by_source})
        hops_into = defaultdict(int, {h: sum(1 for mv in mm.moves if mv.destination == h) for h in by_dest})
        for groups, counts, limit in ((by_source, hops_from, p.max_outbound_per_host),
                                      (by_dest, hops_into, p.max_inbound_per_host)):
            if limit > 0:
                for host, ivs in groups.items():
                    if counts[host] > limit:
                        add_cumulative(mm.m, [(iv, 1) for iv in ivs], limit)
        if 0 < p.max_concurrent < len(mm.moves):
            add_cumulative(mm.m, [(iv, 1) for iv in everything], p.max_concurrent)


# Registration: the package finds RULE in every module of planner/rules (CHECK_ORDER: where it is checked).
RULE = ConcurrencyLimits()
CHECK_ORDER = 20
