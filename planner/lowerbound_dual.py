"""The Lagrangian term of the lower bound: every NIC, link and slot limit priced together, bandwidth free.

Why it is a bound. Take any valid plan with makespan T. Its migration v runs at one bandwidth
b_v ≤ bmax_v (the best capped path it can ever get) for its whole [start, end), which lasts
d_v(b_v) = f + sent_v(b_v)/b_v (the duration model: fixed cost f, then every byte at b_v), so on
every resource of its path it occupies the area a_v(b_v) = b_v·d_v(b_v) = f·b_v + sent_v(b_v).
The plan meets two kinds of limit, each a linear inequality over a set S_j of migrations it must
contain (the same sets as the other terms, see planner.lowerbound):

* area: a resource every plan sends S_j across, capped capacity C_j: Σ_{v∈S_j} a_v(b_v) ≤ C_j·T
  (and all receiving NICs together for every moving VM);
* slots: at most k_j of S_j in flight at once: Σ_{v∈S_j} d_v(b_v) ≤ k_j·T (a source's outbound
  limit, max_concurrent, the inbound limit over all receivers, the migrations crossing one resource
  — `_Crossing.slots` — and each migration alone: d_v ≤ T).

Dividing inequality j by its capacity gives T ≥ X_j(b); so for any weights λ_j ≥ 0 with Σλ_j = 1,
T ≥ Σ_j λ_j X_j(b) = Σ_v g_v(b_v) with g_v(b) = α_v·a_v(b) + β_v·d_v(b), α_v = Σ_{area j∋v} λ_j/C_j,
β_v = Σ_{slot j∋v} λ_j/k_j ≥ 0. The plan's b_v is unknown, so T ≥ Σ_v min_{0<b≤bmax_v} g_v(b).

The minimum over b is bounded below on a grid: cut (0, bmax] into cells [lo, hi] (hi = bmax·ρ^i,
lo = the next one, and a last cell [0, hi]). `duration.floor_estimate` at hi sends no more than any
bandwidth ≤ hi (proof in its docstring): sent_v(b) ≥ B_v(hi) for b ≤ hi. So on the cell
a_v(b) ≥ f·lo + B_v(hi) and d_v(b) ≥ f + B_v(hi)/hi, both minorants independent of b, and
g_v(b) ≥ α_v·(f·lo + B_v(hi)) + β_v·(f + B_v(hi)/hi). The smallest of these over the cells is
≤ min_b g_v(b). Every λ gives a valid bound; the weights are searched by exponentiated
(super)gradient ascent and the best value seen is kept, so the search can only make it tighter,
never wrong. It generalises the NIC-and-slots term (one area and one slot limit, bytes at bmax)
with every limit at once, the per-migration bandwidth ceiling, and the dirty-page inflation that
low bandwidth causes (B_v grows as hi shrinks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.duration import Estimate

RATIO = 0.85  # grid: bmax · RATIO^i
CELLS = 32  # bmax · 0.85^31 ≈ 0.6 % of bmax: the last cell [0, that] costs little
ITERATIONS = 300


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: Σ over `members` (indices of migrations) of area (or duration) ≤ capacity × T."""

    area: bool  # True: MiB·s on a resource at capped capacity MiB/s; False: seconds in `capacity` slots
    capacity: float
    members: Sequence[int]


def cell_tops(bmax_mibs: float) -> list[float]:
    """The upper ends of the grid cells for one migration, highest first."""
    return [bmax_mibs * RATIO ** i for i in range(CELLS)]


def cell_minorants(floors: Sequence[Estimate], tops: Sequence[float],
                   fixed_s: float) -> tuple[list[float], list[float]]:
    """(area, duration) minorants per cell; `floors[i]` = floor estimate at `tops[i]`."""
    areas, durations = [], []
    for i, (est, hi) in enumerate(zip(floors, tops, strict=True)):
        lo = tops[i + 1] if i + 1 < len(tops) else 0.0
        b = est.transferred_mib
        areas.append(fixed_s * lo + b)
        durations.append(fixed_s + b / hi)
    return areas, durations


def dual_bound(areas: np.ndarray, durations: np.ndarray, limits: Sequence[Limit],
               iterations: int = ITERATIONS) -> float:
    """max over the weights searched of Σ_v min_cell g_v (module docstring); 0 when nothing binds.

    `areas`, `durations`: one row per migration, one column per cell.
    """
    limits = [lim for lim in limits if lim.capacity > 0 and len(lim.members) > 0]
    n_vm = areas.shape[0]
    if not limits or n_vm == 0:
        return 0.0
    rows = np.concatenate([np.full(len(lim.members), j) for j, lim in enumerate(limits)])
    cols = np.concatenate([np.asarray(lim.members, dtype=np.int64) for lim in limits])
    is_area = np.array([lim.area for lim in limits])
    inv_cap = np.array([1.0 / lim.capacity for lim in limits])
    nz_area = is_area[rows]
    v_idx = np.arange(n_vm)

    def evaluate(lam: np.ndarray) -> tuple[float, np.ndarray]:
        w = lam[rows] * inv_cap[rows]
        alpha = np.bincount(cols[nz_area], weights=w[nz_area], minlength=n_vm)
        beta = np.bincount(cols[~nz_area], weights=w[~nz_area], minlength=n_vm)
        g = alpha[:, None] * areas + beta[:, None] * durations
        best = g.argmin(axis=1)
        value = float(g[v_idx, best].sum())
        # supergradient: each limit's X_j at the chosen cells
        a_at, d_at = areas[v_idx, best], durations[v_idx, best]
        per_nz = np.where(nz_area, a_at[cols], d_at[cols]) * inv_cap[rows]
        return value, np.bincount(rows, weights=per_nz, minlength=len(limits))

    # start from the limits alone: each X_j at its own best cells, weights favouring the largest
    alone = np.empty(len(limits))
    for j, lim in enumerate(limits):
        m = np.asarray(lim.members, dtype=np.int64)
        alone[j] = float((areas[m] if lim.area else durations[m]).min(axis=1).sum()) / lim.capacity
    top = float(alone.max())
    if top <= 0:
        return 0.0
    lam = np.exp(20.0 * (alone / top - 1.0))
    lam /= lam.sum()
    best_value = top
    for it in range(iterations):
        value, grad = evaluate(lam)
        best_value = max(best_value, value)
        step = 2.0 / np.sqrt(it + 1.0)
        lam = lam * np.exp(np.clip(step * (grad / max(value, 1e-12) - 1.0), -50, 50))
        lam /= lam.sum()
    return best_value * (1 - 1e-9)  # shaved: float rounding never puts the bound above a plan that meets it
