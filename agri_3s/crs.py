"""CRS handling: never assume a CRS, choose a metric UTM CRS for measuring parcels."""

from __future__ import annotations

import geopandas as gpd
from pyproj import CRS

from .errors import CRSMismatchError, InputError


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS84 UTM zone CRS containing a lon/lat point. ``utm_crs_for(116.3, 37.4)`` → EPSG:32650"""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def require_crs(gdf: gpd.GeoDataFrame, source: object = "parcels") -> CRS:
    """Return the CRS of ``gdf`` or raise a clear error; a CRS is never guessed."""
    if gdf.crs is None:
        raise InputError(
            "the parcels have no coordinate reference system.",
            source=source,
            fix="write the CRS into the file (e.g. a .prj beside the shapefile) or pass --crs EPSG:4326",
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
