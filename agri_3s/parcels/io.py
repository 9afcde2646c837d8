"""Read insured parcels into the parcels contract (a GeoDataFrame with a CRS, never assumed)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd

from ..crs import require_crs
from ..errors import InputError

REQUIRED_COLUMNS = ("parcel_id", "crop", "declared_area_mu")
#: Needed to turn a loss into an indemnity.
CLAIM_COLUMNS = ("policy_id", "sum_insured_cny_per_mu")


def read_parcels(path: str | Path, *, crs: object = None, layer: str | None = None
                 ) -> gpd.GeoDataFrame:
    """Read a parcel file (GeoJSON, GeoPackage, Shapefile, KML, GeoParquet, … — anything GDAL
    reads) and check the columns every job needs.

    ``crs`` declares the coordinates' CRS when the file has none or states it wrongly.

    Examples
    --------
    >>> parcels = read_parcels("sample_data/generated/parcels_wheat.geojson")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise InputError("parcel file not found.", source=path)
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(path, layer=layer)
    except Exception as exc:  # GDAL / pyogrio / pyarrow raise many types for unreadable files
        raise InputError(f"cannot read the parcel file ({exc}).", source=path,
                         fix="give a GeoJSON, GeoPackage, Shapefile, KML or GeoParquet file") from exc
    if crs is not None:
        gdf = gdf.set_crs(crs, allow_override=True)
    require_crs(gdf, path)
    missing = [c for c in REQUIRED_COLUMNS if c not in gdf.columns]
    if missing:
        raise InputError(f"column(s) {', '.join(missing)} missing (found: "
                         f"{', '.join(map(str, gdf.columns))}).", source=path,
                         fix=f"name the columns {', '.join(REQUIRED_COLUMNS)}")
    no_id = gdf["parcel_id"].isna() | (gdf["parcel_id"].astype(str).str.strip() == "")
    if no_id.any():
        rows = ", ".join(str(i + 1) for i in list(gdf.index[no_id])[:10])
        raise InputError(f"parcel_id is empty in row(s) {rows}.", source=path,
                         fix="give every parcel an id; ids are how results are matched back")
    gdf["parcel_id"] = gdf["parcel_id"].astype(str).str.strip()
    gdf["declared_area_mu"] = pd.to_numeric(gdf["declared_area_mu"], errors="coerce")
    gdf.attrs["source"] = str(path)
    return gdf
