"""Imagery layers of a map, from the job's own Sentinel-2 looks.

A job picks the clearest looks of the area (from its parcel series: the share of parcels seen
clear on each date): before and after an event (loss maps), or the season's clear look with the
most canopy (underwriting maps). It renders them as true colour (when the source has the blue
band), false colour (NIR, red, green: vegetation red) and, for an event, the NDVI change between
the two; each is reprojected to web mercator and saved next to the results
(``map_imagery/*.jpg`` + ``map_imagery.json``) so ``agri3s map`` can reuse them. A map embeds
them as image overlays, down-sampled to the share of the file budget they are given.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image

from .labels import CHANGE_RAMP

#: Longest side of a stored image (pixels); maps down-sample it to their budget.
STORED_MAX_PX = 2048
#: NDVI change shown from −CHANGE_RANGE (loss, red) to +CHANGE_RANGE (gain, blue).
CHANGE_RANGE = 0.5
#: Margin around the parcels (metres) the images cover.
MARGIN_M = 150.0


@dataclass(frozen=True, eq=False)
class ImageLayer:
    """An RGB image drawn over the map (toggled in the layer control).

    Parameters
    ----------
    kind : str
        ``true_before | true_after | false_before | false_after | true_season | false_season |
        ndvi_change`` (named in the page's language) or ``raster`` (named by ``name``).
    rgb : numpy.ndarray
        ``(rows, cols, 3)`` uint8 on a web-mercator grid, first row north.
    bounds_wgs84 : tuple of float
        ``(west, south, east, north)`` of the image's outer edges, degrees.
    date : str
        The look's date (``YYYY-MM-DD``); ``before``: the earlier look of a change layer.
    legend : str
        ``rgb`` (no scale) or ``change`` / ``ndvi`` (a colour ramp from ``vmin`` to ``vmax``).

    Examples
    --------
    >>> layer = ImageLayer("false_after", np.zeros((4, 4, 3), np.uint8),
    ...                    (116.0, 36.0, 116.01, 36.01), "2025-05-20")
    """

    kind: str
    rgb: np.ndarray
    bounds_wgs84: tuple[float, float, float, float]
    date: str = ""
    before: str = ""
    name: str = ""
    legend: str = "rgb"
    vmin: float = 0.0
    vmax: float = 1.0


def clear_share(series: xr.Dataset) -> pd.Series:
    """Share of the parcels with pixels that were seen clear, per date of the series."""
    if "look_flag" in series:
        clear = series["look_flag"].transpose("parcel", "time").values == 0
    else:
        clear = series["clear_fraction"].transpose("parcel", "time").values >= 0.6
    measured = np.isfinite(series["ndvi_mean"].transpose("parcel", "time").values).any(axis=1)
    share = clear[measured].mean(axis=0) if measured.any() else np.zeros(clear.shape[1])
    return pd.Series(share, index=pd.to_datetime(series["time"].values).normalize())


def _clearest(share: pd.Series, start: dt.date, end: dt.date, near: dt.date) -> dt.date | None:
    window = share[(share.index >= pd.Timestamp(start)) & (share.index <= pd.Timestamp(end))]
    window = window[window > 0]
    if window.empty:
        return None
    best = window[window >= window.max() - 1e-9]
    days = np.abs((best.index - pd.Timestamp(near)).days)
    return best.index[int(np.argmin(days))].date()


def event_dates(series: xr.Dataset, event_date: dt.date, last_day: dt.date | None = None,
                pre_days: int = 45, post_days: int = 35) -> tuple[dt.date | None, dt.date | None]:
    """The clearest look before the event (within ``pre_days``) and after it.

    >>> s = xr.Dataset({"ndvi_mean": (("parcel", "time"), [[0.5, 0.5, 0.5]]),
    ...                 "clear_fraction": (("parcel", "time"), [[1.0, 0.0, 1.0]])},
    ...                coords={"time": pd.to_datetime(["2025-05-01", "2025-05-16", "2025-05-21"])})
    >>> event_dates(s, dt.date(2025, 5, 14))
    (datetime.date(2025, 5, 1), datetime.date(2025, 5, 21))
    """
    share = clear_share(series)
    last = last_day or event_date
    before = _clearest(share, event_date - dt.timedelta(days=pre_days),
                       event_date - dt.timedelta(days=1), event_date)
    after = _clearest(share, last + dt.timedelta(days=1), last + dt.timedelta(days=post_days),
                      last)
    return before, after


def season_date(series: xr.Dataset, start: dt.date, end: dt.date) -> dt.date | None:
    """Of the season's clearest looks (within 80 % of the best share), the greenest one."""
    share = clear_share(series)
    inside = (share.index >= pd.Timestamp(start)) & (share.index <= pd.Timestamp(end))
    if not inside.any() or share[inside].max() <= 0:
        return None
    ok = inside & (share.to_numpy() >= 0.8 * share[inside].max())
    ndvi = series["ndvi_mean"].transpose("parcel", "time").values
    with np.errstate(all="ignore"):
        green = np.nanmedian(np.where(np.isfinite(ndvi), ndvi, np.nan)[:, ok], axis=0)
    green = np.nan_to_num(green, nan=-1.0)
    return share.index[np.flatnonzero(ok)[int(np.argmax(green))]].date()


def _look(source, parcels: gpd.GeoDataFrame, day: dt.date, max_px: int) -> dict | None:
    """One look's bands (reflectance) on a web-mercator grid around the parcels."""
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    from ...crs import metric_crs

    metric = parcels.to_crs(metric_crs(parcels))
    w, s, e, n = metric.total_bounds
    bounds = (w - MARGIN_M, s - MARGIN_M, e + MARGIN_M, n + MARGIN_M)
    cube = source.load(bounds, metric.crs, day, day, bands=("B02", "B03", "B04", "B08", "SCL"))
    if cube.sizes.get("time", 0) == 0 or "red" not in cube or "nir" not in cube:
        return None
    look = cube.isel(time=0)
    gb = cube.odc.geobox
    step = max(1, int(np.ceil(max(gb.shape) / max_px)))
    look = look.isel(y=slice(None, None, step), x=slice(None, None, step))
    src_transform = gb.transform @ Affine.scale(step, step)
    rows, cols = look.sizes["y"], look.sizes["x"]
    dst_crs = "EPSG:3857"
    transform, width, height = calculate_default_transform(
        gb.crs.to_wkt(), dst_crs, cols, rows,
        *_grid_bounds(src_transform, rows, cols))
    out = {}
    for band in ("blue", "green", "red", "nir", "scl"):
        if band not in look:
            continue
        src = np.asarray(look[band].values, dtype=np.float32)
        dst = np.full((height, width), np.nan, np.float32)
        reproject(src, dst, src_transform=src_transform, src_crs=gb.crs.to_wkt(),
                  dst_transform=transform, dst_crs=dst_crs, src_nodata=np.nan,
                  dst_nodata=np.nan,
                  resampling=Resampling.nearest if band == "scl" else Resampling.average)
        out[band] = dst
    west, north = transform.c, transform.f
    east, south = west + transform.a * width, north + transform.e * height
    from pyproj import Transformer

    to_wgs = Transformer.from_crs(dst_crs, "EPSG:4326", always_xy=True)
    (lon0, lon1), (lat0, lat1) = to_wgs.transform([west, east], [south, north])
    out["bounds"] = (lon0, lat0, lon1, lat1)
    return out


def _grid_bounds(transform, rows: int, cols: int) -> tuple[float, float, float, float]:
    x0, y0 = transform.c, transform.f
    x1, y1 = x0 + transform.a * cols, y0 + transform.e * rows
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _stretch(band: np.ndarray, top: float) -> np.ndarray:
    v = np.clip(np.nan_to_num(band, nan=0.0) / top, 0.0, 1.0) ** (1 / 1.25)
    return np.where(np.isfinite(band), v * 255.0, 160.0)


def _rgb(r: np.ndarray, g: np.ndarray, b: np.ndarray, tops: tuple[float, float, float]
         ) -> np.ndarray:
    return np.rint(np.dstack([_stretch(x, t) for x, t in zip((r, g, b), tops)])).astype(np.uint8)


def ramp_rgb(values: np.ndarray, vmin: float, vmax: float, ramp: tuple[str, ...]) -> np.ndarray:
    """Values → RGB along a colour ramp; NaN mid-grey.

    >>> ramp_rgb(np.array([[0.0, 1.0]]), 0.0, 1.0, ("#000000", "#ffffff")).tolist()
    [[[0, 0, 0], [255, 255, 255]]]
    """
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in ramp], dtype=float)
    pos = np.linspace(0, 1, len(ramp))
    v = np.asarray(values, np.float64)
    s = np.clip(np.nan_to_num((v - vmin) / (vmax - vmin), nan=0.5), 0, 1)
    rgb = np.dstack([np.interp(s, pos, stops[:, k]) for k in range(3)])
    rgb[~np.isfinite(v)] = 160.0
    return np.rint(rgb).astype(np.uint8)


def _ndvi(look: dict) -> np.ndarray:
    from ...sources.base import INVALID_SCL

    with np.errstate(all="ignore"):
        ndvi = (look["nir"] - look["red"]) / (look["nir"] + look["red"])
    if "scl" in look:
        ndvi[np.isin(np.nan_to_num(look["scl"], nan=0).astype(int), INVALID_SCL)] = np.nan
    return ndvi


def _render(look: dict, when: str, day: dt.date) -> list[ImageLayer]:
    layers = []
    if "blue" in look:
        layers.append(ImageLayer(f"true_{when}", _rgb(look["red"], look["green"], look["blue"],
                                                      (0.25, 0.25, 0.25)),
                                 look["bounds"], str(day)))
    if "green" in look:
        layers.append(ImageLayer(f"false_{when}", _rgb(look["nir"], look["red"], look["green"],
                                                       (0.5, 0.25, 0.25)),
                                 look["bounds"], str(day)))
    return layers


def job_imagery(source, parcels: gpd.GeoDataFrame, series: xr.Dataset, *,
                event=None, season=None, max_px: int = STORED_MAX_PX) -> list[ImageLayer]:
    """The imagery layers of a job's map (see the module docstring).

    ``event``: a loss event (``date``, ``last_day``) → before / after and the NDVI change;
    ``season``: an underwriting season (``start``, ``end``) → its greenest clear look.

    Examples
    --------
    >>> layers = job_imagery(source, parcels, series, event=event)  # doctest: +SKIP
    """
    usable = parcels[parcels.geometry.notna() & ~parcels.geometry.is_empty]
    if usable.empty:
        return []
    if event is not None:
        before, after = event_dates(series, event.date, event.last_day)
        looks = {w: (d, _look(source, usable, d, max_px)) for w, d in
                 (("before", before), ("after", after)) if d is not None}
        layers = [layer for w, (d, look) in looks.items() if look for layer in
                  _render(look, w, d)]
        if all(k in looks and looks[k][1] for k in ("before", "after")):
            (b_day, b), (a_day, a) = looks["before"], looks["after"]
            if b["red"].shape == a["red"].shape:
                change = _ndvi(a) - _ndvi(b)
                layers.append(ImageLayer("ndvi_change", ramp_rgb(
                    change, -CHANGE_RANGE, CHANGE_RANGE, CHANGE_RAMP), a["bounds"], str(a_day),
                    before=str(b_day), legend="change", vmin=-CHANGE_RANGE, vmax=CHANGE_RANGE))
        return layers
    if season is not None:
        day = season_date(series, season.start, season.end)
        look = _look(source, usable, day, max_px) if day else None
        return _render(look, "season", day) if look else []
    return []


def save_imagery(layers: list[ImageLayer], folder: str | Path) -> dict[str, Path]:
    """Write the layers as JPEG files plus ``map_imagery.json`` into ``folder``.

    Returns the written files by name (for the run manifest); nothing when ``layers`` is empty.

    Examples
    --------
    >>> files = save_imagery(job_imagery(source, parcels, series, event=event),
    ...                      "out/hail")                                # doctest: +SKIP
    """
    from ..export import atomic_path

    folder = Path(folder)
    if not layers:
        return {}
    files, entries = {}, []
    for i, layer in enumerate(layers):
        name = f"map_imagery/{i:02d}_{layer.kind}.jpg"
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(layer.rgb, "RGB").save(tmp, format="JPEG", quality=90)
        files[name] = path
        entries.append({"file": name, "kind": layer.kind, "date": layer.date,
                        "before": layer.before, "name": layer.name, "legend": layer.legend,
                        "vmin": layer.vmin, "vmax": layer.vmax,
                        "bounds_wgs84": list(layer.bounds_wgs84)})
    with atomic_path(folder / "map_imagery.json") as tmp:
        tmp.write_text(json.dumps({"layers": entries}, indent=1), encoding="utf-8")
    files["map_imagery.json"] = folder / "map_imagery.json"
    return files


def load_imagery(folder: str | Path) -> list[ImageLayer]:
    """The layers a job saved with :func:`save_imagery` (none when it saved none).

    >>> load_imagery("no/such/folder")
    []
    """
    index = Path(folder) / "map_imagery.json"
    if not index.is_file():
        return []
    out = []
    for e in json.loads(index.read_text(encoding="utf-8"))["layers"]:
        with Image.open(Path(folder) / e["file"]) as img:
            rgb = np.asarray(img.convert("RGB"))
        out.append(ImageLayer(e["kind"], rgb, tuple(e["bounds_wgs84"]), e.get("date", ""),
                              e.get("before", ""), e.get("name", ""), e.get("legend", "rgb"),
                              e.get("vmin", 0.0), e.get("vmax", 1.0)))
    return out


def _merc_y(lat: np.ndarray | float) -> np.ndarray:
    return np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))


def crop(layer: ImageLayer, bounds_wgs84: tuple[float, float, float, float],
         margin: float = 0.02) -> ImageLayer | None:
    """The part of a layer over ``bounds_wgs84`` (plus a ``margin`` share); None if outside.

    >>> im = ImageLayer("false_after", np.zeros((100, 100, 3), np.uint8), (0.0, 0.0, 1.0, 1.0))
    >>> crop(im, (0.0, 0.0, 0.5, 0.5), margin=0).rgb.shape
    (50, 50, 3)
    """
    w, s, e, n = layer.bounds_wgs84
    cw, cs, ce, cn = bounds_wgs84
    dx, dy = (ce - cw) * margin, (cn - cs) * margin
    cw, cs, ce, cn = max(w, cw - dx), max(s, cs - dy), min(e, ce + dx), min(n, cn + dy)
    if cw >= ce or cs >= cn:
        return None
    rows, cols = layer.rgb.shape[:2]
    c0, c1 = (int(np.floor((cw - w) / (e - w) * cols)), int(np.ceil((ce - w) / (e - w) * cols)))
    top, bottom = _merc_y(n), _merc_y(s)
    r0 = int(np.floor((top - _merc_y(cn)) / (top - bottom) * rows))
    r1 = int(np.ceil((top - _merc_y(cs)) / (top - bottom) * rows))
    r0, r1, c0, c1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if r1 <= r0 or c1 <= c0:
        return None
    lat = np.degrees(2 * np.arctan(np.exp(top - np.array([r0, r1]) / rows * (top - bottom)))
                     - np.pi / 2)
    west, east = w + c0 / cols * (e - w), w + c1 / cols * (e - w)
    return replace(layer, rgb=layer.rgb[r0:r1, c0:c1], bounds_wgs84=(west, float(lat[1]), east,
                                                                     float(lat[0])))


def encode_image(rgb: np.ndarray, budget_bytes: int, quality: int = 80) -> bytes:
    """JPEG bytes of an image, down-sampled until they fit ``budget_bytes``.

    >>> len(encode_image(np.zeros((500, 500, 3), np.uint8), 4000)) <= 4000
    True
    """
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    scale = 1.0
    for _ in range(12):
        w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        im = img if (w, h) == img.size else img.resize((w, h), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
        size = buf.tell()
        if size <= budget_bytes or (w <= 16 and h <= 16):
            return buf.getvalue()
        scale *= max(0.5, min(0.95, (budget_bytes / size) ** 0.5 * 0.97))
    return buf.getvalue()
