"""The loss adjuster's map: parcels coloured by verdict / loss grade, popups with NDVI charts.

One ``folium.GeoJson`` layer per result table, with exactly one feature per parcel. Each feature
carries ready-made ``popup`` and ``tip`` HTML strings (shown with ``GeoJsonPopup`` /
``GeoJsonTooltip``, which insert them with ``innerHTML`` *without* escaping) and a ``style`` dict.
All user text is therefore passed through :func:`html.escape` exactly once, here, when the HTML
strings are built; folium then embeds the data with Jinja's ``tojson`` (``<``, ``>``, ``&`` and
``'`` as ``\\u00XX``), so no user text can close the ``<script>`` block either.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from folium.utilities import mercator_transform

from ..errors import InputError
from .privacy import mask_id_number, mask_name

STATUS_COLORS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828",
                 "no_data": "#9e9e9e", "invalid": "#6a1b9a"}
GRADE_COLORS = {"none": "#a5d6a7", "light": "#fff176", "moderate": "#ffa726",
                "severe": "#e64a19", "total": "#7f0000"}
NO_RESULT_COLOR = "#9e9e9e"
PHOTO_COLOR = "#0d47a1"
NDVI_RAMP = ("#8c510a", "#d8b365", "#f6e8c3", "#a6d96a", "#1a9641")  # vmin → vmax
LANGS = ("zh", "en")

# (zh, en) for every label on the map.
STATUS_LABELS = {"green": ("通过", "pass"), "yellow": ("待核", "review"), "red": ("不通过", "fail"),
                 "no_data": ("无数据", "no data"), "invalid": ("无效", "invalid")}
GRADE_LABELS = {"none": ("无损", "none"), "light": ("轻度", "light"), "moderate": ("中度", "moderate"),
                "severe": ("重度", "severe"), "total": ("绝收", "total loss")}
CLAIM_STATUS_LABELS = {"estimated": ("已估损", "estimated"),
                       "below_threshold": ("未达起赔点", "below threshold"),
                       "survey": ("需现场查勘", "field survey"),
                       "not_affected": ("未受灾", "not affected"),
                       "no_data": ("无数据", "no data"), "invalid": ("无效", "invalid")}
EVENT_LABELS = {"hail": ("冰雹", "hail"), "flood": ("洪涝", "flood"), "drought": ("干旱", "drought"),
                "lodging": ("倒伏", "lodging"), "freeze": ("冻害", "freeze")}
CROP_LABELS = {"winter_wheat": "冬小麦", "summer_maize": "夏玉米", "spring_maize": "春玉米",
               "rice_single": "一季稻", "rice_early": "早稻", "rice_late": "晚稻",
               "soybean": "大豆", "cotton": "棉花", "rapeseed": "油菜"}
TEXT = {
    "verdict_layer": ("承保核验", "Underwriting verdict"), "loss_layer": ("损失等级", "Loss grade"),
    "photo_layer": ("现场照片", "Field photos"), "osm": ("OpenStreetMap 地图", "OpenStreetMap"),
    "esri": ("Esri 卫星影像", "Esri World Imagery"), "parcel": ("地块", "Parcel"),
    "policy": ("保单", "Policy"), "household": ("农户编号", "Household"), "crop": ("作物", "Crop"),
    "declared": ("申报面积", "Declared area"), "farmer": ("农户", "Farmer"),
    "id_number": ("身份证号", "ID number"), "verdict": ("核验结论", "Verdict"),
    "planted": ("种植比例", "Planted fraction"), "measured": ("实测面积", "Measured area"),
    "emergence": ("出苗日期", "Emergence"), "peak": ("NDVI 峰值", "Peak NDVI"),
    "clear": ("晴空观测", "Clear observations"), "confidence": ("置信度", "Confidence"),
    "reasons": ("原因", "Reasons"), "event": ("灾害", "Event"), "loss_rate": ("损失率", "Loss rate"),
    "damaged": ("受损面积", "Damaged area"), "grade": ("损失等级", "Loss grade"),
    "indemnity": ("估算赔款", "Est. indemnity"), "status": ("状态", "Status"),
    "baseline": ("对照方法", "Baseline"), "mu": ("亩", "mu"), "cny": ("元", "CNY"),
    "no_result": ("无结果", "no result"), "no_clear": ("无晴空观测", "no clear observations"),
    "photo": ("照片", "Photo"), "taken": ("拍摄时间", "Taken at"),
    "not_drawn": ("{n} 个地块无图形，未显示", "{n} parcel(s) without geometry not shown"),
    "title_verdict": ("承保核验地图", "Underwriting verification map"),
    "title_loss": ("查勘定损地图", "Loss assessment map"), "title": ("农险遥感地图", "Crop insurance map"),
}
CSS = """<style>
.a3p th{text-align:left;white-space:nowrap;padding-right:6px;color:#555;font-weight:normal;
vertical-align:top}
.a3p ul{margin:0;padding-left:14px}.a3s{display:block;margin-top:4px;font:9px sans-serif}
.a3s polyline{fill:none;stroke:#2e7d32}.a3s circle{fill:#2e7d32}.a3s .e{text-anchor:end}
.a3box{position:fixed;z-index:9999;background:rgba(255,255,255,.92);padding:6px 10px;
border-radius:4px;box-shadow:0 1px 4px rgba(0,0,0,.3);font:12px sans-serif}
.a3box i,.a3p i{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:middle}
</style>"""


@dataclass(frozen=True, eq=False)
class RasterOverlay:
    """A raster drawn over the parcels, e.g. an NDVI image before or after an event.

    Parameters
    ----------
    name : str
        Layer name shown in the layer control and legend (escaped).
    values : numpy.ndarray
        2-D float array, first row north; NaN is drawn transparent.
    bounds_wgs84 : tuple of float
        ``(west, south, east, north)`` in degrees (EPSG:4326) of the array's outer edges.
    vmin, vmax : float
        Values mapped to the ends of the brown → green colour ramp.

    Examples
    --------
    >>> after = RasterOverlay("NDVI 灾后", np.full((10, 10), 0.4), (116.0, 36.0, 116.01, 36.01))
    """

    name: str
    values: np.ndarray
    bounds_wgs84: tuple[float, float, float, float]
    vmin: float = 0.0
    vmax: float = 1.0


def _t(key: str, lang: str) -> str:
    return TEXT[key][LANGS.index(lang)]


def _label(table: dict, code: object, lang: str) -> str:
    """Escaped label of a code (unknown codes are shown as they are, escaped)."""
    return html.escape(table[code][LANGS.index(lang)]) if code in table else _e(code)


def _missing(v: object) -> bool:
    return v is None or (not isinstance(v, (str, bytes)) and bool(np.ndim(v) == 0 and pd.isna(v)))


def _e(v: object) -> str:
    """Escaped text; missing values give an em dash."""
    return "—" if _missing(v) or str(v) == "" else html.escape(str(v))


def _num(v: object, fmt: str, unit: str = "") -> str:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _e(v)
    return "—" if np.isnan(x) else format(x, fmt) + unit


def _ts(v: object) -> pd.Timestamp | None:
    if _missing(v):
        return None
    try:
        t = pd.Timestamp(v)
    except (TypeError, ValueError):
        return None
    return None if pd.isna(t) else t.tz_localize(None) if t.tzinfo else t


def _date(v: object) -> str:
    t = _ts(v)
    return t.strftime("%Y-%m-%d") if t is not None else _e(v)


def _crop(code: object, lang: str) -> str:
    if lang == "zh" and code in CROP_LABELS:
        return CROP_LABELS[code]  # type: ignore[index]
    return _e(code).replace("_", " ")


def _reasons(row: pd.Series, lang: str) -> str:
    """The reasons as a list: texts in ``lang`` (joined by "；" or "; "), else the codes."""
    codes = [] if _missing(row.get("reasons")) else [
        c.strip() for c in str(row.get("reasons")).split(";") if c.strip()]
    text = row.get(f"reasons_{lang}")
    items = codes if _missing(text) or not str(text).strip() else [
        i.strip() for i in re.split(r"；|; ", str(text)) if i.strip()]
    if codes and items is not codes and len(items) != len(codes):
        items = [str(text).strip()]  # a text contains the separator itself: keep it whole
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else ""


def _ndvi_svg(times: np.ndarray, ndvi: np.ndarray, clear: np.ndarray,
              event: pd.Timestamp | None, lang: str) -> str:
    """A ~1 KB SVG: clear NDVI observations as dots and a line, axes 0–1, first / last date."""
    w, h, left, right, top, bottom = 240, 84, 22, 6, 5, 15
    days = times.astype("datetime64[D]").astype(np.int64)
    ev = np.datetime64(event.date(), "D").astype(np.int64) if event is not None else None
    lo, hi = days.min(), days.max()
    if ev is not None:
        lo, hi = min(lo, ev), max(hi, ev)
    span = max(int(hi - lo), 1)

    def x(d: float) -> float:
        return left + (d - lo) / span * (w - left - right)

    def y(v: float) -> float:
        return top + (1.0 - min(max(v, 0.0), 1.0)) * (h - top - bottom)

    yb = h - bottom
    # Numeric attribute values are left unquoted and styles live in CSS (class a3s): the popup
    # is JSON-escaped into the page (each quote costs two bytes, each "<" six).
    out = [f"<svg class=a3s width={w} height={h}>",
           f'<path d="M{left} {top}V{yb}H{w - right}" fill=none stroke=#888 />',
           f'<path d="M{left} {y(0.5):.0f}H{w - right}" stroke=#ddd />']
    for v in (1.0, 0.5, 0.0):
        out.append(f'<text class=e x={left - 3} y={y(v) + 3:.0f}>{v:g}</text>')
    first, last = (np.datetime64(int(d), "D") for d in (lo, hi))
    out.append(f'<text x={left} y={h - 3}>{first}</text>'
               f'<text class=e x={w - right} y={h - 3}>{last}</text>')
    if ev is not None:
        out.append(f'<path d="M{x(ev):.0f} {top}V{yb}" stroke=#c62828 stroke-dasharray=3 />')
    ok = clear & np.isfinite(ndvi)
    pts = [(x(d), y(v)) for d, v in zip(days[ok], ndvi[ok])]
    if len(pts) > 1:
        line = " ".join(f"{a:.0f},{b:.0f}" for a, b in pts)
        out.append(f'<polyline points="{line}"/>')
    if pts:
        out.append("".join(f"<circle cx={a:.0f} cy={b:.0f} r=2 />" for a, b in pts))
    else:
        out.append(f"<text x={(left + w) // 2} y={h // 2} text-anchor=middle>"
                   f'{_t("no_clear", lang)}</text>')
    return "".join(out) + "</svg>"


class _Series:
    """Fast per-parcel access to a (parcel, time) series Dataset."""

    def __init__(self, series: xr.Dataset | None):
        self.index: dict[str, int] = {}
        if series is None:
            return
        if "ndvi_mean" not in series or "parcel_id" not in series.coords:
            raise InputError("the series needs a variable 'ndvi_mean' and a coordinate "
                             "'parcel_id'.", source="series",
                             fix="pass the parcel series Dataset written by the pipeline")
        ndvi = series["ndvi_mean"].transpose("parcel", "time")
        self.times = pd.to_datetime(series["time"].values).values.astype("datetime64[D]")
        self.ndvi = np.asarray(ndvi.values, dtype=float)
        self.clear = (np.asarray(series["clear_fraction"].transpose("parcel", "time").values,
                                 dtype=float) >= 0.5 if "clear_fraction" in series
                      else np.isfinite(self.ndvi))
        self.index = {str(p): i for i, p in enumerate(series["parcel_id"].values)}

    def svg(self, parcel_id: str, event: pd.Timestamp | None, lang: str) -> str:
        i = self.index.get(parcel_id)
        if i is None or len(self.times) == 0:
            return ""
        return _ndvi_svg(self.times, self.ndvi[i], self.clear[i], event, lang)


def _by_parcel(table: pd.DataFrame | None, name: str, sort: str | None = None) -> dict:
    """``parcel_id`` → row (the latest by ``sort`` when a parcel has several rows)."""
    if table is None:
        return {}
    if "parcel_id" not in table.columns:
        raise InputError("the table has no 'parcel_id' column.", source=name)
    t = pd.DataFrame(table).copy()
    t["parcel_id"] = t["parcel_id"].astype(str)
    if sort and sort in t.columns:
        t = t.assign(_k=pd.to_datetime(t[sort], errors="coerce")).sort_values(
            "_k", ascending=False, kind="stable", na_position="last")
    t = t.drop_duplicates("parcel_id")
    return {pid: row for pid, row in zip(t["parcel_id"], (r for _, r in t.iterrows()))}


def _swatch(color: str) -> str:
    return f"<i style=background:{color}></i>"


def _rows_html(rows: list[tuple[str, str]]) -> str:
    """Table rows of the non-empty values (end tags of th / td / tr are optional in HTML)."""
    return "".join(f"<tr><th>{k}<td>{v}" for k, v in rows if v not in ("", "—"))


def _parcel_rows(p: pd.Series, lang: str, show_pii: bool) -> list[tuple[str, str]]:
    name, idn = p.get("farmer_name"), p.get("farmer_id_number")
    if not show_pii:
        name, idn = mask_name(name), mask_id_number(idn)
    return [(_t("parcel", lang), _e(p["parcel_id"])), (_t("policy", lang), _e(p.get("policy_id"))),
            (_t("household", lang), _e(p.get("household_id"))),
            (_t("farmer", lang), _e(name)), (_t("id_number", lang), _e(idn)),
            (_t("crop", lang), _crop(p.get("crop"), lang)),
            (_t("declared", lang), _num(p.get("declared_area_mu"), ".1f", " " + _t("mu", lang)))]


def _verdict_rows(v: pd.Series, lang: str) -> list[tuple[str, str]]:
    status = v.get("status")
    mu = " " + _t("mu", lang)
    measured = _num(v.get("measured_area_mu"), ".1f", mu)
    if not _missing(v.get("area_ratio")):
        measured += f" ({_num(v.get('area_ratio'), '.0%')})"
    peak = _num(v.get("peak_ndvi"), ".2f")
    if _ts(v.get("peak_date")) is not None:
        peak += f" ({_date(v.get('peak_date'))})"
    return [(_t("verdict", lang), _swatch(STATUS_COLORS.get(status, NO_RESULT_COLOR))
             + f"<b>{_label(STATUS_LABELS, status, lang)}</b>"),
            (_t("planted", lang), _num(v.get("planted_fraction"), ".0%")),
            (_t("measured", lang), measured), (_t("emergence", lang), _date(v.get("emergence_date"))),
            (_t("peak", lang), peak), (_t("clear", lang), _num(v.get("clear_observations"), ".0f")),
            (_t("confidence", lang), _num(v.get("confidence"), ".2f")),
            (_t("reasons", lang), _reasons(v, lang))]


def _claim_rows(c: pd.Series, lang: str) -> list[tuple[str, str]]:
    grade = c.get("loss_grade")
    rate, low, high = (c.get(k) for k in ("loss_rate", "loss_rate_low", "loss_rate_high"))
    rate = _num(rate, ".0%")
    if not (_missing(low) or _missing(high)):
        rate += f" [{_num(low, '.0%')}, {_num(high, '.0%')}]"
    event = (f"{_label(EVENT_LABELS, c.get('event_type'), lang)} {_date(c.get('event_date'))} "
             f"({_e(c.get('event_id'))})")
    return [(_t("event", lang), event),
            (_t("loss_rate", lang), rate),
            (_t("damaged", lang), _num(c.get("damaged_area_mu"), ".1f", " " + _t("mu", lang))),
            (_t("grade", lang), _swatch(GRADE_COLORS.get(grade, NO_RESULT_COLOR))
             + f"<b>{_label(GRADE_LABELS, grade, lang)}</b>" if not _missing(grade) else "—"),
            (_t("indemnity", lang), _num(c.get("indemnity_cny"), ",.0f", " " + _t("cny", lang))),
            (_t("status", lang), _label(CLAIM_STATUS_LABELS, c.get("status"), lang)),
            (_t("baseline", lang), _e(c.get("baseline_method"))),
            (_t("reasons", lang), _reasons(c, lang))]


def _style(color: str) -> dict:
    return {"color": color, "weight": 1.5, "fillColor": color, "fillOpacity": 0.45}


def _parcel_layer(m: folium.Map, parcels: gpd.GeoDataFrame, geoms: list, kind: str,
                  results: dict, series: _Series, lang: str, show_pii: bool, show: bool) -> None:
    features = []
    for (_, p), geom in zip(parcels.iterrows(), geoms):
        pid = str(p["parcel_id"])
        r = results.get(pid)
        if kind == "verdict":
            code = None if r is None else r.get("status")
            color, event = STATUS_COLORS.get(code, NO_RESULT_COLOR), None
            label = _label(STATUS_LABELS, code, lang)
            rows = _verdict_rows(r, lang) if r is not None else []
        else:
            code = None if r is None else r.get("loss_grade")
            color = GRADE_COLORS.get(code, NO_RESULT_COLOR)
            label = _label(GRADE_LABELS, code, lang) if not _missing(code) else (
                _label(CLAIM_STATUS_LABELS, r.get("status"), lang) if r is not None else "—")
            event = _ts(r.get("event_date")) if r is not None else None
            rows = _claim_rows(r, lang) if r is not None else []
        if r is None:
            label = _t("no_result", lang)
        popup = (f'<table class=a3p>{_rows_html(_parcel_rows(p, lang, show_pii) + rows)}'
                 f"</table>{series.svg(pid, event, lang)}")
        features.append({"type": "Feature", "geometry": geom, "properties": {
            "parcel_id": pid, "layer": kind, "tip": f"{_e(pid)} · {label}", "popup": popup,
            "style": _style(color)}})
    layer = folium.GeoJson({"type": "FeatureCollection", "features": features}, show=show,
                           name=_t(f"{kind}_layer", lang))
    if features:  # folium checks the fields against the first feature
        folium.GeoJsonPopup(fields=["popup"], labels=False, localize=False,
                            max_width=320).add_to(layer)
        folium.GeoJsonTooltip(fields=["tip"], labels=False, localize=False).add_to(layer)
    layer.add_to(m)


def _overlay_png(o: RasterOverlay) -> np.ndarray:
    """RGBA uint8 image (web-mercator rows) of an overlay; NaN transparent."""
    v = np.asarray(o.values, dtype=float)
    if v.ndim != 2 or v.size == 0 or not o.vmax > o.vmin:
        raise InputError("an overlay needs a non-empty 2-D array and vmax > vmin.",
                         source="overlays", row=o.name)
    west, south, east, north = o.bounds_wgs84
    if not (west < east and south < north):
        raise InputError("bounds_wgs84 must be (west, south, east, north).",
                         source="overlays", row=o.name)
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in NDVI_RAMP], dtype=float)
    pos = np.linspace(0, 1, len(NDVI_RAMP))
    s = np.clip(np.nan_to_num((v - o.vmin) / (o.vmax - o.vmin)), 0, 1)
    rgba = np.dstack([np.interp(s, pos, stops[:, k]) for k in range(3)]
                     + [np.where(np.isfinite(v), 220.0, 0.0)])
    rgba = mercator_transform(rgba, (south, north), origin="upper")
    return np.clip(np.rint(rgba), 0, 255).astype(np.uint8)


def _photo_layer(m: folium.Map, photos: gpd.GeoDataFrame, lang: str) -> None:
    if photos.crs is None:
        raise InputError("the photos have no CRS.", source="photos",
                         fix="set it (e.g. photos.set_crs(4326)) before building the map")
    pts = photos.to_crs(4326)
    features = []
    for _, ph in pts.iterrows():
        g = ph.geometry
        if g is None or g.is_empty:
            continue
        src = ph.get("url") if not _missing(ph.get("url")) else ph.get("path")
        img = (f'<img src="{html.escape(str(src), quote=True)}" style="max-width:240px;'
               f'max-height:180px;display:block">' if not _missing(src) else "")
        rows = [(_t("photo", lang), _e(ph.get("photo_id"))), (_t("parcel", lang),
                _e(ph.get("parcel_id"))), (_t("taken", lang), _e(ph.get("taken_at")))]
        features.append({"type": "Feature", "properties": {
            "layer": "photo", "tip": _e(ph.get("photo_id")),
            "popup": f'<table class=a3p>{_rows_html(rows)}</table>{img}',
            "style": {"color": PHOTO_COLOR, "fill": True, "fillColor": "#42a5f5", "fillOpacity": 0.9,
                      "weight": 2}},
            "geometry": {"type": "Point", "coordinates": [round(g.x, 6), round(g.y, 6)]}})
    layer = folium.GeoJson({"type": "FeatureCollection", "features": features},
                           name=_t("photo_layer", lang), marker=folium.CircleMarker(radius=6))
    if features:
        folium.GeoJsonPopup(fields=["popup"], labels=False, localize=False,
                            max_width=260).add_to(layer)
        folium.GeoJsonTooltip(fields=["tip"], labels=False, localize=False).add_to(layer)
    layer.add_to(m)


def _legend(sections: list[tuple[str, list[tuple[str, str]]]], notes: list[str]) -> str:
    parts = []
    for head, items in sections:
        parts.append(f"<b>{head}</b><br>" + "<br>".join(
            f'<i style="background:{c}{";width:60px" if "gradient" in c else ""}"></i>{text}'
            for c, text in items))
    return ('<div class="a3box" style="bottom:24px;left:10px">' + "<br>".join(parts)
            + "".join(f"<br><small>{n}</small>" for n in notes) + "</div>")


def build_map(parcels: gpd.GeoDataFrame, *, verdicts: pd.DataFrame | None = None,
              claims: pd.DataFrame | None = None, series: xr.Dataset | None = None,
              lang: str = "zh", show_pii: bool = False, title: str | None = None,
              overlays: Sequence[RasterOverlay] = (),
              photos: gpd.GeoDataFrame | None = None) -> folium.Map:
    """Build the adjuster's map of parcels, verdicts, claims, NDVI overlays and field photos.

    Parameters
    ----------
    parcels : geopandas.GeoDataFrame
        Parcels in any CRS (reprojected to EPSG:4326), with ``parcel_id`` and optionally
        ``policy_id, household_id, crop, declared_area_mu, farmer_name, farmer_id_number``.
    verdicts, claims : pandas.DataFrame, optional
        Underwriting verdicts / claim estimates keyed by ``parcel_id``; each given table adds a
        toggleable layer with one feature per parcel (parcels without a row: "no result"). A
        parcel with several claims shows the one with the latest ``event_date``.
    series : xarray.Dataset, optional
        Parcel series (``ndvi_mean``, ``clear_fraction``; coordinate ``parcel_id``), drawn as a
        small SVG chart in each popup.
    lang : {"zh", "en"}
        Language of every label.
    show_pii : bool
        Show farmers' names and ID numbers unmasked (only for the insurer's own staff).
    title : str, optional
        Title shown at the top (escaped); a default title depends on the layers.
    overlays : sequence of RasterOverlay
        Rasters (e.g. NDVI before / after) added as hidden, toggleable image layers.
    photos : geopandas.GeoDataFrame, optional
        Field photo points (``photo_id``, ``path`` or ``url``, ``taken_at``, ``parcel_id``).

    Returns
    -------
    folium.Map
        Save it with :func:`write_map`.

    Raises
    ------
    InputError
        Unknown ``lang``, parcels (or photos) without a CRS, a table without ``parcel_id``, a
        malformed overlay.

    Examples
    --------
    >>> m = build_map(parcels, verdicts=verdicts, series=series, lang="en")  # doctest: +SKIP
    >>> write_map(m, "maps/underwriting.html")  # doctest: +SKIP
    """
    if lang not in LANGS:
        raise InputError(f"lang must be 'zh' or 'en', not {lang!r}.", source="lang",
                         fix="pass lang='zh' or lang='en'")
    if parcels.crs is None:
        raise InputError("the parcels have no CRS; it is never assumed.", source="parcels",
                         fix="set the CRS of the parcel file (e.g. gdf.set_crs(4490))")
    if "parcel_id" not in parcels.columns:
        raise InputError("the parcels have no 'parcel_id' column.", source="parcels")
    wgs = parcels.to_crs(4326)
    geo = wgs.geometry.values
    drawn = ~(pd.isna(geo) | shapely.is_empty(geo))
    wgs, geo = wgs[drawn], shapely.transform(geo[drawn], lambda c: np.round(c, 6))
    geoms = [shapely.geometry.mapping(g) for g in geo]

    # Base layers are WGS84 (web mercator) tiles. Chinese GCJ-02 tile services (AMap / Gaode,
    # Tencent) would shift the parcels by 50–500 m, so they are deliberately not offered.
    m = folium.Map(tiles=None, control_scale=True, prefer_canvas=True)
    folium.TileLayer("OpenStreetMap", name=_t("osm", lang)).add_to(m)
    folium.TileLayer(
        "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/"
        "{z}/{y}/{x}", attr="Esri, Maxar, Earthstar Geographics", name=_t("esri", lang),
        max_zoom=19, show=False).add_to(m)
    m.get_root().header.add_child(folium.Element(CSS))

    legend: list[tuple[str, list[tuple[str, str]]]] = []
    for o in overlays:
        west, south, east, north = o.bounds_wgs84
        folium.raster_layers.ImageOverlay(_overlay_png(o), bounds=[[south, west], [north, east]],
                                          name=html.escape(o.name), show=False,
                                          pixelated=True).add_to(m)
        ramp = "linear-gradient(to right," + ",".join(NDVI_RAMP) + ")"
        legend.append((html.escape(o.name), [(ramp, f"{o.vmin:g} – {o.vmax:g}")]))
    ts = _Series(series)
    na = [(NO_RESULT_COLOR, _t("no_result", lang))]
    if verdicts is not None:
        _parcel_layer(m, wgs, geoms, "verdict", _by_parcel(verdicts, "verdicts"), ts, lang,
                      show_pii, show=claims is None)
        legend.insert(0, (_t("verdict_layer", lang), [
            (c, _label(STATUS_LABELS, s, lang)) for s, c in STATUS_COLORS.items()]))
    if claims is not None:
        _parcel_layer(m, wgs, geoms, "loss", _by_parcel(claims, "claims", sort="event_date"), ts,
                      lang, show_pii, show=True)
        legend.insert(0, (_t("loss_layer", lang), [
            (c, _label(GRADE_LABELS, g, lang)) for g, c in GRADE_COLORS.items()] + na))
    if photos is not None:
        _photo_layer(m, photos, lang)
        legend.append((_t("photo_layer", lang), [(PHOTO_COLOR, _t("photo", lang))]))
    folium.LayerControl(collapsed=False).add_to(m)

    notes = [_t("not_drawn", lang).format(n=int((~drawn).sum()))] if (~drawn).any() else []
    if legend or notes:
        m.get_root().html.add_child(folium.Element(_legend(legend, notes)))
    key = "title_loss" if claims is not None else "title_verdict" if verdicts is not None else "title"
    m.get_root().html.add_child(folium.Element(
        '<div class="a3box" style="top:10px;left:50%;transform:translateX(-50%);font-size:15px">'
        f"<b>{html.escape(title) if title else _t(key, lang)}</b></div>"))

    if len(wgs):
        west, south, east, north = wgs.total_bounds
        m.fit_bounds([[south, west], [north, east]])
    elif overlays:
        west, south, east, north = overlays[0].bounds_wgs84
        m.fit_bounds([[south, west], [north, east]])
    return m


def write_map(m: folium.Map, path: str | Path) -> Path:
    """Write the map's HTML atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    m : folium.Map
        A map from :func:`build_map`.
    path : str or pathlib.Path
        The ``.html`` file to write; its folder is created if needed.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> write_map(build_map(parcels), "maps/parcels.html")  # doctest: +SKIP
    PosixPath('maps/parcels.html')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = m.get_root().render()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the map is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
