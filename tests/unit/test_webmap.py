"""The adjuster's map, checked through the GeoJSON embedded in the written HTML file."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from agri_3s.errors import InputError
from agri_3s.outputs import webmap
from agri_3s.outputs.webmap import RasterOverlay, build_map, write_map

EVIL = "<script>alert(1)</script>"
STATUSES = ["green", "yellow", "red", "no_data", "invalid"]
GRADES = ["none", "light", "moderate", "severe", "total"]
TIMES = pd.date_range("2025-03-01", periods=10, freq="5D")


def make_parcels(n: int = 5, names=None) -> gpd.GeoDataFrame:
    """``n`` 100 m squares in UTM 50N (EPSG:32650), 20 m apart."""
    geoms = [shapely.box(500_000 + 120 * i, 4_000_000, 500_100 + 120 * i, 4_000_100)
             for i in range(n)]
    return gpd.GeoDataFrame({
        "parcel_id": [f"P{i}" for i in range(n)], "policy_id": "POL-1",
        "household_id": [f"H{i}" for i in range(n)], "crop": "winter_wheat",
        "declared_area_mu": 15.0, "farmer_name": names or ["张三丰"] * n,
        "farmer_id_number": "371428199001011234"}, geometry=geoms, crs=32650)


def make_verdicts(ids) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "parcel_id": ids, "status": [STATUSES[i % 5] for i in range(n)],
        "reasons": "PLANTED;AREA_SHORTFALL", "reasons_zh": "已种植申报作物；实测面积不足",
        "reasons_en": "declared crop planted; measured area short",
        "planted_fraction": [0.9] * (n - 1) + [np.nan], "emergence_date": [pd.NaT] + ["2024-10-20"] * (n - 1),
        "peak_ndvi": 0.8, "peak_date": pd.Timestamp("2025-04-10"), "measured_area_mu": 12.0,
        "area_ratio": 0.8, "clear_observations": 7, "confidence": 0.9})


def make_claims(ids) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "claim_id": [f"C{i}" for i in range(n)], "parcel_id": ids, "policy_id": "POL-1",
        "event_id": "E1", "event_type": "hail", "event_date": "2025-03-21",
        "baseline_method": "neighbours", "loss_rate": 0.45, "loss_rate_low": 0.35,
        "loss_rate_high": 0.55, "damaged_area_mu": 6.75, "loss_grade": [GRADES[i % 5] for i in range(n)],
        "indemnity_cny": 1234.5, "status": "estimated", "imagery_dates": "2025-03-16;2025-03-26"})


def clear_counts(n: int) -> list[int]:
    return [(i % 8) + 1 for i in range(n)]  # parcel i has this many clear observations


def make_series(ids) -> xr.Dataset:
    """Parcel i is clear (fraction 0.9) on its first ``clear_counts[i]`` dates, cloudy after;
    one cloudy date has NDVI NaN and one clear-looking date (fraction exactly 0.5) counts."""
    n, t = len(ids), len(TIMES)
    rng = np.random.default_rng(1)
    ndvi = rng.uniform(0.2, 0.9, (n, t))
    clear = np.full((n, t), 0.2)
    for i, k in enumerate(clear_counts(n)):
        clear[i, :k] = 0.9
        clear[i, k - 1] = 0.5  # the threshold is inclusive
        if k < t:
            ndvi[i, k] = np.nan
    return xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi),
                       "clear_fraction": (("parcel", "time"), clear)},
                      coords={"parcel_id": ("parcel", list(ids)), "time": TIMES})


def collections(text: str) -> list[dict]:
    """Every GeoJSON FeatureCollection literal embedded in the page's scripts."""
    found, decoder = [], json.JSONDecoder()
    for m in re.finditer(r"\(\s*\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.end() - 1)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
            found.append(obj)
    return found


def layers(text: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for fc in collections(text):
        kinds = {f["properties"]["layer"] for f in fc["features"]}
        assert len(kinds) == 1
        out[kinds.pop()] = fc["features"]
    return out


def render(tmp_path, parcels, name="map.html", **kwargs) -> str:
    path = write_map(build_map(parcels, **kwargs), tmp_path / name)
    return path.read_text(encoding="utf-8")


@pytest.fixture()
def full(tmp_path):
    p = make_parcels(6)
    ids = p["parcel_id"].tolist()
    return p, {"verdicts": make_verdicts(ids), "claims": make_claims(ids),
               "series": make_series(ids)}


def test_one_feature_per_parcel_per_layer(tmp_path, full):
    parcels, tables = full
    photos = gpd.GeoDataFrame({"photo_id": ["F1", "F2"], "path": ["a.jpg", "b.jpg"],
                               "taken_at": ["2025-03-22", "2025-03-22"], "parcel_id": ["P0", "P1"]},
                              geometry=[shapely.Point(500_050, 4_000_050),
                                        shapely.Point(500_170, 4_000_050)], crs=32650)
    text = render(tmp_path, parcels, photos=photos, **tables)
    HTMLParser().feed(text)  # parses
    found = layers(text)
    assert set(found) == {"verdict", "loss", "photo"}
    for kind in ("verdict", "loss"):
        ids = [f["properties"]["parcel_id"] for f in found[kind]]
        assert sorted(ids) == sorted(parcels["parcel_id"]) and len(set(ids)) == len(ids)
    assert len(found["photo"]) == 2
    # reprojected from UTM 50N to lon / lat (central meridian 117°E), rounded to 6 decimals
    ring = found["verdict"][0]["geometry"]["coordinates"][0]
    assert all(116.9 < lon < 117.1 and 36 < lat < 36.2 for lon, lat in ring)
    assert all(round(c, 6) == c for xy in ring for c in xy)
    styles = {f["properties"]["parcel_id"]: f["properties"]["style"]["fillColor"]
              for f in found["verdict"]}
    assert styles["P0"] == "#2e7d32" and styles["P2"] == "#c62828" and styles["P4"] == "#6a1b9a"
    assert "L.control.layers" in text and "fitBounds" in text
    assert "World_Imagery" in text and "openstreetmap" in text.lower()


def test_only_the_tables_given_get_layers(tmp_path, full):
    parcels, tables = full
    assert set(layers(render(tmp_path, parcels, verdicts=tables["verdicts"]))) == {"verdict"}
    assert set(layers(render(tmp_path, parcels, claims=tables["claims"]))) == {"loss"}


def test_pii_shown_is_escaped_once(tmp_path, full):
    parcels, tables = full
    parcels["farmer_name"] = EVIL
    parcels.loc[1, "crop"] = EVIL
    tables["verdicts"].loc[0, "reasons_zh"] = EVIL
    text = render(tmp_path, parcels, show_pii=True, title=EVIL, **tables)
    assert EVIL not in text and "<script>alert" not in text
    popups = [f["properties"]["popup"] for fs in layers(text).values() for f in fs]
    assert all("&lt;script&gt;alert(1)&lt;/script&gt;" in p for p in popups)
    assert not any(EVIL in p or "&amp;lt;" in p for p in popups)  # escaped exactly once
    assert "371428199001011234" in popups[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the title


def test_pii_masked_by_default(tmp_path, full):
    parcels, tables = full
    parcels.loc[1, "farmer_name"] = EVIL
    text = render(tmp_path, parcels, **tables)
    assert EVIL not in text
    popups = {f["properties"]["parcel_id"]: f["properties"]["popup"] for f in layers(text)["verdict"]}
    assert "张*丰" in popups["P0"] and "**************1234" in popups["P0"]
    assert not any("张三丰" in p or "371428199001011234" in p or "alert" in p
                   for p in popups.values())
    assert "张三丰" not in text and "\\u5f20\\u4e09\\u4e30" not in text.lower()


def test_languages(tmp_path, full):
    parcels, tables = full
    zh = render(tmp_path, parcels, name="zh.html", lang="zh", **tables)
    en = render(tmp_path, parcels, name="en.html", lang="en", **tables)
    pz = layers(zh)["verdict"][0]["properties"]
    pe = layers(en)["verdict"][0]["properties"]
    assert "地块" in pz["popup"] and "通过" in pz["tip"] and "已种植申报作物" in pz["popup"]
    assert "Parcel" in pe["popup"] and "pass" in pe["tip"] and "declared crop planted" in pe["popup"]
    assert "Parcel" not in pz["popup"] and "地块" not in pe["popup"]
    for word in ("通过", "待核", "不通过", "无数据", "绝收", "查勘定损地图"):  # legend and title
        assert word in zh and word not in en
    for word in ("review", "fail", "total loss", "Loss assessment map"):
        assert word in en
    assert '"\\u627f\\u4fdd\\u6838\\u9a8c"' in zh  # layer control: 承保核验
    assert '"Underwriting verdict"' in en and '"Loss grade"' in en


@pytest.mark.parametrize("lang", ["fr", "ZH", "", None])
def test_invalid_lang(lang, full):
    parcels, tables = full
    with pytest.raises(InputError, match="lang"):
        build_map(parcels, lang=lang, **tables)


def test_parcels_without_crs():
    with pytest.raises(InputError, match="CRS"):
        build_map(make_parcels(2).set_crs(None, allow_override=True))


def test_svg_has_one_dot_per_clear_observation(tmp_path, full):
    parcels, tables = full
    found = layers(render(tmp_path, parcels, **tables))
    expected = dict(zip(parcels["parcel_id"], clear_counts(len(parcels))))
    for kind in ("verdict", "loss"):
        for f in found[kind]:
            popup = f["properties"]["popup"]
            svg = popup[popup.index("<svg"):]
            assert svg.count("<circle") == expected[f["properties"]["parcel_id"]]
            assert ("stroke-dasharray" in svg) == (kind == "loss")  # event marker
            assert "2025-03-01" in svg and "2025-04-15" in svg and len(svg) < 2000


def test_svg_without_clear_observations(tmp_path):
    parcels = make_parcels(2)
    series = make_series(["P0", "P1"])
    series["clear_fraction"][:] = 0.0
    found = layers(render(tmp_path, parcels, verdicts=make_verdicts(["P0"]), series=series,
                          lang="en"))
    popups = {f["properties"]["parcel_id"]: f["properties"] for f in found["verdict"]}
    assert "<circle" not in popups["P0"]["popup"] and "no clear observations" in popups["P0"]["popup"]
    assert "no result" in popups["P1"]["tip"]  # a parcel without a verdict row is still drawn


def test_reasons_are_listed_per_code(tmp_path):
    parcels = make_parcels(3)
    v = make_verdicts(["P0", "P1", "P2"])
    v.loc[1, ["reasons", "reasons_en"]] = ["PLANTED", "declared crop planted; phenology matches"]
    v.loc[2, ["reasons", "reasons_en"]] = ["NO_PIXELS;FEW_CLEAR_OBS", np.nan]
    zh = {f["properties"]["parcel_id"]: f["properties"]["popup"]
          for f in layers(render(tmp_path, parcels, "zh.html", verdicts=v))["verdict"]}
    en = {f["properties"]["parcel_id"]: f["properties"]["popup"]
          for f in layers(render(tmp_path, parcels, "en.html", verdicts=v, lang="en"))["verdict"]}
    assert "<li>已种植申报作物</li><li>实测面积不足</li>" in zh["P0"]
    assert "<li>declared crop planted</li><li>measured area short</li>" in en["P0"]
    assert "<li>declared crop planted; phenology matches</li>" in en["P1"]  # one reason, kept whole
    assert "<li>NO_PIXELS</li><li>FEW_CLEAR_OBS</li>" in en["P2"]  # no text: the codes


def test_latest_claim_per_parcel_and_missing_values(tmp_path):
    parcels = make_parcels(2)
    claims = make_claims(["P0", "P1"])
    later = claims.iloc[[0]].assign(event_id="E2", event_date="2025-06-01", loss_grade="total",
                                    loss_rate=np.nan, claim_id="C9")
    claims = pd.concat([claims, later], ignore_index=True)
    found = layers(render(tmp_path, parcels, claims=claims, lang="en"))["loss"]
    assert len(found) == 2
    p0 = next(f for f in found if f["properties"]["parcel_id"] == "P0")
    assert "E2" in p0["properties"]["popup"] and "total loss" in p0["properties"]["tip"]
    assert "nan" not in p0["properties"]["popup"].lower()


def test_empty_geometry_is_noted_not_drawn(tmp_path):
    parcels = make_parcels(3)
    parcels.loc[2, "geometry"] = None
    text = render(tmp_path, parcels, verdicts=make_verdicts(["P0", "P1", "P2"]), lang="en")
    assert len(layers(text)["verdict"]) == 2
    assert "1 parcel(s) without geometry not shown" in text


def test_photos_and_overlays_are_escaped(tmp_path):
    parcels = make_parcels(2)
    bad = 'x"><script>alert(1)</script>.jpg'
    photos = gpd.GeoDataFrame({"photo_id": ["F1"], "path": [bad], "taken_at": ["2025-03-22"],
                               "parcel_id": ["P0"]}, geometry=[shapely.Point(117.0, 36.1)],
                              crs=4326)
    values = np.array([[0.1, np.nan], [0.5, 0.9]])
    overlay = RasterOverlay(EVIL, values, (116.99, 36.1, 117.0, 36.11))
    text = render(tmp_path, parcels, photos=photos, overlays=[overlay])
    assert EVIL not in text
    popup = layers(text)["photo"][0]["properties"]["popup"]
    assert '<img src="x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;.jpg"' in popup
    assert "L.imageOverlay" in text and "data:image/png;base64," in text
    rgba = webmap._overlay_png(overlay)
    assert rgba.dtype == np.uint8 and rgba.shape == (2, 2, 4)
    assert rgba[0, 1, 3] == 0 and rgba[1, 1, 3] > 0  # NaN transparent
    with pytest.raises(InputError):
        webmap._overlay_png(RasterOverlay("x", values, (117.0, 36.1, 116.9, 36.2)))


def test_write_is_atomic(tmp_path, full, monkeypatch):
    parcels, tables = full
    m = build_map(parcels, **tables)
    path = write_map(m, tmp_path / "sub" / "map.html")
    assert path == tmp_path / "sub" / "map.html" and os.listdir(path.parent) == ["map.html"]
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_map(build_map(parcels, lang="en"), path)
    assert os.listdir(path.parent) == ["map.html"] and path.read_bytes() == before


def test_thousand_parcels_stay_small(tmp_path):
    n = 1000
    geoms = [shapely.box(500_000 + 120 * (i % 40), 4_000_000 + 120 * (i // 40),
                         500_100 + 120 * (i % 40), 4_000_100 + 120 * (i // 40)) for i in range(n)]
    parcels = make_parcels(1).iloc[[0] * n].set_geometry(geoms).reset_index(drop=True)
    ids = [f"P{i:04d}" for i in range(n)]
    parcels["parcel_id"] = ids
    times = pd.date_range("2025-01-01", periods=36, freq="5D")
    series = xr.Dataset({"ndvi_mean": (("parcel", "time"), np.full((n, 36), 0.6)),
                         "clear_fraction": (("parcel", "time"), np.tile([1.0, 0.0], (n, 18)))},
                        coords={"parcel_id": ("parcel", ids), "time": times})
    text = render(tmp_path, parcels, verdicts=make_verdicts(ids), claims=make_claims(ids),
                  series=series)
    found = layers(text)
    assert len(found["verdict"]) == len(found["loss"]) == n
    assert len(text.encode()) < 6_000_000
