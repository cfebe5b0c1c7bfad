"""Plan-level rules, ONE module each, found in ONE place (`REGISTRY`).

Each rule is a value with its solver-free checker, its CP-SAT encodings (placement; moves over time) and
its explanation (`planner.rules.base.PlanRule`). Who iterates the registry: the checker
(`planner.constraints.all_rules`), the placement model (`planner.placement.place`), the drain's CP-SAT
schedule (`planner.schedule.cpsat`), the reconfiguration's re-timing (`planner.reconfigure.cpsat`) and the
explainer (`planner.explain.dynamic_reasons`). The registry is every module of this package that defines
`RULE` (its value) and `CHECK_ORDER` (where the checker reports it), found when the package is imported: so
a new plan-level rule is one new module here and nothing else; `registered(rule)` adds one for a while
(tests, experiments).

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

import importlib
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager

from planner.rules.affinity import Affinity
from planner.rules.anti_affinity import AntiAffinity
from planner.rules.bandwidth import ResourceBandwidth
from planner.rules.base import PlanRule
from planner.rules.capacity import Capacity
from planner.rules.concurrency import ConcurrencyLimits

NOT_RULES = frozenset({"base"})  # the package's shared vocabulary, not a rule


def discover() -> list[PlanRule]:
    """The `RULE` of every rule module of this package, in `CHECK_ORDER`; a module without them is a bug
    (a rule written and silently not enforced)."""
    found: list[tuple[int, str, PlanRule]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in NOT_RULES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule, order = getattr(module, "RULE", None), getattr(module, "CHECK_ORDER", None)
        if not isinstance(rule, PlanRule) or not isinstance(order, int):
            raise TypeError(f"{module.__name__}: a rule module defines RULE (a PlanRule) and CHECK_ORDER (an int)")
        found.append((order, info.name, rule))
    return [rule for _, _, rule in sorted(found, key=lambda f: (f[0], f[1]))]


REGISTRY: list[PlanRule] = discover()

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
           "discover", "plan_rules", "registered"]
