"""The adjuster map as one self-contained HTML file: Leaflet, the map's script and its data.

:func:`build_map` turns parcels, verdicts, claims, the parcel series, imagery layers and field
photos into a :class:`MapPage`; :func:`write_map` writes it atomically. The page needs no network:
Leaflet and every style and icon are inlined (:mod:`.assets`), the data is one compressed block
(:mod:`.data`), and the web base maps are only used when they answer — offline the page falls
back to the job's imagery or a plain background and says so.

User text never becomes markup: the page builds popups with ``textContent``, and the data block
is base64, so no value can close a ``<script>`` element.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from ...decisions.crosscheck import rejected_claims
from ...errors import InputError
from ..export import output_file
from ..privacy import PII_COLUMNS, mask_pii
from . import assets
from .data import (
    Container,
    category_column,
    date_column,
    encode_geometry,
    ndvi_matrix,
    number_column,
    text_column,
)
from .imagery import ImageLayer, encode_image, ramp_rgb
from .labels import IMAGERY_LABELS, LANGS, NDVI_RAMP, page_labels, text
from .results import clear_ndvi

#: Imagery share of a map: this many bytes per parcel, within the bounds below (all layers).
IMAGERY_BYTES_PER_PARCEL = 160
IMAGERY_BYTES_MIN, IMAGERY_BYTES_MAX = 60_000, 12_000_000

_VERDICT_NUMBERS = {"planted_fraction": 3, "measured_area_mu": 2, "area_ratio": 3,
                    "peak_ndvi": 3, "clear_observations": 0, "confidence": 3}
_VERDICT_DATES = ("emergence_date", "peak_date")
_VERDICT_CODES = ("status", "reasons", "decided_by", "unobserved")
_CLAIM_NUMBERS = {"loss_rate": 3, "loss_rate_low": 3, "loss_rate_high": 3,
                  "parcel_loss_rate": 3, "damaged_area_mu": 2, "indemnity_cny": 2,
                  "flooded_fraction": 3, "footprint_share": 3, "payout_threshold": 3}
_CLAIM_CODES = ("event_id", "event_type", "status", "loss_grade", "baseline_method", "reasons",
                "imagery_dates", "growth_stage")
_PARCEL_CODES = ("crop", "household_id")


@dataclass(frozen=True, eq=False)
class RasterOverlay:
    """A raster of values drawn over the parcels with a colour ramp (e.g. an NDVI image).

    Parameters
    ----------
    name : str
        Layer name shown in the layer control and legend.
    values : numpy.ndarray
        2-D float array, first row north, rows evenly spaced in latitude; NaN drawn grey.
    bounds_wgs84 : tuple of float
        ``(west, south, east, north)`` in degrees of the array's outer edges.
    vmin, vmax : float
        Values mapped to the ends of the brown → green ramp.

    Examples
    --------
    >>> after = RasterOverlay("NDVI 灾后", np.full((10, 10), 0.4), (116.0, 36.0, 116.01, 36.01))
    """

    name: str
    values: np.ndarray
    bounds_wgs84: tuple[float, float, float, float]
    vmin: float = 0.0
    vmax: float = 1.0

    def image(self) -> ImageLayer:
        """The overlay as an image layer on web-mercator rows."""
        v = np.asarray(self.values, dtype=float)
        if v.ndim != 2 or v.size == 0 or not self.vmax > self.vmin:
            raise InputError("an overlay needs a non-empty 2-D array and vmax > vmin.",
                             source="overlays", row=self.name)
        west, south, east, north = self.bounds_wgs84
        if not (west < east and south < north):
            raise InputError("bounds_wgs84 must be (west, south, east, north).",
                             source="overlays", row=self.name)
        # rows evenly spaced in latitude → evenly spaced in mercator y (what Leaflet stretches)
        merc = np.log(np.tan(np.pi / 4 + np.radians([south, north]) / 2))
        y = np.linspace(merc[1], merc[0], v.shape[0] * 2 + 1)[1::2]
        lat = np.degrees(2 * np.arctan(np.exp(y)) - np.pi / 2)
        rows = np.clip(((north - lat) / (north - south) * v.shape[0]).astype(int), 0,
                       v.shape[0] - 1)
        rgb = ramp_rgb(v[rows], self.vmin, self.vmax, NDVI_RAMP)
        return ImageLayer("raster", rgb, self.bounds_wgs84, name=self.name, legend="ndvi",
                          vmin=self.vmin, vmax=self.vmax)


@dataclass
class MapPage:
    """A built map: its HTML text and what it holds (for reports and tests)."""

    html: str
    n_parcels: int
    n_drawn: int
    layers: list[str] = field(default_factory=list)
    imagery: list[str] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


def _aligned(table: pd.DataFrame | None, ids: pd.Index, name: str,
             sort: str | None = None) -> pd.DataFrame | None:
    """``table`` reindexed to the parcels (one row each; the latest by ``sort``)."""
    if table is None:
        return None
    if "parcel_id" not in table.columns:
        raise InputError("the table has no 'parcel_id' column.", source=name)
    t = pd.DataFrame(table).copy()
    t["parcel_id"] = t["parcel_id"].astype(str)
    if sort and sort in t.columns:
        t = t.assign(_k=pd.to_datetime(t[sort], errors="coerce")).sort_values(
            "_k", ascending=False, kind="stable", na_position="last").drop(columns="_k")
    t = t.drop_duplicates("parcel_id").set_index("parcel_id")
    return t.reindex(ids)


def _col(t: pd.DataFrame, name: str) -> pd.Series:
    return t[name] if name in t.columns else pd.Series([None] * len(t), index=t.index,
                                                       dtype=object)


def _parcel_columns(wgs: gpd.GeoDataFrame, box: Container, show_pii: bool) -> dict:
    cols = {"parcel_id": text_column(wgs["parcel_id"].astype(str)),
            "policy_id": text_column(_col(wgs, "policy_id"))}
    for name in _PARCEL_CODES:
        cols[name] = category_column(_col(wgs, name), box)
    cols["declared_area_mu"] = number_column(_col(wgs, "declared_area_mu"), box, 2)
    pii = [c for c in PII_COLUMNS if c in wgs.columns]
    if pii:
        frame = pd.DataFrame({c: wgs[c].astype(object) for c in pii})
        if not show_pii:  # masked once per distinct value (households repeat)
            uniq = frame.drop_duplicates()
            masked = mask_pii(uniq).set_axis(pd.MultiIndex.from_frame(uniq.astype(str)))
            keys = pd.MultiIndex.from_frame(frame.astype(str))
            frame = masked.reindex(keys).set_axis(frame.index)
        for c in pii:
            cols[c] = category_column(frame[c], box)
    return cols


def _verdict_columns(v: pd.DataFrame, box: Container, lang: str) -> dict:
    cols = {c: category_column(_col(v, c), box) for c in _VERDICT_CODES}
    cols["reasons_text"] = category_column(_col(v, f"reasons_{lang}"), box)
    cols.update({c: number_column(_col(v, c), box, d) for c, d in _VERDICT_NUMBERS.items()})
    cols.update({c: date_column(_col(v, c), box) for c in _VERDICT_DATES})
    return cols


def _claim_columns(c: pd.DataFrame, box: Container, lang: str,
                   verdicts: pd.DataFrame | None) -> dict:
    cols = {"claim_id": text_column(_col(c, "claim_id"))}
    cols.update({k: category_column(_col(c, k), box) for k in _CLAIM_CODES})
    cols["reasons_text"] = category_column(_col(c, f"reasons_{lang}"), box)
    cols.update({k: number_column(_col(c, k), box, d) for k, d in _CLAIM_NUMBERS.items()})
    cols["event_date"] = date_column(_col(c, "event_date"), box)
    # flagged in the export (assess --verdicts) or by the verdicts on this map
    flag = _col(c, "reasons").astype(str).str.contains("UNDERWRITING_REJECTED",
                                                        regex=False).to_numpy(bool, copy=True)
    if verdicts is not None:
        claims = pd.DataFrame({"parcel_id": c.index.astype(str), "status": _col(c, "status")})
        flag |= rejected_claims(claims, verdicts.rename_axis("parcel_id").reset_index())
    cols["flag"] = {"t": "n", "k": 1, "a": box.add(flag.astype(np.int16))}
    return cols


def _series_block(series: xr.Dataset | None, ids: pd.Index, box: Container) -> dict | None:
    if series is None:
        return None
    if "ndvi_mean" not in series or "parcel_id" not in series.coords:
        raise InputError("the series needs a variable 'ndvi_mean' and a coordinate "
                         "'parcel_id'.", source="series",
                         fix="pass the parcel series Dataset written by the pipeline")
    clear = clear_ndvi(series)
    ndvi = clear["ndvi_mean"].values
    rows = pd.Index(clear["parcel"].values).get_indexer(ids)
    matrix = np.full((len(ids), ndvi.shape[1]), 255, np.uint8)
    found = rows >= 0
    matrix[found] = ndvi_matrix(ndvi[rows[found]], np.isfinite(ndvi[rows[found]]))
    days = pd.to_datetime(series["time"].values).values.astype("datetime64[D]").astype(np.int64)
    return {"days": days.tolist(), "m": box.add(matrix.ravel())}


def _photos(photos: gpd.GeoDataFrame | None) -> list[dict]:
    if photos is None:
        return []
    if photos.crs is None:
        raise InputError("the photos have no CRS.", source="photos",
                         fix="set it (e.g. photos.set_crs(4326)) before building the map")
    pts = photos.to_crs(4326)
    g = pts.geometry.values
    ok = ~(pd.isna(g) | shapely.is_empty(g))
    pts, g = pts[ok], g[ok]
    def plain(s: pd.Series) -> list:
        return [None if pd.isna(v) else str(v) for v in s.tolist()]

    # a file path (as `agri3s photos` writes it, relative to where it ran) becomes a file: URI:
    # as an <img> src a relative path would resolve against the map's folder, and "#" or "?"
    # in a name would cut it short
    src = [u if u is not None else None if f is None else Path(f).expanduser().resolve().as_uri()
           for u, f in zip(plain(_col(pts, "url")), plain(_col(pts, "path")))]
    return [{"x": round(float(x), 6), "y": round(float(y), 6), "id": i, "parcel": p, "t": t,
             "src": s} for x, y, i, p, t, s in zip(
        shapely.get_x(g), shapely.get_y(g), plain(_col(pts, "photo_id")),
        plain(_col(pts, "parcel_id")), plain(_col(pts, "taken_at")), src)]


def _imagery(layers: Sequence[ImageLayer], budget: int, lang: str, box: Container) -> list[dict]:
    out = []
    share = budget // max(len(layers), 1)
    i = LANGS.index(lang)
    for layer in layers:
        names = IMAGERY_LABELS.get(layer.kind, IMAGERY_LABELS["raster"])
        name = names[i].format(date=layer.date, before=layer.before, name=layer.name)
        jpeg = encode_image(layer.rgb, share)
        w, s, e, n = layer.bounds_wgs84
        out.append({"kind": layer.kind, "name": name, "date": layer.date,
                    "before": layer.before, "bounds": [[s, w], [n, e]], "img": box.add(jpeg),
                    "legend": layer.legend, "vmin": layer.vmin, "vmax": layer.vmax})
    return out


def build_map(parcels: gpd.GeoDataFrame, *, verdicts: pd.DataFrame | None = None,
              claims: pd.DataFrame | None = None, series: xr.Dataset | None = None,
              lang: str = "zh", show_pii: bool = False, title: str | None = None,
              overlays: Sequence[RasterOverlay] = (), imagery: Sequence[ImageLayer] = (),
              photos: gpd.GeoDataFrame | None = None, notes: Sequence[str] = (),
              imagery_bytes: int | None = None, part: dict | None = None) -> MapPage:
    """Build the adjuster's map of parcels, verdicts, claims, imagery and field photos.

    Parameters
    ----------
    parcels : geopandas.GeoDataFrame
        Parcels in any CRS, with ``parcel_id`` and optionally ``policy_id, household_id, crop,
        declared_area_mu, farmer_name, farmer_id_number``. Every row is in the data (searchable);
        rows without geometry are not drawn and counted in a note.
    verdicts, claims : pandas.DataFrame, optional
        Underwriting verdicts / claim estimates keyed by ``parcel_id``; each adds a layer
        (parcels coloured by verdict status / loss grade). A parcel with several claims shows
        the latest by ``event_date``; a claim on a parcel whose verdict is ``red`` (or whose
        reasons say ``UNDERWRITING_REJECTED``) is outlined and flagged in its popup.
    series : xarray.Dataset, optional
        Parcel series (``ndvi_mean``; ``look_flag`` or ``clear_fraction``; ``parcel_id``):
        each popup charts the parcel's clear looks.
    lang : {"zh", "en"}
        Language of every label.
    show_pii : bool
        Show farmers' names and ID numbers unmasked (only for the insurer's own staff).
    title : str, optional
        Title of the map; a default title depends on the layers.
    overlays, imagery : sequences of RasterOverlay / ImageLayer
        Rasters (coloured by value) and images (e.g. :func:`.imagery.job_imagery`) added as
        toggleable image layers.
    photos : geopandas.GeoDataFrame, optional
        Field photo points (``photo_id``, ``path`` or ``url``, ``taken_at``, ``parcel_id``).
    notes : sequence of str
        Warnings shown under the title (e.g. a merge forced with ``--force``).
    imagery_bytes : int, optional
        Bytes all image layers may take together (default: 160 per parcel, 60 kB – 12 MB).
    part : dict, optional
        ``{"i": k, "n": total, "name": ..., "index": "index.html"}`` for one map of a split.

    Returns
    -------
    MapPage
        Write it with :func:`write_map`.

    Raises
    ------
    InputError
        Unknown ``lang``, parcels (or photos) without a CRS, a table without ``parcel_id``, a
        malformed overlay.

    Examples
    --------
    >>> page = build_map(parcels, verdicts=verdicts, series=series, lang="en")  # doctest: +SKIP
    >>> write_map(page, "maps/underwriting.html")  # doctest: +SKIP
    """
    if lang not in LANGS:
        raise InputError(f"lang must be 'zh' or 'en', not {lang!r}.", source="lang",
                         fix="pass lang='zh' or lang='en'")
    if parcels.crs is None:
        raise InputError("the parcels have no CRS; it is never assumed.", source="parcels",
                         fix="set the CRS of the parcel file (e.g. gdf.set_crs(4490))")
    if "parcel_id" not in parcels.columns:
        raise InputError("the parcels have no 'parcel_id' column.", source="parcels")
    wgs = parcels.to_crs(4326).reset_index(drop=True)
    ids = pd.Index(wgs["parcel_id"].astype(str))
    geo = wgs.geometry.values
    drawn = ~(pd.isna(geo) | shapely.is_empty(geo))
    box = Container()
    merc = gpd.GeoSeries(geo, crs=4326).to_crs(3857).values
    v = _aligned(verdicts, ids, "verdicts")
    c = _aligned(claims, ids, "claims", sort="event_date")
    layers = [k for k, t in (("verdict", v), ("loss", c)) if t is not None]
    pictures = [o.image() for o in overlays] + list(imagery)
    budget = imagery_bytes if imagery_bytes is not None else int(np.clip(
        IMAGERY_BYTES_PER_PARCEL * len(wgs), IMAGERY_BYTES_MIN, IMAGERY_BYTES_MAX))
    key = "title_loss" if c is not None else "title_verdict" if v is not None else "title"
    bbox = (list(map(float, wgs[drawn].total_bounds)) if drawn.any() else
            list(pictures[0].bounds_wgs84) if pictures else None)
    notes = list(notes)
    if (~drawn).any():
        notes.append(text("not_drawn", lang, n=int((~drawn).sum())))
    header = {
        "v": 1, "lang": lang, "title": title or text(key, lang), "labels": page_labels(lang),
        "n": len(wgs), "bbox": bbox, "geom": encode_geometry(merc, box),
        "parcel": _parcel_columns(wgs, box, show_pii),
        "verdict": _verdict_columns(v, box, lang) if v is not None else None,
        "claim": _claim_columns(c, box, lang, v) if c is not None else None,
        "series": _series_block(series, ids, box), "photos": _photos(photos),
        "imagery": _imagery(pictures, budget, lang, box), "notes": notes, "part": part,
    }
    html_text = page_html(header, box)
    return MapPage(html_text, len(wgs), int(drawn.sum()), layers,
                   [p["name"] for p in header["imagery"]])


def page_html(header: dict, box: Container) -> str:
    """The HTML file around a packed data block (shared by parcel maps and index maps)."""
    data = base64.b64encode(box.pack(header)).decode("ascii")
    title = html.escape(str(header.get("title", "")))
    lang = html.escape(str(header.get("lang", "zh")), quote=True)
    old = json.dumps(header["labels"]["text"]["old_browser"]).replace("<", "\\u003c")
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{title}</title>\n<style>{assets.leaflet_css()}</style>\n"
            f"<style>{assets.app_css()}</style></head>\n<body><div id=\"a3map\"></div>"
            f"<div id=\"a3msg\" hidden></div>\n<script>{assets.leaflet_js()}</script>\n"
            f"<script>{assets.app_js()}</script>\n"
            f'<script type="application/octet-stream" id="a3data">{data}</script>\n'
            f"<script>agri3sMap.start(document.getElementById('a3data').textContent,{old});"
            "</script>\n</body></html>\n")


def write_map(page: MapPage, path: str | Path) -> Path:
    """Write the map's HTML atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    page : MapPage
        A map from :func:`build_map` (or an index map).
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
    path = output_file(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page.html)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the map is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
