"""Spatial partitions of a job's parcels: the plan, each partition's series, their assembly.

A job's parcels are split by cells of the imagery grid: square blocks of ``partition_px``
pixels whose edges lie on multiples of ``partition_px`` in the imagery files' own pixel grid
(2048 px = 20.48 km at 10 m: 36 cells on a Sentinel-2 tile; a multiple of the usual 256 / 512 /
1024 px tiles, so no file tile belongs to two cells). A partition computes the parcel series of
its cell. A parcel wholly inside is finished there; a parcel crossing the cell's edge (a *seam*
parcel: ~1 % of them at 2048 px) leaves one series row per pixel it has in the cell, and the
seam rows of all partitions are combined at the end — sums add up, quantiles are taken over the
pooled pixels — so every tile is decoded once and the series equals the one-pass engine's
(:func:`~agri_3s.timeseries.zonal.parcel_series`) up to the order in which sums are added.

A partition is the unit of a job's work: :mod:`agri_3s.partition_job` keys, checkpoints and
resumes them, on this machine or on a ``dask.distributed`` cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from scipy import sparse

from .errors import InputError
from .sources.base import attach_reader, window_reader
from .timeseries.zonal import (
    QUANTILE_STATS,
    STATS,
    PixelWeights,
    parcel_series,
    pixel_weights,
    weighted_quantiles,
)

#: Cells of 2048 px: 36 partitions of ~28,000 parcels on a Sentinel-2 tile holding 10⁶.
DEFAULT_PARTITION_PX = 2048
#: Codes of the per-parcel ``pixel_rule`` in the parts (NetCDF 3 has no string arrays).
RULES = ("whole_pixels", "buffered", "unbuffered", "none")
#: Sources of the code that computes a series: a change here invalidates the checkpoints.
SERIES_CODE = ("partitions.py", "timeseries/zonal.py", "timeseries/weights.py",
               "timeseries/quantiles.py", "timeseries/masking.py", "timeseries/indices.py",
               "sources/base.py", "sources/local.py", "sources/safe.py", "sources/stac.py",
               "sources/sentinelhub.py", "sources/cache.py", "crs.py")
#: Statistics that are NaN where fewer than ``min_clear_weight`` pixel-equivalents are clear.
_MASKED = tuple(k for k in STATS if k not in ("clear_fraction", "n_pixels"))


@dataclass(frozen=True)
class SeriesParams:
    """The engine's settings for a job's series (the defaults of ``pixel_weights`` and
    ``parcel_series``); part of every checkpoint's key."""

    inward_buffer_m: float = 5.0
    rule: str = "full_first"
    min_full_pixels: int = 4
    vegetated_ndvi: float = 0.4
    dilation_px: int = 2
    min_clear_weight: float = 0.5
    stats: tuple[str, ...] = STATS


@dataclass(frozen=True)
class Partition:
    """One cell of the batch grid and the parcels whose pixels may lie in it."""

    #: Row-major number of the cell among all cells of the grid.
    number: int
    #: The cell on the batch grid: (first, end) rows and columns.
    rows: tuple[int, int]
    cols: tuple[int, int]
    #: Positions (in the batch) of the parcels whose pixel box meets the cell.
    parcels: np.ndarray
    #: Parcels counted for this partition in progress reports (their box starts here).
    n_counted: int
    #: Hash of everything the partition's series depends on.
    key: str = ""


# --- planning -----------------------------------------------------------------------------

def cell_edges(cube: xr.Dataset, partition_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column edges of the partition cells on ``cube``'s grid.

    A local archive's cells lie on multiples of ``partition_px`` in the files' own pixel grid
    (so a batch's cells do not move when its extent does); a dask-backed cube's on its chunk
    edges (the first edge at or after each multiple); any other cube's on multiples of
    ``partition_px`` from its corner."""
    if partition_px < 16:
        raise InputError(f"partition size {partition_px} px is too small.",
                         source="--partition-px", fix="use at least 16 (default 2048)")
    h, w = cube.odc.geobox.shape
    reader = window_reader(cube, cube_bands(cube))
    offset = getattr(reader, "grid_offset", (0, 0))
    chunks = cube["red"].chunks if "red" in cube else None
    edges = []
    for axis, (n, off) in enumerate(zip((h, w), offset)):
        if reader is None and chunks is not None:
            e = np.concatenate([[0], np.cumsum(chunks[axis + 1])])
            cell = e // partition_px
            keep = np.r_[True, cell[1:] != cell[:-1]]
            keep[-1] = True
            edges.append(e[keep])
        else:
            edges.append(np.unique(np.r_[0, np.arange((-off) % partition_px, n, partition_px),
                                         n]))
    return edges[0], edges[1]


def plan_partitions(geoms: np.ndarray, geobox: GeoBox, y_edges: np.ndarray,
                    x_edges: np.ndarray) -> list[Partition]:
    """The partitions of parcels ``geoms`` (shapely, in the grid's CRS; None = not measured)
    on the cells bounded by ``y_edges`` × ``x_edges``: a parcel belongs to every cell its pixel
    box (plus one pixel) meets. Cells without parcels are left out."""
    t = geobox.transform
    h, w = geobox.shape
    xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
    ok = np.isfinite(xmin)
    with np.errstate(invalid="ignore"):
        c0 = np.floor((xmin - t.c) / t.a) - 1
        c1 = np.floor((xmax - t.c) / t.a) + 1
        r0 = np.floor((ymax - t.f) / t.e) - 1
        r1 = np.floor((ymin - t.f) / t.e) + 1
    ok &= (c1 >= 0) & (c0 < w) & (r1 >= 0) & (r0 < h)
    pos = np.flatnonzero(ok)
    rc = [np.clip(a[ok], 0, n - 1).astype(np.int64)
          for a, n in ((r0, h), (r1, h), (c0, w), (c1, w))]
    iy0, iy1 = (np.searchsorted(y_edges, a, side="right") - 1 for a in rc[:2])
    ix0, ix1 = (np.searchsorted(x_edges, a, side="right") - 1 for a in rc[2:])
    n_cx = len(x_edges) - 1
    ny, nx = iy1 - iy0 + 1, ix1 - ix0 + 1
    count = ny * nx
    parcel = np.repeat(pos, count)
    k = np.arange(len(parcel)) - np.repeat(np.cumsum(count) - count, count)
    first = k == 0  # the cell of the box's first pixel counts the parcel in progress
    cell = (np.repeat(iy0, count) + k // np.repeat(nx, count)) * n_cx + (
        np.repeat(ix0, count) + k % np.repeat(nx, count))
    order = np.argsort(cell, kind="stable")
    cell, parcel, first = cell[order], parcel[order], first[order]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    ends = np.r_[starts[1:], len(cell)]
    out = []
    for a, b in zip(starts, ends):
        iy, ix = divmod(int(cell[a]), n_cx)
        out.append(Partition(int(cell[a]), (int(y_edges[iy]), int(y_edges[iy + 1])),
                             (int(x_edges[ix]), int(x_edges[ix + 1])), parcel[a:b],
                             int(first[a:b].sum())))
    return out


# --- one partition -------------------------------------------------------------------------

def cube_bands(cube: xr.Dataset) -> list[str]:
    return [b for b in ("red", "nir", "scl", "green") if b in cube]


def sub_cube(cube: xr.Dataset, rows: tuple[int, int], cols: tuple[int, int]) -> xr.Dataset:
    """``cube`` cut to ``rows`` × ``cols`` of its grid, keeping its direct window reader (on the
    cut grid) when it has one."""
    reader = window_reader(cube, cube_bands(cube))
    sub = cube.isel(y=slice(*rows), x=slice(*cols))
    if reader is not None and hasattr(reader, "grid_offset"):
        r0, c0 = reader.grid_offset
        sub = attach_reader(sub, dataclasses.replace(
            reader, geobox=sub.odc.geobox, grid_offset=(r0 + rows[0], c0 + cols[0])))
    return sub


#: Per seam pixel (a one-pixel row of the engine), the statistics that add up as weighted
#: means over a parcel's pooled pixels; the key's row array holds the variable's values.
SEAM_VARS = {"seam_ndvi": "ndvi_mean", "seam_vegetated": "vegetated_fraction",
             "seam_water": "water_fraction", "seam_green": "green_mean"}


def run_partition(cube: xr.Dataset, part: Partition, parcels: gpd.GeoDataFrame,
                  params: SeriesParams = SeriesParams(),
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """The series of one partition: ``parcels`` are the partition's parcels (in the grid's
    CRS, geometry None where not measured), ``cube`` the whole batch's cube.

    Returns the part's arrays: ``parcel`` (positions of the parcels finished here) with one
    (parcel, time) array per statistic; ``owned`` (positions of the parcels whose first pixel
    lies here) with their ``full_pixels``, ``pixel_rule`` (codes of :data:`RULES`) and
    ``weight_sum``; and the ``seam_*`` rows (one per pixel here of a parcel crossing the cell's
    edge: ``seam_parcel``, ``seam_weight`` and the :data:`SEAM_VARS` per date, NaN where not
    clear); ``attrs`` are the engine's.
    """
    geobox = cube.odc.geobox
    (h, w), d = geobox.shape, params.dilation_px
    weights = pixel_weights(parcels, geobox, inward_buffer_m=params.inward_buffer_m,
                            rule=params.rule, min_full_pixels=params.min_full_pixels)
    m = weights.matrix
    n = m.shape[0]
    counts = np.diff(m.indptr)
    entry_row = np.repeat(np.arange(n), counts)
    r, c = np.divmod(m.indices.astype(np.int64), w)
    (r0, r1), (c0, c1) = part.rows, part.cols
    inside = (r >= r0) & (r < r1) & (c >= c0) & (c < c1)
    n_in = np.bincount(entry_row[inside], minlength=n)
    interior = (n_in == counts) & (counts > 0)
    seam = (n_in > 0) & (n_in < counts)
    first = np.full(n, -1, np.int64)  # each parcel's first pixel (row-major) decides its owner
    has = counts > 0
    if has.any():
        first[has] = np.minimum.reduceat(m.indices.astype(np.int64), m.indptr[:-1][has])
    fr, fc = np.divmod(first, w)
    owned = has & (fr >= r0) & (fr < r1) & (fc >= c0) & (fc < c1)
    # the engine reads the cell plus the cloud dilation's reach (SCL only is read there)
    rows = (max(r0 - d, 0), min(r1 + d, h))
    cols = (max(c0 - d, 0), min(c1 + d, w))
    sub = sub_cube(cube, rows, cols)
    e_int = np.flatnonzero(interior[entry_row])
    e_seam = np.flatnonzero(inside & seam[entry_row])
    sub_col = np.concatenate([(r[e] - rows[0]) * (cols[1] - cols[0]) + (c[e] - cols[0])
                              for e in (e_int, e_seam)])
    int_rows = np.flatnonzero(interior)
    n_int, n_seam = len(int_rows), len(e_seam)
    indptr = np.concatenate([[0], np.cumsum(counts[int_rows]),
                             len(e_int) + np.arange(1, n_seam + 1)])
    shape = (n_int + n_seam, (rows[1] - rows[0]) * (cols[1] - cols[0]))
    matrix = sparse.csr_matrix((np.concatenate([m.data[e_int], m.data[e_seam]]), sub_col,
                                indptr), shape=shape)
    ids = np.concatenate([weights.parcel_id[int_rows], np.full(n_seam, "", object)])
    rule_of = np.concatenate([weights.pixel_rule[int_rows], np.full(n_seam, "none")])
    full = np.concatenate([weights.full_pixels[int_rows], np.zeros(n_seam, np.int64)])
    row_weights = PixelWeights(matrix, ids, full, rule_of, sub.odc.geobox,
                               weights.inward_buffer_m, weights.min_full_pixels, weights.rule)
    times = len(cube["time"])
    out = {"parcel": part.parcels[int_rows].astype(np.int32),
           "owned": part.parcels[owned].astype(np.int32),
           "owned_full_pixels": weights.full_pixels[owned].astype(np.int32),
           "owned_pixel_rule": _rule_codes(weights.pixel_rule[owned]),
           "owned_weight_sum": weights.weight_sum[owned],
           "seam_parcel": part.parcels[entry_row[e_seam]].astype(np.int32),
           "seam_weight": m.data[e_seam].astype(np.float64)}
    if shape[0] == 0:  # only parcels without pixels here
        empty = np.empty((0, times), np.float32)
        out.update({k: empty for k in params.stats})
        out.update(dict.fromkeys(SEAM_VARS, empty))
        out["attrs"] = {}
        return out
    # a seam pixel alone is below min_clear_weight: the engine keeps every clear value (any
    # weight entry is > 1e-9) and the rule is applied below
    series = parcel_series(sub, row_weights, stats=params.stats,
                           vegetated_ndvi=params.vegetated_ndvi, dilation_px=d,
                           min_clear_weight=1e-12, progress=progress)
    low = series["n_pixels"].values[:n_int] < params.min_clear_weight
    for k in params.stats:
        v = np.ascontiguousarray(series[k].values[:n_int])
        if k in _MASKED:
            v[low] = np.nan
        out[k] = v
    clear = series["n_pixels"].values[n_int:] > 0
    for k, var in SEAM_VARS.items():
        v = (np.ascontiguousarray(series[var].values[n_int:]) if var in series
             else np.full((n_seam, times), np.nan, np.float32))
        v[~clear] = np.nan
        out[k] = v
    out["attrs"] = dict(series.attrs)
    return out


def _rule_codes(rules: np.ndarray) -> np.ndarray:
    code = {r: i for i, r in enumerate(RULES)}
    return np.array([code[str(r)] for r in rules], np.int8)


# --- assembly ------------------------------------------------------------------------------

def assemble(parts: Iterator[dict], parcel_id: np.ndarray, times: np.ndarray,
             params: SeriesParams = SeriesParams()) -> xr.Dataset:
    """The batch's parcel series (the engine's contract, parcels in batch order) from its
    partitions' parts: finished parcels copied, seam parcels combined from their pixels."""
    n, n_t = len(parcel_id), len(times)
    # (the engine counts 0 clear pixel-equivalents for a parcel without pixels)
    out = {k: np.full((n, n_t), 0.0 if k == "n_pixels" else np.nan, np.float32)
           for k in params.stats}
    full = np.zeros(n, np.int64)
    rule = np.full(n, RULES.index("none"), np.int8)
    total = np.zeros(n)
    seams, attrs = [], {}
    for part in parts:
        for k in params.stats:
            out[k][part["parcel"]] = part[k]
        full[part["owned"]] = part["owned_full_pixels"]
        rule[part["owned"]] = part["owned_pixel_rule"]
        total[part["owned"]] = part["owned_weight_sum"]
        if len(part["seam_parcel"]):
            seams.append({k: part[k] for k in ("seam_parcel", "seam_weight", *SEAM_VARS)})
        attrs = attrs or part["attrs"]
    if seams:
        _combine_seams({k: np.concatenate([s[k] for s in seams]) for k in seams[0]}, out,
                       total, params)
    coords = {"parcel_id": ("parcel", parcel_id), "time": times,
              "full_pixels": ("parcel", full), "weight_sum": ("parcel", total.astype(np.float32)),
              "pixel_rule": ("parcel", np.asarray(RULES)[rule]),
              "small_parcel": ("parcel", full < params.min_full_pixels)}
    return xr.Dataset({k: (("parcel", "time"), v) for k, v in out.items()}, coords=coords,
                      attrs=attrs)


def _combine_seams(s: dict, out: dict, total: np.ndarray, params: SeriesParams) -> None:
    """Finish the seam parcels from their pixels' rows, date by date: clear weight, weighted
    sums and the weighted quantiles of the pooled clear pixels, as the engine finishes a parcel
    that crosses its windows."""
    ids, local = np.unique(s["seam_parcel"], return_inverse=True)
    n = len(ids)
    w = s["seam_weight"]
    tot = total[ids]
    for t in range(s["seam_ndvi"].shape[1]):
        v = s["seam_ndvi"][:, t]
        clear = np.isfinite(v)
        g, wc, vc = local[clear], w[clear], v[clear]
        cw = np.bincount(g, wc, minlength=n)
        ok = cw >= params.min_clear_weight
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = {var: np.bincount(g, wc * s[k][clear, t], minlength=n) / cw
                     for k, var in SEAM_VARS.items()}
            q = weighted_quantiles(g, vc, wc, n)
            cf = np.where(tot > 0, cw / np.where(tot > 0, tot, 1.0), np.nan)
        for k in params.stats:
            if k == "clear_fraction":
                col = cf
            elif k == "n_pixels":
                col = cw
            elif k in QUANTILE_STATS:
                col = np.where(ok, q[:, QUANTILE_STATS.index(k)], np.nan)
            else:
                col = np.where(ok, ratio[k], np.nan)
            out[k][ids, t] = col
