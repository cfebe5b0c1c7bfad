"""CP-SAT for a reconfiguration's sequence: same hops as the greedy one, better start times and bandwidths.

The greedy sequence (`sequence`) fixes each VM's route (its hops, staging ones included); this model
re-times them, the greedy as its hint and its horizon:
* per hop, a start and one optional fixed-size interval per bandwidth level (exactly one present);
  a VM's hops in order (the next starts once the previous has ended);
* `add_cumulative` on every NIC and link direction (bandwidth in 0.001 MiB/s) and for the slot
  limits (outbound per source, inbound per destination, max_concurrent), as the drain's model does;
* host capacity at every instant, as BtrPlace models it: a VM holds its source until its hop ENDS and
  its destination from its hop STARTS. Per host, one interval per stay of a moving VM,
  [arrival (0 if it starts there), departure (the end of the hop out; the horizon if it stays)), in a
  cumulative for vCPUs and one for memory whose capacity is the checker's limit less what the VMs that
  never move hold; copied disks take room from the hop's start to the horizon (never given back);
* anti-affinity: the stays of the members of one group on one host never overlap (`add_no_overlap`,
  VMs that never move there as fixed intervals). When two members already share a host the checker
  excuses that pair only, which no_overlap cannot say: the model is then not used.
Objective: the makespan. A result is used only when it is shorter than the greedy one.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping

from ortools.sat.python import cp_model

from planner.migration_facts import copy_storage_targets
from planner.model import Inventory
from planner.reconfigure.sequence import Hop, Sequence, host_limits
from planner.schedule import capped_milli
from planner.topology import Resource, Topology

MIN_SOLVE_S = 0.2
DISK_SCALE = 1000  # copied-disk GiB in cumulatives: 0.001 GiB


def improve(inventory: Inventory, seq: Sequence, topology: Topology, *, time_limit_s: float,
            workers: int) -> Sequence | None:
    """A shorter timing of `seq`'s hops, or None (nothing better found, no time, or a case not modelled)."""
    hops = list(seq.hops)
    horizon = seq.makespan_units
    if len(hops) < 2 or time_limit_s < MIN_SOLVE_S or horizon <= 0:
        return None
    p = inventory.policy
    m = cp_model.CpModel()
    start = [m.new_int_var(0, horizon, f"s{i}") for i in range(len(hops))]
    end = [m.new_int_var(0, horizon, f"e{i}") for i in range(len(hops))]
    makespan = m.new_int_var(0, horizon, "makespan")
    chosen: list[list[tuple[cp_model.IntVar, int]]] = []
    by_resource: dict[Resource, list[tuple[cp_model.IntervalVar, int]]] = defaultdict(list)
    slots: dict[tuple[str, str], list[cp_model.IntervalVar]] = defaultdict(list)
    for i, h in enumerate(hops):
        opts = []
        for li, lvl in enumerate(h.task.levels):
            if lvl.duration_units > horizon:
                continue
            pv = m.new_bool_var(f"l{i}_{li}")
            iv = m.new_optional_fixed_size_interval_var(start[i], lvl.duration_units, pv, f"iv{i}_{li}")
            m.add(end[i] == start[i] + lvl.duration_units).only_enforce_if(pv)
            for r in h.task.resources:
                by_resource[r].append((iv, lvl.demand))
            slots[("out", h.task.facts.source)].append(iv)
            slots[("in", h.task.facts.destination)].append(iv)
            slots[("all", "")].append(iv)
            opts.append((pv, li))
            m.add_hint(pv, li == h.level)
        m.add_exactly_one([pv for pv, _ in opts])
        chosen.append(opts)
        m.add(makespan >= end[i])
        m.add_hint(start[i], h.start_units)
        m.add_hint(end[i], h.end_units)
    m.add_hint(makespan, horizon)
    chains: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hops):
        chains[h.vm].append(i)
    for ix in chains.values():
        ix.sort(key=lambda i: hops[i].hop)
        for a, b in itertools.pairwise(ix):
            m.add(start[b] >= end[a])
    for r, items in by_resource.items():
        cap = capped_milli(topology, r, p.migration_share)
        m.add_cumulative([iv for iv, _ in items], [d for _, d in items], cap)
    for (kind, _), ivs in slots.items():
        limit = {"out": p.max_outbound_per_host, "in": p.max_inbound_per_host, "all": p.max_concurrent}[kind]
        if 0 < limit < len(ivs):
            m.add_cumulative(ivs, [1] * len(ivs), limit)
    if not _host_constraints(m, inventory, hops, chains, start, end, horizon):
        return None
    m.minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = max(1, workers)
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE) or solver.value(makespan) >= horizon:
        return None
    out = []
    for i, h in enumerate(hops):
        level = next(li for pv, li in chosen[i] if solver.boolean_value(pv))
        out.append(Hop(h.task, level, solver.value(start[i]), h.hop, h.staging))
    out.sort(key=lambda h: (h.start_units, h.vm, h.hop))
    return Sequence(tuple(out), seq.blocked)


def _host_constraints(m: cp_model.CpModel, inventory: Inventory, hops: list[Hop], chains: Mapping[str, list[int]],
                      start: list[cp_model.IntVar], end: list[cp_model.IntVar], horizon: int) -> bool:
    """Capacity and anti-affinity per host over time (module docstring); False when not modelled."""
    # stays[host] = [(vm, arrival expr, departure expr, arrived by hop index or None)]
    stays: dict[str, list[tuple[str, cp_model.LinearExprT, cp_model.LinearExprT, int | None]]] = defaultdict(list)
    for name, ix in chains.items():
        vm = inventory.vm[name]
        stays[vm.host].append((name, 0, end[ix[0]], None))
        for k, i in enumerate(ix):
            leave: cp_model.LinearExprT = end[ix[k + 1]] if k + 1 < len(ix) else horizon
            stays[hops[i].task.facts.destination].append((name, start[i], leave, i))
    limits = host_limits(inventory)
    moving = set(chains)
    for host, items in stays.items():
        fixed = [v for v in inventory.vms_on.get(host, ()) if v.name not in moving]
        lim = limits[host]
        cpu_room = math.floor(lim.vcpus - sum(v.vcpus for v in fixed) + 1e-9)
        mem_room = math.floor(lim.memory_mib - sum(v.memory_mib for v in fixed) + 1e-9)
        ivs, cpus, mems, disk_ivs, disks = [], [], [], [], []
        for name, arrive, leave, by in items:
            vm = inventory.vm[name]
            size = m.new_int_var(0, horizon, "")
            ivs.append(m.new_interval_var(arrive, size, leave, ""))
            cpus.append(vm.vcpus)
            mems.append(vm.memory_mib)
            if by is not None and copy_storage_targets(vm):
                dsize = m.new_int_var(0, horizon, "")
                disk_ivs.append(m.new_interval_var(start[by], dsize, horizon, ""))
                disks.append(math.ceil(vm.local_disk_alloc_gib * DISK_SCALE))
        m.add_cumulative(ivs, cpus, max(cpu_room, 0))
        m.add_cumulative(ivs, mems, max(mem_room, 0))
        if disk_ivs:
            m.add_cumulative(disk_ivs, disks, math.floor(lim.local_disk_gib * DISK_SCALE))
        groups: dict[str, list[cp_model.IntervalVar]] = defaultdict(list)
        for (name, _, _, _), iv in zip(items, ivs, strict=True):
            for g in inventory.vm[name].anti_affinity:
                groups[g].append(iv)
        for g, members in groups.items():
            still = [v for v in fixed if g in v.anti_affinity]
            initial = sum(1 for name, _, _, by in items if by is None and g in inventory.vm[name].anti_affinity)
            if initial + len(still) > 1:
                return False  # members already together: the checker excuses that pair only
            for v in still:
                members.append(m.new_fixed_size_interval_var(0, horizon, f"stay_{v.name}"))
            if len(members) > 1:
                m.add_no_overlap(members)
    return True
