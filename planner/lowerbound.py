"""A proven lower bound on the makespan, computed without any solver (NOTES §3, plan v1).

`lower_bound` holds for ANY valid plan that moves every VM of the hosts being emptied which has
at least one eligible destination (VMs with none can only be unplaced; pass `moving=` to bound a
plan that leaves more VMs unplaced). `placement_lower_bound` holds for any valid schedule of one
fixed placement: the measure of how good a scheduler was, given its placement.

Why each term is a bound. A plan's migration m holds `bandwidth_mibs` b ≤ cap(path) on every
resource of its path for its whole [start, end), and end − start ≥ estimate(b).duration_s =
fixed + estimate(b).transferred_mib / b, so it occupies b·(end − start) ≥ transferred(b) MiB·s of
each resource's capped capacity. `duration.floor_estimate` at the highest bandwidth the VM can
ever get (the best capped path over its eligible destinations) is ≤ transferred(b) and
≤ duration(b) for every allowed b (proof in its docstring). Hence:

* resource term: for a resource r every plan must use for a set S of VMs,
  makespan ≥ Σ_{v∈S} floor_bytes(v) / (capacity(r) × share). Forced resources: the source NIC
  (out) of every VM; a link every path to every eligible destination crosses (a cut); the
  destination NIC (in) of a VM that has exactly one eligible destination;
* aggregate inbound term: every migration enters exactly one receiving NIC, all of which are
  among the hosts eligible for some VM, so makespan ≥ Σ floor_bytes / Σ their capped inbound
  capacity;
* longest migration: makespan ≥ max floor_duration;
* slot terms: at most k migrations leave a host at once (max_outbound_per_host), each busy for
  ≥ floor_duration, so makespan ≥ Σ_{v on host} floor_duration / k; likewise Σ over all / k for
  max_concurrent and Σ over all / (max_inbound × receivers) for inbound slots. A limit ≤ 0 is
  "no limit" and gives no term.
* NIC-and-slots term (`nic_slots`): the two previous families taken together, for any resource
  (NIC direction or link direction) that n migrations must cross and of which at most k can be
  in flight at once (k from the sources' outbound limits, the destinations' inbound limits when
  known, max_concurrent, and n itself), with capped capacity C: each migration i lasts
  d_i = f + sent_i/b_i ≥ f + B_i/b_i (f = the fixed cost, B_i its floor bytes), holding b_i for
  all of it — the fixed cost too, since plan v1 counts a migration's bandwidth from start to end.
  So C·T ≥ Σ b_i·d_i ≥ f·Σb_i + ΣB and k·T ≥ Σ d_i ≥ n·f + Σ B_i/b_i. By Cauchy–Schwarz
  Σb_i ≥ (Σ√B_i)² / Σ(B_i/b_i) ≥ Q / (kT − nf) with Q = (Σ√B_i)², hence
  C·T − ΣB − f·Q/(kT − nf) ≥ 0, whose left side grows with T: T is at least its largest root
  (`nic_slots_bound`). Low bandwidth saves NIC time but costs slot time; this term prices both.
* dual term (`dual`, planner.lowerbound_dual, proof there): every area limit (each resource above,
  all receiving NICs together) and every slot limit (each source, each crossing set as in
  `nic_slots`, max_concurrent, the pooled inbound slots, each migration alone) priced together by
  Lagrange weights, each migration's bandwidth free in (0, its best capped path], its bytes the
  floor at that bandwidth (so the dirty pages that slow migrations re-send count too);
* capacity cut (`capacity_cut`, only when `moving` names the VMs the plan moves): for a switch S
  let A be the moving VMs whose source is outside S, and R_out the room, after the VMs that stay,
  of every host outside S that may receive any of them (up, not emptied, compatible; memory and,
  separately, vCPUs, after overcommit and reserve). The checker holds every receiving host to
  max(start usage, room) at every start of a migration into it, and in a drain its residents stay,
  so the VMs of A that end outside S use at most R_out: those placed inside S need at least
  D = Σ demand(A) − R_out. Each of them is a migration from outside S to a host of S, whose path
  enters S over a link X→S (hosts hang off one switch), and sends ≥ floor_bytes(v) while holding
  b on that link for its whole duration. So T × Σ_{X} capacity(X→S) × share ≥ the fewest floor
  bytes of any subset of A with demand ≥ D, which is ≥ the fractional knapsack (VMs by floor
  bytes per unit of demand, cheapest first; fractional is a relaxation). Outbound likewise: the
  moving VMs of S need Σ demand − (room of S's receivers) placed outside S, over links S→X.
  Every simplification only drops VMs from A or adds room (VMs of S leaving only fill R_out;
  unreachable or too-small hosts still count), so the term can only get weaker. Without `moving`
  a plan may leave any VM unplaced for lack of room, so the term is not used.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from planner.capacity import host_capacity
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.host_rules import Needs, needs_of
from planner.inventory_cache import per_inventory
from planner.lowerbound_dual import Limit, cell_floors, cell_tops, dual_bound
from planner.migration_facts import compatible_hosts, copied_disk_mib, drain_set, vm_floor_estimate, vms_on_hosts
from planner.model import VM, Host, Inventory, Policy
from planner.plan import Plan
from planner.topology import Resource, Topology
from planner.units import gbps_to_mibs


@dataclass(frozen=True, slots=True)
class LowerBound:
    value_s: float
    binding: str  # which term gives `value_s`, in words
    terms: Mapping[str, float] = field(default_factory=dict)  # the largest value of each family


class _Terms:
    """Keeps, per family, the largest term and what it was about."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[float, str]] = {}

    def add(self, family: str, value_s: float, about: str) -> None:
        if value_s > self.best.get(family, (-1.0, ""))[0]:
            self.best[family] = (value_s, about)

    def result(self) -> LowerBound:
        if not self.best:
            return LowerBound(0.0, "nothing to move", {})
        top = max(v for v, _ in self.best.values())
        # A tie (to rounding) goes to a term that names one resource or limit: the dual term prices
        # everything together and often reaches the same value, which says less to the operator.
        tied = [(k, va) for k, va in self.best.items() if va[0] >= top * (1 - 1e-9)]
        family, (_, about) = min(tied, key=lambda kv: (kv[0] == "dual", -kv[1][0]))
        return LowerBound(top, f"{family}: {about}", {k: v for k, (v, _) in self.best.items()})


def nic_slots_bound(floor_mib: Iterable[float], capped_mibs: float, slots: int, fixed_s: float) -> float:
    """Smallest T with C·T − ΣB − f·Q/(kT − nf) ≥ 0 (module docstring, NIC-and-slots term)."""
    b = [x for x in floor_mib if x > 0]
    n = len(b)
    if n == 0 or slots <= 0 or capped_mibs <= 0:
        return 0.0
    total = sum(b)
    q = sum(math.sqrt(x) for x in b) ** 2
    c, k, f = capped_mibs, float(slots), fixed_s
    # (C·T − ΣB)(k·T − n·f) − f·Q = 0  ⇔  C·k·T² − (C·n·f + k·ΣB)·T + (ΣB·n·f − f·Q) = 0
    qa, qb, qc = c * k, -(c * n * f + k * total), total * n * f - f * q
    disc = max(qb * qb - 4 * qa * qc, 0.0)
    # shaved by 1e-9 so rounding in the root never puts the bound a hair above a plan that meets it
    return (-qb + math.sqrt(disc)) / (2 * qa) * (1 - 1e-9)


@dataclass
class _Crossing:
    """The migrations every plan must send across one resource, for the NIC-and-slots term."""

    floors_mib: list[float] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    destinations: set[str] | None = field(default_factory=set)  # None: not known (any plan)
    members: list[int] = field(default_factory=list)  # the migrations, as indices for the dual term

    def add(self, floor_mib: float, source: str, destination: str | None, member: int = -1) -> None:
        self.floors_mib.append(floor_mib)
        self.members.append(member)
        self.sources.add(source)
        if destination is None:
            self.destinations = None
        elif self.destinations is not None:
            self.destinations.add(destination)

    def slots(self, policy: Policy) -> int:
        """How many of these migrations can be in flight at once, at most (0 = no limit known)."""
        limits = [len(self.floors_mib)]
        if policy.max_outbound_per_host > 0:
            limits.append(policy.max_outbound_per_host * len(self.sources))
        if policy.max_inbound_per_host > 0 and self.destinations:
            limits.append(policy.max_inbound_per_host * len(self.destinations))
        if policy.max_concurrent > 0:
            limits.append(policy.max_concurrent)
        return min(limits)


def _nic_slot_terms(terms: _Terms, crossings: Mapping[Resource, _Crossing], topo: Topology, policy: Policy,
                    fixed_s: float) -> None:
    for r, c in crossings.items():
        cap = topo.capacity_mibs(r) * policy.migration_share
        k = c.slots(policy)
        terms.add("nic_slots", nic_slots_bound(c.floors_mib, cap, k, fixed_s),
                  f"{len(c.floors_mib)} migrations cross {r[0]}->{r[1]} at {cap:.1f} MiB/s, at most {k} at a time, "
                  f"{fixed_s:g} s fixed cost each")


def _slot_terms(terms: _Terms, inventory: Inventory, durations: Mapping[str, float], vms: Mapping[str, VM],
                inbound: Mapping[str, float]) -> None:
    """Longest migration and the concurrency-limit terms; `inbound` maps a description to its term."""
    p = inventory.policy
    if not durations:
        return
    longest = max(durations, key=lambda v: durations[v])
    terms.add("longest_migration", durations[longest], f"VM {longest} needs at least {durations[longest]:.1f} s")
    if p.max_outbound_per_host > 0:
        per_source: dict[str, float] = defaultdict(float)
        for v, d in durations.items():
            per_source[vms[v].host] += d
        for h, total in per_source.items():
            terms.add("outbound_slots", total / p.max_outbound_per_host,
                      f"{total:.1f} s of migrations leave {h}, {p.max_outbound_per_host} at a time")
    for label, value_s in inbound.items():
        terms.add("inbound_slots", value_s, label)
    if p.max_concurrent > 0:
        total = sum(durations.values())
        terms.add("max_concurrent", total / p.max_concurrent,
                  f"{total:.1f} s of migrations, {p.max_concurrent} at a time")


@dataclass(frozen=True, slots=True)
class _Reach:
    """What the compatible hosts of one requirement key look like from one source switch."""

    best_mibs: float  # the highest min(link capacity, destination NIC) over reachable compatible hosts
    common: frozenset[Resource]  # switch links on the path to EVERY reachable compatible host
    count: int  # reachable compatible hosts
    only: str | None  # the one host when count == 1


def lower_bound(inventory: Inventory, drained: Iterable[str], model: DurationModel = DEFAULT_MODEL, *,
                moving: Collection[str] | None = None, topology: Topology | None = None,
                rebalance: bool = False) -> LowerBound:
    """A proven lower bound on the makespan of any valid plan draining `drained` (+ maintenance hosts).

    A VM counts as moving when some host has room for it: in a drain plan VMs of other hosts stay
    put, so that is the host's room minus what its residents use now (`rebalance=True`: the room
    of the empty host, since residents may leave). A plan that leaves more VMs unplaced than
    that (capacity is shared) is bounded by passing the VMs it does move as `moving`.

    To stay fast on a 5,000-host fleet the destinations of a VM are relaxed to every compatible host
    (up, not drained, offering its CPU, storage and networks) regardless of size; a VM counts as
    moving only if at least one of them is big enough. More destinations can only raise its best
    bandwidth, shrink the links forced on it and add inbound capacity: the bound gets weaker, never wrong.
    """
    topo = topology if topology is not None else Topology(inventory)
    p = inventory.policy
    share = p.migration_share
    empty = drain_set(inventory, drained)
    movers = [v for v in vms_on_hosts(inventory, empty) if not v.pinned and (moving is None or v.name in moving)]
    hosts = inventory.host
    nic_mibs = per_inventory("nic-mibs", inventory, _nic_mibs)

    by_key: dict[Needs, tuple[list[Host], list[tuple[float, float, float]]]] = {}
    reach: dict[tuple[Needs, str], _Reach] = {}
    links: dict[tuple[str, str], tuple[float, frozenset[Resource]] | None] = {}

    def switch_links(src_sw: str, dst_sw: str, src: str, dst: str) -> tuple[float, frozenset[Resource]] | None:
        """Smallest link capacity between two switches (inf if the same) and the links, None if unreachable."""
        k = (src_sw, dst_sw)
        if k not in links:
            path = topo.path(src, dst)
            if path is None:
                links[k] = None
            else:
                res = frozenset(itertools.pairwise(path[1:-1]))
                links[k] = (min((topo.capacity_mibs(r) for r in res), default=math.inf), res)
        return links[k]

    def summary(key: Needs, src: str) -> _Reach:
        src_sw = topo.switch_of[src]
        if (key, src_sw) not in reach:
            per_switch: dict[str, list[Host]] = defaultdict(list)
            for h in by_key[key][0]:
                per_switch[topo.switch_of[h.name]].append(h)
            best, count, only = 0.0, 0, None
            common: frozenset[Resource] | None = None
            for sw, members in per_switch.items():
                hop = switch_links(src_sw, sw, src, members[0].name)
                if hop is None:
                    continue
                best = max(best, min(hop[0], max(nic_mibs[h.name] for h in members)))
                common = hop[1] if common is None else common & hop[1]
                count += len(members)
                only = members[0].name
            reach[(key, src_sw)] = _Reach(best, common or frozenset(), count, only if count == 1 else None)
        return reach[(key, src_sw)]

    terms = _Terms()
    bytes_of: dict[str, float] = {}
    duration_of: dict[str, float] = {}
    forced: dict[Resource, float] = defaultdict(float)
    crossings: dict[Resource, _Crossing] = defaultdict(_Crossing)
    receivers: set[str] = set()
    keys_moving: set[Needs] = set()
    dual: list[tuple[VM, float]] = []  # (VM, its highest bandwidth), in index order
    # what each host offers (after its residents unless `rebalance`): per inventory object, once
    room_of = per_inventory("lb-empty-room" if rebalance else "lb-free-room", inventory,
                            partial(_free_rooms, residents_stay=not rebalance))

    def free_room(h: Host) -> tuple[float, float, float]:
        return room_of[h.name]

    split = not topo.connected()  # then "some host fits" and "some host is reachable" may be different hosts
    for vm in movers:
        key = needs_of(vm, inventory)
        if key not in by_key:
            compatible = compatible_hosts(inventory, key, empty)
            by_key[key] = (compatible, _pareto([free_room(h) for h in compatible]))
        compatible, front = by_key[key]
        need = (vm.vcpus, vm.memory_mib, vm.local_disk_alloc_gib)
        if not any(all(n <= r for n, r in zip(need, room, strict=True)) for room in front):
            continue  # no host is big enough: it can only be unplaced, no plan moves it
        seen = summary(key, vm.host)
        if seen.count == 0:
            continue  # nothing reachable
        if split and not any(topo.reachable(vm.host, h.name)
                             and all(n <= r for n, r in zip(need, free_room(h), strict=True)) for h in compatible):
            continue  # (partitioned network) no host is both reachable and big enough
        if key not in keys_moving:
            keys_moving.add(key)
            receivers.update(h.name for h in compatible)
        bmax = min(nic_mibs[vm.host], seen.best_mibs) * share
        est = vm_floor_estimate(vm, bmax, p, model)
        bytes_of[vm.name] = est.transferred_mib
        duration_of[vm.name] = est.duration_s
        index = len(dual)
        dual.append((vm, bmax))
        forced[(vm.host, topo.switch_of[vm.host])] += est.transferred_mib
        crossings[(vm.host, topo.switch_of[vm.host])].add(est.transferred_mib, vm.host, seen.only, index)
        for res in seen.common:
            forced[res] += est.transferred_mib
            crossings[res].add(est.transferred_mib, vm.host, seen.only, index)
        if seen.only is not None:
            forced[(topo.switch_of[seen.only], seen.only)] += est.transferred_mib
            crossings[(topo.switch_of[seen.only], seen.only)].add(est.transferred_mib, vm.host, seen.only, index)

    for r, mib in forced.items():
        cap = topo.capacity_mibs(r) * share
        family = "source_nic" if r[0] in hosts else "destination_nic" if r[1] in hosts else "link"
        terms.add(family, mib / cap, f"{mib:.0f} MiB must cross {r[0]}->{r[1]} at {cap:.1f} MiB/s")
    if receivers:
        total_mib = sum(bytes_of.values())
        in_cap = sum(nic_mibs[h] for h in receivers) * share
        terms.add("destination_nics", total_mib / in_cap,
                  f"{total_mib:.0f} MiB into {len(receivers)} receiving NICs at {in_cap:.1f} MiB/s in all")
    inbound: dict[str, float] = {}
    if receivers and p.max_inbound_per_host > 0:
        total_s = sum(duration_of.values())
        k = p.max_inbound_per_host
        inbound[f"{total_s:.1f} s of migrations into {len(receivers)} hosts, {k} at a time each"] = \
            total_s / (k * len(receivers))
    _slot_terms(terms, inventory, duration_of, inventory.vm, inbound)
    _nic_slot_terms(terms, crossings, topo, p, model.fixed_cost_s)
    everyone = list(range(len(dual)))
    pooled = [Limit(True, sum(nic_mibs[h] for h in receivers) * share, everyone)] if receivers else []
    if receivers and p.max_inbound_per_host > 0:
        pooled.append(Limit(False, float(p.max_inbound_per_host * len(receivers)), everyone))
    _dual_term(terms, dual, crossings, pooled, topo, p, model)
    if moving is not None and receivers:
        rooms: dict[str, tuple[float, float]] = {}
        for name in receivers:
            if rebalance:  # residents may leave: the checker's limit is max(start usage, room)
                cpu, mem, _disk = host_capacity(hosts[name], p).as_tuple()
                residents = inventory.vms_on.get(name, ())
                rooms[name] = (max(cpu, sum(v.vcpus for v in residents)),
                               max(mem, sum(v.memory_mib for v in residents)))
            else:
                cpu_free, mem_free, _disk = room_of[name]
                rooms[name] = (max(cpu_free, 0.0), max(mem_free, 0.0))
        kept = [v for v in movers if v.name in bytes_of]
        # the cuts depend on the topology (built from the inventory) and the share alone: once per inventory
        cuts = per_inventory("switch-cuts", inventory, lambda _inv: _switch_cuts(topo, share))
        _capacity_cut_terms(terms, kept, bytes_of, rooms, topo, cuts)
    return terms.result()


def _nic_mibs(inventory: Inventory) -> dict[str, float]:
    return {h.name: gbps_to_mibs(h.nic_gbps) for h in inventory.hosts}


def _free_rooms(inventory: Inventory, residents_stay: bool) -> dict[str, tuple[float, float, float]]:
    """Per host: vCPUs, memory MiB and copied-disk GiB it offers, less what its residents use when they stay."""
    out = {}
    for h in inventory.hosts:
        cpu, mem, disk = host_capacity(h, inventory.policy).as_tuple()
        if residents_stay:
            residents = inventory.vms_on.get(h.name, ())
            cpu -= sum(v.vcpus for v in residents)
            mem -= sum(v.memory_mib for v in residents)
        out[h.name] = (cpu, mem, disk)
    return out


def _switch_cuts(topo: Topology, share: float) -> tuple[dict[str, float], dict[str, float]]:
    """Per switch, the capped capacity of the links into it and out of it (from other switches only)."""
    cut_in: dict[str, float] = {}
    cut_out: dict[str, float] = {}
    for sw in set(topo.switch_of.values()):
        others = [x for x in topo.graph[sw] if topo.graph.nodes[x].get("kind") == "switch" and x != sw]
        cut_in[sw] = sum(topo.capacity_mibs((x, sw)) for x in others) * share
        cut_out[sw] = sum(topo.capacity_mibs((sw, x)) for x in others) * share
    return cut_in, cut_out


def _capacity_cut_terms(terms: _Terms, movers: list[VM], bytes_of: Mapping[str, float],
                        rooms: Mapping[str, tuple[float, float]], topo: Topology,
                        cuts: tuple[Mapping[str, float], Mapping[str, float]]) -> None:
    """The capacity-cut term (module docstring) for every switch, both directions, memory and vCPUs;
    `cuts`: `_switch_cuts` of `topo`."""
    switch_of = topo.switch_of
    switches = {switch_of[h] for h in rooms} | {switch_of[v.host] for v in movers}
    cut_in, cut_out = cuts
    # the checker lets each host go 1e-6 over its limit: count that as room too
    slack = 1e-6 * (len(rooms) + 1)
    for dim, what in ((1, "MiB of memory"), (0, "vCPUs")):
        def demand(v: VM, dim: int = dim) -> float:
            return float(v.memory_mib if dim == 1 else v.vcpus)
        cheap_first = sorted((v for v in movers if demand(v) > 0), key=lambda v: bytes_of[v.name] / demand(v))
        room_total = sum(r[dim] for r in rooms.values())
        demand_total = sum(demand(v) for v in cheap_first)
        room_in: dict[str, float] = defaultdict(float)
        demand_in: dict[str, float] = defaultdict(float)
        for name, r in rooms.items():
            room_in[switch_of[name]] += r[dim]
        for v in cheap_first:
            demand_in[switch_of[v.host]] += demand(v)
        for sw in switches:
            for inbound, cap in ((True, cut_in[sw]), (False, cut_out[sw])):
                if inbound:  # VMs from outside sw, room outside sw
                    need = (demand_total - demand_in[sw]) - (room_total - room_in[sw]) - slack
                else:  # VMs of sw, room inside sw
                    need = demand_in[sw] - room_in[sw] - slack
                if need <= 0 or cap <= 0:
                    continue
                mib, left = 0.0, need
                for v in cheap_first:
                    if (switch_of[v.host] == sw) == inbound:
                        continue
                    d = demand(v)
                    if d >= left:
                        mib += bytes_of[v.name] * left / d
                        break
                    mib += bytes_of[v.name]
                    left -= d
                way = "into" if inbound else "out of"
                terms.add("capacity_cut", mib / cap,
                          f"{need:.0f} {what} must move {way} {sw}: ≥ {mib:.0f} MiB over its links at {cap:.1f} MiB/s")


def _pareto(rooms: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The rooms no other room dominates in every dimension (a homogeneous fleet has one)."""
    front: list[tuple[float, float, float]] = []
    for room in sorted(set(rooms), reverse=True):
        if not any(all(a >= b for a, b in zip(f, room, strict=True)) for f in front):
            front.append(room)
    return front


def placement_lower_bound(inventory: Inventory, placement: Plan | Mapping[str, str],
                          model: DurationModel = DEFAULT_MODEL, *, topology: Topology | None = None) -> LowerBound:
    """A proven lower bound on the makespan of any valid schedule of this placement (VM -> destination).

    Same terms as `lower_bound` with every path known: every resource of every path, every
    destination's inbound slots.
    """
    topo = topology if topology is not None else Topology(inventory)
    p = inventory.policy
    share = p.migration_share
    dest = {m.vm: m.destination for m in placement.migrations} if isinstance(placement, Plan) else dict(placement)
    terms = _Terms()
    per_resource: dict[Resource, float] = defaultdict(float)
    duration_of: dict[str, float] = {}
    per_dest: dict[str, float] = defaultdict(float)
    crossings: dict[Resource, _Crossing] = defaultdict(_Crossing)
    dual: list[tuple[VM, float]] = []
    for name, d in dest.items():
        vm = inventory.vm[name]
        path = topo.path(vm.host, d)
        if path is None:
            continue  # not a valid placement for this VM; the checker says so
        bmax = topo.path_capacity_mibs(path, share)
        est = vm_floor_estimate(vm, bmax, p, model)
        index = len(dual)
        dual.append((vm, bmax))
        for r in Topology.resources(path):
            per_resource[r] += est.transferred_mib
            crossings[r].add(est.transferred_mib, vm.host, d, index)
        duration_of[name] = est.duration_s
        per_dest[d] += est.duration_s
    hosts = inventory.host
    for r, mib in per_resource.items():
        cap = topo.capacity_mibs(r) * share
        family = "source_nic" if r[0] in hosts else "destination_nic" if r[1] in hosts else "link"
        terms.add(family, mib / cap, f"{mib:.0f} MiB cross {r[0]}->{r[1]} at {cap:.1f} MiB/s")
    inbound: dict[str, float] = {}
    k = p.max_inbound_per_host
    if k > 0:
        inbound = {f"{total:.1f} s of migrations into {h}, {k} at a time": total / k for h, total in per_dest.items()}
    _slot_terms(terms, inventory, duration_of, inventory.vm, inbound)
    _nic_slot_terms(terms, crossings, topo, p, model.fixed_cost_s)
    _dual_term(terms, dual, crossings, [], topo, p, model)
    return terms.result()


def _dual_term(terms: _Terms, dual: Sequence[tuple[VM, float]], crossings: Mapping[Resource, _Crossing],
               pooled: Sequence[Limit], topo: Topology, policy: Policy, model: DurationModel) -> None:
    """The Lagrangian term (planner.lowerbound_dual) over every crossing, the pooled limits and each VM alone."""
    if not dual:
        return
    cache: dict[tuple[object, ...], tuple[list[float], list[float], list[float]]] = {}
    floors, lows, tops = [], [], []
    for vm, bmax in dual:
        key = (vm.memory_mib, vm.dirty_rate_mibs, copied_disk_mib(vm), vm.live, round(bmax, 9))
        if key not in cache:
            his = cell_tops(bmax)
            cache[key] = cell_floors([vm_floor_estimate(vm, hi, policy, model) for hi in his], his)
        b, lo, hi = cache[key]
        floors.append(b)
        lows.append(lo)
        tops.append(hi)
    limits = list(pooled)
    for r, c in crossings.items():
        limits.append(Limit(True, topo.capacity_mibs(r) * policy.migration_share, c.members))
        limits.append(Limit(False, float(c.slots(policy)), c.members))
    if policy.max_concurrent > 0:
        limits.append(Limit(False, float(policy.max_concurrent), list(range(len(dual)))))
    limits.extend(Limit(False, 1.0, [i]) for i in range(len(dual)))
    value = dual_bound(np.array(floors), np.array(lows), np.array(tops), model.fixed_cost_s, limits)
    terms.add("dual", value, f"every NIC, link and slot limit priced together over {len(dual)} migrations, "
                             f"bandwidth chosen freely per migration")
