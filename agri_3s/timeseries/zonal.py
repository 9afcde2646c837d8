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


def coverage_table(geoms, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact coverage fractions of many polygons on a pixel grid, vectorised.

    Returns ``(geometry index, flat pixel index, fraction)`` for every pixel a polygon covers
    (pixels may be non-square; parts off the grid are dropped; empty geometries give nothing).

    How: in pixel coordinates a cell's covered area is the integral, over its column strip, of
    the clamped height of the polygon boundary (Green's theorem). Every ring edge is split where
    it crosses a grid line, so each piece lies in one cell; a piece adds its trapezoid to its
    own cell and a full-height strip to every cell below it in the same column (a suffix sum).
    With rings oriented counter-clockwise the strips of upper and lower boundaries cancel
    outside the polygon. This is the idea behind exactextract, in numpy.
    """
    t = geobox.transform
    if t.b != 0 or t.d != 0:
        raise ImageryError("rotated pixel grids are not supported; warp the imagery north-up.")
    h, w = geobox.shape
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    geoms = np.asarray(geoms, dtype=object)
    present = np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))
    if len(present) == 0:
        return empty
    px = shapely.transform(geoms[present], lambda xy: np.column_stack(
        ((xy[:, 0] - t.c) / t.a, (xy[:, 1] - t.f) / t.e)))
    px = shapely.orient_polygons(px, exterior_cw=False)
    parts, part_of = shapely.get_parts(px, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    xy, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    same_ring = vertex_ring[:-1] == vertex_ring[1:]
    u0, v0 = xy[:-1][same_ring, 0], xy[:-1][same_ring, 1]
    u1, v1 = xy[1:][same_ring, 0], xy[1:][same_ring, 1]
    edge_poly = part_of[ring_of[vertex_ring[:-1][same_ring]]]
    bounds = shapely.bounds(px)
    c0, r0 = np.floor(bounds[:, 0]).astype(np.int64), np.floor(bounds[:, 1]).astype(np.int64)
    nc = np.floor(bounds[:, 2]).astype(np.int64) - c0 + 1
    nr = np.floor(bounds[:, 3]).astype(np.int64) - r0 + 1
    off = np.concatenate([[0], np.cumsum(nr * nc)])  # each polygon's bbox, column-major

    # split edges at grid crossings: sort the crossing parameters along each edge
    n_edges = len(u0)
    cu, tu = _grid_crossings(u0, u1)
    cv, tv = _grid_crossings(v0, v1)
    edge = np.concatenate([np.arange(n_edges), np.arange(n_edges), cu, cv])
    par = np.concatenate([np.zeros(n_edges), np.ones(n_edges), tu, tv])
    order = np.lexsort((par, edge))
    edge, par = edge[order], par[order]
    piece = edge[:-1] == edge[1:]
    e = edge[:-1][piece]
    ta, tb = par[:-1][piece], par[1:][piece]
    du, dv = (u1 - u0)[e], (v1 - v0)[e]
    d_u = (tb - ta) * du
    keep = d_u != 0  # vertical pieces enclose no area
    e, ta, tb, d_u = e[keep], ta[keep], tb[keep], d_u[keep]
    um = u0[e] + (ta + tb) / 2 * du[keep]
    vm = v0[e] + (ta + tb) / 2 * dv[keep]
    col, row = np.floor(um).astype(np.int64), np.floor(vm).astype(np.int64)
    poly = edge_poly[e]
    cell = off[poly] + (col - c0[poly]) * nr[poly] + (row - r0[poly])
    n_cells = int(off[-1])
    own = np.bincount(cell, weights=-d_u * (vm - row), minlength=n_cells)
    strip = np.bincount(cell, weights=-d_u, minlength=n_cells)
    suffix = np.concatenate([np.cumsum(strip[::-1])[::-1], [0.0]])
    cells = np.arange(n_cells)
    cell_poly = np.repeat(np.arange(len(nr)), nr * nc)
    pos = cells - off[cell_poly]
    column_end = off[cell_poly] + (pos // nr[cell_poly] + 1) * nr[cell_poly]
    frac = own + suffix[:-1] - suffix[column_end] - strip
    hit = frac > 1e-9
    cell_poly, pos, frac = cell_poly[hit], pos[hit], frac[hit]
    c = c0[cell_poly] + pos // nr[cell_poly]
    r = r0[cell_poly] + pos % nr[cell_poly]
    on_grid = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    return (present[cell_poly[on_grid]], (r * w + c)[on_grid],
            np.minimum(frac[on_grid], 1.0))


def _grid_crossings(a0: np.ndarray, a1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments a0→a1 (one coordinate), every integer strictly between the ends:
    (segment index, parameter t in (0, 1) where the segment crosses it)."""
    lo, hi = np.minimum(a0, a1), np.maximum(a0, a1)
    first = np.floor(lo).astype(np.int64) + 1
    n = np.maximum(np.ceil(hi).astype(np.int64) - first, 0)
    seg = np.repeat(np.arange(len(a0)), n)
    k = first[seg] + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return seg, (k - a0[seg]) / (a1[seg] - a0[seg])


def coverage_fractions(geom, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices and the exact fraction of each pixel's area inside one ``geom``."""
    _, idx, frac = coverage_table([geom], geobox)
    return idx, frac


def pixel_weights(parcels: gpd.GeoDataFrame, geobox: GeoBox, *, inward_buffer_m: float = 5.0,
                  min_full_pixels: int = 4) -> PixelWeights:
    """Coverage weights of every parcel (in any CRS) on ``geobox``.

    Examples
    --------
    >>> w = pixel_weights(parcels, cube.odc.geobox)     # doctest: +SKIP
    >>> w.matrix.shape == (len(parcels), cube.sizes["y"] * cube.sizes["x"])  # doctest: +SKIP
    True
    """
    geoms = parcels.geometry.to_crs(geobox.crs.to_wkt()).values.to_numpy()
    n, n_pix = len(geoms), geobox.shape[0] * geobox.shape[1]
    shrunk = shapely.buffer(geoms, -inward_buffer_m) if inward_buffer_m > 0 else geoms
    rows, cols, vals = coverage_table(shrunk, geobox)
    weight = np.bincount(rows, weights=vals, minlength=n)
    rule = np.where(shapely.is_empty(geoms) | shapely.is_missing(geoms), "none", "buffered"
                    ).astype(object)
    # less than one pixel's worth left after buffering: measure the unbuffered polygon
    fallback = np.flatnonzero((weight < 1.0) & (rule != "none"))
    if len(fallback):
        drop = np.isin(rows, fallback)
        r2, c2, v2 = coverage_table(geoms[fallback], geobox)
        rows = np.concatenate([rows[~drop], fallback[r2]])
        cols, vals = np.concatenate([cols[~drop], c2]), np.concatenate([vals[~drop], v2])
        rule[fallback] = "unbuffered"
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n_pix))
    rule[(np.diff(matrix.indptr) == 0) & (rule != "none")] = "none"  # off the grid
    full = np.bincount(rows[vals >= FULL], minlength=n)
    return PixelWeights(matrix, parcels["parcel_id"].astype(str).to_numpy(), full, rule.astype(str),
                        geobox, inward_buffer_m, min_full_pixels)


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
