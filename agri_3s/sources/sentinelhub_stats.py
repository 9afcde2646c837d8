"""Parcel series from Sentinel Hub's Statistical API and Batch Statistical API (no images).

Both return the parcel-series contract plus two per-parcel coordinates saying what the service
gave: ``source_status`` (``ok`` | ``partial`` | ``no_data``) and ``source_reason`` (empty when
``ok``; else the service's own words: an interval's error type, a ``FAILED`` status, a request
that failed after its retries, a batch result that was never written, or "no acquisition").
A failed day of a parcel is NaN in every variable (unobserved, never a measurement), a failed
parcel is NaN throughout with ``full_pixels = 0``; every other parcel is kept. With
``fail_on_error=True`` the first failure raises :class:`~agri_3s.errors.ImageryError` naming
the parcel (and the date when the service names one) instead.

Formats, from Sentinel Hub's published OpenAPI schema (https://docs.sentinel-hub.com/api/latest/
reference/, components ``StatisticalResponse``, ``StatisticsDefinition``, ``BandStatistics``):
a response is ``{"status": "OK" | "PARTIAL" | "FAILED", "data": [{"interval", "outputs"} |
{"interval", "error": {"type": "BAD_REQUEST" | "EXECUTION_ERROR" | "TIMEOUT"}}]}``;
``percentiles.k`` is "an array of values between [0,1]" (items minimum 0, maximum 1) and the
answer maps each percentile to its value.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from pyproj import Transformer

from ..crs import require_crs, utm_crs_for
from ..errors import ImageryError, InputError
from .base import INVALID_SCL
from .sentinelhub import (
    RESOLUTION_M,
    STATS_MARKER,
    _collection,
    _Connection,
    _input_data,
)

LOGGER = logging.getLogger(__name__)

#: The NDVI percentiles of the series (``ndvi_p25``, ``ndvi_p50``, ``ndvi_p75``), as fractions.
PERCENTILES = (0.25, 0.50, 0.75)
#: Scale of ``percentiles.k`` in requests: 1 = the [0, 1] fractions of the published schema.
#: Many public clients send 25/50/75 instead; if the service you use reads ``k`` as percent,
#: the check below stops the run, and setting this to 100 follows that service.
PERCENTILE_SCALE = 1.0
#: The k = 1 percentile is also requested: it must equal the ``max`` statistic. A service that
#: read ``k`` as percent would answer the 1st percentile (near ``min``), which is detected.
_CHECK_K = 1.0
_VARIABLES = ("ndvi_mean", "ndvi_p25", "ndvi_p50", "ndvi_p75", "clear_fraction", "n_pixels",
              "vegetated_fraction", "water_fraction")
_MAX_LISTED = 5


def stats_evalscript() -> str:
    """NDVI, vegetated (NDVI ≥ 0.4) and water (NDWI > 0) flags over clear pixels.

    ``dataMask`` is 0 for no data, SCL classes 0, 1, 3, 8, 9, 10 and where B04 + B08 ≤ 0, so the
    service counts those pixels in ``noDataCount`` and leaves them out of every statistic.

    >>> stats_evalscript().splitlines()[0]
    '//VERSION=3'
    """
    return f"""//VERSION=3
{STATS_MARKER}
function setup() {{
  return {{
    input: [{{bands: ["B03", "B04", "B08", "SCL", "dataMask"], units: "DN"}}],
    output: [
      {{id: "ndvi", bands: 1, sampleType: "FLOAT32"}},
      {{id: "vegetated", bands: 1, sampleType: "UINT8"}},
      {{id: "water", bands: 1, sampleType: "UINT8"}},
      {{id: "dataMask", bands: 1}}
    ]
  }};
}}
const INVALID_SCL = {json.dumps(list(INVALID_SCL))};
function evaluatePixel(s) {{
  const sum = s.B08 + s.B04;
  const clear = s.dataMask == 1 && INVALID_SCL.indexOf(s.SCL) < 0 && sum > 0;
  const ndvi = clear ? (s.B08 - s.B04) / sum : NaN;
  const ndwi = (s.B03 + s.B08) > 0 ? (s.B03 - s.B08) / (s.B03 + s.B08) : 0;
  return {{ndvi: [ndvi], vegetated: [ndvi >= 0.4 ? 1 : 0], water: [ndwi > 0 ? 1 : 0],
          dataMask: [clear ? 1 : 0]}};
}}
"""


def stats_calculations() -> dict:
    """The request's ``calculations``: NDVI percentiles in the schema's [0, 1] range.

    >>> stats_calculations()["ndvi"]["statistics"]["default"]["percentiles"]["k"]
    [0.25, 0.5, 0.75, 1.0]
    """
    k = [q * PERCENTILE_SCALE for q in (*PERCENTILES, _CHECK_K)]
    return {"ndvi": {"statistics": {"default": {"percentiles": {"k": k}}}}}


def _utm_parcels(parcels: gpd.GeoDataFrame, inward_buffer_m: float):
    """Parcels in their UTM zone, shrunk by ``inward_buffer_m`` (kept whole if nothing remains)."""
    if "parcel_id" not in parcels.columns:
        raise InputError("the parcels have no parcel_id column.", source="parcels",
                         fix="add a unique parcel_id column")
    require_crs(parcels)
    ll = parcels.to_crs(4326).total_bounds
    utm = utm_crs_for((ll[0] + ll[2]) / 2, (ll[1] + ll[3]) / 2)
    geoms = parcels.geometry.to_crs(utm).to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    shrunk = shapely.buffer(geoms, -inward_buffer_m) if inward_buffer_m > 0 else geoms
    with np.errstate(invalid="ignore"):
        small = shapely.is_empty(shrunk) | (shapely.area(shrunk) < RESOLUTION_M ** 2)
    measured = np.where(small, geoms, shrunk)
    measured[missing] = None
    rules = np.where(missing, "none", np.where(small, "unbuffered", "buffered"))
    return utm, list(measured), rules.tolist()


def _interval_day(interval: dict) -> dt.date:
    return dt.datetime.fromisoformat(interval["from"].replace("Z", "+00:00")).date()


def _entry_error(error) -> str:
    """An interval's or a result's ``error`` (schema: ``{"type": ...}``; text kept if given)."""
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code") or "error"
        text = error.get("message") or error.get("description")
        return f"{kind}: {text}" if text else str(kind)
    return str(error)


def _listed(items: Sequence[str]) -> str:
    more = len(items) - _MAX_LISTED
    return "; ".join(items[:_MAX_LISTED]) + (f"; … {more} more" if more > 0 else "")


def _percentiles(stats: dict, pid: str, day: dt.date) -> tuple[float, float, float]:
    """p25, p50, p75 of one interval, after checking the service read ``k`` as asked."""
    pct = {round(float(k) / PERCENTILE_SCALE, 6): float(v)
           for k, v in (stats.get("percentiles") or {}).items()}
    top = pct.get(_CHECK_K)
    lo, hi = float(stats.get("min", "nan")), float(stats.get("max", "nan"))
    clear = int(stats["sampleCount"]) - int(stats["noDataCount"])
    # the k=1 percentile is the maximum; the 1st percentile (k read as percent) sits near min
    if top is not None and clear >= 10 and hi - lo > 0.05 and top < (lo + hi) / 2:
        raise ImageryError(
            f"Sentinel Hub answered percentile k={_CHECK_K * PERCENTILE_SCALE:g} = {top:.3f} "
            f"for parcel {pid} on {day}, far below the maximum {hi:.3f}: the service reads "
            f"percentiles.k on another scale than PERCENTILE_SCALE = {PERCENTILE_SCALE:g} "
            f"(its OpenAPI schema says [0, 1]), so ndvi_p25/p50/p75 would be wrong. Set "
            f"agri_3s.sources.sentinelhub_stats.PERCENTILE_SCALE = "
            f"{100 if PERCENTILE_SCALE == 1 else 1} and rerun.")
    return tuple(pct.get(round(q, 6), math.nan) for q in PERCENTILES)


def _series_from_stats(parcel_ids: Sequence[str], responses: Sequence[dict | None],
                       failures: Sequence[str | None], rules: Sequence[str],
                       times_by_day: dict[dt.date, dt.datetime], api: str,
                       inward_buffer_m: float, span: tuple[dt.date, dt.date],
                       fail_on_error: bool = False) -> xr.Dataset:
    """(Batch) Statistical API responses, one per parcel, → parcel series with source status.

    ``responses[i]`` is the decoded response (None when there is none), ``failures[i]`` why
    there is none (a request that failed, a result never written); ``rules[i] == "none"``
    marks a parcel without geometry.
    """
    n = len(parcel_ids)
    status = np.full(n, "ok", dtype=object)
    reason = np.full(n, "", dtype=object)
    cells: list[tuple[int, dt.date, dict]] = []
    failed_cells: list[tuple[int, dt.date]] = []
    for i, pid in enumerate(parcel_ids):
        resp, fail = responses[i], failures[i]
        if rules[i] == "none":
            status[i], reason[i] = "no_data", "the parcel has no geometry"
            continue
        if fail is not None or resp is None:
            status[i], reason[i] = "no_data", fail or f"Sentinel Hub {api} gave no response"
            continue
        bad: list[tuple[dt.date, str]] = []
        got = 0
        for entry in resp.get("data") or []:
            day = _interval_day(entry["interval"])
            if "error" in entry:
                bad.append((day, _entry_error(entry["error"])))
            elif "outputs" in entry:
                cells.append((i, day, entry["outputs"]))
                got += 1
        service = str(resp.get("status") or "OK")
        if fail_on_error and (bad or service == "FAILED"):
            where = f" on {bad[0][0]}" if bad else ""
            why = bad[0][1] if bad else "status FAILED, no reason given"
            raise ImageryError(f"Sentinel Hub {api} failed for parcel {pid}{where}: {why}.")
        failed_cells += [(i, d) for d, _ in bad]
        said = _listed([f"{d}: {w}" for d, w in bad])
        if got == 0 and (bad or service == "FAILED"):
            status[i] = "no_data"
            reason[i] = (f"Sentinel Hub {api} answered {service}"
                         + (f" ({said})" if bad else ", no reason given"))
        elif got == 0:
            status[i] = "no_data"
            reason[i] = (f"Sentinel Hub {api} found no acquisition over the parcel from "
                         f"{span[0]} to {span[1]}")
        elif bad:
            status[i], reason[i] = "partial", f"Sentinel Hub {api} gave no statistics on {said}"

    days = sorted({d for _, d, _ in cells} | {d for _, d in failed_cells})
    col = {d: j for j, d in enumerate(days)}
    out = {k: np.full((n, len(days)), np.nan, np.float32) for k in _VARIABLES}
    counted = np.zeros(n, np.int64)
    for i, day, outputs in cells:
        j = col[day]
        s = outputs["ndvi"]["bands"]["B0"]["stats"]
        total = int(s["sampleCount"])
        clear = total - int(s["noDataCount"])
        counted[i] = max(counted[i], total)
        out["clear_fraction"][i, j] = clear / total if total else np.nan
        out["n_pixels"][i, j] = clear
        if clear >= 1:
            out["ndvi_mean"][i, j] = float(s["mean"])
            (out["ndvi_p25"][i, j], out["ndvi_p50"][i, j],
             out["ndvi_p75"][i, j]) = _percentiles(s, parcel_ids[i], day)
            for name in ("vegetated", "water"):
                out[f"{name}_fraction"][i, j] = float(
                    outputs[name]["bands"]["B0"]["stats"]["mean"])
    lacking = status != "ok"
    if lacking.any():
        listed = _listed([f"{parcel_ids[i]} ({reason[i]})" for i in np.flatnonzero(lacking)])
        LOGGER.warning("Sentinel Hub %s: %d of %d parcel(s) without full statistics: %s", api,
                       int(lacking.sum()), n, listed)
    times = [np.datetime64(times_by_day.get(d, dt.datetime.combine(d, dt.time())), "ns")
             for d in days]
    return xr.Dataset(
        {k: (("parcel", "time"), v) for k, v in out.items()},
        coords={"parcel_id": ("parcel", np.asarray(parcel_ids, dtype=str)),
                "time": np.asarray(times, dtype="datetime64[ns]"),
                "full_pixels": ("parcel", counted),
                "weight_sum": ("parcel", counted.astype(np.float32)),
                "pixel_rule": ("parcel", np.asarray(rules, dtype=str)),
                "small_parcel": ("parcel", counted < 4),
                "source_status": ("parcel", status.astype(str)),
                "source_reason": ("parcel", reason.astype(str))},
        attrs={"pixel_rule": f"Sentinel Hub {api}: pixels of the service's own rasterisation of "
                             f"the parcel shrunk by {inward_buffer_m:g} m, each counted whole "
                             f"(no coverage weighting); unbuffered polygon when less than one "
                             f"pixel remains; no cloud-edge dilation",
               "inward_buffer_m": inward_buffer_m, "vegetated_ndvi": 0.4,
               "cloud_dilation_px": 0, "quantile_method": f"Sentinel Hub {api} percentiles",
               "time_grouping": "UTC day (P1D intervals)", "source": "sentinelhub",
               "source_parcels_without_data": int((status == "no_data").sum()),
               "source_parcels_partial": int((status == "partial").sum())})


def _times_by_day(conn: _Connection, collection, utm, geoms, start, end) -> dict:
    """UTC day → first acquisition time, from the catalog (so times match the cube's)."""
    present = [g for g in geoms if g is not None]
    if not present:
        return {}
    minx, miny, maxx, maxy = shapely.GeometryCollection(present).bounds
    tr = Transformer.from_crs(utm, 4326, always_xy=True)
    lons, lats = tr.transform([minx, maxx, minx, maxx], [miny, miny, maxy, maxy])
    times = conn.catalog_times(collection, (min(lons), min(lats), max(lons), max(lats)),
                               start, end)
    out: dict[dt.date, dt.datetime] = {}
    for t in times:
        out.setdefault(t.date(), t)
    return out


def _stat_requests(conn, collection, utm, geoms, start, end, resolution):
    from sentinelhub import CRS as ShCRS
    from sentinelhub import Geometry, SentinelHubStatistical

    t0 = dt.datetime.combine(start, dt.time())
    t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    aggregation = SentinelHubStatistical.aggregation(
        evalscript=stats_evalscript(), time_interval=(t0, t1), aggregation_interval="P1D",
        resolution=(resolution, resolution))
    calculations = stats_calculations()
    reqs = [None if g is None else SentinelHubStatistical(
        aggregation=aggregation, input_data=[_input_data(collection, t0, t1)],
        geometry=Geometry(g, crs=ShCRS(utm.to_epsg())), calculations=calculations,
        config=conn.config) for g in geoms]
    return reqs, aggregation


def statistical_series(parcels: gpd.GeoDataFrame, start: dt.date, end: dt.date, *, config=None,
                       max_concurrency: int = 4, resolution: float = RESOLUTION_M,
                       inward_buffer_m: float = 5.0, collection="sentinel-2-l2a",
                       fail_on_error: bool = False) -> xr.Dataset:
    """Parcel series from Sentinel Hub's Statistical API, without downloading images.

    One request per parcel (geometry in its UTM zone, shrunk by ``inward_buffer_m`` like
    :func:`agri_3s.timeseries.zonal.pixel_weights`), ``max_concurrency`` at a time, each returning
    one statistic per UTC day with an acquisition. Returns the parcel-series contract
    (``ndvi_mean``, ``ndvi_p25/p50/p75``, ``clear_fraction``, ``n_pixels``, plus
    ``vegetated_fraction`` and ``water_fraction``; dims ``parcel, time``; coord ``parcel_id``)
    and per parcel ``source_status`` / ``source_reason`` (see the module docstring).

    Each request is retried on its own (5xx, timeouts, 429, one token renewal on 401); one that
    still fails leaves its parcel ``no_data`` with the error, the others are kept. Raises
    :class:`~agri_3s.errors.ImageryError` when every request failed, or at the first failure
    with ``fail_on_error=True``; :class:`~agri_3s.errors.InputError` for refused credentials.

    What the API cannot give exactly as :func:`~agri_3s.timeseries.zonal.parcel_series` does:
    pixels are counted whole by the service's own rasterisation (no partial-coverage weights),
    so ``n_pixels`` is an integer count; percentiles are the service's, not weighted; clouds
    are masked per pixel without the 2-pixel dilation (an evalscript sees one pixel at a time);
    intervals are UTC days, which equal solar days wherever the overpass does not cross UTC
    midnight (true for China). Every input parcel appears in the output; a parcel with no
    geometry gets NaN and ``pixel_rule = "none"``.

    Examples
    --------
    >>> series = statistical_series(parcels, dt.date(2025, 4, 1), dt.date(2025, 6, 30),
    ...                             config=cdse_config("id", "secret"))   # doctest: +SKIP
    >>> series["source_status"].to_series().value_counts()               # doctest: +SKIP
    """
    conn = _Connection(config)
    coll = _collection(collection)
    utm, geoms, rules = _utm_parcels(parcels, inward_buffer_m)
    pids = parcels["parcel_id"].astype(str).tolist()
    reqs, _ = _stat_requests(conn, coll, utm, geoms, start, end, resolution)
    idx = [i for i, r in enumerate(reqs) if r is not None]
    got = conn.each([f"parcel {pids[i]} (statistics {start}..{end})" for i in idx],
                    [reqs[i].download_list[0] for i in idx], kind="stats",
                    max_threads=max_concurrency)
    responses: list[dict | None] = [None] * len(pids)
    failures: list[str | None] = [None] * len(pids)
    for i, res in zip(idx, got):
        if isinstance(res, ImageryError):  # one line: it goes into tables
            failures[i] = " ".join(str(res).split())
        elif not isinstance(res, dict) or "data" not in res:
            failures[i] = (f"Sentinel Hub Statistical API returned no statistics for parcel "
                           f"{pids[i]} ({type(res).__name__})")
        else:
            responses[i] = res
    broken = [i for i in idx if failures[i] is not None]
    if broken and (fail_on_error or len(broken) == len(idx)):
        first = failures[broken[0]].rstrip(".")
        raise ImageryError(first + (f" (and {len(broken) - 1} more of {len(idx)} parcels)."
                                    if len(broken) > 1 else "."))
    times = _times_by_day(conn, coll, utm, geoms, start, end)
    return _series_from_stats(pids, responses, failures, rules, times, "Statistical API",
                              inward_buffer_m, (start, end), fail_on_error)


# --------------------------------------------------------------------------- Batch Statistical

class BatchStorage(Protocol):
    """Where Batch Statistical input features go and results come from (an S3 bucket in the
    real service). ``features``/``output`` return Sentinel Hub access specifications
    (``{"s3": {"url": ..., "accessKey": ..., ...}}``)."""

    def features(self, job: str, gpkg: bytes) -> dict: ...

    def output(self, job: str) -> dict: ...

    def read_results(self, job: str, request_id: str) -> dict[str, dict]:
        """Result files of batch request ``request_id``: ``{file stem: decoded JSON}``.

        The service writes one ``<feature id>.json`` per feature into ``<output url>/<request
        id>/`` (the folder sentinelhub-py's ``AwsBatchStatisticalResults`` reads:
        ``f"{output['s3']['url'].rstrip('/')}/{request_id}/"``).
        """
        ...


class FolderStorage:
    """A local folder standing in for an S3 bucket: ``root/<bucket>/<job>/...``.

    Used with the local fake server, which writes results into the same folder. For the real
    service implement :class:`BatchStorage` on your bucket (e.g. with ``s3fs``): upload the
    GeoPackage, return ``SentinelHubBatchStatistical.s3_specification(url, key, secret)``, and
    read ``<output>/<request_id>/*.json`` back.

    >>> FolderStorage("/tmp/bucket").output("job1")
    {'s3': {'url': 's3://agri3s/job1/output', 'iamRoleARN': 'local'}}
    """

    def __init__(self, root: str | Path, bucket: str = "agri3s"):
        self.root, self.bucket = Path(root), bucket

    def _spec(self, key: str) -> dict:
        return {"s3": {"url": f"s3://{self.bucket}/{key}", "iamRoleARN": "local"}}

    def features(self, job: str, gpkg: bytes) -> dict:
        path = self.root / self.bucket / job / "features.gpkg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gpkg)
        return self._spec(f"{job}/features.gpkg")

    def output(self, job: str) -> dict:
        return self._spec(f"{job}/output")

    def read_results(self, job: str, request_id: str) -> dict[str, dict]:
        folder = self.root / self.bucket / job / "output" / request_id
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _features_gpkg(ids: Sequence[int], pids: Sequence[str], geoms, utm) -> bytes:
    """The Batch Statistical input GeoPackage: integer ``id``, ``identifier``, geometry (UTM)."""
    gdf = gpd.GeoDataFrame({"id": list(ids), "identifier": list(pids)}, geometry=list(geoms),
                           crs=utm)
    buf = io.BytesIO()
    gdf.to_file(buf, driver="GPKG", layer="features")
    return buf.getvalue()


def batch_statistical_series(parcels: gpd.GeoDataFrame, start: dt.date, end: dt.date, *,
                             storage: BatchStorage, config=None, job: str | None = None,
                             resolution: float = RESOLUTION_M, inward_buffer_m: float = 5.0,
                             poll_interval_s: float = 30.0, timeout_s: float = 6 * 3600,
                             collection="sentinel-2-l2a",
                             fail_on_error: bool = False) -> xr.Dataset:
    """Parcel series for very large parcel sets via the Batch Statistical API.

    Writes the parcels (UTM, shrunk like :func:`statistical_series`) as a GeoPackage through
    ``storage``, creates and starts the batch request, polls its status every
    ``poll_interval_s`` until ``DONE`` or ``PARTIAL`` (``FAILED``/``STOPPED`` or ``timeout_s`` →
    :class:`ImageryError`), then reads one result per parcel from ``<output>/<request_id>/``.
    A parcel whose result is missing or ``FAILED`` is ``no_data`` with the reason (an
    :class:`ImageryError` naming it with ``fail_on_error=True``); the others are kept. Same
    contract and caveats as :func:`statistical_series`.

    Examples
    --------
    >>> series = batch_statistical_series(parcels, start, end, storage=my_s3_storage,
    ...                                   config=cfg)                     # doctest: +SKIP
    """
    from sentinelhub import SentinelHubBatchStatistical

    api = "Batch Statistical API"
    conn = _Connection(config)
    coll = _collection(collection)
    utm, geoms, rules = _utm_parcels(parcels, inward_buffer_m)
    pids = parcels["parcel_id"].astype(str).tolist()
    idx = [i for i, g in enumerate(geoms) if g is not None]
    job = job or f"agri3s-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    responses: list[dict | None] = [None] * len(pids)
    failures: list[str | None] = [None] * len(pids)
    if idx:
        features = storage.features(job, _features_gpkg([i + 1 for i in idx],
                                                        [pids[i] for i in idx],
                                                        [geoms[i] for i in idx], utm))
        reqs, aggregation = _stat_requests(conn, coll, utm, [geoms[idx[0]]], start, end,
                                           resolution)
        input_data = reqs[0].payload["input"]["data"]

        def batch(client):
            b = SentinelHubBatchStatistical(config=conn.config)
            b.client = client
            return b

        request = conn.call(f"batch statistics job {job} (create)", lambda c: batch(c).create(
            input_features=features, input_data=input_data, aggregation=aggregation,
            calculations=stats_calculations(), output=storage.output(job)))
        rid = request.request_id
        conn.call(f"batch statistics {rid} (start)", lambda c: batch(c).start_job(rid))
        deadline = time.monotonic() + timeout_s
        while True:  # the raw status: sentinelhub-py's enum lacks the schema's PARTIAL
            info = conn.call(f"batch statistics {rid} (status)",
                             lambda c: batch(c).get_status(rid))
            status = str(info.get("status"))
            if status in ("DONE", "PARTIAL"):
                break
            if status in ("FAILED", "STOPPED"):
                raise ImageryError(f"Sentinel Hub batch statistics request {rid} ended "
                                   f"{status}: {info.get('error') or 'no reason given'}.")
            if time.monotonic() > deadline:
                raise ImageryError(f"Sentinel Hub batch statistics request {rid} still "
                                   f"{status} after {timeout_s:g} s; poll it later with "
                                   f"SentinelHubBatchStatistical().get_status('{rid}').")
            time.sleep(poll_interval_s)
        by_key: dict[str, dict] = {}
        for key, res in storage.read_results(job, rid).items():
            by_key[str(res.get("identifier", key))] = res
            by_key[str(res.get("id", key))] = res
        for i in idx:
            res = by_key.get(pids[i]) or by_key.get(str(i + 1))
            if res is None:
                failures[i] = (f"Sentinel Hub batch statistics request {rid} wrote no result "
                               f"for parcel {pids[i]} (id {i + 1}) into "
                               f"{storage.output(job)['s3']['url']}/{rid}/")
            elif "error" in res and not (res.get("response") or {}).get("data"):
                failures[i] = (f"Sentinel Hub {api} failed for parcel {pids[i]}: "
                               f"{_entry_error(res['error'])}")
            else:
                responses[i] = res.get("response", res)
        broken = [i for i in idx if failures[i] is not None]
        if broken and fail_on_error:
            raise ImageryError(failures[broken[0]] + ".")
        if not by_key:  # not one file: the storage reads the wrong place, not 'no data'
            raise ImageryError(f"Sentinel Hub batch statistics request {rid} ended {status} "
                               f"but no result file was found in "
                               f"{storage.output(job)['s3']['url']}/{rid}/; check the "
                               f"storage's read_results.")
    times = _times_by_day(conn, coll, utm, geoms, start, end)
    return _series_from_stats(pids, responses, failures, rules, times, api, inward_buffer_m,
                              (start, end), fail_on_error)
