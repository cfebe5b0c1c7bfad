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

Two terms see the chains that full hosts force (`_chain_terms`). Notation: for a host H, R(H) is the
VMs on H before the plan, U_r(H) their total of resource r (vCPUs, memory MiB) and L_r(H) the checker's
limit (`host_limits`); d_r(v) is what v takes; f(v) = floor_duration(v) at the capped capacity of
(s(v), switch), which v's FIRST hop crosses whatever its destination; g(v) = floor_duration(v) at
(switch, t(v)), which v's LAST hop crosses. Copied disk is never given back, so only vCPUs and memory
can be freed by a departure.
* chain: let v with t(v) = H ≠ s(v) start its last hop at σ. From σ on, v counts on H, and so does
  every w of R(H) whose FIRST hop has not ended by σ (a VM counts on its source until its hop ends; ends
  before starts at one instant). Arrivals only add. So the set D ⊆ R(H) of VMs whose first hop ended by
  σ has Σ_D d_r ≥ need_r := d_r(v) + U_r(H) − L_r(H) − ε for every r (ε = the checker's 1e-6 tolerance).
  When some need_r > 0, D is not empty and σ ≥ max_{w∈D} f(w) ≥ τ(v) := the least τ among the f(w) with
  Σ_{w∈R(H), f(w) ≤ τ} d_r(w) ≥ need_r for every r (every such D lies inside the set of that prefix
  for τ = max_D f, and the prefix set is one such D). Then makespan ≥ σ + g(v) ≥ τ(v) + g(v). Any VM of
  R(H) may take part in D, those staying on H included (they could step out and back), so nothing is
  assumed about routes. When all of R(H) cannot cover need, no valid plan exists: no term.
* staging: w ∈ R(t(v)) is ESSENTIAL to v when R(t(v)) without w cannot cover need(v): every such D contains
  w, so v's last hop starts after w's first hop ends. (An essential w cannot end on t(v) beside v: w
  essential means L_r < d_r(v) + d_r(w) for some r, so such a final placement is not valid.) In a cycle
  v1 → v2 → … → vk → v1, each v(i+1) essential to v(i), if every vi made a single hop starting at σi, then
  σi ≥ σ(i+1) + duration > σ(i+1) all round the cycle: impossible. So some vi makes at least two hops
  (a staging hop: at least one extra transfer), not overlapping: makespan ≥ f(vi) + g(vi) ≥ the least
  f + g in the cycle, and in the strongly connected component of the essential graph that holds it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import networkx as nx

from planner.capacity import host_limits
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.lowerbound import LowerBound, nic_slots_bound
from planner.lowerbound import _Terms as Terms  # one keeper of bound terms
from planner.migration_facts import vm_floor_estimate
from planner.model import VM, Inventory
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
    _chain_terms(inventory, final, topo, model, terms)
    return terms.result()


CHECKER_TOL = 1e-6  # the capacity rule lets a total exceed its limit by this much


def _freed(vm: VM) -> tuple[float, float]:
    """What a VM's departure frees on its host: vCPUs and memory (copied disk is never given back)."""
    return (float(vm.vcpus), float(vm.memory_mib))


def _chain_terms(inventory: Inventory, final: Mapping[str, str], topo: Topology, model: DurationModel,
                 terms: Terms) -> None:
    """The chain and staging terms (module docstring)."""
    p, share = inventory.policy, inventory.policy.migration_share
    limits = host_limits(inventory)

    def floor_s(vm: VM, nic: Resource) -> float:
        return vm_floor_estimate(vm, topo.capacity_mibs(nic) * share, p, model).duration_s

    def first_s(vm: VM) -> float:
        return floor_s(vm, (vm.host, topo.switch_of[vm.host]))

    def last_s(vm: VM, dest: str) -> float:
        return floor_s(vm, (topo.switch_of[dest], dest))

    essential: nx.DiGraph = nx.DiGraph()
    for name, dest in final.items():
        vm = inventory.vm[name]
        if dest == vm.host or dest not in limits:
            continue
        residents = list(inventory.vms_on.get(dest, ()))
        lim = limits[dest].as_tuple()[:2]
        used = [sum(_freed(w)[r] for w in residents) for r in range(2)]
        need = [_freed(vm)[r] + used[r] - lim[r] - CHECKER_TOL for r in range(2)]
        if all(n <= 0 for n in need) or any(used[r] < need[r] for r in range(2)):
            continue  # room already, or no valid plan at all
        covered = [0.0, 0.0]
        tau = 0.0
        for w in sorted(residents, key=lambda w: (first_s(w), w.name)):
            if all(covered[r] >= need[r] for r in range(2)):
                break
            tau = first_s(w)
            covered = [covered[r] + _freed(w)[r] for r in range(2)]
        terms.add("chain", tau + last_s(vm, dest), f"VM {name} enters {dest} only once {tau:.1f} s of departures "
                                                   f"from it have ended (the host is full), then takes "
                                                   f"{last_s(vm, dest):.1f} s")
        for w in residents:
            if any(need[r] > 0 and used[r] - _freed(w)[r] < need[r] for r in range(2)):
                essential.add_edge(name, w.name)
    for component in nx.strongly_connected_components(essential):
        if len(component) < 2:
            continue
        two, who = min((first_s(inventory.vm[n]) + last_s(inventory.vm[n], final[n]), n) for n in component)
        terms.add("staging", two, f"{len(component)} VMs each wait for another to leave a full host "
                                  f"({', '.join(sorted(component))}): one takes a staging hop, "
                                  f"at least {two:.1f} s for {who}")
