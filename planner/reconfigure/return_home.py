"""Return home: after maintenance, send every VM a finished run moved back to the host it came from.

`homes_from_records(records)` reads what a run did from the journal's per-VM records (`evac status`'s
rows: the VM, its first hop's source, where its last hop took it, its state): a `Trip` per VM whose
migrations all ended `done` somewhere else than where they started. `plan_return(inventory, trips)`
makes the plan of kind `return` (plan v1, reconfiguration section) for the fleet as it is now:

* a VM is skipped, with its reason, when it is gone (not in the inventory), moved since (it is no
  longer on the host the run left it on), already home, or its home is not in the inventory;
* every other VM is a target placement on its home (`planner.reconfigure.reconfigure`, kind `return`,
  staging hops where a cycle of full hosts needs them); a home that breaks a rule now or cannot hold
  it (the target's refusals), or that no safe order reaches, is skipped too, and the plan still
  returns the others. Misplaced VMs are repaired as in every reconfiguration.

The plan's `target` holds the home of every VM it sends back; the checker holds it to that.

`fleet_now(inventory, where, unread)` is the fleet as it is now when the hosts were read live (`evac
return` without `-i`): the run's inventory with every VM where the hosts say it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from planner.duration import DEFAULT_MODEL, DurationModel
from planner.model import VM, HostState, Inventory
from planner.plan import PlanKind
from planner.reconfigure import Reconfiguration, reconfigure
from planner.replan import live_inventory
from planner.solve import SolverReporter

DONE = "done"  # the journal's state of a migration verified on its destination


class MoveRecord(Protocol):
    """One VM of a run as its journal tells it (`executor.journal.VMRecord` is one)."""

    @property
    def vm(self) -> str: ...

    @property
    def source(self) -> str: ...  # where its first hop left from: its home

    @property
    def destination(self) -> str: ...  # where its last hop took it

    @property
    def state(self) -> str: ...  # its current hop's state ("done" once every hop is)


@dataclass(frozen=True, slots=True)
class Trip:
    """A VM a finished run moved: from `home` to `reached`."""

    vm: str
    home: str
    reached: str


def homes_from_records(records: Iterable[MoveRecord]) -> dict[str, Trip]:
    """VM -> its trip, for every VM whose migrations all ended done on another host than its home."""
    return {r.vm: Trip(r.vm, r.source, r.destination) for r in records
            if str(r.state) == DONE and r.source != r.destination}


def why_not_home(inventory: Inventory, trip: Trip) -> str | None:
    """Why the fleet as it is now rules out sending the VM home before any planning, or None."""
    vm = inventory.vm.get(trip.vm)
    if vm is None:
        return "gone: it is not in the inventory any more"
    if vm.host == trip.home:
        return f"already back on {trip.home}"
    if vm.host != trip.reached:
        return f"moved since: the run left it on {trip.reached}, it is on {vm.host} now"
    if trip.home not in inventory.host:
        return f"its home host {trip.home} is not in the inventory"
    return None


def plan_return(inventory: Inventory, trips: Mapping[str, Trip], *, time_limit_s: float = 30.0, workers: int = 2,
                model: DurationModel = DEFAULT_MODEL, reporter: SolverReporter | None = None) -> Reconfiguration:
    """The checked `return` plan sending home every VM of `trips` that can go; `skipped` says why the
    others do not (module docstring). An empty plan when nothing can go home (and nothing is misplaced)."""
    skipped: dict[str, str] = {}
    homes: dict[str, str] = {}
    for name in sorted(trips):
        trip = trips[name]
        why = why_not_home(inventory, trip)
        if why is None:
            homes[name] = trip.home
        else:
            skipped[name] = why
    result = reconfigure(inventory, PlanKind.RETURN, target=homes, time_limit_s=time_limit_s, workers=workers,
                         model=model, reporter=reporter, ladder=False)
    return dataclasses.replace(result, skipped={**skipped, **result.skipped})


def fleet_now(inventory: Inventory, where: Mapping[str, str], unread: Collection[str], *,
              maintenance_over: Collection[str] = (), newcomers: Iterable[VM] = ()) -> Inventory:
    """The run's `inventory` as the hosts show it now.

    `where`: VM -> the host it was found on, for every VM found on a host that was read. A VM of the
    inventory found on no host while its own host was read is gone; hosts in `unread` are `down` (their
    VMs left where the inventory says: nothing is known of them). The hosts of `maintenance_over` (those the
    run emptied) are `up` when they were read: the maintenance is over, they answer. `newcomers` (VMs the
    run's inventory does not
    know, on the hosts they were found on) take their room. Moved VMs take their room where they are,
    copied disks included (`planner.replan.live_inventory`)."""
    down = set(unread)
    moved = {name: host for name, host in where.items() if name in inventory.vm}
    live = live_inventory(inventory, moved, down)
    over = set(maintenance_over) - down
    hosts = tuple(dataclasses.replace(h, state=HostState.UP) if h.name in over and h.state is HostState.MAINTENANCE
                  else h for h in live.hosts)
    kept = tuple(v for v in live.vms if v.name in where or v.host in down)
    extra = tuple(v for v in newcomers if v.name not in inventory.vm)
    return dataclasses.replace(live, hosts=hosts, vms=kept + extra)


__all__ = ["MoveRecord", "Trip", "fleet_now", "homes_from_records", "plan_return", "why_not_home"]
