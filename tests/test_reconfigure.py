"""`reconfigure` end to end on random small fleets: every kind's plan passes the checker (it asserts it)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from planner.balance import By, Metric
from planner.model import Disk, HostState, Inventory, Link, Policy, VMState
from planner.plan import PlanKind
from planner.reconfigure import RebalanceOptions, make_reconfiguration, reconfigure
from tests._planner_fixtures import flat, host, vm


def _fleet(rng: random.Random) -> Inventory:
    """Hosts of mixed size, features, zones and states; VMs with local disks, peers, affinity, pins,
    host-label rules, measured use; two racks, one behind a thin uplink; random policy limits."""
    hosts = [host(f"h{i}", memory_mib=rng.choice([4096, 8192, 12288]), cpus=rng.choice([2, 4, 8]),
                  switch=rng.choice(["ta", "tb"]), local_disk_free_gib=rng.choice([0.0, 10.0, 100.0]),
                  cpu_features=frozenset(rng.sample(["avx", "amx"], rng.randint(0, 2))),
                  labels={"zone": rng.choice("ab")},
                  state=rng.choice([HostState.UP] * 6 + [HostState.MAINTENANCE, HostState.DOWN]))
             for i in range(rng.randint(2, 7))]
    used = dict.fromkeys((h.name for h in hosts), 0)
    vms = []
    for j in range(rng.randint(1, 10)):
        h = rng.choice(hosts)
        mem = rng.choice([1024, 2048, 4096])
        if used[h.name] + mem > h.memory_mib:
            continue
        used[h.name] += mem
        vms.append(vm(f"v{j}", h.name, memory_mib=mem, vcpus=rng.choice([1, 2]),
                      disks=(Disk("vdb", None, "raw", None, 4.0, 2.0),) if rng.random() < 0.3 else (),
                      anti_affinity=frozenset(rng.sample(["g", "k"], rng.randint(0, 2))) if rng.random() < 0.4
                      else frozenset(),
                      affinity=frozenset({"af"}) if rng.random() < 0.15 else frozenset(),
                      cpu_features=frozenset({"avx"}) if rng.random() < 0.2 else frozenset(),
                      pinned=rng.random() < 0.1, state=VMState.SHUTOFF if rng.random() < 0.15 else VMState.RUNNING,
                      requires_host_labels={"zone": "a"} if rng.random() < 0.15 else {},
                      cpu_used=rng.random() * 2 if rng.random() < 0.5 else None,
                      memory_used_mib=rng.randint(0, mem) if rng.random() < 0.5 else None))
    policy = replace(Policy(), cpu_overcommit=rng.choice([1.0, 2.0]), max_inbound_per_host=rng.choice([0, 1, 2]),
                     max_outbound_per_host=rng.choice([0, 1, 2]), max_concurrent=rng.choice([0, 1, 3]))
    return Inventory(hosts=tuple(hosts), vms=tuple(vms), links=(Link("ta", "sp", 10.0), Link("tb", "sp", 1.0)),
                     policy=policy)


@pytest.mark.parametrize("seed", range(40))
def test_every_kind_on_a_random_fleet_gives_a_checked_plan(seed: int) -> None:
    rng = random.Random(seed)
    inv = _fleet(rng)
    target = {v.name: rng.choice(inv.hosts).name for v in inv.vms if rng.random() < 0.7}
    drained = [rng.choice(inv.hosts).name] if rng.random() < 0.3 else []
    options = RebalanceOptions(metric=rng.choice(list(Metric)), by=rng.choice(list(By)),
                               group_by=rng.choice([None, "zone"]), min_gain_pct=rng.choice([0.0, 1.0, 5.0]),
                               max_moves=rng.choice([None, 2]))
    for kind in (PlanKind.TARGET, PlanKind.REPAIR, PlanKind.REBALANCE, PlanKind.RETURN):
        plan = make_reconfiguration(inv, kind, drained=drained, target=target, rebalance_options=options,
                                    time_limit_s=1, workers=1)
        assert plan.kind is kind and plan.lower_bound_s <= plan.makespan_s + 1e-9


def test_a_drain_is_not_a_reconfiguration() -> None:
    inv = flat([host("h1"), host("h2")], [vm("a", "h1")])
    with pytest.raises(ValueError, match="not drain"):
        reconfigure(inv, PlanKind.DRAIN)
