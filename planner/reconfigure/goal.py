"""What must end where: the final host of every VM a reconfiguration moves, or why it cannot move.

Every kind but a drain also repairs (plan v1, reconfiguration section): a VM on a host being emptied
(named or in maintenance) or misplaced (`planner.repair`: its host breaks a hard rule) must end on a
host that suits it. `repair_goal` places those VMs with the drain's CP-SAT placement
(`planner.placement.place`; candidates pruned as for a drain, widened when that cost a VM its place)
and explains the ones it cannot place (`planner.explain`). `target_goal` takes the operator's
placement, refuses with a reason each target that breaks a rule (`eligible`: state, drain, pinning,
host rules, size; the explainer: a running VM on a down host), that overfills a host at the end, that
ends two anti-affinity peers together or splits an affinity group; then places the VMs that must move
and that the target does not name with `place_greedy` (room and peers counted in the final state).
`return_goal` is a target of homes (kind `return`) where a refused home is skipped, not unplaced: the
VM stays where it is (repaired if it must move) and the other VMs still go home.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from planner.candidates import PER_VM, find_candidates
from planner.capacity import host_capacity, host_limits
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.explain import StaticExplainer, dynamic_reasons
from planner.migration_facts import can_receive, copy_storage_targets, eligible
from planner.model import VM, Inventory
from planner.placement import place
from planner.repair import misplaced
from planner.topology import Topology

EPS = 1e-9


@dataclass
class Goal:
    """`destination`: VM -> final host for every VM that moves; `unplaced`: VM -> why it cannot."""

    destination: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, list[str]] = field(default_factory=dict)
    status: str = "greedy"  # the placement's status ("optimal", "feasible", "greedy")


def must_move(inventory: Inventory, empty: Collection[str]) -> dict[str, list[str]]:
    """VM -> why it must move: its host is being emptied, or it is misplaced there."""
    out: dict[str, list[str]] = {v.name: [f"host {v.host} is being emptied"] for v in inventory.vms
                                 if v.host in empty}
    for name, why in misplaced(inventory).items():
        out.setdefault(name, []).extend(w for w in why if w not in out.get(name, []))
    return out


def repair_goal(inventory: Inventory, empty: frozenset[str], topology: Topology, *, time_limit_s: float,
                workers: int, model: DurationModel = DEFAULT_MODEL, exclude: Collection[str] = (),
                reserve_s_per_mover: float = 0.0) -> Goal:
    """Places every VM that must move (but those in `exclude`) on a host that suits it.

    `time_limit_s` bounds the whole call (finding who must move and why counts), less
    `reserve_s_per_mover` for each VM to move: what the caller's later steps will take for it."""
    deadline = time.monotonic() + time_limit_s
    need = {n: w for n, w in must_move(inventory, empty).items() if n not in exclude}
    goal = Goal(status="optimal")
    explainer = StaticExplainer(inventory, empty, topology)
    movers: list[VM] = []
    for name in need:
        vm = inventory.vm[name]
        why = explainer.reasons(vm)
        if why:
            goal.unplaced[name] = [*need[name], *why]
        else:
            movers.append(vm)
    if not movers:
        return goal
    deadline -= reserve_s_per_mover * len(movers)
    for per_vm in (PER_VM, PER_VM * 4, 0):  # pruned candidates first (a big drain), widened if that cost a VM
        cands = find_candidates(inventory, movers, empty, topology, per_vm=per_vm)
        result = place(inventory, movers, cands, empty, topology, time_limit_s=max(0.0, deadline - time.monotonic()),
                       workers=workers, model=model)
        if all(cands.complete[v] for v in result.unplaced):
            break
    goal.destination.update(result.destination)
    goal.status = result.status
    for name in result.unplaced:
        goal.unplaced[name] = [*need[name], *dynamic_reasons(inventory, inventory.vm[name], empty, topology,
                                                             result.destination, cands.hosts.get(name))]
    return goal


class FinalState:
    """What every host holds once every VM is at its final host: room and anti-affinity peers."""

    def __init__(self, inventory: Inventory, final: Mapping[str, str]) -> None:
        self.inv = inventory
        self.limits = {h: c.as_tuple() for h, c in host_limits(inventory).items()}
        self.caps = {h.name: host_capacity(h, inventory.policy).as_tuple() for h in inventory.hosts}
        self.usage: dict[str, list[float]] = {h.name: [0.0, 0.0, 0.0] for h in inventory.hosts}
        self.peers: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.host_of: dict[str, str] = {}
        for v in inventory.vms:
            self.add(v, final.get(v.name, v.host))

    def demand(self, vm: VM, host: str) -> tuple[float, float, float]:
        copies = host != vm.host and bool(copy_storage_targets(vm))
        return (vm.vcpus, vm.memory_mib, vm.local_disk_alloc_gib if copies else 0.0)

    def add(self, vm: VM, host: str) -> None:
        u = self.usage[host]
        for i, d in enumerate(self.demand(vm, host)):
            u[i] += d
        for g in vm.anti_affinity:
            self.peers[(g, host)].add(vm.name)
        self.host_of[vm.name] = host

    def remove(self, vm: VM) -> None:
        host = self.host_of.pop(vm.name)
        u = self.usage[host]
        for i, d in enumerate(self.demand(vm, host)):
            u[i] -= d
        for g in vm.anti_affinity:
            self.peers[(g, host)].discard(vm.name)

    def fits(self, vm: VM, host: str, *, strict: bool = True) -> bool:
        """Room for `vm` on `host` (strict: within its capacity; else within the checker's limit)."""
        lim = (self.caps if strict else self.limits)[host]
        u = self.usage[host]
        return all(u[i] + d <= lim[i] + EPS for i, d in enumerate(self.demand(vm, host)))

    def over(self, host: str) -> bool:
        return any(u > lim + EPS for u, lim in zip(self.usage[host], self.limits[host], strict=True))

    def peer(self, vm: VM, host: str) -> str | None:
        """A VM of one of `vm`'s anti-affinity groups on `host` (other than `vm`), if any."""
        for g in sorted(vm.anti_affinity):
            others = self.peers.get((g, host), set()) - {vm.name}
            if others:
                return min(others)
        return None


def place_greedy(inventory: Inventory, movers: Iterable[VM], state: FinalState, empty: Collection[str],
                 topology: Topology) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Biggest first, each to the suitable reachable host with room and no peer left emptiest in memory;
    updates `state`. Returns (VM -> host, VM -> why no host)."""
    placed: dict[str, str] = {}
    failed: dict[str, list[str]] = {}
    receivers = [h for h in inventory.hosts if h.name not in empty]
    for vm in sorted(movers, key=lambda v: (-v.memory_mib, -v.vcpus, v.name)):
        state.remove(vm)  # it leaves its host: judged against the others' final state
        best: tuple[float, str] | None = None
        for h in receivers:
            if not can_receive(vm, h, inventory, empty) or not topology.reachable(vm.host, h.name):
                continue
            if not state.fits(vm, h.name) or state.peer(vm, h.name) is not None:
                continue
            free = state.caps[h.name][1] - state.usage[h.name][1]
            if best is None or (-free, h.name) < (-best[0], best[1]):
                best = (free, h.name)
        if best is None:
            state.add(vm, vm.host)
            failed[vm.name] = ["no host that suits it has room for it (or it would join an anti-affinity peer) "
                               "once the other moves are done"]
        else:
            state.add(vm, best[1])
            placed[vm.name] = best[1]
    return placed, failed


def target_goal(inventory: Inventory, target: Mapping[str, str], empty: frozenset[str], topology: Topology, *,
                keep: Collection[str] = ()) -> Goal:
    """The operator's placement, each refused target explained, and the VMs it leaves out repaired (but those
    in `keep`, which stay where they are, unplaced: a re-plan does not move again what a run attempted)."""
    goal = Goal()
    accepted: dict[str, str] = {}
    explainer = StaticExplainer(inventory, empty, topology)
    for name, host_name in target.items():
        vm = inventory.vm[name]
        host = inventory.host.get(host_name)
        if host is None:
            goal.unplaced[name] = [f"target host {host_name!r} is not in the inventory"]
        elif host_name == vm.host:
            continue  # already there (a misplaced VM kept on its host is refused below)
        elif why := eligible(vm, host, inventory, empty):
            goal.unplaced[name] = [f"target host {host_name} breaks a rule: {'; '.join(why)}"]
        elif why := explainer.reasons(vm):  # no plan can move it at all (a running VM on a down host)
            goal.unplaced[name] = why
        elif not topology.reachable(vm.host, host_name):
            goal.unplaced[name] = [f"no network path from {vm.host} to target host {host_name}"]
        else:
            accepted[name] = host_name
    broken = must_move(inventory, empty)
    for name, host_name in target.items():
        if host_name == inventory.vm[name].host and name in broken:
            goal.unplaced[name] = [f"the target keeps it on {host_name}, which breaks a rule: "
                                   f"{'; '.join(broken[name])}"]
    state = FinalState(inventory, accepted)
    _refuse_overfull(inventory, accepted, state, goal)
    _refuse_peers(inventory, accepted, state, goal)
    rest = [inventory.vm[n] for n in broken if n not in target]
    movable = []
    for vm in rest:
        why = ["it is not to be moved again in this run"] if vm.name in keep else explainer.reasons(vm)
        if why:
            goal.unplaced[vm.name] = [*broken[vm.name], *why]
        else:
            movable.append(vm)
    placed, failed = place_greedy(inventory, movable, state, empty, topology)
    accepted.update(placed)
    for name, why in failed.items():
        goal.unplaced[name] = [*broken[name], *why]
    if _refuse_affinity_splits(inventory, accepted, state, goal):
        _refuse_overfull(inventory, accepted, state, goal)  # a VM kept home may overfill its host
    goal.destination = accepted
    return goal


def _refuse_affinity_splits(inventory: Inventory, accepted: dict[str, str], state: FinalState, goal: Goal) -> bool:
    """Keeps home the moving members of an affinity group that would end on more hosts than it started on
    (the checker's affinity rule); True when it dropped any."""
    before: dict[str, set[str]] = defaultdict(set)
    after: dict[str, set[str]] = defaultdict(set)
    for v in inventory.vms:
        for g in v.affinity:
            before[g].add(v.host)
            after[g].add(accepted.get(v.name, v.host))
    dropped = False
    for g in sorted(after):
        if len(after[g]) <= max(1, len(before[g])):
            continue
        for name in sorted(n for n in accepted if g in inventory.vm[n].affinity):
            vm = inventory.vm[name]
            state.remove(vm)
            state.add(vm, vm.host)
            goal.unplaced[name] = [f"affinity group {g} would end on {len(after[g])} hosts "
                                   f"({', '.join(sorted(after[g]))}), it runs on {len(before[g])}"]
            del accepted[name]
            dropped = True
    return dropped


def _refuse_overfull(inventory: Inventory, accepted: dict[str, str], state: FinalState, goal: Goal) -> None:
    """Drops arrivals (lowest priority, then biggest) from every host the target fills beyond its limit."""
    changed = True
    while changed:
        changed = False
        for host in sorted(state.usage):
            if not state.over(host):
                continue
            arriving = sorted((n for n, h in accepted.items() if h == host),
                              key=lambda n: (inventory.vm[n].priority, -inventory.vm[n].memory_mib, n))
            if not arriving:
                continue  # nothing the target sends there: over before the plan (the checker allows it)
            name = arriving[0]
            vm = inventory.vm[name]
            state.remove(vm)
            state.add(vm, vm.host)
            del accepted[name]
            goal.unplaced[name] = [f"target host {host} cannot hold every VM the target sends it (vCPUs, memory "
                                   f"or local disk over its capacity at the end)"]
            changed = True


def _refuse_peers(inventory: Inventory, accepted: dict[str, str], state: FinalState, goal: Goal) -> None:
    """Drops a target that ends a VM on the host of one of its anti-affinity peers."""
    for name in sorted(accepted, key=lambda n: (inventory.vm[n].priority, n)):
        vm = inventory.vm[name]
        host = accepted[name]
        peer = state.peer(vm, host)
        if peer is not None:
            state.remove(vm)
            state.add(vm, vm.host)
            del accepted[name]
            goal.unplaced[name] = [f"target host {host} would hold it with {peer}, which shares an anti-affinity "
                                   f"group with it"]


def return_goal(inventory: Inventory, homes: Mapping[str, str], empty: frozenset[str], topology: Topology
                ) -> tuple[Goal, dict[str, str]]:
    """`target_goal` of `homes` (VM -> the host it came from), each home it refuses skipped with its reason.

    A skipped VM leaves the target and the goal is made again without it: it stays where it is, or is
    repaired like any VM the target does not name when its host breaks a rule. Ends when every home left
    is accepted (each round skips at least one VM). Returns (goal, VM -> why it is not sent home)."""
    wanted = dict(homes)
    skipped: dict[str, str] = {}
    while True:
        goal = target_goal(inventory, wanted, empty, topology)
        refused = {n: "; ".join(goal.unplaced.pop(n)) for n in list(wanted) if n in goal.unplaced}
        if not refused:
            return goal, skipped
        skipped.update(refused)
        for name in refused:
            del wanted[name]
