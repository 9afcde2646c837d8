"""What an adjuster needs on a parcel (issue 14, "What to build" 4), in a real browser with no
network: the popup of the maize demo map against the job's own exports, the flag of a claim on
a rejected parcel drawn on the map, popups and controls that never cover one another on a
desktop and on phones, every exported code translated, and field photos in the popup."""

from __future__ import annotations

import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agri_3s.outputs.webmap import build_map, write_map

from .conftest import load_county
from .test_maps import (
    check_opened_offline,
    click_parcel,
    drawn_pixels,
    pid_shown,
    popup_id_visible,
    toggle,
)

CJK = re.compile(r"[\u4e00-\u9fff]")
FLAG_RGB = (0xD5, 0x00, 0xF9)  # the dashed outline of a flagged claim (labels.FLAG_COLOR)


def pct(x: float) -> str:
    """A share as the page writes it (JavaScript's Math.round: halves up)."""
    return f"{int(np.floor(x * 100 + 0.5))}%"


def on_top(m, selector: str) -> bool:
    """The last element matching ``selector`` is on screen and nothing lies over its middle."""
    return m.js("""(sel) => { const e = [...document.querySelectorAll(sel)].pop();
        if (!e) return false; const r = e.getBoundingClientRect();
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return r.width > 0 && !!hit && (e === hit || e.contains(hit)); }""", selector)


def cell(pop, section: str, header: str) -> str:
    """The value beside ``header`` in a popup section (``.a3verdict``, ``.a3claim``; "" the
    whole popup)."""
    row = pop.locator(f"{section} tr".strip()).filter(has=pop.page.locator("th", has_text=header))
    return row.locator("td").first.inner_text()


def control_boxes(m) -> list[dict]:
    """Every visible map control (title, layers, search, zoom, locate, legend, scale …)."""
    return m.js("""[...document.querySelectorAll('.leaflet-control')].map(c => {
        const r = c.getBoundingClientRect();
        return {name: c.className, l: r.left, t: r.top, r: r.right, b: r.bottom}; })
        .filter(c => c.r > c.l && c.b > c.t)""")


def overlap(a: dict, b: dict) -> bool:
    return a["l"] < b["r"] and b["l"] < a["r"] and a["t"] < b["b"] and b["t"] < a["b"]


def popup_box(m) -> dict:
    return m.js("""(() => { const r = [...document.querySelectorAll('.leaflet-popup')].pop()
        .getBoundingClientRect(); return {l: r.left, t: r.top, r: r.right, b: r.bottom}; })()""")


def flag_pixels(m, geometry, zoom: int = 17) -> int:
    """Pixels of the flag's colour on screen over a parcel (popups closed)."""
    from io import BytesIO

    from PIL import Image

    m.js("agri3sMap.app.map.closePopup()")
    c = geometry.centroid
    m.view(c.y, c.x, zoom)
    w, s, e, n = geometry.bounds
    x0, y1 = m.point(s, w)
    x1, y0 = m.point(n, e)
    clip = {"x": x0 - 4, "y": y0 - 4, "width": x1 - x0 + 8, "height": y1 - y0 + 8}
    rgb = np.asarray(Image.open(BytesIO(m.page.screenshot(clip=clip))).convert("RGB"), int)
    return int((np.abs(rgb - FLAG_RGB).max(axis=2) < 40).sum())


# --- the maize demo map (flood claims beside maize verdicts) ---------------------------------

@pytest.fixture(scope="module")
def maize(demo_out):
    out, files = demo_out
    verdicts = gpd.read_file(out / "underwrite_maize" / "verdicts.geojson").to_crs(4326)
    claims = pd.read_csv(out / "assess_flood" / "claims.csv", dtype={"parcel_id": str})
    return out, files, verdicts.set_index("parcel_id"), claims.set_index("parcel_id")


def test_maize_popup_matches_the_exports(open_map, maize):
    """Ids, verdict and claim side by side, the flag, the loss interval, survey, imagery dates,
    damaged area: each read from the popup and compared with the job's own CSV files."""
    out, files, verdicts, claims = maize
    m = open_map(files["map_maize.html"])
    check_opened_offline(m)
    assert m.js("agri3sMap.app.G.n") == len(verdicts) and drawn_pixels(m) > 10_000
    images = [json.loads((out / run / "map_imagery.json").read_text())["layers"]
              for run in ("underwrite_maize", "assess_flood")]
    image_dates = sorted({d for layers in images for lay in layers
                          for d in (lay["date"], lay["before"]) if d})

    rejected = claims[claims["reasons"].str.contains("UNDERWRITING_REJECTED")]
    pid = rejected.index[rejected["status"] == "estimated"][0]
    claim = claims.loc[pid]
    click_parcel(m, verdicts.geometry[pid])
    pop = m.page.locator(".a3pop").last
    assert pid_shown(m) == pid and popup_id_visible(m)
    assert pop.locator(".a3pol").inner_text() == claim["policy_id"] and on_top(m, ".a3pop .a3pol")
    # verdict and claim side by side: same top, verdict on the left; and summed up under the ids
    v, c = (pop.locator(s).bounding_box() for s in (".a3verdict", ".a3claim"))
    assert abs(v["y"] - c["y"]) < 2 and v["x"] + v["width"] <= c["x"]
    assert verdicts.loc[pid, "status"] == "red"
    assert pop.locator(".a3sum").inner_text().split() == [
        "承保核验", "不通过", "·", "查勘定损", "已估损", pct(claim["loss_rate"])]
    assert "承保核验未通过" in pop.locator(".a3flag").inner_text()
    assert "承保核验未通过" in pop.locator(".a3claim").inner_text()  # the export's reason
    assert cell(pop, ".a3claim", "损失率") == (f"{pct(claim['loss_rate'])} ["
                                              f"{pct(claim['loss_rate_low'])}, "
                                              f"{pct(claim['loss_rate_high'])}]")
    assert cell(pop, ".a3claim", "现场查勘") == "不需要"
    assert cell(pop, ".a3claim", "受损面积") == f"{claim['damaged_area_mu']:.1f} 亩"
    assert cell(pop, ".a3claim", "所用影像日期") == claim["imagery_dates"].replace(";", ", ")
    assert cell(pop, "", "地图影像") == ", ".join(image_dates)
    assert pop.locator("svg.a3chart circle").count() > 0

    # a survey claim: the field survey is needed and the indemnity provisional
    pid = claims.index[(claims["status"] == "survey") & (claims["damaged_area_mu"] > 0)][0]
    click_parcel(m, verdicts.geometry[pid])
    pop = m.page.locator(".a3pop").last
    assert pid_shown(m) == pid
    assert cell(pop, ".a3claim", "现场查勘").startswith("需要")
    assert cell(pop, ".a3claim", "估算赔款").endswith("（暂估）")
    # outside the flood: not affected, no damaged area, no loss rate or grade
    pid = claims.index[claims["status"] == "not_affected"][0]
    click_parcel(m, verdicts.geometry[pid])
    pop = m.page.locator(".a3pop").last
    assert cell(pop, ".a3claim", "状态") == "未受灾"
    assert cell(pop, ".a3claim", "受损面积") == "0.0 亩"
    assert pop.locator(".a3claim th", has_text="损失率").count() == 0
    assert pop.locator(".a3claim th", has_text="损失等级").count() == 0

    # search by parcel id
    other = verdicts.index[123]
    m.js("agri3sMap.app.map.closePopup()")
    m.page.locator(".a3search input").fill(other)
    m.page.locator(".a3search input").press("Enter")
    m.page.wait_for_function("(p) => [...document.querySelectorAll('.a3pop .a3pid')].some("
                             "e => e.textContent === p)", arg=other)
    assert pid_shown(m) == other and popup_id_visible(m)


def test_flagged_claims_outlined_on_the_map(open_map, maize):
    """The dashed outline is drawn on the flagged claims of the export and on no other."""
    out, files, verdicts, claims = maize
    m = open_map(files["map_maize.html"])
    flagged = claims.index[claims["reasons"].str.contains("UNDERWRITING_REJECTED")]
    assert m.js("""(() => { const a = agri3sMap.app; let n = 0;
        for (let i = 0; i < a.G.n; i++) n += a.C.flag(i) === 1; return n; })()""") == len(flagged)
    pid = flagged[0]
    assert flag_pixels(m, verdicts.geometry[pid]) > 40
    # a parcel with no flagged claim within 300 m
    cent = verdicts.to_crs(32650).geometry.centroid
    far = cent.index[cent.apply(lambda p: cent[flagged].distance(p).min() > 300)][0]
    assert flag_pixels(m, verdicts.geometry[far]) == 0
    toggle(m, "损失等级")  # the verdict layer alone draws no flag
    toggle(m, "承保核验")
    assert flag_pixels(m, verdicts.geometry[pid]) == 0


# --- popups and controls never cover one another ---------------------------------------------

@pytest.mark.parametrize("size", [(1200, 800), (390, 740), (320, 568)],
                         ids=["desktop", "phone", "small-phone"])
def test_popup_clear_of_controls(open_map, demo_out, size):
    """The title, legend, layers, search and scale never overlap, and a popup opens inside the
    map under none of them, its ids and close button on top — also a long popup on a phone
    (legend folded, popup scrolled) and one opened under the title."""
    out, files = demo_out
    verdicts = gpd.read_file(out / "underwrite_wheat" / "verdicts.geojson").to_crs(4326)
    claims = pd.read_csv(out / "assess_hail" / "claims.csv", dtype={"parcel_id": str})
    geo = verdicts.set_index("parcel_id").geometry
    m = open_map(files["map_wheat.html"], viewport={"width": size[0], "height": size[1]},
                 is_mobile=size[0] < 500, has_touch=size[0] < 500)
    m.page.wait_for_function("agri3sMap.app.offline === true")  # the offline note is shown
    boxes = control_boxes(m)
    assert len(boxes) >= 7
    for k, a in enumerate(boxes):
        for b in boxes[k + 1:]:
            assert not overlap(a, b), (a, b)
    legend_open = m.js("!agri3sMap.app.legendBody.hidden")
    # the longest popup: the parcel whose verdict and claim give the most reasons
    n_reasons = claims.set_index("parcel_id")["reasons"].str.count(";") + verdicts.set_index(
        "parcel_id")["reasons"].str.count(";")
    tall = n_reasons.idxmax()
    # a point on the map (not on a control) where a popup opening upwards meets the title:
    # beside the right column of controls, or on phones just under the top controls
    right = min(b["l"] for b in boxes if b["l"] > size[0] / 2 and b["t"] < size[1] / 2)
    left = max(b["r"] for b in boxes if b["r"] < size[0] / 2 and b["t"] < size[1] / 2)
    under = max(b["b"] for b in boxes if b["t"] < size[1] / 2)
    corner = (right - 20, 60) if right - 20 > left + 20 else (size[0] / 2, under + 20)
    for pid, at in ((tall, None), (verdicts["parcel_id"].iloc[0], corner)):
        m.js("agri3sMap.app.map.closePopup()")
        m.page.wait_for_timeout(250)
        p = geo[pid].representative_point()
        m.view(p.y, p.x, 17)
        if at:  # move the parcel under the title / layer control before clicking it
            x, y = m.point(p.y, p.x)
            m.js("([dx, dy]) => agri3sMap.app.map.panBy([dx, dy], {animate: false})",
                 [x - at[0], y - at[1]])
            m.page.wait_for_timeout(150)
        m.page.mouse.click(*m.point(p.y, p.x))
        m.page.wait_for_selector(".a3pop .a3pid")
        assert pid_shown(m) == pid
        pop = popup_box(m)
        assert pop["l"] >= 0 and pop["t"] >= 0 and pop["r"] <= size[0] and pop["b"] <= size[1]
        for c in control_boxes(m):
            assert not overlap(pop, c), (pop, c)
        assert popup_id_visible(m) and on_top(m, ".a3pop .a3pol")
        assert on_top(m, ".leaflet-popup-close-button")
    m.js("agri3sMap.app.map.closePopup()")
    assert m.js("!agri3sMap.app.legendBody.hidden") == legend_open  # unfolded again


# --- every code the exports may hold has a label in both languages ---------------------------

def test_every_exported_code_translated(open_map, demo_out):
    out, files = demo_out
    enums = {}
    for export, table, col in (("underwrite_wheat/verdicts", "status", "status"),
                               ("assess_hail/claims", "claim_status", "status"),
                               ("assess_hail/claims", "grade", "loss_grade")):
        schema = json.loads((out / f"{export}.schema.json").read_text())
        enums[table] = schema["properties"][col]["enum"]
    assert "unknown" in enums["grade"] and "below_threshold" in enums["claim_status"]
    for name, lang in (("map_wheat.html", "zh"), ("map_wheat_en.html", "en")):
        m = open_map(files[name])
        labels = m.js("agri3sMap.app.LB")
        legend = m.page.locator(".a3legend").inner_text()
        for table, codes in enums.items():
            for code in codes:
                text = labels[table].get(code)
                assert text, (lang, table, code)
                assert bool(CJK.search(text)) == (lang == "zh"), (lang, table, code, text)
                # the loss layer is shown: its legend lists every grade and the statuses of
                # claims without one (estimated, below_threshold, survey are coloured by grade)
                if table == "grade" or code in ("not_affected", "no_data", "invalid"):
                    assert text in legend, (lang, code)
        assert ("无法估损" if lang == "zh" else "not estimated") == labels["grade"]["unknown"]


# --- field photos ----------------------------------------------------------------------------

def test_photos_in_the_popup(open_map, tmp_path, monkeypatch):
    """Photos matched to a parcel show in its popup and as points of their own layer; a
    relative path with a space and a '#' still opens from a map written in another folder."""
    from PIL import Image

    c = load_county().county(140)
    parcels = c["parcels"].to_crs(4326)
    target = parcels.iloc[40]
    folder = tmp_path / "field photos"
    folder.mkdir()
    for k, colour in enumerate(("red", "blue")):
        Image.new("RGB", (64 + k, 48), colour).save(folder / f"IMG #{k}.jpg")
    # one photo in the parcel's south end (clear of where the test clicks it), one outside it
    utm = c["parcels"].geometry.iloc[40]
    inside = gpd.GeoSeries([shapely.Point(utm.centroid.x, utm.bounds[1] + 12)],
                           crs=c["parcels"].crs).to_crs(4326).iloc[0]
    near = parcels.iloc[80].geometry.representative_point()
    photos = gpd.GeoDataFrame({
        "photo_id": ["IMG #0.jpg", "IMG #1.jpg"],
        "path": ["field photos/IMG #0.jpg", "field photos/IMG #1.jpg"],
        "taken_at": ["2025-05-20T10:00:00", "2025-05-20T10:02:00"],
        "parcel_id": [target["parcel_id"]] * 2}, geometry=[inside, near], crs=4326)
    monkeypatch.chdir(tmp_path)  # as `agri3s photos` writes them: relative to where it ran
    page = build_map(c["parcels"], verdicts=c["verdicts"], claims=c["claims"], photos=photos)
    path = write_map(page, tmp_path / "maps" / "photos.html")
    m = open_map(path)
    check_opened_offline(m)  # the photos are file: requests that succeed
    click_parcel(m, target.geometry)
    pop = m.page.locator(".a3pop").last
    assert pid_shown(m) == target["parcel_id"]
    imgs = pop.locator(".a3photos img")
    assert imgs.count() == 2
    m.page.wait_for_function("[...document.querySelectorAll('.a3pop .a3photos img')].every("
                             "i => i.complete && i.naturalWidth > 0)")
    assert m.js("[...document.querySelectorAll('.a3pop .a3photos img')].slice(-2)"
                ".map(i => i.naturalWidth)") == [64, 65]
    assert "IMG #1.jpg · 2025-05-20T10:02:00" in pop.inner_text()
    assert "现场照片" in m.page.locator(".a3legend").inner_text()
    # the photo point (outside the parcel it was matched to) opens the photo's own popup
    m.js("agri3sMap.app.map.closePopup()")
    m.page.wait_for_timeout(250)
    m.view(near.y, near.x, 17)
    m.page.mouse.click(*m.point(near.y, near.x))
    m.page.wait_for_function("[...document.querySelectorAll('.leaflet-popup')].some("
                             "p => p.innerText.includes('IMG #1.jpg'))")
    last = m.page.locator(".leaflet-popup").last.inner_text()
    assert target["parcel_id"] in last and "拍摄时间" in last
    toggle(m, "现场照片")
    assert not m.js("agri3sMap.app.map.hasLayer(agri3sMap.app.layers.photo)")


# --- the click favours the smaller parcel ----------------------------------------------------

def test_click_beside_a_strip_selects_the_strip(open_map, county_map):
    """At zoom 16 a 6 m strip is 3 px wide: a click 3 px outside it, inside its 52 m neighbour,
    still selects the strip (within the 5 px tolerance); 10 px out selects the neighbour."""
    path, c, page = county_map
    p = c["parcels"].to_crs(4326).set_index("parcel_id")
    strip, wide = p.index[6 + 7 * 40], p.index[5 + 7 * 40]  # the wide field lies west of it
    m = open_map(path)
    w, s, e, n = p.geometry[strip].bounds
    mid = (s + n) / 2
    for dx, want in ((3, strip), (10, wide)):
        m.js("agri3sMap.app.map.closePopup()")
        m.page.wait_for_timeout(250)
        m.view(mid, (w + e) / 2, 16)
        x, y = m.point(mid, w)
        m.page.mouse.click(x - dx, y)
        m.page.wait_for_selector(".a3pop .a3pid")
        assert pid_shown(m) == want, dx
