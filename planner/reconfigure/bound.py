"""A proven lower bound on the makespan of ANY valid plan that ends VMs where a reconfiguration ends them.

The terms of `planner.lowerbound`, kept only where they stay valid when a VM may take several hops
(staging) by any route. Fix the final placement; a VM v whose final host t(v) differs from its start
host s(v) must, in every such plan, leave s(v) in its first hop and enter t(v) in its last. A hop with
bandwidth b on a resource r has b ≤ capacity(r) × share, lasts ≥ floor_duration(b) and sends
≥ floor_bytes(b) over every resource of its path, both at least their values at the highest bandwidth
allowed (`duration.floor_estimate` is monotone: less bandwidth never sends less nor ends sooner).
* source NIC: hosts hang off one switch, so v's first hop crosses (s(v), switch) — whatever its
  destination — sending ≥ floor_bytes(cap of that NIC); Σ over the VMs leaving a host, over the NIC's
  capped capacity, bounds the makespan;
* destination NIC: likewise v's last hop crosses (switch, t(v));
* links: only BRIDGES of the network (an edge whose removal separates the graph) on the direct path
  from s(v) to t(v): every walk from s(v) to t(v), through any staging host, crosses a bridge that
  separates them, in that direction; a link that is not a bridge may be avoided by a staging detour,
  so it gives no term;
* longest move: one of v's hops crosses the slowest of those forced resources, so v needs at least
  floor_duration(its capped capacity); the VM's hops never overlap and start at 0 or later;
* slot terms: the first hops leaving one host are at most `max_outbound_per_host` at a time, the last
  hops entering one host at most `max_inbound_per_host`, all of them at most `max_concurrent`.
Staging hops only add traffic, time and slot use, so leaving them out keeps every term a bound.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import networkx as nx

from planner.duration import DEFAULT_MODEL, DurationModel
from planner.lowerbound import LowerBound, nic_slots_bound
from planner.lowerbound import _Terms as Terms  # one keeper of bound terms
from planner.migration_facts import vm_floor_estimate
from planner.model import Inventory
from planner.topology import Resource, Topology


def moves_lower_bound(inventory: Inventory, final: Mapping[str, str], model: DurationModel = DEFAULT_MODEL, *,
                      topology: Topology | None = None) -> LowerBound:
    """A lower bound on every valid plan taking each VM of `final` from its host to `final[vm]`."""
    topo = topology if topology is not None else Topology(inventory)
    p, share = inventory.policy, inventory.policy.migration_share
    bridges = {frozenset(e) for e in nx.bridges(topo.graph)} if len(topo.graph) else set()
    per_resource: dict[Resource, list[float]] = defaultdict(list)
    out_time: dict[str, float] = defaultdict(float)
    in_time: dict[str, float] = defaultdict(float)
    durations: dict[str, float] = {}
    for name, dest in final.items():
        vm = inventory.vm[name]
        if dest == vm.host:
            continue
        path = topo.path(vm.host, dest)
        if path is None:
            continue
        forced = [r for r in Topology.resources(path) if r in ((path[0], path[1]), (path[-2], path[-1]))
                  or frozenset(r) in bridges]
        for r in forced:
            per_resource[r].append(vm_floor_estimate(vm, topo.capacity_mibs(r) * share, p, model).transferred_mib)
        slowest = min(topo.capacity_mibs(r) for r in forced) * share
        durations[name] = vm_floor_estimate(vm, slowest, p, model).duration_s
        nic_out = topo.capacity_mibs((path[0], path[1])) * share
        nic_in = topo.capacity_mibs((path[-2], path[-1])) * share
        out_time[vm.host] += vm_floor_estimate(vm, nic_out, p, model).duration_s
        in_time[dest] += vm_floor_estimate(vm, nic_in, p, model).duration_s
    terms = Terms()
    hosts = inventory.host
    for r, floors in per_resource.items():
        cap = topo.capacity_mibs(r) * share
        family = "source_nic" if r[0] in hosts else "destination_nic" if r[1] in hosts else "link"
        terms.add(family, sum(floors) / cap, f"{sum(floors):.0f} MiB must cross {r[0]}->{r[1]} at {cap:.1f} MiB/s")
        k = min(len(floors), p.max_outbound_per_host if r[0] in hosts and p.max_outbound_per_host > 0 else len(floors),
                p.max_inbound_per_host if r[1] in hosts and p.max_inbound_per_host > 0 else len(floors),
                p.max_concurrent if p.max_concurrent > 0 else len(floors))
        if r[0] in hosts or r[1] in hosts:  # on a NIC the hops are known to be first (or last) ones
            terms.add("nic_slots", nic_slots_bound(floors, cap, k, model.fixed_cost_s),
                      f"{len(floors)} moves cross {r[0]}->{r[1]} at {cap:.1f} MiB/s, at most {k} at a time")
    if durations:
        longest = max(durations, key=durations.__getitem__)
        terms.add("longest_migration", durations[longest], f"VM {longest} needs at least {durations[longest]:.1f} s")
    for label, limit, per_host in (("leave", p.max_outbound_per_host, out_time),
                                   ("enter", p.max_inbound_per_host, in_time)):
        if limit > 0:
            for h, total in per_host.items():
                terms.add(f"{'outbound' if label == 'leave' else 'inbound'}_slots", total / limit,
                          f"{total:.1f} s of moves {label} {h}, {limit} at a time")
    if p.max_concurrent > 0 and durations:
        total = sum(durations.values())
        terms.add("max_concurrent", total / p.max_concurrent, f"{total:.1f} s of moves, {p.max_concurrent} at a time")
    return terms.result()
