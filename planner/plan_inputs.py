"""Does this plan file belong to this inventory, and may it run? One answer for `evac check` and `evac run`.

* `inventory_path_for(plan, plan_path, given)`: which inventory file to read (`--inventory` wins over
  the plan's recorded `inventory_path`).
* `check_plan_matches`: refuses (exit 2) a plan made for another inventory — wrong digest, VMs or
  hosts the inventory lacks, VMs no longer on the plan's source.
* `as_checked`: the plan with its digest in evac's canonical form when it named the inventory by the
  file's bytes, so the checker's digest rule judges the inventory, not the digest's spelling.
* `refuse_unless_valid`: everything `evac run` needs before it touches a host: the match above, then
  the full independent checker (`planner.checker.check_plan`); any violation → `PlanRejected`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from planner.checker import check_plan
from planner.errors import PlanRejected, Problem, UsageError
from planner.model import Inventory
from planner.plan import Plan


def _some(names: list[str], shown: int = 8) -> str:
    return ", ".join(names[:shown]) + (f" … and {len(names) - shown} more" if len(names) > shown else "")


def inventory_path_for(plan: Plan, plan_path: str | Path, given: str | Path | None, command: str) -> Path:
    """The inventory to read: `given` (`--inventory`) if any, else the plan's `inventory_path`
    (relative to the plan file's folder when relative); exit 2 when neither names a file."""
    if given is not None:
        return Path(given)
    if plan.inventory_path is None:
        raise UsageError(command, [Problem("--inventory", f"plan {plan_path} does not record its inventory "
                                                          f"(inventory_path): give --inventory")])
    recorded = Path(plan.inventory_path)
    path = recorded if recorded.is_absolute() else Path(plan_path).parent / recorded
    if not path.exists():  # a file, or a folder of CSV files
        raise UsageError(command, [Problem("inventory_path", f"plan {plan_path} was made for inventory {path}, "
                                                             f"which does not exist here: give --inventory")])
    return path


def digest_matches(plan: Plan, inventory: Inventory, inventory_path: str | Path) -> bool:
    """A plan names its inventory by evac's canonical digest (`Inventory.sha256`, the same for JSON, YAML
    and CSV) or, as a plan from another tool naturally would, by the SHA-256 of the inventory file."""
    if plan.inventory_sha256 == inventory.sha256:
        return True
    path = Path(inventory_path)
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == plan.inventory_sha256


def check_plan_matches(plan: Plan, inventory: Inventory, plan_path: str | Path, inventory_path: str | Path,
                       require_digest: bool = True) -> None:
    """Refuses a plan made for another inventory (exit 2), naming what differs.

    VMs and hosts the inventory lacks are listed together, not one line each: a plan for another
    fleet would otherwise bury the one thing to say (wrong inventory) under hundreds of lines."""
    problems = []
    if require_digest and not digest_matches(plan, inventory, inventory_path):
        problems.append(Problem("inventory_sha256", f"the plan was made for inventory {plan.inventory_sha256[:12]}…, "
                                                    f"{inventory_path} is {inventory.sha256[:12]}…; re-plan"))
    unknown_vms = [m.vm for m in plan.migrations if m.vm not in inventory.vm]
    unknown_hosts = sorted({h for m in plan.migrations for h in (m.source, m.destination)
                            if h not in inventory.host})
    if unknown_vms:
        problems.append(Problem("migrations[].vm", f"{len(unknown_vms)} of {len(plan.migrations)} VMs are not in the "
                                                   f"inventory: {_some(unknown_vms)}"))
    if unknown_hosts:
        problems.append(Problem("migrations[]", f"{len(unknown_hosts)} hosts are not in the inventory: "
                                                f"{_some(unknown_hosts)}"))
    seen: set[str] = set()  # a VM's first hop leaves its host; later hops leave where the previous ended
    for i, m in sorted(enumerate(plan.migrations), key=lambda im: (im[1].start_s, im[1].hop, im[0])):
        vm = inventory.vm.get(m.vm)
        first = m.vm not in seen
        seen.add(m.vm)
        if vm is not None and first and vm.host != m.source:
            problems.append(Problem(f"migrations[{i}].source", f"{m.vm} is on {vm.host} now, not {m.source}"))
    if problems:
        raise UsageError(f"plan {plan_path} does not fit inventory {inventory_path}", problems)


def as_checked(plan: Plan, inventory: Inventory, inventory_path: str | Path) -> Plan:
    """`plan` with `inventory_sha256` = the canonical digest when it names this inventory either way."""
    if plan.inventory_sha256 != inventory.sha256 and digest_matches(plan, inventory, inventory_path):
        return dataclasses.replace(plan, inventory_sha256=inventory.sha256)
    return plan


def refuse_unless_valid(plan: Plan, inventory: Inventory, plan_path: str | Path, inventory_path: str | Path) -> None:
    """Raises (exit 2) unless `plan` is for `inventory` and passes every rule of the plan checker.

    `evac run` calls this before any hypervisor call or journal write: the executor trusts the plan's
    limits (bandwidth, concurrency, room, anti-affinity), so a plan that breaks them must not start."""
    check_plan_matches(plan, inventory, plan_path, inventory_path)
    violations = check_plan(inventory, as_checked(plan, inventory, inventory_path))
    if violations:
        raise PlanRejected(str(plan_path), violations)
