"""How long a migration takes: the pre-copy model of shared/reference/NOTES.md §2.

Memory M (MiB), dirty rate D (MiB/s), bandwidth R (MiB/s), max downtime T_d:
round 0 sends all of M; while it is on the wire the guest dirties D·t, which round 1 sends,
and so on (round i sends M·λ^i with λ = D/R) until what is left fits in the downtime
(remaining ≤ R·T_d), when the guest is paused and the rest is copied (stop-and-copy).
Copied (non-shared) disks go first, at the same bandwidth (QEMU drive-mirror), then memory.
Every migration also pays a fixed cost (connection, destination QEMU start, switchover).

The constants are fields of `DurationModel` so they can be calibrated from lab measurements
(`DurationModel(fixed_cost_s=...)`); nothing else in evac hard-codes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DurationModel:
    # NOTES §1: wall time minus libvirt job time was 1.5–2 s per migration in the lab (TCG, p2p).
    fixed_cost_s: float = 1.75
    # Past this many pre-copy rounds a migration is called non-converging; QEMU itself has no cap.
    max_rounds: int = 30
    # Fixed part of the downtime (device state, resume on the destination).
    resume_cost_ms: float = 20.0
    # QEMU auto-converge defaults (NOTES §2): 20 % initial throttle, +10 % a round, at most 99 %,
    # starting once dirtying has outpaced the transfer for a couple of rounds.
    throttle_initial: float = 0.20
    throttle_increment: float = 0.10
    throttle_max: float = 0.99
    throttle_after_rounds: int = 2


DEFAULT_MODEL = DurationModel()


@dataclass(frozen=True, slots=True)
class Estimate:
    duration_s: float  # wall time from start to the VM running on the destination
    transferred_mib: float  # bytes put on the wire: copied disks + every memory round
    rounds: int  # pre-copy rounds including the final stop-and-copy (0 for offline)
    downtime_ms: float  # guest paused during switchover
    converges: bool  # finishes within max_downtime_ms without auto-converge
    throttled: bool  # auto-converge was needed and used


def _precopy(memory_mib: float, dirty_rate_mibs: float, bandwidth_mibs: float, max_downtime_ms: float,
             throttle: bool, model: DurationModel) -> tuple[float, float, int, float, bool]:
    """Returns (seconds, MiB sent, rounds, downtime_ms, reached_threshold)."""
    threshold_mib = bandwidth_mibs * max_downtime_ms / 1000.0
    remaining = memory_mib
    seconds = sent = 0.0
    for rnd in range(model.max_rounds + 1):
        if remaining <= threshold_mib or rnd == model.max_rounds:
            stop_copy_s = remaining / bandwidth_mibs
            return (seconds + stop_copy_s, sent + remaining, rnd + 1,
                    stop_copy_s * 1000.0 + model.resume_cost_ms, remaining <= threshold_mib)
        round_s = remaining / bandwidth_mibs
        seconds += round_s
        sent += remaining
        rate = dirty_rate_mibs
        if throttle and rnd + 1 >= model.throttle_after_rounds:
            level = model.throttle_initial + model.throttle_increment * (rnd + 1 - model.throttle_after_rounds)
            rate *= 1.0 - min(level, model.throttle_max)
        remaining = min(memory_mib, rate * round_s)
    raise AssertionError("unreachable")  # the loop always returns on its last round


def estimate(memory_mib: float, dirty_rate_mibs: float, bandwidth_mibs: float, max_downtime_ms: float,
             disk_mib: float = 0.0, live: bool = True, auto_converge: bool = False,
             model: DurationModel = DEFAULT_MODEL) -> Estimate:
    """Predicts one migration at a fixed bandwidth.

    `auto_converge` says whether the policy allows it; it is only used (`throttled`) when the
    migration would not converge without it.
    """
    if not bandwidth_mibs > 0 or not math.isfinite(bandwidth_mibs):
        raise ValueError(f"bandwidth_mibs must be positive and finite, got {bandwidth_mibs}")
    disk_s = disk_mib / bandwidth_mibs
    if not live:  # offline: the definition moves, plus the copied disks; nothing runs meanwhile
        return Estimate(model.fixed_cost_s + disk_s, disk_mib, 0, 0.0, True, False)
    secs, sent, rounds, downtime, converges = _precopy(
        memory_mib, dirty_rate_mibs, bandwidth_mibs, max_downtime_ms, False, model)
    throttled = False
    if not converges and auto_converge:
        secs, sent, rounds, downtime, _ = _precopy(
            memory_mib, dirty_rate_mibs, bandwidth_mibs, max_downtime_ms, True, model)
        throttled = True
    return Estimate(model.fixed_cost_s + disk_s + secs, disk_mib + sent, rounds, downtime, converges, throttled)


def closed_form_duration_s(memory_mib: float, dirty_rate_mibs: float, bandwidth_mibs: float,
                           max_downtime_ms: float, model: DurationModel = DEFAULT_MODEL) -> float:
    """NOTES §2's closed form for a converging migration, kept to cross-check `estimate`."""
    lam = dirty_rate_mibs / bandwidth_mibs
    threshold = bandwidth_mibs * max_downtime_ms / 1000.0
    if memory_mib <= threshold or lam == 0:
        n = 0 if memory_mib <= threshold else 1
    elif lam >= 1:
        n = model.max_rounds
    else:
        n = math.ceil(math.log(threshold / memory_mib) / math.log(lam))
    n = min(n, model.max_rounds)
    total = memory_mib * (n + 1) if lam == 1 else memory_mib * (1 - lam ** (n + 1)) / (1 - lam)
    return model.fixed_cost_s + total / bandwidth_mibs


def floor_estimate(memory_mib: float, dirty_rate_mibs: float, bandwidth_mibs: float, max_downtime_ms: float,
                   disk_mib: float = 0.0, live: bool = True, auto_converge: bool = False,
                   model: DurationModel = DEFAULT_MODEL) -> Estimate:
    """The fewest MiB and the shortest time ANY bandwidth ≤ `bandwidth_mibs` can give (for lower bounds).

    Why this is a floor: every pre-copy round's remainder min(M, λ·previous) and the stop test
    (remainder ≤ R·T_d) improve as R grows, so bytes and seconds never increase with R, with or
    without throttling; and at one R throttled rounds are never bigger than unthrottled ones. So
    when auto-converge is allowed the throttled run at the highest bandwidth bounds both the
    throttled and the unthrottled run at every lower bandwidth, although `estimate` itself is not
    monotone (it switches to throttling only when the plain run does not converge).
    """
    if not auto_converge or not live:
        return estimate(memory_mib, dirty_rate_mibs, bandwidth_mibs, max_downtime_ms, disk_mib, live,
                        auto_converge, model)
    if not bandwidth_mibs > 0 or not math.isfinite(bandwidth_mibs):
        raise ValueError(f"bandwidth_mibs must be positive and finite, got {bandwidth_mibs}")
    secs, sent, rounds, downtime, converges = _precopy(
        memory_mib, dirty_rate_mibs, bandwidth_mibs, max_downtime_ms, True, model)
    return Estimate(model.fixed_cost_s + disk_mib / bandwidth_mibs + secs, disk_mib + sent, rounds, downtime,
                    converges, True)
