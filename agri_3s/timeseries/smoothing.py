"""Gap-aware Whittaker smoothing of parcel NDVI series, batched over parcels.

The Whittaker smoother (Eilers 2003, "A perfect smoother", Anal. Chem. 75:3631) finds the curve
``z`` that minimises ``Σ w_i (y_i − z_i)² + λ Σ (D z)_i²`` where ``D`` takes second *divided*
differences over the acquisition days, so the roughness penalty — and with it ``λ`` — means the
same whatever the revisit interval or the length of a cloudy gap. The solution solves
``(W + λ DᵀD) z = W y``. All parcels share the dates, hence one pentadiagonal ``DᵀD``; only the
weights differ, so the n systems are solved together by a banded LDLᵀ recursion over the T
dates, each date one compiled pass across the parcels (:mod:`agri_3s.timeseries.banded`).

Zero-weight dates (cloudy, no data) are filled by the smoother itself: between looks the curve
is the penalised (cubic-spline-like) interpolation. Before the first and after the last look
the curve is held at its value there: nothing was seen, and ``phenology`` ignores those dates.
"""

from __future__ import annotations

import numpy as np

from agri_3s.blocks import for_blocks
from agri_3s.errors import InputError
from agri_3s.timeseries import banded  # numba: imported with the smoother only (~0.3 s)

#: λ in days⁴ (second divided differences over days), chosen by cross-validation on real series
#: (held-out clear looks; robust fit): on Kenya 2019 field means (5-day revisit) the 5-fold error
#: is flat within 1 % over 1e3 … 1e4 and the 30-day-gap error is lowest at 1e4; 1e5 is 10 %
#: worse. Slovenia 2015–17 L1C pixels (4–69-day spacing, noisy cloud mask, mostly forest) favour
#: 1e5 … 1e6 (5 % lower 5-fold, 19 % lower gap error), but there a 0.6-NDVI emergence within
#: 30 days is blurred: its half-way day is off by > 4.6 days for 10 % of synthetic seasons at
#: 1e5 (2.1 days at 1e4).
DEFAULT_LAMBDA = 1.0e4

#: Parcels with fewer weighted looks than this get NaN (three looks are the least that can show
#: a curvature; with two the fit is a straight line).
MIN_LOOKS = 3

#: Robust (upper-envelope) reweighting, chosen over TIMESAT's fixed down-weighting and Chen et
#: al.'s (2004) replace-by-fit because it is smooth in the residual and needs no tuning per
#: sensor: residual cloud, haze and shadow only ever lower NDVI, so a look whose leave-one-out
#: residual ``r`` is below the curve keeps the share ``(1 − (r / (ROBUST_CUTOFF · s))²)²`` of its
#: weight (Tukey's bisquare, one-sided), ROBUST_MIN_SHARE past the cutoff; looks above the curve
#: keep theirs. ``s`` is the parcel's robust spread of those residuals (first fit), floored at
#: ``NOISE_FLOOR``.
ROBUST_CUTOFF = 4.0
#: Smallest residual spread assumed (NDVI): Sentinel-2 field means scatter ~0.01–0.02 on clear
#: days, so a near-perfect first fit must not make every tiny negative residual an outlier.
NOISE_FLOOR = 0.02
#: Share of its weight a look keeps however far below the curve it lies: keeps the system
#: positive definite when a short series has one high look and the rest far below.
ROBUST_MIN_SHARE = 0.01
#: Refits after the first fit. Measured on flat series with 8 % cloud dips: the share whose
#: curve spans > 0.15 NDVI (an invented cycle) is 55 % plain, 2.9 % after one refit, 1.4 % after
#: two, 1.2 % after three; each refit cost ~2 s per million parcels × 70 dates with the numpy
#: recursion (less compiled).
ROBUST_ITERATIONS = 2

#: Parcels solved together; bounds memory at ~(12 × T × 8) bytes per parcel of the chunk and
#: keeps the recursion's rows in cache (10⁶ parcels × 70 dates on 2 cores, compiled recursion:
#: 2.57 s at 1024, 2.6–3.0 s at 2048, 2.75 s at 4096, 3.17 s at 512).
CHUNK_PARCELS = 1024


def difference_penalty(days: np.ndarray) -> np.ndarray:
    """The second-divided-difference matrix ``D`` ((T − 2) × T) over unevenly spaced days.

    Row i is the divided difference ``z[t_i, t_i+1, t_i+2]`` (Eilers' ``ddmat(x, 2)``): for an
    even spacing h it equals ``Δ²z / (2 h²)``, so a λ here matches ``λ / (4 h⁴)`` of the classic
    unit-spacing smoother (h = 5 days: λ = 1e4 ↔ 4).

    >>> difference_penalty(np.array([0.0, 1.0, 2.0]))
    array([[ 0.5, -1. ,  0.5]])
    """
    days = np.asarray(days, dtype=np.float64)
    t = days.size
    first = np.zeros((t - 1, t))
    idx = np.arange(t - 1)
    first[idx, idx], first[idx, idx + 1] = -1.0, 1.0
    first /= np.diff(days)[:, None]
    second = (first[1:] - first[:-1]) / (days[2:] - days[:-2])[:, None]
    return second


def _penalty_bands(days: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal, first and second off-diagonal of ``λ DᵀD`` (pentadiagonal, symmetric)."""
    d = difference_penalty(days)
    p = lam * (d.T @ d)
    t = days.size
    return (p[np.arange(t), np.arange(t)].copy(),
            p[np.arange(t - 1), np.arange(1, t)].copy(),
            p[np.arange(t - 2), np.arange(2, t)].copy())


class _Solver:
    """The chunk's work arrays (T, c) and the compiled solve (:mod:`banded`), reused by the
    first fit and the robust refits."""

    def __init__(self, bands: tuple[np.ndarray, np.ndarray, np.ndarray], shape: tuple[int, int]):
        self.bands = bands
        self.inv_d, self.l1, self.l2 = (np.empty(shape) for _ in range(3))

    def solve(self, w: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z of ``(diag(w) + P) z = w y``, keeping the factors for `loo_residuals`."""
        self.w, z = w, np.empty_like(y)
        banded.factor_solve(w, w * y, *self.bands, self.inv_d, self.l1, self.l2, z)
        return z

    def loo_residuals(self, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``(y − z) / (1 − h_ii)`` of the last solve: the residual of each look from the
        curve fitted without it."""
        out = np.empty_like(y)
        banded.loo_residuals(self.w, y, z, self.inv_d, self.l1, self.l2, out)
        return out


def _look_scale(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``√w`` as (c, T) float32 with NaN where ``w == 0``, and the looks per column: computed
    once per chunk for `_robust_sd`."""
    scale = np.sqrt(np.ascontiguousarray(w.T), dtype=np.float32)
    scale[scale == 0] = np.nan
    return scale, np.count_nonzero(w > 0, axis=0)


def _robust_sd(r: np.ndarray, look_scale: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """1.4826 × MAD of the weighted residuals ``√w · r`` over the looks (``w > 0``), per column
    of the (T, c) residuals ``r``: σ of a fully weighted look for Gaussian noise, unmoved by a
    few cloud dips. NaN for a column without looks."""
    scale, k = look_scale
    x = np.ascontiguousarray(r.T, dtype=np.float32)  # (c, T) rows contiguous for the sort
    x *= scale                                   # NaN off the looks; NaN sorts last
    rows = np.arange(x.shape[0])
    lo, hi = np.maximum(k - 1, 0) // 2, np.maximum(k, 1) // 2

    def median(a: np.ndarray) -> np.ndarray:
        a.sort(axis=1)
        return 0.5 * (a[rows, lo] + a[rows, hi])

    x -= median(x.copy())[:, None]
    np.abs(x, out=x)
    return np.where(k > 0, 1.4826 * median(x), np.nan)


def _hold_ends(z: np.ndarray, look: np.ndarray) -> None:
    """Hold the curve at its first / last look's value before / after them, in place.

    The penalty alone would extend the end slope as a straight line, which runs off by tenths
    of NDVI within a few dates when the last looks are noisy; nothing observed supports it.
    """
    t = z.shape[0]
    cols = np.arange(z.shape[1])
    first = np.argmax(look, axis=0)
    last = t - 1 - np.argmax(look[::-1], axis=0)
    rows = np.arange(t)[:, None]
    np.copyto(z, z[first, cols], where=rows < first)
    np.copyto(z, z[last, cols], where=rows > last)


def _check(values: np.ndarray, weights: np.ndarray, days: np.ndarray, lam: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(values)
    weights = np.asarray(weights)
    days = np.asarray(days, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    if weights.ndim == 1:
        weights = weights[None]
    if values.ndim != 2:
        raise InputError(f"values must be (parcel, time), got shape {values.shape}",
                         source="whittaker", fix="pass one row per parcel")
    if weights.shape != values.shape:
        raise InputError(f"weights shape {weights.shape} differs from values {values.shape}",
                         source="whittaker", fix="give one weight per parcel and date")
    if days.ndim != 1 or days.size != values.shape[1]:
        raise InputError(f"days has {days.size} entries for {values.shape[1]} dates",
                         source="whittaker", fix="give one day number per date column")
    if days.size and (not np.all(np.isfinite(days)) or np.any(np.diff(days) <= 0)):
        raise InputError("days must be finite and strictly increasing",
                         source="whittaker",
                         fix="sort the dates and merge acquisitions of the same day first")
    if not (np.isfinite(lam) and lam > 0):
        raise InputError(f"lam must be a positive number, got {lam!r}", source="whittaker",
                         fix=f"use e.g. the default {DEFAULT_LAMBDA:g} (days⁴)")
    return values, weights, days


def whittaker(values: np.ndarray, weights: np.ndarray, days: np.ndarray, *,
              lam: float = DEFAULT_LAMBDA, robust: bool = True,
              chunk: int = CHUNK_PARCELS) -> tuple[np.ndarray, np.ndarray]:
    """Smooth each parcel's NDVI series and fill its cloudy dates.

    Parameters
    ----------
    values : (n_parcels, n_times) NDVI, NaN where there is no clear look.
    weights : (n_parcels, n_times) in [0, 1], e.g. the clear fraction of the parcel; a NaN
        value or a NaN weight counts as weight 0.
    days : (n_times,) day numbers, strictly increasing (uneven spacing is fine).
    lam : smoothness λ in days⁴ (second divided differences over days). Larger is smoother.
    robust : fit the upper envelope: looks well below a first fit (residual cloud, haze,
        shadow — they only ever lower NDVI) lose weight and the curve is refitted.
    chunk : parcels solved at once (memory ~ 100 × n_times bytes per parcel of a chunk).

    Returns
    -------
    smoothed : (n_parcels, n_times) float32, NaN for parcels with fewer than 3 weighted looks;
        held constant before the first and after the last weighted look.
    residual_sd : (n_parcels,) float32, 1.4826 × weighted MAD of ``values − smoothed`` at the
        weighted looks (the weights are the input weights): the parcel's noise level in NDVI.

    Examples
    --------
    >>> days = np.arange(0.0, 100.0, 5.0)
    >>> y = np.where(days < 50, 0.2, 0.8)[None]
    >>> w = np.ones_like(y); w[0, 3] = 0.0
    >>> z, sd = whittaker(y, w, days, lam=1e3)
    >>> bool(abs(z[0, 3] - 0.2) < 0.05), bool(z[0, -1] > 0.75)
    (True, True)
    """
    values, weights, days = _check(values, weights, days, lam)
    n, t = values.shape
    if n == 0 or t < MIN_LOOKS:
        return np.full((n, t), np.nan, np.float32), np.full(n, np.nan, np.float32)
    # filled block by block on the threads (a province's array is written once, in parallel)
    smoothed = np.empty((n, t), dtype=np.float32)
    residual_sd = np.empty(n, dtype=np.float32)
    bands = _penalty_bands(days, lam)

    def smooth(rows: slice) -> None:
        lo, hi = rows.start, rows.stop
        # (T, c) in C order: each date's row is contiguous for the recursion (astype of a
        # transpose would keep the transposed layout, striding every row: 2.4× slower)
        y = np.ascontiguousarray(values[lo:hi].T, dtype=np.float64)
        w0 = np.ascontiguousarray(weights[lo:hi].T, dtype=np.float64)
        if np.any(w0 < 0) or np.any(w0 > 1 + 1e-6):
            raise InputError("weights must lie in [0, 1]", source="whittaker",
                             fix="pass the clear fraction (0 = no look, 1 = fully clear)")
        bad = ~np.isfinite(y) | ~np.isfinite(w0)
        w0[bad] = 0.0
        y[bad] = 0.0
        enough = (w0 > 0).sum(axis=0) >= MIN_LOOKS
        if not enough.any():
            smoothed[lo:hi], residual_sd[lo:hi] = np.nan, np.nan
            return
        # columns with too few looks are solved as dummies (flat weight) and blanked afterwards
        w0[:, ~enough] = 1.0
        solver = _Solver(bands, y.shape)
        z = solver.solve(w0, y)
        looks = _look_scale(w0)
        if robust:
            # Depth below the curve fitted *without* the look (leave-one-out residual
            # r / (1 − h)): a dip at the first or last look pulls its own fit down and hides
            # in its plain residual; its leave-one-out residual does not.
            cut = None
            for _ in range(ROBUST_ITERATIONS):
                loo = solver.loo_residuals(y, z)
                if cut is None:             # one spread, from the first fit
                    cut = ROBUST_CUTOFF * np.maximum(_robust_sd(loo, looks), NOISE_FLOOR)
                w = np.empty_like(loo)
                banded.bisquare_weights(loo, cut, w0, ROBUST_MIN_SHARE, w)
                z = solver.solve(w, y)
        sd = _robust_sd(y - z, looks)
        _hold_ends(z, w0 > 0)
        z[:, ~enough] = np.nan
        sd[~enough] = np.nan
        smoothed[lo:hi] = z.T
        residual_sd[lo:hi] = sd

    for_blocks(smooth, n, chunk)

    return smoothed, residual_sd
