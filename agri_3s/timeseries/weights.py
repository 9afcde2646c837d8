"""Pixel weights of parcels on an imagery grid: which pixels a parcel's statistics use, and how
much each counts.

Every pixel is weighted by the exact fraction of its area inside the parcel shrunk by an inward
buffer (5 m for 10 m bands), so mixed edge pixels that mostly carry a road or the neighbour's
crop count little or nothing. Parcels whose buffered shape keeps less than one pixel's worth of
weight fall back to the unbuffered polygon, and any parcel with fewer than ``min_full_pixels``
whole pixels is flagged ``small_parcel``. Computed once per parcel set and grid, in threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import geopandas as gpd
import numpy as np
import shapely
from odc.geo.geobox import GeoBox
from scipy import sparse

from ..blocks import local_workers
from ..errors import ImageryError

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
    order = sort_order(rows)  # by parcel, for the CSR matrix
    return rows[order], cols[order], vals[order], full, used


def sort_order(key: np.ndarray) -> np.ndarray:
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
