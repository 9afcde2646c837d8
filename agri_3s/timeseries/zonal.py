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

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial

import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from scipy import sparse

from ..blocks import local_workers
from ..errors import ImageryError
from ..sources.base import NativeWindow, dn_to_reflectance
from .indices import dn_normalized_difference
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
    #: What was measured: ``whole_pixels`` (full_first rule) | ``buffered`` | ``unbuffered`` |
    #: ``none`` (off the grid / empty).
    pixel_rule: np.ndarray
    geobox: GeoBox
    inward_buffer_m: float
    min_full_pixels: int
    #: How pixels are weighted: ``coverage`` | ``full_first`` | ``centre`` (see pixel_weights).
    rule: str = "full_first"

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
    With exteriors counted counter-clockwise and holes clockwise (a ring drawn the other way
    counts negatively) the strips of upper and lower boundaries cancel outside the polygon.
    This is the idea behind exactextract, in numpy, with no sort.
    """
    return _coverage(*_ring_table(np.asarray(geoms, dtype=object)), geobox)


def _ring_table(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rings of many (multi)polygons as one table: every ring's vertices (closed), the ring
    of each vertex, the geometry (index into ``geoms``) of each ring, and whether each ring is
    an exterior. Missing and empty geometries have no rings."""
    present = np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))
    parts, part_of = shapely.get_parts(geoms[present], return_index=True)
    # a part without holes is its own exterior ring: ring objects are made only for holed parts
    holed = shapely.get_num_interior_rings(parts) > 0
    rings, ring_part, exterior = parts, np.arange(len(parts)), np.ones(len(parts), bool)
    if holed.any():
        holed_rings, of = shapely.get_rings(parts[holed], return_index=True)
        rings = np.concatenate([parts[~holed], holed_rings])
        ring_part = np.concatenate([np.flatnonzero(~holed), np.flatnonzero(holed)[of]])
        exterior = np.concatenate([np.ones(int((~holed).sum()), bool),
                                   np.r_[True, of[1:] != of[:-1]]])  # exterior ring first
    xy, vertex_ring = shapely.get_coordinates(rings, return_index=True)
    return xy, vertex_ring, present[part_of[ring_part]], exterior


def _inward_rings(geoms: np.ndarray, distance: float):
    """The :func:`_ring_table` of ``shapely.buffer(geoms, -distance)``. Convex polygons without
    holes (most parcels) are shrunk here: every edge moves inward by ``distance`` and each corner
    goes where its two moved edges meet — eroding a convex polygon makes no arcs, so this is
    the polygon GEOS builds (to ~1e-7 m²), at a fraction of the cost. Concave, holed and
    multi-part parcels, and those losing an edge to the buffer, go to GEOS."""
    simple = np.flatnonzero((shapely.get_type_id(geoms) == 3)
                            & (shapely.get_num_interior_rings(geoms) == 0))
    n_coords = shapely.get_num_coordinates(geoms[simple])
    xy, of = shapely.get_coordinates(geoms[simple], return_index=True)
    start = np.concatenate([[0], np.cumsum(n_coords)])
    tables, done = [], np.zeros(len(geoms), bool)
    for k in np.unique(n_coords[n_coords >= 4]):  # polygons of k coordinates (k - 1 corners)
        sel = np.flatnonzero(n_coords == k)
        ring = xy[start[sel][:, None] + np.arange(k - 1)]  # (polygons, corners, 2), unclosed
        moved, ok = _shrink_convex(ring, distance)
        closed = np.concatenate([moved[ok], moved[ok][:, :1]], axis=1).reshape(-1, 2)
        tables.append((closed, np.repeat(np.arange(int(ok.sum())), k), simple[sel[ok]]))
        done[simple[sel[ok]]] = True
    rest = np.flatnonzero(~done)
    xy_r, vertex_ring, ring_geom, exterior = _ring_table(shapely.buffer(geoms[rest], -distance))
    n_rings = len(ring_geom)
    for closed, ring_of, geom in tables:
        xy_r = np.concatenate([xy_r, closed])
        vertex_ring = np.concatenate([vertex_ring, ring_of + n_rings])
        n_rings += len(geom)
    ring_geom = np.concatenate([rest[ring_geom], *(t[2] for t in tables)])
    exterior = np.concatenate([exterior, np.ones(n_rings - len(exterior), bool)])
    return xy_r, vertex_ring, ring_geom, exterior


def _shrink_convex(ring: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Corners of convex polygons ``ring`` (polygons × corners × 2, any orientation) moved
    inward by ``d``, and which polygons qualify: strictly convex, no edge lost or reversed."""
    edge = np.roll(ring, -1, axis=1) - ring  # edge i runs from corner i to corner i + 1
    length = np.hypot(edge[..., 0], edge[..., 1])
    before = np.roll(edge, 1, axis=1)
    turn = before[..., 0] * edge[..., 1] - before[..., 1] * edge[..., 0]
    side = np.sign(turn.sum(axis=1))  # +1 anticlockwise (interior on the left)
    with np.errstate(invalid="ignore", divide="ignore"):
        normal = np.stack([-edge[..., 1], edge[..., 0]], axis=-1) * (side[:, None] / length
                                                                       )[..., None]
        prev = np.roll(normal, 1, axis=1)
        # where the two edges' moved lines meet: the corner plus d (n1 + n2) / (1 + n1·n2)
        moved = ring + d * (prev + normal) / (1 + (prev * normal).sum(axis=-1))[..., None]
        kept = ((np.roll(moved, -1, axis=1) - moved) * edge).sum(axis=-1) / length
    ok = ((side != 0) & (side[:, None] * turn > 1e-9 * length * np.roll(length, 1, axis=1)
                         ).all(axis=1) & (kept > 1e-9 * length).all(axis=1))
    return moved, ok


def _coverage(xy: np.ndarray, vertex_ring: np.ndarray, ring_geom: np.ndarray,
              exterior: np.ndarray, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`coverage_table` of a :func:`_ring_table`."""
    t = geobox.transform
    if t.b != 0 or t.d != 0:
        raise ImageryError("rotated pixel grids are not supported; warp the imagery north-up.")
    h, w = geobox.shape
    if len(ring_geom) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    # geometries are renumbered 0… in the order of their first ring
    geom_ids, first = np.unique(ring_geom, return_index=True)
    geom_ids = geom_ids[np.argsort(first)]
    renumber = np.zeros(int(geom_ids.max()) + 1, np.int64)
    renumber[geom_ids] = np.arange(len(geom_ids))
    ring_poly = renumber[ring_geom]
    u, v = (xy[:, 0] - t.c) / t.a, (xy[:, 1] - t.f) / t.e
    same_ring = vertex_ring[:-1] == vertex_ring[1:]
    u0, v0, u1, v1 = u[:-1][same_ring], v[:-1][same_ring], u[1:][same_ring], v[1:][same_ring]
    edge_ring = vertex_ring[:-1][same_ring]
    # the area formula wants exteriors anticlockwise and holes clockwise in pixel coordinates
    # (shoelace sign); edges of rings running the other way count negatively
    twice_area = np.bincount(edge_ring, u0 * v1 - u1 * v0, minlength=len(ring_geom))
    edge_sign = np.where((twice_area > 0) == exterior, 1.0, -1.0)[edge_ring]
    edge_poly = ring_poly[edge_ring]
    # each polygon's bounding box of cells, column-major, from its vertices
    vertex_poly = ring_poly[vertex_ring]
    n_poly = len(geom_ids)
    lo_u, hi_u = np.full(n_poly, np.inf), np.full(n_poly, -np.inf)
    lo_v, hi_v = np.full(n_poly, np.inf), np.full(n_poly, -np.inf)
    np.minimum.at(lo_u, vertex_poly, u)
    np.maximum.at(hi_u, vertex_poly, u)
    np.minimum.at(lo_v, vertex_poly, v)
    np.maximum.at(hi_v, vertex_poly, v)
    c0, r0 = np.floor(lo_u).astype(np.int64), np.floor(lo_v).astype(np.int64)
    nc = np.floor(hi_u).astype(np.int64) - c0 + 1
    nr = np.floor(hi_v).astype(np.int64) - r0 + 1
    off = np.concatenate([[0], np.cumsum(nr * nc)])

    # cut edges where they cross grid columns, then those pieces where they cross grid rows:
    # every piece then lies in one cell
    s1, ta, tb = _split(u0, u1)
    du, dv = u1 - u0, v1 - v0
    pu0, pv0 = u0[s1] + ta * du[s1], v0[s1] + ta * dv[s1]
    pu1, pv1 = u0[s1] + tb * du[s1], v0[s1] + tb * dv[s1]
    s2, ta, tb = _split(pv0, pv1)
    qu, qv = pu1 - pu0, pv1 - pv0
    a_u, a_v = pu0[s2] + ta * qu[s2], pv0[s2] + ta * qv[s2]
    d_u = (tb - ta) * qu[s2]
    um, vm = a_u + d_u / 2, a_v + (tb - ta) * qv[s2] / 2
    e = s1[s2]
    keep = d_u != 0  # vertical pieces enclose no area
    e, d_u, um, vm = e[keep], d_u[keep] * edge_sign[e[keep]], um[keep], vm[keep]
    col, row = np.floor(um).astype(np.int64), np.floor(vm).astype(np.int64)
    poly = edge_poly[e]
    cell = off[poly] + (col - c0[poly]) * nr[poly] + (row - r0[poly])
    n_cells = int(off[-1])
    own = np.bincount(cell, weights=-d_u * (vm - row), minlength=n_cells)
    strip = np.bincount(cell, weights=-d_u, minlength=n_cells)
    # a piece's strip covers the cells after its own in the same bbox column
    suffix = np.concatenate([np.cumsum(strip[::-1])[::-1], [0.0]])
    column_poly = np.repeat(np.arange(len(nr)), nc)
    column_start = np.concatenate([[0], np.cumsum(nr[column_poly])[:-1]])
    cell_column = np.repeat(np.arange(len(column_poly)), nr[column_poly])
    column_end = column_start + nr[column_poly]
    frac = own + suffix[:-1] - suffix[column_end[cell_column]] - strip
    hit = np.flatnonzero(frac > 1e-9)
    k = cell_column[hit]
    p = column_poly[k]
    first_column = np.cumsum(nc) - nc
    column_c = c0[column_poly] + np.arange(len(column_poly)) - first_column[column_poly]
    c = column_c[k]
    r = r0[p] + (hit - column_start[k])
    on_grid = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    return geom_ids[p[on_grid]], (r * w + c)[on_grid], np.minimum(frac[hit][on_grid], 1.0)


def _split(a0, a1):
    """Cut segments a0→a1 (one coordinate) at every integer strictly between their ends.
    Per piece, in order along each segment: (segment index, start and end parameter in [0, 1])."""
    lo, hi = np.minimum(a0, a1), np.maximum(a0, a1)
    first = np.floor(lo).astype(np.int64) + 1
    n = np.maximum(np.ceil(hi).astype(np.int64) - first, 0)  # crossings per segment
    seg = np.repeat(np.arange(len(a0)), n)
    i = np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n)  # crossing number along it
    up = a1 > a0
    k = np.where(up[seg], first[seg] + i, (first + n - 1)[seg] - i)
    # the parameters of each segment in order, 0, crossings…, 1, all segments end to end
    params = np.ones(len(seg) + 2 * len(a0))
    ends = np.cumsum(n + 2)
    params[ends - n - 2] = 0.0
    params[np.arange(len(seg)) + 2 * seg + 1] = (k - a0[seg]) / (a1 - a0)[seg]
    is_first = np.zeros(len(params), bool)
    is_first[ends - n - 2] = True
    is_last = np.zeros(len(params), bool)
    is_last[ends - 1] = True
    return np.repeat(np.arange(len(a0)), n + 1), params[~is_last], params[~is_first]


def coverage_fractions(geom, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices and the exact fraction of each pixel's area inside one ``geom``."""
    _, idx, frac = coverage_table([geom], geobox)
    return idx, frac


PIXEL_RULES = ("coverage", "full_first", "centre")


def pixel_weights(parcels: gpd.GeoDataFrame, geobox: GeoBox, *, inward_buffer_m: float = 5.0,
                  rule: str = "full_first", min_full_pixels: int = 4) -> PixelWeights:
    """Pixel weights of every parcel (in any CRS) on ``geobox``.

    The parcel is first shrunk by ``inward_buffer_m``; if less than one pixel's worth is left
    the unbuffered polygon is used instead (``pixel_rule`` "unbuffered"). Then ``rule``:

    * ``coverage`` — each pixel weighted by the exact fraction of its area inside;
    * ``full_first`` — the whole pixels of the (unbuffered) parcel, weight 1, when there are
      at least ``min_full_pixels`` of them — whole pixels carry nothing of the neighbours, so
      they need no buffer — else the coverage weights above;
    * ``centre`` — weight 1 for pixels whose centre lies inside (the classic rasterisation).

    Parcels with fewer than ``min_full_pixels`` whole pixels are flagged ``small_parcel``.

    The default, ``full_first`` with a 5 m buffer, was chosen by measured accuracy against
    sub-pixel-rendered truth (tests/benchmarks/bench_zonal.py --rules; 50,000 parcels, half
    under 0.2 ha): NDVI MAE 0.0048 (0.0072 under 0.2 ha, 0.0064 on 2-pixel strips), every
    parcel measured — against 0.0103 for coverage weights of the buffered parcel and 0.0362
    for coverage weights of the raw polygon (exactextract's rule).

    Examples
    --------
    >>> w = pixel_weights(parcels, cube.odc.geobox)     # doctest: +SKIP
    >>> w.matrix.shape == (len(parcels), cube.sizes["y"] * cube.sizes["x"])  # doctest: +SKIP
    True
    """
    if rule not in PIXEL_RULES:
        raise ValueError(f"rule={rule!r}; use one of {', '.join(PIXEL_RULES)}")
    geometry = parcels.geometry
    if geometry.crs is None or not geobox.crs == geometry.crs:  # (to_crs copies regardless)
        geometry = geometry.to_crs(geobox.crs.to_wkt())
    geoms = geometry.values.to_numpy()
    n, n_pix = len(geoms), geobox.shape[0] * geobox.shape[1]
    # parcels are independent: chunks of them run in threads (GEOS and numpy release the GIL)
    workers = local_workers()
    # chunks of at most PARCELS_PER_CHUNK bound the temporaries; a multiple of the workers
    n_chunks = -(-max(1, -(-n // PARCELS_PER_CHUNK)) // workers) * workers
    step = max(1, -(-n // n_chunks))
    starts = range(0, n, step)
    one = partial(_chunk_weights, geobox=geobox, inward_buffer_m=inward_buffer_m, rule=rule,
                  min_full_pixels=min_full_pixels)
    if len(starts) > 1:
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            parts = list(pool.map(lambda i: one(geoms[i:i + step]), starts))
    else:
        parts = [one(geoms)]
    rows = np.concatenate([p[0] + i for p, i in zip(parts, starts)]) if parts else np.empty(0, int)
    cols, vals, full, used = (np.concatenate([p[k] for p in parts]) if parts else np.empty(0)
                              for k in (1, 2, 3, 4))
    # each chunk's entries are sorted by parcel and the chunks follow each other
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    matrix = sparse.csr_matrix((vals, cols, indptr), shape=(n, n_pix))
    used[(np.diff(matrix.indptr) == 0) & (used != "none")] = "none"  # off the grid
    return PixelWeights(matrix, parcels["parcel_id"].astype(str).to_numpy(), full.astype(np.int64),
                        used.astype(str), geobox, inward_buffer_m, min_full_pixels, rule)


#: Most parcels per thread task when computing weights: small tasks keep their temporaries
#: (~1 kB a parcel) in the CPU cache, large ones spend less time in Python holding the GIL.
#: Measured (2 cores, in-process, two runs each): 4,000 took 0.26-0.29 s on 50k parcels against
#: 0.31-0.48 s for 1,000 and 0.33-0.37 s for 8,000; 2.9-3.5 s on 500k against 3.8-4.7 s for 1,000.
PARCELS_PER_CHUNK = 4_000


def _chunk_weights(geoms: np.ndarray, *, geobox: GeoBox, inward_buffer_m: float, rule: str,
                   min_full_pixels: int):
    """:func:`pixel_weights` for one chunk of parcels: (rows, cols, values, whole pixels, rule)."""
    n = len(geoms)
    if inward_buffer_m > 0:
        rows, cols, vals = _coverage(*_inward_rings(geoms, inward_buffer_m), geobox)
    else:
        rows, cols, vals = coverage_table(geoms, geobox)
    weight = np.bincount(rows, weights=vals, minlength=n)
    used = np.where(shapely.is_empty(geoms) | shapely.is_missing(geoms), "none", "buffered"
                    ).astype(object)
    # less than one pixel's worth left after buffering: measure the unbuffered polygon
    fallback = np.flatnonzero((weight < 1.0) & (used != "none"))
    if len(fallback):
        is_fallback = np.zeros(n, bool)
        is_fallback[fallback] = True
        drop = is_fallback[rows]
        r2, c2, v2 = coverage_table(geoms[fallback], geobox)
        rows = np.concatenate([rows[~drop], fallback[r2]])
        cols, vals = np.concatenate([cols[~drop], c2]), np.concatenate([vals[~drop], v2])
        used[fallback] = "unbuffered"
    full = np.bincount(rows[vals >= FULL], minlength=n)
    if rule == "full_first":
        r0, c0, v0 = coverage_table(geoms, geobox)
        whole = v0 >= FULL
        full_raw = np.bincount(r0[whole], minlength=n)
        enough = full_raw >= min_full_pixels
        drop = enough[rows]
        keep = whole & enough[r0]
        rows = np.concatenate([rows[~drop], r0[keep]])
        cols = np.concatenate([cols[~drop], c0[keep]])
        vals = np.concatenate([vals[~drop], np.ones(int(keep.sum()))])
        used[enough] = "whole_pixels"
        full = np.where(enough, full_raw, full)
    elif rule == "centre":
        shrunk = shapely.buffer(geoms, -inward_buffer_m) if inward_buffer_m > 0 else geoms
        rows, cols, vals = _centre_in(shrunk, geoms, used, geobox, rows, cols)
    order = _sort_order(rows)  # by parcel, for the CSR matrix
    return rows[order], cols[order], vals[order], full, used


def _sort_order(key: np.ndarray) -> np.ndarray:
    """A stable argsort of non-negative integers: one plain sort of the keys carrying their
    position in the low bits (numpy's plain sort is several times faster than argsort)."""
    bits = max(1, (len(key) - 1).bit_length())
    if len(key) == 0 or int(key.max()) >= 1 << (62 - bits):
        return np.argsort(key, kind="stable")
    return np.sort((key.astype(np.int64) << bits) | np.arange(len(key))) & ((1 << bits) - 1)


def _centre_in(shrunk, geoms, used, geobox, rows, cols):
    """Weight 1 for candidate pixels whose centre lies in the (buffered or fallback) polygon."""
    t, w = geobox.transform, geobox.shape[1]
    polys = np.where(used == "unbuffered", geoms, shrunk)[rows]
    r, c = np.divmod(cols, w)
    centres = shapely.points(t.c + (c + 0.5) * t.a, t.f + (r + 0.5) * t.e)
    inside = shapely.contains(polys, centres)
    return rows[inside], cols[inside], np.ones(int(inside.sum()))


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


#: The quantile statistics, in the order of :data:`QUANTILES`.
QUANTILE_STATS = ("ndvi_p25", "ndvi_p50", "ndvi_p75")
#: Ratio statistics: which per-parcel sum is divided by the clear weight.
_SUM_OF = {"ndvi_mean": "sum", "vegetated_fraction": "veg", "water_fraction": "water",
           "green_mean": "green"}
#: Statistics of the parcel-series contract; ``parcel_series(stats=…)`` computes a subset.
STATS = ("ndvi_mean", "ndvi_p25", "ndvi_p50", "ndvi_p75", "clear_fraction", "n_pixels",
         "vegetated_fraction", "water_fraction", "green_mean")
#: Statistics of the green band (B03): NaN when the imagery has none.
GREEN_STATS = ("water_fraction", "green_mean")
DEFAULT_WINDOW_PX = 1024


@dataclass(frozen=True)
class _Window:
    """The weight entries falling in one processing window (one cube chunk)."""

    ys: slice
    xs: slice
    #: Global parcel index of each parcel with pixels in the window.
    parcels: np.ndarray
    #: Per entry (row-major, so that reads are gathered in memory order): local parcel index,
    #: row and column inside the window, weight.
    entry_parcel: np.ndarray
    entry_row: np.ndarray
    entry_col: np.ndarray
    entry_weight: np.ndarray
    #: Per local parcel: all its pixels are in this window (its quantiles finish here).
    whole: np.ndarray
    #: (local parcel × entry) weights: per-parcel sums are one sparse matrix-vector product
    #: (scipy runs it without the GIL, 2-3x faster than a weighted ``np.bincount``).
    sum_matrix: sparse.csr_matrix
    #: Computed once per window and reused for every date: flat indices per read layout,
    #: grid boxes.
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def take(self, native, top: int = 0, left: int = 0) -> np.ndarray:
        """The entries' values in a source's window read (a ``NativeWindow`` whose first pixel
        is ``top`` rows and ``left`` columns before the window's); indices cached per layout."""
        key = (native.k, native.dr, native.dc, native.data.shape[1], top, left)
        index = self._cache.get(key)
        if index is None:
            index = self._cache[key] = native.flat_index(
                self.entry_row + top, self.entry_col + left).astype(np.intp)
        return np.take(native.data, index)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per local parcel, the weighted sum of the entries' ``values``."""
        return self.sum_matrix @ values

    def boxes(self, geobox: GeoBox, halo_px: int) -> tuple[GeoBox, GeoBox, int, int]:
        """The window's box on ``geobox``, the box grown by ``halo_px`` (within the grid), and
        how many rows and columns the halo adds before the window (slicing a GeoBox is slow)."""
        key = ("boxes", halo_px)  # a window belongs to one grid
        if key not in self._cache:
            d, (h, w) = halo_px, geobox.shape
            top, left = min(d, self.ys.start), min(d, self.xs.start)
            halo = geobox[self.ys.start - top:min(self.ys.stop + d, h),
                          self.xs.start - left:min(self.xs.stop + d, w)]
            self._cache[key] = (geobox[self.ys, self.xs], halo, top, left)
        return self._cache[key]


@dataclass(frozen=True)
class _WindowSplit:
    """The weight entries grouped by processing window: each window's :class:`_Window` is made
    from this by :func:`_window_plan` in a task of its own, so windows are planned in
    parallel."""

    weights: PixelWeights
    #: Window borders (grid rows, grid columns); windows are numbered row-major.
    y_edges: np.ndarray
    x_edges: np.ndarray
    #: Entry numbers grouped by window (each group in entry order, so parcel by parcel), where
    #: each group starts, and every entry's grid row, grid column and parcel.
    order: np.ndarray
    starts: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    parcel: np.ndarray

    @property
    def occupied(self) -> list[int]:
        """The numbers of the windows with entries."""
        return np.flatnonzero(np.diff(self.starts)).tolist()

    def slices(self, k: int) -> tuple[slice, slice]:
        iy, ix = divmod(k, len(self.x_edges) - 1)
        return (slice(int(self.y_edges[iy]), int(self.y_edges[iy + 1])),
                slice(int(self.x_edges[ix]), int(self.x_edges[ix + 1])))


def _split_windows(weights: PixelWeights, y_edges: np.ndarray, x_edges: np.ndarray
                   ) -> _WindowSplit:
    """Group the weight entries by processing window (window borders at the given edges)."""
    m = weights.matrix
    rows, cols = np.divmod(m.indices, weights.geobox.shape[1])
    n_wy, n_wx = len(y_edges) - 1, len(x_edges) - 1
    dtype = np.min_scalar_type(n_wy * n_wx)  # ≤ 16 bits: numpy's stable sort is a radix sort
    window = (np.repeat(np.arange(n_wy, dtype=dtype) * n_wx, np.diff(y_edges))[rows]
              + np.repeat(np.arange(n_wx, dtype=dtype), np.diff(x_edges))[cols])
    order = np.argsort(window, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(window, minlength=n_wy * n_wx))])
    parcel = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
    return _WindowSplit(weights, y_edges, x_edges, order, starts, rows, cols, parcel)


def _window_plan(split: _WindowSplit, k: int) -> _Window:
    """Window ``k``'s entries, row-major inside it, and its sum matrix."""
    m = split.weights.matrix
    ys, xs = split.slices(k)
    sel = split.order[split.starts[k]:split.starts[k + 1]]  # parcel by parcel
    parcel = split.parcel[sel]
    present = np.zeros(m.shape[0], bool)
    present[parcel] = True
    parcels = np.flatnonzero(present)
    local = (np.cumsum(present) - 1)[parcel]
    count = np.bincount(local, minlength=len(parcels))
    whole = count == np.diff(m.indptr)[parcels]
    row, col = split.rows[sel] - ys.start, split.cols[sel] - xs.start
    within = _sort_order(row * (xs.stop - xs.start) + col)  # the row-major order of the entries
    position = np.empty_like(within)  # where each entry lands in that order
    position[within] = np.arange(len(within))
    weight = m.data[sel]
    sum_matrix = sparse.csr_matrix((weight, position, np.concatenate([[0], np.cumsum(count)])),
                                   shape=(len(parcels), len(sel)))
    return _Window(ys, xs, parcels, local[within], row[within].astype(np.int32),
                   col[within].astype(np.int32), weight[within], whole, sum_matrix)


def _plane(chunk) -> np.ndarray:
    """A (1, y, x) chunk of a (time, y, x) cube as a 2-D array."""
    a = np.asarray(chunk)
    return a.reshape(a.shape[-2:])


def _halo_clear(scl_blocks: list, dilation_px: int) -> np.ndarray:
    """Clear mask of the centre chunk of a 3 × 3 neighbourhood of SCL chunks (None = beyond the
    scene), with the cloud dilation seeing ``dilation_px`` pixels into the neighbours."""
    centre = _plane(scl_blocks[1][1])
    d = dilation_px
    if d == 0:
        return clear_mask(centre, dilation_px=0)
    h, w = centre.shape
    halo = np.zeros((h + 2 * d, w + 2 * d), np.uint8)  # 0 = no data: masked, never dilated
    # where each neighbour's strip lands in the halo array, and which strip of it to take
    rows = {0: (slice(0, d), slice(-d, None)), 1: (slice(d, d + h), slice(None)),
            2: (slice(d + h, None), slice(0, d))}
    cols = {0: (slice(0, d), slice(-d, None)), 1: (slice(d, d + w), slice(None)),
            2: (slice(d + w, None), slice(0, d))}
    for r in range(3):
        for c in range(3):
            if scl_blocks[r][c] is None:
                continue
            part = _plane(scl_blocks[r][c])[rows[r][1], cols[c][1]]
            target = halo[rows[r][0], cols[c][0]]
            ph, pw = part.shape  # a neighbour thinner than d: keep the side next to the centre
            target[(slice(-ph, None) if r == 0 else slice(0, ph)),
                   (slice(-pw, None) if c == 0 else slice(0, pw))] = part
    return clear_mask(halo, dilation_px=d)[d:d + h, d:d + w]


def _chunk_stats(win: _Window, red, nir, green, scl_blocks: list, dilation_px: int,
                 vegetated_ndvi: float, stats: tuple[str, ...]) -> dict:
    """One window and date from the cube's own chunks (reflectance, SCL)."""
    if dilation_px:
        clear = win.take(NativeWindow(_halo_clear(scl_blocks, dilation_px)))
    else:  # no dilation: classify only the pixels parcels use
        clear = clear_mask(win.take(NativeWindow(_plane(scl_blocks[1][1]))), dilation_px=0)
    nir = win.take(NativeWindow(_plane(nir)))
    v = ndvi_index(win.take(NativeWindow(_plane(red))), nir)
    if green is None:
        return _entry_stats(win, v, None, clear, vegetated_ndvi, stats)
    g = win.take(NativeWindow(_plane(green)))
    return _entry_stats(win, v, ndwi_index(g, nir) > 0, clear, vegetated_ndvi, stats, g)


def _direct_stats(win: _Window, reader, t: int, *, geobox: GeoBox, green: bool,
                  dilation_px: int, vegetated_ndvi: float, stats: tuple[str, ...]) -> dict:
    """One window and date read straight from the source (see ``attach_reader``): raw DNs of
    only the pixels parcels use, indices straight from them, SCL classified at its own
    resolution and read first, so a window whose parcel pixels are all clouded decodes nothing
    else (half of a summer season's acquisitions can be)."""
    # cloud dilation sees dilation_px pixels beyond the window (within the grid)
    d = dilation_px
    box, halo, top, left = win.boxes(geobox, d)

    def dn(variable: str):
        got = reader.read(variable, t, box)
        return None if got is None else (win.take(got[0]), got[1])

    got = reader.read("scl", t, halo)
    if got is None:
        clear = np.zeros(len(win.entry_row), bool)
    else:
        scl = got[0]
        if d == 0:
            clear = clear_mask(win.take(scl), dilation_px=0)
        elif d % scl.k == 0:  # a d-pixel dilation is a d/k one on the coarser SCL grid
            mask = clear_mask(scl.data, dilation_px=d // scl.k)
            clear = win.take(replace(scl, data=mask), top, left)
        else:
            full = NativeWindow(clear_mask(scl.full(halo.shape), dilation_px=d))
            clear = win.take(full, top, left)
    n = len(win.entry_row)
    if not clear.any():  # every parcel pixel under cloud (or no data): nothing else to decode
        return _entry_stats(win, np.full(n, np.nan, np.float32), None, clear, vegetated_ndvi,
                            stats)
    nir = dn("nir")
    v = dn_normalized_difference(nir, dn("red"), n)
    if not green:
        return _entry_stats(win, v, None, clear, vegetated_ndvi, stats)
    g = dn("green")
    water = dn_normalized_difference(g, nir, n) > 0
    return _entry_stats(win, v, water, clear, vegetated_ndvi, stats,
                        None if g is None else dn_to_reflectance(*g))


def _entry_stats(win: _Window, v: np.ndarray, water: np.ndarray | None, clear_px: np.ndarray,
                 vegetated_ndvi: float, stats: tuple[str, ...],
                 green: np.ndarray | None = None) -> dict:
    """Additive sums for one window and date from its entries' NDVI (``v``), open-water flags,
    green reflectance and clear flags (+ finished quantiles of parcels wholly inside, and the
    raw clear entries of parcels that continue in other windows)."""
    clear = clear_px & np.isfinite(v)
    n = len(win.parcels)
    out = {"clear": win.sums(clear.astype(np.float64)),
           "sum": win.sums(np.where(clear, v, 0.0))}
    if "vegetated_fraction" in stats:
        out["veg"] = win.sums((clear & (v >= vegetated_ndvi)).astype(np.float64))
    if "water_fraction" in stats and water is not None:
        out["water"] = win.sums((clear & water).astype(np.float64))
    if "green_mean" in stats and green is not None:
        out["green"] = win.sums(np.where(clear, np.nan_to_num(green), 0.0))
    if any(q in stats for q in QUANTILE_STATS):
        done = clear & win.whole[win.entry_parcel]
        out["q"] = weighted_quantiles(win.entry_parcel[done], v[done], win.entry_weight[done], n)
        rest = clear & ~win.whole[win.entry_parcel]
        out["raw"] = (win.parcels[win.entry_parcel[rest]], v[rest], win.entry_weight[rest])
    return out


def _combine_date(parts: list[dict], windows: list[_Window], n: int) -> dict:
    """Sum the windows' partial results of one date into per-parcel totals (only the sums the
    statistics asked for: these wait in memory for the rest of their batch)."""
    sums = ("clear", "sum", "veg", "water", "green")
    tot = {k: np.zeros(n) for k in sums if any(k in part for part in parts)}
    raw = []
    if any("q" in part for part in parts):
        tot["q"] = np.full((n, 3), np.nan)
    for win, part in zip(windows, parts):
        for k in sums:
            if k in part:
                tot[k][win.parcels] += part[k]  # parcels are unique within a window
        if "q" in part:
            tot["q"][win.parcels[win.whole]] = part["q"][win.whole]
            raw.append(part["raw"])
    if raw:
        g, v, w = (np.concatenate(x) for x in zip(*raw))
        split = weighted_quantiles(g, v, w, n)
        crossing = np.unique(g)
        tot["q"][crossing] = split[crossing]
    return tot


def _rule_text(weights: PixelWeights) -> str:
    """The pixel rule in words, for the series' attributes and the run manifest."""
    b, k = f"{weights.inward_buffer_m:g}", weights.min_full_pixels
    fallback = (f"coverage-weighted pixels of the parcel shrunk by {b} m (the unbuffered "
                f"polygon when less than one pixel remains)")
    if weights.rule == "full_first":
        return (f"whole pixels of the parcel when it has at least {k}; otherwise {fallback}; "
                f"small_parcel when fewer than {k} whole pixels")
    return f"{weights.rule}: {fallback}; small_parcel when fewer than {k} whole pixels"


def _scheduler():
    """The scheduler dask would pick, named without its own lookup when ``dask.distributed`` was
    never imported (then no Client can exist, and the lookup would import it: ~0.2 s)."""
    import sys

    import dask

    if "distributed" in sys.modules:
        return None
    import dask.local
    import dask.threaded

    return {None: dask.threaded.get, "threads": dask.threaded.get,
            "threading": dask.threaded.get, "sync": dask.local.get_sync,
            "synchronous": dask.local.get_sync, "single-threaded": dask.local.get_sync
            }.get(dask.config.get("scheduler", None))


def _window_jobs(cube: xr.Dataset, weights: PixelWeights, green: bool, dilation_px: int,
                 vegetated_ndvi: float, stats: tuple[str, ...]):
    """The weight entries split by processing window, the dask graph their tasks draw on, and
    a function making the task of (window number, key of its plan, date).

    A cube whose source left a direct reader (LocalSource) is read straight from its files in
    the reader's windows, one task per window and date reading what it needs; any other cube
    through its own dask chunks (1024 px windows for a cube without chunks)."""
    from ..sources.base import window_reader

    variables = ["red", "nir", "scl"] + (["green"] if green else [])
    reader = window_reader(cube, variables)
    if reader is not None:
        split = _split_windows(weights, *reader.window_edges())
        one = partial(_direct_stats, geobox=weights.geobox, green=green,
                      dilation_px=dilation_px, vegetated_ndvi=vegetated_ndvi, stats=stats)
        reader_key = f"agri3s-reader-{uuid.uuid4().hex}"
        return split, {reader_key: reader}, lambda k, plan, t: (one, plan, reader_key, t)

    window = {"time": 1, "y": DEFAULT_WINDOW_PX, "x": DEFAULT_WINDOW_PX}
    bands = {b: (cube[b] if cube[b].chunks is not None else cube[b].chunk(window)).data
             for b in variables}
    chunks = bands["red"].chunks
    y_edges = np.concatenate([[0], np.cumsum(chunks[1])])
    x_edges = np.concatenate([[0], np.cumsum(chunks[2])])
    split = _split_windows(weights, y_edges, x_edges)
    for b in variables:
        if bands[b].chunks != chunks:
            bands[b] = bands[b].rechunk(chunks)
    # the chunks' own tasks, optimised once: a window is exactly one chunk of every band
    blocks = {b: a.to_delayed() for b, a in bands.items()}
    graph = {}
    for blk in blocks.values():
        graph.update(blk.flat[0].dask)
    ny, nx = len(chunks[1]), len(chunks[2])
    one = partial(_chunk_stats, dilation_px=dilation_px, vegetated_ndvi=vegetated_ndvi,
                  stats=stats)

    def from_chunks(k, plan, t):
        iy, ix = divmod(k, nx)
        scl = [[blocks["scl"][t, iy + dy, ix + dx].key
                if 0 <= iy + dy < ny and 0 <= ix + dx < nx else None for dx in (-1, 0, 1)]
               for dy in (-1, 0, 1)]
        return (one, plan, blocks["red"][t, iy, ix].key, blocks["nir"][t, iy, ix].key,
                blocks["green"][t, iy, ix].key if green else None, scl)
    return split, graph, from_chunks


#: Per-date results held until their batch of dates is written out (bounds the batch size).
BATCH_RESULT_BYTES = 16 * 1024 * 1024


def parcel_series(cube: xr.Dataset, weights: PixelWeights, *, stats: tuple[str, ...] = STATS,
                  vegetated_ndvi: float = 0.4, dilation_px: int = 2,
                  min_clear_weight: float = 0.5, dates_per_batch: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> xr.Dataset:
    """Per-parcel, per-date NDVI statistics (DESIGN.md parcel-series contract).

    Variables ``(parcel, time)``: ``ndvi_mean`` (weighted mean over clear pixels),
    ``ndvi_p25/p50/p75`` (weighted quantiles, see :func:`weighted_quantiles`),
    ``clear_fraction`` (share of the parcel's weight that is clear), ``n_pixels`` (clear
    pixel-equivalents: the sum of clear weights), ``vegetated_fraction`` (share of clear weight
    with NDVI ≥ ``vegetated_ndvi``), ``water_fraction`` (share of clear weight with NDWI > 0),
    ``green_mean`` (weighted mean green reflectance over clear pixels: the look screen's
    brightness check for haze the SCL calls clear).
    ``stats`` selects a subset (``clear_fraction`` and ``n_pixels`` are always given).
    A parcel-date with less than ``min_clear_weight`` clear pixel-equivalents gets NaN.

    Streaming: the work runs per (window, date) — windows are the cube's dask chunks (or
    1024 px) — as a dask graph, a batch of dates at a time, so memory does not grow with the
    number of dates and no full scene is ever in memory. Parcels crossing window borders are
    combined exactly (sums add up; their quantiles are computed from the pooled pixels). Runs
    on the current dask scheduler: threads by default, a ``dask.distributed`` cluster when a
    ``Client`` is active. Cloud dilation sees ``dilation_px`` pixels beyond each window.
    """
    import dask
    import dask.base
    import dask.threaded
    from dask.delayed import Delayed
    from dask.optimization import cull

    unknown = set(stats) - set(STATS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; choose from {STATS}")
    if cube.odc.geobox != weights.geobox:
        raise ImageryError("the weights were computed for another pixel grid than the cube's; "
                           "recompute them with pixel_weights(parcels, cube.odc.geobox).")
    n, n_t = weights.matrix.shape[0], cube.sizes["time"]
    stats = tuple(dict.fromkeys((*stats, "clear_fraction", "n_pixels")))
    green = any(k in stats for k in GREEN_STATS) and "green" in cube
    split, graph, window_task = _window_jobs(cube, weights, green, dilation_px, vegetated_ndvi,
                                             stats)
    name = f"agri3s-series-{uuid.uuid4().hex}"
    windows = split.occupied
    plans = [(f"{name}-plan", k) for k in windows]
    get = _scheduler() or dask.base.get_scheduler() or dask.threaded.get
    # every window planned first, in parallel, and kept where the reads run (in this process,
    # or on a cluster's workers); with the plans made, dask orders the reads date by date (with
    # them as tasks it goes window by window, every thread cycling through every date's files)
    client = getattr(get, "__self__", None)  # a dask.distributed Client, if get is its get
    if hasattr(client, "scatter"):  # the entries (all the weights) go to the workers directly,
        split = client.scatter(split)  # not through the scheduler inside the graph
    planning = {f"{name}-split": split, **{plan: (_window_plan, f"{name}-split", k)
                                            for plan, k in zip(plans, windows)}}
    del split
    for made in dask.persist(*(Delayed(plan, planning) for plan in plans), scheduler=get):
        graph.update(made.dask)  # {plan: the plan} or, on a cluster, {plan: its future}
    del planning  # (the grouped entries)
    # (time, parcel) while filling: each date writes contiguous rows
    out = {k: np.full((n_t, n), np.nan, np.float32) for k in STATS if k in stats}
    total = weights.weight_sum
    # a date's combined sums (8 bytes a parcel each) wait in memory for the end of its batch
    n_sums = 2 + ("vegetated_fraction" in stats) + green * sum(
        k in stats for k in GREEN_STATS) + 3 * any(
        q in stats for q in QUANTILE_STATS)
    batch = dates_per_batch or int(np.clip(BATCH_RESULT_BYTES // (8 * n_sums * max(n, 1)),
                                           4, 64))
    for t0 in range(0, n_t, batch):
        dates = range(t0, min(t0 + batch, n_t))
        dsk, keys = dict(graph), [(f"{name}-date", t) for t in dates]
        for t, key in zip(dates, keys):
            parts = [(name, k, t) for k in windows]
            dsk.update((part, window_task(k, plan, t))
                       for k, part, plan in zip(windows, parts, plans))
            dsk[key] = (_combine_date, parts, plans, n)
        run = get
        if get is dask.threaded.get:  # a few tasks per hand-out: less scheduler traffic
            run = partial(get, chunksize=int(np.clip(len(dsk) // (8 * local_workers()), 1, 8)))
        for t, tot in zip(dates, run(cull(dsk, keys)[0], keys)):
            cw = tot.get("clear", np.zeros(n))  # no window at all: nothing is clear
            ok = cw >= min_clear_weight
            for k in out if ok.any() else ():
                if k in ("clear_fraction", "n_pixels") or (k in GREEN_STATS and not green):
                    continue  # (water and green stay NaN without a green band)
                if k in QUANTILE_STATS:
                    np.copyto(out[k][t], tot["q"][:, QUANTILE_STATS.index(k)], where=ok)
                else:
                    with np.errstate(invalid="ignore", divide="ignore"):  # (min_clear_weight=0)
                        np.divide(tot[_SUM_OF[k]], cw, out=out[k][t], where=ok)
            np.divide(cw, total, out=out["clear_fraction"][t], where=total > 0)
            out["n_pixels"][t] = cw
        if progress:
            progress(dates.stop, n_t)
    return xr.Dataset(
        {k: (("parcel", "time"), v.T) for k, v in out.items()},  # (a view: no copy)
        coords={"parcel_id": ("parcel", weights.parcel_id), "time": cube["time"].values,
                "full_pixels": ("parcel", weights.full_pixels),
                "weight_sum": ("parcel", total.astype(np.float32)),
                "pixel_rule": ("parcel", weights.pixel_rule),
                "small_parcel": ("parcel", weights.small_parcel)},
        attrs={"pixel_rule": _rule_text(weights),
               "inward_buffer_m": weights.inward_buffer_m, "weights_rule": weights.rule,
               "vegetated_ndvi": vegetated_ndvi, "cloud_dilation_px": dilation_px,
               "quantile_method": "weighted inverted CDF",
               "crs": weights.geobox.crs.to_wkt()})
