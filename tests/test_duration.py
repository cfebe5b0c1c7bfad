"""The pre-copy duration model against values computed by hand (NOTES §2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.duration import DEFAULT_MODEL, DurationModel, closed_form_duration_s, estimate, floor_estimate


def test_idle_vm_sends_its_memory_once() -> None:
    e = estimate(1024, 0.0, 512, 500)
    assert e.duration_s == pytest.approx(1.75 + 2.0)
    assert e.transferred_mib == 1024
    assert e.rounds == 2  # 1024 > 512 × 0.5: one round, then nothing is dirty: an empty stop-and-copy
    assert e.converges and not e.throttled


def test_memory_that_fits_the_downtime_is_a_single_stop_and_copy() -> None:
    e = estimate(100, 50.0, 1000, 500)  # 100 MiB ≤ 1000 MiB/s × 0.5 s
    assert e.rounds == 1
    assert e.duration_s == pytest.approx(1.75 + 0.1)
    assert e.downtime_ms == pytest.approx(100 + 20)


def test_geometric_rounds_by_hand() -> None:
    # M=1000, D=50, R=100 → λ=0.5, threshold 50 MiB: rounds send 1000, 500, 250, 125, 62.5, then 31.25 stop-copy
    e = estimate(1000, 50.0, 100, 500)
    assert e.rounds == 6
    assert e.transferred_mib == pytest.approx(1968.75)
    assert e.duration_s == pytest.approx(1.75 + 19.6875)
    assert e.downtime_ms == pytest.approx(312.5 + 20)
    assert e.converges and not e.throttled
    assert closed_form_duration_s(1000, 50.0, 100, 500) == pytest.approx(e.duration_s)


def test_copied_disk_goes_first_at_the_same_bandwidth() -> None:
    plain = estimate(1000, 50.0, 100, 500)
    with_disk = estimate(1000, 50.0, 100, 500, disk_mib=500)
    assert with_disk.duration_s == pytest.approx(plain.duration_s + 5.0)
    assert with_disk.transferred_mib == pytest.approx(plain.transferred_mib + 500)


def test_offline_moves_only_the_disks() -> None:
    e = estimate(8192, 100.0, 100, 500, disk_mib=300, live=False)
    assert e.duration_s == pytest.approx(1.75 + 3.0)
    assert e.transferred_mib == 300 and e.rounds == 0 and e.downtime_ms == 0


def test_dirtying_faster_than_the_link_never_converges_without_auto_converge() -> None:
    e = estimate(100, 200.0, 100, 100)
    assert not e.converges and not e.throttled
    assert e.rounds == DEFAULT_MODEL.max_rounds + 1
    assert e.transferred_mib == pytest.approx(100 * 31)


def test_auto_converge_by_hand() -> None:
    # M=100, D=200, R=100, threshold 10 MiB. Throttle from the 2nd remainder on: 20 %, 30 %, ...
    # remainders 100 ×5 (dirtying still ≥ link), then 80, 48, 19.2, 3.84 (stop-and-copy)
    e = estimate(100, 200.0, 100, 100, auto_converge=True)
    assert not e.converges and e.throttled
    assert e.rounds == 10
    assert e.transferred_mib == pytest.approx(751.04)
    assert e.duration_s == pytest.approx(1.75 + 7.5104)
    assert e.downtime_ms == pytest.approx(38.4 + 20)


def test_fixed_cost_is_a_model_field() -> None:
    assert estimate(1024, 0, 512, 500, model=DurationModel(fixed_cost_s=0.0)).duration_s == pytest.approx(2.0)


@pytest.mark.parametrize("bw", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_bandwidth_is_refused(bw: float) -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        estimate(1024, 0, bw, 500)


@settings(max_examples=200, deadline=None)
@given(memory=st.floats(1, 65536), dirty=st.floats(0, 2000), cap=st.floats(1, 5000), frac=st.floats(0.01, 1.0),
       disk=st.floats(0, 10000), live=st.booleans(), ac=st.booleans(), downtime=st.floats(1, 2000))
def test_floor_is_below_every_lower_bandwidth(memory: float, dirty: float, cap: float, frac: float, disk: float,
                                              live: bool, ac: bool, downtime: float) -> None:
    """What lower bounds rely on: no bandwidth ≤ cap sends fewer bytes or finishes sooner than the floor."""
    floor = floor_estimate(memory, dirty, cap, downtime, disk, live, ac)
    e = estimate(memory, dirty, cap * frac, downtime, disk, live, ac)
    assert floor.transferred_mib <= e.transferred_mib * (1 + 1e-9)
    assert floor.duration_s <= e.duration_s * (1 + 1e-9)
