"""Local imagery archive: one sub-folder per acquisition holding one GeoTIFF/COG per band.

Layout (DESIGN.md)::

    PATH/2025-05-12/B03.tif B04.tif B08.tif B11.tif SCL.tif [metadata.json]
    PATH/2025-05-12T03:05:31/...

Values are L2A digital numbers. ``metadata.json`` may give ``boa_add_offset`` (absent → inferred
from the date, see :func:`default_boa_offset`). Bands may differ in resolution: every band is
read onto the grid of the first acquisition's B04 (10 m), 20 m bands by nearest neighbour.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from dask.base import tokenize
from odc.geo.geobox import GeoBox
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.env import set_gdal_config
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from ..errors import ImageryError, InputError
from .base import (
    BAND_NAMES,
    DEFAULT_BANDS,
    REQUIRED_BANDS,
    cube_from_arrays,
    default_boa_offset,
    dn_to_reflectance,
    solar_day,
)
from .safe import scan_safe_products


@dataclass(frozen=True)
class Acquisition:
    """One acquisition folder."""

    #: UTC acquisition time (date-only folders → midnight).
    time: np.datetime64
    #: Band id → file.
    files: dict
    #: Offset added to DNs before scaling (−1000 for processing baseline ≥ 04.00).
    boa_add_offset: float
    folder: Path


def _parse_time(name: str) -> np.datetime64 | None:
    try:
        return np.datetime64(dt.datetime.fromisoformat(name.replace("Z", "")), "s")
    except ValueError:
        return None


def scan_archive(root: Path) -> list[Acquisition]:
    """List the acquisitions under ``root`` (sorted by time), with their band files and offset."""
    if not root.is_dir():
        raise InputError("imagery folder not found.", source=root,
                         fix="pass --imagery local:PATH with a folder of per-date sub-folders")
    acqs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        time = _parse_time(folder.name)
        if time is None:
            continue
        files = {f.stem.upper(): f for f in folder.iterdir()
                 if f.suffix.lower() in (".tif", ".tiff") and f.stem.upper() in BAND_NAMES}
        missing = [b for b in REQUIRED_BANDS if b not in files]
        if missing:
            raise ImageryError(f"{folder}: band file(s) {', '.join(missing)} missing "
                               f"(found {', '.join(sorted(files)) or 'none'}). Each acquisition "
                               f"folder needs {', '.join(REQUIRED_BANDS)} as <BAND>.tif.")
        offset = default_boa_offset(time.astype(dt.datetime).date())
        meta = folder / "metadata.json"
        if meta.exists():
            try:
                offset = float(json.loads(meta.read_text()).get("boa_add_offset", offset))
            except (ValueError, TypeError) as exc:
                raise InputError(f"unreadable metadata ({exc}).", source=meta,
                                 fix='write {"boa_add_offset": -1000} or delete the file') from exc
        acqs.append(Acquisition(time, files, offset, folder))
    # Sentinel-2 L2A SAFE products (*.SAFE folders, *.SAFE.zip) in the same folder
    for product in scan_safe_products(root):
        acqs.append(Acquisition(product.time, product.files, product.boa_add_offset,
                                product.path))
    acqs.sort(key=lambda a: a.time)
    if not acqs:
        raise ImageryError(f"{root}: no acquisition folders named by date (e.g. 2025-05-12) "
                           "and no Sentinel-2 L2A SAFE product (*.SAFE, *.SAFE.zip).")
    return acqs


def grid_for(reference: Path, bounds: tuple[float, float, float, float], crs: object,
             margin_m: float = 30.0) -> GeoBox:
    """The reference band's pixel grid, cut to ``bounds`` (in ``crs``) plus a margin."""
    with rasterio.open(reference) as src:
        img_crs = CRS.from_user_input(src.crs)
        tr = Transformer.from_crs(CRS.from_user_input(crs), img_crs, always_xy=True)
        xs, ys = tr.transform([bounds[0], bounds[2], bounds[0], bounds[2]],
                              [bounds[1], bounds[1], bounds[3], bounds[3]])
        left, right = min(xs) - margin_m, max(xs) + margin_m
        bottom, top = min(ys) - margin_m, max(ys) + margin_m
        win = from_bounds(left, bottom, right, top, src.transform)
        win = win.round_offsets(op="floor").round_lengths(op="ceil")
        full = Window(0, 0, src.width, src.height)
        try:
            win = win.intersection(full)
        except rasterio.errors.WindowError:
            win = None
        if win is None or win.width <= 0 or win.height <= 0:
            raise ImageryError(f"{reference}: the imagery does not cover the parcels "
                               f"(parcel bounds in image CRS {left:.0f}, {bottom:.0f}, "
                               f"{right:.0f}, {top:.0f}). Check the parcels' CRS and the folder.")
        return GeoBox((int(win.height), int(win.width)), src.window_transform(win), img_crs)


_handles = threading.local()
MAX_OPEN_PER_THREAD = 64
#: GDAL's block cache defaults to 5 % of RAM (1.2 GB here); every window is read once, so a
#: small cache does the same work without holding a gigabyte. An explicit GDAL_CACHEMAX wins.
BLOCK_CACHE_BYTES = 128 * 1024 * 1024


def _open(path: Path):
    """A rasterio dataset kept open per thread: reopening a GeoTIFF for every window costs more
    than reading it, and GDAL's block cache (per open dataset) then serves overlapping windows."""
    cache = getattr(_handles, "cache", None)
    if cache is None:
        if "GDAL_CACHEMAX" not in os.environ:
            set_gdal_config("GDAL_CACHEMAX", BLOCK_CACHE_BYTES)
        cache = _handles.cache = OrderedDict()
    key = str(path)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    if len(cache) >= MAX_OPEN_PER_THREAD:
        cache.popitem(last=False)[1].close()
    cache[key] = rasterio.open(path)
    return cache[key]


@functools.lru_cache(maxsize=64)
def _same_crs(a: str, b: str) -> bool:
    return CRS.from_user_input(a) == CRS.from_user_input(b)


def read_band(path: Path, geobox: GeoBox) -> np.ndarray:
    """Read one band file onto ``geobox`` (nearest neighbour); outside the file → 0 (no data).

    Grids that line up with the file's (same CRS, pixel size an integer multiple of the
    target's, corners on pixel edges — e.g. 20 m SCL under a 10 m grid) are read as a window
    and repeated; anything else is warped."""
    h, w = geobox.shape
    src = _open(path)
    gt = geobox.transform
    if _same_crs(src.crs.to_wkt(), geobox.crs.to_wkt()):
        fy, fx = src.res[1] / -gt.e, src.res[0] / gt.a
        col, row = ~src.transform @ (gt.c, gt.f)
        k = round(fx)
        if (abs(fx - k) < 1e-9 and abs(fy - k) < 1e-9 and k >= 1
                and abs(col * k - round(col * k)) < 1e-6 and abs(row * k - round(row * k)) < 1e-6):
            c0, r0 = int(np.floor(col + 1e-9)), int(np.floor(row + 1e-9))
            dc, dr = round((col - c0) * k), round((row - r0) * k)  # offset inside the first pixel
            win = Window(c0, r0, -(-(w + dc) // k), -(-(h + dr) // k))
            inside = (win.col_off >= 0 and win.row_off >= 0
                      and win.col_off + win.width <= src.width
                      and win.row_off + win.height <= src.height)
            # boundless reads go through a VRT in rasterio: only for windows off the file's edge
            data = src.read(1, window=win, boundless=not inside, fill_value=0)
            if k > 1:
                data = np.repeat(np.repeat(data, k, axis=0), k, axis=1)
            return data[dr:dr + h, dc:dc + w]
    with WarpedVRT(src, crs=geobox.crs.to_wkt(), transform=gt, width=w, height=h,
                   resampling=Resampling.nearest, nodata=0) as vrt:
        return vrt.read(1)


def _read_day(acqs: Sequence[Acquisition], band: str, geobox: GeoBox) -> np.ndarray:
    """One band of one solar day; several acquisitions (tiles) fill each other's gaps."""
    out = None
    for acq in acqs:
        if band not in acq.files:
            continue
        dn = read_band(acq.files[band], geobox)
        val = dn if band == "SCL" else dn_to_reflectance(dn, acq.boa_add_offset)
        if out is None:
            out = val
        else:
            gap = (out == 0) if band == "SCL" else np.isnan(out)
            out[gap] = val[gap]
    if out is None:  # band absent on this day
        out = np.zeros(geobox.shape, np.uint8) if band == "SCL" else np.full(
            geobox.shape, np.nan, np.float32)
    return out


def lazy_grid(read: Callable[[GeoBox], np.ndarray], geobox: GeoBox, chunk_px: int, dtype,
              name: str) -> da.Array:
    """A dask array over ``geobox`` whose every chunk is one windowed ``read`` of that chunk."""
    h, w = geobox.shape
    ys = [(y, min(y + chunk_px, h)) for y in range(0, h, chunk_px)]
    xs = [(x, min(x + chunk_px, w)) for x in range(0, w, chunk_px)]
    key = f"{name}-{tokenize(read, geobox, chunk_px)}"
    graph = {(key, i, j): (read, geobox[y0:y1, x0:x1])
             for i, (y0, y1) in enumerate(ys) for j, (x0, x1) in enumerate(xs)}
    return da.Array(graph, key, chunks=(tuple(b - a for a, b in ys), tuple(b - a for a, b in xs)),
                    dtype=dtype)


class LocalSource:
    """Imagery from a local folder of per-acquisition GeoTIFFs (see module docstring).

    The cube is lazy: each (date, band) is a dask array of ``chunk_px`` windows, each read only
    when needed, so a county is never loaded whole.

    Examples
    --------
    >>> src = LocalSource("sample_data/generated/imagery")          # doctest: +SKIP
    >>> cube = src.load(parcels.total_bounds, parcels.crs, start, end)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, chunk_px: int = 1024):
        self.path = Path(path)
        self.chunk_px = chunk_px

    def describe(self) -> dict:
        return {"kind": "local", "path": str(self.path)}

    def load(self, bounds, crs, start: dt.date, end: dt.date, *,
             bands: Sequence[str] = DEFAULT_BANDS) -> xr.Dataset:
        acqs = [a for a in scan_archive(self.path)
                if start <= a.time.astype(dt.datetime).date() <= end]
        if not acqs:
            raise ImageryError(f"{self.path}: no acquisition between {start} and {end}.")
        geobox = grid_for(acqs[0].files["B04"], bounds, crs)
        lon = geobox.extent.centroid.to_crs(4326).coords[0][0]
        days: dict[dt.date, list[Acquisition]] = {}
        for acq in acqs:
            days.setdefault(solar_day(acq.time, lon), []).append(acq)
        present = [b for b in bands if any(b in a.files for a in acqs)]
        arrays = {}
        for band in present:
            dtype = np.uint8 if band == "SCL" else np.float32
            per_day = [lazy_grid(partial(_read_day, tuple(group), band), geobox, self.chunk_px,
                                 dtype, f"local-{band}") for group in days.values()]
            arrays[BAND_NAMES[band]] = da.stack(per_day)
        times = [np.datetime64(min(a.time for a in g), "ns") for g in days.values()]
        return cube_from_arrays(arrays, times, geobox, attrs={
            "source": "local", "path": str(self.path),
            "acquisitions": json.dumps([str(a.folder.name) for a in acqs])})
