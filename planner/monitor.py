"""Which migrations of a plan may start now: the pure monitor the executor loops over (STYLE §6).

Modelled on BtrPlace's `ReconfigurationPlanMonitor`: the monitor knows the plan, the inventory and
what has started, finished or failed; it never calls libvirt and never reads a clock. The runner
asks `startable()`, marks what it launched with `start(vm)`, and reports endings with
`commit(vm)` (done) or `fail(vm)`; both return what became startable.

Hops (plan v1, reconfiguration): a VM may migrate several times; every migration is one hop, keyed
`(vm, hop)` (`hop_key`). A VM's hop k+1 waits until its hop k is done, so at any moment a VM has at
most one hop that is not done and not pending behind another: its *current* hop. Every method taking a
`ref` accepts the VM's name (its current hop; the only one in a drain plan) or an explicit `(vm, hop)`.
A hop that fails or is quarantined leaves the VM on that hop's source (or on both hosts): its later
hops can never start and fail with it ("never started: hop k …").

Default mode: follow the plan's order (start_s, then higher priority first, then name) and start a
migration as soon as the resources it needs are free GIVEN WHAT IS ACTUALLY IN FLIGHT, not when the
plan's clock says so (except that an early start must not cost an earlier migration its slot:
see `startable`); there is no straggler barrier. "Free" means, with the candidate added to the
migrations in flight (a migrating VM counts on both its source and its destination):

* at most `max_outbound_per_host` leave its source, `max_inbound_per_host` enter its destination,
  `max_concurrent` run in total (0 = no limit);
* on every NIC direction and link direction of its path, Σ bandwidth_mibs ≤ capacity × migration_share;
* its destination keeps Σ vcpus ≤ cpus × cpu_overcommit, Σ memory_mib ≤ usable × memory_overcommit,
  Σ copied local disk ≤ local_disk_free_gib, and no two VMs of an anti-affinity group.

Ordering rule (why the monitor cannot deadlock when nothing fails): a migration m to host D waits
(0) for the VM's previous hop to be done (its source is where that hop ends);
(1) for every migration leaving D that the plan finishes by m's planned start (end_s ≤ m.start_s):
    the plan counted on the room they free, and a VM frees its source only once it is done; and
(2) for every earlier-planned migration into D to have started (no overtaking into one host): a
    later VM must not take room the plan gave to an earlier one.
With (1) and (2), the VMs on D when m starts are a subset of those the plan has on D at m.start_s,
so the plan's own validity guarantees m fits once the network and slot limits allow. Migrations
to other hosts are never held back by a slow one (only by shared network and slot limits). The room
check itself is over what is real (residents, minus VMs whose hop out is done, plus VMs in flight
in): a hop into a full host waits for the hop out of it even when the plan's times say otherwise.

`barrier=True`: wave k+1 starts only when every migration of waves ≤ k has ended (Watcher-style).
`one_at_a_time=True`: strictly one migration at a time, in plan order (the `virsh migrate` loop).

A failed migration releases its destination (its VM stays on the source). Migrations that can then
never start (e.g. their destination waits for room a failed VM never freed) are reported by
`blocked()` once nothing is in flight, with the reason, instead of waiting forever.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from planner.capacity import host_capacity
from planner.model import VM, Inventory
from planner.plan import Migration, Plan
from planner.topology import Resource, Topology

_EPS = 1e-6

HopKey = tuple[str, int]  # (vm, hop): one migration of a plan
HopRef = str | HopKey  # a VM's name stands for its current hop


def hop_key(m: Migration) -> HopKey:
    return (m.vm, m.hop)


class Phase(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"  # the VM may be on both hosts: it keeps room on both, moves nothing


def plan_order(migrations: Iterable[Migration]) -> list[Migration]:
    """The order the executor considers migrations in: planned start, then priority, then name."""
    return sorted(migrations, key=lambda m: (m.start_s, -m.priority, m.vm, m.hop))


def copied_disk_gib(vm: VM, migration: Migration) -> float:
    """Local disk space the migration needs on its destination (as planner.simulate counts it)."""
    return vm.local_disk_alloc_gib if migration.copy_storage else 0.0


@dataclass
class _Context:
    """What is in flight (plus what `startable` has already chosen in this call), tallied once."""

    running: list[Migration] = field(default_factory=list)
    chosen: set[HopKey] = field(default_factory=set)
    outbound: Counter[str] = field(default_factory=Counter)
    inbound: Counter[str] = field(default_factory=Counter)
    used: defaultdict[Resource, float] = field(default_factory=lambda: defaultdict(float))
    first_open_wave: int = 0

    def add(self, m: Migration, path: tuple[Resource, ...]) -> None:
        self.running.append(m)
        self.chosen.add(hop_key(m))
        self.outbound[m.source] += 1
        self.inbound[m.destination] += 1
        for r in path:
            self.used[r] += m.bandwidth_mibs


@dataclass(frozen=True, slots=True)
class _Load:
    vcpus: float
    memory_mib: float
    disk_gib: float


class PlanMonitor:
    def __init__(self, plan: Plan, inventory: Inventory, *, barrier: bool = False, one_at_a_time: bool = False,
                 topology: Topology | None = None) -> None:
        if barrier and one_at_a_time:
            raise ValueError("barrier and one_at_a_time are exclusive")
        self.plan = plan
        self.inventory = inventory
        self.barrier = barrier
        self.one_at_a_time = one_at_a_time
        self.order: list[Migration] = plan_order(plan.migrations)
        if barrier:  # waves first: a plan whose wave numbers disagree with its times must not deadlock
            self.order.sort(key=lambda m: m.wave)  # stable: plan order within a wave
        self._by_key = {hop_key(m): m for m in self.order}
        self._hops: dict[str, list[Migration]] = defaultdict(list)  # per VM, in hop order
        for m in sorted(self.order, key=lambda m: m.hop):
            self._hops[m.vm].append(m)
        self.phase: dict[HopKey, Phase] = {hop_key(m): Phase.PENDING for m in self.order}
        self._topology = topology or Topology(inventory)
        self._paths: dict[HopKey, tuple[Resource, ...]] = {}
        for m in self.order:
            path = m.path if len(m.path) >= 2 else self._topology.path(m.source, m.destination)
            self._paths[hop_key(m)] = tuple(Topology.resources(path)) if path else ()
        p = inventory.policy
        self._share = p.migration_share
        # Where every VM is, as the monitor sees it: residents, minus nothing until a move is done.
        # VMs in flight or quarantined count on both hosts.
        self._on_host: dict[str, set[str]] = defaultdict(set)
        for v in inventory.vms:
            self._on_host[v.host].add(v.name)
        self._arrived_disk_gib: dict[str, float] = defaultdict(float)
        # Limits as the checker applies them: a host already above a limit before the run keeps its
        # starting level as its limit (the plan cannot be blamed for it, and must not deadlock on it).
        self._cpu_limit: dict[str, float] = {}
        self._mem_limit: dict[str, float] = {}
        for h in inventory.hosts:
            start = self._load(self._on_host[h.name])
            cap = host_capacity(h, p)
            self._cpu_limit[h.name] = max(start.vcpus, cap.vcpus)
            self._mem_limit[h.name] = max(start.memory_mib, cap.memory_mib)
        # Rule (1): for each migration, the migrations leaving its destination it must wait for.
        leaving: dict[str, list[Migration]] = defaultdict(list)
        for m in self.order:
            leaving[m.source].append(m)
        self._wait_for_done: dict[HopKey, tuple[HopKey, ...]] = {
            hop_key(m): tuple(hop_key(e) for e in leaving[m.destination]
                              if e.vm != m.vm and e.end_s <= m.start_s + _EPS)
            for m in self.order
        }
        # Rule (2): the earlier-planned migrations into the same destination.
        into: dict[str, list[HopKey]] = defaultdict(list)
        self._earlier_into: dict[HopKey, tuple[HopKey, ...]] = {}
        for m in self.order:
            self._earlier_into[hop_key(m)] = tuple(into[m.destination])
            into[m.destination].append(hop_key(m))

    # ------------------------------------------------------------------ state

    def key(self, ref: HopRef) -> HopKey:
        """The hop `ref` names: `(vm, hop)` as given, or a VM name's current hop (its first hop that is
        not done; its last hop once all are)."""
        if isinstance(ref, tuple):
            if ref not in self._by_key:
                raise KeyError(ref)
            return ref
        hops = self._hops.get(ref)
        if not hops:
            raise KeyError(ref)
        for m in hops:
            if self.phase[hop_key(m)] is not Phase.DONE:
                return hop_key(m)
        return hop_key(hops[-1])

    def migration(self, ref: HopRef) -> Migration:
        return self._by_key[self.key(ref)]

    def hops_of(self, vm: str) -> list[Migration]:
        """The VM's migrations in hop order (one in a drain plan)."""
        return list(self._hops.get(vm, ()))

    def in_phase(self, phase: Phase) -> list[Migration]:
        return [m for m in self.order if self.phase[hop_key(m)] is phase]

    @property
    def in_flight(self) -> list[Migration]:
        return self.in_phase(Phase.IN_FLIGHT)

    @property
    def pending(self) -> list[Migration]:
        return self.in_phase(Phase.PENDING)

    @property
    def finished(self) -> bool:
        """Nothing pending and nothing in flight."""
        return all(ph not in (Phase.PENDING, Phase.IN_FLIGHT) for ph in self.phase.values())

    def start(self, ref: HopRef) -> None:
        """Marks a migration as launched; it must be startable now."""
        k = self.key(ref)
        m = self._by_key[k]
        if self.phase[k] is not Phase.PENDING:
            raise ValueError(f"{_label(k)} is {self.phase[k]}, not pending")
        reason = self.why_waiting(k)
        if reason:
            raise ValueError(f"{_label(k)} cannot start now: {reason}")
        self.phase[k] = Phase.IN_FLIGHT
        self._arrive(m)

    def commit(self, ref: HopRef) -> list[Migration]:
        """The VM runs on this hop's destination (verified). Returns the migrations that became startable.

        May also be called for a pending migration found already done (resume: its earlier hops are
        then done too, the VM having left their hosts)."""
        k = self.key(ref)
        m = self._by_key[k]
        before = self._startable_keys()
        if self.phase[k] is Phase.PENDING:
            for earlier in self._hops[m.vm][:self._hops[m.vm].index(m)]:
                if self.phase[hop_key(earlier)] is Phase.PENDING:
                    self.commit(hop_key(earlier))
            self._arrive(m)
        elif self.phase[k] not in (Phase.IN_FLIGHT, Phase.QUARANTINED):
            raise ValueError(f"{_label(k)} is {self.phase[k]}: cannot be committed")
        self.phase[k] = Phase.DONE
        self._leave(m)
        return [x for x in self.startable() if hop_key(x) not in before]

    def fail(self, ref: HopRef) -> list[Migration]:
        """The migration ended and the VM is (still) on its source: its destination room is released.
        The VM's later hops can never start (they leave from this hop's destination): failed too."""
        k = self.key(ref)
        m = self._by_key[k]
        before = self._startable_keys()
        if self.phase[k] in (Phase.IN_FLIGHT, Phase.QUARANTINED):
            self._on_host[m.destination].discard(m.vm)
            self._arrived_disk_gib[m.destination] -= self._disk_gib(m)
        elif self.phase[k] is not Phase.PENDING:
            raise ValueError(f"{_label(k)} is {self.phase[k]}: cannot fail")
        self.phase[k] = Phase.FAILED
        self._fail_later_hops(m)
        return [x for x in self.startable() if hop_key(x) not in before]

    def quarantine(self, ref: HopRef) -> list[Migration]:
        """The VM's whereabouts are unclear: it keeps room on both hosts and frees its slot."""
        k = self.key(ref)
        m = self._by_key[k]
        before = self._startable_keys()
        if self.phase[k] is Phase.PENDING:
            self._arrive(m)
        elif self.phase[k] is not Phase.IN_FLIGHT:
            raise ValueError(f"{_label(k)} is {self.phase[k]}: cannot be quarantined")
        self.phase[k] = Phase.QUARANTINED
        self._fail_later_hops(m)
        return [x for x in self.startable() if hop_key(x) not in before]

    def later_hops_failed(self, ref: HopRef) -> list[Migration]:
        """The VM's hops after `ref` that failed because `ref` did not end on its destination."""
        m = self._by_key[self.key(ref)]
        hops = self._hops[m.vm]
        return [x for x in hops[hops.index(m) + 1:] if self.phase[hop_key(x)] is Phase.FAILED]

    def _fail_later_hops(self, m: Migration) -> None:
        hops = self._hops[m.vm]
        for later in hops[hops.index(m) + 1:]:
            if self.phase[hop_key(later)] is Phase.PENDING:
                self.phase[hop_key(later)] = Phase.FAILED

    def _arrive(self, m: Migration) -> None:
        """The hop started: the VM counts on its destination too (room held from the hop's start)."""
        self._on_host[m.destination].add(m.vm)
        self._arrived_disk_gib[m.destination] += self._disk_gib(m)

    def _leave(self, m: Migration) -> None:
        """The hop is done: the VM no longer counts on its source; a disk an earlier hop copied there
        is no longer held there either."""
        self._on_host[m.source].discard(m.vm)
        hops = self._hops[m.vm]
        i = hops.index(m)
        if i > 0:
            self._arrived_disk_gib[m.source] -= self._disk_gib(hops[i - 1])

    def _startable_keys(self) -> set[HopKey]:
        return {hop_key(x) for x in self.startable()}

    # ------------------------------------------------------------------ decisions

    def startable(self, now_s: float = math.inf) -> list[Migration]:
        """Pending migrations that may start now, together, in plan order.

        `now_s`: seconds since the run started, on the plan's clock (default: no time, resources alone
        decide, as in `blocked`). The default mode does not wait for planned start times, with one
        exception (EASY backfilling): a migration whose planned start is still ahead (`now_s` <
        start_s) starts early only if, at its planned duration, it ends by the planned start of every
        earlier migration still waiting that it competes with (same source, same destination, a
        shared NIC or link, or the global `max_concurrent`). Without it an early start could take
        the slot or bandwidth the plan gave an earlier migration, which then starts late, and so on
        down the plan: the demo's fleets ran up to 14 % longer than their plans with every migration
        exactly as long as planned. With it, a run whose migrations last what the plan says starts
        each no later than planned (by induction over the plan order), and one that runs faster still
        gains wherever the gain cannot cost an earlier migration. The runner wakes at the next planned
        start (`next_planned_start`) to look again."""
        ctx = self._context()
        chosen: list[Migration] = []
        limit = self.inventory.policy.max_concurrent
        gated = not (self.one_at_a_time or self.barrier) and math.isfinite(now_s)
        reserved: dict[object, float] = {}  # resource -> earliest planned start of an earlier waiting migration
        for m in self.order:
            if self.phase[hop_key(m)] is not Phase.PENDING:
                continue
            if self.one_at_a_time:
                if not ctx.running and not self._why_waiting(m, ctx):
                    chosen.append(m)
                break
            if limit and len(ctx.running) >= limit:
                break
            keys = self._competes_on(m) if gated else ()
            early_ok = not gated or now_s >= m.start_s - _EPS or all(
                now_s + m.duration_s <= reserved.get(k, math.inf) + _EPS for k in keys)
            if early_ok and not self._why_waiting(m, ctx):
                chosen.append(m)
                ctx.add(m, self._paths[hop_key(m)])
            elif gated:
                for k in keys:
                    reserved[k] = min(reserved.get(k, math.inf), m.start_s)
        return chosen

    def next_planned_start(self, now_s: float) -> float | None:
        """The earliest planned start after `now_s` of a pending migration: when `startable(now)` may
        change although nothing ended (a migration held back from starting early is due)."""
        return min((m.start_s for m in self.order
                    if m.start_s > now_s + _EPS and self.phase[hop_key(m)] is Phase.PENDING), default=None)

    def _competes_on(self, m: Migration) -> tuple[object, ...]:
        """What `m` shares with other migrations that could make one wait for the other."""
        keys: list[object] = [("out", m.source), ("in", m.destination), *self._paths[hop_key(m)]]
        if self.inventory.policy.max_concurrent:
            keys.append(("all",))
        return tuple(keys)

    def why_waiting(self, ref: HopRef) -> str:
        """Why a pending migration cannot start now ("" = it can)."""
        k = self.key(ref)
        m = self._by_key[k]
        if self.phase[k] is not Phase.PENDING:
            return f"it is {self.phase[k]}"
        ctx = self._context()
        if self.one_at_a_time:
            if ctx.running:
                return "one at a time: another migration is running"
            first = next(x for x in self.order if self.phase[hop_key(x)] is Phase.PENDING)
            if hop_key(first) != k:
                return f"one at a time: {_label(hop_key(first))} goes first"
        return self._why_waiting(m, ctx)

    def waiting_reasons(self) -> dict[str, str]:
        """Why each VM's pending current hop waits right now (one pass; "" for those that may start),
        keyed by VM: a VM's later hops wait for this one."""
        ctx = self._context()
        out: dict[str, str] = {}
        first = True
        for m in self.order:
            if self.phase[hop_key(m)] is not Phase.PENDING or m.vm in out:
                continue
            if self.one_at_a_time and (ctx.running or not first):
                out[m.vm] = "one at a time: another migration is running" if ctx.running else \
                    "one at a time: waits for its turn"
            else:
                out[m.vm] = self._why_waiting(m, ctx)
            first = False
        return out

    def blocked(self) -> dict[str, str]:
        """VMs whose pending current hop can never start: nothing is in flight and no migration may
        start. Keyed by VM (failing the current hop fails its later ones). Empty while anything runs or
        anything can start."""
        if self.in_flight or self.startable():
            return {}
        out: dict[str, str] = {}
        for m in self.pending:
            if m.vm not in out and self.key(m.vm) == hop_key(m):
                out[m.vm] = self.why_waiting(hop_key(m)) or "blocked"
        return out

    def _context(self) -> _Context:
        ctx = _Context()
        unfinished_waves = [m.wave for m in self.order
                            if self.phase[hop_key(m)] in (Phase.PENDING, Phase.IN_FLIGHT)]
        ctx.first_open_wave = min(unfinished_waves, default=0)
        for m in self.order:
            if self.phase[hop_key(m)] is Phase.IN_FLIGHT:
                ctx.add(m, self._paths[hop_key(m)])
        ctx.chosen.clear()
        return ctx

    def _why_waiting(self, m: Migration, ctx: _Context) -> str:
        if self.barrier and m.wave > ctx.first_open_wave:
            return f"barrier: wave {ctx.first_open_wave} has not ended"
        hops = self._hops[m.vm]
        if hops.index(m) > 0:  # by position: a re-planned chain may start at a hop number above 0
            prev = hops[hops.index(m) - 1]
            if self.phase[hop_key(prev)] is not Phase.DONE:
                return f"waits for its hop {prev.hop} ({prev.source}→{prev.destination}, {self.phase[hop_key(prev)]})"
        for other in self._wait_for_done[hop_key(m)]:
            if self.phase[other] is not Phase.DONE:
                return f"waits for {_label(other)} to leave {m.destination} ({self.phase[other]})"
        for other in self._earlier_into[hop_key(m)]:
            if self.phase[other] is Phase.PENDING and other not in ctx.chosen:
                return f"{_label(other)} goes to {m.destination} first"
        p = self.inventory.policy
        if p.max_concurrent and len(ctx.running) >= p.max_concurrent:
            return f"max_concurrent={p.max_concurrent} migrations in flight"
        out = ctx.outbound[m.source]
        if out >= p.max_outbound_per_host:
            return f"{m.source} already has {out} outbound (max_outbound_per_host={p.max_outbound_per_host})"
        inb = ctx.inbound[m.destination]
        if inb >= p.max_inbound_per_host:
            return f"{m.destination} already has {inb} inbound (max_inbound_per_host={p.max_inbound_per_host})"
        for r in self._paths[hop_key(m)]:
            cap = self._topology.capacity_mibs(r) * self._share
            if ctx.used[r] + m.bandwidth_mibs > cap * (1 + _EPS) + _EPS:
                return f"link {r[0]}→{r[1]}: {ctx.used[r]:.0f} of {cap:.0f} MiB/s in use"
        return self._destination_problem(m, ctx)

    def _destination_problem(self, m: Migration, ctx: _Context) -> str:
        host = self.inventory.host[m.destination]
        vms = self.inventory.vm
        also = [self._by_key[k] for k in ctx.chosen]
        residents = set(self._on_host[m.destination]) | {x.vm for x in also if x.destination == m.destination}
        residents.discard(m.vm)  # a VM coming back to a host it is still on (never in a valid plan)
        load = self._load(residents)
        vm = vms[m.vm]
        if load.vcpus + vm.vcpus > self._cpu_limit[host.name] + _EPS:
            return f"{m.destination}: not enough CPU now ({load.vcpus:g}+{vm.vcpus} vcpus)"
        if load.memory_mib + vm.memory_mib > self._mem_limit[host.name] + _EPS:
            return f"{m.destination}: not enough memory now ({load.memory_mib:g}+{vm.memory_mib} MiB)"
        disk = self._arrived_disk_gib[m.destination] + sum(
            self._disk_gib(x) for x in also if x.destination == m.destination)
        need = self._disk_gib(m)
        if need and disk + need > host.local_disk_free_gib + _EPS:
            return f"{m.destination}: not enough local disk now ({disk:g}+{need:g} GiB)"
        if vm.anti_affinity:
            for other in residents:
                shared = vm.anti_affinity & vms[other].anti_affinity
                if other != m.vm and shared:
                    return f"{m.destination}: anti-affinity group {sorted(shared)[0]} with {other}"
        return ""

    def _load(self, names: Iterable[str]) -> _Load:
        vms: Mapping[str, VM] = self.inventory.vm
        cpu = mem = 0.0
        for n in names:
            v = vms[n]
            cpu += v.vcpus
            mem += v.memory_mib
        return _Load(cpu, mem, 0.0)

    def _disk_gib(self, m: Migration) -> float:
        return copied_disk_gib(self.inventory.vm[m.vm], m)


def dispatch_hop_times(plan: Plan, inventory: Inventory, *, barrier: bool = False, one_at_a_time: bool = False,
                       duration_s: Mapping[HopKey, float] | None = None) -> dict[HopKey, tuple[float, float]]:
    """When each hop would start and end if every one took its planned duration (or
    `duration_s[(vm, hop)]`) and the executor dispatched them with this monitor: `evac run --dry-run`'s
    prediction for the chosen mode. Migrations that could never start are left out."""
    import heapq

    mon = PlanMonitor(plan, inventory, barrier=barrier, one_at_a_time=one_at_a_time)
    t = 0.0
    ends: list[tuple[float, HopKey]] = []
    out: dict[HopKey, tuple[float, float]] = {}
    while not mon.finished:
        for m in mon.startable(t):
            k = hop_key(m)
            mon.start(k)
            d = duration_s[k] if duration_s and k in duration_s else m.duration_s
            out[k] = (t, t + d)
            heapq.heappush(ends, (t + d, k))
        due = mon.next_planned_start(t)
        if ends and (due is None or ends[0][0] <= due):
            t, k = heapq.heappop(ends)
            mon.commit(k)
        elif due is not None:  # nothing ends before a held-back migration is due: look again then
            t = due
        else:
            for vm in mon.blocked():
                mon.fail(vm)
    return out


def dispatch_times(plan: Plan, inventory: Inventory, *, barrier: bool = False, one_at_a_time: bool = False,
                   duration_s: Mapping[str, float] | None = None) -> dict[str, tuple[float, float]]:
    """`dispatch_hop_times` per VM, from its first hop's start to its last hop's end (a drain plan has
    one hop per VM); `duration_s[vm]` sets the duration of each of the VM's hops."""
    hop_durations = {hop_key(m): duration_s[m.vm] for m in plan.migrations if duration_s and m.vm in duration_s}
    out: dict[str, tuple[float, float]] = {}
    hops = dispatch_hop_times(plan, inventory, barrier=barrier, one_at_a_time=one_at_a_time, duration_s=hop_durations)
    for (vm, _), (start, end) in sorted(hops.items()):
        out[vm] = (min(start, out[vm][0]), max(end, out[vm][1])) if vm in out else (start, end)
    return out


def _label(k: HopKey) -> str:
    """A hop in messages: the VM's name for its first hop (as in a drain), `vm (hop k)` after."""
    return k[0] if k[1] == 0 else f"{k[0]} (hop {k[1]})"
