"""What evac is measured against: the schedules operators get from the tools they use today.

All use the same duration model and, for a fair comparison, the same first-fit-decreasing (FFD)
placement; only the scheduling differs (NOTES §4):

* `sequential`: the virsh guide's one-at-a-time loop, each migration at its path's capped capacity;
* `watcher`: OpenStack Watcher, chunks of 2 with a barrier, each at its capped capacity (two
  migrations of a chunk leaving one NIC use up to twice the share: with the default share 0.5
  that is the whole NIC; this baseline does not check, it measures, it is not a plan);
* `kubevirt`: 2 outbound per node, 5 in the cluster, no inbound limit, no bandwidth cap;
* `nova-evacuate-live`: `nova host-evacuate-live`, everything at once, no limit, no cap.

Uncapped baselines share every NIC and link max-min fairly at FULL capacity (KubeVirt and Nova do
not cap), recomputed at every start and finish. Bandwidth changing mid-migration changes the
dirty-page inflation; the approximation: a migration has done a fraction f of its transfer; at
bandwidth R the whole transfer is T(R) = estimate(R).transferred_mib, so the rest is (1 − f)·T(R)
and f grows by R·dt / T(R). The fixed per-migration cost is paid first and uses no bandwidth.
Admission is FIFO in FFD order, but a migration blocked by its host's limit does not block later
ones from other hosts (KubeVirt's controller keeps the others going).

Results are measurements (`BaselineResult`), not plan-v1 plans; `sequential_plan` turns the
sequential one into a real plan (it respects every plan-v1 rule), a greedy fallback and a test fixture.

The rebalancing baseline (the greedy "most-loaded → least-loaded" leveller) is
`planner.reconfigure.baseline.most_to_least_rebalance`, beside the rebalancer it is compared with.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from planner.candidates import resident_groups
from planner.capacity import host_capacity
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.inventory_cache import per_inventory
from planner.migration_facts import (
    candidate_hosts,
    copy_storage_targets,
    drain_set,
    migration_facts,
    vm_estimate,
    vms_on_hosts,
    why_no_destination,
)
from planner.model import Inventory
from planner.plan import Migration, Plan, PlanStatus, Unplaced
from planner.topology import Resource, Topology

KUBEVIRT_PER_NODE = 2  # NOTES §4: parallelOutboundMigrationsPerNode
KUBEVIRT_PER_CLUSTER = 5  # NOTES §4: parallelMigrationsPerCluster
WATCHER_CHUNK = 2  # NOTES §4: Watcher actions in chunks of 2


class BaselineMigration(NamedTuple):
    vm: str
    source: str
    destination: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class BaselineResult:
    name: str
    makespan_s: float
    migrations: tuple[BaselineMigration, ...]
    unplaced: tuple[str, ...] = ()


@dataclass(frozen=True)
class FFDPlacement:
    destination: Mapping[str, str]  # VM -> host, in FFD order (memory descending)
    unplaced: Mapping[str, tuple[str, ...]]  # VM -> reasons


def ffd_placement(inventory: Inventory, drained: Iterable[str], topology: Topology | None = None) -> FFDPlacement:
    """First-fit decreasing: VMs of hosts being emptied, memory descending, each to the first host
    (inventory order) that may receive it and still fits CPU, memory, copied disk, anti-affinity
    and affinity with what is already there."""
    topo = topology if topology is not None else Topology(inventory)
    p = inventory.policy
    empty = drain_set(inventory, drained)
    movers = sorted(vms_on_hosts(inventory, empty), key=lambda v: (-v.memory_mib, v.name))
    cands = candidate_hosts(inventory, movers, empty, topo)
    # what every VM uses where it is now, and the anti-affinity groups and affinity-group hosts of those that
    # stay: the fleet-wide sums are the same for every drain, computed once per inventory object
    use, affinity_hosts = per_inventory("ffd-start", inventory, _ffd_start)
    cpu: dict[str, float] = defaultdict(float, use[0])
    mem: dict[str, float] = defaultdict(float, use[1])
    disk: dict[str, float] = defaultdict(float)
    groups_on: dict[str, set[str]] = defaultdict(set, {h: set(g) for h, g in resident_groups(inventory, empty).items()})
    final_host: dict[str, str] = {}  # affinity group -> where it ends
    for g, hosts in affinity_hosts.items():
        first = next((h for h in hosts if h not in empty), None)
        if first is not None:
            final_host[g] = first
    dest: dict[str, str] = {}
    unplaced: dict[str, tuple[str, ...]] = {}
    for v in movers:
        if v.pinned:
            unplaced[v.name] = (f"VM {v.name} is pinned to drained host {v.host}",)
            continue
        options = cands.get(v.name, ())
        if not options:
            unplaced[v.name] = tuple(why_no_destination(v, inventory, empty)) or ("no reachable eligible host",)
            continue
        wanted = {final_host[g] for g in v.affinity if g in final_host}
        if len(wanted) > 1:
            unplaced[v.name] = (f"affinity groups already end on {', '.join(sorted(wanted))}",)
            continue
        chosen = None
        for h in options:
            host = inventory.host[h]
            if wanted and h not in wanted:
                continue
            cap = host_capacity(host, p)
            if (cpu[h] + v.vcpus <= cap.vcpus and mem[h] + v.memory_mib <= cap.memory_mib
                    and disk[h] + v.local_disk_alloc_gib <= cap.local_disk_gib
                    and not (v.anti_affinity & groups_on[h])):
                chosen = h
                break
        if chosen is None:
            unplaced[v.name] = ("no eligible host has room (capacity, anti-affinity or affinity)",)
            continue
        dest[v.name] = chosen
        cpu[chosen] += v.vcpus
        mem[chosen] += v.memory_mib
        disk[chosen] += v.local_disk_alloc_gib
        groups_on[chosen].update(v.anti_affinity)
        for g in v.affinity:
            final_host.setdefault(g, chosen)
    return FFDPlacement(dest, unplaced)


def _ffd_start(inventory: Inventory) -> tuple[tuple[dict[str, float], dict[str, float]], dict[str, tuple[str, ...]]]:
    """vCPUs and memory per host (every VM, in inventory order), and per affinity group its members' hosts
    in inventory order (FFD's group ends where its first member that stays is)."""
    cpu: dict[str, float] = defaultdict(float)
    mem: dict[str, float] = defaultdict(float)
    hosts: dict[str, list[str]] = defaultdict(list)
    for v in inventory.vms:
        cpu[v.host] += v.vcpus
        mem[v.host] += v.memory_mib
        for g in v.affinity:
            hosts[g].append(v.host)
    return (dict(cpu), dict(mem)), {g: tuple(h) for g, h in hosts.items()}


# ---------------------------------------------------------------- capped schedulers


def _capped_durations(inventory: Inventory, placement: FFDPlacement, topo: Topology,
                      model: DurationModel) -> list[tuple[str, str, str, float]]:
    out = []
    for name, d in placement.destination.items():
        vm = inventory.vm[name]
        facts = migration_facts(vm, d, inventory, topo)
        assert facts is not None  # candidate_hosts only offers reachable hosts
        out.append((name, vm.host, d, vm_estimate(vm, facts.cap_mibs, inventory.policy, model).duration_s))
    return out


def _result(name: str, migs: Sequence[BaselineMigration], placement: FFDPlacement) -> BaselineResult:
    return BaselineResult(name, max((m.end_s for m in migs), default=0.0), tuple(migs), tuple(placement.unplaced))


def sequential(inventory: Inventory, placement: FFDPlacement, model: DurationModel = DEFAULT_MODEL,
               topology: Topology | None = None) -> BaselineResult:
    """The virsh guide's loop: one migration at a time, each at its path's capped capacity."""
    topo = topology if topology is not None else Topology(inventory)
    t = 0.0
    migs = []
    for vm, src, dst, dur in _capped_durations(inventory, placement, topo, model):
        migs.append(BaselineMigration(vm, src, dst, t, t + dur))
        t += dur
    return _result("sequential", migs, placement)


def watcher(inventory: Inventory, placement: FFDPlacement, model: DurationModel = DEFAULT_MODEL,
            topology: Topology | None = None, chunk: int = WATCHER_CHUNK) -> BaselineResult:
    """OpenStack Watcher: chunks of `chunk`, each chunk waits for the whole previous one."""
    topo = topology if topology is not None else Topology(inventory)
    items = _capped_durations(inventory, placement, topo, model)
    t = 0.0
    migs = []
    for i in range(0, len(items), chunk):
        ends = []
        for vm, src, dst, dur in items[i:i + chunk]:
            migs.append(BaselineMigration(vm, src, dst, t, t + dur))
            ends.append(t + dur)
        t = max(ends)
    return _result("watcher", migs, placement)


# ---------------------------------------------------------------- fluid (uncapped, fair-shared)


def max_min_fair(flows: Mapping[str, Sequence[Resource]], capacity_mibs: Mapping[Resource, float]) -> dict[str, float]:
    """Max-min fair rates (progressive filling): the most-contended resource is split evenly among
    its flows, those flows are frozen, and the rest repeats on what capacity is left."""
    rates: dict[str, float] = {}
    left = {r: capacity_mibs[r] for rs in flows.values() for r in rs}
    users: dict[Resource, set[str]] = defaultdict(set)
    for f, rs in flows.items():
        for r in rs:
            users[r].add(f)
    while users:
        r_min = min(users, key=lambda r: left[r] / len(users[r]))
        share = left[r_min] / len(users[r_min])
        for f in list(users[r_min]):
            rates[f] = share
            for r in flows[f]:
                left[r] -= share
                users[r].discard(f)
                if not users[r]:
                    del users[r]
    return rates


def fluid(inventory: Inventory, placement: FFDPlacement, name: str, per_host_out: int, total: int,
          model: DurationModel = DEFAULT_MODEL, topology: Topology | None = None) -> BaselineResult:
    """Uncapped migrations sharing full link capacity max-min fairly; ≤ 0 limits mean no limit."""
    topo = topology if topology is not None else Topology(inventory)
    p = inventory.policy
    queue = list(placement.destination.items())
    paths = {vm: topo.path(inventory.vm[vm].host, d) for vm, d in queue}
    cap = {r: topo.capacity_mibs(r) for r in topo.all_resources()}
    t = 0.0
    setup_until: dict[str, float] = {}  # VMs paying the fixed cost
    done_frac: dict[str, float] = {}  # VMs transferring: fraction done
    started: dict[str, float] = {}
    out_count: dict[str, int] = defaultdict(int)
    migs: list[BaselineMigration] = []
    src_of = {vm: inventory.vm[vm].host for vm, _ in queue}

    def admit() -> None:
        nonlocal queue
        waiting = []
        for vm, d in queue:
            src = src_of[vm]
            if (total <= 0 or len(started) < total) and (per_host_out <= 0 or out_count[src] < per_host_out):
                started[vm] = t
                out_count[src] += 1
                setup_until[vm] = t + model.fixed_cost_s
            else:
                waiting.append((vm, d))
        queue = waiting

    admit()
    while started:
        flows = {vm: tuple(Topology.resources(paths[vm] or ())) for vm in done_frac}
        rates = max_min_fair(flows, cap)
        totals = {vm: vm_estimate(inventory.vm[vm], rates[vm], p, model).transferred_mib for vm in done_frac}
        # time to the next event: a setup ends or a transfer finishes
        dt = min((u - t for u in setup_until.values()), default=math.inf)
        for vm, f in done_frac.items():
            dt = min(dt, (1.0 - f) * totals[vm] / rates[vm])
        dt = max(dt, 0.0)
        t += dt
        finished = []
        for vm in list(done_frac):
            tot = totals[vm]
            f = 1.0 if tot <= 0 else done_frac[vm] + rates[vm] * dt / tot
            if f >= 1.0 - 1e-9:
                finished.append(vm)
            else:
                done_frac[vm] = f
        for vm in [v for v, u in setup_until.items() if u <= t + 1e-12]:
            del setup_until[vm]
            done_frac[vm] = 0.0
            if vm_estimate(inventory.vm[vm], 1.0, p, model).transferred_mib <= 0:
                finished.append(vm)  # nothing to send (offline, shared disks)
        for vm in finished:
            done_frac.pop(vm, None)
            migs.append(BaselineMigration(vm, src_of[vm], placement.destination[vm], started.pop(vm), t))
            out_count[src_of[vm]] -= 1
        if finished:
            admit()
    return _result(name, sorted(migs, key=lambda m: (m.start_s, m.vm)), placement)


def kubevirt(inventory: Inventory, placement: FFDPlacement, model: DurationModel = DEFAULT_MODEL,
             topology: Topology | None = None) -> BaselineResult:
    return fluid(inventory, placement, "kubevirt", KUBEVIRT_PER_NODE, KUBEVIRT_PER_CLUSTER, model, topology)


def nova_evacuate_live(inventory: Inventory, placement: FFDPlacement, model: DurationModel = DEFAULT_MODEL,
                       topology: Topology | None = None) -> BaselineResult:
    return fluid(inventory, placement, "nova-evacuate-live", 0, 0, model, topology)


def run_baselines(inventory: Inventory, drained: Iterable[str], model: DurationModel = DEFAULT_MODEL,
                  topology: Topology | None = None) -> list[BaselineResult]:
    """Every baseline on one FFD placement: sequential, watcher, kubevirt, nova-evacuate-live."""
    topo = topology if topology is not None else Topology(inventory)
    placement = ffd_placement(inventory, drained, topo)
    return [sequential(inventory, placement, model, topo), watcher(inventory, placement, model, topo),
            kubevirt(inventory, placement, model, topo), nova_evacuate_live(inventory, placement, model, topo)]


def sequential_plan(inventory: Inventory, drained: Iterable[str], model: DurationModel = DEFAULT_MODEL,
                    topology: Topology | None = None, lower_bound_s: float = 0.0) -> Plan:
    """The sequential baseline as a plan v1 (one wave per migration): valid by construction."""
    topo = topology if topology is not None else Topology(inventory)
    drained = tuple(drained)
    placement = ffd_placement(inventory, drained, topo)
    t = 0.0
    migs = []
    for wave, (name, d) in enumerate(placement.destination.items()):
        vm = inventory.vm[name]
        facts = migration_facts(vm, d, inventory, topo)
        assert facts is not None
        est = vm_estimate(vm, facts.cap_mibs, inventory.policy, model)
        migs.append(Migration(
            vm=name, source=vm.host, destination=d, wave=wave, start_s=t, end_s=t + est.duration_s,
            bandwidth_mibs=facts.cap_mibs, path=facts.path, copy_storage=copy_storage_targets(vm), live=vm.live,
            converges=est.converges, auto_converge=est.throttled, predicted_downtime_ms=est.downtime_ms,
            priority=vm.priority, memory_mib=float(vm.memory_mib), disk_mib=facts.disk_mib))
        t += est.duration_s
    unplaced = tuple(Unplaced(v, r) for v, r in placement.unplaced.items())
    return Plan(inventory_sha256=inventory.sha256, drained=drained,
                status=PlanStatus.INFEASIBLE if unplaced else PlanStatus.FEASIBLE, makespan_s=t,
                lower_bound_s=lower_bound_s, solve_s=0.0, migrations=tuple(migs), unplaced=unplaced,
                solver="sequential")
