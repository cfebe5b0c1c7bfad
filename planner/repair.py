"""VMs whose current host breaks a hard rule (plan v1, reconfiguration section): they must move.

A VM is misplaced when its host is in `maintenance` or `down`, when the host does not offer what
it needs (`planner.host_rules`: CPU, arch, networks, storage, `requires_host_labels`), or when it
shares its host with another member of one of its anti-affinity groups. Of such a group on one
host, one VM may stay: the one with the highest priority, then the first by name (a stable, easy
to explain choice); the others are misplaced. The planner moves misplaced VMs in every kind of
plan but a drain; the checker holds every non-drain plan to ending each of them on a host that
suits it, or listing it as unplaced.
"""

from __future__ import annotations

from collections import defaultdict

from planner.host_rules import needs_of, unsuited_reasons
from planner.model import VM, HostState, Inventory


def misplaced(inventory: Inventory) -> dict[str, list[str]]:
    """VM name → why its current host breaks a hard rule (only VMs that break one)."""
    out: dict[str, list[str]] = defaultdict(list)
    for v in inventory.vms:
        host = inventory.host.get(v.host)
        if host is None:
            continue
        if host.state is not HostState.UP:
            out[v.name].append(f"host {host.name} is {host.state.value}")
        out[v.name] += unsuited_reasons(needs_of(v, inventory), host)
    members: dict[tuple[str, str], list[VM]] = defaultdict(list)
    for v in inventory.vms:
        for g in v.anti_affinity:
            members[(v.host, g)].append(v)
    for (host_name, group), vms in sorted(members.items()):
        if len(vms) < 2:
            continue
        stays = min(vms, key=lambda v: (-v.priority, v.name))
        for v in vms:
            if v is not stays:
                out[v.name].append(f"shares anti-affinity group {group} with {stays.name} on host {host_name}")
    return {k: v for k, v in out.items() if v}
