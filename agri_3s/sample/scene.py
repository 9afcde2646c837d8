"""Fixed facts of the synthetic scene: grid, dates, spectra and the dates of special weather."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

EPSG = 32650
X0, Y0 = 437000.0, 4142000.0          # top-left corner (x, y)
SIZE_M = 4000.0
N10, N20, NSUB = 400, 200, 2000       # 10 m, 20 m and 2 m (sub-pixel) grid sizes
SUB = 5                               # 2 m sub-pixels per 10 m pixel (per axis)
CX, CY = X0 + SIZE_M / 2, Y0 - SIZE_M / 2
COUNTY = "371428"                     # Wucheng county, Dezhou, Shandong

START = dt.date(2024, 9, 20)
END = dt.date(2025, 10, 20)
WHEAT_SEASON = (dt.date(2024, 10, 1), dt.date(2025, 6, 15))
MAIZE_SEASON = (dt.date(2025, 6, 10), dt.date(2025, 10, 10))
HAIL_DATE = dt.date(2025, 5, 14)
FLOOD_DATE = dt.date(2025, 7, 22)
HAIL_ID, FLOOD_ID = "hail_2025-05-14", "flood_2025-07-22"

# Snow: a heavy fall seen on a clear day, then patches left a few days later (targets; the
# nearest acquisitions are used).
SNOW_TARGETS = ((dt.date(2025, 1, 23), 0.70), (dt.date(2025, 1, 28), 0.22))
# Dates with small clouds / thick haze that the scene classification calls clear: one in each
# season's sowing window and peak window (built-in calendar) and one at wheat green-up.
UNFLAGGED_TARGETS = (dt.date(2024, 10, 13), dt.date(2025, 3, 12), dt.date(2025, 4, 18),
                     dt.date(2025, 6, 22), dt.date(2025, 8, 21))

NOISE_SD = 0.0035                     # sensor noise (reflectance)
BANDS = ("B03", "B04", "B08", "B11")  # green, red, nir, swir16
# Endmember reflectances (green, red, nir, swir16). Vegetation red+nir is close to a bright
# soil's, so NDVI is nearly linear in cover over bright soils and bends over dark ones.
EM_VEG = np.array([0.08, 0.04, 0.42, 0.20])
EM_SOIL_DARK = np.array([0.07, 0.085, 0.145, 0.20])    # dark moist loam, NDVI 0.261
EM_SOIL_BRIGHT = np.array([0.15, 0.23, 0.265, 0.36])   # bright / reddish dry soil, NDVI 0.071
EM_WATER = np.array([0.07, 0.05, 0.03, 0.01])
EM_BUILT = np.array([0.14, 0.16, 0.20, 0.24])
EM_ROAD = np.array([0.10, 0.11, 0.14, 0.16])
EM_PLASTIC = np.array([0.24, 0.25, 0.29, 0.27])  # greenhouse film
EM_SNOW = np.array([0.80, 0.76, 0.71, 0.07])     # fresh snow: bright visible, NDVI ≈ −0.03
EM_HAZE = np.array([0.34, 0.30, 0.31, 0.23])     # thick haze / small cloud: brightest in green
SOIL_NDVI_RANGE = (0.08, 0.25)        # parcels' bare-soil NDVI

# unit cover-table columns: fractions of vegetation, water, built-up, asphalt, film, soil, and
# the soil fraction × brightness split between the dark and the bright soil endmember
C_VEG, C_WATER, C_BUILT, C_ROAD, C_PLASTIC, C_SOIL, C_SOIL_DARK, C_SOIL_BRIGHT = range(8)
N_COLS = 8

ProgressFn = Callable[[str, int, int], None]


def day(d: dt.date) -> int:
    """Days since the first acquisition (the generator's time axis)."""
    return (d - START).days


def d(y: int, m: int, dd: int) -> int:
    """``day(date(y, m, dd))``, for readable cover key points."""
    return day(dt.date(y, m, dd))


def acquisition_dates() -> list[dt.date]:
    """Every 5 days from 2024-09-20, plus an adjacent-orbit date 2–3 days later every 3rd cycle.

    Examples
    --------
    >>> dates = acquisition_dates()
    >>> len(dates), dates[0].isoformat(), dates[-1].isoformat()
    (106, '2024-09-20', '2025-10-20')
    """
    out, k = [], 0
    while START + dt.timedelta(days=5 * k) <= END:
        dd = START + dt.timedelta(days=5 * k)
        out.append(dd)
        if k % 3 == 1:
            extra = dd + dt.timedelta(days=2 if (k // 3) % 2 == 0 else 3)
            if extra <= END:
                out.append(extra)
        k += 1
    return sorted(set(out))


def nearest(dates: list[dt.date], target: dt.date) -> dt.date:
    """The acquisition closest to ``target`` (the earlier one on a tie)."""
    return min(dates, key=lambda x: (abs((x - target).days), x))


def soil_weight(soil_ndvi: np.ndarray | float) -> np.ndarray:
    """Share of the dark endmember in a dark/bright soil mix whose NDVI is ``soil_ndvi``.

    NDVI of the mix is (Δ_b + w (Δ_d − Δ_b)) / (S_b + w (S_d − S_b)) with Δ = nir − red and
    S = nir + red, solved for w.

    Examples
    --------
    >>> w = soil_weight(0.15)
    >>> mix = w * EM_SOIL_DARK + (1 - w) * EM_SOIL_BRIGHT
    >>> round(float((mix[2] - mix[1]) / (mix[2] + mix[1])), 6)
    0.15
    """
    s = np.asarray(soil_ndvi, float)
    dd_, db = EM_SOIL_DARK[2] - EM_SOIL_DARK[1], EM_SOIL_BRIGHT[2] - EM_SOIL_BRIGHT[1]
    sd, sb = EM_SOIL_DARK[2] + EM_SOIL_DARK[1], EM_SOIL_BRIGHT[2] + EM_SOIL_BRIGHT[1]
    return (s * sb - db) / ((dd_ - db) - s * (sd - sb))
