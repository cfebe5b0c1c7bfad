"""Which VMs a rebalance moves: level utilisation to a target spread with the fewest GiB moved.

Utilisation, spread and moved GiB are `planner.balance`'s (plan v1's definitions). The choice is a
greedy descent, one move at a time, in the group (`--group-by LABEL`: hosts sharing the label's value;
VMs move only within their host's group) whose spread is widest:
* from the group's most-utilised host to one of its `COLDEST` least-utilised hosts, the VM and host
  with the best gain per GiB moved; gain = how much the busier of the two hosts drops,
  max(u_src, u_dst) − max(u_src', u_dst'), in points of utilisation; GiB = the VM's memory and copied
  disks plus `MOVE_COST_GIB` (fewer, larger moves win ties: every move has a fixed cost);
* when the hottest host has no such move (one big VM, nothing that fits elsewhere), it is set aside and
  the coldest host is filled from one of the `HOTTEST` busiest others instead.
A move must gain at least `min_gain_pct` (no thrashing: nothing moves for a gain too small to matter),
go to a host that may receive the VM (`can_receive`: up, not emptied, host rules, pinning), that is
reachable, has room at the end (`FinalState`, capacity by allocation whatever the balance basis) and no
anti-affinity peer; a VM moves at most once and VMs in affinity groups do not move (the group's hosts
would multiply). It stops at the target spread, at `max_moves` or `max_gib`, or when no move is left.
The order of the moves is also the balance-vs-cost ladder: the first k moves are the best k found.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from planner.balance import By, Metric, balanced_hosts, vm_load, vm_moved_gib
from planner.capacity import host_capacity
from planner.host_rules import needs_of, suits
from planner.model import VM, Inventory
from planner.reconfigure.goal import FinalState
from planner.topology import Topology

COLDEST = 12  # destinations tried per move
HOTTEST = 24  # sources tried when the hottest host has no move
MOVE_COST_GIB = 0.25


@dataclass(frozen=True)
class RebalanceOptions:
    metric: Metric = Metric.MEMORY
    by: By = By.ALLOCATION
    target_spread_pct: float | None = None  # None: as level as min_gain and the budget allow
    max_moves: int | None = None
    max_gib: float | None = None
    min_gain_pct: float = 1.0
    group_by: str | None = None


@dataclass(frozen=True)
class Choice:
    moves: tuple[tuple[str, str], ...]  # (VM, destination) in the order chosen
    gib: tuple[float, ...]  # GiB moved after each move
    worst_spread: tuple[float, ...]  # the widest group spread before any move (index 0), then after each
    stop: str  # why it stopped, in words


def move_gib(vm: VM) -> float:
    """GiB one move puts on the wire at the least (a VM's local disks are always copied when it moves)."""
    return vm_moved_gib(vm)


class Loads:
    """Per host: load (cpu, memory) and capacity; utilisation under the metric."""

    def __init__(self, inventory: Inventory, placement: Mapping[str, str], hosts: list[str], metric: Metric,
                 by: By) -> None:
        self.metric, self.by = metric, by
        self.cpu = dict.fromkeys(hosts, 0.0)
        self.mem = dict.fromkeys(hosts, 0.0)
        self.cap: dict[str, tuple[float, float]] = {}
        for h in hosts:
            room = host_capacity(inventory.host[h], inventory.policy)
            self.cap[h] = (room.vcpus, room.memory_mib)
        for v in inventory.vms:
            h = placement.get(v.name, v.host)
            if h in self.cpu:
                c, m = vm_load(v, by)
                self.cpu[h] += c
                self.mem[h] += m

    def util(self, h: str, dcpu: float = 0.0, dmem: float = 0.0) -> float:
        ccap, mcap = self.cap[h]
        cpu = 100.0 * (self.cpu[h] + dcpu) / ccap if ccap > 0 else 0.0
        mem = 100.0 * (self.mem[h] + dmem) / mcap if mcap > 0 else 0.0
        return cpu if self.metric is Metric.CPU else mem if self.metric is Metric.MEMORY else max(cpu, mem)


class HostHeap:
    """The hosts of one group, with lazy max- and min-heaps of their utilisation.

    A host set aside (no move from it gains enough) leaves the max-heap, so the hottest hosts still in
    play are found in O(k log n); its utilisation still counts in the group's spread."""

    def __init__(self, hosts: list[str], loads: Loads) -> None:
        self.hosts = hosts
        self.loads = loads
        self.hot_v = dict.fromkeys(hosts, 0)
        self.cold_v = dict.fromkeys(hosts, 0)
        self.hot = [(-loads.util(h), h, 0) for h in hosts]
        self.cold = [(loads.util(h), h, 0) for h in hosts]
        heapq.heapify(self.hot)
        heapq.heapify(self.cold)
        self.aside: dict[str, float] = {}
        self.done = len(hosts) < 2

    def touch(self, h: str) -> None:
        self.aside.pop(h, None)  # its load changed: in play again
        self.hot_v[h] += 1
        self.cold_v[h] += 1
        u = self.loads.util(h)
        heapq.heappush(self.hot, (-u, h, self.hot_v[h]))
        heapq.heappush(self.cold, (u, h, self.cold_v[h]))

    def set_aside(self, h: str) -> None:
        self.hot_v[h] += 1
        self.aside[h] = self.loads.util(h)

    @staticmethod
    def _top(heap: list[tuple[float, str, int]], version: dict[str, int], k: int) -> list[str]:
        out: list[tuple[float, str, int]] = []
        while heap and len(out) < k:
            item = heapq.heappop(heap)
            if item[2] == version[item[1]]:
                out.append(item)
        for item in out:
            heapq.heappush(heap, item)
        return [h for _, h, _ in out]

    def hottest(self, k: int = 1) -> list[str]:
        """The k most utilised hosts not set aside."""
        return self._top(self.hot, self.hot_v, k)

    def coldest(self, k: int = 1) -> list[str]:
        return self._top(self.cold, self.cold_v, k)

    def spread(self) -> float:
        if len(self.hosts) < 2:
            return 0.0
        top = self.hottest()
        high = max([*(self.loads.util(h) for h in top), *self.aside.values()])
        return high - self.loads.util(self.coldest()[0])


def shift(vm: VM, load: tuple[float, float], dest: str, loads: Loads, state: FinalState,
          on: dict[str, list[VM]]) -> None:
    """Moves `vm` (counting `load`) to `dest` in the loads, the final state and the per-host VM lists."""
    src = state.host_of[vm.name]
    loads.cpu[src] -= load[0]
    loads.mem[src] -= load[1]
    loads.cpu[dest] += load[0]
    loads.mem[dest] += load[1]
    state.remove(vm)
    state.add(vm, dest)
    on[src].remove(vm)
    on[dest].append(vm)


def host_groups(inventory: Inventory, hosts: list[str], group_by: str | None) -> dict[str, list[str]]:
    """Hosts by the value of label `group_by` (one group of every host when None; '' for hosts without it)."""
    if group_by is None:
        return {"": hosts}
    out: dict[str, list[str]] = defaultdict(list)
    for h in hosts:
        out[inventory.host[h].labels.get(group_by, "")].append(h)
    return dict(out)


def choose_moves(inventory: Inventory, start: Mapping[str, str], empty: Collection[str], options: RebalanceOptions,
                 topology: Topology, *, frozen: Collection[str] = ()) -> Choice:
    """The moves of a rebalance from placement `start` (VM -> host, after repairs; see the module docstring).

    `frozen`: VMs that must not move (they already move to be repaired).
    """
    hosts = balanced_hosts(inventory, empty)
    loads = Loads(inventory, start, hosts, options.metric, options.by)
    state = FinalState(inventory, start)
    groups = [HostHeap(hs, loads) for _, hs in sorted(host_groups(inventory, hosts, options.group_by).items())]
    group_of = {h: g for g in groups for h in g.hosts}
    on: dict[str, list[VM]] = defaultdict(list)
    for v in inventory.vms:
        on[start.get(v.name, v.host)].append(v)
    fixed = set(frozen)
    gib_of = {v.name: move_gib(v) for v in inventory.vms}
    load_of = {v.name: vm_load(v, options.by) for v in inventory.vms}
    suit_cache: dict[tuple[object, str], bool] = {}

    def may_receive(vm: VM, host: str) -> bool:
        h = inventory.host[host]
        key = (needs_of(vm, inventory), host)
        ok = suit_cache.get(key)
        if ok is None:
            ok = suits(key[0], h)
            suit_cache[key] = ok
        return (ok and not vm.pinned and host != vm.host and topology.reachable(state.host_of[vm.name], host)
                and state.fits(vm, host) and state.peer(vm, host) is None)

    def best_move(sources: list[str], dests: list[str]) -> tuple[float, float, VM, str] | None:
        best: tuple[float, float, VM, str] | None = None
        for s in sources:
            us = loads.util(s)
            for vm in on[s]:
                if vm.name in fixed or vm.affinity or vm.pinned:
                    continue
                c, m = load_of[vm.name]
                us_after = loads.util(s, -c, -m)
                cost = gib_of[vm.name] + MOVE_COST_GIB
                for d in dests:
                    if d == s:
                        continue
                    gain = max(us, loads.util(d)) - max(us_after, loads.util(d, c, m))
                    if gain < options.min_gain_pct or gain <= 0:
                        continue
                    score = gain / cost
                    if best is not None and (score, gain) <= (best[0], best[1]):
                        continue
                    if may_receive(vm, d):
                        best = (score, gain, vm, d)
        return best

    moves: list[tuple[str, str]] = []
    gib: list[float] = []
    worst = [max((g.spread() for g in groups), default=0.0)]
    total_gib = 0.0
    target = options.target_spread_pct
    stop = f"no move left that gains at least {options.min_gain_pct:g} points"
    while True:
        live = [g for g in groups if not g.done]
        if target is not None and worst[-1] <= target + 1e-9:
            stop = f"spread {worst[-1]:.1f}% is within the target {target:g}%"
            break
        if not live:
            break
        if options.max_moves is not None and len(moves) >= options.max_moves:
            stop = f"max-moves {options.max_moves} reached"
            break
        g = max(live, key=lambda g: g.spread())
        if target is not None and g.spread() <= target + 1e-9:
            g.done = True
            continue
        found = None
        top = g.hottest()
        high = max(g.aside.values(), default=-1.0)
        if top and g.loads.util(top[0]) >= high:  # the group's hottest host is still in play: lower it
            found = best_move(top, g.coldest(COLDEST))
            if found is None:
                g.set_aside(top[0])  # no move lowers it (e.g. one big VM): only raising the coldest host helps
        if found is None:
            sources = g.hottest(HOTTEST)
            found = best_move(sources, g.coldest())
            if found is None and sources:
                for h in sources:  # none of them can give the coldest host anything: look further down
                    g.set_aside(h)
                continue
        if found is None:
            g.done = True
            continue
        _, _, vm, dest = found
        if options.max_gib is not None and total_gib + gib_of[vm.name] > options.max_gib + 1e-9:
            stop = f"max-gib {options.max_gib:g} reached"
            break
        src = state.host_of[vm.name]
        shift(vm, load_of[vm.name], dest, loads, state, on)
        fixed.add(vm.name)
        group_of[src].touch(src)
        group_of[dest].touch(dest)
        total_gib += gib_of[vm.name]
        moves.append((vm.name, dest))
        gib.append(total_gib)
        worst.append(max(gr.spread() for gr in groups))
    return Choice(tuple(moves), tuple(gib), tuple(worst), stop)
