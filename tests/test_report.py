"""The report layer (planner.report): plans, timelines, host load and run results as DataFrames."""

from __future__ import annotations

import dataclasses

import pytest

from planner.capacity import host_capacity
from planner.report import (
    ExecutedRow,
    after_inventory,
    host_load,
    host_timeline,
    load_extremes,
    peak_utilisation,
    plan_table,
    resource_timeline,
    run_table,
    wave_table,
)
from planner.units import gbps_to_mibs
from tests._planner_fixtures import move, plan_of, two_racks, vm


def _inv():  # type: ignore[no-untyped-def]
    vms = [vm("v1", "a1", memory_mib=4096), vm("v2", "a1", memory_mib=2048), vm("v3", "b1")]
    return two_racks(per_rack=2, vms=vms, migration_share=0.5)


def test_plan_table_and_waves_have_a_row_per_migration_and_wave() -> None:
    inv = _inv()
    m1 = dataclasses.replace(move(inv, "v1", "b2", 0.0, wave=0), memory_mib=4096.0)
    plan = plan_of(inv, [m1, move(inv, "v2", "a2", 5.0, wave=1)], drained=("a1",))
    table = plan_table(plan)
    assert list(table["vm"]) == ["v1", "v2"]
    assert table.loc[0, "path"] == "a1 > tor-a > spine > tor-b > b2"
    assert table.loc[0, "memory_gib"] == pytest.approx(4.0)
    waves = wave_table(plan)
    assert list(waves["wave"]) == [0, 1] and list(waves["vms"]) == [1, 1]
    by_host = host_timeline(plan)
    assert sorted(zip(by_host["host"], by_host["direction"], by_host["vm"], strict=True)) == [
        ("a1", "out", "v1"), ("a1", "out", "v2"), ("a2", "in", "v2"), ("b2", "in", "v1")]


def test_resource_timeline_sums_overlapping_migrations_on_a_nic_by_hand() -> None:
    inv = _inv()
    m1 = move(inv, "v1", "b2", 0.0, bandwidth_mibs=100.0)
    m2 = move(inv, "v2", "a2", 1.0, bandwidth_mibs=50.0)
    plan = plan_of(inv, [m1, m2], drained=("a1",))
    tl = resource_timeline(plan, inv)
    out = tl[tl["resource"] == "a1→tor-a"].set_index("time_s")["used_mibs"]
    # v1 alone from 0, both from 1 (150), v1 ends first or v2 ends first, then 0
    assert out[0.0] == pytest.approx(100.0)
    assert out[1.0] == pytest.approx(150.0)
    assert out.iloc[-1] == pytest.approx(0.0)
    cap = gbps_to_mibs(10.0)
    peaks = peak_utilisation(tl).set_index("resource")
    assert peaks.loc["a1→tor-a", "peak_utilisation"] == pytest.approx(150.0 / cap)
    assert peaks.loc["a1→tor-a", "kind"] == "nic-out"
    assert peaks.loc["tor-a→spine", "kind"] == "link"
    assert peaks.loc["tor-a→a2", "kind"] == "nic-in"
    assert peaks.loc["a1→tor-a", "cap_mibs"] == pytest.approx(cap * 0.5)
    assert peaks.loc["a1→tor-a", "busy_s"] == pytest.approx(max(m1.end_s, m2.end_s))


def test_host_load_before_and_after_uses_the_one_capacity_formula() -> None:
    inv = _inv()
    plan = plan_of(inv, [move(inv, "v1", "b2"), move(inv, "v2", "a2")], drained=("a1",))
    assert {v.name: v.host for v in after_inventory(inv, plan).vms} == {"v1": "b2", "v2": "a2", "v3": "b1"}
    load = host_load(inv, plan)
    cap = host_capacity(inv.host["b2"], inv.policy)
    assert load.loc["b2", "memory_pct_after"] == pytest.approx(100 * 4096 / cap.memory_mib)
    assert load.loc["a1", "vms_before"] == 2 and load.loc["a1", "vms_after"] == 0
    assert load.loc["a1", "drained"]
    assert load.loc["b2", "load_pct_after"] == max(load.loc["b2", "memory_pct_after"],
                                                   load.loc["b2", "vcpu_pct_after"])
    high, low = load_extremes(load, inv)  # a1 is drained: not counted
    assert high == pytest.approx(load.loc["b2", "load_pct_after"])
    assert low == pytest.approx(min(load.loc[h, "load_pct_after"] for h in ("a2", "b1", "b2")))


def test_run_table_sets_planned_beside_executed() -> None:
    inv = _inv()
    m1 = move(inv, "v1", "b2", 0.0)
    plan = plan_of(inv, [m1, move(inv, "v2", "a2", 2.0)], drained=("a1",))
    runs = run_table(plan, [ExecutedRow("v1", "done", 1, 0.5, m1.end_s + 3.0)]).set_index("vm")
    assert runs.loc["v1", "late_s"] == pytest.approx(3.0)
    assert runs.loc["v1", "executed_s"] == pytest.approx(m1.end_s + 2.5)
    assert runs.loc["v2", "state"] == "pending"
