"""Where the event fell and who the healthy neighbours are, for a whole batch at once.

* :func:`footprint_shares` — the share of each parcel's area inside the event footprint
  (shapely 2 array operations: a prepared footprint, exact intersections only for the parcels
  that cross its edge).
* :func:`nearest_parcels` — for every query parcel, the ``k`` nearest candidate parcels of the
  same crop (optionally within a radius), from one k-d tree query per crop.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from scipy.spatial import cKDTree

from .arrays import nan_median

#: Parcels per k-d tree query: bounds the (chunk × k) index and distance arrays.
QUERY_CHUNK = 65_536


def parcel_geometries(parcels: gpd.GeoDataFrame) -> np.ndarray:
    """The parcels' shapely geometries as an object array (missing ones as ``None``).

    >>> parcel_geometries(gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1), None])).shape
    (2,)
    """
    return np.asarray(parcels.geometry.array, dtype=object)


def centroids(geoms: np.ndarray) -> np.ndarray:
    """(n, 2) centroid coordinates; NaN for missing or empty geometries.

    >>> centroids(np.array([shapely.box(0, 0, 2, 2), None], dtype=object))
    array([[ 1.,  1.],
           [nan, nan]])
    """
    xy = np.full((len(geoms), 2), np.nan)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if ok.any():
        xy[ok] = shapely.get_coordinates(shapely.centroid(geoms[ok]))
    return xy


def footprint_shares(geoms: np.ndarray, footprint: shapely.Geometry) -> np.ndarray:
    """area(parcel ∩ footprint) / area(parcel) for every parcel; NaN when it has no area.

    ``geoms`` and ``footprint`` must be in the same (metric) CRS.

    Examples
    --------
    >>> fp = shapely.box(0, 0, 10, 10)
    >>> parcels = np.array([shapely.box(1, 1, 4, 4), shapely.box(5, 0, 15, 10),
    ...                     shapely.box(10, 0, 20, 10), None], dtype=object)
    >>> footprint_shares(parcels, fp)
    array([1. , 0.5, 0. , nan])
    """
    area = shapely.area(geoms)
    share = np.where(np.isfinite(area) & (area > 0), 0.0, np.nan)
    ok = np.isfinite(share)
    if footprint is None or footprint.is_empty or not ok.any():
        return share
    shapely.prepare(footprint)
    idx = np.flatnonzero(ok)
    hit = shapely.intersects(footprint, geoms[idx])
    inside = hit & shapely.contains_properly(footprint, geoms[idx])
    share[idx[inside]] = 1.0
    cross = idx[hit & ~inside]  # only these need an exact intersection
    if cross.size:
        share[cross] = shapely.area(shapely.intersection(geoms[cross], footprint)) / area[cross]
    return np.clip(share, 0.0, 1.0)


def nearest_parcels(xy: np.ndarray, crops: np.ndarray, query: np.ndarray,
                    candidate: np.ndarray, k: int, radius: float = np.inf, *,
                    width: int | None = None, distances: bool = True
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``k`` nearest ``candidate`` parcels of the same crop for every ``query`` parcel.

    One k-d tree per crop over its candidates, queried in chunks. A parcel is never its own
    neighbour. Returns ``(index, distance)``, both (n, k), nearest first: the row number of each
    neighbour in ``xy`` (−1 where there is none within ``radius``) and its distance (inf).
    ``width`` (≥ k) pads both with empty columns; ``distances=False`` returns ``None`` for
    them (less memory).

    Examples
    --------
    >>> xy = np.array([[0.0, 0], [1, 0], [3, 0], [10, 0]])
    >>> crops = np.array(["a", "a", "a", "b"])
    >>> idx, dist = nearest_parcels(xy, crops, np.ones(4, bool), np.ones(4, bool), k=2, radius=5)
    >>> idx.tolist(), dist[0].tolist()
    ([[1, 2], [0, 2], [1, 0], [-1, -1]], [1.0, 3.0])
    """
    n = len(xy)
    index = np.full((n, max(k, width or k)), -1, np.int32)
    dist = np.full(index.shape, np.inf, np.float32) if distances else None
    finite = np.isfinite(xy).all(axis=1)
    query, candidate = query & finite, candidate & finite
    for crop in np.unique(crops[query]):
        cand = np.flatnonzero(candidate & (crops == crop))
        if not cand.size:
            continue
        tree = cKDTree(xy[cand])
        rows = np.flatnonzero(query & (crops == crop))
        kk = min(k + 1, cand.size)  # one more: the parcel itself may be a candidate
        for start in range(0, rows.size, QUERY_CHUNK):
            r = rows[start:start + QUERY_CHUNK]
            d, j = tree.query(xy[r], k=kk, distance_upper_bound=radius)
            d, j = d.reshape(len(r), kk), j.reshape(len(r), kk)
            found = j < cand.size
            glob = np.where(found, cand[np.minimum(j, cand.size - 1)], -1)
            keep = found & (glob != r[:, None])
            keep &= np.cumsum(keep, axis=1) <= k
            # pack the kept neighbours to the left, nearest first
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            kept = np.take_along_axis(keep, order, axis=1)
            used = order.shape[1]
            index[r, :used] = np.where(kept, np.take_along_axis(glob, order, axis=1), -1)
            if distances:
                dist[r, :used] = np.where(kept, np.take_along_axis(d, order, axis=1), np.inf)
    return index, dist


def gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` with NaN where ``index`` is −1 (values: (n,) or (n, t)).

    >>> gather(np.array([1.0, 2.0]), np.array([[1, -1]]))
    array([[ 2., nan]])
    """
    out = values[np.maximum(index, 0)]
    missing = index < 0
    out[missing] = np.nan
    return out


def region_median(values: np.ndarray, xy: np.ndarray, crops: np.ndarray, query: np.ndarray,
                  k: int, radius: float, min_count: int) -> np.ndarray:
    """Median of ``values`` over the ``k`` nearest same-crop parcels within ``radius`` that have
    a finite value, for every ``query`` parcel; NaN where fewer than ``min_count`` are found.

    >>> xy = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0]])
    >>> v = np.array([np.nan, 0.1, 0.2, 0.4])
    >>> region_median(v, xy, np.array(["a"] * 4), np.isnan(v), k=5, radius=10, min_count=3)
    array([0.2, nan, nan, nan])
    """
    out = np.full(len(values), np.nan)
    idx, _ = nearest_parcels(xy, crops, query, np.isfinite(values), k, radius, distances=False)
    rows = np.flatnonzero(query)
    if rows.size:
        near = gather(values.astype(np.float64), idx[rows])
        enough = np.isfinite(near).sum(axis=1) >= min_count
        out[rows[enough]] = nan_median(near[enough], axis=1)
    return out
