"""Spectral indices (reflectance in, index out; NaN where undefined)."""

from __future__ import annotations

import numpy as np


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a − b) / (a + b), NaN where the sum is not positive.

    >>> float(normalized_difference(np.array(0.4), np.array(0.1)))
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
