"""Anti-affinity at every instant: two VMs sharing a group are never on one host at once (nor at the end).

A VM is present on its source until its hop ENDS and on its destination from its hop STARTS. A pair of
members already sharing a host before the plan is not blamed (not the plan's fault).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from ortools.sat.python import cp_model

from planner.migration_facts import anti_affinity_vms
from planner.rules.base import CheckContext, ExplainContext, MovesModel, PlacementModel, PlanRule, Violation


@dataclass(frozen=True, slots=True)
class AntiAffinity(PlanRule):
    """Two VMs sharing an anti-affinity group are never on one host at once (nor at the end)."""

    name: ClassVar[str] = "anti-affinity"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        inf = float("inf")
        # (group, host) -> [(start, end, vm, initial)]
        presence: dict[tuple[str, str], list[tuple[float, float, str, bool]]] = defaultdict(list)
        # Only a pair with one member not on its initial host is ever blamed, and only a VM that migrates
        # is anywhere else: a group none of whose members migrates cannot be violated and is skipped
        # (the others are visited in the same order, so the same violations come out in the same order).
        moved = {g for name in ctx.hops for g in ctx.inventory.vm[name].anti_affinity}
        for vm in anti_affinity_vms(ctx.inventory):
            if moved.isdisjoint(vm.anti_affinity):
                continue
            hops = [ctx.known[i][0] for i in ctx.hops.get(vm.name, ())]
            # On its host until its first hop ends, then on each hop's destination from that hop's start
            # until the next hop ends (a VM counts on both hosts while it migrates).
            stays: list[tuple[str, float, float, bool]] = [(vm.host, 0.0, hops[0].end_s if hops else inf, True)]
            for n, m in enumerate(hops):
                stays.append((m.destination, m.start_s, hops[n + 1].end_s if n + 1 < len(hops) else inf, False))
            for g in vm.anti_affinity:
                if g not in moved:
                    continue
                for host, start, end, initial in stays:
                    presence[(g, host)].append((start, end, vm.name, initial))
        out: list[Violation] = []
        for (g, host), ivs in presence.items():
            if len(ivs) < 2:
                continue
            ivs.sort()
            active: list[tuple[float, float, str, bool]] = []
            for iv in ivs:
                active = [a for a in active if a[1] > iv[0]]
                for a in active:
                    if a[2] != iv[2] and not (a[3] and iv[3]):
                        out.append(Violation(self.name, g, iv[0],
                                             f"{a[2]} and {iv[2]} are both on {host}"))
                active.append(iv)
        return out

    def encode_placement(self, pm: PlacementModel) -> None:
        """At most one VM of a group per host (hosts where a staying VM has the group are no candidates)."""
        by_group_host: dict[tuple[str, str], list[cp_model.IntVar]] = defaultdict(list)
        vm_by_name = pm.inventory.vm
        for (v, h), xv in zip(pm.keys, pm.xs, strict=True):
            for g in vm_by_name[v].anti_affinity:
                by_group_host[(g, h)].append(xv)
        for xs_list in by_group_host.values():
            if len(xs_list) > 1:
                pm.m.add_at_most_one(xs_list)

    def encode_moves(self, mm: MovesModel) -> None:
        """Per host that hops both leave and enter, the stays of one group's members never overlap
        (`add_no_overlap`; VMs that never move there as fixed intervals). When two members already share
        such a host the checker excuses that pair only, which no_overlap cannot say: `unsupported`."""
        if not mm.turning_hosts:
            return
        inv = mm.inv
        moving = set(mm.chains)
        for host in sorted(mm.turning_hosts):
            groups: dict[str, list[cp_model.IntervalVar]] = defaultdict(list)
            initial: dict[str, int] = defaultdict(int)
            for name, arrive, leave, by in mm.stays(host):
                gs = inv.vm[name].anti_affinity
                if not gs:
                    continue
                iv = mm.stay_interval(arrive, leave)
                for g in gs:
                    groups[g].append(iv)
                    initial[g] += by is None
            for g, members in groups.items():
                still = [v for v in inv.vms_on.get(host, ()) if v.name not in moving and g in v.anti_affinity]
                if initial[g] + len(still) > 1:
                    mm.unsupported = f"anti-affinity group {g} already shares host {host}"
                    return
                members += [mm.m.new_fixed_size_interval_var(0, mm.horizon, f"stay_{v.name}") for v in still]
                if len(members) > 1:
                    mm.m.add_no_overlap(members)

    def explain(self, ec: ExplainContext) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        for g in sorted(ec.vm.anti_affinity):
            members = [v.name for v in ec.inventory.vms if g in v.anti_affinity]
            if not [h for h in ec.compatible if g not in ec.groups_at[h]]:
                out.append((57, f"anti_affinity group {g}: {len(members)} VMs, {len(ec.compatible)} candidate hosts, "
                                f"every one already holds a VM of the group"))
        return out


# Registration: the package finds RULE in every module of planner/rules (CHECK_ORDER: where it is checked).
RULE = AntiAffinity()
CHECK_ORDER = 40
