"""What a parcel series shows in each window of the declared crop's calendar — as arrays.

Every quantity here is computed for all parcels at once over (parcel × time) arrays: the
parcels' calendar windows are day numbers per parcel (parcels of different crops have different
windows), and window statistics are masked reductions along time. A window without a clear
look is *unobserved*: its statistics are NaN and its ``n_*`` count is 0, never a low value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numpy as np

from ..blocks import for_blocks
from ..types import Season
from .arrays import nan_quantiles
from .calendar import CropCalendar

#: How far before the season the decision looks: the previous crop or a bare seedbed before
#: sowing is part of the evidence. The series must cover it (the pipeline reads it).
LOOKBACK = dt.timedelta(days=30)
#: The seedbed is looked for from this long before the sowing window (a crop sown earlier
#: shows its rise from bare soil there).
SEEDBED_LEAD = LOOKBACK


@dataclass(frozen=True)
class Windows:
    """Per parcel, the day numbers (days since the series' first date) of the season and of
    its crop's windows placed in it (NaN for parcels without a calendar)."""

    season: tuple[np.ndarray, np.ndarray]
    sowing: tuple[np.ndarray, np.ndarray]
    seedbed: tuple[np.ndarray, np.ndarray]
    emergence: tuple[np.ndarray, np.ndarray]
    peak: tuple[np.ndarray, np.ndarray]
    harvest: tuple[np.ndarray, np.ndarray]
    peak_ndvi_min: np.ndarray


def day_numbers(times: np.ndarray) -> np.ndarray:
    """Days since the first date, as floats."""
    d = np.asarray(times, dtype="datetime64[D]")
    return (d - d[0]).astype(np.float64)


def place_windows(calendars: list[CropCalendar | None], crop_index: np.ndarray,
                  season: Season, first_day: np.datetime64) -> Windows:
    """The windows of ``calendars[crop_index[i]]`` for every parcel ``i`` (−1: no calendar)."""
    origin = np.datetime64(first_day, "D")

    def num(d: dt.date) -> float:
        return float((np.datetime64(d, "D") - origin).astype(np.int64))

    rows = []
    for cal in calendars:
        if cal is None:  # the season holds for every parcel, the crop's windows do not
            rows.append([num(season.start), num(season.end)] + [np.nan] * 11)
            continue
        sow, em = cal.sowing.within(season), cal.emergence.within(season)
        peak, harvest = cal.peak.within(season), cal.harvest.within(season)
        rows.append([num(season.start), num(season.end), num(sow[0]), num(sow[1]),
                     num(sow[0] - SEEDBED_LEAD), num(em[1]), num(em[0]), num(em[1]),
                     num(peak[0]), num(peak[1]), num(harvest[0]), num(harvest[1]),
                     cal.peak_ndvi_min])
    table = np.array(rows + [[num(season.start), num(season.end)] + [np.nan] * 11],
                     np.float64)  # last row: no calendar
    per = table[np.where(crop_index >= 0, crop_index, len(rows))]
    pairs = [(per[:, k], per[:, k + 1]) for k in range(0, 12, 2)]
    return Windows(*pairs, peak_ndvi_min=per[:, 12])


def inside(days: np.ndarray, window: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(parcel, time) mask of the dates inside each parcel's window."""
    return (days[None, :] >= window[0][:, None]) & (days[None, :] <= window[1][:, None])


def masked_max(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maximum, its time index) over the masked dates; (NaN, −1) where none."""
    v = np.where(mask, values, -np.inf)
    at = np.argmax(v, axis=1)
    best = v[np.arange(len(v)), at]
    none = ~np.isfinite(best)
    return np.where(none, np.nan, best), np.where(none, -1, at)


def masked_min(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(minimum, its time index) over the masked dates; (NaN, −1) where none."""
    low, at = masked_max(-values, mask)
    return -low, at


def first(mask: np.ndarray) -> np.ndarray:
    """Time index of the first True per parcel, −1 where none."""
    return np.where(mask.any(axis=1), np.argmax(mask, axis=1), -1)


def last_before(mask: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Time index of the last True before ``index`` per parcel, −1 where none.

    >>> last_before(np.array([[True, False, True, True]]), np.array([3])).tolist()
    [2]
    """
    t = np.arange(mask.shape[1], dtype=np.int16)
    return np.where(mask & (t[None, :] < index[:, None]), t, np.int16(-1)).max(axis=1,
                                                                             initial=-1)


def at_index(days: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Day numbers of time indices (NaN for −1)."""
    return np.where(index >= 0, days[np.clip(index, 0, None)], np.nan)


def to_dates(first_day: np.datetime64, day: np.ndarray) -> np.ndarray:
    """Day numbers → ``datetime64[D]`` dates, rounded to the day (NaT where NaN).

    >>> to_dates(np.datetime64("2025-01-30"), np.array([0.4, 2.0, np.nan])).tolist()
    [datetime.date(2025, 1, 30), datetime.date(2025, 2, 1), None]
    """
    day = np.asarray(day, np.float64)
    whole = np.where(np.isfinite(day), np.round(day), 0).astype("timedelta64[D]")
    out = np.datetime64(first_day, "D") + whole
    out[~np.isfinite(day)] = np.datetime64("NaT")
    return out


@dataclass
class Evidence:
    """Per-parcel window statistics the rules read (arrays of length n_parcels)."""

    n_season: np.ndarray
    n_sowing: np.ndarray      # clear looks from the seedbed lead to the end of sowing
    n_peak: np.ndarray
    n_harvest: np.ndarray     # clear looks in the harvest window (0 unless the series runs
    #                           to the window's end)
    seedbed_min: np.ndarray   # lowest NDVI from the seedbed lead to the end of emergence
    sowing_min: np.ndarray    # lowest NDVI inside the sowing window
    canopy: np.ndarray        # highest NDVI p75 from emergence to the end of the peak window
    canopy_day: np.ndarray
    canopy_mean: np.ndarray   # highest mean NDVI over the same span
    peak_ndvi: np.ndarray     # highest mean NDVI in the peak window, and its day
    peak_day: np.ndarray
    emergence_day: np.ndarray
    late_canopy_day: np.ndarray  # first canopy at the crop's level after the peak window
    lost_day: np.ndarray      # canopy back to soil before the harvest window
    harvest_min: np.ndarray   # lowest NDVI in the harvest window (and 15 days after)
    bare_in_peak_day: np.ndarray  # bare soil in the peak window with the canopy after it
    rise_base: np.ndarray     # lowest NDVI from the series' start to the canopy
    regrowth_day: np.ndarray  # the trough before a second growth (NaN: none)
    planted_fraction: np.ndarray


#: Parcels whose evidence is gathered at a time, per thread: a block's (parcel × time)
#: temporaries stay a few MB, in the processor's caches (on 10⁶ parcels × 70 dates 16,384 is
#: ~20 % faster than 65,536).
CHUNK = 16_384


def gather(values: np.ndarray, p75: np.ndarray, veg: np.ndarray, water: np.ndarray,
           cover: np.ndarray, ok: np.ndarray, days: np.ndarray, w: Windows, **rules) -> Evidence:
    """The evidence of every parcel (see :func:`_gather`), in blocks of parcels: the
    (parcel × time) temporaries of one block at a time."""
    if len(values) <= CHUNK:
        return _gather(values, p75, veg, water, cover, ok, days, w, **rules)

    def block(rows: slice) -> Evidence:
        sub = Windows(*[(lo[rows], hi[rows]) for lo, hi in (
            w.season, w.sowing, w.seedbed, w.emergence, w.peak, w.harvest)],
            peak_ndvi_min=w.peak_ndvi_min[rows])
        return _gather(values[rows], p75[rows], veg[rows], water[rows], cover[rows],
                       ok[rows], days, sub, **rules)

    parts = for_blocks(block, len(values), CHUNK)
    return Evidence(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                       for f in fields(Evidence)})


def _gather(values: np.ndarray, p75: np.ndarray, veg: np.ndarray, water: np.ndarray,
            cover: np.ndarray, ok: np.ndarray, days: np.ndarray, w: Windows, *,
            bare_ndvi_max: float, emergence_level: tuple[float, float],
            cover_disagreement: float, day_margin: float,
            lost_before_harvest_days: float) -> Evidence:
    """The evidence of every parcel from its clear looks (``ok``) of NDVI mean / p75 /
    vegetated share / open-water share and the canopy level against healthy parcels of its
    crop (``cover``). A flooded look is not a canopy lost to a plough."""
    y = np.where(ok, values, np.nan)
    season = inside(days, w.season)
    sow = inside(days, (w.seedbed[0], w.sowing[1]))
    peak = inside(days, w.peak) & ok
    grown_w = inside(days, (w.emergence[0], w.peak[1])) & ok
    seedbed = inside(days, w.seedbed) & ok

    canopy, canopy_at = masked_max(p75, grown_w)
    canopy_mean, _ = masked_max(values, grown_w)
    peak_ndvi, peak_at = masked_max(values, peak)
    seedbed_min, seedbed_at = masked_min(values, seedbed)
    # green all through sowing: judged up to a revisit past the window (no cliff at its end)
    sowing_min, _ = masked_min(values, inside(days, (w.sowing[0], w.sowing[1] + day_margin)) & ok)

    # emergence: the first clear look after the seedbed's minimum risen clearly above it
    # (relative to the parcel's own seedbed, so weeds on it are not a crop emerging)
    level = np.maximum(seedbed_min + emergence_level[0], emergence_level[1])
    # (the day it crossed that level, between the look before and the first look above)
    after = np.arange(len(days))[None, :] > seedbed_at[:, None]
    risen = ok & after & (days[None, :] <= w.peak[1][:, None]) & (y >= level[:, None])
    above = first(risen)
    below = last_before(ok, above)
    rows = np.arange(len(y))
    y_a, y_b = y[rows, np.clip(above, 0, None)], y[rows, np.clip(below, 0, None)]
    d_a, d_b = at_index(days, above), at_index(days, below)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((level - y_b) / (y_a - y_b), 0.0, 1.0)
    emergence_day = np.where((seedbed_at >= 0) & (above >= 0),
                             np.where(below >= 0, d_b + frac * (d_a - d_b), d_a), np.nan)

    crop_level = w.peak_ndvi_min[:, None]
    late = ok & (days[None, :] > w.peak[1][:, None]) & (p75 >= crop_level)
    late_canopy_day = at_index(days, first(late))
    # canopy lost: back to soil after reaching the crop's canopy, well before the harvest
    # window — a cover crop ploughed in, an earlier harvest, or damage
    soil = np.where(np.isfinite(seedbed_min), np.minimum(seedbed_min + 0.1, bare_ndvi_max),
                    bare_ndvi_max)
    # (reached from the first look at the crop's canopy on)
    canopy_from = first(grown_w & (p75 >= crop_level))
    reached = (np.arange(len(days))[None, :] >= canopy_from[:, None]) & (canopy_from[:, None] >= 0)
    lost = ok & reached & (y <= soil[:, None]) & ~(water >= 0.3) & (
        days[None, :] < (w.harvest[0] - lost_before_harvest_days)[:, None])
    lost_day = at_index(days, first(lost))
    # a second growth: after the canopy, a fall (before the harvest window: not a harvest)
    # and a rise again — mowing, or a crop after a cover crop
    t_all = np.arange(len(days))[None, :]
    after_canopy = ok & (t_all > canopy_at[:, None]) & (canopy_at[:, None] >= 0)
    trough, trough_at = masked_min(values, after_canopy & (
        days[None, :] < w.harvest[0][:, None]))
    regrown, _ = masked_max(values, after_canopy & (t_all > trough_at[:, None])
                            & (trough_at[:, None] >= 0))
    regrowth = (canopy_mean - trough >= 0.25) & (regrown - trough >= 0.15)
    # the lowest look from the series' start to the canopy: an annual crop rises from it
    rise_base, _ = masked_min(values, ok & (t_all < canopy_at[:, None]))
    # bare soil inside the peak window with the canopy only after it: a crop sown then
    bare_peak = first(peak & (y <= soil[:, None]))
    t = np.arange(len(days))[None, :]
    later = grown_w & (t > bare_peak[:, None]) & (bare_peak[:, None] >= 0)
    sown_in_peak = (bare_peak >= 0) & ~(masked_max(p75, grown_w & ~later & (
        t < bare_peak[:, None]))[0] >= crop_level[:, 0]) & (masked_max(p75, later)[0] >= crop_level[:, 0])
    # a harvest: back to stubble in the harvest window or within two weeks after it
    harvest_late = inside(days, (w.harvest[0], w.harvest[1] + 15.0)) & ok
    harvest_min, _ = masked_min(values, harvest_late)
    # the harvest window counts as seen only when the series runs to its end (a series
    # ending inside the window has not seen a late harvest yet)
    whole = (days[-1] if len(days) else -np.inf) >= w.harvest[1]

    # planted share: the share of vegetated pixels — unless the canopy level against healthy
    # same-crop parcels says far less: narrow strips planted lengthwise have only mixed
    # pixels, which all look vegetated (edge contamination alone lowers that level by ~0.2)
    planted, _ = masked_max(veg, grown_w)
    level_c, _ = masked_max(np.where(np.isfinite(cover), cover, -np.inf), grown_w)
    planted = np.where(np.isfinite(level_c) & (level_c < planted - cover_disagreement),
                       level_c, planted)
    return Evidence(
        n_season=(ok & season).sum(axis=1), n_sowing=(ok & sow).sum(axis=1),
        n_peak=peak.sum(axis=1),
        n_harvest=np.where(whole, harvest_late.sum(axis=1), 0),
        seedbed_min=seedbed_min,
        sowing_min=sowing_min, canopy=canopy, canopy_day=at_index(days, canopy_at),
        canopy_mean=canopy_mean, peak_ndvi=peak_ndvi, peak_day=at_index(days, peak_at),
        emergence_day=emergence_day, late_canopy_day=late_canopy_day, lost_day=lost_day,
        harvest_min=harvest_min, bare_in_peak_day=np.where(
            sown_in_peak, at_index(days, bare_peak), np.nan), rise_base=rise_base,
        regrowth_day=np.where(regrowth, at_index(days, trough_at), np.nan),
        planted_fraction=planted)


#: Most parcels of a crop whose NDVI sets its healthy-canopy reference (see canopy_reference).
REFERENCE_SAMPLE = 50_000


def canopy_reference(values: np.ndarray, ok: np.ndarray, crop_index: np.ndarray,
                     min_parcels: int = 10) -> np.ndarray:
    """Per parcel and date, its canopy relative to healthy parcels of the same declared crop:
    ``(NDVI − soil) / (p90 of the crop's parcels − soil)``, clipped to [0, 1] (NaN for crops
    with fewer than ``min_parcels`` parcels and for dates without a canopy yet).

    Soil is the batch's 5th percentile of clear NDVI (every season has bare soil somewhere;
    from a systematic sample of at most 2 million looks)."""
    n, t = values.shape
    step = max(1, values.size // 2_000_000)
    looks = np.where(ok.ravel()[::step], values.ravel()[::step], np.nan)
    if not np.isfinite(looks).any():
        return np.full((n, t), np.nan, np.float32)
    cover = np.empty((n, t), np.float32)  # every row written below, block by block
    soil = float(nan_quantiles(looks, 5))
    # each crop's healthy canopy per date: the p90 over its parcels (a systematic sample of a
    # province's: the p90 of REFERENCE_SAMPLE parcels is within ~0.002 NDVI of all of theirs);
    # the last row (crop index -1, too few parcels) stays NaN
    crops = np.unique(crop_index[crop_index >= 0])
    full = np.full((int(crops.max(initial=-1)) + 2, t), np.nan, np.float32)
    for crop in crops:
        members = np.flatnonzero(crop_index == crop)
        if len(members) < min_parcels:
            continue
        sample = members[::-(-len(members) // REFERENCE_SAMPLE)]
        full[crop] = nan_quantiles(np.where(ok[sample], values[sample], np.nan), 90, axis=0)
    full[~(full - soil > 0.2)] = np.nan  # no canopy yet
    span = full - soil

    def block(rows: slice) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(ok[rows], values[rows] - soil, np.nan) / span[crop_index[rows]]
        np.clip(rel, 0.0, 1.0, out=cover[rows])

    for_blocks(block, n, CHUNK)
    return cover
