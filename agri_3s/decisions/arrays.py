"""NaN-aware order statistics along one axis, fast on large (parcel × …) arrays.

``numpy.nanpercentile`` falls back to a Python loop over rows when NaNs are present, which is
far too slow for a province of parcels; these sort once (NaN sorts last) and interpolate.
"""

from __future__ import annotations

import numpy as np


def nan_quantiles(values: np.ndarray, q: float | tuple[float, ...], axis: int = -1,
                  *, presorted: bool = False) -> np.ndarray:
    """Percentiles ``q`` (0–100, linear interpolation like ``np.percentile``) over ``axis``,
    ignoring NaN; NaN where a slice has no finite value.

    The result has the quantiles on a new first axis when ``q`` is a tuple.

    Examples
    --------
    >>> a = np.array([[1.0, np.nan, 3.0, 2.0], [np.nan] * 4])
    >>> nan_quantiles(a, 50)
    array([ 2., nan])
    >>> nan_quantiles(a, (0, 100))[:, 0]
    array([1., 3.])
    """
    values = np.moveaxis(np.asarray(values), axis, -1)
    ordered = values if presorted else np.sort(values, axis=-1)
    n = np.isfinite(ordered).sum(axis=-1)
    qs = np.atleast_1d(np.asarray(q, np.float64))
    out = np.empty((len(qs),) + n.shape, np.result_type(ordered.dtype, np.float32))
    last = np.maximum(n - 1, 0)
    for k, quant in enumerate(qs):
        pos = quant / 100.0 * last
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, last)
        frac = (pos - lo).astype(out.dtype)
        a = np.take_along_axis(ordered, lo[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(ordered, hi[..., None], axis=-1)[..., 0]
        out[k] = np.where(n > 0, a + (b - a) * frac, np.nan)
    return out if isinstance(q, tuple) else out[0]


def nan_median(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median over ``axis`` ignoring NaN (NaN for an all-NaN slice), without warnings.

    >>> nan_median(np.array([[1.0, 5.0, np.nan], [np.nan, np.nan, np.nan]]))
    array([ 3., nan])
    """
    return nan_quantiles(values, 50.0, axis)


def nan_reduce(func, values: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.nanmin`` / ``np.nanmax`` / ``np.nanmean`` over ``axis`` without the all-NaN warning.

    >>> nan_reduce(np.nanmax, np.array([[1.0, np.nan], [np.nan, np.nan]]), axis=1)
    array([ 1., nan])
    """
    finite = np.isfinite(values).any(axis=axis)
    filled = np.where(np.expand_dims(finite, axis), values, 0.0)
    return np.where(finite, func(filled, axis=axis), np.nan)
