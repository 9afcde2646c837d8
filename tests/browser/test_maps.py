"""The adjuster maps in a real browser (Debian's chromium, Playwright), with no network: the demo
maps (zh, en) and a generated county of 100,000 parcels open, draw, and answer real clicks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from agri_3s.outputs.webmap import write_maps

TILE_HOSTS = ("tile.openstreetmap.org", "server.arcgisonline.com")


def check_opened_offline(m) -> None:
    """No page error, no failed asset, Leaflet loaded, web tiles given up for the fallback."""
    assert m.errors == []
    own = [(u, t) for u, t in m.requests if not any(h in u for h in TILE_HOSTS)]
    assert all(u.startswith(("file:", "data:", "blob:")) for u, _ in own), own
    assert not [f for f in m.failed if not any(h in f[0] for h in TILE_HOSTS)]
    assert all(t == "image" for u, t in m.failed)  # only web tiles were cut off
    assert m.js("L.version") == "1.9.4"
    m.page.wait_for_function("agri3sMap.app.offline === true")
    assert m.page.locator(".a3offline").is_visible()
    # no broken-tile grid: no web tile image left visible
    assert m.js("""[...document.querySelectorAll('img.leaflet-tile')].filter(
        i => getComputedStyle(i).visibility !== 'hidden' && i.naturalWidth === 0).length""") == 0


def drawn_pixels(m) -> int:
    """Non-transparent pixels on the parcel layers' canvas tiles."""
    return m.js("""[...document.querySelectorAll('.leaflet-a3parcels-pane canvas')].reduce(
        (n, c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) k++; return n + k; }, 0)""")


def pid_shown(m) -> str:
    """The parcel id of the open popup (the last one: a closed popup fades out for 200 ms)."""
    return m.page.locator(".a3pop .a3pid").last.inner_text()


def popup_id_visible(m) -> bool:
    """The popup's parcel id is on screen and no control lies over it."""
    return m.js("""() => { const e = [...document.querySelectorAll('.a3pop .a3pid')].pop();
        if (!e) return false; const r = e.getBoundingClientRect();
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return r.width > 0 && !!hit && e.contains(hit); }""")


def click_parcel(m, geometry, zoom: int = 17) -> None:
    """A real mouse click inside a parcel (at ``zoom``, any popup closed first)."""
    m.js("agri3sMap.app.map.closePopup()")
    m.page.wait_for_timeout(250)  # the closed popup has faded out
    p = geometry.representative_point()
    m.view(p.y, p.x, zoom)
    x, y = m.point(p.y, p.x)
    m.page.mouse.click(x, y)
    m.page.wait_for_selector(".a3pop .a3pid")


def toggle(m, name: str) -> None:
    """A real click on a layer's entry in the layer control."""
    m.page.hover(".leaflet-control-layers")
    m.page.locator(".leaflet-control-layers label", has_text=name).first.click()
    m.page.wait_for_timeout(200)


def screenshot_not_blank(m, path) -> None:
    from PIL import Image

    m.page.screenshot(path=str(path))
    img = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    colours = np.unique(img[::7], axis=0)
    assert len(colours) > 50 and img.std() > 20


# --- the demo maps ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wheat(demo_out):
    out, files = demo_out
    verdicts = gpd.read_file(out / "underwrite_wheat" / "verdicts.geojson").to_crs(4326)
    claims = pd.read_csv(out / "assess_hail" / "claims.csv", dtype={"parcel_id": str})
    return out, files, verdicts, claims


def test_demo_map_offline_zh(open_map, wheat, tmp_path):
    out, files, verdicts, claims = wheat
    m = open_map(files["map_wheat.html"])
    check_opened_offline(m)
    assert drawn_pixels(m) > 10_000
    assert m.js("agri3sMap.app.G.n") == len(verdicts)
    # the claim on a parcel underwriting rejected: outlined, and flagged in its popup
    flagged = claims.loc[claims["reasons"].str.contains("UNDERWRITING_REJECTED"), "parcel_id"]
    assert len(flagged)
    pid = flagged.iloc[0]
    click_parcel(m, verdicts.set_index("parcel_id").geometry[pid])
    pop = m.page.locator(".a3pop").last  # a closed popup fades out for 200 ms
    assert pid_shown(m) == pid and popup_id_visible(m)
    assert "承保核验未通过" in pop.locator(".a3flag").inner_text()
    assert "不通过" in pop.locator(".a3verdict").inner_text()  # verdict beside the claim
    assert "查勘定损" in pop.inner_text() and "地块" in pop.inner_text()
    # the chart: one dot per clear look of this parcel (underwriting series, look_flag 0,
    # plus the assessment's clear looks on other dates)
    assert pop.locator("svg.a3chart circle").count() >= 10
    # the popup is clear of the title and the legend
    screenshot_not_blank(m, tmp_path / "wheat.png")


def test_demo_map_layers_and_imagery(open_map, wheat):
    out, files, verdicts, claims = wheat
    m = open_map(files["map_wheat_en.html"])
    check_opened_offline(m)
    names = m.js("agri3sMap.app.images.map(i => i.info.name)")
    assert any(n.startswith("False colour (NIR) after 2025-05-") for n in names)
    assert any(n.startswith("NDVI change") for n in names)
    # offline, the after image replaced the web map: it is drawn (its pixels decoded)
    assert m.js("""[...document.querySelectorAll('img.a3image')].some(
        i => i.naturalWidth > 100 && getComputedStyle(i).display !== 'none')""")
    # layer toggles: loss grade off, verdicts on; the legend follows
    assert m.js("agri3sMap.app.map.hasLayer(agri3sMap.app.layers.loss)")
    toggle(m, "Loss grade")
    assert not m.js("agri3sMap.app.map.hasLayer(agri3sMap.app.layers.loss)")
    toggle(m, "Underwriting verdict")
    assert m.js("agri3sMap.app.map.hasLayer(agri3sMap.app.layers.verdict)")
    assert "review" in m.page.locator(".a3legend").inner_text()
    toggle(m, "NDVI change")
    assert m.js("agri3sMap.app.map.hasLayer(agri3sMap.app.images.find("
                "i => i.info.kind === 'ndvi_change').layer)")
    assert "-0.5 – 0.5" in m.page.locator(".a3legend").inner_text()
    # English popup with a chart
    pid = verdicts["parcel_id"].iloc[10]
    click_parcel(m, verdicts.set_index("parcel_id").geometry[pid])
    pop = m.page.locator(".a3pop").last  # a closed popup fades out for 200 ms
    assert pid_shown(m) == pid and popup_id_visible(m)
    assert "Underwriting" in pop.inner_text() and "Claim" in pop.inner_text()
    assert "地块" not in pop.inner_text()
    assert pop.locator("svg.a3chart").count() == 1


def test_demo_exports_consistent(wheat, demo_out):
    out, files, verdicts, claims = wheat
    for run in ("assess_hail", "assess_flood"):
        c = pd.read_csv(out / run / "claims.csv", dtype={"parcel_id": str})
        assert (c.loc[c["status"] == "not_affected", "damaged_area_mu"] == 0).all()
        v = pd.read_csv(out / ("underwrite_wheat" if run == "assess_hail" else
                               "underwrite_maize") / "verdicts.csv", dtype={"parcel_id": str})
        red = c["parcel_id"].map(v.set_index("parcel_id")["status"]) == "red"
        payable = c["status"].isin(["estimated", "survey"])
        assert (c["reasons"].str.contains("UNDERWRITING_REJECTED") == (red & payable)).all()
    # each combined demo map weighs at most 700 bytes per parcel (file size / its parcels)
    for name, crop in (("map_wheat.html", "wheat"), ("map_maize.html", "maize")):
        n = len(gpd.read_file(out / f"underwrite_{crop}" / "verdicts.geojson"))
        assert files[name].stat().st_size / n <= 700, (name, files[name].stat().st_size / n)


# --- a county of 100,000 parcels -------------------------------------------------------------

def test_county_map(open_map, county_map, tmp_path):
    path, c, page = county_map
    assert path.stat().st_size <= 60e6
    m = open_map(path)
    assert m.seconds <= 10, m.seconds
    check_opened_offline(m)
    assert m.js("agri3sMap.app.G.n") == 100_000 and drawn_pixels(m) > 100_000
    p = c["parcels"].to_crs(4326).set_index("parcel_id")
    # a 6 m strip (every 7th field) between wide fields: the click selects the strip
    strip = p.index[6 + 7 * 40]
    click_parcel(m, p.geometry[strip], zoom=16)
    assert pid_shown(m) == strip and popup_id_visible(m)
    wide = p.index[5 + 7 * 40]  # its 52 m neighbour, clicked in its middle
    click_parcel(m, p.geometry[wide], zoom=16)
    assert pid_shown(m) == wide
    # popup values are the generated ones; one chart dot per clear look
    i = int(np.flatnonzero(p.index == wide)[0])
    pop = m.page.locator(".a3pop").last  # a closed popup fades out for 200 ms
    assert c["verdicts"]["status"].iloc[i] in ("green", "yellow", "red", "no_data", "invalid")
    want = {"green": "通过", "yellow": "待核", "red": "不通过", "no_data": "无数据",
            "invalid": "无效"}[c["verdicts"]["status"].iloc[i]]
    assert want in pop.locator(".a3verdict").inner_text()
    clear = int((c["series"]["look_flag"].values[i] == 0).sum())
    assert pop.locator("svg.a3chart circle").count() == clear
    # the imagery shows: offline, the after image (blue checkerboard of the generated scene);
    # toggled to the before image (red), the screen turns red
    toggle(m, "损失等级")
    m.js("agri3sMap.app.map.closePopup()")
    w, s, e, n = c["parcels"].to_crs(4326).total_bounds
    m.view((s + n) / 2, (w + e) / 2, 14)
    from PIL import Image

    def centre_colour(name):
        m.page.wait_for_function("""[...document.querySelectorAll('img.a3image')].every(
            i => i.complete)""")
        m.page.screenshot(path=str(tmp_path / name))
        rgb = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=float)
        return rgb[200:600, 300:900].reshape(-1, 3).mean(axis=0)

    after = centre_colour("after.png")
    assert after[2] > after[0] + 30, after
    toggle(m, "灾后")
    toggle(m, "灾前")
    before = centre_colour("before.png")
    assert before[0] > before[2] + 30, before
    screenshot_not_blank(m, tmp_path / "county.png")


def test_county_search_and_where_am_i(open_map, county_map):
    path, c, page = county_map
    p = c["parcels"].to_crs(4326)
    target = p.iloc[4321]
    here = target.geometry.representative_point()
    m = open_map(path, geolocation={"latitude": here.y, "longitude": here.x, "accuracy": 8},
                 permissions=["geolocation"])
    box = m.page.locator(".a3search input")
    box.fill(target["policy_id"])
    box.press("Enter")
    m.page.wait_for_selector(".a3pop .a3pid")
    assert pid_shown(m) == target["parcel_id"]
    assert popup_id_visible(m)
    box.fill(target["household_id"])  # a household farms 3 parcels
    box.press("Enter")
    assert m.page.locator(".a3results .a3result").count() == 3
    box.fill("no-such-id")
    box.press("Enter")
    assert "未找到" in m.page.locator("#a3msg").inner_text()
    m.js("agri3sMap.app.map.closePopup()")
    m.js("agri3sMap.app.map.setView([0, 0], 5)")  # far away: "where am I" brings it back
    m.page.wait_for_timeout(250)
    m.page.locator(".a3locate a").click()
    m.page.wait_for_selector(".a3here")
    m.page.wait_for_selector(".a3pop .a3pid")
    assert pid_shown(m) == target["parcel_id"]
    assert m.page.locator(".a3here").count() == 1
    assert target["parcel_id"] in m.page.locator("#a3msg").inner_text()


def test_split_map_index_opens(open_map, county_map, tmp_path):
    path, c, page = county_map
    sub = c["parcels"].iloc[:3000]
    files = write_maps(sub, tmp_path / "split.html", max_parcels=1000,
                       claims=c["claims"].iloc[:3000], imagery=c["imagery"])
    m = open_map(files["split.html"])
    assert m.errors == []
    assert m.js("document.querySelectorAll('.leaflet-interactive').length") == 4
    part = open_map(tmp_path / "split_01.html")
    check_opened_offline(part)
    assert part.js("agri3sMap.app.G.n") <= 1000
    assert "1 / 4" in part.page.locator(".a3title").inner_text()
