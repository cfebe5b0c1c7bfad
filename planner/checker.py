"""Checks a plan against every rule of plan v1, independently of the solver that made it (STYLE §4).

`check_plan` returns every violation (empty = valid); `assert_plan_valid` raises
`InconsistentPlanError` — a plan evac produced that breaks its own contract is a bug in evac,
never the user's fault. The rules themselves are in `planner.constraints`.
"""

from __future__ import annotations

from collections.abc import Sequence

from planner.constraints import CheckContext, Rule, Violation, all_rules
from planner.duration import DurationModel
from planner.errors import InconsistentPlanError
from planner.model import Inventory
from planner.plan import Plan
from planner.topology import Topology


def check_plan(inventory: Inventory, plan: Plan, model: DurationModel | None = None, *,
               rebalance: bool | None = None, topology: Topology | None = None,
               rules: Sequence[Rule] | None = None) -> list[Violation]:
    """Every violation of `plan` against `inventory`, in rule order.

    `rebalance`: may VMs of hosts not being drained move? None (default) = only if nothing is
    drained. Pass the `topology` if you already built one for this inventory. `model`: the duration
    model to hold the plan to; by default the one the plan records (`Plan.duration_model`). `rules`: default
    every rule in force (`planner.constraints.all_rules`, the plan-level registry included at call time).
    """
    ctx = CheckContext(inventory, plan, model if model is not None else plan.duration_model, rebalance, topology)
    out: list[Violation] = []
    for rule in all_rules() if rules is None else rules:
        out.extend(rule.violations(ctx))
    return out


def assert_plan_valid(inventory: Inventory, plan: Plan, model: DurationModel | None = None, *,
                      rebalance: bool | None = None, topology: Topology | None = None) -> None:
    """Raises `InconsistentPlanError(plan, violations)` unless `plan` passes every rule."""
    violations = check_plan(inventory, plan, model, rebalance=rebalance, topology=topology)
    if violations:
        raise InconsistentPlanError(plan, violations)
