"""From where VMs are to where they must end: hops in an order that is safe at every instant.

An event-driven list schedule (the drain scheduler's tasks, levels and resource caps, `planner.schedule`)
over bandwidth AND host capacity over time. A hop may start only when
* its destination has room for the VM from the hop's start on (plan v1: a migrating VM counts on both
  hosts; its source is freed at the hop's end, its copied disks never are) against the checker's limit,
  `host_capacity` raised to what the host already held (a host overloaded before the plan may stay so,
  never get worse);
* no member of one of its anti-affinity groups is present on the destination (a VM is present on its
  source until its hop ends and on its destination from its start);
* the policy's slot limits (outbound per source, inbound per destination, max_concurrent) and every NIC
  and link direction of its path have room for its bandwidth (its path's cap, else half of it).
At each event (a hop ends) the hops waiting on what was freed are tried again, highest priority and
longest first; a hop that cannot start waits on the ONE thing that blocks it (nothing else can free it).

When nothing runs and nothing can start, the moves block each other (two full hosts swapping, a long
cycle of full hosts). Then staging hops empty waiting VMs' destinations just enough for them: for one
waiting VM, the VMs waiting to leave its destination which must go first (its anti-affinity peers
there; for room, the cheapest single VM big enough, else the biggest until it fits), each to a host
that suits it (`eligible`, one source of truth with the checker), has room for it (counting the others
staged with it) and no anti-affinity peer, and is cheapest in bandwidth (own switch first, then the
shortest hop there and on to its destination; a host no other waiting VM needs first). The cheapest
such eviction sets in bytes are staged, as many disjoint ones as the staging room takes: each starts a
chain of its own, so a long cycle unwinds in parallel pieces. If that leaves a cycle stuck, the
sequence is made again staging for one waiting VM at a time. A VM is staged at most once, so this
ends. When nothing can be staged the cycle cannot be broken: every VM still waiting is reported with
the hosts and VMs that block it, and
`sequence_moves` plans again without them (they stay where they are).
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from planner.capacity import host_limits
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.host_rules import needs_of, suits
from planner.migration_facts import copy_storage_targets, eligible, migration_facts
from planner.model import VM, HostState, Inventory
from planner.schedule import Task, capped_milli, task_of
from planner.topology import Resource, Topology

EPS = 1e-9
LEVELS_TRIED = (0, 1)  # the path's cap, else half of it (a sliver of bandwidth would hold slots for long)
LEVEL_DIVISORS_TRIED = (1, 2)  # the bandwidth levels those are (cap / 1, cap / 2)
STAGING_HOSTS_PRICED = 64  # hosts with room whose hop durations are compared when staging one VM
STAGING_CANDIDATES = 64  # waiting VMs (highest priority first) whose destinations a deadlock may empty

Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Hop:
    """One migration of the sequence: `task.facts` says from where to where."""

    task: Task
    level: int
    start_units: int
    hop: int
    staging: bool

    @property
    def vm(self) -> str:
        return self.task.vm

    @property
    def end_units(self) -> int:
        return self.start_units + self.task.levels[self.level].duration_units


@dataclass(frozen=True)
class Sequence:
    hops: tuple[Hop, ...]
    blocked: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # VM -> why it could not move

    @property
    def makespan_units(self) -> int:
        return max((h.end_units for h in self.hops), default=0)

    @property
    def staged(self) -> tuple[str, ...]:
        return tuple(sorted({h.vm for h in self.hops if h.staging}))


def _limit(n: int) -> int:
    return n if n > 0 else 1 << 30


class _Run:
    """One attempt at sequencing `goal` (VM -> final host); `stuck` is set when a cycle cannot be broken."""

    def __init__(self, inventory: Inventory, goal: Mapping[str, str], drained: frozenset[str], topology: Topology,
                 model: DurationModel, parallel: bool = True) -> None:
        self.inv, self.goal, self.drained, self.topo, self.model = inventory, goal, drained, topology, model
        self.parallel = parallel  # stage for several waiting VMs at one deadlock (else for the cheapest one)
        p = inventory.policy
        self.lim_out, self.lim_in, self.lim_all = (_limit(p.max_outbound_per_host), _limit(p.max_inbound_per_host),
                                                   _limit(p.max_concurrent))
        self.limits = {h: c.as_tuple() for h, c in host_limits(inventory).items()}
        self.usage: dict[str, list[float]] = {h.name: [0.0, 0.0, 0.0] for h in inventory.hosts}
        self.present: dict[tuple[str, str], set[str]] = defaultdict(set)
        for v in inventory.vms:
            u = self.usage[v.host]
            u[0] += v.vcpus
            u[1] += v.memory_mib
            for g in v.anti_affinity:
                self.present[(g, v.host)].add(v.name)
        self.where = {name: inventory.vm[name].host for name in goal}
        self.caps: dict[Resource, int] = {}
        self.used: dict[Resource, int] = defaultdict(int)
        self.out_slots: dict[str, int] = defaultdict(int)
        self.in_slots: dict[str, int] = defaultdict(int)
        self.total = 0
        self.tasks: dict[tuple[str, str, str], Task] = {}
        self.demands: dict[str, tuple[float, float, float]] = {}
        self.hops: list[Hop] = []
        self.n_hops: dict[str, int] = defaultdict(int)
        self.staged: set[str] = set()
        self.stage_to: dict[str, str] = {}  # VM -> the staging host its next hop goes to (decided, not started)
        self.waiting: dict[Key, list[str]] = defaultdict(list)
        self.blocker: dict[str, Key] = {}
        self.running: list[tuple[int, int, int]] = []  # (end, order, index into hops)
        first = {name: self.task(name, self.where[name], dest) for name, dest in goal.items()}
        order = sorted(goal, key=lambda n: (-inventory.vm[n].priority, -first[n].levels[0].duration_units, n))
        self.rank = {n: i for i, n in enumerate(order)}
        self.stuck: dict[str, tuple[str, ...]] | None = None

    # ------------------------------------------------------------ facts

    def task(self, name: str, source: str, dest: str) -> Task:
        k = (name, source, dest)
        t = self.tasks.get(k)
        if t is None:
            vm = self.inv.vm[name]
            facts = migration_facts(vm, dest, self.inv, self.topo, source=source)
            assert facts is not None, f"{name}: no path {source} -> {dest}"  # goals and staging hosts are reachable
            t = task_of(vm, facts, self.inv.policy, self.model, LEVEL_DIVISORS_TRIED)
            self.tasks[k] = t
        return t

    def cap(self, r: Resource) -> int:
        c = self.caps.get(r)
        if c is None:
            c = capped_milli(self.topo, r, self.inv.policy.migration_share)
            self.caps[r] = c
        return c

    def demand(self, vm: VM) -> tuple[float, float, float]:
        d = self.demands.get(vm.name)
        if d is None:  # asked at every attempt: cached (copy_storage_targets walks the disks)
            d = (vm.vcpus, vm.memory_mib, vm.local_disk_alloc_gib if copy_storage_targets(vm) else 0.0)
            self.demands[vm.name] = d
        return d

    def room_for(self, vm: VM, host: str) -> bool:
        u, lim, d = self.usage[host], self.limits[host], self.demand(vm)
        return u[0] + d[0] <= lim[0] + EPS and u[1] + d[1] <= lim[1] + EPS and u[2] + d[2] <= lim[2] + EPS

    def peer_on(self, vm: VM, host: str) -> str | None:
        for g in vm.anti_affinity:
            if self.present.get((g, host), set()) - {vm.name}:
                return g
        return None

    # ------------------------------------------------------------ starting and ending hops

    def blocked_by(self, vm: VM, dest: str, task: Task) -> tuple[Key | None, int]:
        """What keeps this hop from starting now (None: nothing) and the level it would run at."""
        if self.total >= self.lim_all:
            return ("all",), 0
        src = self.where[vm.name]
        if self.out_slots[src] >= self.lim_out:
            return ("out", src), 0
        if self.in_slots[dest] >= self.lim_in:
            return ("in", dest), 0
        if not self.room_for(vm, dest):
            return ("cap", dest), 0
        g = self.peer_on(vm, dest)
        if g is not None:
            return ("aa", g, dest), 0
        used, cap = self.used, self.cap
        for li in LEVELS_TRIED:
            if li >= len(task.levels):
                break
            dem = task.levels[li].demand
            for r in task.resources:
                if used[r] + dem > cap(r):
                    break
            else:
                return None, li
        dem = task.levels[min(LEVELS_TRIED[-1], len(task.levels) - 1)].demand
        r = next(r for r in task.resources if self.used[r] + dem > self.cap(r))
        return ("res", *r), 0

    def start(self, vm: VM, dest: str, task: Task, level: int, now: int, staging: bool) -> None:
        d = self.demand(vm)
        u = self.usage[dest]
        for i in range(3):
            u[i] += d[i]
        for g in vm.anti_affinity:
            self.present[(g, dest)].add(vm.name)
        dem = task.levels[level].demand
        for r in task.resources:
            self.used[r] += dem
        self.out_slots[task.facts.source] += 1
        self.in_slots[dest] += 1
        self.total += 1
        hop = Hop(task, level, now, self.n_hops[vm.name], staging)
        self.n_hops[vm.name] += 1
        self.hops.append(hop)
        heapq.heappush(self.running, (hop.end_units, self.rank[vm.name], len(self.hops) - 1))

    def end(self, hop: Hop) -> list[Key]:
        """Applies the end of `hop`; returns the keys it freed."""
        vm, f = self.inv.vm[hop.vm], hop.task.facts
        u = self.usage[f.source]
        u[0] -= vm.vcpus
        u[1] -= vm.memory_mib  # copied disks stay on the source (simulate's rule)
        for g in vm.anti_affinity:
            self.present[(g, f.source)].discard(vm.name)
        dem = hop.task.levels[hop.level].demand
        for r in hop.task.resources:
            self.used[r] -= dem
        self.out_slots[f.source] -= 1
        self.in_slots[f.destination] -= 1
        self.total -= 1
        self.where[vm.name] = f.destination
        freed: list[Key] = [("all",), ("out", f.source), ("in", f.destination), ("cap", f.source)]
        freed += [("aa", g, f.source) for g in vm.anti_affinity]
        freed += [("res", *r) for r in hop.task.resources]
        return freed

    def still_short(self, name: str, link: Resource) -> bool:
        """The link a woken VM waited on still lacks room for its slowest level tried: no level can start
        (faster ones need more), so it may wait on that link again without being tried."""
        task = self.task(name, self.where[name], self.stage_to.get(name) or self.goal[name])
        slowest = task.levels[min(LEVELS_TRIED[-1], len(task.levels) - 1)].demand
        return self.used[link] + slowest > self.cap(link)

    def attempt(self, name: str, now: int) -> None:
        staging = self.stage_to.get(name)
        vm, dest = self.inv.vm[name], staging or self.goal[name]
        task = self.task(name, self.where[name], dest)
        key, level = self.blocked_by(vm, dest, task)
        if key is None:
            self.stage_to.pop(name, None)
            self.start(vm, dest, task, level, now, staging=staging is not None)
        else:
            self.blocker[name] = key
            self.waiting[key].append(name)

    # ------------------------------------------------------------ the loop

    def run(self) -> list[Hop]:
        now = 0
        todo = sorted((n for n in self.goal if self.where[n] != self.goal[n]), key=self.rank.__getitem__)
        links: dict[str, Resource] = {}  # a woken VM -> the link it waited on
        while True:
            for name in todo:
                link = links.pop(name, None)
                # Woken at every end on a busy link, most VMs of a big plan would be tried hundreds of times
                # for nothing: one whose link still lacks room (the tries before it at this instant took it)
                # waits on it again untried. Which blocking link a VM waits on does not change when it
                # starts: it is woken whenever that link frees, and starts once every condition holds.
                if link is not None and self.still_short(name, link):
                    self.blocker[name] = ("res", *link)
                    self.waiting[("res", *link)].append(name)
                    continue
                self.attempt(name, now)
            if not self.running:
                if not self.blocker:
                    return self.hops
                if not self.stage(now):
                    self.stuck = self.explain_stuck()
                    return self.hops
                todo = []
                continue
            now = self.running[0][0]
            woken: set[str] = set()
            while self.running and self.running[0][0] == now:
                _, _, i = heapq.heappop(self.running)
                hop = self.hops[i]
                for k in self.end(hop):
                    for n in self.waiting.pop(k, ()):  # a waiting VM is parked on exactly one key
                        del self.blocker[n]
                        woken.add(n)
                        if k[0] == "res":
                            links[n] = (k[1], k[2])
                if self.where[hop.vm] != self.goal[hop.vm]:
                    woken.add(hop.vm)  # a staged VM: its next hop
            todo = sorted(woken, key=self.rank.__getitem__)

    # ------------------------------------------------------------ cycles

    def stage(self, now: int) -> bool:
        """Breaks the cycles: staging hops empty, out of waiting VMs' destinations, just enough for them.

        For each waiting VM w blocked at host d: the VMs on d that wait to leave it (and were never
        staged) that must go first so w fits (its anti-affinity peers there; for room, one VM big enough
        if any, else the biggest until it fits), each with a staging host that has room for it. The
        cheapest such sets in bytes are staged, as many as the staging room takes, disjoint: each starts
        a chain of moves of its own, so a long cycle unwinds in parallel pieces instead of one by one.
        """
        wanted = {k[-1] for k in self.blocker.values() if k[0] in ("cap", "aa")}
        waiting = sorted((w for w, k in self.blocker.items() if k[0] in ("cap", "aa")), key=self.rank.__getitem__)
        options: list[tuple[float, str, list[str]]] = []
        for w in waiting[:STAGING_CANDIDATES]:
            evict = self.evictions(w, self.blocker[w])
            if evict:
                options.append((sum(self.bytes_of(n) for n in evict), w, evict))
        options.sort()
        extra: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        taken: set[str] = set()
        started = False
        for _, w, evict in options:
            if w in taken or taken & set(evict):
                continue
            placed = self.staging_hosts(evict, wanted, extra)
            if placed is None:
                continue
            taken.update([w, *evict])
            for name, host in placed:  # each starts now, or as soon as its slots and links let it
                old = self.blocker.pop(name)
                self.waiting[old].remove(name)
                self.staged.add(name)
                self.stage_to[name] = host
                self.attempt(name, now)
                if name not in self.blocker:  # started: its room is in `usage` now, not only reserved
                    started = True
                    for i, x in enumerate(self.demand(self.inv.vm[name])):
                        extra[host][i] -= x
            if not self.parallel:
                break
        return started  # nothing started with nothing running: it never will (the caller explains why)

    def bytes_of(self, name: str) -> float:
        vm = self.inv.vm[name]
        return vm.memory_mib + vm.local_disk_alloc_mib

    def evictions(self, w: str, key: Key) -> list[str]:
        """The waiting VMs on w's blocked destination that must leave it before w fits ([] = none can)."""
        d = key[-1]
        vm = self.inv.vm[w]
        on_d = [n for n in self.blocker if n != w and n not in self.staged and self.where[n] == d]
        if key[0] == "aa":
            peers = self.present.get((key[1], d), set()) - {w}
            return sorted(peers) if peers <= set(on_d) else []
        u, lim = self.usage[d], self.limits[d]
        need = [u[i] + x - lim[i] for i, x in enumerate(self.demand(vm))]
        if need[2] > EPS:
            return []  # copied-disk room is never given back: nobody leaving makes it
        def covers(names: list[str]) -> bool:
            freed = [sum(self.inv.vm[n].vcpus for n in names), sum(self.inv.vm[n].memory_mib for n in names)]
            return all(freed[i] + EPS >= need[i] for i in range(2))
        one = sorted((n for n in on_d if covers([n])), key=lambda n: (self.bytes_of(n), n))
        if one:
            return one[:1]
        chosen: list[str] = []
        for n in sorted(on_d, key=lambda n: (-self.inv.vm[n].memory_mib, n)):
            chosen.append(n)
            if covers(chosen):
                return chosen
        return []

    def staging_hosts(self, names: list[str], wanted: Collection[str],
                      extra: dict[str, list[float]]) -> list[tuple[str, str]] | None:
        """A staging host for each VM, room counted for all of them and what `extra` already holds (which
        grows by them); None, `extra` unchanged, if one has none."""
        mine: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for h, add in extra.items():
            mine[h] = list(add)
        out = []
        for name in sorted(names, key=lambda n: (-self.bytes_of(n), n)):
            host = self.staging_host(name, wanted, mine)
            if host is None:
                return None
            for i, x in enumerate(self.demand(self.inv.vm[name])):
                mine[host][i] += x
            out.append((name, host))
        extra.update(mine)
        return out

    def staging_host(self, name: str, wanted: Collection[str],
                     extra: Mapping[str, list[float]] | None = None) -> str | None:
        vm, src, dest = self.inv.vm[name], self.where[name], self.goal[name]
        more = extra or {}

        def room(h: str) -> bool:
            u, lim, add = self.usage[h], self.limits[h], more.get(h, (0.0, 0.0, 0.0))
            return all(u[i] + add[i] + x <= lim[i] + EPS for i, x in enumerate(self.demand(vm)))

        needs = needs_of(vm, self.inv)
        fits = [h.name for h in self.inv.hosts
                if h.name not in (src, dest) and h.state is HostState.UP and h.name not in self.drained
                and room(h.name) and self.peer_on(vm, h.name) is None and suits(needs, h)
                and self.topo.reachable(src, h.name) and self.topo.reachable(h.name, dest)]
        # same switch first (no uplink crossed), then price the first few by hop durations; `eligible` (the
        # checker's own test) has the last word on each of them
        fits.sort(key=lambda h: (h in wanted, self.topo.switch_of[h] != self.topo.switch_of[src], h))
        priced = [h for h in fits[:STAGING_HOSTS_PRICED * 2]
                  if not eligible(vm, self.inv.host[h], self.inv, self.drained, source=src)][:STAGING_HOSTS_PRICED]
        if not priced:
            return None
        return min(priced, key=lambda h: (h in wanted, self.task(name, src, h).levels[0].duration_units
                                          + self.task(name, h, dest).levels[0].duration_units, h))

    def explain_stuck(self) -> dict[str, tuple[str, ...]]:
        """Why each VM still waiting cannot move: the cycle it is in, or what it waits for."""
        waits: dict[str, list[str]] = {}
        for name, key in self.blocker.items():
            host = key[-1]
            waits[name] = sorted(n for n in self.blocker if n != name and self.where[n] == host)
        out: dict[str, tuple[str, ...]] = {}
        for name, key in sorted(self.blocker.items()):
            cycle = _cycle_through(name, waits)
            dest = key[-1]
            what = "has no room" if key[0] == "cap" else f"holds a VM of anti-affinity group {key[1]}"
            if cycle:
                desc = ", ".join(f"{n} on {self.where[n]} -> {self.goal[n]}" for n in cycle)
                out[name] = (f"blocked in a cycle of moves that no staging host can break: {desc}; each "
                             f"destination is full (or holds an anti-affinity peer) until the next VM leaves, "
                             f"and no other host that suits one of them has room for it",)
            elif waits[name]:
                out[name] = (f"host {dest} {what} until {', '.join(waits[name])} leave(s), which cannot move",)
            else:
                out[name] = (f"host {dest} {what} for it even after every other planned move",)
        return out


def _cycle_through(start: str, waits: Mapping[str, list[str]]) -> list[str]:
    """A cycle of the wait-for graph through `start` (start first), or [] when there is none."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in waits.get(node, ()):
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []


def sequence_moves(inventory: Inventory, goal: Mapping[str, str], *, drained: Collection[str] = (),
                   topology: Topology | None = None, model: DurationModel = DEFAULT_MODEL) -> Sequence:
    """Hops taking every VM of `goal` to its host, safe at every instant (module docstring).

    VMs caught in a cycle no staging host can break (and VMs waiting on them) are left where they are,
    in `blocked` with their reasons; the rest is sequenced again without them.
    """
    topo = topology if topology is not None else Topology(inventory)
    todo = {n: h for n, h in goal.items() if inventory.vm[n].host != h}
    blocked: dict[str, tuple[str, ...]] = {}
    for _ in itertools.count():
        run = _Run(inventory, todo, frozenset(drained), topo, model)
        hops = run.run()
        if run.stuck is not None:  # staging for many VMs at once may fill the room a cycle needed: one at a time
            careful = _Run(inventory, todo, frozenset(drained), topo, model, parallel=False)
            careful_hops = careful.run()
            if careful.stuck is None or len(careful.stuck) < len(run.stuck):
                run, hops = careful, careful_hops
        if run.stuck is None:
            return Sequence(tuple(hops), blocked)
        blocked.update(run.stuck)
        todo = {n: h for n, h in todo.items() if n not in run.stuck}
    raise AssertionError("unreachable")
