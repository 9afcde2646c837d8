"""Parcel statistics against exactextract (the oracle) and a brute-force per-pixel loop.

agri_3s must give exactextract's coverage-weighted means of the SAME polygons to 1e-5. To
compare like with like, the tests buffer the parcels themselves (−5 m with shapely, keeping the
raw polygon when less than one pixel would remain, as the engine does) and hand the buffered
shapes to ``pixel_weights(..., inward_buffer_m=0, rule="coverage")``; exactextract gets the
same shapes. Cubes are chunked in 16 px windows so parcels straddle window borders.

Quantiles differ by definition, and the tests pin both definitions down: agri_3s gives the
weighted inverted CDF (the smallest clear pixel value whose cumulative coverage weight reaches
q × total; numpy's ``inverted_cdf`` when all weights are 1); exactextract's ``quantile``
interpolates linearly between values (numpy's ``linear`` — Hyndman & Fan type 7 — when all
weights are 1).
"""

from __future__ import annotations

import datetime as dt

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox

from agri_3s.sources.base import cube_from_arrays
from agri_3s.sources.local import LocalSource
from agri_3s.testing.builders import write_band
from agri_3s.timeseries.weights import coverage_table
from agri_3s.timeseries.zonal import parcel_series, pixel_weights

exactextract = pytest.importorskip("exactextract")
from exactextract.raster import NumPyRasterSource  # noqa: E402 (after the importorskip)

CRS = "EPSG:32650"
X0, Y0 = 500_000.0, 4_000_000.0
#: Sen2Cor SCL classes that are not clear land (no data, defective, shadow, cloud, cirrus).
NOT_CLEAR = (0, 1, 3, 8, 9, 10)
CHUNK = 16


# ---------------------------------------------------------------- inputs built in the test

def _geobox(shape=(64, 80), res=(10.0, 10.0)) -> GeoBox:
    return GeoBox(shape, Affine(res[0], 0, X0, 0, -res[1], Y0), CRS)


def _bands(rng, shape, n_dates=3):
    """Random reflectances (with a few no-data pixels) and SCL with clouds and shadow."""
    h, w = shape
    red = rng.uniform(0.02, 0.3, (n_dates, h, w)).astype(np.float32)
    nir = rng.uniform(0.1, 0.6, (n_dates, h, w)).astype(np.float32)
    red[rng.random(red.shape) < 0.01] = np.nan
    scl = np.full((n_dates, h, w), 4, np.uint8)
    if n_dates > 1:
        scl[1, 10:30, 20:45] = 9
        scl[1, 30:34, 20:45] = 3
    if n_dates > 2:
        scl[2][rng.random((h, w)) < 0.15] = 8
        scl[2, :, :3] = 0
    return red, nir, scl


def _cube(red, nir, scl, geobox):
    chunks = (1, CHUNK, CHUNK)
    times = [np.datetime64("2024-05-01") + np.timedelta64(5 * i, "D") for i in range(len(red))]
    return cube_from_arrays({"red": da.from_array(red, chunks=chunks),
                             "nir": da.from_array(nir, chunks=chunks),
                             "scl": da.from_array(scl, chunks=chunks)}, times, geobox)


def _masked_ndvi(red, nir, scl):
    """The cloud-masked NDVI raster exactextract is given (computed here in float64)."""
    r, n = red.astype(np.float64), nir.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (n - r) / (n + r)
    v[np.isin(scl, NOT_CLEAR)] = np.nan
    return v


def _quad(rng, cx, cy, size):
    """A random star-shaped (hence valid) pentagon: the validator repairs invalid input."""
    ang = np.arange(5) * 2 * np.pi / 5 + rng.uniform(0, 1.2, 5)
    rad = rng.uniform(0.4, 1.0, 5) * size
    poly = shapely.Polygon(np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))
    assert poly.is_valid
    return poly


def _buffered(geoms, geobox, buffer_m=5.0):
    """−5 m inward buffer; the raw polygon where less than one pixel's area remains."""
    t = geobox.transform
    shrunk = shapely.buffer(np.asarray(geoms, dtype=object), -buffer_m)
    keep = shapely.area(shrunk) >= abs(t.a * t.e)
    return np.where(keep, shrunk, np.asarray(geoms, dtype=object))


def _gdf(geoms):
    return gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(len(geoms))]},
                            geometry=list(geoms), crs=CRS)


def _random_parcels(rng, geobox, n=25):
    """Random polygons of 1–25 pixels, some hanging off the grid, one with a hole, one in
    two parts."""
    (x0, y1), (x1, y0) = (geobox.transform.c, geobox.transform.f), (
        geobox.transform.c + geobox.shape[1] * geobox.transform.a,
        geobox.transform.f + geobox.shape[0] * geobox.transform.e)
    geoms = [_quad(rng, rng.uniform(x0 - 10, x1 + 10), rng.uniform(y0 - 10, y1 + 10),
                   rng.uniform(12, 60)) for _ in range(n)]
    ring = shapely.Point(x0 + 300, y1 - 300).buffer(70)
    geoms.append(ring.difference(shapely.Point(x0 + 305, y1 - 290).buffer(25)))
    geoms.append(shapely.MultiPolygon([shapely.box(x0 + 100, y1 - 500, x0 + 150, y1 - 470),
                                       shapely.box(x0 + 400, y1 - 130, x0 + 433, y1 - 95)]))
    return geoms


def _window_edge_parcels(geobox):
    """Polygons across the 16 px window borders: on window corners, long strips crossing
    several windows, a box whose edges lie exactly on pixel and window edges."""
    t = geobox.transform
    e = CHUNK * t.a  # window size in metres (x)
    f = CHUNK * -t.e
    x0, y0 = t.c, t.f
    return [
        shapely.box(x0 + e - 23, y0 - f - 17, x0 + e + 31, y0 - f + 29),  # window corner
        shapely.Polygon([(x0 + 5, y0 - 2 * f - 9), (x0 + 4 * e + 3, y0 - 2 * f - 14),
                         (x0 + 4 * e + 7, y0 - 2 * f + 12), (x0 + 3, y0 - 2 * f + 16)]),  # strip
        shapely.box(x0 + 2 * e - 4 * t.a, y0 - 3 * f + 4 * t.e,
                    x0 + 2 * e + 4 * t.a, y0 - 3 * f - 4 * t.e),  # pixel-aligned, 8 × 8 px
        shapely.Polygon([(x0 + 3 * e, y0 - 10), (x0 + 3 * e + 40, y0 - f - 60),
                         (x0 + 3 * e - 45, y0 - 2 * f - 5)]),  # triangle, vertex on a border
    ]


def _subpixel_parcels(geobox):
    """Polygons smaller than one pixel: inside a pixel, across a pixel edge, on a corner."""
    t = geobox.transform
    px, py = t.c + 20 * t.a, t.f + 20 * t.e  # corner of pixel (row 20, col 20)
    return [
        shapely.box(px + 2, py + t.e + 3, px + 6, py + t.e + 8),  # inside one pixel
        shapely.box(px - 2, py - 7, px + 3, py - 2),  # across a vertical pixel edge
        shapely.Polygon([(px - 2.5, py - 2), (px + 3, py + 2.5), (px + 1, py - 3)]),  # corner
        shapely.box(px + 5 * t.a + 1, py - 4, px + 5 * t.a + 1.5, py - 1),  # a sliver
    ]


# ---------------------------------------------------------------- the two computations

def _oracle_means(geoms, ndvi, geobox):
    """exactextract's coverage-weighted mean per (polygon, date)."""
    t, (h, w) = geobox.transform, geobox.shape
    gdf = _gdf(geoms)
    out = np.empty((len(geoms), len(ndvi)))
    for k, band in enumerate(ndvi):
        src = NumPyRasterSource(band, t.c, t.f + h * t.e, t.c + w * t.a, t.f,
                                srs_wkt=gdf.crs.to_wkt())
        df = exactextract.exact_extract(src, gdf, "mean", output="pandas")
        out[:, k] = df["mean"].to_numpy(float)
    return out


def _agri3s_means(geoms, cube):
    w = pixel_weights(_gdf(geoms), cube.odc.geobox, inward_buffer_m=0.0, rule="coverage")
    s = parcel_series(cube, w, stats=("ndvi_mean",), dilation_px=0, min_clear_weight=0.0)
    return s["ndvi_mean"].values.astype(np.float64)


def _assert_same_means(ours, oracle):
    both = np.isfinite(oracle)
    assert both.sum() > 0
    np.testing.assert_array_equal(np.isfinite(ours), both)  # same parcel-dates without value
    np.testing.assert_allclose(ours[both], oracle[both], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- means vs exactextract

@pytest.mark.parametrize("res", [(10.0, 10.0), (10.0, 9.995)], ids=["square", "non-square"])
def test_means_equal_exactextract_random_and_window_edge_polygons(res):
    rng = np.random.default_rng(7)
    gb = _geobox(res=res)
    red, nir, scl = _bands(rng, gb.shape)
    geoms = _buffered(_random_parcels(rng, gb) + _window_edge_parcels(gb), gb)
    ours = _agri3s_means(geoms, _cube(red, nir, scl, gb))
    _assert_same_means(ours, _oracle_means(geoms, _masked_ndvi(red, nir, scl), gb))


def test_means_equal_exactextract_subpixel_polygons():
    rng = np.random.default_rng(3)
    gb = _geobox()
    red, nir, scl = _bands(rng, gb.shape)
    geoms = _buffered(_subpixel_parcels(gb), gb)  # nothing survives −5 m: measured raw
    assert all(shapely.area(geoms) < 100)
    ours = _agri3s_means(geoms, _cube(red, nir, scl, gb))
    _assert_same_means(ours, _oracle_means(geoms, _masked_ndvi(red, nir, scl), gb))


def test_means_equal_exactextract_through_local_source(tmp_path):
    """The whole path from GeoTIFF DNs (SCL at 20 m) through LocalSource in 16 px windows."""
    rng = np.random.default_rng(11)
    h, w = 64, 96
    t10 = Affine(10, 0, X0, 0, -10, Y0)
    red, nir, _ = _bands(rng, (h, w), n_dates=2)
    scl20 = np.full((2, h // 2, w // 2), 4, np.uint8)
    scl20[1, 5:14, 8:30] = 9
    scl20[1, 14:16, 8:30] = 3
    times = ["2024-05-01", "2024-05-06"]
    for k, day in enumerate(times):
        for band, refl in (("B04", red[k]), ("B08", nir[k])):
            dn = np.where(np.isnan(refl), 0, np.round(refl * 10000 + 1000)).astype(np.uint16)
            write_band(tmp_path / day / f"{band}.tif", dn, t10, CRS)
        write_band(tmp_path / day / "SCL.tif", scl20[k], t10 @ Affine.scale(2), CRS)
    gb = GeoBox((h, w), t10, CRS)
    geoms = _buffered(_random_parcels(rng, gb, n=15) + _window_edge_parcels(gb), gb)
    geoms = shapely.intersection(geoms, shapely.box(X0 + 1, Y0 - h * 10 + 1,
                                                    X0 + w * 10 - 1, Y0 - 1))
    geoms = geoms[~shapely.is_empty(geoms)]
    cube = LocalSource(tmp_path, chunk_px=CHUNK).load(
        (X0, Y0 - h * 10, X0 + w * 10, Y0), CRS, dt.date(2024, 5, 1), dt.date(2024, 5, 6),
        bands=("B04", "B08", "SCL"))
    assert cube.odc.geobox == gb  # the parcels span the archive: the cube is its whole grid
    # what exactextract sees: DN → reflectance by hand, SCL repeated onto the 10 m grid
    dn_red = np.where(np.isnan(red), 0, np.round(red * 10000 + 1000))
    dn_nir = np.round(nir * 10000 + 1000)
    refl_red = np.where(dn_red == 0, np.nan, (dn_red - 1000) / 10000)
    refl_nir = (dn_nir - 1000) / 10000
    scl10 = scl20.repeat(2, axis=1).repeat(2, axis=2)
    ours = _agri3s_means(geoms, cube)
    _assert_same_means(ours, _oracle_means(geoms, _masked_ndvi(refl_red, refl_nir, scl10), gb))


# ---------------------------------------------------------------- coverage fractions

@pytest.mark.parametrize("res", [(10.0, 10.0), (10.0, 9.995), (20.0, 20.0)])
def test_coverage_table_equals_exactextract_coverage(res):
    rng = np.random.default_rng(5)
    gb = _geobox(res=res)
    geoms = _random_parcels(rng, gb, n=12) + _window_edge_parcels(gb) + _subpixel_parcels(gb)
    gi, pix, frac = coverage_table(np.asarray(geoms, dtype=object), gb)
    t, (h, w) = gb.transform, gb.shape
    gdf = _gdf(geoms)
    ones = NumPyRasterSource(np.ones((h, w)), t.c, t.f + h * t.e, t.c + w * t.a, t.f,
                             srs_wkt=gdf.crs.to_wkt())
    df = exactextract.exact_extract(ones, gdf, ["cell_id", "coverage"], output="pandas")
    for k in range(len(geoms)):
        ours = dict(zip(pix[gi == k].tolist(), frac[gi == k].tolist()))
        theirs = dict(zip(np.asarray(df["cell_id"][k], np.int64).tolist(),
                          np.asarray(df["coverage"][k], float).tolist()))
        theirs = {c: f for c, f in theirs.items() if f > 1e-6}
        ours = {c: f for c, f in ours.items() if f > 1e-6}
        assert ours.keys() == theirs.keys(), f"polygon {k}: different pixels"
        np.testing.assert_allclose([ours[c] for c in theirs], list(theirs.values()),
                                   atol=1e-6, err_msg=f"polygon {k}")


# ---------------------------------------------------------------- brute force, quantiles

def _brute_weights(geom, geobox):
    """Pixel-by-pixel shapely intersection areas over the pixel area."""
    t, (h, w) = geobox.transform, geobox.shape
    out = {}
    x0, x1, y0, y1 = geom.bounds[0], geom.bounds[2], geom.bounds[1], geom.bounds[3]
    c0, c1 = max(int((x0 - t.c) // t.a), 0), min(int((x1 - t.c) // t.a) + 1, w)
    r0, r1 = max(int((y1 - t.f) // t.e), 0), min(int((y0 - t.f) // t.e) + 1, h)
    for r in range(r0, r1):
        for c in range(c0, c1):
            cell = shapely.box(t.c + c * t.a, t.f + (r + 1) * t.e, t.c + (c + 1) * t.a,
                               t.f + r * t.e)
            a = geom.intersection(cell).area / abs(t.a * t.e)
            if a > 0:
                out[r * w + c] = a
    return out


def test_means_and_quantiles_equal_brute_force_loop():
    """A per-pixel Python loop: shapely intersection weights, clear pixels only, the weighted
    mean, and the weighted inverted-CDF quantiles written out longhand."""
    rng = np.random.default_rng(21)
    gb = _geobox(shape=(48, 48), res=(10.0, 9.995))
    red, nir, scl = _bands(rng, gb.shape, n_dates=2)
    geoms = _buffered(_random_parcels(rng, gb, n=10) + _window_edge_parcels(gb)[:2], gb)
    ndvi = _masked_ndvi(red, nir, scl)
    w = pixel_weights(_gdf(geoms), gb, inward_buffer_m=0.0, rule="coverage")
    s = parcel_series(_cube(red, nir, scl, gb), w, dilation_px=0, min_clear_weight=0.0)
    for i, g in enumerate(geoms):
        weights = _brute_weights(g, gb)
        for k in range(len(ndvi)):
            vals = [(ndvi[k].ravel()[p], wt) for p, wt in weights.items()
                    if np.isfinite(ndvi[k].ravel()[p])]
            if not vals:
                assert np.isnan(s["ndvi_mean"].values[i, k])
                continue
            v, wt = (np.array(x) for x in zip(*vals))
            assert s["ndvi_mean"].values[i, k] == pytest.approx((v * wt).sum() / wt.sum(),
                                                                abs=1e-5)
            order = np.argsort(v, kind="stable")
            cum = np.cumsum(wt[order])
            for q, name in ((0.25, "ndvi_p25"), (0.5, "ndvi_p50"), (0.75, "ndvi_p75")):
                expected = v[order][np.flatnonzero(cum >= q * cum[-1] - 1e-9)[0]]
                assert s[name].values[i, k] == pytest.approx(expected, abs=1e-6), (i, k, q)


def test_quantile_definitions_on_whole_pixels():
    """On parcels made of whole pixels (all weights 1): ours are numpy's ``inverted_cdf``,
    exactextract's are numpy's ``linear``; they differ by less than one order-statistic gap."""
    rng = np.random.default_rng(9)
    gb = _geobox(shape=(32, 32))
    red, nir, scl = _bands(rng, gb.shape, n_dates=1)
    scl[:] = 4
    t = gb.transform
    boxes = [shapely.box(t.c + c0 * 10, t.f - r1 * 10, t.c + c1 * 10, t.f - r0 * 10)
             for r0, r1, c0, c1 in ((2, 5, 3, 7), (10, 13, 14, 15), (20, 27, 1, 9))]
    w = pixel_weights(_gdf(boxes), gb, inward_buffer_m=0.0, rule="coverage")
    s = parcel_series(_cube(red, nir, scl, gb), w, dilation_px=0)
    ndvi = _masked_ndvi(red, nir, scl)[0]
    gdf = _gdf(boxes)
    src = NumPyRasterSource(ndvi, t.c, t.f + 32 * t.e, t.c + 32 * t.a, t.f,
                            srs_wkt=gdf.crs.to_wkt())
    ops = ["quantile(q=0.25)", "quantile(q=0.5)", "quantile(q=0.75)"]
    ee = exactextract.exact_extract(src, gdf, ops, output="pandas")
    for i, (r0, r1, c0, c1) in enumerate(((2, 5, 3, 7), (10, 13, 14, 15), (20, 27, 1, 9))):
        v = ndvi[r0:r1, c0:c1].ravel()
        v = v[np.isfinite(v)]
        for q, name, col in ((0.25, "ndvi_p25", "quantile_25"), (0.5, "ndvi_p50", "quantile_50"),
                             (0.75, "ndvi_p75", "quantile_75")):
            ours, theirs = float(s[name].values[i, 0]), float(ee[col][i])
            assert ours == pytest.approx(np.quantile(v, q, method="inverted_cdf"), abs=1e-6)
            assert theirs == pytest.approx(np.quantile(v, q, method="linear"), abs=1e-6)
            gap = np.diff(np.sort(v)).max()
            assert abs(ours - theirs) <= gap + 1e-9
