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
bandwidth ≤ hi (proof in its docstring): sent_v(b) ≥ B_v(hi) =: B for b ≤ hi. So on the cell
g_v(b) ≥ h(b) = α_v·(f·b + B) + β_v·(f + B/b) (α, β, f, B ≥ 0). h is convex on b > 0 (a line plus
β·B/b), so its minimum over [lo, hi] is at b* = √(β·B / (α·f)) clipped to [lo, hi] (b* = hi when
α·f = 0: h only falls; b* = lo when β·B = 0: h only rises, and then the β·B/b term is 0 even at
lo = 0). The smallest h(b*) over the cells is ≤ min_b g_v(b). (Taking the area at lo and the
duration at hi separately, each at its own favourable end, is the weaker minorant this replaces.)
Every λ gives a valid bound; the weights are searched by exponentiated (super)gradient ascent and
the best value seen is kept, so the search can only make it tighter, never wrong. It generalises
the NIC-and-slots term (one area and one slot limit, bytes at bmax) with every limit at once, the
per-migration bandwidth ceiling, and the dirty-page inflation that low bandwidth causes (B_v grows
as hi shrinks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.duration import Estimate

RATIO = 0.93  # grid: bmax · RATIO^i (finer than 0.85: B(hi) nearer sent(b), +0.1 % on the bench fleets)
CELLS = 64  # bmax · 0.93^63 ≈ 1 % of bmax: the last cell [0, that] costs little
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


def cell_floors(floors: Sequence[Estimate], tops: Sequence[float]) -> tuple[list[float], list[float], list[float]]:
    """(floor bytes B at hi, lo, hi) per cell; `floors[i]` = floor estimate at `tops[i]`."""
    bytes_at = [est.transferred_mib for est in floors]
    lows = [tops[i + 1] if i + 1 < len(tops) else 0.0 for i in range(len(tops))]
    return bytes_at, lows, list(tops)


def dual_bound(floor_mib: np.ndarray, lows: np.ndarray, tops: np.ndarray, fixed_s: float,
               limits: Sequence[Limit], iterations: int = ITERATIONS) -> float:
    """max over the weights searched of Σ_v min_cell h_v(b*) (module docstring); 0 when nothing binds.

    `floor_mib`, `lows`, `tops`: one row per migration, one column per cell (`cell_floors`).
    """
    limits = [lim for lim in limits if lim.capacity > 0 and len(lim.members) > 0]
    n_vm = floor_mib.shape[0]
    if not limits or n_vm == 0:
        return 0.0
    f = fixed_s
    rows = np.concatenate([np.full(len(lim.members), j) for j, lim in enumerate(limits)])
    cols = np.concatenate([np.asarray(lim.members, dtype=np.int64) for lim in limits])
    is_area = np.array([lim.area for lim in limits])
    inv_cap = np.array([1.0 / lim.capacity for lim in limits])
    nz_area = is_area[rows]
    v_idx = np.arange(n_vm)
    # loop invariants of `evaluate`, hoisted (300 calls of a few small arrays: numpy's per-call cost dominates)
    rows_area, rows_slot = rows[nz_area], rows[~nz_area]
    cols_area, cols_slot = cols[nz_area], cols[~nz_area]
    inv_cap_area, inv_cap_slot, inv_cap_rows = inv_cap[rows_area], inv_cap[rows_slot], inv_cap[rows]

    def evaluate(lam: np.ndarray) -> tuple[float, np.ndarray]:
        alpha = np.bincount(cols_area, weights=lam[rows_area] * inv_cap_area, minlength=n_vm)[:, None]
        beta = np.bincount(cols_slot, weights=lam[rows_slot] * inv_cap_slot, minlength=n_vm)[:, None]
        num, den = beta * floor_mib, alpha * f  # den: one column, broadcast over the cells
        with np.errstate(divide="ignore", invalid="ignore"):
            free = np.where(den > 0, np.sqrt(np.where(den > 0, num / den, 0.0)), np.inf)
        b = np.minimum(np.maximum(free, lows), tops)  # = np.clip(free, lows, tops) (lows <= tops), cheaper
        # β·B/b, 0 whenever β·B is (b may then be 0)
        per_b = np.divide(num, b, out=np.zeros_like(num), where=num > 0)
        g = alpha * (f * b + floor_mib) + beta * f + per_b
        best = g.argmin(axis=1)
        value = float(g[v_idx, best].sum())
        # supergradient: each limit's X_j at the chosen cells and bandwidths
        b_at = b[v_idx, best]
        bytes_at = floor_mib[v_idx, best]
        a_at = f * b_at + bytes_at
        d_at = f + np.divide(bytes_at, b_at, out=np.zeros_like(bytes_at), where=b_at > 0)
        per_nz = np.where(nz_area, a_at[cols], d_at[cols]) * inv_cap_rows
        return value, np.bincount(rows, weights=per_nz, minlength=len(limits))

    # start from the limits alone: each X_j at its own best cells (area at lo, duration at hi),
    # weights favouring the largest
    areas = f * lows + floor_mib
    durations = f + floor_mib / tops
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
