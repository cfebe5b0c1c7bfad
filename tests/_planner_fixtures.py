"""Small hand-built inventories for the planner's solver-free tests (no loader needed)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from planner.migration_facts import migration_facts, vm_estimate
from planner.model import VM, Disk, Host, Inventory, Link, Policy
from planner.plan import Migration, Plan, PlanStatus, Unplaced
from planner.topology import Topology


def host(name: str, **kw: Any) -> Host:
    base: dict[str, Any] = {"cpus": 16, "memory_mib": 65536, "nic_gbps": 10.0, "local_disk_free_gib": 500.0}
    base.update(kw)
    return Host(name=name, **base)


def vm(name: str, on: str, **kw: Any) -> VM:
    base: dict[str, Any] = {"vcpus": 2, "memory_mib": 1024}
    base.update(kw)
    return VM(name=name, host=on, **base)


def local_disk(target: str = "vdb", alloc_gib: float = 1.0) -> Disk:
    return Disk(target=target, storage=None, capacity_gib=alloc_gib * 2, allocation_gib=alloc_gib)


def shared_disk(target: str = "vda", storage: str = "nfs-1") -> Disk:
    return Disk(target=target, storage=storage, capacity_gib=20, allocation_gib=5)


def flat(hosts: list[Host], vms: list[VM], **policy: Any) -> Inventory:
    return Inventory(hosts=tuple(hosts), vms=tuple(vms), policy=replace(Policy(), **policy))


def swap_beside_moves() -> tuple[Inventory, dict[str, str]]:
    """Two full hosts a and b swap x and y (one staging hop through c) beside twelve independent moves
    s_i → d_i: an inventory and its target placement."""
    hosts = [host("a", memory_mib=8192), host("b", memory_mib=8192), host("c")]
    hosts += [host(f"s{i}") for i in range(4)] + [host(f"d{i}") for i in range(4)]
    vms = [vm("x", "a", memory_mib=8192), vm("y", "b", memory_mib=8192)]
    vms += [vm(f"m{i}{k}", f"s{i}", memory_mib=8192) for i in range(4) for k in range(3)]
    target = {"x": "b", "y": "a", **{f"m{i}{k}": f"d{i}" for i in range(4) for k in range(3)}}
    return flat(hosts, vms), target


def two_racks(per_rack: int = 2, uplink_gbps: float = 10.0, vms: list[VM] | None = None, **policy: Any) -> Inventory:
    """Hosts a1..aN on tor-a, b1..bN on tor-b, both ToRs on a spine."""
    hosts = [host(f"a{i}", switch="tor-a") for i in range(1, per_rack + 1)]
    hosts += [host(f"b{i}", switch="tor-b") for i in range(1, per_rack + 1)]
    links = (Link("tor-a", "spine", uplink_gbps), Link("tor-b", "spine", uplink_gbps))
    return Inventory(hosts=tuple(hosts), vms=tuple(vms or ()), links=links, policy=replace(Policy(), **policy))


def move(inv: Inventory, name: str, dest: str, start_s: float = 0.0, bandwidth_mibs: float | None = None,
         wave: int = 0, source: str | None = None, hop: int = 0, staging: bool = False) -> Migration:
    """A migration that is right in every respect (facts, duration, flags) for these times; `source` for a
    later hop (default: the VM's host)."""
    v = inv.vm[name]
    facts = migration_facts(v, dest, inv, Topology(inv), source=source)
    assert facts is not None
    bw = facts.cap_mibs if bandwidth_mibs is None else bandwidth_mibs
    est = vm_estimate(v, bw, inv.policy)
    return Migration(vm=name, source=facts.source, destination=dest, wave=wave, start_s=start_s,
                     end_s=start_s + est.duration_s, bandwidth_mibs=bw, path=facts.path,
                     copy_storage=facts.copy_storage, live=v.live, converges=est.converges,
                     auto_converge=est.throttled, predicted_downtime_ms=est.downtime_ms, hop=hop, staging=staging)


def plan_of(inv: Inventory, migs: list[Migration], drained: tuple[str, ...] = ("h1",),
            unplaced: tuple[Unplaced, ...] = (), **extra: Any) -> Plan:
    """A plan of these migrations; `extra` sets `kind`, `target`, `balance`."""
    return Plan(inventory_sha256=inv.sha256, drained=drained,
                status=PlanStatus.INFEASIBLE if unplaced else PlanStatus.FEASIBLE,
                makespan_s=max((m.end_s for m in migs), default=0.0), lower_bound_s=0.0, solve_s=0.0,
                migrations=tuple(migs), unplaced=unplaced, **extra)


def full_pair() -> Inventory:
    """a and b each full with one big VM; c empty: a swap needs a staging hop through c."""
    hosts = [host(n, memory_mib=8192) for n in ("a", "b", "c")]
    return flat(hosts, [vm("x", "a", memory_mib=6144), vm("y", "b", memory_mib=6144)])


def staged_swap(inv: Inventory) -> list[Migration]:
    """x and y swap a and b through c: x a→c (staging), then y b→a, then x c→b."""
    x0 = move(inv, "x", "c", hop=0, staging=True)
    y0 = move(inv, "y", "a", start_s=x0.end_s, wave=1)
    x1 = move(inv, "x", "b", start_s=y0.end_s, source="c", hop=1, wave=2)
    return [x0, y0, x1]
