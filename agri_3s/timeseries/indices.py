"""Spectral indices (reflectance in, index out; NaN where undefined)."""

from __future__ import annotations

import numpy as np


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a − b) / (a + b), NaN where the sum is not positive.

    >>> round(float(normalized_difference(np.array(0.4), np.array(0.1))), 6)
    0.6
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    s = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, (a - b) / s, np.nan).astype(np.float32)


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """Normalised difference vegetation index, (NIR − red) / (NIR + red)."""
    return normalized_difference(nir, red)


def ndwi(green: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """McFeeters normalised difference water index, (green − NIR) / (green + NIR); > 0 is open water.

    Uses 10 m bands only, so flooded parts of small parcels are resolved.
    """
    return normalized_difference(green, nir)


def dn_normalized_difference(a: tuple[np.ndarray, float] | None,
                             b: tuple[np.ndarray, float] | None, n: int) -> np.ndarray:
    """The normalised difference of two bands' reflectances straight from L2A digital numbers,
    each given as ``(DNs, boa_add_offset)`` (None: band absent → all NaN, length ``n``).

    Reflectance is (DN + offset) / 10000, so the scale cancels and no reflectance is ever
    formed: (a − b) / (a + b) = (DNa + oa − DNb − ob) / (DNa + oa + DNb + ob), whose sums are
    exact in float32 for 16-bit DNs (one rounding, in the division). NaN where either DN is 0 (no data) or the sum is not positive, as
    :func:`normalized_difference` of :func:`~agri_3s.sources.base.dn_to_reflectance`.

    >>> dn_normalized_difference((np.array([5000, 0], np.uint16), -1000.0),
    ...                          (np.array([2000, 3000], np.uint16), -1000.0), 2)
    array([0.6, nan], dtype=float32)
    """
    if a is None or b is None:
        return np.full(n, np.nan, np.float32)
    (da, oa), (db, ob) = a, b
    fa, fb = da.astype(np.float32), db.astype(np.float32)
    total = fa + fb
    diff = np.subtract(fa, fb, out=fa)  # in place: these run once per window and date
    if oa + ob:
        total += np.float32(oa + ob)
    if oa - ob:
        diff += np.float32(oa - ob)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(diff, total, out=diff)
    diff[(total <= 0) | (da == 0) | (db == 0)] = np.nan
    return diff
