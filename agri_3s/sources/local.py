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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.env import set_gdal_config
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds
from xarray.backends import BackendArray
from xarray.core import indexing

from ..errors import ImageryInputError, InputError
from .base import (
    BAND_NAMES,
    DEFAULT_BANDS,
    REQUIRED_BANDS,
    NativeWindow,
    attach_reader,
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
            raise ImageryInputError(
                f"band file(s) {', '.join(missing)} missing (found "
                f"{', '.join(sorted(files)) or 'none'}).", source=folder,
                fix=f"each acquisition folder needs {', '.join(REQUIRED_BANDS)} as <BAND>.tif")
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
    if not acqs:  # an empty or wrong folder is the user's input, not a failed run (exit 2)
        raise ImageryInputError(
            "no acquisition folder named by date and no Sentinel-2 L2A SAFE product in the "
            "imagery folder.", source=root,
            fix="point --imagery local:PATH at a folder holding per-date sub-folders "
                "(PATH/2025-05-12/B04.tif …) or *.SAFE / *.SAFE.zip products")
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
        if win is None or win.width <= 0 or win.height <= 0:  # the user's folder or CRS
            raise ImageryInputError(
                f"the imagery does not cover the parcels (parcel bounds in image CRS "
                f"{left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}).", source=reference,
                fix="check the parcels' CRS (--crs) and that the folder covers them")
        return GeoBox((int(win.height), int(win.width)), src.window_transform(win), img_crs)


_handles = threading.local()
#: parcel_series reads date by date, so a thread needs the files of about two solar days
#: (tiles × bands); every open GeoTIFF holds its own decoding buffers.
MAX_OPEN_PER_THREAD = 16
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


@functools.lru_cache(maxsize=256)
def _wkt(crs) -> str:
    return crs.to_wkt()


def read_native(path: Path, geobox: GeoBox) -> NativeWindow:
    """Read one band file over ``geobox`` (nearest neighbour; outside the file → 0, no data).

    Grids that line up with the file's (same CRS, pixel size an integer multiple of the
    target's, corners on pixel edges — e.g. 20 m SCL under a 10 m grid) are read as a window at
    the file's resolution; anything else is warped onto ``geobox``."""
    h, w = geobox.shape
    src = _open(path)
    gt = geobox.transform
    if _same_crs(_wkt(src.crs), _wkt(geobox.crs)):
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
            # boundless reads go through a VRT in rasterio: only for windows off the file's edge;
            # fill_value only there too (inside the file it makes rasterio read the mask: 4× slower)
            data = (src.read(1, window=win) if inside else
                    src.read(1, window=win, boundless=True, fill_value=0))
            return NativeWindow(data, k, dr, dc)
    with WarpedVRT(src, crs=_wkt(geobox.crs), transform=gt, width=w, height=h,
                   resampling=Resampling.nearest, nodata=0) as vrt:
        return NativeWindow(vrt.read(1))


def read_band(path: Path, geobox: GeoBox) -> np.ndarray:
    """Read one band file onto ``geobox`` (see :func:`read_native`)."""
    return read_native(path, geobox).full(geobox.shape)


def read_day_native(acqs: Sequence[Acquisition], band: str, geobox: GeoBox
                    ) -> tuple[NativeWindow, float] | None:
    """Digital numbers of one band of one solar day over ``geobox`` and the offset to add to
    them (None if no acquisition has the band). Several acquisitions (tiles) fill each other's
    gaps; their DNs are shifted to the first one's offset (offsets are whole DNs)."""
    parts = [(read_native(a.files[band], geobox), a.boa_add_offset)
             for a in acqs if band in a.files]
    if not parts:
        return None
    (out, offset), rest = parts[0], parts[1:]
    if not rest:
        return out, offset
    same = all((p.k, p.dr, p.dc, p.data.shape) == (out.k, out.dr, out.dc, out.data.shape)
               for p, _ in rest)
    merged = (out.data if same else out.full(geobox.shape)).copy()
    for part, off in rest:
        dn = part.data if same else part.full(geobox.shape)
        if band != "SCL" and off != offset:
            dn = np.where(dn > 0, np.clip(dn.astype(np.int64) + round(off - offset), 1,
                                          np.iinfo(dn.dtype).max), 0).astype(dn.dtype)
        gap = merged == 0
        merged[gap] = dn[gap]
    return (NativeWindow(merged, out.k, out.dr, out.dc) if same else NativeWindow(merged)), offset


def _read_day(acqs: Sequence[Acquisition], band: str, geobox: GeoBox) -> np.ndarray:
    """One band of one solar day on ``geobox``: SCL classes, or reflectance (NaN = no data)."""
    got = read_day_native(acqs, band, geobox)
    if got is None:  # band absent on this day
        return np.zeros(geobox.shape, np.uint8) if band == "SCL" else np.full(
            geobox.shape, np.nan, np.float32)
    native, offset = got
    dn = native.full(geobox.shape)
    return dn if band == "SCL" else dn_to_reflectance(dn, offset)


@dataclass(frozen=True)
class ArchiveReader:
    """Direct window reads of a LocalSource cube's bands, for :func:`parcel_series`: raw DNs at
    each file's own resolution, so only the pixels parcels use are ever converted."""

    #: Per cube time step, the acquisitions of that solar day.
    days: tuple[tuple[Acquisition, ...], ...]
    #: Cube variable → band id.
    bands: tuple[tuple[str, str], ...]
    #: The cube's grid and its processing window size.
    geobox: GeoBox
    window_px: int = 1024
    #: The reference file's tile size and where the grid starts in it (row, col): windows are
    #: cut on tile edges, so no tile is decoded for two windows.
    tile: tuple[int, int] = (1, 1)
    grid_offset: tuple[int, int] = (0, 0)

    def window_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column edges of the processing windows on the cube's grid."""
        edges = []
        for n, tile, off in zip(self.geobox.shape, self.tile, self.grid_offset):
            step = max(1, round(self.window_px / tile)) * tile
            edges.append(np.unique(np.r_[0, np.arange((-off) % step, n, step), n]))
        return edges[0], edges[1]

    def __repr__(self) -> str:
        return f"ArchiveReader({len(self.days)} days, {dict(self.bands)}, {self.geobox.shape})"

    def matches(self, cube: xr.Dataset) -> bool:
        """Is ``cube`` (still) on this reader's grid and days?"""
        return (cube.odc.geobox == self.geobox and cube.sizes["time"] == len(self.days)
                and all(np.datetime64(min(a.time for a in g), "ns") == t
                        for g, t in zip(self.days, cube["time"].values)))

    def read(self, variable: str, t: int, geobox: GeoBox) -> tuple[NativeWindow, float] | None:
        """DNs of ``variable`` at time step ``t`` over ``geobox`` and the offset to add."""
        return read_day_native(self.days[t], dict(self.bands)[variable], geobox)


class _LazyBand(BackendArray):
    """One band over all solar days as an xarray lazily indexed array: indexing reads just the
    selected window of the selected days (``cube.chunk(...)`` turns it into dask chunks)."""

    def __init__(self, days: Sequence[Sequence[Acquisition]], band: str, geobox: GeoBox):
        self.days, self.band, self.geobox = days, band, geobox
        self.shape = (len(days), *geobox.shape)
        self.dtype = np.dtype(np.uint8 if band == "SCL" else np.float32)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape,
                                                  indexing.IndexingSupport.BASIC, self._read)

    def _read(self, key: tuple) -> np.ndarray:
        spans = [range(n)[k] if isinstance(k, slice) else k for k, n in zip(key, self.shape)]
        t, ys, xs = spans
        # read the covering block once, then apply any steps
        box = [(min(s), max(s) + 1) if isinstance(s, range) and len(s) else
               ((s, s + 1) if not isinstance(s, range) else (0, 0)) for s in (ys, xs)]
        sub = self.geobox[box[0][0]:box[0][1], box[1][0]:box[1][1]]
        days = t if isinstance(t, range) else [t]
        if 0 in sub.shape or not len(days):
            block = np.zeros((len(days), *sub.shape), self.dtype)
        else:
            block = np.stack([_read_day(self.days[i], self.band, sub) for i in days])
        pick = tuple(slice(None) if isinstance(s, range) and not len(s) else
                     (np.asarray(s) - lo if isinstance(s, range) else 0)
                     for s, (lo, _) in zip((ys, xs), box))
        block = block[:, pick[0]][:, :, pick[1]] if all(
            isinstance(p, np.ndarray) for p in pick) else block[(slice(None), *pick)]
        return block if isinstance(t, range) else block[0]


class LocalSource:
    """Imagery from a local folder of per-acquisition GeoTIFFs (see module docstring).

    The cube is lazy (xarray lazily indexed arrays, no dask needed): indexing reads only the
    selected windows, so a county is never loaded whole; ``parcel_series`` reads it directly
    in ``chunk_px`` windows, and ``cube.chunk(...)`` gives dask chunks.

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
        every = scan_archive(self.path)
        acqs = [a for a in every if start <= a.time.astype(dt.datetime).date() <= end]
        if not acqs:  # the season and the folder the user gave do not meet: bad input
            first, last = (str(a.time.astype(dt.datetime).date()) for a in (every[0], every[-1]))
            raise ImageryInputError(
                f"no acquisition between {start} and {end} (the folder has {first} to {last}).",
                source=self.path, fix="give a season (or event) the folder covers, or a folder "
                                      "with imagery of those dates")
        geobox = grid_for(acqs[0].files["B04"], bounds, crs)
        lon = geobox.extent.centroid.to_crs(4326).coords[0][0]
        days: dict[dt.date, list[Acquisition]] = {}
        for acq in acqs:
            days.setdefault(solar_day(acq.time, lon), []).append(acq)
        present = [b for b in bands if any(b in a.files for a in acqs)]
        groups = tuple(tuple(g) for g in days.values())
        times = [np.datetime64(min(a.time for a in g), "ns") for g in groups]
        arrays = {BAND_NAMES[b]: indexing.LazilyIndexedArray(_LazyBand(groups, b, geobox))
                  for b in present}
        with rasterio.open(acqs[0].files["B04"]) as ref:
            col, row = ~ref.transform @ (geobox.transform.c, geobox.transform.f)
            tile = ref.block_shapes[0]
        reader = ArchiveReader(groups, tuple((BAND_NAMES[b], b) for b in present), geobox,
                               self.chunk_px, tile, (round(row), round(col)))
        cube = cube_from_arrays(arrays, times, geobox, attrs={
            "source": "local", "path": str(self.path),
            "acquisitions": json.dumps([str(a.folder.name) for a in acqs])})
        return attach_reader(cube, reader)
