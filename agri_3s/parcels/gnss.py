"""GNSS: parcel polygons from surveyed vertex lists and walked GPX / NMEA tracks, and geotagged
field photos matched to parcels.

A walked boundary is noisy: fixes without a position solution, fixes with a poor HDOP, single
fixes that jump tens of metres away, and clusters of fixes where the surveyor stood still.
:func:`polygon_from_track` removes each kind explicitly and reports how many fixes it dropped
and why, so the surveyor can see what the polygon rests on.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from ..crs import metric_crs, parse_crs, require_crs, to_wgs84_from, utm_crs_for
from ..errors import InputError
from ..units import m2_to_mu

WGS84 = CRS.from_epsg(4326)

#: NMEA GGA fix-quality digit → name. Only 1–5 are position solutions we use.
GGA_QUALITY = {0: "none", 1: "gps", 2: "dgps", 3: "pps", 4: "rtk_fixed", 5: "rtk_float",
               6: "estimated", 7: "manual", 8: "simulation"}
#: Fix types that are a real position solution (GPX ``<fix>`` values and GGA names).
USABLE_FIX = {"2d", "3d", "dgps", "pps", "gps", "rtk_fixed", "rtk_float"}
#: The columns of a fix table (see :func:`read_track`).
FIX_COLUMNS = ["lon", "lat", "time", "fix", "hdop", "sats", "ele"]


# --------------------------------------------------------------------------------------------
# surveyed vertex lists

_LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度", "东经")
_LAT_NAMES = ("lat", "latitude", "y", "纬度", "北纬")


def _xy_columns(df: pd.DataFrame, source: object) -> tuple[str, str]:
    lower = {str(c).strip().lower(): c for c in df.columns}
    lon = next((lower[n] for n in _LON_NAMES if n in lower), None)
    lat = next((lower[n] for n in _LAT_NAMES if n in lower), None)
    if lon is None or lat is None:
        found = ", ".join(map(str, df.columns))
        raise InputError(f"no longitude/latitude columns (found: {found}).", source=source,
                         fix="name the columns lon and lat (or x and y, 经度 and 纬度)")
    return lon, lat


def polygon_from_vertices(vertices: Sequence[Sequence[float]] | pd.DataFrame, *,
                          crs: object = 4326, source: object = "vertices"
                          ) -> tuple[shapely.Polygon, dict]:
    """A parcel polygon from surveyed boundary vertices, in walking order.

    The ring is closed if the list is open; repeated consecutive vertices are removed. A
    self-crossing ring means the vertices are out of order and is refused, since guessing the
    order could insure the wrong land.

    Parameters
    ----------
    vertices : ``[(lon, lat), …]`` or a DataFrame with ``lon``/``lat`` (or ``x``/``y``,
        ``经度``/``纬度``) columns.
    crs : the coordinates' CRS: an EPSG code, ``"cgcs2000"`` (EPSG:4490, what Chinese RTK
        receivers give), ``"gcj02"`` / ``"bd09"`` (converted to WGS84).
    source : named in error messages (the file the vertices came from).

    Returns
    -------
    (polygon, report)
        The polygon in ``crs`` (WGS84 for gcj02 / bd09 input) and a report with
        ``n_vertices``, ``removed_repeats``, ``was_closed``, ``closure_gap_m`` (first to last
        vertex as given, 0 when already closed), ``area_m2``, ``area_mu``, ``crs``.

    Examples
    --------
    >>> poly, rep = polygon_from_vertices([(116.0, 39.0), (116.001, 39.0), (116.001, 39.001)])
    >>> rep["n_vertices"], round(rep["area_mu"], 1)
    (3, 7.2)
    """
    spec = parse_crs(crs)
    if isinstance(vertices, pd.DataFrame):
        lon_col, lat_col = _xy_columns(vertices, source)
        raw = vertices[[lon_col, lat_col]].to_numpy()
    else:
        raw = [tuple(v)[:2] if isinstance(v, (tuple, list, np.ndarray)) else (v, None)
               for v in vertices]
    xy = np.full((len(raw), 2), np.nan)
    for k, pair in enumerate(raw):
        try:
            xy[k] = [float(pair[0]), float(pair[1])]
        except (TypeError, ValueError, IndexError):
            raise InputError(f"vertex {k + 1} is not a pair of numbers: {pair!r}.", source=source,
                             row=k + 1, fix="give each vertex as two numbers (lon, lat)") from None
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        raise InputError(f"vertex {int(np.argmax(bad)) + 1} has a missing coordinate.",
                         source=source, row=int(np.argmax(bad)) + 1, fix="fill in or delete it")
    if spec.crs.is_geographic:
        ax, ay = np.abs(xy[:, 0]), np.abs(xy[:, 1])
        if not (np.all(ax <= 180) and np.all(ay <= 90)):
            swapped = np.all(ax <= 90) and np.all(ay <= 180)
            raise InputError("coordinates are outside the longitude/latitude range"
                             + (" — latitude and longitude look swapped." if swapped else "."),
                             source=source, fix="give (lon, lat) in that order" if swapped
                             else "pass the CRS the coordinates are in (e.g. crs=32650)")
    n_given = len(xy)
    keep = np.ones(n_given, bool)
    keep[1:] = np.any(xy[1:] != xy[:-1], axis=1)
    xy = xy[keep]
    was_closed = len(xy) > 1 and bool(np.all(xy[0] == xy[-1]))
    if was_closed:
        xy = xy[:-1]
    if len(np.unique(xy, axis=0)) < 3:
        raise InputError(f"a parcel needs at least 3 distinct vertices, got {len(xy)}.",
                         source=source, fix="survey every corner of the parcel")
    if spec.datum_shift:
        xy = _shift(xy, spec.datum_shift)
    poly = shapely.Polygon(xy)
    if not poly.is_valid:
        raise InputError(f"the boundary crosses itself ({shapely.is_valid_reason(poly)}): the "
                         "vertices are not in walking order.", source=source,
                         fix="list the vertices in order around the parcel (clockwise or not)")
    metric = _metric_for(poly, spec.crs)
    to_m = Transformer.from_crs(spec.crs, metric, always_xy=True)
    m_xy = np.column_stack(to_m.transform(xy[:, 0], xy[:, 1]))
    area = shapely.Polygon(m_xy).area
    report = {"source": str(source), "n_vertices": len(xy),
              "removed_repeats": int(n_given - keep.sum()), "was_closed": was_closed,
              "closure_gap_m": 0.0 if was_closed else float(np.hypot(*(m_xy[0] - m_xy[-1]))),
              "area_m2": float(area), "area_mu": float(m2_to_mu(area)), "crs": spec.label}
    return poly, report


def _shift(xy: np.ndarray, datum_shift: str) -> np.ndarray:
    """GCJ-02 / BD-09 lon/lat → WGS84 lon/lat for an (n, 2) array."""
    pts = to_wgs84_from(shapely.points(xy), datum_shift)
    return shapely.get_coordinates(pts)


def _metric_for(geom, crs: CRS) -> CRS:
    """A metric CRS for measuring ``geom`` given in ``crs``."""
    return metric_crs(gpd.GeoDataFrame(geometry=[geom], crs=crs))


# --------------------------------------------------------------------------------------------
# reading tracks


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_gpx(text: str, source: object) -> tuple[pd.DataFrame, dict]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"not a readable GPX file ({exc}).", source=source,
                         fix="export the track again as GPX 1.1") from exc
    points = [e for e in root.iter() if _local(e.tag) == "trkpt"]
    if not points:  # some apps save a walked boundary as a route or as waypoints
        points = [e for e in root.iter() if _local(e.tag) in ("rtept", "wpt")]
    rows = []
    for k, e in enumerate(points):
        child = {_local(c.tag): (c.text or "").strip() for c in e}
        try:
            lat, lon = float(e.attrib["lat"]), float(e.attrib["lon"])
        except (KeyError, ValueError):
            raise InputError(f"track point {k + 1} has no valid lat/lon attributes.",
                             source=source, row=k + 1,
                             fix="repair or delete that <trkpt>") from None
        rows.append({
            "lon": lon, "lat": lat,
            "time": pd.to_datetime(child.get("time"), utc=True, errors="coerce"),
            # GPX 1.1: <fix> is none|2d|3d|dgps|pps; absent means "unknown" (kept)
            "fix": child.get("fix", "").lower() or "unknown",
            "hdop": pd.to_numeric(child.get("hdop"), errors="coerce"),
            "sats": pd.to_numeric(child.get("sat"), errors="coerce"),
            "ele": pd.to_numeric(child.get("ele"), errors="coerce"),
        })
    return pd.DataFrame(rows, columns=FIX_COLUMNS), {"format": "gpx"}


def nmea_checksum_ok(sentence: str) -> bool | None:
    """``True``/``False`` for a sentence's ``*hh`` checksum (XOR of the bytes between ``$`` and
    ``*``), ``None`` when it carries none.

    Examples
    --------
    >>> nmea_checksum_ok("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47")
    True
    """
    body, star, check = sentence.strip().lstrip("$!").partition("*")
    if not star:
        return None
    value = 0
    for ch in body.encode("ascii", "replace"):
        value ^= ch
    try:
        return value == int(check[:2], 16)
    except ValueError:
        return False


def _nmea_degrees(value: str, hemisphere: str) -> float:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` + N/S/E/W → signed decimal degrees."""
    v = float(value)
    deg = int(v // 100)
    out = deg + (v - deg * 100) / 60.0
    return -out if hemisphere in ("S", "W") else out


def _nmea_time(value: str) -> timedelta | None:
    if len(value) < 6:
        return None
    return timedelta(hours=int(value[0:2]), minutes=int(value[2:4]), seconds=float(value[4:]))


def _read_nmea(text: str, source: object) -> tuple[pd.DataFrame, dict]:
    counts = Counter()
    gga, rmc = [], []
    date = None  # UTC date from the latest RMC sentence
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        start = line.find("$")
        if start < 0:
            counts["not_nmea"] += 1
            continue
        line = line[start:]
        counts["sentences"] += 1
        ok = nmea_checksum_ok(line)
        if ok is False:
            counts["bad_checksum"] += 1
            continue
        fields = line.split("*")[0].split(",")
        kind = fields[0][3:] if len(fields[0]) >= 6 else ""
        try:
            if kind == "RMC" and len(fields) >= 10:
                if len(fields[9]) == 6:
                    date = datetime.strptime(fields[9], "%d%m%y").replace(tzinfo=timezone.utc)
                if fields[3] and fields[5]:
                    rmc.append({"lon": _nmea_degrees(fields[5], fields[6]),
                                "lat": _nmea_degrees(fields[3], fields[4]),
                                "tod": _nmea_time(fields[1]), "date": date,
                                "fix": "gps" if fields[2] == "A" else "none"})
            elif kind == "GGA" and len(fields) >= 10:
                quality = int(fields[6] or 0)
                if not (fields[2] and fields[4]):
                    # no position at all: still a fix read (quality 0), dropped as no_fix
                    gga.append({"lon": np.nan, "lat": np.nan, "tod": _nmea_time(fields[1]),
                                "date": date, "fix": "none", "hdop": np.nan, "sats": np.nan,
                                "ele": np.nan})
                    continue
                gga.append({"lon": _nmea_degrees(fields[4], fields[5]),
                            "lat": _nmea_degrees(fields[2], fields[3]),
                            "tod": _nmea_time(fields[1]), "date": date,
                            "fix": GGA_QUALITY.get(quality, f"quality_{quality}"),
                            "hdop": float(fields[8]) if fields[8] else np.nan,
                            "sats": int(fields[7]) if fields[7] else np.nan,
                            "ele": float(fields[9]) if fields[9] else np.nan})
            else:
                counts["other_sentences"] += 1
        except (ValueError, IndexError):
            counts["unparsable"] += 1
    # GGA carries fix quality and HDOP: use it when present; RMC only gives the date then.
    rows = gga if gga else [dict(r, hdop=np.nan, sats=np.nan, ele=np.nan) for r in rmc]
    first_date = next((r["date"] for r in rows if r["date"] is not None), None)
    day, last_tod, times = first_date, None, []
    for r in rows:
        # GGA sentences before the first RMC get its date; a time going backwards is midnight.
        if r["date"] is not None and r["date"] != day:
            day, last_tod = r["date"], None
        if r["tod"] is not None and last_tod is not None and r["tod"] < last_tod and \
                r["date"] in (None, day):
            day = (day or datetime(1970, 1, 1, tzinfo=timezone.utc)) + timedelta(days=1)
        last_tod = r["tod"] if r["tod"] is not None else last_tod
        base = day or datetime(1970, 1, 1, tzinfo=timezone.utc)  # no RMC: times of day only
        times.append(pd.Timestamp(base + r["tod"]) if r["tod"] is not None else pd.NaT)
    df = pd.DataFrame(rows, columns=[*FIX_COLUMNS, "tod", "date"])
    df["time"] = pd.to_datetime(pd.Series(times, dtype=object), utc=True) if rows else pd.NaT
    info = {"format": "nmea", "sentences": counts["sentences"],
            "bad_checksum": counts["bad_checksum"], "unparsable": counts["unparsable"],
            "other_sentences": counts["other_sentences"], "not_nmea_lines": counts["not_nmea"],
            "position_sentence": "GGA" if gga else "RMC"}
    return df[FIX_COLUMNS], info


def read_track(track: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Every position fix of a GPX or NMEA track, in order, before any filtering.

    Parameters
    ----------
    track : a ``.gpx`` / ``.nmea`` / ``.txt`` / ``.log`` file, or a DataFrame of fixes with
        ``lon``, ``lat`` and optionally ``time``, ``fix``, ``hdop``, ``sats``, ``ele``.

    Returns
    -------
    (fixes, info)
        ``fixes`` has the columns :data:`FIX_COLUMNS` (``time`` UTC, ``fix`` a name such as
        ``3d``, ``dgps``, ``rtk_fixed``, ``none``); ``info`` the format and, for NMEA, the
        counts of sentences, bad checksums and unparsable sentences.

    Examples
    --------
    >>> fixes, info = read_track("walk.gpx")  # doctest: +SKIP
    """
    if isinstance(track, pd.DataFrame):
        lon, lat = _xy_columns(track, "track points")
        df = pd.DataFrame({"lon": pd.to_numeric(track[lon], errors="coerce"),
                           "lat": pd.to_numeric(track[lat], errors="coerce")})
        for col in FIX_COLUMNS[2:]:
            df[col] = track[col].to_numpy() if col in track.columns else np.nan
        df["time"] = pd.to_datetime(df["time"], utc=True, errors="coerce")
        df["fix"] = df["fix"].fillna("unknown").astype(str).str.lower()
        return df[FIX_COLUMNS].reset_index(drop=True), {"format": "points"}
    path = Path(track)
    if not path.exists():
        raise InputError("track file not found.", source=path)
    text = path.read_text(encoding="utf-8", errors="replace")
    head = text.lstrip()[:200].lower()
    if path.suffix.lower() == ".gpx" or head.startswith("<?xml") or "<gpx" in head:
        fixes, info = _read_gpx(text, path)
    elif re.search(r"\$[A-Z]{2}(GGA|RMC)", text):
        fixes, info = _read_nmea(text, path)
    else:
        raise InputError("neither GPX nor NMEA (no <gpx> element, no $GGA/$RMC sentences).",
                         source=path, fix="export the walked track as GPX or NMEA 0183")
    if fixes.empty:
        raise InputError("the track holds no position fixes.", source=path,
                         fix="check that the receiver logged positions while walking")
    return fixes, info


# --------------------------------------------------------------------------------------------
# track → polygon


def _rolling_median_distance(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Distance of each point from the component-wise median of its neighbours (a Hampel-type
    filter: a spike of one or two fixes cannot move the median; at a field corner the
    component-wise median of an L-shape is the corner itself, so corners are kept)."""
    mx = pd.Series(x).rolling(window, center=True, min_periods=1).median().to_numpy()
    my = pd.Series(y).rolling(window, center=True, min_periods=1).median().to_numpy()
    return np.hypot(x - mx, y - my)


def polygon_from_track(track: str | Path | pd.DataFrame, *, max_hdop: float = 5.0,
                       max_jump_m: float = 30.0, max_speed_mps: float = 10.0,
                       min_spacing_m: float = 1.0, simplify_m: float = 0.5,
                       max_closure_gap_m: float = 30.0, median_window: int = 7
                       ) -> tuple[shapely.Polygon, dict]:
    """A parcel polygon from a boundary walked with a GNSS receiver (GPX or NMEA).

    Filters, in order, each counted in ``report["dropped"]``:

    1. ``no_fix`` — no position solution (GPX ``<fix>none</fix>``; GGA quality 0, 6 estimated,
       7 manual, 8 simulation; RMC status ``V``);
    2. ``hdop`` — HDOP above ``max_hdop`` (fixes without HDOP are kept);
    3. ``jump`` — farther than ``max_jump_m`` from the median of the ``median_window``
       surrounding fixes (multipath spikes);
    4. ``speed`` — (timed tracks) reached *and* left at more than ``max_speed_mps``;
    5. ``jitter`` — closer than ``min_spacing_m`` to the previous kept fix (standing still).

    The ring is closed from the last used fix back to the first (their distance is reported as
    ``closure_gap_m``; above ``max_closure_gap_m`` the walk is refused as incomplete), then
    simplified with Douglas–Peucker at ``simplify_m`` in a metric CRS. A ring that crosses
    itself (a loop at the start/end) is repaired to its largest part.

    Returns
    -------
    (polygon, report)
        The polygon in WGS84 lon/lat, and a report: ``n_fixes_read``, ``n_fixes_used``,
        ``dropped`` (per reason), ``median_hdop``, ``fix_types_used``, ``closure_gap_m``,
        ``n_vertices``, ``area_m2``, ``area_mu``, ``perimeter_m``, ``repaired``, and the
        reader's ``info`` (format, NMEA sentence / bad-checksum counts).

    Examples
    --------
    >>> poly, report = polygon_from_track("field_17.gpx")  # doctest: +SKIP
    >>> report["dropped"]  # doctest: +SKIP
    {'no_fix': 2, 'hdop': 5, 'jump': 1, 'speed': 0, 'jitter': 31}
    """
    source = str(track) if not isinstance(track, pd.DataFrame) else "track points"
    fixes, info = read_track(track)
    n_read = len(fixes)
    dropped = dict.fromkeys(("no_fix", "hdop", "jump", "speed", "jitter"), 0)
    fix_ok = ~fixes["fix"].isin(["none", "estimated", "manual", "simulation"]) & \
        fixes[["lon", "lat"]].notna().all(axis=1)
    dropped["no_fix"] = int((~fix_ok).sum())
    fixes = fixes[fix_ok]
    hdop_bad = fixes["hdop"] > max_hdop
    dropped["hdop"] = int(hdop_bad.sum())
    fixes = fixes[~hdop_bad].reset_index(drop=True)
    if len(fixes) < 3:
        raise InputError(f"only {len(fixes)} usable fixes of {n_read} (dropped: {dropped}).",
                         source=source, fix="walk the boundary again with a clear sky view, or "
                                            "raise max_hdop")
    lon, lat = fixes["lon"].to_numpy(float), fixes["lat"].to_numpy(float)
    metric = utm_crs_for(float(np.median(lon)), float(np.median(lat)))
    to_m = Transformer.from_crs(WGS84, metric, always_xy=True)
    x, y = (np.asarray(v) for v in to_m.transform(lon, lat))

    spike = _rolling_median_distance(x, y, median_window) > max_jump_m
    dropped["jump"] = int(spike.sum())
    keep = ~spike
    t = fixes["time"]
    if t.notna().sum() >= 3:
        idx = np.flatnonzero(keep)
        xs, ys = x[idx], y[idx]
        secs = (t.iloc[idx] - t.iloc[idx].min()).dt.total_seconds().to_numpy()
        dt = np.diff(secs)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.hypot(np.diff(xs), np.diff(ys)) / dt
        v = np.where(dt > 0, v, np.nan)  # equal or missing times say nothing about speed
        fast_in = np.r_[False, v > max_speed_mps]
        fast_out = np.r_[v > max_speed_mps, False]
        too_fast = fast_in & fast_out
        keep[idx[too_fast]] = False
        dropped["speed"] = int(too_fast.sum())
    idx = np.flatnonzero(keep)
    used = [idx[0]] if len(idx) else []
    for i in idx[1:]:
        if np.hypot(x[i] - x[used[-1]], y[i] - y[used[-1]]) >= min_spacing_m:
            used.append(i)
    dropped["jitter"] = int(len(idx) - len(used))
    used = np.asarray(used, dtype=int)
    if len(used) < 3:
        raise InputError(f"only {len(used)} fixes remain after filtering (dropped: {dropped}).",
                         source=source, fix="check the track; relax max_jump_m / min_spacing_m")
    closure = float(np.hypot(x[used[-1]] - x[used[0]], y[used[-1]] - y[used[0]]))
    if closure > max_closure_gap_m:
        raise InputError(f"the walk ends {closure:.0f} m from where it started: the boundary is "
                         "not closed.", source=source,
                         fix=f"walk back to the start point, or raise max_closure_gap_m "
                             f"(now {max_closure_gap_m:g} m)")
    ring = shapely.Polygon(np.column_stack([x[used], y[used]]))
    repaired, lost = False, 0.0
    if not ring.is_valid:
        fixed = shapely.make_valid(ring)
        parts = [g for g in getattr(fixed, "geoms", [fixed]) if g.geom_type == "Polygon"]
        parts += [p for g in getattr(fixed, "geoms", []) if g.geom_type == "MultiPolygon"
                  for p in g.geoms]
        if not parts:
            raise InputError("the walked boundary encloses no area.", source=source,
                             fix="walk around the parcel, not along one side")
        largest = max(parts, key=lambda g: g.area)
        lost = float(sum(p.area for p in parts) - largest.area)
        ring, repaired = largest, True
    simple = shapely.simplify(ring, simplify_m, preserve_topology=True)
    to_ll = Transformer.from_crs(metric, WGS84, always_xy=True)
    poly = shapely.transform(simple, lambda c: np.column_stack(to_ll.transform(c[:, 0], c[:, 1])))
    hd = fixes["hdop"].to_numpy(float)[used]
    report = {
        "source": source, "info": info,
        "n_fixes_read": n_read, "n_fixes_used": len(used), "dropped": dropped,
        "median_hdop": float(np.nanmedian(hd)) if np.isfinite(hd).any() else None,
        "fix_types_used": dict(Counter(fixes["fix"].to_numpy()[used])),
        "closure_gap_m": closure, "n_vertices": len(simple.exterior.coords) - 1,
        "simplify_m": simplify_m, "area_m2": float(simple.area),
        "area_mu": float(m2_to_mu(simple.area)), "perimeter_m": float(simple.length),
        "repaired": repaired, "repair_dropped_m2": lost, "crs": "EPSG:4326",
        "metric_crs": metric.to_string(),
    }
    return poly, report


# --------------------------------------------------------------------------------------------
# geotagged photos

_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769


def _dms(value) -> float:
    d, m, s = (float(v) for v in value)
    return d + m / 60.0 + s / 3600.0


def read_photo_gps(path: str | Path) -> dict:
    """Position and time of a JPEG from its EXIF: ``lon``, ``lat``, ``alt``, ``taken_at``
    (camera clock, ``DateTimeOriginal``), ``gps_time_utc`` and ``problem`` (``None`` when a
    position was read).

    Examples
    --------
    >>> read_photo_gps("IMG_0042.jpg")["lat"]  # doctest: +SKIP
    39.90875
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with sentinelhub (core dep)

    out = {"lon": None, "lat": None, "alt": None, "taken_at": None, "gps_time_utc": None,
           "problem": None}
    try:
        with Image.open(path) as img:
            exif = img.getexif()
    except (OSError, UnidentifiedImageError) as exc:
        out["problem"] = f"unreadable image ({exc})"
        return out
    exif_ifd = exif.get_ifd(_EXIF_IFD)
    stamp = exif_ifd.get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
    if stamp:
        out["taken_at"] = pd.to_datetime(str(stamp).strip("\x00 "), format="%Y:%m:%d %H:%M:%S",
                                         errors="coerce")
    gps = exif.get_ifd(_GPS_IFD)
    if 2 not in gps or 4 not in gps:
        out["problem"] = "no GPS position in EXIF"
        return out
    try:
        lat, lon = _dms(gps[2]), _dms(gps[4])
    except (TypeError, ValueError, ZeroDivisionError):
        out["problem"] = "unreadable GPS position in EXIF"
        return out
    out["lat"] = -lat if str(gps.get(1, "N")).upper().startswith("S") else lat
    out["lon"] = -lon if str(gps.get(3, "E")).upper().startswith("W") else lon
    if 6 in gps:
        alt = float(gps[6])
        out["alt"] = -alt if gps.get(5) in (1, b"\x01") else alt
    if 29 in gps and 7 in gps:
        try:
            h, m, s = (float(v) for v in gps[7])
            day = datetime.strptime(str(gps[29]).strip("\x00 "), "%Y:%m:%d")
            out["gps_time_utc"] = pd.Timestamp(day + timedelta(hours=h, minutes=m, seconds=s),
                                               tz="UTC")
        except (TypeError, ValueError):
            pass
    return out


def _photo_paths(photos: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(photos, (str, Path)) and Path(photos).is_dir():
        return sorted(p for p in Path(photos).rglob("*")
                      if p.suffix.lower() in (".jpg", ".jpeg"))
    if isinstance(photos, (str, Path)):
        return [Path(photos)]
    return [Path(p) for p in photos]


def photos_to_parcels(photos: str | Path | Iterable[str | Path], parcels: gpd.GeoDataFrame, *,
                      crs: str = "wgs84", max_distance_m: float = 200.0) -> gpd.GeoDataFrame:
    """Match geotagged field photos to the parcel that contains them, else the nearest one.

    Parameters
    ----------
    photos : a folder (every ``.jpg`` / ``.jpeg`` in it, recursively) or a list of files.
    parcels : the parcels (parcels contract, any CRS).
    crs : the datum of the EXIF positions: ``"wgs84"`` (cameras, most phones) or ``"gcj02"``
        (photos geotagged by Chinese map apps), converted to WGS84.
    max_distance_m : a photo farther than this from every parcel is not matched.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per photo, in WGS84 points (empty geometry without a position): ``photo_id``
        (file name), ``path``, ``taken_at``, ``gps_time_utc``, ``lon``, ``lat``, ``parcel_id``,
        ``distance_m`` (0 inside), ``match`` = ``inside`` | ``nearest`` | ``none`` (no parcel
        within ``max_distance_m``) | ``no_gps`` (no readable position; see ``problem``),
        ``n_containing`` (parcels containing the photo; > 1 means overlapping parcels — the
        smallest is chosen).

    Examples
    --------
    >>> matched = photos_to_parcels("photos/", parcels, crs="gcj02")  # doctest: +SKIP
    """
    spec = parse_crs(crs)
    if not spec.crs.is_geographic:
        raise InputError(f"photo positions are longitude/latitude, not {spec.label}.",
                         source="crs", fix="pass crs='wgs84' or crs='gcj02'")
    require_crs(parcels, parcels.attrs.get("source", "parcels"))
    paths = _photo_paths(photos)
    rows = []
    for p in paths:
        if not p.exists():
            raise InputError("photo not found.", source=p)
        info = read_photo_gps(p)
        rows.append({"photo_id": p.name, "path": str(p), **info})
    df = pd.DataFrame(rows, columns=["photo_id", "path", "lon", "lat", "alt", "taken_at",
                                     "gps_time_utc", "problem"])
    has = df["lat"].notna().to_numpy()
    lon = np.array(pd.to_numeric(df["lon"]), dtype=float)
    lat = np.array(pd.to_numeric(df["lat"]), dtype=float)
    if spec.datum_shift and has.any():  # GCJ-02 / BD-09 → WGS84 (agri_3s.crs)
        pts = to_wgs84_from(shapely.points(lon[has], lat[has]), spec.datum_shift)
        lon[has], lat[has] = shapely.get_x(pts), shapely.get_y(pts)
    df["lon"], df["lat"] = np.where(has, lon, np.nan), np.where(has, lat, np.nan)
    geom = np.array([shapely.Point(a, b) if h else shapely.Point() for a, b, h in
                     zip(lon, lat, has)], dtype=object)
    out = gpd.GeoDataFrame(df, geometry=geom, crs=WGS84)
    out["parcel_id"] = None
    out["distance_m"] = np.nan
    out["match"] = np.where(has, "none", "no_gps")
    out["n_containing"] = 0
    if has.any() and len(parcels):
        metric = metric_crs(parcels)
        pg = np.asarray(parcels.geometry.to_crs(metric).array, dtype=object)
        pts = np.asarray(out.geometry[has].to_crs(metric).array, dtype=object)
        ids = parcels["parcel_id"].astype(str).to_numpy()
        tree = shapely.STRtree(pg)
        where = np.flatnonzero(has)
        pid = np.full(len(pts), None, dtype=object)
        dist = np.full(len(pts), np.nan)
        n_in = np.zeros(len(pts), int)
        qi, tj = tree.query(pts, predicate="within")
        if len(qi):
            area = shapely.area(pg[tj])
            order = np.lexsort((area, qi))  # per photo, the smallest containing parcel first
            qi_s, tj_s = qi[order], tj[order]
            first = np.r_[True, qi_s[1:] != qi_s[:-1]]
            pid[qi_s[first]] = ids[tj_s[first]]
            dist[qi_s[first]] = 0.0
            n_in[:] = np.bincount(qi, minlength=len(pts))
        match = np.where(n_in > 0, "inside", "none").astype(object)
        rest = np.flatnonzero(n_in == 0)
        if len(rest):
            (ri, rj), rd = tree.query_nearest(pts[rest], max_distance=max_distance_m,
                                              return_distance=True, all_matches=False)
            pid[rest[ri]] = ids[rj]
            dist[rest[ri]] = rd
            match[rest[ri]] = "nearest"
        out.loc[out.index[where], "parcel_id"] = pid
        out.loc[out.index[where], "distance_m"] = dist
        out.loc[out.index[where], "match"] = match
        out.loc[out.index[where], "n_containing"] = n_in
    return out
