"""How long a migration takes: the pre-copy model of shared/reference/NOTES.md §2.

Memory M (MiB), dirty rate D (MiB/s), bandwidth R (MiB/s), max downtime T_d:
round 0 sends all of M; while it is on the wire the guest dirties D·t, which round 1 sends,
and so on (round i sends M·λ^i with λ = D/R) until what is left fits in the downtime
(remaining ≤ R·T_d), when the guest is paused and the rest is copied (stop-and-copy).
Copied (non-shared) disks go first, at the same bandwidth (QEMU drive-mirror), then memory.
Every migration also pays a fixed cost (connection, destination QEMU start, switchover).

The constants are fields of `DurationModel` so they can be calibrated from finished runs
(`evac calibrate`, planner/calibrate.py) and read back from a model file (`load_model`, format in
docs/calibrate.md); nothing else in evac hard-codes them. Two of them scale what the inventory and
the plan say into what the wire sees: `bandwidth_efficiency` (the share of a migration's cap it
really achieves) and `dirty_rate_factor` (how the inventory's dirty rate inflates or deflates into
the pages QEMU re-sends).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.documents import read_document
from planner.errors import InputError, Problem


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
    # Achieved rate / the bandwidth cap libvirt is given. At most 1: a plan reserves the cap on every NIC
    # and link, and the lower bounds divide bytes by capacity, which stays a bound only if no migration
    # moves faster than the bandwidth it holds.
    bandwidth_efficiency: float = 1.0
    # The pages QEMU re-sends per second / the inventory's dirty_rate_mibs (a collector's estimate or an
    # operator's guess); 1 trusts the inventory.
    dirty_rate_factor: float = 1.0
    # Extra fixed cost of a migration that copies disks (destination volumes created, the drive-mirror
    # set up before the first byte): measured on the lab at ~2 s; 0 until calibrated.
    copy_setup_s: float = 0.0

    def effective(self, bandwidth_mibs: float, dirty_rate_mibs: float) -> tuple[float, float]:
        """(bandwidth, dirty rate) as the wire sees them: the plan's cap and the inventory's rate, scaled."""
        return bandwidth_mibs * self.bandwidth_efficiency, dirty_rate_mibs * self.dirty_rate_factor


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
    bandwidth_mibs, dirty_rate_mibs = model.effective(bandwidth_mibs, dirty_rate_mibs)
    disk_s = disk_mib / bandwidth_mibs + (model.copy_setup_s if disk_mib > 0 else 0.0)
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
    bandwidth_mibs, dirty_rate_mibs = model.effective(bandwidth_mibs, dirty_rate_mibs)
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
    bandwidth_mibs, dirty_rate_mibs = model.effective(bandwidth_mibs, dirty_rate_mibs)
    secs, sent, rounds, downtime, converges = _precopy(
        memory_mib, dirty_rate_mibs, bandwidth_mibs, max_downtime_ms, True, model)
    disk_s = disk_mib / bandwidth_mibs + (model.copy_setup_s if disk_mib > 0 else 0.0)
    return Estimate(model.fixed_cost_s + disk_s + secs, disk_mib + sent, rounds, downtime, converges, True)


def remaining_s(remaining_mib: float, dirty_rate_mibs: float, rate_mibs: float, max_downtime_ms: float,
                model: DurationModel = DEFAULT_MODEL) -> float:
    """Seconds left for a running migration with `remaining_mib` still to send at a MEASURED rate and dirty
    rate (libvirt's job statistics: already what the wire sees, so not scaled again), pre-copy rounds of
    the remainder included; for the live ETA of `evac run`."""
    if not rate_mibs > 0 or not math.isfinite(rate_mibs):
        raise ValueError(f"rate_mibs must be positive and finite, got {rate_mibs}")
    secs, _, _, _, _ = _precopy(max(0.0, remaining_mib), max(0.0, dirty_rate_mibs), rate_mibs, max_downtime_ms,
                                False, model)
    return secs


# ---------------------------------------------------------------- model files (docs/calibrate.md)

MODEL_FILE_VERSION = 1
_FIELDS = {f.name: f.type for f in dataclasses.fields(DurationModel)}
# (lowest, highest, integer) for every constant a model file may set; out of range is a problem named by key.
_RANGES: dict[str, tuple[float, float, bool]] = {
    "fixed_cost_s": (0.0, 3600.0, False),
    "max_rounds": (1, 1000, True),
    "resume_cost_ms": (0.0, 60_000.0, False),
    "throttle_initial": (0.0, 0.99, False),
    "throttle_increment": (0.0, 0.99, False),
    "throttle_max": (0.0, 0.99, False),
    "throttle_after_rounds": (0, 1000, True),
    "bandwidth_efficiency": (0.01, 1.0, False),
    "dirty_rate_factor": (0.0, 100.0, False),
    "copy_setup_s": (0.0, 3600.0, False),
}


class ModelFileError(InputError):
    """A duration model file (or a plan's `model` object) that evac cannot use (exit 2)."""


def model_constants(model: DurationModel) -> dict[str, float | int]:
    """Every constant of `model` by name (the `constants` object of a model file, a plan's `model`)."""
    return {name: getattr(model, name) for name in _FIELDS}


def model_from_constants(raw: Any, where: str, problems: list[Problem]) -> DurationModel:
    """A model from a `constants` object; constants left out keep their defaults; every bad one is named."""
    if not isinstance(raw, dict):
        problems.append(Problem(where, "must be an object of constant name to number"))
        return DEFAULT_MODEL
    values: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key not in _RANGES:
            problems.append(Problem(at, f"unknown constant (known: {', '.join(sorted(_RANGES))})"))
            continue
        low, high, integer = _RANGES[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (integer and not isinstance(value, int)) or not math.isfinite(float(value)):
            kind = "an integer" if integer else "a finite number"
            problems.append(Problem(at, f"must be {kind}, got {value!r}"[:200]))
        elif not low <= value <= high:
            problems.append(Problem(at, f"must be between {low:g} and {high:g}, got {value!r}"))
        else:
            values[key] = int(value) if integer else float(value)
    return dataclasses.replace(DEFAULT_MODEL, **values)


def model_document(model: DurationModel, fit: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model file's content: version, every constant, and (from `evac calibrate`) how it was fitted."""
    return {"version": MODEL_FILE_VERSION, "constants": model_constants(model), **({"fit": fit} if fit else {})}


def model_from_document(doc: Any, source: str) -> DurationModel:
    """Reads a model file's data; raises `ModelFileError` naming every problem."""
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise ModelFileError(source, [Problem("", "a duration model file must be a JSON object")])
    version = doc.get("version")
    if "version" not in doc:
        problems.append(Problem("version", "is required"))
    elif version != MODEL_FILE_VERSION or isinstance(version, bool):
        problems.append(Problem("version", f"unsupported model file version {version!r}; this evac reads version "
                                           f"{MODEL_FILE_VERSION}"[:200]))
    if "constants" not in doc:
        problems.append(Problem("constants", "is required"))
        model = DEFAULT_MODEL
    else:
        model = model_from_constants(doc["constants"], "constants", problems)
    if "fit" in doc and not isinstance(doc["fit"], dict):
        problems.append(Problem("fit", "must be an object"))
    for key in sorted(set(doc) - {"version", "constants", "fit"}):
        problems.append(Problem(str(key), "unknown key (known: version, constants, fit)"))
    if problems:
        raise ModelFileError(source, problems)
    return model


def load_model(path: str | Path) -> DurationModel:
    """Reads a model file written by `evac calibrate` (or by hand) through the one document reader."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ModelFileError(f"model {p}", [Problem("", f"cannot read: {e.strerror or e}")]) from None
    doc, _ = read_document(raw, f"model {p}", error=ModelFileError, duplicates="error")
    return model_from_document(doc, f"model {p}")
