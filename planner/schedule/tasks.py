"""What the schedulers schedule: one `Task` per migration with its bandwidth levels, and the result."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from planner.duration import DEFAULT_MODEL, DurationModel, Estimate
from planner.migration_facts import MigrationFacts, migration_facts, vm_estimate
from planner.model import VM, Inventory, Policy
from planner.topology import Resource, Topology

UNITS_PER_S = 10  # schedule time unit: 0.1 s
# Bandwidth levels: cap / k. Low levels matter: the fixed per-migration cost (~1.75 s) holds the
# migration's bandwidth too, so a link filled by many slow migrations wastes less than by few fast ones.
LEVEL_DIVISORS = (1, 2, 3, 4, 6, 8)
MILLI = 1000  # bandwidth in cumulatives: 0.001 MiB/s
MIN_SOLVE_S = 0.2  # less time than this left for CP-SAT: keep the greedy schedule


@dataclass(frozen=True, slots=True)
class Level:
    bandwidth_mibs: float
    demand: int  # bandwidth in 0.001 MiB/s
    duration_units: int
    estimate: Estimate


@dataclass(frozen=True, slots=True)
class Task:
    """One migration to schedule: facts fixed by the placement, and its bandwidth levels."""

    facts: MigrationFacts
    priority: int
    levels: tuple[Level, ...]  # highest bandwidth first
    resources: tuple[Resource, ...]

    @property
    def vm(self) -> str:
        return self.facts.vm


@dataclass(frozen=True)
class Schedule:
    start_units: Mapping[str, int]  # VM -> start
    level: Mapping[str, int]  # VM -> index into its task's levels
    makespan_units: int
    status: str  # "optimal", "feasible" (CP-SAT) or "greedy"


def build_tasks(inventory: Inventory, destination: Mapping[str, str], topology: Topology,
                model: DurationModel = DEFAULT_MODEL, divisors: Sequence[int] = LEVEL_DIVISORS) -> list[Task]:
    tasks = []
    for name, dest in destination.items():
        vm = inventory.vm[name]
        facts = migration_facts(vm, dest, inventory, topology)
        assert facts is not None  # candidates are reachable
        tasks.append(task_of(vm, facts, inventory.policy, model, divisors))
    return tasks


def task_of(vm: VM, facts: MigrationFacts, policy: Policy, model: DurationModel = DEFAULT_MODEL,
            divisors: Sequence[int] = LEVEL_DIVISORS) -> Task:
    """The task of one migration (any hop: `facts` says from where): its bandwidth levels and resources."""
    levels = []
    for k in divisors:
        bw = math.floor(facts.cap_mibs / k * MILLI) / MILLI
        if bw <= 0:
            continue
        est = vm_estimate(vm, bw, policy, model)
        levels.append(Level(bw, round(bw * MILLI), max(1, math.ceil(est.duration_s * UNITS_PER_S - 1e-9)), est))
    return Task(facts, vm.priority, tuple(levels), tuple(Topology.resources(facts.path)))


def resource_caps(tasks: Sequence[Task], topology: Topology, share: float) -> dict[Resource, int]:
    """Capped capacity of every resource some task uses, in 0.001 MiB/s (rounded down)."""
    caps: dict[Resource, int] = {}
    for t in tasks:
        for r in t.resources:
            if r not in caps:
                caps[r] = capped_milli(topology, r, share)
    return caps


def capped_milli(topology: Topology, resource: Resource, share: float) -> int:
    """One resource's capped capacity in 0.001 MiB/s, rounded down (what every scheduler's cumulative holds)."""
    return math.floor(topology.capacity_mibs(resource) * share * MILLI)



def waves_of(start_units: Mapping[str, int]) -> dict[str, int]:
    """Waves: migrations with identical start times, numbered in start order."""
    distinct = sorted(set(start_units.values()))
    number = {s: i for i, s in enumerate(distinct)}
    return {vm: number[s] for vm, s in start_units.items()}
