"""What a VM uses, from libvirt's domain statistics: `cpu_used` (cores) and `memory_used_mib`.

Pure: it takes the typed parameters `virConnectGetAllDomainStats` / `domainListGetStats` return
(https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectGetAllDomainStats) as plain
mappings, so it is tested on hand-written numbers. The collector takes the samples.

* CPU: `cpu.time` (VIR_DOMAIN_STATS_CPU_TOTAL, nanoseconds of host CPU the domain used, vCPU and
  emulator threads alike) read twice; the delta over the wall time between the two reads = cores.
* Memory, best first: the guest's own view `balloon.available − balloon.unused` (needs a balloon
  driver in the guest and a stats period, `virsh dommemstat --period`); else `balloon.rss`, the
  QEMU process's resident memory, at most `balloon.current` (the rest is QEMU's own: device
  emulation, TCG's translation cache), and not used for hugepage-backed guests (hugetlbfs pages are
  not counted in RSS); else `balloon.current`, the guest's current memory size (an upper bound).
  All balloon figures are KiB.

A figure that cannot be had is None with the reason, so that the collector can say, per host, how
many VMs lack which figure and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from planner.errors import Problem

Stats = Mapping[str, float]  # one domain's typed parameters, as libvirt-python returns them

NOT_RUNNING = "shut off"
NO_SAMPLING = "not sampled (--sample-s 0)"


class MemorySource(StrEnum):
    """Which statistic `memory_used_mib` came from (docs/collect.md)."""

    GUEST = "balloon.available-unused"
    RSS = "balloon.rss"
    CURRENT = "balloon.current"


@dataclass(frozen=True, slots=True)
class StatsSample:
    """One statistics answer for a host's domains: per domain name its stats, and when (monotonic
    seconds, the middle of the call: the domains are read one after another within it)."""

    at_s: float
    stats: Mapping[str, Stats]


@dataclass(frozen=True, slots=True)
class Usage:
    """A VM's measured use; a figure is None when not available, with the reason why."""

    cpu_used: float | None = None
    memory_used_mib: int | None = None
    memory_source: MemorySource | None = None
    cpu_missing: str | None = "not sampled"
    memory_missing: str | None = "not sampled"


NOT_SAMPLED = Usage()


def cpu_cores(first: Stats, second: Stats, elapsed_s: float) -> tuple[float | None, str | None]:
    """Cores used between two samples: (figure, None) or (None, why not)."""
    if "cpu.time" not in first or "cpu.time" not in second:
        return None, "no cpu.time in the domain statistics"
    if elapsed_s <= 0:
        return None, "no time between the two samples"
    delta_ns = second["cpu.time"] - first["cpu.time"]
    if delta_ns < 0:  # a new QEMU process (restarted between the samples) counts from zero again
        return None, "restarted between the two samples"
    return round(delta_ns / 1e9 / elapsed_s, 3), None


def memory_used(stats: Stats, hugepages: bool = False) -> tuple[int, MemorySource] | tuple[None, str]:
    """The best memory-in-use figure the statistics give, in MiB (rounded up), and its source."""
    available, unused = stats.get("balloon.available"), stats.get("balloon.unused")
    if available is not None and unused is not None and available >= unused:
        return _mib(available - unused), MemorySource.GUEST
    current = stats.get("balloon.current")
    rss = stats.get("balloon.rss")
    if rss is not None and not hugepages:
        return _mib(min(rss, current) if current is not None else rss), MemorySource.RSS
    if current is not None:
        return _mib(current), MemorySource.CURRENT
    return None, "no balloon statistics"


def _mib(kib: float) -> int:
    return -(-int(kib) // 1024)  # round up: never under-count memory


def measure(name: str, first: StatsSample | None, second: StatsSample | None, *, hugepages: bool = False,
            first_missing: str = "statistics not read", second_missing: str = NO_SAMPLING) -> Usage:
    """The usage of domain `name` from the first sample (memory, CPU start) and the second (CPU end).
    `first_missing` / `second_missing` say why a sample is None."""
    if first is None or name not in first.stats:
        why = first_missing if first is None else "no statistics for this domain"
        return Usage(cpu_missing=why, memory_missing=why)
    stats = first.stats[name]
    memory, source = memory_used(stats, hugepages)
    cpu: float | None = None
    if second is None:
        cpu_why: str | None = second_missing
    elif name not in second.stats:
        cpu_why = "stopped before the second sample"
    else:
        cpu, cpu_why = cpu_cores(stats, second.stats[name], second.at_s - first.at_s)
    if memory is None:
        return Usage(cpu_used=cpu, cpu_missing=cpu_why, memory_missing=str(source))
    return Usage(cpu_used=cpu, memory_used_mib=memory, memory_source=MemorySource(source), cpu_missing=cpu_why,
                 memory_missing=None)


def not_running() -> Usage:
    return Usage(cpu_missing=NOT_RUNNING, memory_missing=NOT_RUNNING)


def missing_summary(where: str, usages: Iterable[Usage]) -> Problem | None:
    """One warning for a host: how many VMs lack which figure and why (not a line per VM)."""
    cpu: Counter[str] = Counter()
    mem: Counter[str] = Counter()
    total = 0
    for u in usages:
        total += 1
        if u.cpu_used is None:
            cpu[u.cpu_missing or "unknown"] += 1
        if u.memory_used_mib is None:
            mem[u.memory_missing or "unknown"] += 1
    if not cpu and not mem:
        return None
    parts = [f"{field} absent for {sum(c.values())} of {total} VMs ({_reasons(c)})"
             for field, c in (("cpu_used", cpu), ("memory_used_mib", mem)) if c]
    return Problem(where, "usage not measured: " + "; ".join(parts), "warning")


def _reasons(counts: Counter[str]) -> str:
    return "; ".join(f"{why}: {n}" for why, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def source_counts(usages: Iterable[Usage]) -> dict[str, int]:
    """How many VMs' memory figure came from each statistic: {"balloon.rss": 3, ...}."""
    return dict(Counter(u.memory_source.value for u in usages if u.memory_source is not None))
