"""CRS handling checked against published reference pairs and a geodesic reference (pyproj.Geod)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS, Geod

from agri_3s.crs import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    check_coordinates,
    degree_problem,
    equal_area_m2,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    parcel_utm_epsg,
    parse_crs,
    to_wgs84_from,
    utm_crs_for,
    utm_epsg,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from agri_3s.errors import InputError

GEOD = Geod(ellps="WGS84")

# (wgs_lat, wgs_lng, gcj_lat, gcj_lng) — test file of github.com/googollee/eviltransform
# (python/test.py): Shanghai, Shenzhen, Beijing.
EVILTRANSFORM = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]
# github.com/wandergis/coordtransform test/app.js, input (116.404, 39.915):
CT_WGS84_TO_GCJ02 = (116.41024449916938, 39.91640428150164)
CT_GCJ02_TO_BD09 = (116.41036949371029, 39.92133699351021)
CT_BD09_TO_GCJ02 = (116.39762729119315, 39.90865673957631)


def _metres(lon1, lat1, lon2, lat2) -> float:
    return abs(GEOD.inv(lon1, lat1, lon2, lat2)[2])


@pytest.mark.parametrize("wlat, wlng, glat, glng", EVILTRANSFORM)
def test_gcj02_forward_matches_published_pairs(wlat, wlng, glat, glng):
    lon, lat = wgs84_to_gcj02(wlng, wlat)
    assert float(lon) == pytest.approx(glng, abs=1e-9)
    assert float(lat) == pytest.approx(glat, abs=1e-9)


@pytest.mark.parametrize("wlat, wlng, glat, glng", EVILTRANSFORM)
def test_gcj02_inverse_within_half_a_metre(wlat, wlng, glat, glng):
    lon, lat = gcj02_to_wgs84(glng, glat)
    assert _metres(float(lon), float(lat), wlng, wlat) < 0.5
    # the iteration is far better than required: ~1e-7° asked, ~1 mm reached
    assert _metres(float(lon), float(lat), wlng, wlat) < 0.01


def test_coordtransform_reference_pairs():
    assert np.allclose(wgs84_to_gcj02(116.404, 39.915), CT_WGS84_TO_GCJ02, atol=1e-9)
    assert np.allclose(gcj02_to_bd09(116.404, 39.915), CT_GCJ02_TO_BD09, atol=1e-9)
    assert np.allclose(bd09_to_gcj02(116.404, 39.915), CT_BD09_TO_GCJ02, atol=1e-9)


def test_bd09_to_wgs84_inverts_the_published_forward():
    # BD-09 (116.404, 39.915) → GCJ-02 is the published pair above; its WGS84 point must map
    # forward onto that GCJ-02 point again (the forward algorithm is the published one)
    lon, lat = bd09_to_wgs84(116.404, 39.915)
    assert np.allclose(wgs84_to_gcj02(lon, lat), CT_BD09_TO_GCJ02, atol=1e-8)
    assert np.allclose(wgs84_to_bd09(lon, lat), (116.404, 39.915), atol=1e-7)


@pytest.mark.parametrize("lon, lat", [(4.35, 50.85), (-122.42, 37.77), (151.2, -33.9),
                                      (140.0, 36.0)])
def test_outside_china_unchanged(lon, lat):
    assert np.allclose(wgs84_to_gcj02(lon, lat), (lon, lat), atol=0)
    assert np.allclose(gcj02_to_wgs84(lon, lat), (lon, lat), atol=0)


def test_geometry_conversion_vectorised_and_z_kept():
    w = EVILTRANSFORM[0]
    g = shapely.Polygon([(w[3], w[2], 5.0), (w[3] + 0.001, w[2], 5.0), (w[3], w[2] + 0.001, 5.0)])
    out = to_wgs84_from(g, "gcj02")
    first = shapely.get_coordinates(out, include_z=True)[0]
    assert _metres(first[0], first[1], w[1], w[0]) < 0.5 and first[2] == 5.0


def test_parse_crs():
    assert parse_crs("GCJ-02").datum_shift == "gcj02" and parse_crs("gcj02").crs.to_epsg() == 4326
    assert parse_crs("bd09").datum_shift == "bd09" and parse_crs("bd09").label == "BD-09"
    assert parse_crs("EPSG:4490").crs.to_epsg() == 4490 and parse_crs("4490").crs.to_epsg() == 4490
    assert parse_crs("cgcs2000").crs.to_epsg() == 4490
    with pytest.raises(InputError, match="gcj02"):
        parse_crs("not-a-crs")


def test_utm_zones_hand_computed():
    # zone = floor((lon + 180) / 6) + 1: 116.3 → 50, 120.0 → 51 (zone 51 starts at 120°E)
    assert utm_epsg([116.3, 119.999, 120.0, -3.0, 180.0], [37.4, 30, 30, 40, 10]).tolist() == \
        [32650, 32650, 32651, 32630, 32601]
    assert utm_crs_for(117.0, -5.0) == CRS.from_epsg(32750)


def test_parcel_across_zone_boundary_gets_the_zone_of_most_of_it():
    west = shapely.box(119.98, 35.0, 120.005, 35.01)  # centroid 119.9925 → zone 50
    east = shapely.box(119.995, 35.0, 120.03, 35.01)  # centroid 120.0125 → zone 51
    gdf = gpd.GeoDataFrame(geometry=[west, east, None], crs=4326)
    assert parcel_utm_epsg(gdf).tolist() == [32650, 32651, 0]


def _geodesic_m2(geom) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0])


@pytest.mark.parametrize("geom", [
    shapely.Polygon([(116.0, 37.0), (116.003, 37.0002), (116.0028, 37.0025), (115.9995, 37.002)]),
    shapely.box(119.99, 35.0, 120.01, 35.01),            # across the UTM zone 50/51 boundary
    shapely.box(126.5, 47.5, 126.6, 47.58),               # a big Heilongjiang state-farm block
    shapely.box(109.0, 18.3, 109.001, 18.3008).difference(shapely.box(109.0003, 18.3002,
                                                                      109.0006, 18.3005)),
])
def test_equal_area_matches_geodesic_area(geom):
    measured = equal_area_m2(gpd.GeoDataFrame(geometry=[geom], crs=4326))[0]
    assert measured == pytest.approx(_geodesic_m2(geom), rel=1e-3)
    assert measured == pytest.approx(_geodesic_m2(geom), rel=1e-5)  # in fact much closer


def test_equal_area_in_cgcs2000_and_projected_input():
    geom = shapely.box(116.0, 37.0, 116.01, 37.008)
    ref = _geodesic_m2(geom)
    in_4490 = gpd.GeoDataFrame(geometry=[geom], crs=4490)
    assert equal_area_m2(in_4490)[0] == pytest.approx(ref, rel=1e-5)
    # CGCS2000 3-degree Gauss-Krüger zone 39 (CM 117°E), with the zone prefix: EPSG:4527
    gk = gpd.GeoDataFrame(geometry=[geom], crs=4490).to_crs(4527)
    assert gk.geometry[0].bounds[0] > 39_000_000
    assert equal_area_m2(gk)[0] == pytest.approx(ref, rel=1e-5)


def test_degree_checks():
    assert degree_problem(shapely.Point(116.4, 39.9)) is None
    assert degree_problem(shapely.Point(39.9, 116.4)) == "swapped"
    assert degree_problem(shapely.Point(39_512_345.6, 4_012_345.6)) == "not_degrees"
    metres = gpd.GeoDataFrame(geometry=[shapely.box(39_500_000, 4_100_000, 39_500_100,
                                                    4_100_100)], crs=4326)
    with pytest.raises(InputError, match="projected metres") as e:
        check_coordinates(metres, "f.shp")
    assert "EPSG:4527" in str(e.value) or "4513" in str(e.value)
    degrees = gpd.GeoDataFrame(geometry=[shapely.box(116, 37, 116.01, 37.01)], crs=32650)
    with pytest.raises(InputError, match="look like degrees"):
        check_coordinates(degrees, "f.shp")
