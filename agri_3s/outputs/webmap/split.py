"""Maps too big for one file: one map per partition plus an index map.

A county (10⁵ parcels) fits one file; a province (10⁶) does not open on a field tablet. Then the
parcels are split by a partition column (``partition_id``, ``township`` …) when the table has
one, and parts still too big — or every part without such a column — by halving along the
longer side at the median parcel, until each part holds at most ``max_parcels``. Each part gets
its own map (``NAME_01.html`` …, each cropped imagery); ``NAME.html`` becomes the index map whose
rectangles link to them.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from ...errors import InputError
from .data import Container
from .imagery import ImageLayer, crop
from .labels import LANGS, page_labels, text
from .page import MapPage, build_map, page_html, write_map

#: Largest number of parcels in one map file (measured: 100,000 parcels open in a few seconds).
MAX_PARCELS_PER_MAP = 100_000
#: Columns that name a partition, in order of preference.
PARTITION_COLUMNS = ("partition_id", "partition", "township", "乡镇")


def split_parcels(parcels: gpd.GeoDataFrame, max_parcels: int,
                  by: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Parts of at most ``max_parcels`` rows: ``(name, row positions)``, by ``by`` then space.

    >>> g = gpd.GeoDataFrame(geometry=gpd.points_from_xy(range(10), [0] * 10), crs=3857)
    >>> [(name, rows.tolist()) for name, rows in split_parcels(g, 5)]
    [('1', [0, 1, 2, 3, 4]), ('2', [5, 6, 7, 8, 9])]
    """
    if max_parcels < 1:
        raise InputError("max_parcels must be at least 1.", source="max_parcels")
    pts = shapely.centroid(parcels.geometry.values)
    x = np.nan_to_num(shapely.get_x(pts))
    y = np.nan_to_num(shapely.get_y(pts))
    rows = np.arange(len(parcels))
    if by is not None:
        keys = parcels[by].astype(str).fillna("").to_numpy()
        groups = [(str(k), rows[keys == k]) for k in pd.unique(keys)]
    else:
        groups = [("", rows)]
    out: list[tuple[str, np.ndarray]] = []
    for name, part in groups:
        todo = [part]
        pieces = []
        while todo:
            p = todo.pop()
            if len(p) <= max_parcels:
                pieces.append(p)
                continue
            px, py = x[p], y[p]
            axis = px if np.ptp(px) >= np.ptp(py) else py
            order = np.argsort(axis, kind="stable")
            half = len(p) // 2
            todo += [p[order[half:]], p[order[:half]]]
        pieces.sort(key=lambda p: int(p.min()) if len(p) else 0)
        for k, p in enumerate(pieces, 1):
            label = f"{name}-{k}" if name and len(pieces) > 1 else name or str(k)
            out.append((label, np.sort(p)))
    return out


def _subset(table: pd.DataFrame | None, ids: set) -> pd.DataFrame | None:
    if table is None:
        return None
    return table[table["parcel_id"].astype(str).isin(ids)]


def _series_subset(series: xr.Dataset | None, ids: set) -> xr.Dataset | None:
    if series is None:
        return None
    keep = np.isin(series["parcel_id"].values.astype(str), list(ids))
    return series.isel(parcel=np.flatnonzero(keep))


def index_page(parts: list[dict], lang: str, title: str | None = None) -> MapPage:
    """The index map of a split: one rectangle per part (``name, file, n, bbox``).

    >>> index_page([{"name": "1", "file": "m_01.html", "n": 5, "bbox": [116, 37, 117, 38]}],
    ...            "en").n_parcels
    5
    """
    header = {"v": 1, "lang": lang, "title": title or text("index_title", lang),
              "labels": page_labels(lang), "index": parts, "n": 0}
    return MapPage(page_html(header, Container()), sum(p["n"] for p in parts), 0, ["index"])


def write_maps(parcels: gpd.GeoDataFrame, path: str | Path, *,
               max_parcels: int = MAX_PARCELS_PER_MAP, partition_by: str | None = None,
               verdicts: pd.DataFrame | None = None, claims: pd.DataFrame | None = None,
               series: xr.Dataset | None = None, imagery: list[ImageLayer] | tuple = (),
               lang: str = "zh", title: str | None = None, **kwargs) -> dict[str, Path]:
    """Write one map, or — above ``max_parcels`` — one map per part plus an index map.

    Parameters
    ----------
    parcels, verdicts, claims, series, imagery, lang, title, **kwargs
        As for :func:`build_map` (``kwargs``: ``show_pii``, ``photos``, ``notes`` …).
    path : str or pathlib.Path
        The map file; for a split, the index map (its parts are written beside it).
    max_parcels : int
        Largest number of parcels in one file.
    partition_by : str, optional
        Column naming each parcel's partition (default: the first of
        ``partition_id, partition, township, 乡镇`` present; else split by location).

    Returns
    -------
    dict
        ``{"map.html": path}`` for one map; ``{"index": path, "parts/NAME_01.html": …}`` for a
        split.

    Examples
    --------
    >>> write_maps(parcels, "maps/province.html", claims=claims)  # doctest: +SKIP
    """
    if lang not in LANGS:
        raise InputError(f"lang must be 'zh' or 'en', not {lang!r}.", source="lang")
    path = Path(path)
    common = dict(lang=lang, title=title, **kwargs)
    if len(parcels) <= max_parcels:
        return {path.name: write_map(build_map(parcels, verdicts=verdicts, claims=claims,
                                               series=series, imagery=imagery, **common), path)}
    by = partition_by or next((c for c in PARTITION_COLUMNS if c in parcels.columns), None)
    if by is not None and by not in parcels.columns:
        raise InputError(f"no column {by!r} to split the map by.", source="partition_by")
    parts = split_parcels(parcels, max_parcels, by)
    wgs = parcels.to_crs(4326)
    files: dict[str, Path] = {}
    index = []
    for k, (name, rows) in enumerate(parts, 1):
        sub = parcels.iloc[rows]
        ids = set(sub["parcel_id"].astype(str))
        bounds = tuple(float(b) for b in wgs.iloc[rows].total_bounds)
        fname = f"{path.stem}_{k:02d}{path.suffix}"
        part = {"i": k, "n": len(parts), "name": name, "index": path.name}
        files[fname] = write_map(build_map(
            sub, verdicts=_subset(verdicts, ids), claims=_subset(claims, ids),
            series=_series_subset(series, ids), imagery=[c for c in (crop(im, bounds)
                                                                      for im in imagery) if c],
            part=part, **common), path.parent / fname)
        index.append({"name": name, "file": fname, "n": len(rows), "bbox": list(bounds)})
    files[path.name] = write_map(index_page(index, lang, title), path)
    return files
