"""The adjuster map's file: self-contained, compact data that decodes to the inputs, escaping,
languages, PII, flags, imagery budget, splitting. (The page in a real browser:
tests/browser/.)"""

import base64
import hashlib
import os
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Transformer

from agri_3s.errors import InputError
from agri_3s.outputs.webmap import (
    ImageLayer,
    RasterOverlay,
    assets,
    build_map,
    write_map,
    write_maps,
)
from agri_3s.outputs.webmap.data import decode_geometry, read_array, unpack, varint, zigzag
from agri_3s.outputs.webmap.imagery import crop, encode_image, event_dates, season_date
from agri_3s.outputs.webmap.split import split_parcels

EVIL = '<script>alert(1)</script>"&'
STATUSES = ["green", "yellow", "red", "no_data", "invalid"]
TIMES = pd.date_range("2025-03-01", periods=10, freq="5D")


def make_parcels(n: int = 5) -> gpd.GeoDataFrame:
    """``n`` 100 m squares in UTM 50N (EPSG:32650), 20 m apart."""
    geoms = [shapely.box(500_000 + 120 * i, 4_000_000, 500_100 + 120 * i, 4_000_100)
             for i in range(n)]
    return gpd.GeoDataFrame({
        "parcel_id": [f"P{i}" for i in range(n)], "policy_id": "POL-1",
        "household_id": [f"H{i}" for i in range(n)], "crop": "winter_wheat",
        "declared_area_mu": 15.0, "farmer_name": "张三丰",
        "farmer_id_number": "371428199001011234"}, geometry=geoms, crs=32650)


def make_verdicts(ids) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "parcel_id": ids, "status": [STATUSES[i % 5] for i in range(n)],
        "reasons": "PLANTED;AREA_SHORTFALL", "reasons_zh": "已种植申报作物；实测面积不足",
        "reasons_en": "declared crop planted; measured area short",
        "planted_fraction": [0.9] * (n - 1) + [np.nan],
        "emergence_date": [pd.NaT] + ["2024-10-20"] * (n - 1), "peak_ndvi": 0.8,
        "peak_date": pd.Timestamp("2025-04-10"), "measured_area_mu": 12.04, "area_ratio": 0.8,
        "clear_observations": 7, "confidence": 0.9})


def make_claims(ids, status="estimated") -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "claim_id": [f"C{i}" for i in range(n)], "parcel_id": ids, "policy_id": "POL-1",
        "event_id": "E1", "event_type": "hail", "event_date": "2025-03-21",
        "baseline_method": "neighbours+own_pre", "loss_rate": 0.45, "loss_rate_low": 0.35,
        "loss_rate_high": 0.55, "damaged_area_mu": 6.75, "loss_grade": "moderate",
        "indemnity_cny": 1234.5, "status": status, "reasons": "LOSS_ESTIMATED",
        "reasons_zh": "已估损", "reasons_en": "loss estimated",
        "imagery_dates": "2025-03-16;2025-03-26"})


def make_series(ids) -> xr.Dataset:
    """Parcel i is clear (look_flag 0) on its first i + 1 dates, masked after."""
    n, t = len(ids), len(TIMES)
    ndvi = np.random.default_rng(1).uniform(0.2, 0.9, (n, t))
    flag = np.ones((n, t), np.int8)
    for i in range(n):
        flag[i, :i + 1] = 0
    return xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi),
                       "look_flag": (("parcel", "time"), flag)},
                      coords={"parcel_id": ("parcel", list(ids)), "time": TIMES})


def decode(page_html: str) -> tuple[dict, bytes]:
    """The data block of a page, as the page's script decodes it."""
    m = re.search(r'<script type="application/octet-stream" id="a3data">([A-Za-z0-9+/=]+)'
                  r"</script>", page_html)
    assert m, "no data block"
    return unpack(base64.b64decode(m.group(1)))


def values(header: dict, body: bytes, group: str, name: str) -> list:
    """A column decoded as the page does (None where missing)."""
    c = header[group][name]
    if c["t"] == "s":
        return c["v"]
    a = read_array(body, c["a"])
    if c["t"] == "c":
        return [c["d"][k] for k in a]
    nan = np.iinfo(a.dtype).min
    if c["t"] == "d":
        return [None if v == nan else str(np.datetime64(int(v), "D")) for v in a]
    return [None if v == nan else float(v) * c["k"] for v in a]


@pytest.fixture()
def full():
    p = make_parcels(6)
    ids = p["parcel_id"].tolist()
    return p, {"verdicts": make_verdicts(ids), "claims": make_claims(ids),
               "series": make_series(ids)}


def test_page_is_self_contained(full):
    parcels, tables = full
    html = build_map(parcels, **tables).html
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", html)  # everything inline
    assert "<link" not in html
    css_urls = re.findall(r"url\(([^)]*)\)", html)
    assert css_urls and all(u.startswith(("data:", "#default#VML")) for u in css_urls)  # VML: old IE
    assert assets.leaflet_js()[:300] in html and "sourceMappingURL" not in html
    # besides Leaflet's own comments, the only addresses: the web base maps' tile templates
    # and the SVG namespace
    hosts = set(re.findall(r"https?://([\w.-]+)", html.replace(assets.leaflet_js(), "")
                                                   .replace(assets.leaflet_css(), "")))
    assert hosts == {"tile.openstreetmap.org", "server.arcgisonline.com", "www.w3.org"}, hosts


def test_geometry_decodes_to_the_parcels():
    """Quantised varint deltas decode to the input's web-mercator vertices within 0.05 m,
    holes and parts included, rows without geometry kept (no rings)."""
    rng = np.random.default_rng(3)
    polys = [shapely.Polygon(np.c_[500_000 + rng.uniform(0, 300, 1) + [0, 80, 95, 10],
                                   4_000_000 + rng.uniform(0, 300, 1) + [0, 5, 70, 60]])
             for _ in range(20)]
    holed = shapely.box(501_000, 4_001_000, 501_200, 4_001_200).difference(
        shapely.box(501_050, 4_001_050, 501_100, 4_001_100))
    multi = shapely.MultiPolygon([shapely.box(502_000, 4_000_000, 502_050, 4_000_050),
                                  shapely.box(502_100, 4_000_000, 502_150, 4_000_050)])
    geoms = polys + [holed, multi, None]
    p = gpd.GeoDataFrame({"parcel_id": [f"G{i}" for i in range(len(geoms))]}, geometry=geoms,
                         crs=32650)
    header, body = decode(build_map(p).html)
    rings = decode_geometry(header["geom"], body)
    to3857 = Transformer.from_crs(32650, 3857, always_xy=True)
    assert len(rings) == len(geoms) and rings[-1] == []
    for g, got in zip(geoms[:-1], rings[:-1]):
        parts = list(g.geoms) if g.geom_type == "MultiPolygon" else [g]
        want = [r for part in parts for r in [part.exterior, *part.interiors]]
        assert len(got) == len(want)
        for ring, r in zip(got, want):
            x, y = to3857.transform(*np.asarray(r.coords)[:-1].T)
            expected = np.c_[x, y]
            # same vertices (orientation may be reversed for the non-zero fill rule)
            d = min(np.abs(ring - np.roll(e, -k, axis=0)).max()
                    for e in (expected, expected[::-1]) for k in range(len(e)))
            assert d <= 0.05 + 1e-9


@given(st.lists(st.integers(-(2 ** 40), 2 ** 40), max_size=50))
def test_varint_zigzag_round_trip(numbers):
    raw = varint(zigzag(np.array(numbers, dtype=np.int64)))
    out, cur, shift = [], 0, 0
    for b in raw:  # a plain LEB128 reader, independent of the code under test
        cur |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            out.append((cur >> 1) ^ -(cur & 1))
            cur, shift = 0, 0
    assert out == numbers


def test_values_decode_to_the_tables(full):
    parcels, tables = full
    header, body = decode(build_map(parcels, **tables).html)
    assert values(header, body, "parcel", "parcel_id") == [f"P{i}" for i in range(6)]
    assert values(header, body, "verdict", "status") == [STATUSES[i % 5] for i in range(6)]
    assert values(header, body, "verdict", "planted_fraction")[:5] == pytest.approx([0.9] * 5)
    assert values(header, body, "verdict", "planted_fraction")[5] is None
    assert values(header, body, "verdict", "measured_area_mu") == pytest.approx([12.04] * 6)
    assert values(header, body, "verdict", "emergence_date") == [None] + ["2024-10-20"] * 5
    assert values(header, body, "claim", "indemnity_cny") == pytest.approx([1234.5] * 6)
    assert values(header, body, "claim", "event_date") == ["2025-03-21"] * 6
    assert values(header, body, "parcel", "declared_area_mu") == pytest.approx([15.0] * 6)


def test_series_holds_the_clear_looks(full):
    parcels, tables = full
    header, body = decode(build_map(parcels, **tables).html)
    s = header["series"]
    m = read_array(body, s["m"]).reshape(6, len(TIMES))
    assert s["days"][0] == (TIMES[0] - pd.Timestamp("1970-01-01")).days
    ndvi = tables["series"]["ndvi_mean"].values
    for i in range(6):
        used = m[i] != 255
        assert used.sum() == i + 1 and used[:i + 1].all()  # look_flag 0 only
        assert np.abs(m[i, used] / 250 * 1.2 - 0.2 - ndvi[i, used]).max() <= 1.2 / 500 + 1e-9


def test_user_text_is_never_markup(full):
    parcels, tables = full
    parcels["farmer_name"] = EVIL
    parcels.loc[1, "crop"] = EVIL
    parcels.loc[2, "parcel_id"] = EVIL
    tables["verdicts"].loc[0, "reasons_zh"] = EVIL
    html = build_map(parcels, show_pii=True, title=EVIL, **tables).html
    assert EVIL not in html and "<script>alert" not in html
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;</title>" in html
    header, body = decode(html)
    assert header["title"] == EVIL  # set with textContent by the page
    assert EVIL in values(header, body, "parcel", "farmer_name")
    assert EVIL in values(header, body, "verdict", "reasons_text")


def test_pii_masked_by_default(full):
    parcels, tables = full
    parcels.loc[1, "farmer_name"] = "李四"
    header, body = decode(build_map(parcels, **tables).html)
    names = values(header, body, "parcel", "farmer_name")
    ids = values(header, body, "parcel", "farmer_id_number")
    assert names[0] == "张*丰" and names[1] == "李*" and ids[0] == "**************1234"
    raw = header.__repr__() + body.decode("latin-1")
    assert "张三丰" not in raw and "371428199001011234" not in raw


def test_languages(full):
    parcels, tables = full
    zh, _ = decode(build_map(parcels, lang="zh", **tables).html)
    en, _ = decode(build_map(parcels, lang="en", **tables).html)
    assert zh["labels"]["status"]["red"] == "不通过" and en["labels"]["status"]["red"] == "fail"
    assert zh["labels"]["grade"]["unknown"] == "无法估损"
    assert en["labels"]["claim_status"]["not_affected"] == "not affected"
    assert zh["title"] == "查勘定损地图" and en["title"] == "Loss assessment map"
    assert '<html lang="en">' in build_map(parcels, lang="en").html


@pytest.mark.parametrize("lang", ["fr", "ZH", "", None])
def test_invalid_lang(lang, full):
    parcels, tables = full
    with pytest.raises(InputError, match="lang"):
        build_map(parcels, lang=lang, **tables)


def test_parcels_without_crs():
    with pytest.raises(InputError, match="CRS"):
        build_map(make_parcels(2).set_crs(None, allow_override=True))


def test_claims_on_rejected_parcels_are_flagged():
    """Flag = verdict red and the claim may be paid (estimated / survey), or the export's
    UNDERWRITING_REJECTED reason."""
    p = make_parcels(5)
    v = make_verdicts(p["parcel_id"].tolist())
    v["status"] = ["red", "red", "red", "green", "green"]
    c = make_claims(p["parcel_id"].tolist())
    c["status"] = ["estimated", "survey", "not_affected", "estimated", "estimated"]
    c.loc[4, "reasons"] = "LOSS_ESTIMATED;UNDERWRITING_REJECTED"
    header, body = decode(build_map(p, verdicts=v, claims=c).html)
    assert values(header, body, "claim", "flag") == [1, 1, 0, 0, 1]
    header, body = decode(build_map(p, claims=c).html)  # without verdicts: the export's reason
    assert values(header, body, "claim", "flag") == [0, 0, 0, 0, 1]


def test_latest_claim_per_parcel():
    p = make_parcels(2)
    claims = make_claims(["P0", "P1"])
    later = claims.iloc[[0]].assign(event_id="E2", event_date="2025-06-01", loss_grade="total")
    header, body = decode(build_map(p, claims=pd.concat([claims, later])).html)
    assert values(header, body, "claim", "event_id") == ["E2", "E1"]
    assert values(header, body, "claim", "loss_grade") == ["total", "moderate"]


def test_empty_geometry_is_noted_not_drawn():
    parcels = make_parcels(3)
    parcels.loc[2, "geometry"] = None
    page = build_map(parcels, verdicts=make_verdicts(["P0", "P1", "P2"]), lang="en")
    header, body = decode(page.html)
    assert page.n_drawn == 2 and header["n"] == 3  # still searchable
    assert "1 parcel(s) without geometry not shown" in header["notes"]


def test_imagery_within_budget_and_in_place():
    p = make_parcels(3)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)  # noise: JPEG cannot shrink it
    layer = ImageLayer("false_after", rgb, (116.99, 36.1, 117.01, 36.12), "2025-05-18")
    overlay = RasterOverlay("NDVI", np.array([[0.1, np.nan], [0.5, 0.9]]),
                            (116.99, 36.1, 117.0, 36.11))
    header, body = decode(build_map(p, imagery=[layer], overlays=[overlay],
                                    imagery_bytes=40_000, lang="en").html)
    images = header["imagery"]
    assert [i["kind"] for i in images] == ["raster", "false_after"]
    assert images[1]["name"] == "False colour (NIR) after 2025-05-18"
    assert images[1]["bounds"] == [[36.1, 116.99], [36.12, 117.01]]
    for im in images:
        jpeg = bytes(read_array(body, im["img"]))
        assert jpeg[:3] == b"\xff\xd8\xff" and len(jpeg) <= 20_000  # half the budget each
    with pytest.raises(InputError):
        RasterOverlay("x", np.ones((2, 2)), (117.0, 36.1, 116.9, 36.2)).image()
    assert len(encode_image(rgb, 5_000)) <= 5_000


def test_crop_keeps_the_area_in_mercator():
    rgb = np.zeros((400, 100, 3), np.uint8)
    rgb[:, :50] = 255  # west half white
    im = ImageLayer("false_after", rgb, (10.0, 0.0, 20.0, 60.0))
    part = crop(im, (10.0, 0.0, 15.0, 60.0), margin=0)
    assert part.rgb.shape == (400, 50, 3) and (part.rgb == 255).all()
    north = crop(im, (10.0, 30.0, 20.0, 60.0), margin=0)
    # mercator rows: 30–60° N takes the share of y between them, not half the rows
    y = np.log(np.tan(np.pi / 4 + np.radians([0.0, 30.0, 60.0]) / 2))
    assert abs(north.rgb.shape[0] - 400 * (y[2] - y[1]) / (y[2] - y[0])) <= 1
    assert north.bounds_wgs84[1] == pytest.approx(30.0, abs=0.2)


def test_clearest_dates_picked():
    times = pd.to_datetime(["2025-04-20", "2025-05-01", "2025-05-10", "2025-05-16",
                            "2025-05-21", "2025-06-30"])
    flag = np.array([[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0]])
    ndvi = np.array([[0.3, 0.5, 0.6, 0.7, 0.4, 0.8]] * 3)
    s = xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi),
                    "look_flag": (("parcel", "time"), flag)}, coords={"time": times})
    import datetime as dt
    before, after = event_dates(s, dt.date(2025, 5, 14))
    assert before == dt.date(2025, 5, 1)   # 3/3 clear (05-10 is 2/3)
    assert after == dt.date(2025, 5, 21)   # 2/3 clear (05-16: none)
    # season: clear share ≥ 80 % of the best, then the greenest
    assert season_date(s, dt.date(2025, 4, 1), dt.date(2025, 7, 1)) == dt.date(2025, 6, 30)


def test_split_into_parts_and_index(tmp_path, full):
    parcels, tables = full
    parcels = pd.concat([parcels, parcels.assign(parcel_id=parcels["parcel_id"] + "b")
                         .set_geometry(parcels.translate(0, 500))], ignore_index=True)
    files = write_maps(parcels, tmp_path / "m.html", max_parcels=5, verdicts=pd.concat(
        [tables["verdicts"], tables["verdicts"].assign(parcel_id=lambda t: t.parcel_id + "b")]),
        lang="en")
    parts = sorted(k for k in files if k != "m.html")
    assert parts == [f"m_0{k}.html" for k in range(1, 5)]  # 12 → 6 + 6 → four halves of 3
    seen = []
    for name in parts:
        header, body = decode(files[name].read_text(encoding="utf-8"))
        assert header["n"] <= 5 and header["part"]["index"] == "m.html"
        seen += values(header, body, "parcel", "parcel_id")
        assert values(header, body, "verdict", "status") == [
            STATUSES[int(pid.rstrip("b")[1:]) % 5] for pid in values(header, body, "parcel",
                                                                    "parcel_id")]
    assert sorted(seen) == sorted(parcels["parcel_id"])  # every parcel in one part
    index, _ = decode(files["m.html"].read_text(encoding="utf-8"))
    assert [p["file"] for p in index["index"]] == parts
    assert sum(p["n"] for p in index["index"]) == 12
    by = split_parcels(parcels.assign(township=["A"] * 6 + ["B"] * 6), 100, "township")
    assert [(n, r.tolist()) for n, r in by] == [("A", list(range(6))), ("B", list(range(6, 12)))]


def test_write_is_atomic(tmp_path, full, monkeypatch):
    parcels, tables = full
    path = write_map(build_map(parcels, **tables), tmp_path / "sub" / "map.html")
    assert os.listdir(path.parent) == ["map.html"]
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_map(build_map(parcels, lang="en"), path)
    assert os.listdir(path.parent) == ["map.html"] and path.read_bytes() == before


def test_leaflet_checked_against_its_release(tmp_path, monkeypatch):
    dist = tmp_path / "dist"
    dist.mkdir()
    monkeypatch.setattr(assets, "LEAFLET_DIST", dist)
    assets.leaflet_js.cache_clear()
    try:
        with pytest.raises(assets.AssetsMissing, match="npm ci"):
            assets.leaflet_js()
        (dist / "leaflet.js").write_text("window.L = {};")
        with pytest.raises(assets.AssetsMissing, match="SHA-256"):
            assets.leaflet_js()
    finally:
        assets.leaflet_js.cache_clear()
    real = (assets.VENDOR / "node_modules/leaflet/dist/leaflet.js").read_bytes()
    assert hashlib.sha256(real).hexdigest() == assets.LEAFLET_SHA256["leaflet.js"]


def test_thousand_parcels_stay_small():
    n = 1000
    geoms = [shapely.box(500_000 + 120 * (i % 40), 4_000_000 + 120 * (i // 40),
                         500_100 + 120 * (i % 40), 4_000_100 + 120 * (i // 40))
             for i in range(n)]
    parcels = make_parcels(1).iloc[[0] * n].set_geometry(geoms).reset_index(drop=True)
    ids = [f"P{i:04d}" for i in range(n)]
    parcels["parcel_id"] = ids
    times = pd.date_range("2025-01-01", periods=36, freq="5D")
    ndvi = np.random.default_rng(0).uniform(0.1, 0.9, (n, 36))
    series = xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi),
                         "clear_fraction": (("parcel", "time"), np.tile([1.0, 0.0], (n, 18)))},
                        coords={"parcel_id": ("parcel", ids), "time": times})
    page = build_map(parcels, verdicts=make_verdicts(ids), claims=make_claims(ids),
                     series=series, imagery_bytes=0)
    fixed = len(build_map(parcels.iloc[:1], imagery_bytes=0).html.encode())
    assert (page.size_bytes - fixed) / n < 200  # bytes per parcel beyond the page itself
