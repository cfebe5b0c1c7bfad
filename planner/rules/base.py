"""What every plan-level rule is built from: the checker's context, a violation, the two CP-SAT models a rule
encodes itself into (placement; moves over time) and what the explainer shows it.

A plan-level rule (`PlanRule`) is one frozen dataclass value with
* `violations(ctx)`: the solver-free checker, at every instant (planner.constraints' sweep conventions);
* `encode_placement(pm)`: its CP-SAT constraints on the placement's x[vm, host] Booleans (end state);
* `encode_moves(mm)`: its CP-SAT constraints on the hops' start times and intervals (the drain's schedule
  and the reconfiguration's re-timing share `MovesModel`);
* `explain(ec)`: ranked reasons why one VM found no room (for the explainer).
Each defaults to nothing, so a rule that has no say in a model simply does not override it. The rules
live one per module in `planner.rules` and are registered in `planner.rules.REGISTRY`; the checker, both
CP-SAT models and the explainer iterate the registry, so adding a rule touches one module.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Protocol

import pandas as pd
from ortools.sat.python import cp_model

from planner.candidates import Room
from planner.duration import DEFAULT_MODEL, DurationModel, Estimate
from planner.inventory_cache import per_inventory
from planner.migration_facts import drain_set, vm_estimate
from planner.model import VM, Inventory, Policy
from planner.plan import Migration, Plan, PlanKind
from planner.topology import Resource, Topology

TIME_TOL_S = 1e-3
DURATION_REL_TOL = 1e-3
BANDWIDTH_ABS_TOL_MIBS = 1e-3


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    subject: str  # the VM, host, link or group at fault
    time_s: float | None  # the instant it happens (None: not about a time)
    message: str

    def __str__(self) -> str:
        at = f" at t={self.time_s:.3f}s" if self.time_s is not None else ""
        return f"[{self.rule}] {self.subject}{at}: {self.message}"


@dataclass(frozen=True)
class CheckContext:
    """The inventory, the plan and everything derived once and shared by the rules."""

    inventory: Inventory
    plan: Plan
    model: DurationModel = DEFAULT_MODEL
    rebalance: bool | None = None  # None: a rebalance iff the plan drains nothing
    topology: Topology | None = None

    @cached_property
    def topo(self) -> Topology:
        return self.topology if self.topology is not None else Topology(self.inventory)

    @cached_property
    def drained(self) -> frozenset[str]:
        return drain_set(self.inventory, self.plan.drained)

    @cached_property
    def is_rebalance(self) -> bool:
        """May VMs of hosts not being emptied move? Always in reconfiguration plans; in a drain, only when
        nothing is drained (the default) or the caller says so."""
        if self.plan.kind is not PlanKind.DRAIN:
            return True
        return not self.drained if self.rebalance is None else self.rebalance

    @cached_property
    def hops(self) -> dict[str, tuple[int, ...]]:
        """Per known VM, the indices into `known` of its migrations, in start order."""
        out: dict[str, list[int]] = defaultdict(list)
        for i, (m, _vm) in enumerate(self.known):
            out[m.vm].append(i)
        known = self.known
        return {vm: tuple(sorted(ix, key=lambda i: (known[i][0].start_s, known[i][0].hop)))
                for vm, ix in out.items()}

    @cached_property
    def leaves_from(self) -> dict[int, str]:
        """Per index into `known`, where the VM is when that hop starts: its inventory host for the
        first hop, the previous hop's destination after that."""
        out: dict[int, str] = {}
        for ix in self.hops.values():
            where = self.known[ix[0]][1].host
            for i in ix:
                out[i] = where
                where = self.known[i][0].destination
        return out

    @cached_property
    def final_host(self) -> dict[str, str]:
        """Where every VM of the inventory ends (from where each is now: one dict per inventory object, copied)."""
        out = dict(per_inventory("vm-hosts", self.inventory, lambda inv: {v.name: v.host for v in inv.vms}))
        for vm, ix in self.hops.items():
            out[vm] = self.known[ix[-1]][0].destination
        return out

    @cached_property
    def known(self) -> tuple[tuple[Migration, VM], ...]:
        """Migrations of VMs the inventory knows, with the VM (unknown ones are their own violation)."""
        vms = self.inventory.vm
        return tuple((m, vms[m.vm]) for m in self.plan.migrations if m.vm in vms)

    @cached_property
    def estimates(self) -> dict[int, Estimate]:
        """The duration model at each migration's bandwidth, by index into `known`."""
        p = self.inventory.policy
        return {i: vm_estimate(vm, m.bandwidth_mibs, p, self.model)
                for i, (m, vm) in enumerate(self.known) if m.bandwidth_mibs > 0}




def sweep_max(intervals: Iterable[tuple[float, float, float]]) -> Iterable[tuple[float, float, int]]:
    """For (start, end, amount) intervals active on [start, end): yields (time, total, count) after
    every instant where something starts (the only instants where a total can grow)."""
    events = sorted(itertools.chain.from_iterable(((s, 1, a), (e, 0, a)) for s, e, a in intervals))
    total, count = 0.0, 0
    n = len(events)
    i = 0
    while i < n:
        t = events[i][0]
        grew = False
        while i < n and events[i][0] == t:
            _, kind, a = events[i]
            if kind:
                total += a
                count += 1
                grew = True
            else:
                total -= a
                count -= 1
            i += 1
        if grew:
            yield t, total, count


class Rule(Protocol):
    name: ClassVar[str]

    def violations(self, ctx: CheckContext) -> list[Violation]: ...


# ---------------------------------------------------------------- the models a plan-level rule encodes into


@dataclass
class PlacementModel:
    """The placement's CP-SAT model as rules see it: one Boolean per candidate (vm, host) pair.

    `keys[i]` is the pair of `xs[i]`; `rows_of_host` indexes into both; `frame` holds the
    pair columns (vcpus, memory_mib, disk_mib, …) in the same order; `room` is what each host not
    drained has left after the VMs that stay; `placed[vm]` is Σ x over its pairs (0 or 1); `hint` the
    greedy placement (rules adding variables hint them from it).
    """

    m: cp_model.CpModel
    inventory: Inventory
    movers: Sequence[VM]
    drained: frozenset[str]
    frame: pd.DataFrame
    xs: list[cp_model.IntVar]
    room: Mapping[str, Room]
    placed: Mapping[str, cp_model.LinearExprT]
    hint: Mapping[str, str]

    @cached_property
    def keys(self) -> list[tuple[str, str]]:
        return [(str(v), str(h)) for v, h in self.frame.index]

    @cached_property
    def rows_of_host(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for i, (_v, h) in enumerate(self.keys):
            out[h].append(i)
        return out

    def column(self, name: str) -> list[int]:
        return list(self.frame[name].tolist())

    def weighted(self, rows: Sequence[int], coefs: Sequence[int]) -> cp_model.LinearExprT:
        return cp_model.LinearExpr.weighted_sum([self.xs[i] for i in rows], [coefs[i] for i in rows])


@dataclass(frozen=True)
class MoveOption:
    """One bandwidth level of a hop: its optional fixed-size interval, how long it lasts, the Boolean
    saying it is the one chosen, and the bandwidth it takes on every resource of the path (0.001 MiB/s)."""

    interval: cp_model.IntervalVar
    duration_units: int
    presence: cp_model.IntVar
    demand_milli: int


@dataclass
class MoveVars:
    """One hop in a moves model: its start, its options (exactly one present), the NIC and link directions
    its path crosses, and its end when the model has one."""

    vm: str
    hop: int
    source: str
    destination: str
    start: cp_model.IntVar
    options: list[MoveOption]
    resources: tuple[Resource, ...]
    end: cp_model.LinearExprT | None = None


@dataclass
class MovesModel:
    """A CP-SAT model over time (the drain's schedule, the reconfiguration's re-timing) as rules see it.

    The route of every VM is fixed (its hops' sources and destinations), only timing and bandwidth are
    chosen, within [0, horizon]. A rule that cannot say what it needs sets `unsupported` (the caller then
    keeps its greedy timing, which the checker has passed). `inventory` is None when the caller has only
    the policy (a schedule of bare tasks); `inv` then says so through `unsupported` for rules needing it.
    """

    m: cp_model.CpModel
    policy: Policy
    inventory: Inventory | None
    moves: list[MoveVars]
    horizon: int
    caps_milli: Mapping[Resource, int]  # capped capacity of every resource a hop crosses, 0.001 MiB/s
    unsupported: str | None = None
    _ends: dict[int, cp_model.LinearExprT] = field(default_factory=dict)

    @property
    def inv(self) -> Inventory:
        """The inventory, for rules that need it; a model built without one cannot hold them."""
        if self.inventory is None:
            raise LookupError("this moves model was built without its inventory")
        return self.inventory

    def end_of(self, i: int) -> cp_model.LinearExprT:
        """Move i's end: the model's own, else a variable tied to the present interval (made once)."""
        mv = self.moves[i]
        if mv.end is not None:
            return mv.end
        if i not in self._ends:
            e = self.m.new_int_var(0, self.horizon, f"end_{mv.vm}_{mv.hop}")
            for o in mv.options:
                self.m.add(e == mv.start + o.duration_units).only_enforce_if(o.presence)
            self._ends[i] = e
        return self._ends[i]

    @cached_property
    def chains(self) -> dict[str, list[int]]:
        """Per moving VM, the indices of its hops in hop order."""
        out: dict[str, list[int]] = defaultdict(list)
        for i, mv in enumerate(self.moves):
            out[mv.vm].append(i)
        for ix in out.values():
            ix.sort(key=lambda i: self.moves[i].hop)
        return out

    @cached_property
    def turning_hosts(self) -> frozenset[str]:
        """Hosts that some hop leaves AND some hop enters. On any other host the VMs present only grow (or
        only shrink) over the plan, so every total peaks at the end (or the start), whatever the timing:
        the final placement (checked) or the inventory bounds it, and a timing rule has nothing to add."""
        return frozenset({mv.source for mv in self.moves} & {mv.destination for mv in self.moves})

    def stays(self, host: str) -> list[tuple[str, cp_model.LinearExprT, cp_model.LinearExprT, int | None]]:
        """Every stay of a moving VM on `host`: (vm, arrival, departure, index of the hop that brought it or
        None when it starts there). A VM holds its source until its hop ENDS and its destination from its
        hop STARTS (counted on both while it migrates); the horizon when it stays to the end."""
        out: list[tuple[str, cp_model.LinearExprT, cp_model.LinearExprT, int | None]] = []
        for name, ix in self.chains.items():
            if self.inv.vm[name].host == host:
                out.append((name, 0, self.end_of(ix[0]), None))
            for k, i in enumerate(ix):
                if self.moves[i].destination == host:
                    leave = self.end_of(ix[k + 1]) if k + 1 < len(ix) else self.horizon
                    out.append((name, self.moves[i].start, leave, i))
        return out

    def stay_interval(self, arrive: cp_model.LinearExprT, leave: cp_model.LinearExprT) -> cp_model.IntervalVar:
        size = self.m.new_int_var(0, self.horizon, "")
        return self.m.new_interval_var(arrive, size, leave, "")


@dataclass(frozen=True)
class ExplainContext:
    """Why `vm` found no room, given where the other VMs went: what each host has left (`room`, after the
    VMs that stay and the ones placed), the anti-affinity groups on each host, the hosts compatible with
    the VM (host rules, reachability) and the "(searched k of n …)" suffix when candidates were pruned."""

    inventory: Inventory
    vm: VM
    drained: frozenset[str]
    room: Mapping[str, Room]
    groups_at: Mapping[str, set[str]]
    compatible: Sequence[str]
    searched: str


class PlanRule:
    """Defaults of a plan-level rule: no say in a model. Subclasses are frozen dataclasses with a `name`."""

    __slots__ = ()
    name: ClassVar[str]

    def violations(self, ctx: CheckContext) -> list[Violation]:
        raise NotImplementedError

    def encode_placement(self, pm: PlacementModel) -> None:
        return None

    def encode_moves(self, mm: MovesModel) -> None:
        return None

    def explain(self, ec: ExplainContext) -> list[tuple[float, str]]:
        return []


def add_cumulative(m: cp_model.CpModel, items: Iterable[tuple[cp_model.IntervalVar, int]], capacity: int) -> None:
    """add_cumulative, skipped when even all demands at once fit (it could never bind)."""
    its = list(items)
    if sum(d for _, d in its) <= capacity:
        return
    m.add_cumulative([iv for iv, _ in its], [d for _, d in its], capacity)
