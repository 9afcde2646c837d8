"""CRS handling: never assume a CRS; Chinese map datums (GCJ-02, BD-09) → WGS84; a metric CRS per
parcel; coordinate sanity checks (swapped lat/lon, metres declared as degrees).

GCJ-02 (国测局 "Mars" coordinates, used by Amap/高德, Tencent and most Chinese phone map apps) and
BD-09 (Baidu) are not in the EPSG registry: they are WGS84 lon/lat plus a published, deliberately
non-linear offset of up to ~700 m. ``--crs gcj02`` / ``--crs bd09`` mean "these are lon/lat in that
datum": every vertex is converted to WGS84 (EPSG:4326) on reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from .errors import CRSMismatchError, InputError

# --- GCJ-02 / BD-09 -------------------------------------------------------------------------
#: Krasovsky 1940 semi-major axis and eccentricity², as in the published GCJ-02 algorithm.
_GCJ_A = 6378245.0
_GCJ_EE = 0.00669342162296594323
#: BD-09's rotation constant (π · 3000 / 180) from the published algorithm.
_X_PI = np.pi * 3000.0 / 180.0
#: The GCJ-02 inverse stops when a step moves less than this (degrees; 1e-9° ≈ 0.1 mm).
_INVERSE_TOL_DEG = 1e-9


def out_of_china(lon, lat) -> np.ndarray:
    """True where the GCJ-02 offset is not applied (the published rough bounding box of China).

    Examples
    --------
    >>> bool(out_of_china(4.35, 50.85)), bool(out_of_china(116.4, 39.9))
    (True, False)
    """
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _gcj_offset(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The GCJ-02 offset (dlon, dlat) in degrees at WGS84 ``lon``/``lat``."""
    x, y = lon - 105.0, lat - 35.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
            + (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
            + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0)
    rad = lat / 180.0 * np.pi
    magic = 1 - _GCJ_EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1 - _GCJ_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * np.cos(rad) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 → GCJ-02 (the published forward algorithm; unchanged outside China).

    Examples
    --------
    >>> wgs84_to_gcj02(116.404, 39.915)   # ≈ (116.410244, 39.916404)  # doctest: +SKIP
    """
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    dlon, dlat = _gcj_offset(lon, lat)
    outside = out_of_china(lon, lat)
    return np.where(outside, lon, lon + dlon), np.where(outside, lat, lat + dlat)


def gcj02_to_wgs84(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 → WGS84 by fixed-point iteration of the forward transform (to ~1e-9°, ≪ 0.5 m).

    The one-step inverse many libraries use is off by up to a few metres; iterating
    ``w ← w − (gcj(w) − g)`` converges in a handful of steps because the offset varies slowly.

    Examples
    --------
    >>> gcj02_to_wgs84(121.531541859215, 31.17530398364597)  # ≈ (121.5272106, 31.1774276)  # doctest: +SKIP
    """
    g_lon, g_lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    w_lon, w_lat = g_lon.copy(), g_lat.copy()
    for _ in range(30):
        f_lon, f_lat = wgs84_to_gcj02(w_lon, w_lat)
        d_lon, d_lat = f_lon - g_lon, f_lat - g_lat
        w_lon, w_lat = w_lon - d_lon, w_lat - d_lat
        if np.all(np.abs(d_lon) < _INVERSE_TOL_DEG) and np.all(np.abs(d_lat) < _INVERSE_TOL_DEG):
            break
    outside = out_of_china(g_lon, g_lat)
    return np.where(outside, g_lon, w_lon), np.where(outside, g_lat, w_lat)


def gcj02_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 → BD-09 (Baidu). ``gcj02_to_bd09(116.404, 39.915)`` ≈ (116.410369, 39.921337)"""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """BD-09 → GCJ-02. ``bd09_to_gcj02(116.404, 39.915)`` ≈ (116.397627, 39.908657)"""
    x = np.asarray(lon, dtype=float) - 0.0065
    y = np.asarray(lat, dtype=float) - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_wgs84(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """BD-09 → WGS84 (via GCJ-02, exact inverse)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def wgs84_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 → BD-09 (via GCJ-02)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


_TO_WGS84 = {"gcj02": gcj02_to_wgs84, "bd09": bd09_to_wgs84}
_LABEL = {"gcj02": "GCJ-02", "bd09": "BD-09"}


# --- the user's --crs ------------------------------------------------------------------------
@dataclass(frozen=True)
class CrsSpec:
    """A parsed ``--crs``: the CRS the data ends up in, and the Chinese datum it came from."""

    #: CRS of the coordinates after reading (EPSG:4326 for GCJ-02 / BD-09 input).
    crs: CRS
    #: ``"gcj02"`` / ``"bd09"`` when every vertex must be converted to WGS84, else ``None``.
    datum_shift: str | None = None

    @property
    def label(self) -> str:
        """What the user declared, for reports: ``GCJ-02``, ``EPSG:4490``, …"""
        if self.datum_shift:
            return _LABEL[self.datum_shift]
        return self.crs.to_string()


def parse_crs(value: object) -> CrsSpec:
    """Normalise a user's CRS: any EPSG / WKT / PROJ string, ``gcj02``, ``bd09``, ``cgcs2000``.

    Examples
    --------
    >>> parse_crs("gcj02").datum_shift, parse_crs("gcj02").crs.to_epsg()
    ('gcj02', 4326)
    >>> parse_crs("EPSG:4490").crs.to_epsg()
    4490
    """
    if isinstance(value, CrsSpec):
        return value
    key = str(value).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in ("gcj02", "gcj", "mars", "火星坐标", "国测局", "amap", "gaode", "高德"):
        return CrsSpec(CRS.from_epsg(4326), "gcj02")
    if key in ("bd09", "bd09ll", "baidu", "百度"):
        return CrsSpec(CRS.from_epsg(4326), "bd09")
    if key in ("cgcs2000", "国家2000"):
        return CrsSpec(CRS.from_epsg(4490))
    if key in ("wgs84", "gps"):
        return CrsSpec(CRS.from_epsg(4326))
    if key.isdigit():  # a bare EPSG code
        value = f"EPSG:{key}"
    try:
        return CrsSpec(CRS.from_user_input(value))
    except Exception as exc:  # pyproj raises CRSError for anything it cannot parse
        raise InputError(f"unknown CRS {value!r} ({exc}).", source="--crs",
                         fix="give an EPSG code (EPSG:4326, EPSG:4490, EPSG:32650, EPSG:4527 …), "
                             "gcj02 (Amap/Tencent) or bd09 (Baidu)") from exc


def to_wgs84_from(geoms, datum_shift: str):
    """Convert every vertex of shapely ``geoms`` from GCJ-02 / BD-09 lon/lat to WGS84 lon/lat.

    Z values are kept. Examples
    --------
    >>> g = shapely.Point(116.410244, 39.916404)
    >>> round(to_wgs84_from(g, "gcj02").x, 4)
    116.404
    """
    convert = _TO_WGS84[datum_shift]

    def _xy(coords: np.ndarray) -> np.ndarray:
        lon, lat = convert(coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat, coords[:, 2:]])

    # include_z=None keeps each geometry's own dimension (3-D KML heights survive)
    return shapely.transform(geoms, _xy, include_z=None)


# --- metric CRSs and area ---------------------------------------------------------------------
def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS84 UTM zone CRS containing a lon/lat point. ``utm_crs_for(116.3, 37.4)`` → EPSG:32650"""
    return CRS.from_epsg(int(utm_epsg(lon, lat)))


def utm_epsg(lon, lat) -> np.ndarray:
    """EPSG codes of the WGS84 UTM zones containing lon/lat points (vectorised).

    Examples
    --------
    >>> utm_epsg([116.3, 117.01], [37.4, -5.0]).tolist()
    [32650, 32750]
    """
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    # ((lon + 180) mod 360) keeps 180°E in zone 1 and handles longitudes written as 0–360
    zone = (np.floor(((lon + 180.0) % 360.0) / 6.0).astype(int) % 60) + 1
    return np.where(lat >= 0, 32600, 32700) + zone


def parcel_utm_epsg(gdf: gpd.GeoDataFrame) -> np.ndarray:
    """The UTM zone of each parcel, chosen by the parcel's own centroid (0 for empty geometry).

    A parcel straddling a zone boundary is measured in the zone holding most of it (its
    centroid), where the UTM scale error stays below ~0.1 %; areas use :func:`equal_area_m2`.
    """
    crs = require_crs(gdf)
    geo = gdf.geometry if crs.is_geographic else gdf.geometry.to_crs(4326)
    ok = (~geo.is_empty & geo.notna()).to_numpy()
    out = np.zeros(len(gdf), dtype=int)
    if ok.any():
        c = shapely.centroid(geo.to_numpy()[ok])
        out[ok] = utm_epsg(shapely.get_x(c), shapely.get_y(c))
    return out


def equal_area_crs(lon0: float, lat0: float) -> CRS:
    """A Lambert azimuthal equal-area CRS centred on ``lon0``/``lat0`` (WGS84 ellipsoid).

    Examples
    --------
    >>> equal_area_crs(116.4, 39.9).is_projected
    True
    """
    return CRS.from_proj4(f"+proj=laea +lat_0={lat0:.6f} +lon_0={lon0:.6f} +x_0=0 +y_0=0 "
                          "+ellps=WGS84 +units=m +no_defs")


def equal_area_m2(gdf: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    """Each parcel's area in m² on a Lambert azimuthal equal-area projection (0 for empty rows).

    Why not UTM: UTM is conformal, its areas are off by up to ±0.1 % inside a zone and more for
    parcels across a zone boundary. LAEA preserves area exactly on the ellipsoid wherever the
    parcel lies, so one projection per 10° cell (centred on its parcels, to keep shapes and
    perimeters tame) gives exact areas.

    Examples
    --------
    >>> sq = gpd.GeoSeries([shapely.box(500000, 4e6, 500100, 4e6 + 100)], crs=32650)
    >>> round(float(equal_area_m2(sq)[0]))   # UTM's 100 m square is 10 000 / k0² m²
    10008
    """
    return equal_area_measures(gdf)[0]


def equal_area_measures(gdf: gpd.GeoDataFrame | gpd.GeoSeries) -> tuple[np.ndarray, np.ndarray]:
    """``(area_m2, perimeter_m)`` per row, measured on local Lambert azimuthal equal-area
    projections (areas exact; perimeters within ~0.1 % for parcel-sized shapes)."""
    geo = gdf.geometry
    crs = require_crs(gdf)
    if not crs.is_geographic:
        geo = geo.to_crs(4326)
    area, length = np.zeros(len(geo)), np.zeros(len(geo))
    ok = (geo.notna() & ~geo.is_empty).to_numpy()
    if not ok.any():
        return area, length
    geoms = geo.to_numpy()[ok]
    c = shapely.centroid(geoms)
    cx, cy = shapely.get_x(c), shapely.get_y(c)
    cells = np.floor(cx / 10.0) * 1000 + np.floor(cy / 10.0)
    sub_a, sub_l = np.zeros(len(geoms)), np.zeros(len(geoms))
    for cell in np.unique(cells):
        pick = cells == cell
        laea = equal_area_crs(float(np.mean(cx[pick])), float(np.mean(cy[pick])))
        projected = gpd.GeoSeries(geoms[pick], crs=geo.crs).to_crs(laea)
        sub_a[pick], sub_l[pick] = projected.area.to_numpy(), projected.length.to_numpy()
    area[ok], length[ok] = sub_a, sub_l
    return area, length


def require_crs(gdf: gpd.GeoDataFrame, source: object = "parcels") -> CRS:
    """Return the CRS of ``gdf`` or raise a clear error; a CRS is never guessed."""
    if gdf.crs is None:
        raise InputError(
            "the parcels have no coordinate reference system.",
            source=source,
            fix="write the CRS into the file (e.g. a .prj beside the shapefile) or pass --crs "
                "EPSG:4326 (GPS/GNSS), --crs gcj02 (Amap/Tencent apps) or --crs bd09 (Baidu)",
        )
    return CRS.from_user_input(gdf.crs)


def metric_crs(gdf: gpd.GeoDataFrame) -> CRS:
    """A metric CRS to measure ``gdf`` in: its own if projected, else the UTM zone of its centre."""
    crs = require_crs(gdf)
    if crs.is_projected and crs.axis_info[0].unit_name in ("metre", "meter"):
        return crs
    lon_lat = gdf.to_crs(4326).total_bounds
    return utm_crs_for((lon_lat[0] + lon_lat[2]) / 2, (lon_lat[1] + lon_lat[3]) / 2)


def check_same_crs(a: CRS, b: CRS, what: str) -> None:
    """Raise :class:`CRSMismatchError` when two CRSs differ (combine only after reprojection)."""
    if CRS.from_user_input(a) != CRS.from_user_input(b):
        raise CRSMismatchError(f"{what}: {CRS.from_user_input(a).to_string()} vs "
                               f"{CRS.from_user_input(b).to_string()}; reproject one first.")


# --- coordinate sanity ------------------------------------------------------------------------
def degree_problem(geom) -> str | None:
    """For a geometry said to be in degrees: ``"swapped"`` when it is unambiguously lat/lon
    (|x| ≤ 90 and 90 < |y| ≤ 180), ``"not_degrees"`` when numbers exceed any degree range (projected
    metres declared as degrees), else ``None``.

    Examples
    --------
    >>> degree_problem(shapely.Point(39.9, 116.4)), degree_problem(shapely.Point(4.4e5, 4.4e6))
    ('swapped', 'not_degrees')
    """
    return degree_problems(np.array([geom], dtype=object))[0]


def degree_problems(geoms: np.ndarray) -> np.ndarray:
    """:func:`degree_problem` of every geometry of an array, in one pass over the coordinates
    (a province's parcel file has 10⁶). Missing and empty geometries: ``None``.

    >>> degree_problems(np.array([shapely.Point(116.4, 39.9), None, shapely.Point(39.9, 116.4)]))
    array([None, None, 'swapped'], dtype=object)
    """
    geoms = np.asarray(geoms, dtype=object)
    xy, which = shapely.get_coordinates(geoms, return_index=True)
    ax, ay = np.abs(xy[:, 0]), np.abs(xy[:, 1])

    def everywhere(ok: np.ndarray) -> np.ndarray:  # per geometry: every vertex ok
        return np.bincount(which, weights=~ok, minlength=len(geoms)) == 0

    degrees, swapped = everywhere((ax <= 180) & (ay <= 90)), everywhere((ax <= 90) & (ay <= 180))
    return np.where(degrees, None, np.where(swapped, "swapped", "not_degrees")).astype(object)


def swap_xy(geom):
    """The geometry with x and y exchanged (lat/lon → lon/lat)."""
    return shapely.transform(geom, lambda c: c[:, [1, 0]].copy())


def check_coordinates(gdf: gpd.GeoDataFrame, source: object = "parcels") -> None:
    """Raise a clear :class:`InputError` when *every* parcel's coordinates contradict the CRS:
    metres in a degree CRS, or degrees in a projected CRS. Single odd rows are left to
    validation, which rejects or repairs them row by row.
    """
    crs = require_crs(gdf, source)
    geoms = gdf.geometry.values.to_numpy()
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if not len(geoms):
        return
    if crs.is_geographic:
        if (degree_problems(geoms) == "not_degrees").all():
            x, y = shapely.get_coordinates(geoms[0])[0]
            raise InputError(
                f"the CRS is {crs.to_string()} (degrees) but the coordinates look like projected "
                f"metres (first vertex {x:.1f}, {y:.1f}).", source=source,
                fix="pass the real CRS with --crs, e.g. a CGCS2000 Gauss-Krüger zone EPSG:4513–4533 "
                    "(easting with zone prefix) or EPSG:4534–4554, or UTM EPSG:326xx")
    else:
        xy = shapely.get_coordinates(geoms)
        if np.all(np.abs(xy[:, 0]) <= 180) and np.all(np.abs(xy[:, 1]) <= 90):
            raise InputError(
                f"the CRS is {crs.to_string()} (projected, metres) but every coordinate is "
                f"within ±180/±90 — these look like degrees.", source=source,
                fix="pass --crs EPSG:4326 (or gcj02 / bd09 for Chinese map apps)")
