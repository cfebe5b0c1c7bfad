"""Host capacity at every instant: vCPUs, memory and copied-disk room, a migrating VM counted on both hosts.

Limits are `planner.capacity.host_limits` (a host already overloaded is not the plan's fault, but the
plan may never make it worse). Copied disk room is never given back on a source (libvirt leaves the
source image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from planner.capacity import host_limit_tuples, host_limits
from planner.migration_facts import copy_storage_targets
from planner.rules.base import CheckContext, ExplainContext, MovesModel, PlacementModel, PlanRule, Violation
from planner.simulate import simulate

DISK_SCALE = 1000  # copied-disk GiB in cumulatives: 0.001 GiB


@dataclass(frozen=True, slots=True)
class Capacity(PlanRule):
    """CPU, memory and copied-disk room at every instant (a migrating VM counts on both hosts)."""

    name: ClassVar[str] = "capacity"

    def violations(self, ctx: CheckContext) -> list[Violation]:
        inv = ctx.inventory
        timeline = simulate(inv, ctx.plan)
        limits = host_limit_tuples(inv)  # no copied disk before the plan
        out: list[Violation] = []
        blamed: set[tuple[str, str]] = set()
        for pt in timeline.points:
            lim = limits.get(pt.host)
            if lim is None:
                continue
            u = pt.usage
            for what, used, cap in (("vCPUs", u.vcpus, lim[0]), ("memory MiB", u.memory_mib, lim[1]),
                                    ("copied disk GiB", u.copied_disk_gib, lim[2])):
                if used > cap + 1e-6 and (pt.host, what) not in blamed:
                    blamed.add((pt.host, what))
                    out.append(Violation(self.name, pt.host, pt.time_s, f"{what}: {used:g} held, limit {cap:g}"))
        return out

    def encode_placement(self, pm: PlacementModel) -> None:
        """Per host, Σ of what the VMs placed there take ≤ the room the VMs that stay leave."""
        vcpus, mem, disk = pm.column("vcpus"), pm.column("memory_mib"), pm.column("disk_mib")
        for h, rows in pm.rows_of_host.items():
            r = pm.room[h]
            pm.m.add(pm.weighted(rows, vcpus) <= math.floor(r.vcpus + 1e-9))
            pm.m.add(pm.weighted(rows, mem) <= math.floor(r.memory_mib + 1e-9))
            if any(disk[i] for i in rows):
                pm.m.add(pm.weighted(rows, disk) <= math.floor(r.disk_mib))

    def encode_moves(self, mm: MovesModel) -> None:
        """Per host that hops both leave and enter (`MovesModel.turning_hosts`: elsewhere the peak does not
        depend on timing), one cumulative per resource over the stays of the moving VMs, whose capacity is
        the limit less what the VMs that never move hold; copied disks from the hop's start to the horizon."""
        if not mm.turning_hosts:
            return
        inv = mm.inv
        limits = host_limits(inv)
        moving = set(mm.chains)
        for host in sorted(mm.turning_hosts):
            fixed = [v for v in inv.vms_on.get(host, ()) if v.name not in moving]
            lim = limits[host]
            cpu_room = math.floor(lim.vcpus - sum(v.vcpus for v in fixed) + 1e-9)
            mem_room = math.floor(lim.memory_mib - sum(v.memory_mib for v in fixed) + 1e-9)
            ivs, cpus, mems, disk_items = [], [], [], []
            for name, arrive, leave, by in mm.stays(host):
                vm = inv.vm[name]
                ivs.append(mm.stay_interval(arrive, leave))
                cpus.append(vm.vcpus)
                mems.append(vm.memory_mib)
                if by is not None and copy_storage_targets(vm):
                    disk_items.append((mm.stay_interval(mm.moves[by].start, mm.horizon),
                                       math.ceil(vm.local_disk_alloc_gib * DISK_SCALE)))
            mm.m.add_cumulative(ivs, cpus, max(cpu_room, 0))
            mm.m.add_cumulative(ivs, mems, max(mem_room, 0))
            if disk_items:
                mm.m.add_cumulative([iv for iv, _ in disk_items], [d for _, d in disk_items],
                                    math.floor(lim.local_disk_gib * DISK_SCALE))

    def explain(self, ec: ExplainContext) -> list[tuple[float, str]]:
        vm, room, compatible, searched = ec.vm, ec.room, ec.compatible, ec.searched
        out: list[tuple[float, str]] = []
        best_mem = max(room[h].memory_mib for h in compatible)
        if vm.memory_mib > best_mem:
            short = vm.memory_mib - best_mem
            out.append((60 + short / 1e6, f"capacity short by {short:.0f} MiB of memory: the best of its "
                        f"{len(compatible)} compatible hosts has {max(best_mem, 0):.0f} MiB left{searched}"))
        best_cpu = max(room[h].vcpus for h in compatible)
        if vm.vcpus > best_cpu:
            out.append((59, f"capacity short by {vm.vcpus - best_cpu:g} vCPUs (× cpu_overcommit "
                            f"{ec.inventory.policy.cpu_overcommit:g}) on every compatible host{searched}"))
        best_disk = max(room[h].disk_mib for h in compatible)
        if vm.local_disk_alloc_mib > best_disk:
            out.append((58, f"local disk room short by {vm.local_disk_alloc_mib - best_disk:.0f} MiB on every "
                            f"compatible host{searched}"))
        return out


# Registration: the package finds RULE in every module of planner/rules (CHECK_ORDER: where it is checked).
RULE = Capacity()
CHECK_ORDER = 30
