"""Parcel statistics against a brute-force per-pixel computation (independent of the engine)."""

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox

from agri_3s.sources.base import cube_from_arrays
from agri_3s.timeseries.weights import (
    _coverage,
    _inward_rings,
    coverage_fractions,
    coverage_table,
    pixel_weights,
)
from agri_3s.timeseries.zonal import parcel_series, weighted_quantiles


def _grid(res=(10.0, 10.0), shape=(30, 40)):
    return GeoBox(shape, Affine(res[0], 0, 500000, 0, -res[1], 4000000), "EPSG:32650")


def _brute_fractions(geom, geobox):
    """Pixel-by-pixel shapely intersection: the slow, obvious way."""
    t, (h, w) = geobox.transform, geobox.shape
    out = np.zeros(h * w)
    for r in range(h):
        for c in range(w):
            px = shapely.box(t.c + c * t.a, t.f + (r + 1) * t.e, t.c + (c + 1) * t.a, t.f + r * t.e)
            out[r * w + c] = geom.intersection(px).area / abs(t.a * t.e)
    return out


def _random_quad(rng, cx, cy, size):
    ang = np.sort(rng.uniform(0, 2 * np.pi, 4))
    rad = rng.uniform(0.5, 1.0, 4) * size
    return shapely.Polygon(np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))


@pytest.mark.parametrize("res", [(10.0, 10.0), (9.995, 10.005), (20.0, 20.0)])
def test_coverage_fractions_equal_brute_force(res):
    rng = np.random.default_rng(1)
    gb = _grid(res)
    geoms = [_random_quad(rng, 500000 + rng.uniform(40, 360), 4000000 - rng.uniform(40, 260),
                          rng.uniform(6, 90)) for _ in range(6)]
    geoms.append(shapely.box(499990, 3999950, 500025, 3999990))  # hangs off the grid's west edge
    for g in geoms:
        idx, frac = coverage_fractions(g, gb)
        dense = np.zeros(gb.shape[0] * gb.shape[1])
        dense[idx] = frac
        np.testing.assert_allclose(dense, _brute_fractions(g, gb), atol=1e-9)


@pytest.mark.parametrize("south_up", [False, True])
def test_coverage_fractions_whatever_the_ring_orientation(south_up):
    """Rings drawn either way round (exterior clockwise, holes anticlockwise: valid, and common
    in shapefiles vs GeoJSON), holes, several parts; on north-up and south-up grids."""
    gb = _grid()
    if south_up:
        t = gb.transform
        gb = GeoBox(gb.shape, Affine(t.a, 0, t.c, 0, -t.e, t.f + gb.shape[0] * t.e), gb.crs)
    t = gb.transform
    x0, y0 = t.c, min(t.f, t.f + gb.shape[0] * t.e)
    outer = shapely.Polygon([(x0 + 33, y0 + 41), (x0 + 251, y0 + 63), (x0 + 222, y0 + 270),
                             (x0 + 48, y0 + 236)])
    holed = outer.difference(shapely.box(x0 + 97, y0 + 102, x0 + 171, y0 + 188))
    two = shapely.MultiPolygon([shapely.box(x0 + 300, y0 + 20, x0 + 347, y0 + 74),
                                shapely.box(x0 + 303, y0 + 150, x0 + 331, y0 + 171)])
    for g in (holed, two):
        for drawn in (shapely.orient_polygons(g), shapely.orient_polygons(g, exterior_cw=True)):
            idx, frac = coverage_fractions(drawn, gb)
            dense = np.zeros(gb.shape[0] * gb.shape[1])
            dense[idx] = frac
            np.testing.assert_allclose(dense, _brute_fractions(g, gb), atol=1e-9)


def test_weights_sum_to_buffered_area_in_pixels():
    gb = _grid()
    g = shapely.Polygon([(500013, 3999987), (500143, 3999951), (500120, 3999803), (500031, 3999830)])
    w = pixel_weights(gpd.GeoDataFrame({"parcel_id": ["a"]}, geometry=[g], crs=32650), gb,
                      rule="coverage")
    assert w.weight_sum[0] == pytest.approx(g.buffer(-5).area / 100, rel=1e-9)
    assert w.pixel_rule[0] == "buffered"


def test_inward_buffer_weights_equal_geos_buffer_weights():
    """The weights' own shrinking of convex parcels against GEOS's buffer, pixel by pixel, for
    every kind of parcel: convex of 3-7 corners both ways round, concave, holed, multi-part,
    collinear and repeated corners, slivers the buffer eats an edge of or erases, empty."""
    rng = np.random.default_rng(7)
    gb = _grid(shape=(60, 80))
    x0, y0 = 500000, 4000000 - 600

    def convex(k, cx, cy, size):
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        return shapely.Polygon(np.column_stack([cx + size * np.cos(ang), cy + size * np.sin(ang)]))

    geoms = [convex(k, x0 + rng.uniform(60, 740), y0 + rng.uniform(60, 540), rng.uniform(8, 60))
             for k in (3, 4, 4, 5, 6, 7) for _ in range(4)]
    geoms += [shapely.orient_polygons(g, exterior_cw=True) for g in geoms[:6]]
    geoms += [
        shapely.Polygon([(x0 + 20, y0 + 20), (x0 + 120, y0 + 20), (x0 + 120, y0 + 90),
                         (x0 + 70, y0 + 40), (x0 + 20, y0 + 90)]),               # concave
        shapely.box(x0 + 200, y0 + 20, x0 + 330, y0 + 140).difference(
            shapely.box(x0 + 240, y0 + 60, x0 + 280, y0 + 100)),                # holed
        shapely.MultiPolygon([shapely.box(x0 + 400, y0 + 20, x0 + 460, y0 + 70),
                              shapely.box(x0 + 480, y0 + 30, x0 + 520, y0 + 90)]),
        shapely.Polygon([(x0 + 20, y0 + 300), (x0 + 80, y0 + 300), (x0 + 140, y0 + 300),
                         (x0 + 140, y0 + 360), (x0 + 20, y0 + 360)]),           # collinear
        shapely.Polygon([(x0 + 200, y0 + 300), (x0 + 260, y0 + 300), (x0 + 260, y0 + 300),
                         (x0 + 260, y0 + 350), (x0 + 200, y0 + 350)]),          # repeated
        shapely.Polygon([(x0 + 300, y0 + 300), (x0 + 420, y0 + 300), (x0 + 420, y0 + 311),
                         (x0 + 361, y0 + 312), (x0 + 300, y0 + 311)]),          # loses an edge
        shapely.Polygon([(x0 + 500, y0 + 300), (x0 + 600, y0 + 300), (x0 + 600, y0 + 308),
                         (x0 + 500, y0 + 308)]),                                # erased
        shapely.Polygon(), None,
    ]
    geoms = np.array(geoms, dtype=object)
    mine = _coverage(*_inward_rings(geoms, 5.0), gb)
    geos = coverage_table(shapely.buffer(geoms, -5.0), gb)
    n_pix = gb.shape[0] * gb.shape[1]
    for i, g in enumerate(geoms):
        dense = [np.bincount(c[rows == i], f[rows == i], n_pix) for rows, c, f in (mine, geos)]
        np.testing.assert_allclose(dense[0], dense[1], atol=1e-9, err_msg=f"parcel {i}: {g}")
    # and one convex parcel pixel by pixel against shapely's intersection
    dense = np.bincount(mine[1][mine[0] == 3], mine[2][mine[0] == 3], n_pix)
    np.testing.assert_allclose(dense, _brute_fractions(geoms[3].buffer(-5.0), gb), atol=1e-9)


@pytest.mark.parametrize("rule", ["coverage", "full_first", "centre"])
def test_weights_do_not_depend_on_how_parcels_are_chunked(rule, monkeypatch):
    """Weights run in thread chunks of parcels; chunks of 3 must give the one-chunk matrix
    (rows in parcel order, per-parcel flags) for ordinary, tiny, empty and off-grid parcels."""
    import dask

    from agri_3s.timeseries import weights as weights_module

    rng = np.random.default_rng(5)
    geoms = [_random_quad(rng, 500000 + rng.uniform(40, 360), 4000000 - rng.uniform(40, 260),
                          rng.uniform(6, 60)) for _ in range(11)]
    geoms += [shapely.box(500203, 3999795, 500218, 3999781), shapely.Polygon(),
              shapely.box(400000, 3000000, 400100, 3000100)]
    gdf = gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(len(geoms))]},
                           geometry=geoms, crs=32650)
    with dask.config.set(num_workers=1):
        one = pixel_weights(gdf, _grid(), rule=rule)
    monkeypatch.setattr(weights_module, "PARCELS_PER_CHUNK", 3)
    with dask.config.set(num_workers=2):
        chunked = pixel_weights(gdf, _grid(), rule=rule)
    # (the column suffix sums run over a whole chunk: the last bits may differ)
    np.testing.assert_allclose(chunked.matrix.toarray(), one.matrix.toarray(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.diff(one.matrix.indptr), np.diff(chunked.matrix.indptr))
    np.testing.assert_array_equal(one.full_pixels, chunked.full_pixels)
    np.testing.assert_array_equal(one.pixel_rule, chunked.pixel_rule)
    assert set(one.pixel_rule[-3:]) >= {"none"} and one.matrix[11].nnz > 0


def test_tiny_parcel_falls_back_to_unbuffered_and_is_flagged():
    gb = _grid()
    tiny = shapely.box(500203, 3999795, 500218, 3999781)  # 15 m × 14 m: nothing left after −5 m
    w = pixel_weights(gpd.GeoDataFrame({"parcel_id": ["t"]}, geometry=[tiny], crs=32650), gb)
    assert w.pixel_rule[0] == "unbuffered"
    assert w.weight_sum[0] == pytest.approx(tiny.area / 100)
    assert w.small_parcel[0]


def test_parcels_in_another_crs_are_reprojected():
    gb = _grid()
    g = shapely.box(500050, 3999850, 500150, 3999950)
    gdf = gpd.GeoDataFrame({"parcel_id": ["a"]}, geometry=[g], crs=32650).to_crs(4326)
    w = pixel_weights(gdf, gb, rule="coverage")
    assert w.weight_sum[0] == pytest.approx(90 * 90 / 100, rel=1e-4)


def _random_bands(rng, T, shape=(30, 40)):
    """Random red / nir / green reflectances and an all-clear SCL for T dates."""
    red = rng.uniform(0.02, 0.2, (T, *shape)).astype("f4")
    nir = rng.uniform(0.2, 0.5, (T, *shape)).astype("f4")
    green = rng.uniform(0.02, 0.3, (T, *shape)).astype("f4")
    return red, nir, green, np.full((T, *shape), 4, np.uint8)


def test_series_equal_brute_force_mean_with_clouds():
    rng = np.random.default_rng(7)
    gb = _grid()
    T = 4
    red, nir, green, scl = _random_bands(rng, T)
    scl[1, :12, :12] = 9
    scl[2, 5:9, 3:30] = 3
    red[3, 20:, :] = np.nan  # no data
    times = np.array(["2025-01-01", "2025-01-06", "2025-01-11", "2025-01-16"], "datetime64[ns]")
    cube = cube_from_arrays({"red": red, "nir": nir, "green": green, "scl": scl}, times, gb)
    geoms = [_random_quad(rng, 500000 + rng.uniform(60, 340), 4000000 - rng.uniform(60, 240),
                          rng.uniform(20, 60)) for _ in range(8)]
    gdf = gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(8)]}, geometry=geoms, crs=32650)
    s = parcel_series(cube, pixel_weights(gdf, gb, rule="coverage"), dilation_px=0)
    for i, g in enumerate(geoms):
        frac = _brute_fractions(g.buffer(-5), gb)
        if frac.sum() < 1.0:  # the documented fallback: less than a pixel left → unbuffered
            frac = _brute_fractions(g, gb)
        for t in range(T):
            ndvi = ((nir[t] - red[t]) / (nir[t] + red[t])).ravel()
            clear = (scl[t].ravel() == 4) & np.isfinite(ndvi)
            wc = frac * clear
            expect_mean = np.sum(wc * np.nan_to_num(ndvi)) / wc.sum() if wc.sum() >= 0.5 else np.nan
            np.testing.assert_allclose(s["ndvi_mean"].values[i, t], expect_mean, rtol=1e-5)
            assert s["clear_fraction"].values[i, t] == pytest.approx(wc.sum() / frac.sum(), rel=1e-6)
            water = ((green[t] - nir[t]) / (green[t] + nir[t])).ravel() > 0
            if wc.sum() >= 0.5:
                assert s["water_fraction"].values[i, t] == pytest.approx(
                    np.sum(wc * water) / wc.sum(), rel=1e-5)
                assert s["green_mean"].values[i, t] == pytest.approx(
                    np.sum(wc * green[t].ravel()) / wc.sum(), rel=1e-5)


def test_weighted_quantiles_match_numpy_inverted_cdf_for_equal_weights():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 5, 200)
    values = rng.normal(size=200)
    q = weighted_quantiles(groups, values, np.ones(200), 6)
    for g in range(5):
        expect = np.quantile(values[groups == g], [0.25, 0.5, 0.75], method="inverted_cdf")
        np.testing.assert_allclose(q[g], expect)
    assert np.isnan(q[5]).all()  # empty group


def test_weighted_quantile_respects_weights():
    # value 1 carries 80 % of the weight, so the median is 1 and p25 is 1 too
    q = weighted_quantiles(np.zeros(2, int), np.array([0.0, 1.0]), np.array([0.2, 0.8]), 1)
    assert q[0].tolist() == [1.0, 1.0, 1.0]


def test_weighted_quantiles_of_small_and_large_groups_match_the_definition():
    """Groups of 1 to 300 values (insertion sort and merge sort), ties, random weights, left-out
    entries: each quantile is the smallest value whose cumulative weight reaches q of the
    group's kept weight, computed here group by group with numpy."""
    from agri_3s.timeseries.quantiles import grouped_quantiles

    rng = np.random.default_rng(5)
    sizes = np.r_[1, 2, 3, 47, 48, 49, 50, rng.integers(1, 300, 40)]
    group = np.repeat(np.arange(len(sizes)), sizes)
    values = rng.integers(0, 40, len(group)) / 40.0  # many ties
    weights = rng.uniform(0.01, 1.0, len(group))
    keep = rng.random(len(group)) > 0.2
    scrambled = rng.permutation(len(group))  # the groups' entries anywhere in the values
    indptr = np.r_[0, np.cumsum(sizes)]
    at, kept = np.empty_like(values), np.empty_like(keep)
    at[scrambled], kept[scrambled] = values, keep  # entry j of the groups is value scrambled[j]
    q = grouped_quantiles(indptr, scrambled, weights, at, kept)
    for g in range(len(sizes)):
        rows = np.arange(indptr[g], indptr[g + 1])
        rows = rows[keep[rows]]
        if not len(rows):
            assert np.isnan(q[g]).all()
            continue
        order = np.argsort(values[rows], kind="stable")
        v, cum = values[rows][order], np.cumsum(weights[rows][order])
        for k, level in enumerate((0.25, 0.5, 0.75)):
            assert q[g, k] == v[np.flatnonzero(cum >= level * cum[-1] - 1e-12)[0]], (g, k)
    loose = weighted_quantiles(group, values, weights, len(sizes) + 1)
    whole = grouped_quantiles(indptr, np.arange(len(group)), weights, values,
                              np.ones(len(group), bool))
    np.testing.assert_array_equal(loose[:-1], whole)
    assert np.isnan(loose[-1]).all()


def test_results_do_not_depend_on_the_processing_windows():
    """Parcels crossing window borders: sums combine, quantiles pool their pixels, and the
    cloud dilation sees across borders — so 7-px windows give the one-window answer."""
    import dask.array as da

    rng = np.random.default_rng(11)
    gb = _grid()
    T = 3
    red, nir, green, scl = _random_bands(rng, T)
    scl[0, 6:8, 6:8] = 9  # a cloud right at a 7-px window corner
    scl[2, 13, 20] = 3
    times = np.array(["2025-01-01", "2025-01-06", "2025-01-11"], "datetime64[ns]")
    geoms = [_random_quad(rng, 500000 + rng.uniform(60, 340), 4000000 - rng.uniform(60, 240),
                          rng.uniform(20, 70)) for _ in range(10)]
    gdf = gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(10)]}, geometry=geoms, crs=32650)
    w = pixel_weights(gdf, gb)
    whole = parcel_series(cube_from_arrays({"red": red, "nir": nir, "green": green, "scl": scl},
                                           times, gb), w)
    small = {k: da.from_array(v, chunks=(1, 7, 7)) for k, v in
             {"red": red, "nir": nir, "green": green, "scl": scl}.items()}
    windowed = parcel_series(cube_from_arrays(small, times, gb), w, dates_per_batch=1)
    for var in whole.data_vars:
        np.testing.assert_allclose(windowed[var].values, whole[var].values, rtol=1e-5, atol=1e-6,
                                   err_msg=var)
    assert np.isfinite(whole["ndvi_p50"].values).sum() > 20


def test_windows_are_planned_once_for_all_batches_of_dates(monkeypatch):
    """A window's plan (its entries, sum matrix) is made once, not once per batch of dates."""
    import dask.array as da

    from agri_3s.timeseries import zonal

    planned = []
    real = zonal._window_plan
    monkeypatch.setattr(zonal, "_window_plan", lambda split, k: planned.append(k) or real(split, k))
    rng = np.random.default_rng(3)
    gb = _grid()
    red, nir, green, scl = _random_bands(rng, 5)
    times = np.array([f"2025-01-0{d}" for d in range(1, 6)], "datetime64[ns]")
    geoms = [_random_quad(rng, 500000 + rng.uniform(60, 340), 4000000 - rng.uniform(60, 240),
                          rng.uniform(20, 70)) for _ in range(8)]
    gdf = gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(8)]}, geometry=geoms, crs=32650)
    w = pixel_weights(gdf, gb)
    bands = {k: da.from_array(v, chunks=(1, 16, 16)) for k, v in
             {"red": red, "nir": nir, "green": green, "scl": scl}.items()}
    cube = cube_from_arrays(bands, times, gb)
    at_once = parcel_series(cube, w)
    n_windows = len(planned)
    planned.clear()
    in_batches = parcel_series(cube, w, dates_per_batch=2)  # 3 batches
    assert sorted(planned) == sorted(set(planned)) and len(planned) == n_windows > 1
    for var in at_once.data_vars:
        np.testing.assert_array_equal(in_batches[var].values, at_once[var].values, err_msg=var)


def test_statistics_subset_and_unknown_names():
    gb = _grid()
    cube = cube_from_arrays({"red": np.full((1, 30, 40), 0.1, "f4"),
                             "nir": np.full((1, 30, 40), 0.3, "f4"),
                             "scl": np.full((1, 30, 40), 4, np.uint8)},
                            np.array(["2025-01-01"], "datetime64[ns]"), gb)
    gdf = gpd.GeoDataFrame({"parcel_id": ["a"]}, geometry=[shapely.box(500050, 3999850,
                                                                        500150, 3999950)], crs=32650)
    s = parcel_series(cube, pixel_weights(gdf, gb), stats=("ndvi_mean",))
    assert set(s.data_vars) == {"ndvi_mean", "clear_fraction", "n_pixels"}
    assert s["ndvi_mean"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown"):
        parcel_series(cube, pixel_weights(gdf, gb), stats=("ndvi_max",))



def test_full_first_uses_whole_pixels_of_the_parcel_else_buffered_coverage():
    gb = _grid()
    big = shapely.Polygon([(500013, 3999987), (500143, 3999951), (500120, 3999803),
                           (500031, 3999830)])
    strip = shapely.box(500203, 3999795, 500215, 3999600)  # 12 m wide: no whole pixel
    gdf = gpd.GeoDataFrame({"parcel_id": ["big", "strip"]}, geometry=[big, strip], crs=32650)
    w = pixel_weights(gdf, gb)  # the default rule
    assert w.rule == "full_first"
    dense = w.matrix.toarray()
    raw = _brute_fractions(big, gb)
    np.testing.assert_array_equal(dense[0], (raw >= 1 - 1e-9).astype(float))
    assert w.pixel_rule[0] == "whole_pixels" and w.full_pixels[0] == int((raw >= 1 - 1e-9).sum())
    np.testing.assert_allclose(dense[1], _brute_fractions(strip.buffer(-5), gb), atol=1e-9)
    assert w.pixel_rule[1] == "buffered"
