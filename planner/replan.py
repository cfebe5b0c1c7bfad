"""Re-planning during a run (`evac run --replan`): the live state as an inventory, and a new plan for it.

When a destination stops answering, the executor stops dispatching, lets what is in flight end, and
asks for a new plan of what is still to move. The planner cannot see a run, so the run is folded
into an inventory (`live_inventory`):

* VMs already moved are on their destinations, and take their room there (memory, vCPUs, and the
  local disk space a copy-storage migration used); a quarantined VM is counted on its planned
  destination too, the conservative choice (it may be there, and its source is drained anyway);
* hosts that stopped answering are `down`: they receive nothing, and their own VMs cannot move;
* VMs of the drained hosts that are not to be moved again (failed or aborted after a migrate call,
  quarantined, or left unplaced by the plan the operator accepted) are left out: a drained host's
  room counts for nothing, and a plan must move or list every VM of a drained host.

`replan` runs the ordinary planner on that inventory: a drain is planned again with the original
drained set (`planner.solve.make_plan`). Any other kind (multi-hop plans: target, repair, rebalance,
return) is re-planned as a target placement (`planner.reconfigure`, kind `target`): every VM still to
move goes where the plan ends it (`final_hosts`), from where it is now (a VM stopped on its staging host
by the halt leaves from there: it still needs its last hop), with staging hops again where a cycle needs
them; a VM whose end host stopped answering is left out of the target (repaired elsewhere if it must
move, else left where it is), and the VMs not to move again stay where they are. Each planner checks
what it returns with the independent checker (a failure there is a bug in evac:
`InconsistentPlanError`), and `replan` checks in addition that the new plan moves only VMs it was asked
to move, each first hop from where the VM is now. The new plan's hops are numbered from 0 (the checker's
rule); the executor renumbers them after the hops a VM already made (`renumber_hops`), so the journal's
(VM, hop) rows stay one chain per VM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

from planner.constraints import Violation
from planner.errors import InconsistentPlanError
from planner.migration_facts import drain_set
from planner.model import HostState, Inventory
from planner.plan import Plan, PlanKind
from planner.solve import make_plan


def live_inventory(inventory: Inventory, done_moves: Mapping[str, str], unavailable_hosts: Iterable[str], *,
                   to_move: Collection[str] | None = None, drained: Iterable[str] = ()) -> Inventory:
    """`inventory` as it is now, mid-run (see the module docstring).

    `done_moves`: VM → the host it now runs on (or, quarantined, may run on). `unavailable_hosts`
    become `down`. With `to_move`, every VM on a host of the drain set (`drained` plus hosts in
    maintenance) that is not in `to_move` is left out of the result."""
    down = set(unavailable_hosts)
    unknown = sorted((set(done_moves.values()) | down) - set(inventory.host))
    if unknown:
        raise ValueError(f"hosts not in the inventory: {', '.join(unknown)}")
    disk_used: dict[str, float] = {}
    for vm_name, host in done_moves.items():
        vm = inventory.vm[vm_name]
        if host != vm.host:
            disk_used[host] = disk_used.get(host, 0.0) + vm.local_disk_alloc_gib
    hosts = tuple(dataclasses.replace(
        h, state=HostState.DOWN if h.name in down else h.state,
        local_disk_free_gib=max(0.0, h.local_disk_free_gib - disk_used.get(h.name, 0.0)))
        for h in inventory.hosts)
    empty = drain_set(inventory, drained)
    keep = None if to_move is None else set(to_move)
    vms = []
    for v in inventory.vms:
        if v.name in done_moves:
            vms.append(dataclasses.replace(v, host=done_moves[v.name]))
        elif keep is None or v.host not in empty or v.name in keep:
            vms.append(v)
    return dataclasses.replace(inventory, hosts=hosts, vms=tuple(vms))


def final_hosts(plan: Plan) -> dict[str, str]:
    """VM -> where the plan ends it: its last hop's destination."""
    return {m.vm: m.destination for m in sorted(plan.migrations, key=lambda m: m.hop)}


def replan(inventory: Inventory, plan: Plan, done_moves: Mapping[str, str], unavailable_hosts: Iterable[str],
           to_move: Collection[str], *, time_limit_s: float = 10.0, workers: int = 2) -> tuple[Inventory, Plan]:
    """A new checked plan moving `to_move` (VMs of `plan` whose current hop never started) where `plan`
    wanted them, given the live state (`done_moves`: VM -> where it is now, if it moved, staging hosts
    included); returns it with the live inventory it was made for (the runner needs both).

    VMs that no longer fit anywhere are the new plan's `unplaced`, with the planner's reasons; a target
    re-plan may also list there VMs it was not asked to move (misplaced where they stay, say on a host that
    stopped answering): they are not the re-plan's to report."""
    down = set(unavailable_hosts)
    live = live_inventory(inventory, done_moves, down, to_move=to_move, drained=plan.drained)
    wanted = set(to_move)
    if plan.kind is PlanKind.DRAIN:
        new = make_plan(live, plan.drained, time_limit_s=time_limit_s, workers=workers,
                        drain_labels=plan.drain_labels, model=plan.duration_model)
    else:
        from planner.reconfigure import make_reconfiguration  # OR-Tools and the reconfiguration core: only here

        ends = final_hosts(plan)
        target = {vm: ends[vm] for vm in sorted(wanted) if vm in live.vm and ends.get(vm) not in down}
        new = make_reconfiguration(live, PlanKind.TARGET, drained=plan.drained, target=target,
                                   time_limit_s=time_limit_s, workers=workers, model=plan.duration_model,
                                   keep=[v.name for v in live.vms if v.name not in wanted])
    new = dataclasses.replace(new, model=plan.model, model_source=plan.model_source)  # the same model as the run's
    stray = [Violation("replan", m.vm, None, f"re-plan moves {m.vm}, which was not to be moved again")
             for m in new.migrations if m.vm not in wanted]
    stray += [Violation("replan", m.vm, None, f"re-plan moves {m.vm} from {m.source}, it is on {live.vm[m.vm].host}")
              for m in new.migrations if m.hop == 0 and m.vm in live.vm and live.vm[m.vm].host != m.source]
    if stray:
        raise InconsistentPlanError(new, stray)
    return live, new


def renumber_hops(plan: Plan, hops_done: Mapping[str, int]) -> Plan:
    """`plan` with each VM's hops numbered after the `hops_done[vm]` hops it already made in the run (the
    journal keys a migration by VM and hop: a re-planned last hop keeps the number of the hop it replaces)."""
    return dataclasses.replace(plan, migrations=tuple(dataclasses.replace(m, hop=m.hop + hops_done.get(m.vm, 0))
                                                      for m in plan.migrations))
