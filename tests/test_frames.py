"""planner.frames: host and VM tables with the planner's capacities (overcommit, reserved memory)."""

from __future__ import annotations

from planner.frames import HOST_COLUMNS, VM_COLUMNS, to_frames
from planner.inventory import parse_inventory
from tests.test_inventory import valid_doc


def test_host_frame_counts_use_and_room() -> None:
    doc = valid_doc()
    doc["policy"]["cpu_overcommit"] = 2.0
    doc["vms"].append({"name": "web-03", "host": "h01", "vcpus": 1, "memory_mib": 1024, "state": "shutoff"})
    frames = to_frames(parse_inventory(doc).inventory)
    h = frames.hosts
    assert list(h.columns) == list(HOST_COLUMNS) and list(h.index) == ["h01", "h02", "h03"]
    assert h.index.name == "name"
    row = h.loc["h01"]
    assert row.vcpus_capacity == 128 and row.vcpus_used == 5 and row.vcpus_free == 123
    assert row.memory_capacity_mib == 262144 - 8192 and row.memory_used_mib == 8192 + 1024
    assert row.memory_free_mib == 262144 - 8192 - 9216
    assert row.local_disk_used_gib == 12 and row.local_disk_free_gib == 1800
    assert row.vm_count == 2 and row.running_vms == 1
    assert h.loc["h03"].switch == "tor-b" and h.loc["h02"].vm_count == 1


def test_vm_frame() -> None:
    frames = to_frames(parse_inventory(valid_doc()).inventory)
    v = frames.vms
    assert list(v.columns) == list(VM_COLUMNS) and v.index.name == "name"
    web = v.loc["web-01"]
    assert (web.host, web.switch, web.local_disk_gib, web.shared_disk_gib, web.disk_count) == ("h01", "tor-a", 12, 6.5,
                                                                                               2)
    assert web.anti_affinity == "web" and v.loc["db-01"].state == "shutoff"


def test_empty_host_has_a_row() -> None:
    doc = valid_doc()
    doc["vms"] = []
    h = to_frames(parse_inventory(doc).inventory).hosts
    assert h.vm_count.tolist() == [0, 0, 0] and h.memory_used_mib.tolist() == [0, 0, 0]
