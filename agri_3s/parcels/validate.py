"""Parcel validation and repair. Every row stays in the table with a status and reasons:
``validity`` ok | repaired | rejected, and the parcel's measured ``area_mu``."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..crs import metric_crs
from ..reasons import reason
from ..units import m2_to_mu

#: Below this a "parcel" is a digitising slip rather than a field.
MIN_AREA_MU = 0.1


def _polygonal(geom):
    """The polygonal part of a geometry (make_valid can return collections)."""
    if geom is None or geom.is_empty:
        return geom
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def validate_parcels(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A copy of ``gdf`` with invalid geometries repaired and the columns ``validity``,
    ``validity_reasons`` / ``_zh`` / ``_en`` and ``area_mu`` added; no row is dropped."""
    out = gdf.copy()
    status = np.full(len(out), "ok", dtype=object)
    notes: list[list] = [[] for _ in range(len(out))]
    geoms = out.geometry.values.copy()
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            status[i] = "rejected"
            notes[i].append(reason("INVALID_GEOMETRY", detail="empty geometry"))
        elif g.geom_type not in ("Polygon", "MultiPolygon"):
            status[i] = "rejected"
            notes[i].append(reason("INVALID_GEOMETRY", detail=f"{g.geom_type}, not a polygon"))
        elif not g.is_valid:
            why = shapely.is_valid_reason(g)
            geoms[i] = _polygonal(shapely.make_valid(g))
            status[i] = "repaired"
            notes[i].append(reason("INVALID_GEOMETRY", detail=f"{why}; repaired with make_valid"))
    out = out.set_geometry(gpd.GeoSeries(geoms, index=out.index, crs=out.crs))
    area = np.zeros(len(out))
    ok_geom = ~out.geometry.is_empty & out.geometry.notna()
    area[ok_geom.to_numpy()] = m2_to_mu(out.geometry[ok_geom].to_crs(metric_crs(out)).area
                                        .to_numpy())
    for i in np.flatnonzero((area < MIN_AREA_MU) & (status != "rejected")):
        status[i] = "rejected"
        notes[i].append(reason("INVALID_GEOMETRY", detail=f"area {area[i]:.2f} mu < "
                                                          f"{MIN_AREA_MU} mu"))
    dup = out["parcel_id"].duplicated(keep="first").to_numpy()
    for i in np.flatnonzero(dup):
        status[i] = "rejected"
        notes[i].append(reason("INVALID_ATTRIBUTES", detail="duplicate parcel_id"))
    crop_missing = out["crop"].isna() | (out["crop"].astype(str).str.strip() == "")
    bad_area = ~(pd.to_numeric(out["declared_area_mu"], errors="coerce") > 0)
    for i in np.flatnonzero(crop_missing.to_numpy() | bad_area.to_numpy()):
        status[i] = "rejected"
        what = "crop" if crop_missing.iloc[i] else "declared_area_mu"
        notes[i].append(reason("INVALID_ATTRIBUTES", detail=f"{what} missing or not positive"))
    out["area_mu"] = area
    out["validity"] = status
    out["validity_reasons"] = [";".join(n[0] for n in ns) for ns in notes]
    out["validity_reasons_zh"] = ["；".join(n[1] for n in ns) for ns in notes]
    out["validity_reasons_en"] = ["; ".join(n[2] for n in ns) for ns in notes]
    return out
