"""planner.generate: synthetic fleets are valid, deterministic, realistic, and leave room to drain."""

from __future__ import annotations

from collections import Counter

import pytest

from planner.baselines import ffd_placement
from planner.generate import AZURE_SIZE_MIX, generate_fleet
from planner.inventory import parse_inventory
from planner.topology import Topology


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    a = generate_fleet(20, 150, 2, seed=3)
    assert a.sha256 == generate_fleet(20, 150, 2, seed=3).sha256
    assert a.sha256 != generate_fleet(20, 150, 2, seed=4).sha256


def test_generated_fleet_is_valid_inventory_with_its_own_digest() -> None:
    inv = generate_fleet(30, 300, 3, seed=1, maintenance=("r2-h01",))
    loaded = parse_inventory(inv.to_dict())
    assert loaded.warnings == []
    assert loaded.inventory.sha256 == inv.sha256
    assert inv.host["r2-h01"].state.value == "maintenance"


def test_shape_racks_switches_names() -> None:
    inv = generate_fleet(10, 60, 2, seed=2, uplink_gbps=40)
    assert [h.name for h in inv.hosts][:2] == ["r1-h01", "r1-h02"]
    assert {h.switch for h in inv.hosts} == {"tor-r1", "tor-r2"}
    assert {(lk.a, lk.b, lk.gbps) for lk in inv.links} == {("tor-r1", "spine", 40.0), ("tor-r2", "spine", 40.0)}
    assert {h.nic_gbps for h in inv.hosts} == {25.0, 10.0}
    assert Topology(inv).connected()
    assert all(v.name.split("-")[0] in {"web", "app", "api", "db", "cache", "queue", "batch", "worker", "mon", "ci"}
               for v in inv.vms)


def test_size_mix_and_dirty_rates_follow_the_public_profiles() -> None:
    inv = generate_fleet(200, 4000, 8, seed=9)
    sizes = Counter((v.vcpus, v.memory_mib) for v in inv.vms)
    assert set(sizes) <= {(c, m) for c, m, _ in AZURE_SIZE_MIX}
    assert 0.3 < sizes[(1, 1792)] / len(inv.vms) < 0.55  # 42.7 % in the trace (replica groups skew it a bit)
    rates = [v.dirty_rate_mibs for v in inv.vms]
    assert 0.6 < sum(r <= 1 for r in rates) / len(rates) < 0.8  # mostly idle
    assert 0.01 < sum(r >= 20 for r in rates) / len(rates) < 0.1  # a few hot
    assert 0.1 < sum(1 for v in inv.vms if v.local_disks) / len(inv.vms) < 0.3
    assert {s for v in inv.vms for s in v.shared_storage} == {"nfs-1", "ceph-1"}


def test_memory_headroom_and_anti_affinity_respected_now() -> None:
    inv = generate_fleet(40, 400, 4, seed=4)
    for h in inv.hosts:
        on = inv.vms_on[h.name]
        assert sum(v.memory_mib for v in on) <= h.usable_memory_mib
        groups = [g for v in on for g in v.anti_affinity]
        assert len(groups) == len(set(groups))
    used = sum(v.memory_mib for v in inv.vms) / sum(h.usable_memory_mib for h in inv.hosts)
    assert 0.45 < used < 0.75
    assert any(v.anti_affinity for v in inv.vms)


@pytest.mark.parametrize("seed", [1, 2])
def test_draining_five_percent_of_hosts_fits(seed: int) -> None:
    inv = generate_fleet(60, 500, 3, seed=seed)
    drained = [h.name for h in inv.hosts[:3]]
    assert dict(ffd_placement(inv, drained).unplaced) == {}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="racks"):
        generate_fleet(2, 10, 3)
    with pytest.raises(ValueError, match="memory_used"):
        generate_fleet(2, 10, 1, memory_used=0)


def test_a_skewed_fleet_piles_load_up_and_stays_valid() -> None:
    from planner.balance import By, Metric, spread, utilisation
    from planner.capacity import host_capacity
    from planner.generate import skew_fleet
    from planner.repair import misplaced

    base = generate_fleet(40, 240, 4, seed=2)
    skewed = skew_fleet(base, seed=2)
    assert parse_inventory(skewed.to_dict()).inventory.sha256 == skewed.sha256
    assert misplaced(skewed) == {}  # anti-affinity kept: nothing to repair
    for h in skewed.hosts:
        cap = host_capacity(h, skewed.policy)
        assert sum(v.memory_mib for v in skewed.vms_on.get(h.name, ())) <= cap.memory_mib
    def s(inv):  # type: ignore[no-untyped-def]
        return spread(utilisation(inv, {v.name: v.host for v in inv.vms}, Metric.MEMORY, By.ALLOCATION)).spread_pct
    assert s(skewed) > s(base) + 20
