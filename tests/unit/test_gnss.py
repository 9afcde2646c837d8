"""GNSS: vertex lists, walked GPX / NMEA tracks, geotagged photos. Tracks and JPEG EXIF are
written by the test itself (EXIF bytes packed by hand with struct, not by the reader's
library); expected values are hand-computed or published."""

from __future__ import annotations

import itertools
import struct
from datetime import datetime, timedelta, timezone

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod, Transformer

from agri_3s.errors import InputError
from agri_3s.parcels.gnss import (
    nmea_checksum_ok,
    photos_to_parcels,
    polygon_from_track,
    polygon_from_vertices,
    read_photo_gps,
    read_track,
)

TO_LL = Transformer.from_crs(32650, 4326, always_xy=True)
X0, Y0 = 500_000.0, 4_400_000.0  # UTM 50N, on the zone's central meridian (117° E), ~39.7° N


def ll(x, y):
    lon, lat = TO_LL.transform(np.asarray(x, float) + X0, np.asarray(y, float) + Y0)
    return np.asarray(lon), np.asarray(lat)


# ------------------------------------------------------------------------------ vertex lists
def test_vertices_rectangle_area_and_closure():
    lon, lat = ll([0, 100, 100, 0], [0, 0, 50, 50])
    poly, rep = polygon_from_vertices(list(zip(lon, lat)))
    assert rep["n_vertices"] == 4 and not rep["was_closed"]
    assert rep["closure_gap_m"] == pytest.approx(50, abs=1e-3)
    assert rep["area_m2"] == pytest.approx(5000, rel=1e-6)
    assert rep["area_mu"] == pytest.approx(7.5, rel=1e-6)
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(poly)[0])
    assert geodesic == pytest.approx(5000, rel=1e-3)  # peer: pyproj geodesic area
    # closed list with a repeated vertex, as a DataFrame with Chinese column names
    df = pd.DataFrame({"经度": [*lon, lon[3], lon[0]], "纬度": [*lat, lat[3], lat[0]]})
    poly2, rep2 = polygon_from_vertices(df)
    assert rep2["was_closed"] and rep2["removed_repeats"] == 1 and rep2["n_vertices"] == 4
    assert poly2.equals(poly)


def test_vertices_bad_input_is_named():
    lon, lat = ll([0, 100, 0, 100], [0, 0, 50, 50])  # out of walking order: a bow tie
    with pytest.raises(InputError, match="walking order"):
        polygon_from_vertices(list(zip(lon, lat)))
    with pytest.raises(InputError, match="swapped"):
        polygon_from_vertices([(39.7, 117.0), (39.71, 117.0), (39.71, 117.01)])
    with pytest.raises(InputError, match="3 distinct"):
        polygon_from_vertices([(117.0, 39.7), (117.001, 39.7), (117.0, 39.7)])
    with pytest.raises(InputError, match="vertex 2"):
        polygon_from_vertices([(117.0, 39.7), ("abc", 39.7), (117.0, 39.71)])


def test_vertices_gcj02_published_value():
    # gcoord's published test pair: WGS84 (123, 45) ↔ GCJ-02 (123.00607541, 45.00197815)
    g = (123.00607541, 45.00197815)
    poly, _ = polygon_from_vertices([g, (g[0] + 0.001, g[1]), (g[0], g[1] + 0.001)], crs="gcj02")
    x, y = poly.exterior.coords[0]
    assert x == pytest.approx(123.0, abs=2e-6) and y == pytest.approx(45.0, abs=2e-6)


# ------------------------------------------------------------------------------ tracks
def _walk(noise=0.2, seed=0):
    """A 100 m × 60 m field walked anticlockwise at 2 m/s, one fix a second, ending 3 m short
    of the start."""
    rng = np.random.default_rng(seed)
    corners = np.array([[0, 0], [100, 0], [100, 60], [0, 60], [0, 3]], float)
    pts = [corners[0]]
    for a, b in itertools.pairwise(corners):
        n = int(np.hypot(*(b - a)) // 2)
        pts += [a + (b - a) * k / n for k in range(1, n + 1)]
    xy = np.array(pts) + rng.normal(0, noise, (len(pts), 2))
    return xy


def _fixes_with_problems():
    xy = _walk()
    rows = [{"x": x, "y": y, "fix": "3d", "hdop": 1.2} for x, y in xy]
    # 10 fixes standing still at the corner (100, 0): jitter
    k = 50
    rows[k + 1:k + 1] = [{"x": 100 + 0.05 * i, "y": 0.03 * i, "fix": "3d", "hdop": 1.2}
                         for i in range(10)]
    rows[20]["fix"], rows[60]["fix"], rows[90]["fix"] = "none", "none", "none"
    for i in (30, 31, 100, 140):
        rows[i]["hdop"] = 9.0
    rows[40]["y"] += 80.0          # multipath spikes: jump filter
    rows[120]["x"] -= 90.0
    rows[160]["x"] += 25.0         # 25 m in one second: speed filter (below the jump limit)
    return rows


def _gpx(rows, start=datetime(2025, 6, 1, 2, 0, tzinfo=timezone.utc)):
    lon, lat = ll([r["x"] for r in rows], [r["y"] for r in rows])
    pts = "\n".join(
        f'<trkpt lat="{la:.9f}" lon="{lo:.9f}"><ele>45.0</ele>'
        f'<time>{(start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}</time>'
        f'<fix>{r["fix"]}</fix><sat>9</sat><hdop>{r["hdop"]}</hdop></trkpt>'
        for i, (r, lo, la) in enumerate(zip(rows, lon, lat)))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="test" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><name>field 17</name><trkseg>\n'
            f"{pts}\n</trkseg></trk></gpx>")


def test_gpx_track_filters_each_problem(tmp_path):
    rows = _fixes_with_problems()
    path = tmp_path / "walk.gpx"
    path.write_text(_gpx(rows))
    poly, rep = polygon_from_track(path)
    d = rep["dropped"]
    assert (d["no_fix"], d["hdop"], d["jump"], d["speed"]) == (3, 4, 2, 1)
    assert d["jitter"] >= 9          # the 10 standing fixes (all but the first) and no others…
    assert d["jitter"] <= 10         # …unless the last walked fix before them was within 1 m
    assert rep["n_fixes_read"] == len(rows)
    assert rep["n_fixes_used"] + sum(d.values()) == rep["n_fixes_read"]
    assert rep["fix_types_used"] == {"3d": rep["n_fixes_used"]}
    assert rep["median_hdop"] == pytest.approx(1.2)
    assert rep["closure_gap_m"] == pytest.approx(3, abs=1.0)
    assert rep["area_m2"] == pytest.approx(6000, rel=0.02)
    assert rep["n_vertices"] < 40    # Douglas–Peucker leaves about the corners
    assert poly.is_valid and poly.geom_type == "Polygon"
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(poly)[0])
    assert geodesic == pytest.approx(rep["area_m2"], rel=1e-3)


def test_track_not_closed_is_refused(tmp_path):
    # stops 80 m short of the start
    rows = [{"x": x, "y": y, "fix": "3d", "hdop": 1.0} for x, y in _walk()][:-40]
    path = tmp_path / "half.gpx"
    path.write_text(_gpx(rows))
    with pytest.raises(InputError, match="not closed"):
        polygon_from_track(path)


def _nmea(body: str) -> str:
    value = 0
    for ch in body.encode():
        value ^= ch
    return f"${body}*{value:02X}"


def _ddmm(value: float, pos: str, neg: str, width: int) -> tuple[str, str]:
    deg = int(abs(value))
    minutes = (abs(value) - deg) * 60
    return f"{deg:0{width}d}{minutes:09.6f}", pos if value >= 0 else neg


def test_published_nmea_sentence():
    s = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
    assert nmea_checksum_ok(s) is True
    assert nmea_checksum_ok(s[:-2] + "48") is False
    assert nmea_checksum_ok("$GPGGA,123519") is None


def test_nmea_track(tmp_path):
    xy = _walk(seed=3)
    lon, lat = ll(xy[:, 0], xy[:, 1])
    lines = ["garbage line from the logger"]
    t0 = datetime(2025, 6, 1, 23, 59, 0)  # crosses midnight UTC
    for i, (lo, la) in enumerate(zip(lon, lat)):
        t = t0 + timedelta(seconds=i)
        hhmmss = t.strftime("%H%M%S") + ".00"
        lat_s, ns = _ddmm(la, "N", "S", 2)
        lon_s, ew = _ddmm(lo, "E", "W", 3)
        quality = 4 if i % 2 else 1
        if i == 15:
            quality = 0
        lines.append(_nmea(f"GNGGA,{hhmmss},{lat_s},{ns},{lon_s},{ew},{quality},12,0.8,50.1,M,"
                           "-9.1,M,,"))
        lines.append(_nmea(f"GNRMC,{hhmmss},A,{lat_s},{ns},{lon_s},{ew},3.9,90.0,"
                           f"{t.strftime('%d%m%y')},,,D"))
        lines.append(_nmea("GPGSV,3,1,12,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45"))
    lines[10] = lines[10][:-2] + "00"   # two corrupted sentences (a GGA and an RMC)
    lines[20] = lines[20].replace(",A,", ",V,", 1)  # changed after the checksum → bad
    path = tmp_path / "walk.nmea"
    path.write_text("\r\n".join(lines))
    fixes, info = read_track(path)
    assert info["bad_checksum"] == 2 and info["position_sentence"] == "GGA"
    assert info["not_nmea_lines"] == 1
    # the first fix: hand-decoded degrees-and-minutes
    assert fixes.lon[0] == pytest.approx(lon[0], abs=1e-8)
    assert fixes.lat[0] == pytest.approx(lat[0], abs=1e-8)
    assert fixes.time[0] == pd.Timestamp("2025-06-01T23:59:00Z")
    assert fixes.time.iloc[-1] == pd.Timestamp("2025-06-01T23:59:00Z") + pd.Timedelta(
        seconds=len(xy) - 1)
    _poly, rep = polygon_from_track(path)
    assert rep["dropped"]["no_fix"] == 1
    assert rep["dropped"]["speed"] == 0 and rep["dropped"]["jump"] == 0
    assert set(rep["fix_types_used"]) == {"gps", "rtk_fixed"}
    assert rep["median_hdop"] == pytest.approx(0.8)
    assert rep["area_m2"] == pytest.approx(6000, rel=0.02)


def test_not_a_track(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(InputError, match="neither GPX nor NMEA"):
        read_track(p)


# ------------------------------------------------------------------------------ photos
def _exif(lat: float, lon: float, when: str) -> bytes:
    """A big-endian TIFF/EXIF block with DateTimeOriginal and a GPS IFD, packed by hand."""
    def rational(v):
        d = int(v)
        m = int((v - d) * 60)
        s = round(((v - d) * 60 - m) * 60 * 10000)
        return struct.pack(">6I", d, 1, m, 1, s, 10000)

    def entry(tag, typ, count, value: bytes):
        return struct.pack(">HHI", tag, typ, count) + value.ljust(4, b"\0")

    ifd0_at, exif_at, date_at, gps_at = 8, 38, 56, 76
    lat_at, lon_at = gps_at + 2 + 4 * 12 + 4, gps_at + 2 + 4 * 12 + 4 + 24
    ifd0 = (struct.pack(">H", 2) + entry(0x8769, 4, 1, struct.pack(">I", exif_at))
            + entry(0x8825, 4, 1, struct.pack(">I", gps_at)) + struct.pack(">I", 0))
    exif = struct.pack(">H", 1) + entry(0x9003, 2, 20, struct.pack(">I", date_at)) + \
        struct.pack(">I", 0)
    date = when.encode() + b"\0"
    gps = (struct.pack(">H", 4)
           + entry(1, 2, 2, b"N" if lat >= 0 else b"S")
           + entry(2, 5, 3, struct.pack(">I", lat_at))
           + entry(3, 2, 2, b"E" if lon >= 0 else b"W")
           + entry(4, 5, 3, struct.pack(">I", lon_at)) + struct.pack(">I", 0))
    tiff = b"MM\x00\x2a" + struct.pack(">I", ifd0_at) + ifd0 + exif + date + gps
    assert len(tiff) == lat_at
    return b"Exif\x00\x00" + tiff + rational(abs(lat)) + rational(abs(lon))


def _jpeg(path, exif: bytes | None):
    from PIL import Image

    img = Image.new("RGB", (8, 8), (90, 140, 60))
    img.save(path, "JPEG", **({"exif": exif} if exif else {}))
    return path


def test_read_photo_gps_dms(tmp_path):
    # 39°54'31.5" N, 116°23'50.4" E
    p = _jpeg(tmp_path / "a.jpg", _exif(39 + 54 / 60 + 31.5 / 3600, 116 + 23 / 60 + 50.4 / 3600,
                                        "2025:06:01 10:20:30"))
    got = read_photo_gps(p)
    assert got["lat"] == pytest.approx(39.90875, abs=1e-7)
    assert got["lon"] == pytest.approx(116.397333, abs=1e-6)
    assert got["taken_at"] == pd.Timestamp("2025-06-01 10:20:30")
    assert got["problem"] is None


def test_photos_matched_to_parcels(tmp_path):
    parcels = gpd.GeoDataFrame(
        {"parcel_id": ["A", "B"]},
        geometry=[shapely.box(X0, Y0, X0 + 100, Y0 + 100),
                  shapely.box(X0 + 300, Y0, X0 + 400, Y0 + 100)], crs=32650).to_crs(4326)
    when = "2025:06:01 10:00:00"
    spots = {"in_a.jpg": (50, 50), "near_b.jpg": (450, 50), "far.jpg": (2000, 2000)}
    for name, (x, y) in spots.items():
        lo, la = ll(x, y)
        _jpeg(tmp_path / name, _exif(float(la), float(lo), when))
    _jpeg(tmp_path / "no_gps.jpg", None)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    out = photos_to_parcels(tmp_path, parcels).set_index("photo_id")
    assert len(out) == 5                                   # every photo is in the result
    assert out.loc["in_a.jpg", ["parcel_id", "match"]].tolist() == ["A", "inside"]
    assert out.loc["in_a.jpg", "distance_m"] == 0
    assert out.loc["near_b.jpg", ["parcel_id", "match"]].tolist() == ["B", "nearest"]
    assert out.loc["near_b.jpg", "distance_m"] == pytest.approx(50, abs=0.05)
    assert out.loc["far.jpg", "match"] == "none" and out.loc["far.jpg", "parcel_id"] is None
    assert out.loc["no_gps.jpg", "match"] == "no_gps"
    assert "no GPS" in out.loc["no_gps.jpg", "problem"]
    assert out.loc["broken.jpg", "match"] == "no_gps"
    assert "unreadable" in out.loc["broken.jpg", "problem"]
    assert out.crs.to_epsg() == 4326
    assert out.loc["in_a.jpg", "taken_at"] == pd.Timestamp("2025-06-01 10:00:00")


def test_photo_gcj02(tmp_path):
    # a 40 m parcel around WGS84 (123, 45); the phone app wrote the GCJ-02 position of that
    # spot, (123.00607541, 45.00197815) per gcoord's published test values, ~530 m away
    parcel = gpd.GeoDataFrame({"parcel_id": ["P"]}, crs=4326, geometry=[
        shapely.Point(123, 45).buffer(0.00025, cap_style="square")])
    _jpeg(tmp_path / "app.jpg", _exif(45.00197815, 123.00607541, "2025:06:01 10:00:00"))
    as_wgs = photos_to_parcels([tmp_path / "app.jpg"], parcel, max_distance_m=100)
    assert as_wgs.match.item() == "none"
    as_gcj = photos_to_parcels([tmp_path / "app.jpg"], parcel, crs="gcj02")
    assert as_gcj.match.item() == "inside"
    assert as_gcj.lon.item() == pytest.approx(123.0, abs=2e-6)
    assert as_gcj.lat.item() == pytest.approx(45.0, abs=2e-6)
