"""Verdict and claim exports (versioned schema), the run manifest, atomic writes.

Formats by file suffix: ``.csv`` (UTF-8 with BOM so Excel shows Chinese), ``.geojson``
(EPSG:4326), ``.gpkg``, ``.parquet`` (GeoParquet). Every file is written to a temporary name in
the same folder and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pandas as pd

from ..types import SCHEMA_VERSION

FORMATS = (".csv", ".geojson", ".gpkg", ".parquet")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a verdict / claim table (a GeoDataFrame for the spatial formats) atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported export format; use one of {', '.join(FORMATS)}")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame = pd.DataFrame(table.drop(columns="geometry", errors="ignore"))
            frame.to_csv(tmp, index=False, encoding="utf-8-sig", date_format="%Y-%m-%d")
        else:
            gdf = table if isinstance(table, gpd.GeoDataFrame) else gpd.GeoDataFrame(table)
            gdf = _plain_columns(gdf)
            if suffix == ".geojson":
                gdf.to_crs(4326).to_file(tmp, driver="GeoJSON")
            elif suffix == ".gpkg":
                gdf.to_file(tmp, driver="GPKG", layer=path.stem)
            else:
                gdf.to_parquet(tmp)
    return path


def _plain_columns(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Dates and mixed objects → ISO strings, which every GIS format stores."""
    out = gdf.copy()
    for col in out.columns:
        if col == out.geometry.name:
            continue
        s = out[col]
        if s.dtype == object or str(s.dtype).startswith("datetime"):
            out[col] = s.map(lambda v: None if v is None or (isinstance(v, float) and v != v)
                             else v.isoformat() if hasattr(v, "isoformat") else str(v)
                             ).astype(object)
    return out


def write_json(obj: dict, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str),
                       encoding="utf-8")
    return Path(path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict:
    """Versions of agri_3s and the libraries that decide its numbers."""
    import numpy
    import rasterio
    import shapely
    import xarray

    from .. import __version__

    return {"agri_3s": __version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "xarray": xarray.__version__,
            "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
            "shapely": shapely.__version__, "geopandas": gpd.__version__}


def write_manifest(out: Path, *, job: str, inputs: dict, parameters: dict, imagery: dict,
                   outputs: dict, started: dt.datetime) -> Path:
    """``run.json``: inputs with hashes, parameters, imagery dates, outputs with hashes, versions."""
    def described(files: dict) -> dict:
        return {k: {"path": str(p), "sha256": file_sha256(p)} if Path(p).is_file()
                else {"path": str(p)} for k, p in files.items()}

    manifest = {"job": job, "schema_version": SCHEMA_VERSION,
                "started": started.isoformat(timespec="seconds"),
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "inputs": described(inputs), "parameters": parameters, "imagery": imagery,
                "outputs": described(outputs), "versions": versions()}
    return write_json(manifest, out / "run.json")
