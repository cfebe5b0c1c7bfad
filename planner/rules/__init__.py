"""Plan-level rules, ONE module each, registered in ONE place (`REGISTRY`).

Each rule is a value with its solver-free checker, its CP-SAT encodings (placement; moves over time) and
its explanation (`planner.rules.base.PlanRule`). Who iterates the registry: the checker
(`planner.constraints.all_rules`), the placement model (`planner.placement.place`), the drain's CP-SAT
schedule (`planner.schedule.cpsat`), the reconfiguration's re-timing (`planner.reconfigure.cpsat`) and the
explainer (`planner.explain.dynamic_reasons`). So a new plan-level rule is one new module here plus one
line in `REGISTRY`; `registered(rule)` adds one for a while (tests, experiments).

Not here, and why: host rules (`planner.host_rules`: static VM-to-host suitability, which prunes
candidates before any model exists); pinning, host state and the other per-move facts (one
eligibility function, `planner.migration_facts.eligible`, which candidates and the checker share); a
hop's bandwidth within its path cap (built into every task's bandwidth levels); the structural rules
of plan v1 (who moves, hop chains, durations, totals, waves) in `planner.constraints`, which no solver
needs to be told because its models are built that way.
The greedy heuristics (placement, list schedule, sequencer) are hints and fallbacks: a rule they do not
know still binds every CP-SAT model, and the checker passes or rejects whatever the heuristics return.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from planner.rules.affinity import Affinity
from planner.rules.anti_affinity import AntiAffinity
from planner.rules.bandwidth import ResourceBandwidth
from planner.rules.base import PlanRule
from planner.rules.capacity import Capacity
from planner.rules.concurrency import ConcurrencyLimits

REGISTRY: list[PlanRule] = [ResourceBandwidth(), ConcurrencyLimits(), Capacity(), AntiAffinity(), Affinity()]


def plan_rules() -> tuple[PlanRule, ...]:
    """The plan-level rules in force, in checking order."""
    return tuple(REGISTRY)


@contextmanager
def registered(rule: PlanRule) -> Iterator[PlanRule]:
    """`rule` is in force inside the block (appended to the registry), and not after."""
    REGISTRY.append(rule)
    try:
        yield rule
    finally:
        REGISTRY.remove(rule)


__all__ = ["REGISTRY", "Affinity", "AntiAffinity", "Capacity", "ConcurrencyLimits", "PlanRule", "ResourceBandwidth",
           "plan_rules", "registered"]
