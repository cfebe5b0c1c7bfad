"""Use figures from domain statistics (executor/usage.py), on hand-written numbers as libvirt returns them."""

from __future__ import annotations

import pytest

from executor.usage import (
    NO_SAMPLING,
    MemorySource,
    StatsSample,
    Usage,
    cpu_cores,
    measure,
    memory_used,
    missing_summary,
    not_running,
    source_counts,
)

S = 1_000_000_000  # nanoseconds in a second: cpu.time's unit


def test_cpu_cores_is_the_cpu_time_delta_over_the_wall_time() -> None:
    assert cpu_cores({"cpu.time": 10 * S}, {"cpu.time": 13 * S}, 2.0) == (1.5, None)
    assert cpu_cores({"cpu.time": 5 * S}, {"cpu.time": 5 * S}, 2.0) == (0.0, None)  # paused or idle


@pytest.mark.parametrize(("first", "second", "elapsed", "why"), [
    ({}, {"cpu.time": S}, 2.0, "no cpu.time"),
    ({"cpu.time": S}, {}, 2.0, "no cpu.time"),
    ({"cpu.time": 9 * S}, {"cpu.time": S}, 2.0, "restarted"),  # a new QEMU process counts from zero
    ({"cpu.time": S}, {"cpu.time": 2 * S}, 0.0, "no time"),
])
def test_cpu_cores_says_why_it_has_no_figure(first: dict[str, float], second: dict[str, float], elapsed: float,
                                             why: str) -> None:
    cores, reason = cpu_cores(first, second, elapsed)
    assert cores is None and reason is not None and why in reason


def test_memory_prefers_the_guests_own_view() -> None:
    stats = {"balloon.current": 4 * 1024**2, "balloon.rss": 3 * 1024**2, "balloon.available": 4000 * 1024,
             "balloon.unused": 1000 * 1024}
    assert memory_used(stats) == (3000, MemorySource.GUEST)


def test_memory_from_rss_is_at_most_the_guest_memory() -> None:
    # TCG's translation cache and device emulation are QEMU's own: RSS above the guest's size is not the guest's.
    assert memory_used({"balloon.current": 65536, "balloon.rss": 103508}) == (64, MemorySource.RSS)
    assert memory_used({"balloon.current": 1048576, "balloon.rss": 300 * 1024 + 1}) == (301, MemorySource.RSS)


def test_hugepage_guests_do_not_use_rss() -> None:
    # hugetlbfs pages are not counted in a process's RSS: it would say a 4 GiB guest uses a few MiB.
    stats = {"balloon.current": 4 * 1024**2, "balloon.rss": 20 * 1024}
    assert memory_used(stats, hugepages=True) == (4096, MemorySource.CURRENT)


def test_memory_without_balloon_statistics() -> None:
    assert memory_used({"balloon.current": 2048}) == (2, MemorySource.CURRENT)
    mib, why = memory_used({})
    assert mib is None and why == "no balloon statistics"


def test_measure_takes_memory_from_the_first_sample_and_cpu_from_both() -> None:
    first = StatsSample(100.0, {"a": {"cpu.time": 2 * S, "balloon.current": 65536, "balloon.rss": 40960}})
    second = StatsSample(102.0, {"a": {"cpu.time": 3 * S}})
    assert measure("a", first, second) == Usage(cpu_used=0.5, memory_used_mib=40, memory_source=MemorySource.RSS,
                                                cpu_missing=None, memory_missing=None)


def test_measure_when_the_host_did_not_answer_the_second_sample() -> None:
    first = StatsSample(100.0, {"a": {"cpu.time": 2 * S, "balloon.current": 65536}})
    u = measure("a", first, None, second_missing="second sample not read (connection lost)")
    assert u.cpu_used is None and u.cpu_missing == "second sample not read (connection lost)"
    assert u.memory_used_mib == 64 and u.memory_missing is None
    gone = measure("a", first, StatsSample(102.0, {}))
    assert gone.cpu_used is None and gone.cpu_missing == "stopped before the second sample"
    off = measure("a", first, None)
    assert off.cpu_missing == NO_SAMPLING


def test_measure_without_a_first_sample() -> None:
    u = measure("a", None, None, first_missing="statistics not read (timeout)")
    assert (u.cpu_used, u.memory_used_mib) == (None, None)
    assert u.cpu_missing == u.memory_missing == "statistics not read (timeout)"
    assert measure("b", StatsSample(1.0, {}), None).memory_missing == "no statistics for this domain"


def test_one_warning_per_host_counts_the_vms_and_the_reasons() -> None:
    measured = Usage(1.0, 512, MemorySource.RSS, None, None)
    no_cpu = Usage(None, 512, MemorySource.RSS, "stopped before the second sample", None)
    usages = [measured] * 500 + [not_running()] * 40 + [no_cpu] * 2
    w = missing_summary("h7", usages)
    assert w is not None and w.where == "h7" and w.severity == "warning"
    assert w.message == ("usage not measured: cpu_used absent for 42 of 542 VMs (shut off: 40; stopped before the "
                         "second sample: 2); memory_used_mib absent for 40 of 542 VMs (shut off: 40)")
    assert missing_summary("h8", [measured] * 3) is None


def test_source_counts() -> None:
    guest = Usage(None, 1, MemorySource.GUEST, "x", None)
    rss = Usage(None, 1, MemorySource.RSS, "x", None)
    assert source_counts([guest, rss, rss, not_running()]) == {"balloon.available-unused": 1, "balloon.rss": 2}
