"""A parcel's own canopy signal, as (parcel × time) array code: its bare-soil level, its canopy
just before the event, and the same calendar window in its past seasons.

NDVI above bare soil (``NDVI − soil``) tracks green cover, so every loss is measured against
the parcel's own soil: a field on pale soil (NDVI 0.10) and one on dark, wet soil (0.30) lose
the same share of canopy for very different NDVI drops.
"""

from __future__ import annotations

import numpy as np

from .arrays import nan_quantiles

#: Days of tolerance when matching a look to the same calendar day of an earlier year.
PAST_TOLERANCE_DAYS = 8


def neighbour_looks(ndvi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every date, the previous and the next clear (finite) look of the same parcel.

    >>> prev, nxt = neighbour_looks(np.array([[0.5, np.nan, 0.1, 0.6]]))
    >>> prev.tolist(), nxt.tolist()
    ([[nan, 0.5, 0.5, 0.1]], [[0.1, 0.1, 0.6, nan]])
    """
    n, t = ndvi.shape
    j = np.arange(t)
    seen = np.isfinite(ndvi)
    last = np.maximum.accumulate(np.where(seen, j, -1), axis=1)
    first = np.minimum.accumulate(np.where(seen, j, t)[:, ::-1], axis=1)[:, ::-1]
    prev_i = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
    next_i = np.concatenate([first[:, 1:], np.full((n, 1), t)], axis=1)
    prev = np.take_along_axis(ndvi, np.clip(prev_i, 0, t - 1), axis=1)
    nxt = np.take_along_axis(ndvi, np.clip(next_i, 0, t - 1), axis=1)
    return np.where(prev_i >= 0, prev, np.nan), np.where(next_i < t, nxt, np.nan)


def single_look_dips(ndvi: np.ndarray, depth: float) -> np.ndarray:
    """Looks more than ``depth`` below both the previous and the next clear look: haze, cloud
    edges and shadows the cloud mask missed (bare soil lasts weeks, not one look).

    >>> single_look_dips(np.array([[0.5, 0.1, 0.55, 0.2, 0.21]]), 0.1).tolist()
    [[False, True, False, False, False]]
    """
    prev, nxt = neighbour_looks(ndvi)
    with np.errstate(invalid="ignore"):
        return (ndvi < prev - depth) & (ndvi < nxt - depth)


def own_soil_levels(ndvi: np.ndarray, usable: np.ndarray, rank: int, dip_depth: float
                    ) -> np.ndarray:
    """Each parcel's bare-soil level from its own clear looks: its ``rank``-th lowest usable
    look (seedbed, stubble, fallow spells) once single-look dips are removed; NaN with fewer
    than ``rank`` looks. A rank, not a percentile: a long green season must not push the
    level up into the canopy. Whether it is low enough to be soil is the caller's rule.

    Examples
    --------
    >>> ndvi = np.array([[0.20, 0.21, 0.05, 0.22, 0.6, 0.8, 0.7],
    ...                  [0.60, 0.70, 0.80, 0.75, np.nan, np.nan, np.nan]])
    >>> own_soil_levels(ndvi, np.ones(ndvi.shape, bool), 2, 0.1)
    array([0.21, 0.7 ])
    """
    looks = np.where(usable, ndvi, np.nan)
    looks[single_look_dips(looks, dip_depth)] = np.nan
    if looks.shape[1] < rank:
        return np.full(len(looks), np.nan)
    lowest = np.partition(np.where(np.isfinite(looks), looks, np.inf), rank - 1, axis=1)
    level = lowest[:, rank - 1].astype(np.float64)
    return np.where(np.isfinite(level), level, np.nan)


def last_looks(ndvi: np.ndarray, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each parcel's last ``n`` clear looks, and the mask of the looks used.

    >>> mean, used = last_looks(np.array([[0.4, 0.5, np.nan, 0.7], [np.nan] * 4]))
    >>> mean.tolist(), used[0].tolist()
    ([0.6, nan], [False, True, False, True])
    """
    seen = np.isfinite(ndvi)
    from_right = np.cumsum(seen[:, ::-1], axis=1)[:, ::-1]
    used = seen & (from_right <= n)
    count = used.sum(axis=1)
    total = np.where(used, ndvi, 0.0).sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan), used


def nearest_look(ndvi: np.ndarray, times: np.ndarray, day: np.datetime64,
                 tolerance_days: int = PAST_TOLERANCE_DAYS) -> np.ndarray:
    """Each parcel's clear look nearest to ``day`` within ``tolerance_days`` (NaN if none).

    >>> t = np.array(["2024-06-01", "2024-06-06", "2024-06-11"], dtype="datetime64[D]")
    >>> nearest_look(np.array([[0.3, np.nan, 0.5]]), t, np.datetime64("2024-06-07"))
    array([0.5])
    """
    gap = np.abs((times - day).astype("timedelta64[D]").astype(np.int64))
    cols = np.flatnonzero(gap <= tolerance_days)
    if not cols.size:
        return np.full(len(ndvi), np.nan)
    sub = ndvi[:, cols]
    dist = np.where(np.isfinite(sub), gap[cols][None, :], np.iinfo(np.int64).max)
    pick = np.argmin(dist, axis=1)
    return np.take_along_axis(sub, pick[:, None], axis=1)[:, 0].astype(np.float64)


def past_season_change(ndvi: np.ndarray, times: np.ndarray, event_day: np.datetime64,
                       pre_days: int, post_times: np.ndarray, soil: np.ndarray,
                       min_canopy: float) -> tuple[np.ndarray, np.ndarray]:
    """How the parcel's canopy changed over the same calendar window in its past seasons.

    For each earlier year the series covers, ``(look near post date − y years − soil) /
    (last two looks before event − y years − soil)``; the median over those years.
    Returns ``(change (n, len(post_times)), years used (n,))``; NaN / 0 where no past season
    has the looks.

    Examples
    --------
    >>> t = np.array(["2023-05-01", "2023-05-20", "2024-05-01", "2024-05-20"], "datetime64[D]")
    >>> ndvi = np.array([[0.8, 0.5, 0.8, np.nan]])
    >>> g, years = past_season_change(ndvi, t, np.datetime64("2024-05-10"), 30,
    ...                               t[3:], np.array([0.2]), 0.1)
    >>> g.round(2).tolist(), years.tolist()
    ([[0.5]], [1])
    """
    n = len(ndvi)
    per_year = []
    year = 1
    while True:
        shift = np.timedelta64(365 * year, "D")
        start = event_day - shift - np.timedelta64(pre_days, "D")
        if times.min() >= event_day - shift:
            break  # the series does not reach back to this year's window
        window = (times >= start) & (times < event_day - shift)
        pre, _ = last_looks(ndvi[:, window])
        base = pre - soil
        base = np.where(base >= min_canopy, base, np.nan)
        post = np.stack([nearest_look(ndvi, times, t - shift) for t in post_times], axis=1)
        per_year.append((post - soil[:, None]) / base[:, None])
        year += 1
    if not per_year:
        return np.full((n, len(post_times)), np.nan), np.zeros(n, np.int64)
    stack = np.stack(per_year, axis=-1)  # (n, t, years)
    years = np.isfinite(stack).any(axis=1).sum(axis=1)
    return nan_quantiles(stack, 50.0, axis=-1), years
