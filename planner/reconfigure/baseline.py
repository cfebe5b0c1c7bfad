"""The rebalancing baseline: greedy "most-loaded → least-loaded", as simple levellers do (largest VM of the
busiest host to the emptiest host), to compare with evac's choice of moves (`evac rebalance`,
bench/bench_rebalance.py). The drain baselines are in `planner.baselines`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from planner.balance import balanced_hosts, spread, utilisation, vm_load
from planner.migration_facts import can_receive, drain_set
from planner.model import VM, Inventory
from planner.plan import Spread
from planner.reconfigure.goal import FinalState
from planner.reconfigure.rebalance import HostHeap, Loads, RebalanceOptions, move_gib, shift


@dataclass(frozen=True)
class RebalanceBaseline:
    """What the naive leveller does: its moves (VM, destination), the balance before and after, the GiB."""

    moves: tuple[tuple[str, str], ...]
    before: Spread
    after: Spread
    moved_gib: float


def most_to_least_rebalance(inventory: Inventory, drained: Iterable[str],
                            options: RebalanceOptions) -> RebalanceBaseline:
    """Greedy "most-loaded → least-loaded", as simple levellers do: the most utilised host gives its LARGEST
    VM that the least utilised host may receive (same rules as evac: `can_receive`, room at the end, no
    anti-affinity peer) when that lowers the busier of the two by at least `min_gain_pct`; a host that
    cannot give is set aside. Same stops as evac (target spread, max moves, max GiB); a VM moves once.
    No repairs, no sequencing: it measures the choice of moves only."""
    empty = drain_set(inventory, drained)
    hosts = balanced_hosts(inventory, empty)
    start = {v.name: v.host for v in inventory.vms}
    loads = Loads(inventory, start, hosts, options.metric, options.by)
    state = FinalState(inventory, start)
    heap = HostHeap(hosts, loads)
    on: dict[str, list[VM]] = defaultdict(list)
    for v in inventory.vms:
        on[v.host].append(v)
    moved: set[str] = set()
    moves: list[tuple[str, str]] = []
    gib = 0.0
    while not heap.done:
        if options.max_moves is not None and len(moves) >= options.max_moves:
            break
        if options.target_spread_pct is not None and heap.spread() <= options.target_spread_pct + 1e-9:
            break
        top, low = heap.hottest(), heap.coldest()
        if not top or top[0] == low[0]:
            break
        s, d = top[0], low[0]
        chosen = None
        for vm in sorted(on[s], key=lambda v: (-v.memory_mib, -v.vcpus, v.name)):
            if vm.name in moved or vm.affinity or not can_receive(vm, inventory.host[d], inventory, empty):
                continue
            c, m = vm_load(vm, options.by)
            gain = max(loads.util(s), loads.util(d)) - max(loads.util(s, -c, -m), loads.util(d, c, m))
            if gain >= max(options.min_gain_pct, 1e-9) and state.fits(vm, d) and state.peer(vm, d) is None:
                chosen = vm
                break
        if chosen is None:
            heap.set_aside(s)
            continue
        if options.max_gib is not None and gib + move_gib(chosen) > options.max_gib + 1e-9:
            break
        shift(chosen, vm_load(chosen, options.by), d, loads, state, on)
        moved.add(chosen.name)
        heap.touch(s)
        heap.touch(d)
        gib += move_gib(chosen)
        moves.append((chosen.name, d))
    final = {**start, **dict(moves)}
    return RebalanceBaseline(tuple(moves), spread(utilisation(inventory, start, options.metric, options.by, empty)),
                             spread(utilisation(inventory, final, options.metric, options.by, empty)), gib)
