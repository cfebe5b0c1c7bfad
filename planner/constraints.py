"""The rules of plan v1, each a small declarative value with a solver-free checker (STYLE §3).

A rule is a frozen dataclass with `name` and `violations(ctx) -> list[Violation]`. The plan-level
rules that the solvers must also be told (capacity and anti-affinity at every instant, affinity,
migration slots) live in `planner.rules`, one module each with its CP-SAT encoding and explanation;
this module holds the structural rules (who moves, hop chains, facts, durations, bandwidth, end state,
totals, waves) and `all_rules()` puts both together in checking order. Rules are checked at EVERY instant, with a
sweep over start/end events (a migration is active on [start_s, end_s); at one instant ends are
applied before starts), so a 30,000-migration plan checks in seconds.

What is checked beyond the letter of plan v1, and why:
* Hosts to empty = `plan.drained` ∪ hosts in `maintenance`.
* A plan is a rebalance (VMs on other hosts may move) when `CheckContext.rebalance` is true; the
  checker's default is "rebalance iff nothing is drained".
* Waves: all migrations of one wave have the same `start_s` ("migrations of wave k start
  together"), and a higher wave never starts earlier than a lower one (two waves may start at one
  instant). Wave numbers need not be contiguous.
* Capacity is judged against max(usage before the plan, capacity): a host already overloaded is
  not the plan's fault, but the plan may never make it worse.
* Anti-affinity: a pair of group members already sharing a host before the plan is not blamed;
  every other overlap of their presence on one host is (a VM is present on its source until its
  `end_s` and on its destination from its `start_s`).
* Affinity (final state): a group may not end on more hosts than it started on (at least one).
* Copied disk room is never given back on a source (libvirt leaves the source image).
* Reconfiguration plans (every `kind` but `drain`): a VM's migrations are its hops, in start order,
  numbered 0, 1, … (`hop`), never overlapping, each leaving where the previous one ended, and
  `staging` exactly on all but the last. Every hop's destination must suit the VM as a final one
  would. A misplaced VM (`planner.repair`) ends on a host that suits it or is unplaced, and no two
  members of an anti-affinity group end on one host. `target` plans end every VM named in `target`
  there (`return` plans too: their `target` is each returning VM's home); `rebalance` plans carry a
  `balance` that the final placement reproduces.
Tolerances absorb the 3-decimal rounding of plan files: times 1e-3 s, relative 1e-3 on durations,
bandwidth sums 1e-3 MiB/s per active migration plus 1e-9 relative.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from planner.balance import By, Metric, moved_gib, spread, utilisation
from planner.host_rules import needs_of, suits
from planner.migration_facts import copy_storage_targets, eligible, vms_on_hosts
from planner.model import HostState
from planner.plan import Migration, PlanKind, PlanStatus
from planner.repair import misplaced
from planner.rules import Affinity, AntiAffinity, Capacity, ConcurrencyLimits, ResourceBandwidth, plan_rules
from planner.rules.base import (
    BANDWIDTH_ABS_TOL_MIBS,
    DURATION_REL_TOL,
    TIME_TOL_S,
    CheckContext,
    Rule,
    Violation,
    sweep_max,
)

# Re-exported: the checker's vocabulary has always been importable from here.
__all__ = ["BANDWIDTH_ABS_TOL_MIBS", "DURATION_REL_TOL", "TIME_TOL_S", "Affinity", "AntiAffinity", "Capacity",
           "CheckContext", "ConcurrencyLimits", "ResourceBandwidth", "Rule", "Violation", "all_rules", "sweep_max"]

# ---------------------------------------------------------------- who moves


@dataclass(frozen=True, slots=True)
class KnownVMsAndHosts:
    """Every VM and host the plan names exists in the inventory."""

    name: ClassVar[str] = "known"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        out: list[Violation] = []
        hosts, vms = ctx.inventory.host, ctx.inventory.vm
        for h in ctx.plan.drained:
            if h not in hosts:
                out.append(Violation(self.name, h, None, "drained host is not in the inventory"))
        for m in ctx.plan.migrations:
            if m.vm not in vms:
                out.append(Violation(self.name, m.vm, None, "migrated VM is not in the inventory"))
            for h in (m.source, m.destination):
                if h not in hosts:
                    out.append(Violation(self.name, m.vm, None, f"host {h} is not in the inventory"))
        for u in ctx.plan.unplaced:
            if u.vm not in vms:
                out.append(Violation(self.name, u.vm, None, "unplaced VM is not in the inventory"))
        return out


@dataclass(frozen=True, slots=True)
class DrainedHostsEmptied:
    """Every VM of a drained or maintenance host moves or is listed as unplaced."""

    name: ClassVar[str] = "drain"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        moving = {m.vm for m in ctx.plan.migrations}
        unplaced = {u.vm for u in ctx.plan.unplaced}
        out: list[Violation] = []
        for v in vms_on_hosts(ctx.inventory, ctx.drained):  # the VMs of drained hosts, in inventory order
            if v.name in unplaced:
                continue
            if v.name not in moving:
                out.append(Violation(self.name, v.name, None, f"VM on drained host {v.host} neither moves nor is "
                                                              f"unplaced"))
            elif ctx.final_host.get(v.name) in ctx.drained:
                out.append(Violation(self.name, v.name, None, f"ends on drained host {ctx.final_host[v.name]}"))
        return out


@dataclass(frozen=True, slots=True)
class OnlyDrainedMove:
    """Outside a rebalance, only VMs of hosts being emptied move."""

    name: ClassVar[str] = "only-drained-move"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        if ctx.plan.kind is PlanKind.REPAIR:  # only what is drained or misplaced moves
            broken = misplaced(ctx.inventory)
            return [Violation(self.name, m.vm, m.start_s, f"moves from {vm.host}, which is not being drained, "
                                                          f"and the VM is not misplaced there")
                    for m, vm in ctx.known if vm.host not in ctx.drained and vm.name not in broken]
        if ctx.is_rebalance:
            return []
        return [Violation(self.name, m.vm, m.start_s, f"moves from {m.source}, which is not being drained")
                for m, vm in ctx.known if vm.host not in ctx.drained]


@dataclass(frozen=True, slots=True)
class AtMostOnce:
    """In a drain a VM migrates at most once; in other kinds its hops form one chain (module
    docstring); a VM that migrates is not also unplaced."""

    name: ClassVar[str] = "at-most-once"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        out: list[Violation] = []
        seen: set[str] = set()
        if not ctx.plan.kind.hops_allowed:
            for m in ctx.plan.migrations:
                if m.vm in seen:
                    out.append(Violation(self.name, m.vm, m.start_s, "migrates more than once"))
                seen.add(m.vm)
        else:
            seen = set(ctx.hops)
            out += self._chains(ctx)
        for u in ctx.plan.unplaced:
            if u.vm in seen:
                out.append(Violation(self.name, u.vm, None, "is both migrated and unplaced"))
        return out

    def _chains(self, ctx: CheckContext) -> list[Violation]:
        out: list[Violation] = []
        for vm, ix in ctx.hops.items():
            migs = [ctx.known[i][0] for i in ix]
            for n, m in enumerate(migs):
                if m.hop != n:
                    out.append(Violation(self.name, vm, m.start_s, f"hop {m.hop} is the VM's migration #{n} "
                                                                   f"in start order"))
                if m.staging != (n < len(migs) - 1):
                    out.append(Violation(self.name, vm, m.start_s, f"staging={m.staging} but this hop is "
                                         + ("not the last" if n < len(migs) - 1 else "the last")))
            for a, b in itertools.pairwise(migs):
                if b.start_s < a.end_s - TIME_TOL_S:
                    out.append(Violation(self.name, vm, b.start_s, f"hop {b.hop} starts at {b.start_s:.3f} s, "
                                                                   f"before hop {a.hop} ends ({a.end_s:.3f} s)"))
        return out


@dataclass(frozen=True, slots=True)
class StatusMatchesUnplaced:
    """`infeasible` exactly when some VM is unplaced."""

    name: ClassVar[str] = "status"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        infeasible = ctx.plan.status is PlanStatus.INFEASIBLE
        if bool(ctx.plan.unplaced) != infeasible:
            return [Violation(self.name, "plan", None, f"status {ctx.plan.status.value} with "
                              f"{len(ctx.plan.unplaced)} unplaced VMs")]
        return []


# ---------------------------------------------------------------- one migration at a time


@dataclass(frozen=True, slots=True)
class MigrationFactsMatch:
    """Source, destination eligibility, path, copy_storage, live: what `migration_facts` derives."""

    name: ClassVar[str] = "migration-facts"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        out: list[Violation] = []
        hosts = ctx.inventory.host
        for i, (m, vm) in enumerate(ctx.known):
            def bad(msg: str, m: Migration = m) -> None:
                out.append(Violation(self.name, m.vm, m.start_s, msg))
            leaves = ctx.leaves_from[i]
            if m.source != leaves:
                bad(f"source {m.source} is not the VM's host {vm.host}" if leaves == vm.host
                    else f"source {m.source} is not where the previous hop ended ({leaves})")
            dest = hosts.get(m.destination)
            if dest is not None:
                for reason in eligible(vm, dest, ctx.inventory, ctx.drained, source=leaves):
                    bad(f"destination not eligible: {reason}")
            src = hosts.get(vm.host)
            if leaves == vm.host and src is not None and src.state is HostState.DOWN and vm.live:
                bad(f"source host {vm.host} is down: its VMs cannot be live-migrated")
            if m.source in hosts and dest is not None:
                path = ctx.topo.path(m.source, m.destination)
                if path is None:
                    bad(f"no network path from {m.source} to {m.destination}")
                elif tuple(m.path) != path:
                    bad(f"path {list(m.path)} is not the topology's path {list(path)}")
            want = copy_storage_targets(vm)
            if sorted(m.copy_storage) != sorted(want):
                unknown = sorted(set(m.copy_storage) - {d.target for d in vm.disks})
                bad(f"copy_storage {list(m.copy_storage)} must be exactly the local disks {list(want)}"
                    + (f"; the VM has no disk {', '.join(unknown)}" if unknown else ""))
            if m.live != vm.live:
                bad(f"live={m.live} but the VM is {vm.state.value}")
        return out


@dataclass(frozen=True, slots=True)
class BandwidthWithinPathCap:
    """0 < bandwidth_mibs ≤ the smallest capped capacity on the path."""

    name: ClassVar[str] = "bandwidth-cap"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        out: list[Violation] = []
        share = ctx.inventory.policy.migration_share
        for m, _vm in ctx.known:
            if not m.bandwidth_mibs > 0:
                out.append(Violation(self.name, m.vm, m.start_s, f"bandwidth {m.bandwidth_mibs} MiB/s is not positive"))
                continue
            try:
                cap = ctx.topo.path_capacity_mibs(tuple(m.path), share)
            except (KeyError, ValueError):
                continue  # not a path of the topology: MigrationFactsMatch says so
            if m.bandwidth_mibs > cap * (1 + 1e-9) + BANDWIDTH_ABS_TOL_MIBS:
                out.append(Violation(self.name, m.vm, m.start_s,
                                     f"bandwidth {m.bandwidth_mibs:.3f} MiB/s exceeds the path's capped "
                                     f"capacity {cap:.3f} MiB/s"))
        return out


@dataclass(frozen=True, slots=True)
class DurationMatchesModel:
    """end_s − start_s ≥ the duration model at bandwidth_mibs; converges/auto_converge agree with it."""

    name: ClassVar[str] = "duration"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        out: list[Violation] = []
        allow_ac = ctx.inventory.policy.auto_converge
        for i, (m, _vm) in enumerate(ctx.known):
            est = ctx.estimates.get(i)
            if est is None:
                continue
            if m.duration_s < est.duration_s * (1 - DURATION_REL_TOL) - TIME_TOL_S:
                out.append(Violation(self.name, m.vm, m.start_s,
                                     f"lasts {m.duration_s:.3f} s, the model predicts {est.duration_s:.3f} s "
                                     f"at {m.bandwidth_mibs:.3f} MiB/s"))
            if m.converges != est.converges:
                out.append(Violation(self.name, m.vm, m.start_s,
                                     f"converges={m.converges} but the model says {est.converges}"))
            if m.auto_converge and not allow_ac:
                out.append(Violation(self.name, m.vm, m.start_s, "auto_converge is set but the policy forbids it"))
            if not est.converges and allow_ac and not m.auto_converge:
                out.append(Violation(self.name, m.vm, m.start_s,
                                     "does not converge, the policy allows auto-converge, but it is not set"))
        return out


# ---------------------------------------------------------------- at every instant


# ---------------------------------------------------------------- reconfiguration: where VMs end


@dataclass(frozen=True, slots=True)
class MisplacedRepaired:
    """Outside a drain, every misplaced VM ends on a host that suits it (or is unplaced), and no two members
    of an anti-affinity group end on one host."""

    name: ClassVar[str] = "repair"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        if ctx.plan.kind is PlanKind.DRAIN:
            return []
        inv, unplaced = ctx.inventory, {u.vm for u in ctx.plan.unplaced}
        out: list[Violation] = []
        for name, why in misplaced(inv).items():
            if name in unplaced:
                continue
            vm, end = inv.vm[name], ctx.final_host[name]
            host = inv.host.get(end)
            if end == vm.host:
                out.append(Violation(self.name, name, None, f"stays where it breaks a rule ({'; '.join(why)}) and "
                                                            f"is not listed as unplaced"))
            elif host is not None and (host.state is not HostState.UP or not suits(needs_of(vm, inv), host)):
                out.append(Violation(self.name, name, None, f"ends on {end}, which does not suit it either"))
        members: dict[tuple[str, str], list[str]] = defaultdict(list)
        for vm in inv.vms:
            if vm.name not in unplaced:
                for g in vm.anti_affinity:
                    members[(g, ctx.final_host[vm.name])].append(vm.name)
        for (g, host_name), names in sorted(members.items()):
            if len(names) > 1:
                out.append(Violation(self.name, g, None, f"{', '.join(sorted(names))} end together on {host_name}"))
        return out


@dataclass(frozen=True, slots=True)
class TargetReached:
    """A `target` plan ends every VM named in `target` on its target host, or lists it as unplaced; so does a
    `return` plan, whose `target` holds the home of every VM it sends back."""

    name: ClassVar[str] = "target"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        if ctx.plan.kind not in (PlanKind.TARGET, PlanKind.RETURN):
            return []
        unplaced = {u.vm for u in ctx.plan.unplaced}
        out = [Violation(self.name, vm, None, f"ends on {ctx.final_host[vm]}, the target is {host}")
               for vm, host in sorted(ctx.plan.target.items())
               if vm in ctx.final_host and vm not in unplaced and ctx.final_host[vm] != host]
        out += [Violation(self.name, vm, None, "target names a VM the inventory does not have")
                for vm in sorted(ctx.plan.target) if vm not in ctx.final_host]
        return out


BALANCE_TOL_PCT = 0.01


@dataclass(frozen=True, slots=True)
class BalanceMatches:
    """A `rebalance` plan's `balance` is what the inventory before and the plan's end state give."""

    name: ClassVar[str] = "balance"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        if ctx.plan.kind is not PlanKind.REBALANCE:
            return []
        b = ctx.plan.balance
        if b is None:
            return [Violation(self.name, "plan", None, "a rebalance plan must say its balance before and after")]
        try:
            metric, by = Metric(b.metric), By(b.by)
        except ValueError:
            return [Violation(self.name, "plan", None, f"unknown balance metric {b.metric!r} or basis {b.by!r}")]
        inv = ctx.inventory
        start = {v.name: v.host for v in inv.vms}
        out: list[Violation] = []
        for side, placement, said in (("before", start, b.before), ("after", ctx.final_host, b.after)):
            got = spread(utilisation(inv, placement, metric, by, ctx.drained))
            for field in ("spread_pct", "max_pct", "stddev_pct"):
                if abs(getattr(got, field) - getattr(said, field)) > BALANCE_TOL_PCT:
                    out.append(Violation(self.name, "plan", None, f"balance.{side}.{field} is "
                                         f"{getattr(said, field):.3f}, the placement gives {getattr(got, field):.3f}"))
        moved = sum(moved_gib(vm, m) for m, vm in ctx.known)
        if abs(moved - b.moved_gib) > 1e-3 + 1e-6 * moved:
            out.append(Violation(self.name, "plan", None, f"balance.moved_gib is {b.moved_gib:.3f}, the migrations "
                                                          f"move {moved:.3f} GiB"))
        return out


# ---------------------------------------------------------------- the plan as a whole


@dataclass(frozen=True, slots=True)
class PlanTotals:
    """makespan_s = max end_s; lower_bound_s ≤ makespan_s; the plan is for this inventory; times ≥ 0."""

    name: ClassVar[str] = "totals"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        plan = ctx.plan
        out: list[Violation] = []
        makespan = max((m.end_s for m in plan.migrations), default=0.0)
        if abs(plan.makespan_s - makespan) > TIME_TOL_S:
            out.append(Violation(self.name, "plan", None,
                                 f"makespan_s {plan.makespan_s:.3f} but the last migration ends at {makespan:.3f}"))
        if plan.lower_bound_s > plan.makespan_s + TIME_TOL_S:
            out.append(Violation(self.name, "plan", None,
                                 f"lower_bound_s {plan.lower_bound_s:.3f} exceeds makespan_s {plan.makespan_s:.3f}"))
        if plan.inventory_sha256 != ctx.inventory.sha256:
            out.append(Violation(self.name, "plan", None, "inventory_sha256 does not match the inventory"))
        for m in plan.migrations:
            if m.start_s < 0 or m.end_s < m.start_s:
                out.append(Violation(self.name, m.vm, m.start_s, f"bad interval [{m.start_s}, {m.end_s})"))
        return out


@dataclass(frozen=True, slots=True)
class WavesStartTogether:
    """All migrations of a wave share one start_s, and a higher wave never starts before a lower one."""

    name: ClassVar[str] = "waves"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        out: list[Violation] = []
        first: dict[int, float] = {}
        for w, migs in ctx.plan.waves.items():
            starts = sorted(m.start_s for m in migs)
            first[w] = starts[0]
            if starts[-1] - starts[0] > TIME_TOL_S:
                out.append(Violation(self.name, f"wave {w}", starts[0],
                                     f"starts spread from {starts[0]:.3f} to {starts[-1]:.3f} s"))
        ordered = sorted(first.items())
        for (w1, s1), (w2, s2) in itertools.pairwise(ordered):
            if s2 < s1 - TIME_TOL_S:
                out.append(Violation(self.name, f"wave {w2}", s2, f"starts at {s2:.3f} s, before wave {w1} "
                                     f"({s1:.3f} s)"))
        return out


BEFORE_PLAN_RULES: tuple[Rule, ...] = (
    KnownVMsAndHosts(), DrainedHostsEmptied(), OnlyDrainedMove(), AtMostOnce(), StatusMatchesUnplaced(),
    MigrationFactsMatch(), BandwidthWithinPathCap(), DurationMatchesModel(),
)
AFTER_PLAN_RULES: tuple[Rule, ...] = (
    MisplacedRepaired(), TargetReached(), BalanceMatches(), PlanTotals(), WavesStartTogether(),
)


def all_rules() -> tuple[Rule, ...]:
    """Every rule the checker holds a plan to, in order: the structural ones here, then the plan-level
    rules of the registry (`planner.rules`) as they are at the time of the call, then the end-state ones."""
    return (*BEFORE_PLAN_RULES, *plan_rules(), *AFTER_PLAN_RULES)
