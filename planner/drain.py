"""Which hosts a plan empties: `--drain HOST`, `--drain-label key=value`, and hosts in maintenance.

Plan v1: "Hosts given with `--drain`, and hosts whose state is `maintenance`, are emptied."
`--drain-label rack=r1` selects every host whose labels have rack=r1. Unknown host names and labels
that select nothing are the user's mistake: ONE `UsageError` names every one of them (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from planner.errors import Problem, UsageError
from planner.model import HostState, Inventory


@dataclass(frozen=True, slots=True)
class DrainSet:
    hosts: tuple[str, ...]  # everything to empty, inventory order (named, labelled, maintenance)
    labels: tuple[str, ...]  # the `key=value` selectors used, as given
    maintenance: tuple[str, ...]  # the hosts included only because they are in maintenance


def resolve_drain(inventory: Inventory, hosts: Iterable[str] = (), labels: Iterable[str] = (),
                  command: str = "evac plan") -> DrainSet:
    """The drain set for these selectors; raises `UsageError` naming every unknown host and bad label."""
    problems: list[Problem] = []
    chosen: set[str] = set()
    for name in hosts:
        if name in inventory.host:
            chosen.add(name)
        else:
            problems.append(Problem("--drain", f"unknown host {name!r}"))
    label_list = tuple(labels)
    for sel in label_list:
        key, sep, value = sel.partition("=")
        if not sep or not key:
            problems.append(Problem("--drain-label", f"{sel!r} is not key=value (e.g. rack=r1)"))
            continue
        matched = [h.name for h in inventory.hosts if h.labels.get(key) == value]
        if not matched:
            problems.append(Problem("--drain-label", f"no host has label {key}={value}"))
        chosen.update(matched)
    if problems:
        raise UsageError(command, problems)
    maintenance = [h.name for h in inventory.hosts if h.state is HostState.MAINTENANCE and h.name not in chosen]
    everything = chosen | set(maintenance)
    return DrainSet(hosts=tuple(h.name for h in inventory.hosts if h.name in everything), labels=label_list,
                    maintenance=tuple(maintenance))
