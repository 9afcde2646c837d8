"""FetchCache: stable request keys, exact round trip, atomic writes, resume after interruption."""

import datetime as dt
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS

from agri_3s.sources.base import cube_from_arrays
from agri_3s.sources.cache import FetchCache, default_cache_root, request_key

GEOBOX = GeoBox((20, 30), Affine(10, 0, 437000, 0, -10, 4142000), "EPSG:32650")
TIMES = np.array(["2025-05-12T03:05:31", "2025-05-17T03:05:29"], dtype="datetime64[ns]")


def _cube(rng, readers=None):
    """A two-date cube; ``readers[t]`` (optional) supplies date t lazily, to watch or fail it."""
    red = rng.uniform(0, 0.5, (2, 20, 30)).astype(np.float32)
    red[0, 3, 4] = np.nan
    scl = rng.integers(0, 12, (2, 20, 30)).astype(np.uint8)
    if readers:
        red = da.stack([da.from_delayed(dask.delayed(readers[t])(red[t]), (20, 30), np.float32)
                        for t in range(2)])
    return cube_from_arrays({"red": red, "scl": scl}, TIMES, GEOBOX, attrs={"source": "test"})


def test_request_key_is_stable_and_discriminating():
    base = {"url": "http://x/v1", "bounds": (116.3, 37.4, 116.31, 37.41), "crs": "EPSG:4326",
            "start": dt.date(2025, 3, 1), "end": dt.date(2025, 6, 30), "bands": ["B04", "B08"]}
    k = request_key("stac", **base)
    assert len(k) == 32 and k == request_key("stac", **dict(reversed(list(base.items()))))
    assert k == request_key("stac", **{**base, "crs": 4326})
    assert k == request_key("stac", **{**base, "crs": CRS.from_epsg(4326)})
    assert k == request_key("stac", **{**base, "bounds": (116.3 + 1e-9, 37.4, 116.31, 37.41)})
    for change in ({"bounds": (116.3001, 37.4, 116.31, 37.41)}, {"crs": 32650},
                   {"end": dt.date(2025, 7, 1)}, {"bands": ["B04"]}, {"url": "http://y/v1"}):
        assert request_key("stac", **{**base, **change}) != k, change
    assert request_key("sentinelhub", **base) != k


def test_round_trip_is_exact_and_lazy(tmp_path):
    cache = FetchCache(tmp_path)
    cube = _cube(np.random.default_rng(0))
    assert cache.get("k1") is None and not cache.has("k1")
    back = cache.put("k1", cube, {"bounds": (1.0, 2.0, 3.0, 4.0)})
    assert cache.has("k1") and (tmp_path / "k1" / "request.json").is_file()
    assert hasattr(back["red"].data, "dask")
    assert back.odc.geobox == GEOBOX
    np.testing.assert_array_equal(back["time"].values, TIMES)
    assert back["red"].dtype == np.float32 and back["scl"].dtype == np.uint8
    np.testing.assert_array_equal(back["red"].values, cube["red"].values)  # NaN == NaN here
    np.testing.assert_array_equal(back["scl"].values, cube["scl"].values)
    assert back.attrs["source"] == "test"
    # a window read returns that window
    np.testing.assert_array_equal(back["red"][1, 5:9, 10:12].values,
                                  cube["red"].values[1, 5:9, 10:12])
    # plain GeoTIFFs a user can open elsewhere
    assert sorted(p.name for p in (tmp_path / "k1").glob("2025*/*.tif"))[:2] == ["red.tif",
                                                                                  "red.tif"]


def test_interrupted_put_resumes_without_refetching(tmp_path):
    cache = FetchCache(tmp_path)
    fetched = []

    def ok(t):
        def read(a):
            fetched.append(t)
            return a
        return read

    def broken(a):
        raise ConnectionError("network dropped")

    rng = np.random.default_rng(1)
    with pytest.raises(ConnectionError):
        cache.put("k", _cube(rng, readers=[ok(0), broken]))
    assert fetched == [0] and not cache.has("k") and cache.get("k") is None
    # no half-written date folder is left behind
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["20250512T030531"]

    fetched.clear()
    rng = np.random.default_rng(1)
    back = cache.put("k", _cube(rng, readers=[ok(0), ok(1)]))
    assert fetched == [1]  # date 0 came from disk
    assert back.sizes["time"] == 2 and cache.has("k")


def test_cache_root_argument_env_default(tmp_path, monkeypatch):
    monkeypatch.delenv("AGRI3S_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == Path(tmp_path / "home" / ".cache" / "agri_3s")
    monkeypatch.setenv("AGRI3S_CACHE", str(tmp_path / "env"))
    assert FetchCache().root == tmp_path / "env"
    assert FetchCache(tmp_path / "arg").root == tmp_path / "arg"
    cache = FetchCache()
    cache.put("k", _cube(np.random.default_rng(2)))
    assert (tmp_path / "env" / "k" / "index.json").is_file()
    cache.clear("k")
    assert not cache.has("k")


def test_array_store_for_tile_caches(tmp_path):
    """The MutableMapping a tile-wise source (Sentinel Hub) plugs in as its ``cache``."""
    store = FetchCache(tmp_path).arrays("sentinelhub")
    key = ("https://sh.example", "2025-05-12", ("B04", "B08"), (437000.0, 4141000.0, 1, 2), 32650)
    assert key not in store and len(store) == 0
    tile = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    store[key] = tile
    again = FetchCache(tmp_path).arrays("sentinelhub")  # a new process sees it
    assert key in again and again[key].dtype == np.uint16
    np.testing.assert_array_equal(again[key], tile)
    assert len(again) == 1 and next(iter(again))[1] == "2025-05-12"
    with pytest.raises(KeyError):
        again[("other",)]
    del again[key]
    assert key not in store
