"""On-disk cache of fetched imagery, keyed by the request, so a rerun does not fetch again.

Any remote source (STAC, Sentinel Hub) uses the same three calls::

    cache = FetchCache()                                  # root: argument > $AGRI3S_CACHE > ~/.cache/agri_3s
    key = cache.key("stac", url=url, collection=c, bounds=b, crs=crs, start=s, end=e,
                    bands=bands, resolution=10)
    cube = cache.get(key)                                 # None when not (completely) cached
    if cube is None:
        cube = cache.put(key, fetch(...))                 # stores date by date, returns the cached cube

Layout of one entry (plain files a user can open in QGIS)::

    ROOT/<key>/request.json                 what was asked (written first)
    ROOT/<key>/20250512T030531/red.tif ...  one tiled DEFLATE GeoTIFF per date and variable
    ROOT/<key>/index.json                   dates, variables, grid, attrs (written last = complete)

Writes are atomic: each date is written into a temporary folder and renamed into place, the
index last. An interrupted :meth:`FetchCache.put` keeps the dates already written, and the next
``put`` of the same key skips them (resume), so only the missing dates are fetched. Cubes read
back from the cache are dask-backed and read one window at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Hashable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS
from rasterio.windows import Window

from ..errors import ImageryError
from .base import cube_from_arrays

#: Environment variable naming the cache folder.
CACHE_ENV = "AGRI3S_CACHE"
#: Bump when the on-disk layout changes, so old entries are never misread.
CACHE_FORMAT = 1
_BLOCK = 256  # GeoTIFF tile and dask chunk edge when reading back
_WRITE_LOCK = threading.Lock()  # rasterio datasets are not thread-safe for writing


def default_cache_root() -> Path:
    """``$AGRI3S_CACHE`` if set, else ``~/.cache/agri_3s``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "agri_3s"


def _canonical(value: Any) -> Any:
    """JSON-able, order-stable form of a request value (floats rounded, CRSs normalised)."""
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        # every number as a float (10 == 10.0), rounded to 1e-6 (degrees ≈ 0.1 m, metres
        # = 1 µm): coordinate noise must not change the key
        return round(float(value), 6)
    if isinstance(value, (dt.date, dt.datetime, np.datetime64)):
        return str(np.datetime64(value)) if isinstance(value, np.datetime64) else value.isoformat()
    if isinstance(value, CRS):
        return value.to_string()
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_canonical(v) for v in value]
    if hasattr(value, "to_wkt"):  # pyproj / odc-geo / rasterio CRS objects
        return CRS.from_user_input(value).to_string()
    return str(value)


def request_key(kind: str, **request: Any) -> str:
    """Stable hash of a request: same source, area, CRS, dates, bands → same key.

    Pass CRSs under a name containing ``crs`` so that ``"EPSG:4326"``, ``4326`` and a CRS
    object give the same key.

    >>> request_key("stac", url="http://x", bounds=(1.0, 2.0, 3.0, 4.0), crs=4326) == \\
    ...     request_key("stac", crs="EPSG:4326", bounds=[1, 2, 3.0000001, 4], url="http://x")
    True
    """
    norm = {k: (CRS.from_user_input(v).to_string() if "crs" in k and v is not None else v)
            for k, v in request.items()}
    text = json.dumps({"kind": kind, "format": CACHE_FORMAT, **_canonical(norm)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _date_dir(t: np.datetime64) -> str:
    return str(np.datetime64(t, "s")).replace("-", "").replace(":", "")


class _WindowedTiff:
    """Array-like view of a single-band GeoTIFF; ``dask.array.from_array`` reads it by window."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype: np.dtype):
        self.path, self.shape, self.dtype, self.ndim = path, shape, np.dtype(dtype), 2

    def __getitem__(self, key):
        rows, cols = key if isinstance(key, tuple) and len(key) == 2 else (key, slice(None))
        if not (isinstance(rows, slice) and isinstance(cols, slice)):
            return self[:, :][key]
        r0, r1, rs = rows.indices(self.shape[0])
        c0, c1, cs = cols.indices(self.shape[1])
        with rasterio.open(self.path) as src:
            out = src.read(1, window=Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0)))
        return out[::rs, ::cs]


class _WindowWriter:
    """``dask.array.store`` target writing blocks into an open rasterio dataset."""

    def __init__(self, dst):
        self.dst = dst

    def __setitem__(self, key, value):
        rows, cols = key
        with _WRITE_LOCK:
            self.dst.write(np.asarray(value), 1, window=Window(
                cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start))


class FetchCache:
    """Fetched cubes on disk, keyed by :func:`request_key` (see the module docstring).

    Parameters
    ----------
    root : cache folder; ``None`` → ``$AGRI3S_CACHE`` or ``~/.cache/agri_3s``.

    Examples
    --------
    >>> cache = FetchCache(tmp_path)                        # doctest: +SKIP
    >>> key = cache.key("stac", url=url, bounds=b, crs=4326, start=s, end=e)  # doctest: +SKIP
    >>> cube = cache.get(key)                               # doctest: +SKIP
    >>> if cube is None:                                    # doctest: +SKIP
    ...     cube = cache.put(key, fetch())
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()

    def __repr__(self) -> str:
        return f"FetchCache({str(self.root)!r})"

    @staticmethod
    def key(kind: str, **request: Any) -> str:
        """Key of a request; see :func:`request_key`."""
        return request_key(kind, **request)

    def path(self, key: str) -> Path:
        """The folder of one entry."""
        return self.root / key

    def has(self, key: str) -> bool:
        """True when the entry is complete (its index was written)."""
        return (self.path(key) / "index.json").is_file()

    def get(self, key: str) -> xr.Dataset | None:
        """The cached cube (dask-backed, read lazily from disk), or ``None`` if not complete."""
        index_file = self.path(key) / "index.json"
        if not index_file.is_file():
            return None
        try:
            index = json.loads(index_file.read_text())
        except ValueError as exc:
            raise ImageryError(f"{index_file}: unreadable cache index ({exc}). Delete the "
                               f"folder {self.path(key)} and run again.") from exc
        if index.get("format") != CACHE_FORMAT:
            return None
        shape = tuple(index["shape"])
        geobox = GeoBox(shape, Affine(*index["transform"][:6]), index["crs"])
        arrays = {}
        for var, dtype in index["variables"].items():
            per_date = []
            for tdir in index["dates"]:
                path = self.path(key) / tdir / f"{var}.tif"
                if not path.is_file():
                    raise ImageryError(f"{path}: cached file missing (cache damaged). Delete "
                                       f"{self.path(key)} and run again.")
                per_date.append(da.from_array(_WindowedTiff(path, shape, dtype),
                                              chunks=(_BLOCK * 4, _BLOCK * 4),
                                              name=f"agri3s-cache-{key}-{tdir}-{var}"))
            arrays[var] = da.stack(per_date) if per_date else da.zeros((0, *shape), dtype)
        times = np.array(index["times"], dtype="datetime64[ns]")
        return cube_from_arrays(arrays, times, geobox, attrs={**index.get("attrs", {}),
                                                               "cache_key": key})

    def put(self, key: str, cube: xr.Dataset, request: dict | None = None) -> xr.Dataset:
        """Store ``cube`` (computing it one date at a time) and return it read back from disk.

        Dates already stored under ``key`` (an interrupted earlier ``put``) are not computed
        again. ``request`` is recorded in ``request.json`` for people browsing the cache.
        """
        entry = self.path(key)
        entry.mkdir(parents=True, exist_ok=True)
        if request is not None:
            _atomic_write_text(entry / "request.json",
                               json.dumps(_canonical(request), indent=1, sort_keys=True))
        geobox = cube.odc.geobox
        variables = {str(v): str(cube[v].dtype) for v in cube.data_vars}
        dates = []
        for t in range(cube.sizes["time"]):
            tdir = _date_dir(cube["time"].values[t])
            dates.append(tdir)
            if (entry / tdir).is_dir():
                continue  # written by an earlier, interrupted run
            tmp = Path(tempfile.mkdtemp(prefix=f".{tdir}-", dir=entry))
            try:
                for var in variables:
                    _write_band(tmp / f"{var}.tif", cube[var].isel(time=t).data, geobox)
                os.replace(tmp, entry / tdir)  # atomic: a date folder is complete or absent
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        index = {"format": CACHE_FORMAT, "shape": list(geobox.shape),
                 "transform": list(geobox.transform)[:6], "crs": geobox.crs.to_wkt(),
                 "variables": variables, "dates": dates,
                 "times": [str(np.datetime64(t, "ns")) for t in cube["time"].values],
                 "attrs": {k: v for k, v in cube.attrs.items()
                           if isinstance(v, (str, int, float, bool))},
                 "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        _atomic_write_text(entry / "index.json", json.dumps(index, indent=1))
        cached = self.get(key)
        if cached is None:  # cannot happen unless the disk lies; never return nothing silently
            raise ImageryError(f"{entry}: cache entry could not be read back after writing.")
        return cached

    def arrays(self, namespace: str) -> ArrayStore:
        """A disk-backed ``MutableMapping`` of numpy arrays under ``ROOT/namespace`` — for
        sources that cache per-request tiles (e.g. ``SentinelHubSource(cache=...)``)."""
        return ArrayStore(self.root / namespace)

    def clear(self, key: str | None = None) -> None:
        """Delete one entry, or the whole cache when ``key`` is None."""
        shutil.rmtree(self.path(key) if key else self.root, ignore_errors=True)


class ArrayStore(MutableMapping):
    """Numpy arrays on disk, one compressed ``.npz`` per key; writes are atomic.

    Keys are any JSON-able values (tuples of strings, numbers, dates); they are hashed like
    :func:`request_key`, and iteration yields their canonical JSON form (tuples become lists).

    >>> store = FetchCache(tmp_path).arrays("sentinelhub")              # doctest: +SKIP
    >>> store[("https://sh", "2025-05-12", (0, 0, 10, 10))] = np.zeros((3, 4, 4))  # doctest: +SKIP
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _file(self, key: Hashable) -> Path:
        return self.folder / f"{request_key('array', key=key)}.npz"

    def __contains__(self, key: object) -> bool:
        return self._file(key).is_file()

    def __getitem__(self, key: Hashable) -> np.ndarray:
        path = self._file(key)
        if not path.is_file():
            raise KeyError(key)
        with np.load(path, allow_pickle=False) as npz:
            return npz["array"]

    def __setitem__(self, key: Hashable, value: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._file(key)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        np.savez_compressed(tmp, array=np.asarray(value),
                            key=np.array(json.dumps(_canonical(key), sort_keys=True)))
        os.replace(tmp, path)

    def __delitem__(self, key: Hashable) -> None:
        try:
            self._file(key).unlink()
        except FileNotFoundError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator:
        for path in sorted(self.folder.glob("[!.]*.npz")):
            with np.load(path, allow_pickle=False) as npz:
                yield json.loads(str(npz["key"]))

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("[!.]*.npz"))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_band(path: Path, data, geobox: GeoBox) -> None:
    """One (y, x) array (numpy or dask) → tiled DEFLATE GeoTIFF, block by block."""
    h, w = geobox.shape
    dtype = np.dtype(data.dtype)
    nodata = float("nan") if dtype.kind == "f" else 0
    profile = {"driver": "GTiff", "height": h, "width": w, "count": 1, "dtype": dtype.name,
               "crs": geobox.crs.to_wkt(), "transform": geobox.transform, "nodata": nodata,
               "compress": "deflate", "tiled": True, "blockxsize": _BLOCK, "blockysize": _BLOCK}
    with rasterio.open(path, "w", **profile) as dst:
        if isinstance(data, da.Array):
            # one chunk in memory at a time; the lock keeps rasterio writes serial
            da.store(data, _WindowWriter(dst), lock=False)
        else:
            dst.write(np.asarray(data), 1)
