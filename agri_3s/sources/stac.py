"""Sentinel-2 L2A from a STAC API (Earth Search, Planetary Computer, CDSE, …) → the cube contract.

Needs the ``[stac]`` extra (pystac-client, odc-stac), imported only when a search runs.

How a request is served (:meth:`StacSource.load`):

1. **Search** — pystac-client, ``bbox`` = the parcels' bounds in EPSG:4326, ``datetime`` = the
   UTC days ``start`` … ``end`` inclusive. HTTP 429/5xx answers and dropped connections are
   retried (urllib3 ``Retry``: exponential backoff, ``Retry-After`` honoured); when retries run
   out an :class:`~agri_3s.errors.ImageryError` names the URL and the status.
2. **Grid** — one grid for the whole request: the UTM zone of the parcels' centre, 10 m pixels
   aligned to multiples of 10 m (Sentinel-2's own tile grid), the parcels' bounds plus a 30 m
   margin. Items in a neighbouring UTM zone are reprojected onto it, so an area that spans two
   zones is one cube.
3. **Pixels** — odc-stac, ``groupby="solar_day"`` (tiles of one pass are mosaicked, the first
   valid pixel wins), dask chunks, **nearest-neighbour resampling for every band**: 10 m bands on
   a 10 m-aligned UTM grid are copied exactly, 20 m bands (B11, SCL) are repeated 2 × 2 like
   :class:`~agri_3s.sources.local.LocalSource` does, and no reflectance is invented by
   interpolation across cloud edges or tile borders.
4. **Reflectance** — ``DN × scale + offset`` per item and band, DN 0 → NaN; the offset comes from
   the item's metadata, see :func:`reflectance_scaling`.
5. **Cache** — with ``cache=FetchCache(...)`` the cube is stored on disk under a key of the
   request and a rerun reads it from there without contacting the server.

Asset names differ between catalogues (Earth Search ``red nir scl …``, Planetary Computer
``B04 B08 SCL …``, CDSE ``B04_10m …``); :data:`ASSET_NAMES` maps all of them to the band ids.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from pyproj import CRS, Transformer

from ..crs import utm_crs_for
from ..errors import ImageryError, InputError, require
from .base import (
    BAND_NAMES,
    DEFAULT_BANDS,
    L2A_QUANTIFICATION,
    REQUIRED_BANDS,
    cube_from_arrays,
    default_boa_offset,
    solar_day,
)
from .cache import FetchCache

#: Band id → asset keys used by public catalogues (matched case-insensitively, first found wins).
ASSET_NAMES = {
    "B02": ("blue", "B02", "B02_10m"),
    "B03": ("green", "B03", "B03_10m"),
    "B04": ("red", "B04", "B04_10m"),
    "B08": ("nir", "B08", "B08_10m"),
    "B11": ("swir16", "B11", "B11_20m"),
    "SCL": ("scl", "SCL", "SCL_20m"),
}
#: Item properties that carry the L2A processing baseline, by catalogue.
BASELINE_PROPERTIES = ("s2:processing_baseline", "processing:version",
                       "sentinel:processing_baseline")
#: HTTP statuses worth retrying: rate limiting and transient server / gateway failures.
RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_CHUNKS = {"x": 1024, "y": 1024}


def reflectance_scaling(properties: dict, asset: dict, acquired: dt.date) -> tuple[float, float, str]:
    """``(scale, offset, rule)`` such that reflectance = DN × scale + offset for one asset.

    Rules, first match wins:

    1. ``earthsearch:boa_offset_applied`` true → Earth Search already shifted the DNs back to the
       pre-04.00 range: offset 0. (Its ``raster:bands`` say −0.1 whether or not the shift was
       applied, so they are not trusted there.)
    2. a processing baseline property (``s2:processing_baseline`` …) → ≥ 04.00: −1000 DN,
       else 0.
    3. ``raster:bands`` ``scale`` / ``offset`` on the asset.
    4. the acquisition date (:func:`~agri_3s.sources.base.default_boa_offset`).

    >>> reflectance_scaling({"s2:processing_baseline": "05.11"}, {}, dt.date(2025, 5, 1))
    (0.0001, -0.1, 's2:processing_baseline=05.11')
    """
    scale = 1.0 / L2A_QUANTIFICATION
    if properties.get("earthsearch:boa_offset_applied") is True:
        return scale, 0.0, "earthsearch:boa_offset_applied"
    for key in BASELINE_PROPERTIES:
        value = properties.get(key)
        if value is None:
            continue
        try:
            baseline = float(value)
        except (TypeError, ValueError):
            continue
        return scale, (-1000.0 * scale if baseline >= 4.0 else 0.0), f"{key}={value}"
    bands = asset.get("raster:bands") or []
    if bands and ("offset" in bands[0] or "scale" in bands[0]):
        return (float(bands[0].get("scale", 1.0)), float(bands[0].get("offset", 0.0)),
                "raster:bands")
    return scale, default_boa_offset(acquired) * scale, "date"


def _match_asset(assets: dict, band: str) -> str | None:
    lower = {k.lower(): k for k in assets}
    for name in ASSET_NAMES[band]:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def target_geobox(bounds: tuple[float, float, float, float], crs: object, *,
                  resolution: float = 10.0, margin_m: float = 30.0) -> GeoBox:
    """The output grid: UTM zone of the bounds' centre, ``resolution`` m pixels aligned to
    multiples of ``resolution``, covering ``bounds`` (in ``crs``) plus ``margin_m``.

    >>> target_geobox((119.98, 31.0, 119.99, 31.01), "EPSG:4326").crs.epsg
    32650
    """
    src = CRS.from_user_input(crs)
    lon0, lat0, lon1, lat1 = Transformer.from_crs(src, 4326, always_xy=True).transform_bounds(
        *bounds, densify_pts=21)
    utm = utm_crs_for((lon0 + lon1) / 2, (lat0 + lat1) / 2)
    west, south, east, north = Transformer.from_crs(src, utm, always_xy=True).transform_bounds(
        *bounds, densify_pts=21)
    return GeoBox.from_bbox((west - margin_m, south - margin_m, east + margin_m,
                             north + margin_m), utm,
                            resolution=resolution)


class StacSource:
    """Sentinel-2 L2A from a STAC API, as an :class:`~agri_3s.sources.base.ImagerySource`.

    Parameters
    ----------
    url : the STAC API root, e.g. ``https://earth-search.aws.element84.com/v1``.
    collection : the Sentinel-2 L2A collection id.
    chunks : dask chunk sizes in pixels (``{"x": 1024, "y": 1024}``; one date per chunk).
    cache : a :class:`~agri_3s.sources.cache.FetchCache` to store fetched cubes in, or None.
    max_cloud : keep items whose ``eo:cloud_cover`` ≤ this (percent); the others are listed in
        the cube's ``skipped_cloudy`` attribute, not silently dropped.
    retries, backoff, timeout : HTTP retry count, exponential backoff factor (s), timeout (s).
    resolution : output pixel size in metres.
    modifier : passed to ``pystac_client.Client.open`` to edit items as they arrive, e.g.
        ``planetary_computer.sign_inplace`` to sign Planetary Computer asset URLs.

    Examples
    --------
    >>> src = StacSource("https://earth-search.aws.element84.com/v1", max_cloud=60)  # doctest: +SKIP
    >>> cube = src.load(parcels.total_bounds, parcels.crs, dt.date(2025, 3, 1),
    ...                 dt.date(2025, 6, 30))                                     # doctest: +SKIP
    """

    def __init__(self, url: str, *, collection: str = "sentinel-2-l2a",
                 chunks: dict | None = None, cache: FetchCache | None = None,
                 max_cloud: float | None = None, retries: int = 5, backoff: float = 1.0,
                 timeout: float = 60.0, resolution: float = 10.0,
                 modifier: Callable[[Any], None] | None = None):
        if not str(url).startswith(("http://", "https://")):
            raise InputError(f"'{url}' is not an http(s) URL.", source="--imagery stac:URL",
                             fix="give the STAC API root, e.g. "
                                 "stac:https://earth-search.aws.element84.com/v1")
        self.url = str(url).rstrip("/")
        self.collection = collection
        self.chunks = dict(chunks or DEFAULT_CHUNKS)
        self.cache = cache
        self.max_cloud = max_cloud
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.resolution = resolution
        self.modifier = modifier

    def describe(self) -> dict:
        return {"kind": "stac", "url": self.url, "collection": self.collection,
                "max_cloud": self.max_cloud, "resolution": self.resolution,
                "cache": str(self.cache.root) if self.cache else None}

    # -- search ---------------------------------------------------------------------------
    def _client(self):
        pystac_client = require("pystac_client", "stac")
        from pystac_client.stac_api_io import StacApiIO
        from urllib3 import Retry

        retry = Retry(total=self.retries, backoff_factor=self.backoff,
                      status_forcelist=RETRY_STATUSES,
                      allowed_methods=None,  # POST /search is a read: safe to repeat
                      respect_retry_after_header=True,
                      raise_on_status=False)  # last answer → APIError with its status
        io = StacApiIO(timeout=self.timeout, max_retries=retry)
        return pystac_client.Client.open(self.url, stac_io=io, modifier=self.modifier)

    def search(self, bounds, crs, start: dt.date, end: dt.date) -> list:
        """The collection's items intersecting ``bounds`` (in ``crs``) on UTC days start…end.

        Raises :class:`ImageryError` naming the URL when the API keeps failing.
        """
        bbox = Transformer.from_crs(CRS.from_user_input(crs), 4326, always_xy=True
                                    ).transform_bounds(*bounds, densify_pts=21)
        when = f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T23:59:59Z"
        try:
            client = self._client()
            found = client.search(collections=[self.collection], bbox=list(bbox),
                                  datetime=when, limit=100)
            return list(found.items())
        except ImageryError:
            raise
        except Exception as exc:  # pystac_client.APIError, requests errors, bad JSON
            raise ImageryError(
                f"STAC API {self.url}: search for {self.collection} failed after "
                f"{self.retries} retries ({type(exc).__name__}: {str(exc)[:300]}). Check the "
                "URL and your connection, or try again later.") from exc

    # -- load -----------------------------------------------------------------------------
    def load(self, bounds, crs, start: dt.date, end: dt.date, *,
             bands: Sequence[str] = DEFAULT_BANDS) -> xr.Dataset:
        """The cube contract for ``bounds`` (in ``crs``) and UTC days ``start`` … ``end``."""
        bounds = tuple(float(v) for v in bounds)
        unknown = [b for b in bands if b not in ASSET_NAMES]
        if unknown:
            raise InputError(f"unknown band(s) {unknown}.", source="bands",
                             fix=f"use band ids from {sorted(ASSET_NAMES)}")
        key = None
        if self.cache is not None:
            request = {"url": self.url, "collection": self.collection, "bounds": bounds,
                       "crs": crs, "start": start, "end": end, "bands": list(bands),
                       "resolution": self.resolution, "max_cloud": self.max_cloud}
            key = self.cache.key("stac", **request)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        items = self.search(bounds, crs, start, end)
        cube = self.load_items(items, target_geobox(bounds, crs, resolution=self.resolution),
                               bands=bands, period=(start, end))
        if self.cache is not None:
            cube = self.cache.put(key, cube, request)
        return cube

    def load_items(self, items: list, geobox: GeoBox, *, bands: Sequence[str] = DEFAULT_BANDS,
                   period: tuple[dt.date, dt.date] | None = None) -> xr.Dataset:
        """Items (pystac) → cube contract on ``geobox``; dask-backed, nothing read yet."""
        odc_stac = require("odc.stac", "stac")
        import pystac

        skipped = []
        if self.max_cloud is not None:
            keep = []
            for it in items:
                cc = it.properties.get("eo:cloud_cover")
                (keep if cc is None or cc <= self.max_cloud else skipped).append(it)
            items = keep
        if not items:
            when = f" between {period[0]} and {period[1]}" if period else ""
            cloud = (f" with eo:cloud_cover ≤ {self.max_cloud}% ({len(skipped)} cloudier "
                     "item(s) skipped)" if self.max_cloud is not None else "")
            raise ImageryError(f"STAC API {self.url}: no {self.collection} item covers the "
                               f"parcels{when}{cloud}. Check the dates and the parcels' CRS"
                               + (", or raise max_cloud." if skipped else "."))

        # Rename each item's assets to the cube variable names; work out its DN scaling.
        wanted = list(dict.fromkeys(bands))
        renamed, scaling, rules = [], [], {}
        missing_optional: dict[str, list[str]] = {}
        for it in items:
            d = it.to_dict(include_self_link=False, transform_hrefs=False)
            assets, conv = {}, []
            acquired = it.datetime.date() if it.datetime else dt.date.today()
            for band in wanted:
                name = _match_asset(d["assets"], band)
                if name is None:
                    if band in REQUIRED_BANDS:
                        raise ImageryError(
                            f"STAC API {self.url}: item {it.id} has no asset for band {band} "
                            f"(looked for {', '.join(ASSET_NAMES[band])}; it has "
                            f"{', '.join(sorted(d['assets']))}). Use a Sentinel-2 L2A "
                            "collection.")
                    missing_optional.setdefault(band, []).append(it.id)
                    continue
                assets[BAND_NAMES[band]] = d["assets"][name]
                if band != "SCL":
                    s, o, rule = reflectance_scaling(d["properties"], d["assets"][name], acquired)
                    conv.append((BAND_NAMES[band], s, o))
                    rules[it.id] = rule
            d["assets"] = assets
            renamed.append(d)
            scaling.append(tuple(conv))
        if missing_optional:
            # An optional band absent from every item is simply not in the cube (as in
            # LocalSource); absent from only some items it is left out too, with a warning.
            partly = {b: ids for b, ids in missing_optional.items() if len(ids) < len(items)}
            if partly:
                warnings.warn(f"STAC API {self.url}: band(s) {sorted(partly)} missing from "
                              f"some items ({partly}); left out of the cube.", stacklevel=2)
            for d in renamed:
                for band in missing_optional:
                    d["assets"].pop(BAND_NAMES[band], None)
            scaling = [tuple(c for c in conv if c[0] not in
                             {BAND_NAMES[b] for b in missing_optional}) for conv in scaling]
        variables = [BAND_NAMES[b] for b in wanted if b not in missing_optional]

        # Items with the same DN scaling are loaded together (usually all of them).
        classes: dict[tuple, list] = {}
        for d, conv in zip(renamed, scaling):
            classes.setdefault(conv, []).append(pystac.Item.from_dict(d, preserve_dict=False))
        cfg = {"*": {"assets": {"*": {"data_type": "uint16", "nodata": 0},
                                "scl": {"data_type": "uint8", "nodata": 0}},
                     "warnings": "ignore"}}
        parts = []
        for conv, group in classes.items():
            raw = odc_stac.load(group, bands=variables, geobox=geobox, groupby="solar_day",
                                chunks={**self.chunks, "time": 1}, resampling="nearest",
                                stac_cfg=cfg, fail_on_error=True)
            part = {}
            for var, scale, offset in conv:
                dn = raw[var]
                part[var] = xr.where(dn == 0, np.float32(np.nan),
                                     dn.astype(np.float32) * np.float32(scale)
                                     + np.float32(offset)).astype(np.float32)
            if "scl" in variables:
                part["scl"] = raw["scl"].astype(np.uint8)
            parts.append(xr.Dataset(part, coords={"time": raw["time"].values}))
        lon = geobox.extent.centroid.to_crs(4326).coords[0][0]
        merged = _merge_same_solar_day(parts, lon)
        arrays = {v: merged[v].data for v in variables}
        return cube_from_arrays(arrays, merged["time"].values, geobox, attrs={
            "source": "stac", "url": self.url, "collection": self.collection,
            "items": json.dumps(sorted(it.id for it in items)),
            "reflectance_offset_rule": json.dumps(rules, sort_keys=True),
            "skipped_cloudy": json.dumps(sorted(it.id for it in skipped)),
            "bands_left_out": json.dumps(sorted(missing_optional)), "resampling": "nearest"})


def _merge_same_solar_day(parts: list[xr.Dataset], lon: float) -> xr.Dataset:
    """Concatenate per-scaling loads along time; slices of one solar day fill each other's gaps
    (earliest first), as odc-stac's own grouping does within one load."""
    cube = xr.concat(parts, "time") if len(parts) > 1 else parts[0]
    cube = cube.isel(time=np.argsort(cube["time"].values, kind="stable"))
    days = [solar_day(t, lon) for t in cube["time"].values]
    if len(set(days)) == len(days):
        return cube
    slices = []
    for day in sorted(set(days)):
        idx = [i for i, d in enumerate(days) if d == day]
        acc = cube.isel(time=idx[0])
        for i in idx[1:]:
            nxt = cube.isel(time=i)
            acc = xr.Dataset({v: (acc[v].where(acc[v] != 0, nxt[v]) if v == "scl"
                                  else acc[v].fillna(nxt[v])) for v in cube.data_vars},
                             coords={"time": acc["time"]})
        slices.append(acc)
    return xr.concat(slices, "time")
