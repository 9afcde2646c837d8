"""StacSource against a fake STAC API on 127.0.0.1 whose assets are local GeoTIFFs.

Independent truths: the reflectances written into the archive (hand-made arrays), LocalSource
reading the same files (the reference path), pyproj for where pixels of a neighbouring UTM zone
land, and the fake server's request log for retries and cache hits.
"""

import datetime as dt
import time

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Transformer

from agri_3s.errors import ImageryError, InputError
from agri_3s.sources.base import ImagerySource
from agri_3s.sources.cache import FetchCache
from agri_3s.sources.local import LocalSource
from agri_3s.sources.stac import StacSource, reflectance_scaling, target_geobox
from agri_3s.testing.builders import write_acquisition
from agri_3s.timeseries.zonal import parcel_series, pixel_weights
from tests.fakes.stac_server import FakeStac, items_from_archive

pytest.importorskip("pystac_client")
pytest.importorskip("odc.stac")

T10 = Affine(10, 0, 437000, 0, -10, 4142000)
BOUNDS = (437040, 4141720, 437280, 4141960)  # inside the 32 × 32 px scene, margin included
DAYS = (dt.date(2021, 1, 1), dt.date(2025, 12, 31))


def _archive(root, seed=0):
    """Three dates: 2021 (baseline 02.xx, no offset, no metadata), 2023 and 2025 (−1000)."""
    rng = np.random.default_rng(seed)
    truth = {}
    for name, offset, meta in (("2021-05-12T03:05:31", 0, False), ("2023-05-17T03:05:29", -1000,
                                                                       True),
                               ("2025-05-12T03:05:31", -1000, True)):
        refl = {b: rng.uniform(0.02, 0.5, (32, 32)).round(4) for b in ("B03", "B04", "B08")}
        refl["B04"][3, 4] = np.nan  # no data must stay no data
        scl = rng.choice(np.array([4, 5, 8, 9], np.uint8), size=(16, 16),
                         p=[0.6, 0.36, 0.02, 0.02])
        write_acquisition(root, name, refl, scl, T10, boa_add_offset=offset, metadata=meta)
        truth[name[:10]] = (refl, scl)
    return truth


def _baseline(folder):
    return {"s2:processing_baseline": "02.09" if folder.name < "2022" else "05.10"}


@pytest.mark.parametrize("style", ["earthsearch", "planetary"])
def test_stac_cube_equals_local_cube_and_truth(tmp_path, style):
    truth = _archive(tmp_path)
    items = items_from_archive(tmp_path, style=style,
                               properties=_baseline if style == "planetary" else None)
    with FakeStac(items) as api:
        src = StacSource(api.url)
        assert isinstance(src, ImagerySource)
        cube = src.load(BOUNDS, "EPSG:32650", *DAYS)
        assert hasattr(cube["red"].data, "dask")  # nothing read before compute
        cube = cube.compute()
    local = LocalSource(tmp_path).load(BOUNDS, "EPSG:32650", *DAYS).compute()

    assert set(cube.data_vars) == {"green", "red", "nir", "scl"}
    assert cube["red"].dtype == np.float32 and cube["scl"].dtype == np.uint8
    assert cube.odc.geobox == local.odc.geobox
    np.testing.assert_array_equal(cube["time"].values, local["time"].values)
    for var in ("green", "red", "nir"):
        np.testing.assert_allclose(cube[var].values, local[var].values, atol=1e-4)
    np.testing.assert_array_equal(cube["scl"].values, local["scl"].values)
    # and against the reflectances written (rows/cols 1..30 = BOUNDS + 30 m on the scene grid)
    for t, (refl, scl) in enumerate(truth.values()):
        np.testing.assert_allclose(cube["red"].values[t], refl["B04"][1:31, 1:31], atol=1e-6)
        np.testing.assert_array_equal(cube["scl"].values[t],
                                      np.repeat(np.repeat(scl, 2, 0), 2, 1)[1:31, 1:31])
    assert np.isnan(cube["red"].values[:, 2, 3]).all()


def test_parcel_ndvi_series_same_through_stac_and_local(tmp_path):
    _archive(tmp_path, seed=4)
    parcels = gpd.GeoDataFrame(
        {"parcel_id": ["p1", "p2"]},
        geometry=[shapely.box(437065, 4141745, 437165, 4141845),
                  shapely.Polygon([(437170, 4141850), (437260, 4141860), (437200, 4141950)])],
        crs=32650).to_crs(4326)  # parcels arrive in lon/lat
    bounds = tuple(parcels.total_bounds)
    with FakeStac(items_from_archive(tmp_path)) as api:
        stac_cube = StacSource(api.url).load(bounds, parcels.crs, *DAYS)
        s_stac = parcel_series(stac_cube, pixel_weights(parcels, stac_cube.odc.geobox))
    local_cube = LocalSource(tmp_path).load(bounds, parcels.crs, *DAYS)
    s_local = parcel_series(local_cube, pixel_weights(parcels, local_cube.odc.geobox))
    assert np.isfinite(s_local["ndvi_mean"].values).sum() >= 4
    # stated tolerance: 1e-4 NDVI (DN quantisation is 1e-4 reflectance; here the grids coincide)
    for var in ("ndvi_mean", "ndvi_p50", "clear_fraction", "n_pixels"):
        np.testing.assert_allclose(s_stac[var].values, s_local[var].values, atol=1e-4,
                                   equal_nan=True)


def test_offset_rules_from_item_metadata():
    may25, may21 = dt.date(2025, 5, 1), dt.date(2021, 5, 1)
    es_bands = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}
    # Earth Search harmonised the DNs: its raster:bands −0.1 must not be applied on top
    assert reflectance_scaling({"earthsearch:boa_offset_applied": True,
                                "s2:processing_baseline": "05.11"}, es_bands, may25)[:2] == (
        0.0001, 0.0)
    assert reflectance_scaling({"earthsearch:boa_offset_applied": False,
                                "s2:processing_baseline": "04.00"}, es_bands, may25)[:2] == (
        0.0001, -0.1)
    assert reflectance_scaling({"s2:processing_baseline": "03.01"}, es_bands, may25)[1] == 0.0
    assert reflectance_scaling({"processing:version": "05.11"}, {}, may21)[1] == -0.1
    assert reflectance_scaling({}, {"raster:bands": [{"scale": 2e-4, "offset": -0.2}]},
                               may21)[:2] == (2e-4, -0.2)
    assert reflectance_scaling({}, {}, may21)[1] == 0.0
    assert reflectance_scaling({}, {}, may25)[1] == pytest.approx(-0.1)


def test_offset_rules_applied_to_pixels(tmp_path):
    rng = np.random.default_rng(7)
    refl = {b: rng.uniform(0.05, 0.5, (32, 32)).round(4) for b in ("B03", "B04", "B08")}
    scl = np.full((16, 16), 4, np.uint8)
    # 2025, DNs already harmonised (no +1000) and flagged so by Earth Search
    write_acquisition(tmp_path, "2025-05-12", refl, scl, T10, boa_add_offset=0, metadata=False)
    # 2025-06, no baseline property, offset only in raster:bands
    write_acquisition(tmp_path, "2025-06-11", refl, scl, T10, boa_add_offset=-1000)

    def props(folder):
        if folder.name == "2025-05-12":
            return {"earthsearch:boa_offset_applied": True, "s2:processing_baseline": "05.11"}
        return {"s2:processing_baseline": None}

    items = items_from_archive(tmp_path, raster_offset=True, properties=props)
    items[0]["assets"]["red"]["raster:bands"][0].update(scale=0.0001, offset=-0.1)  # as ES does
    with FakeStac(items) as api:
        cube = StacSource(api.url).load(BOUNDS, 32650, *DAYS).compute()
    assert cube.sizes["time"] == 2
    for t in range(2):
        np.testing.assert_allclose(cube["red"].values[t], refl["B04"][1:31, 1:31], atol=1e-6)


def _utm_grid(epsg, lon, lat):
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return Affine(10, 0, np.floor(x / 10) * 10, 0, -10, np.ceil(y / 10) * 10)


def test_area_spanning_two_utm_zones_is_one_grid(tmp_path):
    """Two archives at 120°E (zone 50 | zone 51), one pass; red is a known function of lon/lat."""
    def f(lon, lat):
        return 0.2 + 20 * (lon - 119.99) + 20 * (lat - 30.995)

    n = 96  # 960 m each; they overlap by ~200 m around the zone boundary
    for epsg, west, scl_class in ((32650, 119.9915, 4), (32651, 119.9985, 5)):
        tr = _utm_grid(epsg, west, 31.0075)
        cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
        xs, ys = tr @ (cols, rows)
        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(xs, ys)
        refl = {"B04": f(lon, lat).round(4), "B08": np.full((n, n), 0.5),
                "B03": np.full((n, n), 0.1)}
        write_acquisition(tmp_path / str(epsg), "2025-05-12T02:45:21", refl,
                          np.full((n // 2, n // 2), scl_class), tr, crs=f"EPSG:{epsg}")
    items = items_from_archive(tmp_path / "32650") + items_from_archive(tmp_path / "32651")
    assert {it["properties"]["proj:epsg"] for it in items} == {32650, 32651}
    bounds = (119.995, 31.0, 120.005, 31.004)  # straddles 120°E
    with FakeStac(items) as api:
        cube = StacSource(api.url).load(bounds, "EPSG:4326", dt.date(2025, 5, 12),
                                        dt.date(2025, 5, 12)).compute()
    assert cube.odc.geobox.crs.epsg == 32651 and cube.sizes["time"] == 1
    red = cube["red"].values[0]
    assert np.isfinite(red).all()  # no gap at the seam
    xx, yy = np.meshgrid(cube["x"].values, cube["y"].values)
    lon, lat = Transformer.from_crs(32651, 4326, always_xy=True).transform(xx, yy)
    err = np.abs(red - f(lon, lat))
    # nearest neighbour: the source pixel centre lies within ~5.3 m of the output pixel centre in
    # x and y (grid convergence ≈ 1.5° here), i.e. ≤ 5.3 m × (2.1 + 1.8)e-4 /m ≈ 2.1e-3 in red;
    # a one-pixel shift would add ≈ 2e-3 to the mean error (measured: max 1.9e-3, mean 4e-4).
    assert err.max() < 2.3e-3 and err.mean() < 1.0e-3
    scl = cube["scl"].values[0]
    assert (scl[lon < 119.9984] == 4).all() and (scl[lon > 120.0016] == 5).all()


def test_search_retries_transient_faults_then_succeeds(tmp_path):
    _archive(tmp_path)
    with FakeStac(items_from_archive(tmp_path), page_size=1) as api:
        api.fail_next = [(500, None), (429, "1"), (503, None)]
        src = StacSource(api.url, backoff=0.01)
        t0 = time.monotonic()
        cube = src.load(BOUNDS, "EPSG:32650", *DAYS)
        assert time.monotonic() - t0 >= 0.9  # the 429's Retry-After: 1 was honoured
        # 3 faults + 3 pages (page_size=1: the `next` links are followed)
        assert api.search_hits == 6
    assert cube.sizes["time"] == 3


def test_persistent_failure_names_the_url(tmp_path):
    _archive(tmp_path)
    with FakeStac(items_from_archive(tmp_path)) as api:
        api.fail_always = 503
        src = StacSource(api.url, retries=2, backoff=0.01)
        with pytest.raises(ImageryError, match=f"{api.url}.*(503|retries)"):
            src.load(BOUNDS, "EPSG:32650", *DAYS)
        assert api.search_hits == 3  # first try + 2 retries, then a clear failure


def test_unreachable_api_is_a_clear_error():
    src = StacSource("http://127.0.0.1:9", retries=0, timeout=2)  # port 9: discard, closed
    with pytest.raises(ImageryError, match="127.0.0.1:9"):
        src.load(BOUNDS, "EPSG:32650", *DAYS)
    with pytest.raises(InputError, match="not an http"):
        StacSource("earth-search")


def test_empty_results_cloud_filter_and_missing_assets(tmp_path):
    _archive(tmp_path)
    items = items_from_archive(tmp_path, properties=lambda f: {
        "eo:cloud_cover": 80.0 if f.name.startswith("2023") else 10.0})
    with FakeStac(items) as api:
        cube = StacSource(api.url, max_cloud=50).load(BOUNDS, "EPSG:32650", *DAYS)
        assert cube.sizes["time"] == 2
        assert "2023" in cube.attrs["skipped_cloudy"]  # said, not silently dropped
        with pytest.raises(ImageryError, match="no sentinel-2-l2a item.*2019"):
            StacSource(api.url).load(BOUNDS, "EPSG:32650", dt.date(2019, 1, 1),
                                     dt.date(2019, 12, 31))
        with pytest.raises(ImageryError, match="raise max_cloud"):
            StacSource(api.url, max_cloud=1).load(BOUNDS, "EPSG:32650", *DAYS)
        del items[0]["assets"]["nir"]
        with pytest.raises(ImageryError, match=r"has no asset for band B08"):
            StacSource(api.url).load(BOUNDS, "EPSG:32650", *DAYS)


def test_unreadable_asset_fails_loudly_not_a_silent_gap(tmp_path):
    _archive(tmp_path)
    with FakeStac(items_from_archive(tmp_path)) as api:
        cube = StacSource(api.url).load(BOUNDS, "EPSG:32650", *DAYS)
    (tmp_path / "2023-05-17T03:05:29" / "B04.tif").write_bytes(b"garbage")
    with pytest.raises(Exception, match="B04.tif"):
        cube["red"].compute()


def test_cache_second_load_does_not_touch_server_or_files(tmp_path):
    _archive(tmp_path / "archive")
    cache = FetchCache(tmp_path / "cache")
    with FakeStac(items_from_archive(tmp_path / "archive")) as api:
        src = StacSource(api.url, cache=cache)
        first = src.load(BOUNDS, "EPSG:32650", *DAYS).compute()
        hits = len(api.hits)
        assert hits > 0
        for tif in (tmp_path / "archive").rglob("*.tif"):
            tif.unlink()  # the imagery is gone: only the cache can answer now
        second = src.load(BOUNDS, "EPSG:32650", *DAYS)
        assert len(api.hits) == hits  # not one request
        second = second.compute()
        # another area is another request (it fails to read: the files are gone)
        with pytest.raises(Exception, match="B0|SCL|tif"):
            src.load((437000, 4141700, 437100, 4141800), "EPSG:32650", *DAYS).compute()
        assert len(api.hits) > hits
    assert second.odc.geobox == first.odc.geobox
    for var in first.data_vars:
        np.testing.assert_array_equal(second[var].values, first[var].values)
    np.testing.assert_array_equal(second["time"].values, first["time"].values)


def test_target_grid_is_utm_of_centre_aligned_to_10_m():
    gb = target_geobox((116.30, 37.40, 116.31, 37.41), "EPSG:4326")
    assert gb.crs.epsg == 32650
    assert gb.transform.a == 10 and gb.transform.e == -10
    assert gb.transform.c % 10 == 0 and gb.transform.f % 10 == 0
    west, south, east, north = Transformer.from_crs(4326, 32650, always_xy=True).transform_bounds(
        116.30, 37.40, 116.31, 37.41)
    box = gb.extent.boundingbox
    assert box.left <= west - 30 and box.right >= east + 30
    assert box.bottom <= south - 30 and box.top >= north + 30
    assert box.left > west - 40 and box.right < east + 40


def test_fake_api_get_search_paging_and_intersects(tmp_path):
    """The fake speaks GET /search with `next` links and `intersects` too (pystac-client)."""
    from pystac_client import Client

    _archive(tmp_path)
    with FakeStac(items_from_archive(tmp_path), page_size=2) as api:
        client = Client.open(api.url)
        area = shapely.box(*Transformer.from_crs(32650, 4326, always_xy=True).transform_bounds(
            *BOUNDS))
        found = client.search(collections=["sentinel-2-l2a"], intersects=area, method="GET",
                              datetime="2022-01-01/2025-12-31")
        ids = [it.id for it in found.items()]
        assert ids == ["S2A_50XXX_20230517T030529_L2A", "S2A_50XXX_20250512T030531_L2A"]
        far = client.search(bbox=[0, 0, 1, 1], method="GET")
        assert list(far.items()) == []
        assert ("GET", "/search") in api.hits
