"""Affinity (final state): the VMs of a group end on as few hosts as they started on (at most; one if they moved)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from planner.migration_facts import affinity_vms
from planner.rules.base import CheckContext, ExplainContext, PlacementModel, PlanRule, Violation


@dataclass(frozen=True, slots=True)
class Affinity(PlanRule):
    """VMs sharing an affinity group end on as few hosts as they started on (at most; one if they moved)."""

    name: ClassVar[str] = "affinity"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        before: dict[str, set[str]] = defaultdict(set)
        after: dict[str, set[str]] = defaultdict(set)
        for vm in affinity_vms(ctx.inventory):
            for g in vm.affinity:
                before[g].add(vm.host)
                after[g].add(ctx.final_host[vm.name])
        return [Violation(self.name, g, None, f"group ends on {len(after[g])} hosts ({', '.join(sorted(after[g]))}),"
                          f" started on {len(before[g])}")
                for g in sorted(after) if len(after[g]) > max(1, len(before[g]))]

    def encode_placement(self, pm: PlacementModel) -> None:
        """Moving members of a group: all or none, onto one host (a staying member's, if any)."""
        m, movers = pm.m, pm.movers
        moving = {v.name for v in movers}
        groups: dict[str, list[str]] = defaultdict(list)
        for v in movers:
            for g in v.affinity:
                groups[g].append(v.name)
        stay_hosts: dict[str, set[str]] = defaultdict(set)
        for v in pm.inventory.vms:
            if v.name not in moving:
                for g in v.affinity:
                    if g in groups:
                        stay_hosts[g].add(v.host)
        by_vm_host = dict(zip(pm.keys, pm.xs, strict=True))
        for g, members in groups.items():
            allowed: set[str] | None = stay_hosts.get(g) or None
            hosts = {h for (vn, h) in by_vm_host if vn in members}
            choice = {h: m.new_bool_var(f"aff_{g}_{h}") for h in sorted(hosts)}
            for h, cv in choice.items():
                m.add_hint(cv, any(pm.hint.get(vn) == h for vn in members))
            m.add(sum(choice.values()) <= 1)
            for (vn, h), xv in by_vm_host.items():
                if vn in members:
                    m.add_implication(xv, choice[h])
                    if allowed is not None and h not in allowed:
                        m.add(xv == 0)
            for a, b in itertools.pairwise(members):
                m.add(pm.placed.get(a, 0) == pm.placed.get(b, 0))

    def explain(self, ec: ExplainContext) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        for g in sorted(ec.vm.affinity):
            moving = [v for v in ec.inventory.vms if g in v.affinity and v.host in ec.drained]
            need = sum(v.memory_mib for v in moving)
            out.append((56, f"affinity group {g}: {len(moving)} VMs to move together ({need} MiB), no single "
                            f"host can take them all"))
        return out


# Registration: the package finds RULE in every module of planner/rules (CHECK_ORDER: where it is checked).
RULE = Affinity()
CHECK_ORDER = 50
