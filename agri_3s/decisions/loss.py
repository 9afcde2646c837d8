"""Loss assessment after an event: loss rate with a range, damaged area, grade — array code
over the batch's (parcel × time) series, one k-d tree query per crop for the neighbours.

Method: NDVI is turned into a canopy signal above the parcel's **own** bare soil,
``s = NDVI − soil`` (near-proportional to green cover; the soil level comes from the parcel's
own bare looks — seedbed, stubble — else from the same-crop parcels around it, else from the
batch). Healthy parcels of the same crop (entirely outside the event footprint) give, for each
clear post-event date, how much canopy an undamaged field kept or gained since before the
event: ``g = s_post / s_pre`` (their median; the 10th / 90th percentiles for the range). The
parcel's expected canopy is its own pre-event canopy × g, and ``loss = 1 − s_post / (s_pre ×
g)``, clipped to [0, 1]; the loss rate is the median over the post-event dates. Neighbours
carry the season's normal growth or senescence, the parcel's own pre-event state its vigour.

Baselines, in order (``baseline_method``): ≥ ``min_neighbours`` healthy neighbours within
``neighbour_radius_m`` (``neighbours+own_pre``); else the ``far_neighbours`` nearest at any
distance (``far_neighbours+own_pre``); else — or when those are beyond ``far_radius_m`` — the
parcel's own past seasons over the same calendar window, when the series reaches a year back
(``own_past+own_pre``).

Range: ``[loss_rate_low, loss_rate_high]`` spans the healthy neighbours' 10th–90th
percentiles, the spread of the parcel's own post-event looks, and at least ± ``method_error``
(± ``fallback_error`` for far neighbours and past seasons). Without a footprint every parcel
may be hit, and the better-kept half of each parcel's neighbours serves as the healthy ones.

Footprint: a parcel is hit when at least ``min_footprint_share`` of its area lies inside the
footprint; parcels partly inside (edge parcels) are neither assessed as hit nor used as healthy
neighbours; healthy neighbours have at most ``healthy_share_max`` inside (digitising slack).

Floods: the share of clear pixels with open water (NDWI > 0) shortly after the event is the
flooded (damaged) fraction; the loss rate in the damaged area is the parcel's loss / that share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..tomlfile import check_keys, read_toml
from ..types import TEXT_MAX_LENGTH
from .arrays import nan_median, nan_quantiles, nan_reduce
from .canopy import last_looks, own_soil_levels, past_season_change
from .neighbours import (
    centroids,
    footprint_shares,
    gather,
    nearest_parcels,
    parcel_geometries,
    region_median,
)
from .reason_arrays import BatchReasons

EVENT_TYPES = ("hail", "flood", "drought", "lodging", "freeze")
#: The keys of an event file: a misspelt one (``foot_print``) is refused, never ignored.
EVENT_KEYS = ("id", "type", "date", "start", "end", "footprint", "crops")
#: Parcels per block of the estimate (bounds the neighbours × dates working arrays).
CHUNK = 65_536


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
    check_keys(data, EVENT_KEYS, where="the event file", source=path)
    for key in ("id", "type"):
        if key not in data:
            raise InputError(f"the event has no '{key}'.", source=path,
                             fix='e.g. id = "hail-2025-05-14", type = "hail"')
    if len(str(data["id"])) > TEXT_MAX_LENGTH:  # it goes into every claim and posting list
        raise InputError(f"the event id is {len(str(data['id']))} characters long, above the "
                         f"limit of {TEXT_MAX_LENGTH}.", source=path,
                         fix='give the event a shorter id (e.g. id = "hail-2025-05-14")')
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
    #: NDVI of bare soil for every parcel; ``None``: each parcel's own level (see below).
    soil_ndvi: float | None = None
    #: A parcel's own soil level: its ``soil_rank``-th lowest clear look outside the event's
    #: aftermath, single-look dips (missed haze / shadow) removed …
    soil_rank: int = 1
    #: … accepted as soil when at or below this (else: the same-crop parcels around it, else
    #: the batch's median own level).
    soil_max: float = 0.35
    soil_dip: float = 0.10
    pre_days: int = 30
    #: Days of imagery before the event an ``assess`` job reads: a year holds every bare
    #: spell of the rotation (seedbeds, stubble) for the soil level; ≥ 365 + ``pre_days``
    #: also gives the parcel's own past season as a fallback baseline.
    history_days: int = 365
    min_clear_fraction: float = 0.6
    neighbour_radius_m: float = 3000.0
    min_neighbours: int = 5
    #: Most neighbours used per parcel (the nearest), within the radius.
    max_neighbours: int = 30
    #: With fewer than ``min_neighbours`` near: this many nearest at any distance …
    far_neighbours: int = 10
    #: … unless farther than this and the parcel's own past seasons are in the series.
    far_radius_m: float = 50_000.0
    #: Share of a parcel's area inside the footprint from which it is hit.
    min_footprint_share: float = 0.5
    #: Largest share inside the footprint of a healthy neighbour (digitising slack).
    healthy_share_max: float = 0.02
    #: Least pre-event canopy above soil (NDVI) for a loss to be measurable.
    min_pre_canopy: float = 0.10
    #: Below this parcel loss the parcel counts as undamaged (damaged area 0).
    detect_loss: float = 0.05
    #: Share of clear pixels under water that counts as flooded.
    min_water_fraction: float = 0.05
    #: Smallest half-width of the loss range, from the method's errors against known losses
    #: (README, "Accuracy"): real Kenyan maize series with injected hail, MAE 0.07 with a long
    #: tail — ±0.12 holds the truth for 90 % of parcels.
    method_error: float = 0.12
    #: Smallest half-width when the baseline is far neighbours or the parcel's past seasons.
    fallback_error: float = 0.15
    #: Percentiles of the healthy neighbours' canopy change giving (low, central, high).
    range_percentiles: tuple[float, float, float] = (10.0, 50.0, 90.0)
    #: Loss-grade lower bounds: light, moderate, severe (total is the policy's total_loss_at).
    grade_bounds: tuple[float, float, float] = (0.10, 0.30, 0.50)


def post_windows(event: Event) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Days after the event's last day: (NDVI loss window, open-water window or None).

    Hail, lodging and freeze damage shows within days; flood damage once the water recedes;
    drought damage accumulates, so its window starts at the drought's end.

    >>> post_windows(Event("e", "flood", dt.date(2025, 7, 22)))
    ((10, 35), (0, 12))
    """
    if event.type == "flood":
        return (10, 35), (0, 12)
    if event.type == "drought":
        return (0, 25), None
    return (2, 20), None


def loss_grades(loss_rate: np.ndarray, total_loss_at: np.ndarray | float,
                bounds: tuple[float, float, float] = LossParams.grade_bounds) -> np.ndarray:
    """none | light | moderate | severe | total | unknown per parcel (total from each policy's
    total-loss level).

    >>> loss_grades(np.array([0.05, 0.4, 0.9, np.nan]), 0.8).tolist()
    ['none', 'moderate', 'total', 'unknown']
    """
    rate = np.asarray(loss_rate, np.float64)
    light, moderate, severe = bounds
    return np.select([~np.isfinite(rate), rate >= total_loss_at, rate >= severe,
                      rate >= moderate, rate >= light],
                     ["unknown", "total", "severe", "moderate", "light"], "none").astype(object)


def loss_grade(loss_rate: float, total_loss_at: float, bounds=LossParams.grade_bounds) -> str:
    """One parcel's grade (see :func:`loss_grades`).

    >>> loss_grade(0.6, 0.8)
    'severe'
    """
    return str(loss_grades(np.array([loss_rate]), total_loss_at, bounds)[0])


def claim_id(event_id: str, policy_id: object, parcel_id: str) -> str:
    """Stable claim id: the same event, policy and parcel always give the same id.

    >>> claim_id("hail-1", "P1", "DK01") == claim_id("hail-1", "P1", "DK01")
    True
    """
    key = f"{event_id}|{policy_id}|{parcel_id}".encode()
    return "CLM-" + hashlib.sha256(key).hexdigest()[:16].upper()


def claim_ids(event_id: str, policy_ids, parcel_ids) -> np.ndarray:
    """:func:`claim_id` for a batch (one hash per id: the only per-parcel Python step).

    >>> claim_ids("hail-1", ["P1", "P1"], ["DK01", "DK02"])[0] == claim_id("hail-1", "P1", "DK01")
    True
    """
    return np.array([claim_id(event_id, pol, pid) for pol, pid in zip(policy_ids, parcel_ids)],
                    dtype=object)


def soil_level(ndvi: np.ndarray, percentile: float = 2.0) -> float:
    """One bare-soil NDVI for a whole batch: its ``percentile`` of clear parcel NDVI, clipped to
    [0.05, 0.30] (the last resort when no parcel shows bare looks of its own).

    >>> soil_level(np.array([0.1, 0.5, np.nan]), 0)
    0.1
    """
    finite = ndvi[np.isfinite(ndvi)]
    return float(np.clip(np.percentile(finite, percentile), 0.05, 0.30)) if finite.size else 0.18


def history_start(event: Event, params: LossParams) -> dt.date:
    """First day of imagery an ``assess`` job reads: ``history_days`` before the event (at
    least ``pre_days`` + 5).

    >>> history_start(Event("h", "hail", dt.date(2025, 5, 14)), LossParams())
    datetime.date(2024, 5, 14)
    """
    return event.date - dt.timedelta(days=max(params.history_days, params.pre_days + 5))


def _date_mask(times: np.ndarray, start: np.datetime64, end: np.datetime64) -> np.ndarray:
    return (times >= start) & (times <= end)


def _looks(series: xr.Dataset, rows: np.ndarray, name: str, params: LossParams) -> np.ndarray:
    """Clear values of variable ``name`` for series rows ``rows`` (NaN where not clear)."""
    if name not in series:
        return np.full((len(rows), series.sizes["time"]), np.nan, np.float32)
    values = series[name].values[rows]
    clear = series["clear_fraction"].values[rows] >= params.min_clear_fraction
    return np.where(clear, values, np.nan).astype(np.float32)


def _soil(own: np.ndarray, xy, crops, params: LossParams
          ) -> tuple[np.ndarray, np.ndarray]:
    """Bare-soil level and its source per parcel: own | neighbours | batch | param."""
    n = len(own)
    if params.soil_ndvi is not None:
        return np.full(n, float(params.soil_ndvi)), np.full(n, "param", dtype=object)
    ok = np.isfinite(own) & (own <= params.soil_max)
    soil = np.where(ok, own, np.nan)
    source = np.where(ok, "own", "batch").astype(object)
    if ok.any() and not ok.all():
        region = region_median(soil, xy, crops, ~ok, params.max_neighbours,
                               params.neighbour_radius_m, 3)
        found = ~ok & np.isfinite(region)
        soil[found], source[found] = region[found], "neighbours"
    batch = float(np.median(own[ok])) if ok.any() else soil_level(own)
    soil[~np.isfinite(soil)] = batch
    return soil, source


def _date_strings(used: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``;``-joined dates of each parcel's used looks, one join per distinct pattern."""
    if not used.shape[1]:
        return np.full(len(used), "", dtype=object)
    packed = np.packbits(used, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1])))[:, 0]
    distinct, which = np.unique(keys, return_inverse=True)
    labels = np.array([str(t)[:10] for t in times], dtype=object)
    bits = np.unpackbits(distinct.view(np.uint8).reshape(len(distinct), -1), axis=1)
    texts = np.array([";".join(labels[b[:len(labels)].astype(bool)]) for b in bits],
                     dtype=object)
    return texts[which.ravel()]


def estimate_losses(series: xr.Dataset, parcels: gpd.GeoDataFrame, event: Event,
                    params: LossParams = LossParams()) -> pd.DataFrame:
    """Per-parcel loss estimate (before policy terms), every parcel in input order.

    ``parcels`` needs ``parcel_id``, ``crop`` and a metric-CRS geometry; ``series`` must
    cover ``pre_days`` before to the end of the post-event windows (and, for each parcel's own
    soil level, its bare looks: the longer back, the better). Returns ``parcel_id, loss_rate,
    loss_rate_low, loss_rate_high, parcel_loss_rate, damaged_fraction, flooded_fraction,
    footprint_share, in_footprint, n_neighbours, neighbour_distance_m, baseline_method,
    soil_ndvi, soil_source, imagery_dates, status`` (``estimated`` | ``edge`` |
    ``not_affected`` | ``no_data``) and the reason columns ``reasons, reasons_zh,
    reasons_en``.

    Examples
    --------
    >>> estimate_losses(series, parcels, load_event("hail.toml"))       # doctest: +SKIP
    """
    n = len(parcels)
    times = series["time"].values.astype("datetime64[D]")
    pids = parcels["parcel_id"].astype(str).to_numpy()
    row_of = pd.Index(series["parcel_id"].values.astype(str)).get_indexer(pids)
    has_row = row_of >= 0
    ev0, ev1 = np.datetime64(event.date, "D"), np.datetime64(event.last_day, "D")
    (a, b), water_w = post_windows(event)
    pre_mask = (times < ev0) & (times >= ev0 - np.timedelta64(params.pre_days, "D"))
    post_cols = np.flatnonzero(_date_mask(times, ev1 + np.timedelta64(a, "D"),
                                          ev1 + np.timedelta64(b, "D")))
    pre_cols = np.flatnonzero(pre_mask)
    water_cols = (np.flatnonzero(_date_mask(times, ev0 + np.timedelta64(water_w[0], "D"),
                                            ev1 + np.timedelta64(water_w[1], "D")))
                  if water_w else np.array([], np.intp))
    aftermath = _date_mask(times, ev0, ev1 + np.timedelta64(b, "D"))

    # --- stage 1, per block of parcels: own soil, pre-event canopy, post looks, water
    own = np.full(n, np.nan)
    pre = np.full(n, np.nan)
    pre_used = np.zeros((n, len(pre_cols)), bool)
    post = np.full((n, len(post_cols)), np.nan, np.float32)
    flooded = np.full(n, np.nan)
    rows_with = np.flatnonzero(has_row)
    for start in range(0, rows_with.size, CHUNK):
        k = rows_with[start:start + CHUNK]
        v = _looks(series, row_of[k], "ndvi_mean", params)
        water = _looks(series, row_of[k], "water_fraction", params)
        usable = (np.isfinite(v) & ~aftermath[None, :] & (v >= 0.0)
                  & ~(water >= params.min_water_fraction))
        own[k] = own_soil_levels(v, usable, params.soil_rank, params.soil_dip)
        pre[k], pre_used[k] = last_looks(v[:, pre_cols])
        post[k] = v[:, post_cols]
        if water_cols.size:
            flooded[k] = nan_reduce(np.nanmax, water[:, water_cols].astype(np.float64))

    # --- stage 2: soil level per parcel; where the event fell; who is healthy
    geoms = parcel_geometries(parcels)
    xy = centroids(geoms)
    crops = parcels["crop"].astype(str).to_numpy()
    soil, soil_source = _soil(own, xy, crops, params)
    soil[~has_row] = np.nan
    s_pre = pre - soil
    canopy = s_pre >= params.min_pre_canopy
    with np.errstate(invalid="ignore", divide="ignore"):
        kept = np.where(canopy[:, None], (post - soil[:, None]) / s_pre[:, None],
                        np.nan).astype(np.float32)
    has_post = np.isfinite(kept).any(axis=1)
    if event.footprint is not None:
        fp = event.footprint.to_crs(parcels.crs).geometry.make_valid().union_all()
        share = footprint_shares(geoms, fp)
        in_event = share >= params.min_footprint_share
        healthy = share <= params.healthy_share_max
    else:
        share = np.full(n, np.nan)
        in_event = healthy = np.ones(n, bool)
    edge = ~in_event & ~healthy & np.isfinite(share)
    crop_ok = (np.isin(crops, list(event.crops)) if event.crops else np.ones(n, bool))
    assess = crop_ok & has_row & canopy
    candidate = assess & healthy & has_post

    # --- stage 3: baselines — near neighbours, far neighbours, own past seasons
    width = max(params.max_neighbours, params.far_neighbours)
    idx, _ = nearest_parcels(xy, crops, assess, candidate, params.max_neighbours,
                             params.neighbour_radius_m, width=width, distances=False)
    n_near = (idx >= 0).sum(axis=1)
    few = assess & (n_near < params.min_neighbours)
    far_idx, far_dist = nearest_parcels(xy, crops, few, candidate, params.far_neighbours)
    n_far = (far_idx >= 0).sum(axis=1)
    far_d = nan_reduce(np.nanmax, np.where(far_idx >= 0, far_dist, np.nan).astype(np.float64))
    g_past = np.full((n, len(post_cols)), np.nan, np.float32)
    years = np.zeros(n, np.int64)
    want_past = few & ((n_far < 3) | (far_d > params.far_radius_m))
    rows_past = np.flatnonzero(want_past)
    for start in range(0, rows_past.size, CHUNK):
        k = rows_past[start:start + CHUNK]
        v = _looks(series, row_of[k], "ndvi_mean", params)
        g_past[k], years[k] = past_season_change(v, times, ev0, params.pre_days,
                                                 times[post_cols], soil[k],
                                                 params.min_pre_canopy)
    past = want_past & (years > 0)
    far = few & ~past & (n_far >= 3)
    idx[far, :far_idx.shape[1]] = far_idx[far]
    idx[far, far_idx.shape[1]:] = -1
    idx[few & ~far] = -1
    method = np.select([past, far, assess & ~few], ["own_past+own_pre", "far_neighbours+own_pre",
                                                    "neighbours+own_pre"], "").astype(object)

    # --- stage 4, per block: the neighbours' canopy change → loss and its range
    loss = np.full(n, np.nan)
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    used_post = np.zeros((n, len(post_cols)), bool)
    n_used = np.zeros(n, np.int64)
    score = nan_median(kept, axis=1) if kept.shape[1] else np.full(n, np.nan)
    todo = np.flatnonzero(assess & (method != "") & has_post)
    floor = np.where(far | past, params.fallback_error, params.method_error)
    for start in range(0, todo.size, CHUNK):
        k = todo[start:start + CHUNK]
        nb = idx[k]
        if event.footprint is None:  # no footprint: the better-kept half are the healthy ones
            sc = gather(score, nb)
            nb = np.where(sc >= nan_median(sc, axis=1)[:, None], nb, -1)
        g = gather(kept, nb)  # (block, neighbours, dates)
        g_lo, g50, g_hi = np.maximum(nan_quantiles(g, params.range_percentiles, axis=1), 0.05)
        enough = np.isfinite(g).sum(axis=1) >= 3
        from_past = past[k]
        if from_past.any():
            gp = np.maximum(g_past[k][from_past], 0.05)
            g_lo[from_past] = g50[from_past] = g_hi[from_past] = gp
            enough[from_past] = np.isfinite(gp)
        own_k = kept[k]
        ok = enough & np.isfinite(own_k)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = np.clip(1.0 - own_k[None] / np.stack([g50, g_lo, g_hi]), 0.0, 1.0)
        est = np.where(ok[None], est, np.nan)
        mid = nan_median(est[0], axis=1)
        loss[k] = mid
        low[k] = np.fmin(np.fmin(nan_median(est[1], axis=1), nan_reduce(np.nanmin, est[0])),
                         mid - floor[k])
        high[k] = np.fmax(np.fmax(nan_median(est[2], axis=1), nan_reduce(np.nanmax, est[0])),
                          mid + floor[k])
        used_post[k] = ok
        n_used[k] = np.where(from_past, 0, (nb >= 0).sum(axis=1))
    low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    estimated = np.isfinite(loss)

    # --- damaged share (floods: the water seen), loss in the damaged area
    damaged = np.where(estimated, (loss >= params.detect_loss).astype(np.float64), np.nan)
    wet = estimated & (flooded >= params.min_water_fraction)
    damaged[wet] = flooded[wet]
    scale = np.where(damaged > 0, 1.0 / np.where(damaged > 0, damaged, 1.0), 1.0)
    outside = ~in_event & ~edge  # outside the footprint: not claimed, whatever the data
    status = np.select([~crop_ok | outside, ~estimated, in_event],
                       ["not_affected", "no_data", "estimated"], "edge").astype(object)

    reasons = BatchReasons.empty(n)
    reasons.add("NOT_AFFECTED_CROP", ~crop_ok, crop=crops)
    no_pre = crop_ok & ~np.isfinite(pre)
    reasons.add("NO_PRE_EVENT_OBS", no_pre, days=params.pre_days)
    no_canopy = crop_ok & ~no_pre & ~canopy
    reasons.add("NO_PRE_EVENT_CANOPY", no_canopy, ndvi=np.round(pre, 2),
                soil=np.round(soil, 2), min=params.min_pre_canopy)
    reasons.add("LOSS_ESTIMATED", estimated)
    reasons.add("FEW_NEIGHBOURS", assess & few & has_post, n=n_near)
    reasons.add("FAR_NEIGHBOURS", far, n=n_used, km=np.round(far_d / 1000.0, 1))
    reasons.add("OWN_PAST_SEASONS", past, years=years)
    no_post = assess & ~has_post
    reasons.add("NO_POST_EVENT_OBS", no_post)
    reasons.add("NO_BASELINE", assess & has_post & (method == ""))
    reasons.add("NO_COMMON_CLEAR_DATE", assess & has_post & (method != "") & ~estimated)
    reasons.add("FLOODED", wet, pct=np.round(flooded, 2))
    reasons.add("FOOTPRINT_EDGE", crop_ok & edge, share=np.round(share, 2),
                min=params.min_footprint_share)
    reasons.add("OUTSIDE_FOOTPRINT", crop_ok & outside)

    dates = _date_strings(np.concatenate([pre_used & estimated[:, None], used_post], axis=1),
                          np.concatenate([times[pre_cols], times[post_cols]]))
    return pd.DataFrame({
        "parcel_id": pids,
        "loss_rate": np.minimum(1.0, loss * scale), "loss_rate_low": np.minimum(1.0, low * scale),
        "loss_rate_high": np.minimum(1.0, high * scale), "parcel_loss_rate": loss,
        "damaged_fraction": damaged, "flooded_fraction": np.where(estimated, flooded, np.nan),
        "footprint_share": share, "in_footprint": in_event, "n_neighbours": n_used,
        "neighbour_distance_m": np.where(far, far_d, np.nan),
        "baseline_method": np.where(estimated, method, ""),
        "soil_ndvi": soil, "soil_source": np.where(has_row, soil_source, ""),
        "imagery_dates": pd.Series(dates, dtype=object), "status": pd.Series(status, dtype=object),
        **reasons.columns()})
