"""Fits the duration model (planner.duration) to migrations that really ran (`evac calibrate`).

Each `Sample` is one finished migration as its run journal recorded it (executor.runner's
`migration_measured` event, docs/calibrate.md): what the plan knew (memory, copied disk, the
inventory's dirty rate, the bandwidth cap, the downtime limit) and what happened (wall time from
dispatch to verified, bytes sent, downtime).

What is fitted, and how:

* `bandwidth_efficiency` e and `dirty_rate_factor` f by a grid search refined twice around the best
  cell (the model is a loop of pre-copy rounds, piecewise in both, so no gradient to follow): the
  objective is the sum of squared RELATIVE errors of the durations, plus half that weight on the
  bytes sent (bytes depend on f/e only, so they separate the two).
* `fixed_cost_s` and `copy_setup_s` in closed form for each (e, f): weighted least squares (weights
  1/mᵢ², i.e. relative errors) of mᵢ − gᵢ ≈ fixed + copy_setup·[the migration copies disks] (gᵢ: the
  model's duration without either), both at least 0.
* `resume_cost_ms` (the fixed part of downtime): the median of measured downtime minus the model's
  stop-and-copy time, at least 0, over the migrations that dirty no memory when there are some (their
  stop-and-copy is next to nothing, so the fitted rates' errors do not leak into it).

A constant the samples cannot tell is kept from the base model and named in `kept`: the dirty-rate
factor when no migration dirtied memory, the copy setup when none copied a disk, efficiency and
factor with fewer than 3 migrations (a fixed cost and one slope are all two points fix), the resume
cost without downtime figures.
Relative errors weight a 3 s and a 60 s migration alike: a plan's makespan is made of both.

Outliers: a migration the fitted model misses by more than `OUTLIER_ERROR` (and by more than
`OUTLIER_MAD` times the median error) is left out and the rest fitted again, once. Such a migration is
not a duration-model fact but an input the model could not know: on the lab, one guest dirtied 9.8 MiB/s
where the inventory said 4 and took 132 rounds (41.5 s for 64 MiB); fitted with the others it halved the
fixed cost and tripled the RMS error of every other migration. It stays in the residuals, and `left_out`
names it with its error so the operator can look.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from planner.duration import DEFAULT_MODEL, DurationModel, estimate

EFFICIENCY_RANGE = (0.2, 1.0)  # 1.0 at most: see DurationModel.bandwidth_efficiency
FACTOR_RANGE = (0.0, 4.0)
BYTES_WEIGHT = 0.5
MIN_SAMPLES_FOR_SLOPES = 3
OUTLIER_ERROR = 0.5  # |relative error| above which a migration may be left out ...
OUTLIER_MAD = 4.0  # ... when it is also this many times the median |relative error|


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished migration, as recorded by its run's journal."""

    source: str  # where it came from (the journal's file name), for the residuals table
    vm: str
    memory_mib: float
    disk_mib: float
    dirty_rate_mibs: float  # the inventory's, as the plan used it
    bandwidth_mibs: float  # the cap the plan gave libvirt
    max_downtime_ms: float
    live: bool
    auto_converge: bool
    duration_s: float  # measured: dispatch to verified on the destination
    transferred_mib: float | None = None
    downtime_ms: float | None = None
    planned_s: float | None = None  # the plan's own prediction (end_s − start_s), for "before"
    hop: int = 0

    def predict(self, model: DurationModel) -> tuple[float, float, float]:
        """(duration s, MiB sent, downtime ms) the model predicts for this migration."""
        e = estimate(self.memory_mib, self.dirty_rate_mibs, self.bandwidth_mibs, self.max_downtime_ms,
                     disk_mib=self.disk_mib, live=self.live, auto_converge=self.auto_converge, model=model)
        return e.duration_s, e.transferred_mib, e.downtime_ms


@dataclass(frozen=True, slots=True)
class Residual:
    sample: Sample
    before_s: float  # the base model's prediction (or the plan's own, when recorded)
    after_s: float  # the fitted model's
    left_out: bool = False  # an outlier, not fitted (Fit.left_out says why)

    @property
    def before_error(self) -> float:
        return (self.before_s - self.sample.duration_s) / self.sample.duration_s

    @property
    def after_error(self) -> float:
        return (self.after_s - self.sample.duration_s) / self.sample.duration_s


@dataclass(frozen=True, slots=True)
class Fit:
    model: DurationModel
    base: DurationModel
    fitted: tuple[str, ...]  # constants fitted from the samples
    kept: tuple[tuple[str, str], ...]  # (constant, why) kept from the base model
    residuals: tuple[Residual, ...]  # every sample, the left-out ones included
    left_out: tuple[tuple[str, str], ...] = ()  # (source:vm, why) not fitted: outliers (module docstring)

    def rms(self, after: bool = True) -> float:
        """Over the fitted migrations (outliers left out are shown, not counted)."""
        errs = [r.after_error if after else r.before_error for r in self.residuals if not r.left_out]
        return math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else 0.0

    def worst(self, after: bool = True) -> float:
        return max((abs(r.after_error if after else r.before_error) for r in self.residuals if not r.left_out),
                   default=0.0)

    def summary(self) -> dict[str, object]:
        """The `fit` object of a model file: enough to judge it later without the journals."""
        return {"migrations": len(self.residuals), "fitted": list(self.fitted),
                "kept": [{"constant": c, "why": w} for c, w in self.kept],
                "left_out": [{"migration": m, "why": w} for m, w in self.left_out],
                "sources": sorted({r.sample.source for r in self.residuals}),
                "rms_relative_error_before": round(self.rms(False), 4), "rms_relative_error": round(self.rms(), 4),
                "max_relative_error_before": round(self.worst(False), 4), "max_relative_error": round(self.worst(), 4)}


def _durations_without_fixed(samples: Sequence[Sample], base: DurationModel, eff: float, factor: float
                             ) -> tuple[np.ndarray, np.ndarray]:
    model = dataclasses.replace(base, fixed_cost_s=0.0, copy_setup_s=0.0, bandwidth_efficiency=eff,
                                dirty_rate_factor=factor)
    pairs = [s.predict(model)[:2] for s in samples]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _constants(residual: np.ndarray, w: np.ndarray, copies: np.ndarray, fit_copy: bool, copy_s: float
               ) -> tuple[float, float]:
    """Weighted least squares of residual ≈ fixed + copy_setup·copies, both ≥ 0 (copy_setup fixed at
    `copy_s` unless `fit_copy`)."""
    if not fit_copy:
        return max(0.0, float(np.sum(w * (residual - copy_s * copies)) / np.sum(w))), copy_s
    sw, swk, swr, swkr = (float(np.sum(x)) for x in (w, w * copies, w * residual, w * copies * residual))
    det = sw * swk - swk * swk
    fixed, copy = ((swr * swk - swk * swkr) / det, (sw * swkr - swk * swr) / det) if det > 1e-12 else (swr / sw, 0.0)
    if copy < 0:
        return max(0.0, swr / sw), 0.0
    if fixed < 0:
        return 0.0, max(0.0, swkr / swk)
    return fixed, copy


def _score(samples: Sequence[Sample], measured: np.ndarray, sent: np.ndarray, has_sent: np.ndarray,
           copies: np.ndarray, base: DurationModel, eff: float, factor: float) -> tuple[float, float, float]:
    """(objective, best fixed cost, best copy setup) at (eff, factor)."""
    g, b = _durations_without_fixed(samples, base, eff, factor)
    w = 1.0 / measured ** 2
    fixed, copy = _constants(measured - g, w, copies, bool(copies.any()), base.copy_setup_s)
    obj = float(np.sum(((fixed + copy * copies + g - measured) / measured) ** 2))
    if has_sent.any():
        obj += BYTES_WEIGHT * float(np.sum(((b[has_sent] - sent[has_sent]) / sent[has_sent]) ** 2))
    return obj, fixed, copy


def _search(samples: Sequence[Sample], base: DurationModel, effs: Iterable[float], factors: Iterable[float]
            ) -> tuple[float, float, float, float, float]:
    measured = np.array([s.duration_s for s in samples])
    sent = np.array([s.transferred_mib or 0.0 for s in samples])
    has_sent = np.array([(s.transferred_mib or 0.0) > 0 and s.live for s in samples])
    copies = np.array([1.0 if s.disk_mib > 0 else 0.0 for s in samples])
    best = (math.inf, base.bandwidth_efficiency, base.dirty_rate_factor, base.fixed_cost_s, base.copy_setup_s)
    factors = list(factors)
    for eff in effs:
        for factor in factors:
            obj, fixed, copy = _score(samples, measured, sent, has_sent, copies, base, eff, factor)
            if obj < best[0] - 1e-12:
                best = (obj, eff, factor, fixed, copy)
    return best


def _grid(lo: float, hi: float, n: int, around: float | None = None, step: float = 0.0) -> list[float]:
    if around is not None:
        lo, hi = max(lo, around - step), min(hi, around + step)
    return [float(x) for x in np.linspace(lo, hi, n)] if hi > lo else [lo]


def fit(samples: Sequence[Sample], base: DurationModel = DEFAULT_MODEL) -> Fit:
    """The model closest to `samples`, outliers left out (see the module docstring); raises ValueError
    without samples."""
    good = [s for s in samples if s.duration_s > 0 and s.bandwidth_mibs > 0]
    if not good:
        raise ValueError("no finished migration to fit the duration model to")
    first = _fit(good, base)
    errors = [abs(r.after_error) for r in first.residuals]
    cut = max(OUTLIER_ERROR, OUTLIER_MAD * statistics.median(errors))
    out = {id(r.sample): r.after_error for r in first.residuals if abs(r.after_error) > cut}
    if not out or len(good) - len(out) < MIN_SAMPLES_FOR_SLOPES:
        return first
    second = _fit([s for s in good if id(s) not in out], base)
    residuals = tuple(Residual(s, s.predict(base)[0], s.predict(second.model)[0], left_out=id(s) in out)
                      for s in good)
    left_out = tuple((f"{r.sample.source}:{r.sample.vm}",
                      f"the model fitted to the others misses it by {r.after_error:+.0%}")
                     for r in residuals if r.left_out)
    return dataclasses.replace(second, residuals=residuals, left_out=left_out)


def _fit(good: Sequence[Sample], base: DurationModel) -> Fit:
    kept: list[tuple[str, str]] = []
    slopes = len(good) >= MIN_SAMPLES_FOR_SLOPES
    dirty = slopes and any(s.dirty_rate_mibs > 0 and s.live for s in good)
    if not slopes:
        kept += [(c, f"fewer than {MIN_SAMPLES_FOR_SLOPES} migrations") for c in
                 ("bandwidth_efficiency", "dirty_rate_factor")]
    elif not dirty:
        kept.append(("dirty_rate_factor", "no migration dirtied memory"))
    effs = _grid(*EFFICIENCY_RANGE, 33) if slopes else [base.bandwidth_efficiency]
    factors = _grid(*FACTOR_RANGE, 33) if dirty else [base.dirty_rate_factor]
    copying = any(s.disk_mib > 0 for s in good)
    if not copying:
        kept.append(("copy_setup_s", "no migration copied a disk"))
    _, eff, factor, fixed, copy = _search(good, base, effs, factors)
    for step_e, step_f in ((0.025, 0.125), (0.004, 0.02)):  # two refinements around the best cell
        effs = _grid(*EFFICIENCY_RANGE, 11, eff, step_e) if slopes else [eff]
        factors = _grid(*FACTOR_RANGE, 11, factor, step_f) if dirty else [factor]
        _, eff, factor, fixed, copy = _search(good, base, effs, factors)
    model = dataclasses.replace(base, fixed_cost_s=round(fixed, 4), copy_setup_s=round(copy, 4),
                                bandwidth_efficiency=round(eff, 4), dirty_rate_factor=round(factor, 4))
    fitted = ["fixed_cost_s", *(["copy_setup_s"] if copying else []),
              *(["bandwidth_efficiency"] if slopes else []), *(["dirty_rate_factor"] if dirty else [])]
    timed = [s for s in good if s.live and s.downtime_ms is not None and s.downtime_ms > 0]
    # Migrations that dirty nothing switch over with (almost) nothing left to copy: their downtime is the
    # fixed part itself, free of the fitted rates' errors. The others only when there are none such.
    timed = [s for s in timed if s.dirty_rate_mibs == 0] or timed
    extra = [(s.downtime_ms or 0.0) - (s.predict(model)[2] - model.resume_cost_ms) for s in timed]
    if extra:
        model = dataclasses.replace(model, resume_cost_ms=round(max(0.0, statistics.median(extra)), 2))
        fitted.append("resume_cost_ms")
    else:
        kept.append(("resume_cost_ms", "no downtime measured"))
    residuals = tuple(Residual(s, s.predict(base)[0], s.predict(model)[0])
                      for s in good)
    return Fit(model, base, tuple(fitted), tuple(kept), residuals)
