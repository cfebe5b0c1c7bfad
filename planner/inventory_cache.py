"""Values derived from one inventory object, computed once.

A what-if sweep asks them of the same 5,000-host inventory for every scenario: the hosts frame, the
topology, the checker's initial placement. Keyed by identity, not by value: hashing 30,000 VMs costs
more than building the value, and a scenario that changes the fleet makes a new inventory object.
Only values that are never mutated may be cached here (a memo of pure facts filled on demand, such as
`migration_facts.compatible_hosts` per requirement key, only ever gains entries).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from planner.model import Inventory

T = TypeVar("T")
_cache: dict[tuple[str, int], tuple[weakref.ref[Inventory], Any]] = {}
_enabled = [True]


def per_inventory(what: str, inventory: Inventory, build: Callable[[Inventory], T]) -> T:
    """`build(inventory)`, remembered while `inventory` lives."""
    if not _enabled[0]:
        return build(inventory)
    key = (what, id(inventory))
    hit = _cache.get(key)
    if hit is not None and hit[0]() is inventory:
        return hit[1]
    value = build(inventory)
    for k in [k for k, (ref, _) in _cache.items() if ref() is None]:
        del _cache[k]
    _cache[key] = (weakref.ref(inventory), value)
    return value


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Inside, every `per_inventory` call builds its value afresh: the uncached reference path that
    tests and benchmarks compare the cached one with."""
    _enabled[0] = False
    try:
        yield
    finally:
        _enabled[0] = True
