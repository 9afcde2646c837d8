"""Underwriting verification: was the declared crop planted on the declared area this season?

Rules (each with a reason code, see :mod:`.reasons`), applied to the parcel's clear observations
(``clear_fraction ≥ min_clear_fraction``) inside the season:

* **red** — no crop canopy between emergence and the end of the peak window (NDVI p75 below
  the crop's ``peak_ndvi_min``; p75 so a half-planted parcel reads as partial, not as
  unplanted);
  vegetation already present through the sowing window (another crop / perennial); or a canopy
  only outside the peak window (another crop's timing); or less than ``red_planted_fraction``
  of the parcel planted.
* **yellow** — partly planted (``planted_fraction`` below ``yellow_planted_fraction``); measured
  planted area short of the declared area beyond ``area_tolerance``; no or late emergence; the
  parcel is too small to judge (fewer than ``min_pixel_equivalents`` pixels measured).
* **green** — none of the above.
* **no_data** — no pixels, too few clear observations, or none in the peak window.
* **invalid** — the parcel's geometry or attributes were rejected on input.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..reasons import join_reasons, reason
from ..types import Season
from .calendar import CropCalendar, calendar_for

#: How far before the season the decision looks: the previous crop or a bare seedbed before
#: sowing is part of the evidence. The series must cover it (the pipeline reads it).
LOOKBACK = dt.timedelta(days=30)


@dataclass(frozen=True)
class PlantingRules:
    """Thresholds of the planting verdict (all overridable in a job file's ``[rules]``)."""

    min_clear_fraction: float = 0.6
    #: Fewer clear observations in the season → ``no_data``.
    min_observations: int = 5
    #: Highest NDVI that still counts as bare soil / stubble.
    bare_ndvi_max: float = 0.30
    #: NDVI that marks emergence (first clear observation at or above it after sowing).
    emergence_ndvi: float = 0.30
    late_emergence_days: int = 20
    yellow_planted_fraction: float = 0.8
    red_planted_fraction: float = 0.3
    #: Allowed shortfall of measured planted area against the declared area.
    area_tolerance: float = 0.15
    #: Fewer clear pixel-equivalents than this: too small to judge (verdict at most yellow).
    #: Measured on the sample: parcels with no whole pixel after the 5 m buffer but ≥ 2
    #: pixel-equivalents of edge pixels were still judged right 98 % of the time.
    min_pixel_equivalents: float = 2.0
    #: How far the canopy level (against healthy same-crop parcels) must fall below the share
    #: of vegetated pixels before it is taken as the planted share instead.
    cover_disagreement: float = 0.25


def _dates(times) -> np.ndarray:
    return np.asarray(times, dtype="datetime64[D]")


def _in(d: np.ndarray, window: tuple[dt.date, dt.date]) -> np.ndarray:
    return (d >= np.datetime64(window[0])) & (d <= np.datetime64(window[1]))


def _verdict_row(obs: pd.DataFrame, cal: CropCalendar, season: Season, rules: PlantingRules,
                 area_mu: float, declared_mu: float, pixel_equivalents: float,
                 full_pixels: int) -> dict:
    """Verdict for one parcel from its clear observations (columns time, mean, p75, veg and
    ``cover``: the canopy level relative to healthy same-crop parcels, NaN when unknown)."""
    d = _dates(obs["time"])
    row: dict = {"clear_observations": len(obs)}
    peak_w = cal.peak.within(season)
    peak_obs = obs[_in(d, peak_w)]
    if len(obs) < rules.min_observations:
        return {**row, "status": "no_data", **join_reasons([reason("FEW_CLEAR_OBS", n=len(obs))])}
    if peak_obs.empty:
        return {**row, "status": "no_data", **join_reasons([reason("NO_PEAK_OBS")])}

    best = peak_obs.loc[peak_obs["mean"].idxmax()]
    sow = cal.sowing.within(season)
    emerg_w = cal.emergence.within(season)
    # canopy and planted share: from emergence to the end of the peak window, so a disaster
    # after canopy closure (a flood, hail) does not make a planted field look unplanted
    grown = obs[_in(d, (emerg_w[0], peak_w[1]))]
    canopy_p75 = float(grown["p75"].max())
    # planted share: the share of vegetated pixels — unless the canopy level against healthy
    # same-crop parcels says far less: narrow strips planted lengthwise have only mixed pixels,
    # which all look vegetated. (Edge contamination alone lowers that level by up to ~0.2.)
    planted_fraction = float(grown["veg"].max())
    if grown["cover"].notna().any():
        level = float(grown["cover"].max())
        if level < planted_fraction - rules.cover_disagreement:
            planted_fraction = level
    measured = area_mu * planted_fraction
    ratio = measured / declared_mu if declared_mu and declared_mu > 0 else np.nan
    # emergence: the first rise after the seedbed's bare-soil minimum (a cover crop or the
    # previous crop may be green earlier in the sowing window)
    seedbed = obs[_in(d, (sow[0] - dt.timedelta(days=15), emerg_w[1]))]
    after = np.datetime64(sow[0])
    if len(seedbed) and seedbed["mean"].min() <= rules.bare_ndvi_max:
        after = seedbed.loc[seedbed["mean"].idxmin(), "time"]
    risen = obs[(obs["time"] >= after) & (d <= np.datetime64(peak_w[1]))
                & (obs["mean"] >= rules.emergence_ndvi)]
    emergence = pd.Timestamp(risen["time"].iloc[0]).date() if len(risen) else None
    row.update(planted_fraction=planted_fraction, emergence_date=emergence,
               peak_ndvi=float(best["mean"]), peak_date=pd.Timestamp(best["time"]).date(),
               measured_area_mu=measured, area_ratio=ratio)

    red, yellow, info = [], [], []
    dense = (rules.bare_ndvi_max + cal.peak_ndvi_min) / 2
    if _green_through_sowing(obs, d, seedbed, sow, emerg_w, dense, rules):
        red.append(reason("CROP_MISMATCH_SOWING", ndvi=float(seedbed["mean"].min())))
    elif emergence is not None and emergence < sow[0]:
        red.append(reason("EMERGED_BEFORE_SOWING", date=str(emergence), start=str(sow[0])))
    elif (canopy_p75 < cal.peak_ndvi_min and emergence is not None
          and emergence <= emerg_w[1] + dt.timedelta(days=rules.late_emergence_days)
          and canopy_p75 >= dense):
        # it came up in time but never reached a full canopy: planted, then lost or stunted
        yellow.append(reason("CANOPY_NOT_REACHED", p75=canopy_p75, min=cal.peak_ndvi_min))
    elif canopy_p75 < cal.peak_ndvi_min:
        late = obs[(d > np.datetime64(peak_w[1])) & (obs["p75"] >= cal.peak_ndvi_min)]
        if len(late):
            red.append(reason("CROP_MISMATCH_TIMING",
                              date=str(pd.Timestamp(late["time"].iloc[0]).date())))
        else:
            red.append(reason("NOT_PLANTED", p75=canopy_p75, min=cal.peak_ndvi_min))
    elif planted_fraction < rules.red_planted_fraction:
        red.append(reason("PARTIAL_PLANTING", pct=planted_fraction))
    elif planted_fraction < rules.yellow_planted_fraction:
        yellow.append(reason("PARTIAL_PLANTING", pct=planted_fraction))
    if not red and not yellow:
        if emergence is None:
            yellow.append(reason("NO_EMERGENCE"))
        elif emergence > emerg_w[1] + dt.timedelta(days=rules.late_emergence_days):
            yellow.append(reason("LATE_EMERGENCE", date=str(emergence)))
    if np.isfinite(ratio) and ratio < 1 - rules.area_tolerance:
        yellow.append(reason("AREA_SHORTFALL", measured=measured, declared=declared_mu,
                             ratio=ratio))
    elif np.isfinite(ratio) and ratio > 1 + rules.area_tolerance:
        info.append(reason("AREA_EXCESS", measured=measured, declared=declared_mu))
    if pixel_equivalents < rules.min_pixel_equivalents:
        yellow.append(reason("SMALL_PARCEL", n=pixel_equivalents))
    status = "red" if red else "yellow" if yellow else "green"
    reasons = red + yellow + info or [reason("PLANTED")]
    # confidence: enough clear looks (season and peak), enough pixels measured, a clear margin
    margin = min(1.0, abs(canopy_p75 - cal.peak_ndvi_min) / 0.1)
    confidence = (min(1.0, len(obs) / 10) * min(1.0, len(peak_obs) / 3)
                  * min(1.0, pixel_equivalents / 8) * (0.5 + 0.5 * margin))
    return {**row, "status": status, "confidence": round(confidence, 2), **join_reasons(reasons)}


def _green_through_sowing(obs, d, seedbed, sow, emerg_w, dense_ndvi: float,
                          rules: PlantingRules) -> bool:
    """True when the parcel was already green when the declared crop should have been sown.

    A bare seedbed (NDVI ≤ ``bare_ndvi_max``) among the ``seedbed`` looks (15 days before
    sowing to the end of emergence) clears the parcel. If none was seen, it was green through sowing when
    (a) a dense canopy (NDVI > ``dense_ndvi``) covered every look inside the sowing window — a
    meadow or perennial — or (b) its NDVI only rose from a month before the sowing window on —
    a crop sown earlier. A previous crop still senescing in the window fits neither (its NDVI
    falls, and clouds may hide the bare soil after its harvest).
    """
    if len(seedbed) == 0 or (seedbed["mean"] <= rules.bare_ndvi_max).any():
        return False
    in_window = obs[_in(d, sow)]["mean"].to_numpy()
    if len(in_window) >= 2 and in_window.min() > dense_ndvi:
        return True
    context = obs[_in(d, (sow[0] - LOOKBACK, emerg_w[1]))]["mean"].to_numpy()
    return len(context) >= 3 and bool(np.all(np.diff(context) >= -0.03))


def _canopy_reference(series: xr.Dataset, parcels: pd.DataFrame, clear: np.ndarray,
                      rules: PlantingRules) -> np.ndarray:
    """Per parcel and date, its canopy relative to healthy parcels of the same declared crop:
    ``(NDVI − soil) / (p90 of the crop's parcels − soil)`` (NaN with < 10 such parcels).

    Soil is the batch's 5th percentile of clear NDVI (every season has bare soil somewhere)."""
    mean = np.where(clear, series["ndvi_mean"].values, np.nan)
    cover = np.full(mean.shape, np.nan)
    if not np.isfinite(mean).any():
        return cover
    soil = float(np.nanpercentile(mean, 5))
    row = {pid: i for i, pid in enumerate(series["parcel_id"].values)}
    crops = pd.Series([None] * len(row), dtype=object)
    for rec in parcels.itertuples(index=False):
        if str(rec.parcel_id) in row:
            crops[row[str(rec.parcel_id)]] = rec.crop
    for crop in crops.dropna().unique():
        members = np.flatnonzero((crops == crop).to_numpy())
        if len(members) < 10:
            continue
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-cloudy dates
            full = np.nanpercentile(mean[members], 90, axis=0)
            cover[members] = (mean[members] - soil) / (full - soil)
        cover[np.ix_(members, np.flatnonzero(~(full - soil > 0.2)))] = np.nan  # no canopy yet
    return np.clip(cover, 0.0, 1.0)


def verify_planting(series: xr.Dataset, parcels: pd.DataFrame, calendars: dict, season: Season,
                    rules: PlantingRules = PlantingRules(), *, region: str | None = None
                    ) -> pd.DataFrame:
    """One verdict per parcel (every input parcel appears, in input order).

    Parameters
    ----------
    series : parcel-series Dataset (dims parcel, time) covering the season.
    parcels : table with ``parcel_id``, ``crop``, ``declared_area_mu``, ``area_mu`` (measured
        polygon area) and, from validation, ``validity`` (ok|repaired|rejected) and
        ``validity_reasons``.
    calendars : from :func:`~agri_3s.decisions.calendar.load_calendars`.

    Examples
    --------
    >>> verdicts = verify_planting(series, parcels, load_calendars(), Season.parse(
    ...     "2024-10-01/2025-06-15"))                                    # doctest: +SKIP
    >>> verdicts["status"].value_counts()                                # doctest: +SKIP
    """
    s = series.sel(time=slice(np.datetime64(season.start - LOOKBACK), np.datetime64(season.end)))
    index = {pid: i for i, pid in enumerate(s["parcel_id"].values)}
    mean, p75, veg = (s[v].values for v in ("ndvi_mean", "ndvi_p75", "vegetated_fraction"))
    clear = s["clear_fraction"].values
    ok_all = (clear >= rules.min_clear_fraction) & np.isfinite(mean)
    cover = _canopy_reference(s, parcels, ok_all, rules)
    times = s["time"].values
    rows = []
    for rec in parcels.itertuples(index=False):
        pid = str(rec.parcel_id)
        base = {"parcel_id": pid, "policy_id": getattr(rec, "policy_id", None), "crop": rec.crop,
                "declared_area_mu": rec.declared_area_mu, "parcel_area_mu": rec.area_mu}
        if getattr(rec, "validity", "ok") == "rejected":
            rows.append({**base, "status": "invalid", "reasons": rec.validity_reasons,
                         "reasons_zh": getattr(rec, "validity_reasons_zh", rec.validity_reasons),
                         "reasons_en": getattr(rec, "validity_reasons_en", rec.validity_reasons)})
            continue
        cal = calendar_for(calendars, rec.crop, region)
        i = index.get(pid)
        if cal is None:
            rows.append({**base, "status": "no_data",
                         **join_reasons([reason("UNKNOWN_CROP", crop=rec.crop)])})
            continue
        full = int(s["full_pixels"].values[i]) if i is not None else 0
        base.update(full_pixels=full, pixel_rule=str(s["pixel_rule"].values[i]) if i is not None
                    else "none")
        if i is None or float(s["weight_sum"].values[i]) == 0:
            rows.append({**base, "status": "no_data", **join_reasons([reason("NO_PIXELS")])})
            continue
        ok = ok_all[i]
        obs = pd.DataFrame({"time": times[ok], "mean": mean[i][ok], "p75": p75[i][ok],
                            "veg": veg[i][ok], "cover": cover[i][ok]}).reset_index(drop=True)
        rows.append({**base, **_verdict_row(obs, cal, season, rules, rec.area_mu,
                                            rec.declared_area_mu,
                                            float(s["weight_sum"].values[i]), full)})
    cols = ["parcel_id", "policy_id", "crop", "status", "reasons", "reasons_zh", "reasons_en",
            "planted_fraction", "emergence_date", "peak_ndvi", "peak_date", "measured_area_mu",
            "declared_area_mu", "parcel_area_mu", "area_ratio", "clear_observations",
            "full_pixels", "pixel_rule", "confidence"]
    return pd.DataFrame(rows).reindex(columns=cols)
