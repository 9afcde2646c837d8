"""Loss assessment after an event: loss rate with a range, damaged area, grade.

Method (``baseline_method = "neighbours+own_pre"``): NDVI is turned into a canopy signal above
bare soil, ``s = NDVI − soil_ndvi`` (near-proportional to green cover). Healthy same-crop
neighbours (outside the event footprint, within ``neighbour_radius_m``) give, for each clear
post-event date, how much canopy an undamaged field kept or gained since before the event:
``g = s_post / s_pre`` (their median; p25/p75 for the range). The parcel's expected canopy is its
own pre-event canopy × g, and ``loss = 1 − s_post / (s_pre × g)``, clipped to [0, 1]; the loss
rate is the median over post-event dates. Neighbours carry the season's normal growth or
senescence, the parcel's own pre-event state carries its individual vigour.

Floods: the share of clear pixels with open water (NDWI > 0) shortly after the event is the
flooded (damaged) fraction; the loss rate in the damaged area is the parcel's loss / that share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from scipy.spatial import cKDTree

from ..errors import InputError
from ..reasons import reason
from ..tomlfile import read_toml

EVENT_TYPES = ("hail", "flood", "drought", "lodging", "freeze")


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    #: Day of the event (for a drought, its start).
    date: dt.date
    #: Last day of a lasting event (drought, long flood); ``None`` for one-day events.
    end: dt.date | None = None
    footprint: gpd.GeoDataFrame | None = field(default=None, compare=False)
    crops: tuple[str, ...] = ()
    source: str = ""

    @property
    def last_day(self) -> dt.date:
        return self.end or self.date


def load_event(path: str | Path) -> Event:
    """Read an event file (TOML: ``id``, ``type``, ``date`` or ``start``/``end``, optional
    ``footprint`` polygon file relative to the TOML, optional ``crops``)."""
    path = Path(path)
    data = read_toml(path, "event file")
    for key in ("id", "type"):
        if key not in data:
            raise InputError(f"the event has no '{key}'.", source=path,
                             fix='e.g. id = "hail-2025-05-14", type = "hail"')
    if data["type"] not in EVENT_TYPES:
        raise InputError(f"type {data['type']!r} is not one of {', '.join(EVENT_TYPES)}.",
                         source=path)
    try:
        start = data.get("date", data.get("start"))
        day = start if isinstance(start, dt.date) else dt.date.fromisoformat(str(start))
        end = data.get("end")
        end = end if isinstance(end, dt.date) or end is None else dt.date.fromisoformat(str(end))
    except (TypeError, ValueError) as exc:
        raise InputError("the event needs a date (YYYY-MM-DD) or start/end.", source=path,
                         fix='add date = "2025-05-14"') from exc
    footprint = None
    if data.get("footprint"):
        fp = (path.parent / data["footprint"]).resolve()
        try:
            footprint = gpd.read_file(fp)
        except Exception as exc:  # pyogrio raises several types for unreadable files
            raise InputError(f"footprint {fp} cannot be read ({exc}).", source=path) from exc
        if footprint.crs is None:
            raise InputError(f"footprint {fp} has no CRS.", source=path,
                             fix="save the footprint with its CRS (e.g. GeoJSON in EPSG:4326)")
    return Event(str(data["id"]), data["type"], day, end, footprint,
                 tuple(data.get("crops", ())), str(path))


@dataclass(frozen=True)
class LossParams:
    #: NDVI of bare soil / dead crop residue; ``None``: the batch's ``soil_percentile`` of
    #: clear parcel NDVI around the event (fallow land, harvested or destroyed fields are in
    #: every county), clipped to [0.05, 0.30].
    soil_ndvi: float | None = None
    soil_percentile: float = 2.0
    pre_days: int = 30
    min_clear_fraction: float = 0.6
    neighbour_radius_m: float = 3000.0
    min_neighbours: int = 5
    #: Below this parcel loss the parcel counts as undamaged (damaged area 0).
    detect_loss: float = 0.05
    #: Share of clear pixels under water that counts as flooded.
    min_water_fraction: float = 0.05
    #: Smallest half-width of the loss range: the method's error measured against known
    #: losses (sample county: hail MAE 0.054, flood 0.10; README, "Accuracy").
    method_error: float = 0.10
    #: Percentiles of the healthy neighbours' canopy change giving (low, central, high).
    range_percentiles: tuple[float, float, float] = (10.0, 50.0, 90.0)
    #: Loss-grade lower bounds: light, moderate, severe (total is the policy's total_loss_at).
    grade_bounds: tuple[float, float, float] = (0.10, 0.30, 0.50)


def post_windows(event: Event) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Days after the event's last day: (NDVI loss window, open-water window or None).

    Hail, lodging and freeze damage shows within days; flood damage once the water recedes;
    drought damage accumulates, so its window starts at the drought's end.
    """
    if event.type == "flood":
        return (10, 35), (0, 12)
    if event.type == "drought":
        return (0, 25), None
    return (2, 20), None


def loss_grade(loss_rate: float, total_loss_at: float, bounds=LossParams.grade_bounds) -> str:
    """none | light | moderate | severe | total (total from the policy's total-loss level)."""
    if not np.isfinite(loss_rate):
        return "unknown"
    if loss_rate >= total_loss_at:
        return "total"
    for name, lo in zip(("severe", "moderate", "light"), bounds[::-1]):
        if loss_rate >= lo:
            return name
    return "none"


def claim_id(event_id: str, policy_id: object, parcel_id: str) -> str:
    """Stable claim id: the same event, policy and parcel always give the same id."""
    key = f"{event_id}|{policy_id}|{parcel_id}".encode()
    return "CLM-" + hashlib.sha256(key).hexdigest()[:16].upper()


def soil_level(ndvi: np.ndarray, percentile: float = 2.0) -> float:
    """Bare-soil NDVI estimated from a batch's clear parcel NDVI, clipped to [0.05, 0.30]."""
    finite = ndvi[np.isfinite(ndvi)]
    return float(np.clip(np.percentile(finite, percentile), 0.05, 0.30)) if finite.size else 0.18


def _clear(series: xr.Dataset, params: LossParams) -> np.ndarray:
    """ndvi_mean where the parcel-date is clear enough, else NaN."""
    v = series["ndvi_mean"].values.astype(np.float64)
    return np.where(series["clear_fraction"].values >= params.min_clear_fraction, v, np.nan)


def estimate_losses(series: xr.Dataset, parcels: gpd.GeoDataFrame, event: Event,
                    params: LossParams = LossParams()) -> pd.DataFrame:
    """Per-parcel loss estimate (before policy terms), every parcel in input order.

    ``parcels`` needs ``parcel_id``, ``crop``, ``area_mu`` and a metric-CRS geometry;
    ``series`` must cover ``pre_days`` before to the end of the post-event windows.
    Returns ``parcel_id, loss_rate, loss_rate_low, loss_rate_high, parcel_loss_rate,
    damaged_fraction, flooded_fraction, in_footprint, n_neighbours, imagery_dates, status,
    reason_items`` (a list of reason tuples, joined into text columns by the claims table),
    ``soil_ndvi`` (the bare-soil level used).
    """
    times = series["time"].values.astype("datetime64[D]")
    index = {pid: i for i, pid in enumerate(series["parcel_id"].values)}
    ndvi = _clear(series, params)
    water = np.where(series["clear_fraction"].values >= params.min_clear_fraction,
                     series["water_fraction"].values, np.nan)
    ev0, ev1 = np.datetime64(event.date), np.datetime64(event.last_day)
    pre_mask = (times < ev0) & (times >= ev0 - np.timedelta64(params.pre_days, "D"))
    (a, b), water_w = post_windows(event)
    post_mask = (times >= ev1 + np.timedelta64(a, "D")) & (times <= ev1 + np.timedelta64(b, "D"))
    soil = (params.soil_ndvi if params.soil_ndvi is not None
            else soil_level(ndvi, params.soil_percentile))

    row_of = np.array([index.get(str(p), -1) for p in parcels["parcel_id"]])
    # own pre-event canopy: mean of the last two clear observations before the event
    pre = np.full(len(parcels), np.nan)
    pre_dates = [[] for _ in range(len(parcels))]
    for k, i in enumerate(row_of):
        if i < 0:
            continue
        idx = np.flatnonzero(pre_mask & np.isfinite(ndvi[i]))[-2:]
        if len(idx):
            pre[k] = ndvi[i, idx].mean()
            pre_dates[k] = [str(times[j]) for j in idx]
    s_pre = pre - soil

    in_fp = np.ones(len(parcels), bool)
    if event.footprint is not None:
        fp = event.footprint.to_crs(parcels.crs).union_all()
        in_fp = parcels.geometry.intersects(fp).to_numpy()
    crop_ok = (parcels["crop"].isin(event.crops).to_numpy() if event.crops
               else np.ones(len(parcels), bool))
    centroids = np.column_stack([parcels.geometry.centroid.x, parcels.geometry.centroid.y])
    tree = cKDTree(centroids)
    post_idx = np.flatnonzero(post_mask)
    # canopy kept by each parcel at each post date, relative to its own pre-event canopy
    kept = np.full((len(parcels), len(post_idx)), np.nan)
    valid_rows = row_of >= 0
    kept[valid_rows] = ((ndvi[row_of[valid_rows]][:, post_idx] - soil)
                        / s_pre[valid_rows, None])
    kept[~(s_pre > 0.1)] = np.nan  # no canopy before the event: nothing to compare
    healthy = ~in_fp if event.footprint is not None else np.ones(len(parcels), bool)
    crops = parcels["crop"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # parcels with no clear post look
        kept_score = np.nanmedian(kept, axis=1) if kept.size else np.full(len(parcels), np.nan)

    rows = []
    for k, pid in enumerate(parcels["parcel_id"].astype(str)):
        out = {"parcel_id": pid, "in_footprint": bool(in_fp[k]), "loss_rate": np.nan,
               "loss_rate_low": np.nan, "loss_rate_high": np.nan, "parcel_loss_rate": np.nan,
               "damaged_fraction": np.nan, "flooded_fraction": np.nan, "n_neighbours": 0,
               "imagery_dates": "", "soil_ndvi": soil}
        if not crop_ok[k]:
            rows.append({**out, "status": "not_affected",
                         "reason_items": [reason("NOT_AFFECTED_CROP", crop=crops[k])]})
            continue
        if row_of[k] < 0 or not np.isfinite(pre[k]):
            rows.append({**out, "status": "no_data",
                         "reason_items": [reason("NO_PRE_EVENT_OBS", days=params.pre_days)]})
            continue
        near = [j for j in tree.query_ball_point(centroids[k], params.neighbour_radius_m)
                if j != k and crops[j] == crops[k] and healthy[j]]
        if len(near) < params.min_neighbours:  # widen to the whole batch
            near = [j for j in range(len(parcels))
                    if j != k and crops[j] == crops[k] and healthy[j]]
        if event.footprint is None and near:  # no footprint: the better-kept half is "healthy"
            score = kept_score[near]
            near = [j for j, sc in zip(near, score) if np.isfinite(sc) and
                    sc >= np.nanmedian(score)]
        own = kept[k]
        est = []
        used_dates = []
        for t, gj in enumerate(kept[near].T if near else []):
            gj = gj[np.isfinite(gj)]
            if not np.isfinite(own[t]) or len(gj) < 3:
                continue
            g_lo, g50, g_hi = np.maximum(np.percentile(gj, params.range_percentiles), 0.05)
            # a lower expected canopy (g_lo) gives the low end of the loss range
            est.append([1 - own[t] / g50, 1 - own[t] / g_lo, 1 - own[t] / g_hi])
            used_dates.append(str(times[post_idx[t]]))
        reasons = [reason("LOSS_ESTIMATED")]
        if len(near) < params.min_neighbours:
            reasons.append(reason("FEW_NEIGHBOURS", n=len(near)))
        if not est:
            rows.append({**out, "n_neighbours": len(near), "status": "no_data",
                         "reason_items": [reason("NO_POST_EVENT_OBS")]})
            continue
        est = np.clip(np.array(est), 0.0, 1.0)
        parcel_loss = float(np.median(est[:, 0]))
        # range: how healthy neighbours vary, how the parcel's own looks disagree, and at
        # least the method's own validated error
        low = min(float(np.median(est[:, 1])), float(est[:, 0].min()),
                  parcel_loss - params.method_error)
        high = max(float(np.median(est[:, 2])), float(est[:, 0].max()),
                   parcel_loss + params.method_error)
        low, high = max(0.0, low), min(1.0, high)
        damaged = 1.0 if parcel_loss >= params.detect_loss else 0.0
        flooded = np.nan
        if water_w is not None:
            wmask = ((times >= ev0 + np.timedelta64(water_w[0], "D"))
                     & (times <= ev1 + np.timedelta64(water_w[1], "D")))
            seen = water[row_of[k], wmask]
            if np.isfinite(seen).any():
                flooded = float(np.nanmax(seen))
                if flooded >= params.min_water_fraction:
                    damaged = flooded
                    reasons.append(reason("FLOODED", pct=flooded))
        if not in_fp[k]:
            reasons.append(reason("OUTSIDE_FOOTPRINT"))
        scale = 1.0 / damaged if damaged > 0 else 1.0  # loss inside the damaged area
        dates = pre_dates[k] + used_dates
        rows.append({**out, "loss_rate": min(1.0, parcel_loss * scale),
                     "loss_rate_low": min(1.0, low * scale),
                     "loss_rate_high": min(1.0, high * scale),
                     "parcel_loss_rate": parcel_loss, "damaged_fraction": damaged,
                     "flooded_fraction": flooded, "n_neighbours": len(near),
                     "imagery_dates": ";".join(dates),
                     "status": "estimated" if in_fp[k] else "not_affected",
                     "reason_items": reasons})
    return pd.DataFrame(rows)
