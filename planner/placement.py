"""Placement: every VM of the hosts being drained → one destination (CP-SAT, STYLE §11).

Variables: one Boolean `x[vm, host]` per candidate pair (a DataFrame indexed by (vm, host)).
Constraints (end state; during a drain destinations only gain VMs, so the end state is also the
busiest instant of every destination, see planner.schedule):
* each VM on at most one host (`placed[vm]` = Σ x); leaving a VM out is allowed but costs more than
  anything else in the objective, so the model is never infeasible and still says which VMs fit;
* per host: Σ vCPUs ≤ cpus × cpu_overcommit, Σ memory ≤ (memory − reserved) × memory_overcommit,
  Σ copied disk ≤ local_disk_free — minus what the VMs that stay there already use;
* anti-affinity: at most one VM of a group per host (hosts where a staying VM has the group are
  already no candidates); affinity: the moving VMs of a group move all or none, onto ONE host (a
  host of its staying members when it has some). These plan-level rules encode themselves
  (`planner.rules`, `encode_placement`), the model iterates the registry.
Objective, lexicographic by weights: (1) most VMs placed; (2) lowest predicted makespan: the
busiest destination NIC (inbound) or switch link, in seconds of transfer at its capped capacity;
(3) balanced resulting load: the highest memory use in % of any receiving host; (4) fewest moves
across switches (same-switch moves keep uplinks free).
The greedy placement (biggest first, to the fitting candidate with the least inbound seconds) is
the hint and the fallback when CP-SAT finds nothing in time.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
from ortools.sat.python import cp_model

from planner.candidates import Candidates, resident_room
from planner.capacity import host_capacity
from planner.duration import DEFAULT_MODEL, DurationModel
from planner.inventory_cache import per_inventory
from planner.migration_facts import affinity_vms, vm_estimate
from planner.model import VM, Inventory
from planner.rules import plan_rules
from planner.rules.base import PlacementModel
from planner.topology import Resource, Topology

TIME_UNITS_PER_S = 1  # the makespan proxy is counted in whole seconds (keeps objective weights small)
MIN_SOLVE_S = 0.05  # less time than this left for CP-SAT: keep the greedy placement


@dataclass(frozen=True)
class PlacementResult:
    destination: Mapping[str, str]  # VM -> host, for the VMs placed
    unplaced: tuple[str, ...]  # VMs the model could not place (capacity, anti-affinity, affinity)
    status: str  # "optimal", "feasible" (CP-SAT) or "greedy" (fallback / no model needed)
    predicted_load_s: float  # the busiest destination NIC or link, seconds (objective term 2)
    greedy: Mapping[str, str] = field(default_factory=dict)  # the greedy placement (hint), for comparison


def pair_frame(inventory: Inventory, movers: list[VM], cands: Candidates, topology: Topology,
               model: DurationModel = DEFAULT_MODEL) -> pd.DataFrame:
    """One row per (vm, host) candidate pair: size, bytes on the wire at the path cap, links crossed."""
    p = inventory.policy
    rows = []
    est_cache: dict[tuple[str, float], float] = {}
    slot_cache: dict[tuple[str, float], float] = {}
    for vm in movers:
        for h in cands.hosts.get(vm.name, ()):
            path = topology.path(vm.host, h)
            assert path is not None  # candidates are reachable
            cap = topology.path_capacity_mibs(path, p.migration_share)
            key = (vm.name, round(cap, 6))
            if key not in est_cache:
                est_cache[key] = vm_estimate(vm, cap, p, model).transferred_mib
                slot_cache[key] = vm_estimate(vm, cap / 2, p, model).duration_s
            links = tuple(Topology.resources(path))[1:-1]  # switch-to-switch links only
            rows.append((vm.name, h, vm.vcpus, vm.memory_mib, math.ceil(vm.local_disk_alloc_mib),
                         math.ceil(est_cache[key]), math.ceil(slot_cache[key] * TIME_UNITS_PER_S), links,
                         topology.switch_of[vm.host] != topology.switch_of[h]))
    frame = pd.DataFrame(rows, columns=["vm", "host", "vcpus", "memory_mib", "disk_mib", "bytes_mib", "slot_units",
                                        "links",
                                        "cross_switch"])
    return frame.set_index(["vm", "host"])


def greedy_placement(inventory: Inventory, movers: list[VM], pairs: pd.DataFrame, drained: frozenset[str],
                     topology: Topology) -> dict[str, str]:
    """Biggest VM first, to the fitting candidate with the least inbound seconds so far.

    Affinity groups go together (one host that fits them all), anti-affinity is respected.
    """
    room = {h: [r.vcpus, r.memory_mib, r.disk_mib] for h, r in resident_room(inventory, drained).items()}
    inbound_s: dict[str, float] = defaultdict(float)
    groups_on: dict[str, set[str]] = defaultdict(set)
    out: dict[str, str] = {}
    by_vm: dict[str, list[str]] = defaultdict(list)
    bytes_of: dict[tuple[str, str], int] = {}
    slot_of: dict[tuple[str, str], float] = {}
    slot_s: dict[str, float] = defaultdict(float)
    in_slots = max(1, inventory.policy.max_inbound_per_host) if inventory.policy.max_inbound_per_host > 0 else 1e9
    for (v, h), b, su in zip(pairs.index, pairs["bytes_mib"], pairs["slot_units"], strict=True):
        by_vm[v].append(h)
        bytes_of[(v, h)] = b
        slot_of[(v, h)] = su / TIME_UNITS_PER_S
    # depends on the inventory alone (its topology is built from it): once per inventory object
    nic_in = per_inventory("greedy-nic-in", inventory, lambda inv: _capped_nic_in(inv, topology))

    moving = {v.name for v in movers}
    stay_hosts: dict[str, set[str]] = defaultdict(set)
    for v in affinity_vms(inventory):
        if v.name not in moving:
            for g in v.affinity:
                stay_hosts[g].add(v.host)
    units: list[list[VM]] = []
    seen_aff: set[str] = set()
    for vm in sorted(movers, key=lambda v: (-v.memory_mib, -v.vcpus, v.name)):
        if vm.affinity:
            g = min(vm.affinity)
            if g in seen_aff:
                continue
            seen_aff.add(g)
            units.append([v for v in movers if v.affinity & vm.affinity])
        else:
            units.append([vm])
    for unit in units:
        common = set(by_vm.get(unit[0].name, ()))
        for v in unit[1:]:
            common &= set(by_vm.get(v.name, ()))
        for v in unit:
            for g in v.affinity:
                if stay_hosts.get(g):
                    common &= stay_hosts[g]
        need = [sum(v.vcpus for v in unit), sum(v.memory_mib for v in unit),
                sum(math.ceil(v.local_disk_alloc_mib) for v in unit)]
        groups = [g for v in unit for g in v.anti_affinity]
        if len(groups) != len(set(groups)):
            continue  # two members share an anti-affinity group: they cannot share a host
        best: tuple[float, str] | None = None
        for h in common:
            r = room[h]
            if need[0] > r[0] + 1e-9 or need[1] > r[1] + 1e-9 or need[2] > r[2] or groups_on[h] & set(groups):
                continue
            score = inbound_s[h] + sum(bytes_of[(v.name, h)] for v in unit) / nic_in[h] \
                + slot_s[h] + sum(slot_of[(v.name, h)] for v in unit) / in_slots
            if best is None or (score, h) < best:
                best = (score, h)
        if best is None:
            continue
        h = best[1]
        for i in range(3):
            room[h][i] -= need[i]
        groups_on[h].update(groups)
        inbound_s[h] += sum(bytes_of[(v.name, h)] for v in unit) / nic_in[h]
        slot_s[h] += sum(slot_of[(v.name, h)] for v in unit) / in_slots
        for v in unit:
            out[v.name] = h
    return out


def _capped_nic_in(inventory: Inventory, topology: Topology) -> dict[str, float]:
    """Each host's inbound NIC at `migration_share`, MiB/s."""
    share = inventory.policy.migration_share
    return {h.name: topology.capacity_mibs((topology.switch_of[h.name], h.name)) * share for h in inventory.hosts}


def place(inventory: Inventory, movers: list[VM], cands: Candidates, drained: frozenset[str], topology: Topology,
          *, time_limit_s: float, workers: int, model: DurationModel = DEFAULT_MODEL) -> PlacementResult:
    """Solves the placement; see the module docstring for the model.

    `time_limit_s` bounds the whole call (building the model counts): CP-SAT gets what is left.
    """
    t0 = time.monotonic()
    if not movers:
        return PlacementResult({}, (), "optimal", 0.0)
    pairs = pair_frame(inventory, movers, cands, topology, model)
    hint = greedy_placement(inventory, movers, pairs, drained, topology)
    names = [v.name for v in movers]
    if pairs.empty:
        return PlacementResult({}, tuple(names), "optimal", 0.0)
    if time_limit_s - (time.monotonic() - t0) < MIN_SOLVE_S:  # no time to build and solve a model
        return PlacementResult(hint, tuple(n for n in names if n not in hint), "greedy", math.nan, hint)

    m = cp_model.CpModel()
    x = m.new_bool_var_series("x", pairs.index)
    # Plain lists from here on: per-host pandas arithmetic costs seconds on 30,000 pairs.
    keys = list(pairs.index)
    xs_all = x.tolist()
    mem_l = pairs["memory_mib"].tolist()
    bytes_l = pairs["bytes_mib"].tolist()
    slot_l = pairs["slot_units"].tolist()
    links_l = pairs["links"].tolist()
    cross_l = pairs["cross_switch"].tolist()
    rows_of_vm: dict[str, list[int]] = defaultdict(list)
    rows_of_host: dict[str, list[int]] = defaultdict(list)
    for i, (v, h) in enumerate(keys):
        rows_of_vm[str(v)].append(i)
        rows_of_host[str(h)].append(i)
    hinted = [hint.get(str(v)) == h for v, h in keys]
    # The hint must be COMPLETE (every variable, not only x) for CP-SAT to take it as its first
    # solution; on a 30,000-pair model it otherwise finds none in its time limit. So the
    # objective variables get the values the greedy placement implies.
    hint_load = hint_slot = hint_util = 0
    placed: dict[str, cp_model.LinearExprT] = {}
    for v, rows in rows_of_vm.items():
        s = cp_model.LinearExpr.sum([xs_all[i] for i in rows])
        m.add(s <= 1)
        placed[v] = s

    def weighted(rows: list[int], coefs: list[int]) -> cp_model.LinearExprT:
        return cp_model.LinearExpr.weighted_sum([xs_all[i] for i in rows], [coefs[i] for i in rows])

    def hinted_sum(rows: list[int], coefs: list[int]) -> int:
        return sum(coefs[i] for i in rows if hinted[i])

    share = inventory.policy.migration_share
    room = resident_room(inventory, drained)
    total_bytes = int(pairs.groupby(level="vm")["bytes_mib"].max().sum())
    min_cap = max(1, math.floor(min(topology.capacity_mibs(r) for r in topology.all_resources()) * share))
    slot_max = int(pairs.groupby(level="vm")["slot_units"].max().sum()) + 1
    t_max = math.ceil(TIME_UNITS_PER_S * total_bytes / min_cap) + slot_max
    load_t = m.new_int_var(0, t_max, "busiest_resource_time")
    util = m.new_int_var(0, 1_000, "max_memory_use_pct")  # > 100 only on hosts overloaded already
    mem_cap = {h.name: host_capacity(h, inventory.policy).memory_mib for h in inventory.hosts}

    in_limit = inventory.policy.max_inbound_per_host
    # Below the busiest resource, the inbound slots of the busiest destination: spreads VMs over
    # destinations even when a shared link dominates (their migrations then run slowly, for long).
    slot_t = m.new_int_var(0, slot_max, "busiest_inbound_slots_time")
    for h, rows in rows_of_host.items():
        r = room[h]
        mem_sum = weighted(rows, mem_l)
        nic_mibs = max(1, math.floor(topology.capacity_mibs((topology.switch_of[h], h)) * share))
        m.add(TIME_UNITS_PER_S * weighted(rows, bytes_l) <= load_t * nic_mibs)
        hint_load = max(hint_load, -(-TIME_UNITS_PER_S * hinted_sum(rows, bytes_l) // nic_mibs))
        if in_limit > 0:  # inbound slots: at most in_limit at once, each busy ~ its time at half its cap
            slots = weighted(rows, slot_l)
            m.add(slots <= load_t * in_limit)
            m.add(slots <= slot_t * in_limit)
            hint_slot = max(hint_slot, -(-hinted_sum(rows, slot_l) // in_limit))
        if mem_cap[h] > 0:
            resident = math.ceil(mem_cap[h] - r.memory_mib)
            m.add(100 * (resident + mem_sum) <= util * math.ceil(mem_cap[h]))
            hint_util = max(hint_util, -(-100 * (resident + hinted_sum(rows, mem_l)) // math.ceil(mem_cap[h])))

    link_rows: dict[Resource, list[int]] = defaultdict(list)
    for i, links in enumerate(links_l):
        for lk in links:
            link_rows[lk].append(i)
    for lk, rows in link_rows.items():
        cap = max(1, math.floor(topology.capacity_mibs(lk) * share))
        m.add(TIME_UNITS_PER_S * weighted(rows, bytes_l) <= load_t * cap)
        hint_load = max(hint_load, -(-TIME_UNITS_PER_S * hinted_sum(rows, bytes_l) // cap))

    # Capacity, anti-affinity, affinity and every other plan-level rule encode themselves (planner.rules).
    rules_model = PlacementModel(m, inventory, movers, drained, pairs, xs_all, room, placed, hint)
    for rule in plan_rules():
        rule.encode_placement(rules_model)

    # Lexicographic by weights; each weight exceeds the whole range of the terms below it.
    cross = cp_model.LinearExpr.sum([xs_all[i] for i, c in enumerate(cross_l) if c])  # ≤ len(names)
    w_util = len(names) + 1
    w_slot = 1_001 * w_util
    w_time = (slot_max + 1) * w_slot
    w_unplaced = (t_max + 1) * w_time
    if w_unplaced * (len(names) + 1) > 2**60:  # huge fleets: keep only the makespan proxy and placing
        w_util = w_slot = 0
        w_time = len(names) + 1
        w_unplaced = (t_max + 1) * w_time
    unplaced_count = len(names) - cp_model.LinearExpr.sum(list(placed.values()))
    m.minimize(w_unplaced * unplaced_count + w_time * load_t + w_slot * slot_t + w_util * util + cross)

    for xv, on in zip(xs_all, hinted, strict=True):
        m.add_hint(xv, on)
    m.add_hint(load_t, min(t_max, max(hint_load, hint_slot)))
    m.add_hint(slot_t, min(slot_max, hint_slot))
    m.add_hint(util, min(1_000, hint_util))
    # The greedy placement is feasible: never accept fewer VMs placed. (With few workers CP-SAT does
    # not always start from the hint, and its first solutions can leave many VMs out.)
    m.add(cp_model.LinearExpr.sum(list(placed.values())) >= len(hint))

    left_s = time_limit_s - (time.monotonic() - t0)
    if left_s < MIN_SOLVE_S:  # no time left to solve: the greedy placement is the answer
        return PlacementResult(hint, tuple(n for n in names if n not in hint), "greedy", math.nan, hint)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = left_s
    solver.parameters.num_workers = max(1, workers)
    status = solver.solve(m)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        dest = {v: h for v, h, xv in _pairs(x) if solver.boolean_value(xv)}
        return PlacementResult(dest, tuple(n for n in names if n not in dest),
                               "optimal" if status == cp_model.OPTIMAL else "feasible",
                               solver.value(load_t) / TIME_UNITS_PER_S, hint)
    if status == cp_model.UNKNOWN:  # no solution within the time limit: the greedy one is valid
        return PlacementResult(hint, tuple(n for n in names if n not in hint), "greedy", math.nan, hint)
    if status == cp_model.INFEASIBLE:
        # Leaving VMs out is always allowed, so this is a modelling bug, not the user's problem.
        raise AssertionError("placement model infeasible although every VM may stay unplaced")
    raise AssertionError(f"placement model invalid: {solver.status_name(status)}")


def _pairs(x: pd.Series) -> list[tuple[str, str, cp_model.IntVar]]:
    """(vm, host, variable) for a Series indexed by (vm, host)."""
    return [(str(k[0]), str(k[1]), xv) for k, xv in x.items()]  # type: ignore[index]

