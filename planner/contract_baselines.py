"""The baselines' orderings held to plan v1: what each tool's order gives when it must obey the contract.

`planner.baselines` measures what the tools do: KubeVirt and Nova never cap a migration, share
every link max-min fairly with the rate changing mid-migration, and hold no bandwidth through the
fixed cost (a fluid model); Watcher runs two migrations of a chunk at the full cap each. Those are
measurements, not plans: plan v1 gives each migration ONE `bandwidth_mibs`, reserved on every
resource of its path for its whole [start_s, end_s) — fixed cost included — and the sum on every
NIC direction and link direction stays ≤ capacity × migration_share; slot limits hold at every
instant. A like-for-like comparison judges every ordering under those same rules.

So each ordering here is the tool's admission rule (same FFD placement, same order) with the
contract's bandwidth rule: when migrations are admitted at time t, they share what the running
ones leave of each resource max-min fairly (`baselines.max_min_fair` on the residual capped
capacity), and each holds its share, rounded down to 0.001 MiB/s, until it ends; its duration is
the duration model's at that bandwidth. A migration whose share would be under MIN_SHARE of its
path cap waits for the next event instead (it would crawl and hold a slot). Admission:

* `sequential`: one at a time;
* `watcher`: chunks of two, each chunk waits for the whole previous one;
* `kubevirt`: 2 outbound per host, 5 in the cluster (and the policy's limits, if tighter);
* `nova-evacuate-live`: everything at once (the policy's slot limits still hold).

Every result is a plan v1 (`contract_plans`); the checker confirms it (tests/test_contract_baselines.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from planner.baselines import KUBEVIRT_PER_CLUSTER, KUBEVIRT_PER_NODE, WATCHER_CHUNK, ffd_placement, max_min_fair
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.migration_facts import MigrationFacts, migration_facts, vm_estimate
from planner.model import Inventory
from planner.plan import Migration, Plan, PlanStatus, Unplaced
from planner.schedule import MILLI
from planner.topology import Resource, Topology

MIN_SHARE = 0.05  # of the path cap: below this a migration waits for more room


@dataclass(frozen=True, slots=True)
class Ordering:
    name: str
    per_host_out: int  # ≤ 0: only the policy's limit
    total: int  # ≤ 0: only the policy's limit
    chunk: int  # > 0: chunks of this size with a barrier between them


ORDERINGS = (Ordering("sequential", 0, 1, 0), Ordering("watcher", 0, 0, WATCHER_CHUNK),
             Ordering("kubevirt", KUBEVIRT_PER_NODE, KUBEVIRT_PER_CLUSTER, 0),
             Ordering("nova-evacuate-live", 0, 0, 0))


def _tighter(a: int, b: int) -> int:
    """The tighter of two limits where ≤ 0 means none."""
    return min(x for x in (a, b) if x > 0) if a > 0 or b > 0 else 0


def contract_schedule(inventory: Inventory, destination: Mapping[str, str], ordering: Ordering,
                      model: DurationModel = DEFAULT_MODEL, topology: Topology | None = None,
                      drained: tuple[str, ...] = (), unplaced: Mapping[str, tuple[str, ...]] | None = None) -> Plan:
    """`ordering`'s admission over `destination` (in its order) under plan v1's bandwidth rule."""
    topo = topology if topology is not None else Topology(inventory)
    p = inventory.policy
    share = p.migration_share
    facts: dict[str, MigrationFacts] = {}
    for name, d in destination.items():
        f = migration_facts(inventory.vm[name], d, inventory, topo)
        assert f is not None  # FFD only offers reachable hosts
        facts[name] = f
    res_of = {v: tuple(Topology.resources(f.path)) for v, f in facts.items()}
    cap = {r: topo.capacity_mibs(r) * share for rs in res_of.values() for r in rs}
    held: dict[Resource, float] = defaultdict(float)
    out_lim = _tighter(ordering.per_host_out, p.max_outbound_per_host)
    in_lim = p.max_inbound_per_host
    total_lim = _tighter(ordering.total, p.max_concurrent)
    out_n: dict[str, int] = defaultdict(int)
    in_n: dict[str, int] = defaultdict(int)
    queue = list(destination)
    running: dict[str, tuple[float, float]] = {}  # vm -> (end, bandwidth)
    migs: list[Migration] = []
    t = 0.0

    def admit() -> None:
        if ordering.chunk > 0 and running:
            return  # barrier: the next chunk waits for the whole previous one
        chosen: list[str] = []
        for vm in queue:
            if ordering.chunk > 0 and len(chosen) >= ordering.chunk:
                break
            f = facts[vm]
            if total_lim > 0 and len(running) + len(chosen) >= total_lim:
                break
            if (out_lim > 0 and out_n[f.source] >= out_lim) or (in_lim > 0 and in_n[f.destination] >= in_lim):
                continue
            chosen.append(vm)
            out_n[f.source] += 1
            in_n[f.destination] += 1
        while chosen:
            rates = max_min_fair({v: res_of[v] for v in chosen}, {r: max(cap[r] - held[r], 0.0) for r in cap})
            slow = [v for v in chosen if rates[v] < MIN_SHARE * facts[v].cap_mibs]
            if not slow or (len(slow) == len(chosen) and not running):
                break  # (nothing running: the room is all there is, take it)
            for v in slow:
                chosen.remove(v)
                out_n[facts[v].source] -= 1
                in_n[facts[v].destination] -= 1
        for v in chosen:
            bw = math.floor(min(rates[v], facts[v].cap_mibs) * MILLI) / MILLI
            spec = inventory.vm[v]
            est = vm_estimate(spec, bw, p, model)
            f = facts[v]
            for r in res_of[v]:
                held[r] += bw
            running[v] = (t + est.duration_s, bw)
            queue.remove(v)
            migs.append(Migration(
                vm=v, source=f.source, destination=f.destination, wave=0, start_s=t, end_s=t + est.duration_s,
                bandwidth_mibs=bw, path=f.path, copy_storage=f.copy_storage, live=f.live, converges=est.converges,
                auto_converge=est.throttled, predicted_downtime_ms=est.downtime_ms, priority=spec.priority,
                memory_mib=f.memory_mib, disk_mib=f.disk_mib))

    admit()
    while running:
        t = min(end for end, _ in running.values())
        for v in [v for v, (end, _) in running.items() if end <= t]:
            _, bw = running.pop(v)
            for r in res_of[v]:
                held[r] -= bw
            out_n[facts[v].source] -= 1
            in_n[facts[v].destination] -= 1
        admit()
    if queue:
        raise AssertionError(f"contract schedule stuck with {len(queue)} migrations")
    starts = sorted({m.start_s for m in migs})
    wave = {s: i for i, s in enumerate(starts)}
    migs = [replace(m, wave=wave[m.start_s]) for m in sorted(migs, key=lambda m: (m.start_s, m.vm))]
    left = tuple(Unplaced(v, r) for v, r in (unplaced or {}).items())
    return Plan(inventory_sha256=inventory.sha256, drained=drained,
                status=PlanStatus.INFEASIBLE if left else PlanStatus.FEASIBLE,
                makespan_s=max((m.end_s for m in migs), default=0.0), lower_bound_s=0.0, solve_s=0.0,
                migrations=tuple(migs), unplaced=left, solver=ordering.name)


def contract_plans(inventory: Inventory, drained: Iterable[str], model: DurationModel = DEFAULT_MODEL,
                   topology: Topology | None = None,
                   destination: Mapping[str, str] | None = None) -> list[Plan]:
    """Every ordering of ORDERINGS on the FFD placement (or `destination`, in its order) as a plan v1."""
    topo = topology if topology is not None else Topology(inventory)
    drained = tuple(drained)
    unplaced: Mapping[str, tuple[str, ...]] = {}
    if destination is None:
        ffd = ffd_placement(inventory, drained, topo)
        destination, unplaced = ffd.destination, ffd.unplaced
    return [contract_schedule(inventory, destination, o, model, topo, drained, unplaced) for o in ORDERINGS]
