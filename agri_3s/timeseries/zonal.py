"""Parcel × date statistics from coverage-weighted pixels (the parcel-series contract).

Pixel rule: every pixel is weighted by the exact fraction of its area inside the parcel shrunk
by an inward buffer (5 m for 10 m bands), so mixed edge pixels that mostly carry a road or the
neighbour's crop count little or nothing. Parcels whose buffered shape keeps less than one
pixel's worth of weight fall back to the unbuffered polygon, and any parcel with fewer than
``min_full_pixels`` whole pixels is flagged ``small_parcel`` so decisions can say it is too small
to judge reliably. The weights are computed once per parcel set and grid and reused for every
date and band.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from scipy import sparse

from ..errors import ImageryError
from .indices import ndvi as ndvi_index
from .indices import ndwi as ndwi_index
from .masking import clear_mask

QUANTILES = (0.25, 0.50, 0.75)
FULL = 1.0 - 1e-6


@dataclass(frozen=True)
class PixelWeights:
    """Sparse coverage weights of parcels on one pixel grid."""

    #: (n_parcels, n_pixels) CSR matrix of coverage fractions in (0, 1]; pixels are row-major.
    matrix: sparse.csr_matrix
    parcel_id: np.ndarray
    #: Pixels lying wholly inside the (buffered) parcel.
    full_pixels: np.ndarray
    #: Which polygon was measured: ``buffered`` | ``unbuffered`` | ``none`` (off the grid / empty).
    pixel_rule: np.ndarray
    geobox: GeoBox
    inward_buffer_m: float
    min_full_pixels: int

    @property
    def weight_sum(self) -> np.ndarray:
        """Pixel-equivalents measured per parcel."""
        return np.asarray(self.matrix.sum(axis=1)).ravel()

    @property
    def small_parcel(self) -> np.ndarray:
        return self.full_pixels < self.min_full_pixels


def coverage_fractions(geom, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices and the exact fraction of each pixel's area inside ``geom``.

    ``geom`` is in the grid's CRS; pixels wholly inside get 1, edge pixels the area of their
    intersection with ``geom`` divided by the pixel area (pixels may be non-square).
    """
    t = geobox.transform
    if t.b != 0 or t.d != 0:
        raise ImageryError("rotated pixel grids are not supported; warp the imagery north-up.")
    h, w = geobox.shape
    if geom is None or geom.is_empty:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    minx, miny, maxx, maxy = geom.bounds
    cols = (np.array([minx, maxx]) - t.c) / t.a
    rows = (np.array([maxy, miny]) - t.f) / t.e
    c0, c1 = max(int(np.floor(cols.min())), 0), min(int(np.ceil(cols.max())), w)
    r0, r1 = max(int(np.floor(rows.min())), 0), min(int(np.ceil(rows.max())), h)
    if c0 >= c1 or r0 >= r1:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    cc, rr = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
    cc, rr = cc.ravel(), rr.ravel()
    x0, y0 = t.c + cc * t.a, t.f + rr * t.e
    boxes = shapely.box(np.minimum(x0, x0 + t.a), np.minimum(y0, y0 + t.e),
                        np.maximum(x0, x0 + t.a), np.maximum(y0, y0 + t.e))
    shapely.prepare(geom)
    inside = shapely.contains_properly(geom, boxes)
    edge = ~inside & shapely.intersects(geom, boxes)
    frac = inside.astype(np.float64)
    frac[edge] = shapely.area(shapely.intersection(geom, boxes[edge])) / abs(t.a * t.e)
    keep = frac > 1e-9
    return (rr[keep] * w + cc[keep]).astype(np.int64), np.minimum(frac[keep], 1.0)


def pixel_weights(parcels: gpd.GeoDataFrame, geobox: GeoBox, *, inward_buffer_m: float = 5.0,
                  min_full_pixels: int = 4) -> PixelWeights:
    """Coverage weights of every parcel (in any CRS) on ``geobox``.

    Examples
    --------
    >>> w = pixel_weights(parcels, cube.odc.geobox)     # doctest: +SKIP
    >>> w.matrix.shape == (len(parcels), cube.sizes["y"] * cube.sizes["x"])  # doctest: +SKIP
    True
    """
    geoms = parcels.geometry.to_crs(geobox.crs.to_wkt()).values
    rows, cols, vals = [], [], []
    full = np.zeros(len(geoms), np.int64)
    rule = np.full(len(geoms), "none", dtype=object)
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            continue
        shrunk = geom.buffer(-inward_buffer_m) if inward_buffer_m > 0 else geom
        idx, frac = coverage_fractions(shrunk, geobox)
        rule[i] = "buffered"
        if frac.sum() < 1.0:  # less than one pixel's worth left after buffering
            idx, frac = coverage_fractions(geom, geobox)
            rule[i] = "unbuffered" if len(idx) else "none"
        rows.append(np.full(len(idx), i))
        cols.append(idx)
        vals.append(frac)
        full[i] = int((frac >= FULL).sum())
    n_pix = geobox.shape[0] * geobox.shape[1]
    matrix = sparse.csr_matrix(
        (np.concatenate(vals) if vals else [], (np.concatenate(rows) if rows else [],
                                                 np.concatenate(cols) if cols else [])),
        shape=(len(geoms), n_pix))
    matrix.sum_duplicates()
    return PixelWeights(matrix, parcels["parcel_id"].astype(str).to_numpy(), full,
                        rule.astype(str), geobox, inward_buffer_m, min_full_pixels)


def weighted_quantiles(group: np.ndarray, values: np.ndarray, weights: np.ndarray,
                       n_groups: int, qs=QUANTILES) -> np.ndarray:
    """Weighted quantiles per group: the smallest value whose cumulative weight reaches q.

    (The inverse of the weighted empirical CDF; with equal weights this is numpy's
    ``method="inverted_cdf"``.) Returns ``(n_groups, len(qs))``, NaN for empty groups.
    """
    out = np.full((n_groups, len(qs)), np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, group))
    g, v, w = group[order], values[order], weights[order]
    cum = np.cumsum(w)
    start = np.searchsorted(g, np.arange(n_groups), side="left")
    stop = np.searchsorted(g, np.arange(n_groups), side="right")
    present = stop > start
    base = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    total = cum[np.maximum(stop - 1, 0)] - base
    for k, q in enumerate(qs):
        pos = np.searchsorted(cum, base + q * total - 1e-12 * total, side="left")
        pos = np.clip(pos, start, np.maximum(stop - 1, start))
        out[present, k] = v[np.minimum(pos[present], len(v) - 1)]
    return out


def parcel_series(cube: xr.Dataset, weights: PixelWeights, *, vegetated_ndvi: float = 0.4,
                  dilation_px: int = 2, min_clear_weight: float = 0.5,
                  progress: Callable[[int, int], None] | None = None) -> xr.Dataset:
    """Per-parcel, per-date NDVI statistics (DESIGN.md parcel-series contract).

    Variables ``(parcel, time)``: ``ndvi_mean`` (coverage-weighted mean over clear pixels),
    ``ndvi_p25/p50/p75`` (weighted quantiles, see :func:`weighted_quantiles`),
    ``clear_fraction`` (share of the parcel's weight that is clear), ``n_pixels`` (clear
    pixel-equivalents: the sum of clear weights), ``vegetated_fraction`` (share of clear weight
    with NDVI ≥ ``vegetated_ndvi``), ``water_fraction`` (share of clear weight with NDWI > 0).
    Dates are read one at a time, so memory does not grow with the number of dates.
    A parcel-date with less than ``min_clear_weight`` clear pixel-equivalents gets NaN statistics.
    """
    if cube.odc.geobox != weights.geobox:
        raise ImageryError("the weights were computed for another pixel grid than the cube's; "
                           "recompute them with pixel_weights(parcels, cube.odc.geobox).")
    n, n_t = weights.matrix.shape[0], cube.sizes["time"]
    coo = weights.matrix.tocoo()
    used, col = np.unique(coo.col, return_inverse=True)  # only pixels some parcel touches
    w_used = sparse.csr_matrix((coo.data, (coo.row, col)), shape=(n, len(used)))
    row_of, w_entry = coo.row, coo.data
    total = weights.weight_sum
    names = ["ndvi_mean", "ndvi_p25", "ndvi_p50", "ndvi_p75", "clear_fraction", "n_pixels",
             "vegetated_fraction", "water_fraction"]
    out = {k: np.full((n, n_t), np.nan, np.float32) for k in names}
    bands = [b for b in ("red", "nir", "green", "scl") if b in cube]

    for t in range(n_t):
        frame = cube[bands].isel(time=t).compute()  # one date in memory at a time
        flat = {b: np.asarray(frame[b].values).ravel()[used] for b in bands}
        clear_px = clear_mask(np.asarray(frame["scl"].values), dilation_px=dilation_px).ravel()[used]
        v = ndvi_index(flat["red"], flat["nir"])
        clear = clear_px & np.isfinite(v)
        cw = w_used @ clear.astype(np.float64)
        ok = cw >= min_clear_weight
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (w_used @ np.where(clear, v, 0.0)) / cw
            veg = (w_used @ (clear & (v >= vegetated_ndvi)).astype(np.float64)) / cw
            if "green" in flat:
                water = (w_used @ (clear & (ndwi_index(flat["green"], flat["nir"]) > 0))
                         .astype(np.float64)) / cw
            else:
                water = np.full(n, np.nan)
            clear_frac = np.where(total > 0, cw / np.where(total > 0, total, 1), np.nan)
        keep = clear[col]
        q = weighted_quantiles(row_of[keep], v[col][keep], w_entry[keep], n)
        out["ndvi_mean"][ok, t] = mean[ok]
        for k, name in enumerate(("ndvi_p25", "ndvi_p50", "ndvi_p75")):
            out[name][ok, t] = q[ok, k]
        out["vegetated_fraction"][ok, t] = veg[ok]
        out["water_fraction"][ok, t] = water[ok]
        out["clear_fraction"][:, t] = clear_frac
        out["n_pixels"][:, t] = cw
        if progress:
            progress(t + 1, n_t)
    ds = xr.Dataset(
        {k: (("parcel", "time"), v) for k, v in out.items()},
        coords={"parcel_id": ("parcel", weights.parcel_id), "time": cube["time"].values,
                "full_pixels": ("parcel", weights.full_pixels),
                "weight_sum": ("parcel", total.astype(np.float32)),
                "pixel_rule": ("parcel", weights.pixel_rule),
                "small_parcel": ("parcel", weights.small_parcel)},
        attrs={"pixel_rule": f"coverage-weighted pixels of the parcel shrunk by "
                             f"{weights.inward_buffer_m:g} m; unbuffered polygon when less than "
                             f"one pixel remains; small_parcel when fewer than "
                             f"{weights.min_full_pixels} whole pixels",
               "inward_buffer_m": weights.inward_buffer_m,
               "vegetated_ndvi": vegetated_ndvi, "cloud_dilation_px": dilation_px,
               "quantile_method": "weighted inverted CDF",
               "crs": weights.geobox.crs.to_wkt()})
    return ds
