"""The one capacity formula of inventory v1."""

from __future__ import annotations

import pytest

from planner.capacity import Capacity, host_capacity, total_demand, vm_demand
from planner.model import Policy
from tests._planner_fixtures import host, local_disk, vm


def test_host_capacity_applies_reserve_and_overcommit() -> None:
    h = host("h", cpus=16, memory_mib=65536, reserved_memory_mib=4096, local_disk_free_gib=100.0)
    cap = host_capacity(h, Policy(cpu_overcommit=4.0, memory_overcommit=1.5))
    assert cap == Capacity(64.0, (65536 - 4096) * 1.5, 100.0)


def test_vm_demand_counts_only_copied_disks() -> None:
    v = vm("v", "h", vcpus=4, memory_mib=2048, disks=(local_disk("vdb", 3.0),))
    assert vm_demand(v) == Capacity(4, 2048, pytest.approx(3.0))
    assert total_demand([v, v]) == Capacity(8, 4096, 0.0)


def test_fits_and_floor() -> None:
    room = Capacity(4, 1024, 1)
    assert Capacity(4, 1024, 1).fits_in(room) and not Capacity(5, 1, 0).fits_in(room)
    assert room.at_least(Capacity(8, 0, 2)) == Capacity(8, 1024, 2)
    assert (room - Capacity(1, 24, 1)) + Capacity(1, 24, 1) == room
