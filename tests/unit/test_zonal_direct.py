"""LocalSource cubes are read straight from their files by ``parcel_series`` (raw DNs, only the
pixels parcels use converted, SCL at 20 m). Truth: the same statistics from a cube built by hand
from the GeoTIFFs read with rasterio (DN → reflectance, 20 m SCL repeated, same-day granules
merged) and run through the cube-chunk path."""

import datetime as dt

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from agri_3s.sources.base import cube_from_arrays, window_reader
from agri_3s.sources.local import LocalSource
from agri_3s.testing.builders import write_acquisition
from agri_3s.timeseries.zonal import STATS, parcel_series, pixel_weights

T10 = Affine(10, 0, 437000, 0, -10, 4142000)
N = 96  # 10 m pixels per side; SCL is 48 × 48 at 20 m


def _refl(rng, nan_east=False):
    out = {b: rng.uniform(0.02, 0.5, (N, N)).round(4) for b in ("B03", "B04", "B08")}
    out["B08"][:, : N // 2] += 0.3  # vegetation in the west, so NDVI quantiles spread
    if nan_east:
        for b in out:
            out[b][:, N // 2:] = np.nan
    return out


def _scl(rng):
    scl = np.full((N // 2, N // 2), 4, np.uint8)
    scl[rng.random(scl.shape) < 0.04] = 9  # scattered cloud pixels to dilate
    scl[20:24, 30:34] = 3  # a shadow block
    scl[:, 40] = 0  # a no-data column
    return scl


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(7)
    write_acquisition(root, "2025-05-02", _refl(rng), _scl(rng), T10)
    # one solar day, two granules: the first misses its east half, the second is baseline < 04.00
    write_acquisition(root, "2025-05-12T03:05:31", _refl(rng, nan_east=True), _scl(rng), T10)
    write_acquisition(root, "2025-05-12T03:05:45", _refl(rng), _scl(rng), T10, boa_add_offset=0)
    write_acquisition(root, "2025-05-22", _refl(rng), _scl(rng), T10)
    return root


def _parcels(rng, n=60):
    """Random quadrilaterals and slivers, many crossing the 32 px processing windows."""
    geoms = []
    for _ in range(n):
        x0, y0 = rng.uniform(437060, 437880), rng.uniform(4141080, 4141900)
        w, h = rng.choice([8, 25, 60, 150]), rng.uniform(20, 160)
        dx = rng.uniform(-15, 15)
        geoms.append(shapely.Polygon([(x0, y0), (x0 + w, y0 + dx), (x0 + w + dx, y0 + h),
                                      (x0 + dx, y0 + h)]))
    return gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(n)]}, geometry=geoms,
                            crs=32650)


#: The module archive's solar days: (folder, boa_add_offset) of each granule.
ARCHIVE_DAYS = [[("2025-05-02", -1000)], [("2025-05-12T03:05:31", -1000),
                                          ("2025-05-12T03:05:45", 0)], [("2025-05-22", -1000)]]


def _by_hand(root, geobox, times, days=ARCHIVE_DAYS):
    """The cube contract built from the files with rasterio alone."""
    col0 = round((geobox.transform.c - T10.c) / 10)
    row0 = round((T10.f - geobox.transform.f) / 10)
    h, w = geobox.shape
    cut = np.s_[row0:row0 + h, col0:col0 + w]

    def band(folder, name):
        with rasterio.open(root / folder / f"{name}.tif") as src:
            a = src.read(1)
        return np.repeat(np.repeat(a, 2, 0), 2, 1) if name == "SCL" else a

    def refl(dn, offset):
        return np.where(dn == 0, np.nan, (dn.astype(np.float32) + np.float32(offset))
                        / np.float32(10000)).astype(np.float32)

    arrays = {v: [] for v in ("green", "red", "nir", "scl")}
    for granules in days:
        for v, name in (("green", "B03"), ("red", "B04"), ("nir", "B08")):
            r = refl(band(granules[0][0], name), granules[0][1])
            for folder, off in granules[1:]:
                r = np.where(np.isnan(r), refl(band(folder, name), off), r)
            arrays[v].append(r[cut])
        s = band(granules[0][0], "SCL")
        for folder, _ in granules[1:]:
            s = np.where(s == 0, band(folder, "SCL"), s)
        arrays["scl"].append(s[cut])
    return cube_from_arrays({v: np.stack(a) for v, a in arrays.items()}, times, geobox)


@pytest.mark.parametrize("dilation_px", [0, 1, 2, 4])
def test_direct_reads_equal_the_cube_built_by_hand(archive, dilation_px):
    parcels = _parcels(np.random.default_rng(3))
    # bounds off the 20 m grid, so the cut grid starts inside an SCL pixel
    cube = LocalSource(archive, chunk_px=32).load((437045, 4141075, 437925, 4141935), 32650,
                                                  dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert window_reader(cube, ["red", "nir", "scl", "green"]) is not None
    gb = cube.odc.geobox
    assert round((gb.transform.c - T10.c) / 10) % 2 == 1  # odd column offset: SCL dc = 1
    hand = _by_hand(archive, gb, cube["time"].values)
    for rule in ("full_first", "coverage"):
        w = pixel_weights(parcels, gb, rule=rule)
        direct = parcel_series(cube, w, dilation_px=dilation_px)
        truth = parcel_series(hand, w, dilation_px=dilation_px)
        for k in STATS:
            np.testing.assert_allclose(direct[k].values, truth[k].values, atol=1e-6, err_msg=k)
        assert np.isfinite(direct["ndvi_mean"].values).mean() > 0.5


def test_lazy_local_cube_reads_only_what_is_indexed(archive):
    cube = LocalSource(archive).load((437000, 4141040, 437960, 4142000), 32650,
                                     dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    with rasterio.open(archive / "2025-05-22" / "B04.tif") as src:
        dn = src.read(1)
    got = cube["red"].isel(time=2, y=slice(5, 40, 3), x=[1, 7, 50]).values
    want = (dn[5:40:3][:, [1, 7, 50]].astype(np.float32) - 1000) / 10000
    np.testing.assert_allclose(got, want, atol=1e-7)
    assert cube["scl"].isel(time=0, y=0, x=0).values.shape == ()
    dask_cube = cube.chunk({"time": 1, "y": 40, "x": 40})
    np.testing.assert_array_equal(dask_cube["nir"].values, cube["nir"].values)


def test_a_changed_cube_is_read_from_its_arrays_not_the_files(archive):
    parcels = _parcels(np.random.default_rng(4), n=20)
    cube = LocalSource(archive).load((437055, 4141075, 437925, 4141935), 32650,
                                     dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    w = pixel_weights(parcels, cube.odc.geobox)
    later = cube.isel(time=[0, 2])
    assert window_reader(later, ["red", "nir", "scl"]) is None
    np.testing.assert_allclose(parcel_series(later, w)["ndvi_mean"].values,
                               parcel_series(cube, w)["ndvi_mean"].values[:, [0, 2]], atol=1e-6)
    brighter = cube.assign(red=cube["red"] * 0.5)
    assert window_reader(brighter, ["red", "nir", "scl"]) is None
    assert not np.allclose(parcel_series(brighter, w)["ndvi_mean"].values,
                           parcel_series(cube, w)["ndvi_mean"].values, equal_nan=True)


def test_clouded_windows_decode_no_reflectance(tmp_path):
    """A date whose SCL is cloud over every parcel pixel: its B04/B08 files are never read,
    and its statistics are the same as when they are (no clear pixel: NaN, 0 clear)."""
    rng = np.random.default_rng(11)
    clouded = np.full((N // 2, N // 2), 9, np.uint8)
    write_acquisition(tmp_path, "2025-06-01", _refl(rng), _scl(rng), T10)
    write_acquisition(tmp_path, "2025-06-11", _refl(rng), clouded, T10)
    parcels = _parcels(np.random.default_rng(5), n=30)
    cube = LocalSource(tmp_path, chunk_px=32).load((437045, 4141075, 437925, 4141935), 32650, dt.date(2025, 1, 1),
                                                   dt.date(2025, 12, 31))
    w = pixel_weights(parcels, cube.odc.geobox)
    reader = window_reader(cube, ["red", "nir", "scl"])
    read = []
    original = type(reader).read

    def counting(self, variable, t, geobox):
        read.append((variable, t))
        return original(self, variable, t, geobox)

    type(reader).read = counting
    try:
        direct = parcel_series(cube, w, dilation_px=0)
    finally:
        type(reader).read = original
    assert ("red", 0) in read and ("scl", 1) in read
    assert ("red", 1) not in read and ("nir", 1) not in read
    days = [[("2025-06-01", -1000)], [("2025-06-11", -1000)]]
    truth = parcel_series(_by_hand(tmp_path, cube.odc.geobox, cube["time"].values, days), w,
                          dilation_px=0)
    for k in STATS:
        np.testing.assert_allclose(direct[k].values, truth[k].values, atol=1e-6, err_msg=k)
    assert np.isnan(direct["ndvi_mean"].values[:, 1]).all()
    assert (direct["clear_fraction"].values[:, 1] == 0).all()


def test_direct_reads_go_date_by_date(archive):
    """Each thread reads one date's windows before the next date's, so it keeps only about two
    days' files open (window by window, every thread would cycle through every date's files)."""
    import threading

    import dask

    parcels = _parcels(np.random.default_rng(6))
    cube = LocalSource(archive, chunk_px=32).load((437045, 4141075, 437925, 4141935), 32650,
                                                  dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    w = pixel_weights(parcels, cube.odc.geobox)
    reader = window_reader(cube, ["red", "nir", "scl"])
    dates_read: dict[int, list[int]] = {}
    original = type(reader).read

    def recording(self, variable, t, geobox):
        dates_read.setdefault(threading.get_ident(), []).append(t)
        return original(self, variable, t, geobox)

    type(reader).read = recording
    try:
        with dask.config.set(scheduler="threads", num_workers=2):
            parcel_series(cube, w, dilation_px=0)
    finally:
        type(reader).read = original
    assert sum(len(ts) for ts in dates_read.values()) > 3 * 9  # ≥ 9 windows a date
    for ts in dates_read.values():
        switches = sum(a != b for a, b in zip(ts, ts[1:]))
        assert switches <= len(set(ts)) - 1, ts
