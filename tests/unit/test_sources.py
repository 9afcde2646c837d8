"""Local archive → cube contract: offset removal, 20 m SCL on the 10 m grid, solar-day mosaics."""

import datetime as dt

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine

from agri_3s.errors import ImageryError, InputError
from agri_3s.sources.base import default_boa_offset, dn_to_reflectance
from agri_3s.sources.local import LocalSource
from agri_3s.testing.builders import write_acquisition
from agri_3s.timeseries.masking import clear_mask

T10 = Affine(10, 0, 437000, 0, -10, 4142000)


def _scene(rng, shape=(32, 32)):
    return {b: rng.uniform(0.02, 0.5, shape).round(4) for b in ("B03", "B04", "B08")}


def test_offset_rule_follows_processing_baseline_date():
    assert default_boa_offset(dt.date(2022, 1, 24)) == 0
    assert default_boa_offset(dt.date(2022, 1, 25)) == -1000
    np.testing.assert_allclose(dn_to_reflectance(np.array([0, 1000, 3500], np.uint16), -1000),
                               [np.nan, 0.0, 0.25])


def test_local_source_returns_cube_contract(tmp_path):
    rng = np.random.default_rng(0)
    refl = _scene(rng)
    scl = rng.choice(np.array([4, 5, 9], np.uint8), size=(16, 16))
    write_acquisition(tmp_path, "2025-05-12", refl, scl, T10)
    # 2021: baseline < 04.00, no metadata → no offset must be assumed
    write_acquisition(tmp_path, "2021-05-12", refl, scl, T10, boa_add_offset=0, metadata=False)
    # 2023 without metadata → the −1000 offset is inferred from the date
    write_acquisition(tmp_path, "2023-05-12", refl, scl, T10, metadata=False)
    cube = LocalSource(tmp_path).load((437000, 4141680, 437320, 4142000), "EPSG:32650",
                                      dt.date(2021, 1, 1), dt.date(2025, 12, 31))
    assert set(cube.data_vars) == {"green", "red", "nir", "scl"}
    assert cube.sizes == {"time": 3, "y": 32, "x": 32}
    assert cube.odc.geobox.crs.epsg == 32650
    for t in range(3):
        np.testing.assert_allclose(cube["red"].values[t], refl["B04"], atol=1e-6)
        np.testing.assert_array_equal(cube["scl"].values[t], np.repeat(np.repeat(scl, 2, 0), 2, 1))
    assert cube["red"].dtype == np.float32


def test_cube_is_cut_to_the_parcels(tmp_path):
    rng = np.random.default_rng(1)
    write_acquisition(tmp_path, "2025-05-12", _scene(rng), np.full((16, 16), 4), T10)
    parcel = gpd.GeoSeries([shapely.box(437105, 4141805, 437155, 4141855)], crs=32650).to_crs(4326)
    cube = LocalSource(tmp_path).load(tuple(parcel.total_bounds), "EPSG:4326",
                                      dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    x = cube["x"].values
    assert x.min() < 437105 and x.max() > 437155 and cube.sizes["x"] < 32


def test_same_solar_day_acquisitions_fill_each_others_gaps(tmp_path):
    rng = np.random.default_rng(2)
    a, b = _scene(rng), _scene(rng)
    for band in a:
        a[band][:, 16:] = np.nan  # tile edge: east half missing in the first granule
    write_acquisition(tmp_path, "2025-05-12T03:05:31", a, np.full((16, 16), 4), T10)
    write_acquisition(tmp_path, "2025-05-12T03:05:45", b, np.full((16, 16), 4), T10)
    cube = LocalSource(tmp_path).load((437000, 4141680, 437320, 4142000), "EPSG:32650",
                                      dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert cube.sizes["time"] == 1
    red = cube["red"].values[0]
    np.testing.assert_allclose(red[:, :16], a["B04"][:, :16], atol=1e-6)
    np.testing.assert_allclose(red[:, 16:], b["B04"][:, 16:], atol=1e-6)


def test_missing_band_and_no_overlap_are_clear_errors(tmp_path):
    rng = np.random.default_rng(3)
    folder = write_acquisition(tmp_path, "2025-05-12", _scene(rng), np.full((16, 16), 4), T10)
    src = LocalSource(tmp_path)
    with pytest.raises(ImageryError, match="does not cover the parcels"):
        src.load((0, 0, 10, 10), "EPSG:32650", dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    (folder / "B08.tif").unlink()
    with pytest.raises(ImageryError, match="B08"):
        src.load((437000, 4141680, 437320, 4142000), "EPSG:32650", dt.date(2025, 1, 1),
                 dt.date(2025, 12, 31))
    with pytest.raises(InputError, match="not found"):
        LocalSource(tmp_path / "nope").load((0, 0, 1, 1), 32650, dt.date(2025, 1, 1),
                                            dt.date(2025, 2, 1))


def test_clear_mask_dilates_clouds_but_not_nodata():
    scl = np.full((9, 9), 4, np.uint8)
    scl[4, 4] = 9
    scl[0, 0] = 0
    m = clear_mask(scl, dilation_px=2)
    assert not m[4, 4] and not m[4, 6] and not m[2, 4] and m[4, 7] and m[1, 1]
    assert not m[0, 0]
    assert m[0, 1]  # no-data is masked itself but not grown


@pytest.mark.parametrize("x0,y0,shape", [(0, 0, (32, 32)), (1, 3, (13, 7)), (5, 2, (30, 29)),
                                         (-3, -2, (10, 12))])
def test_aligned_20m_reads_equal_gdal_nearest_warp(tmp_path, x0, y0, shape):
    """The repeat fast path for 20 m bands under a 10 m grid, at odd offsets and off the edge,
    equals GDAL's nearest-neighbour warp of the same file."""
    import rasterio
    from odc.geo.geobox import GeoBox
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from agri_3s.sources.local import read_band
    from agri_3s.testing.builders import write_band

    rng = np.random.default_rng(4)
    path = write_band(tmp_path / "SCL.tif", rng.integers(1, 12, (16, 16)).astype(np.uint8),
                      T10 @ Affine.scale(2))
    gb = GeoBox(shape, T10 @ Affine.translation(x0, y0), "EPSG:32650")
    with rasterio.open(path) as src, WarpedVRT(src, crs=src.crs, transform=gb.transform,
                                               width=shape[1], height=shape[0], nodata=0,
                                               resampling=Resampling.nearest) as vrt:
        expected = vrt.read(1)
    np.testing.assert_array_equal(read_band(path, gb), expected)
