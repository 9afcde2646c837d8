"""A job's outputs: the result table, its files (resumable), the series and the map."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import xarray as xr

from .checkpoint import Stage, content_key, load_pickled, reuse_or_write, save_pickled
from .outputs.export import atomic_path, write_schemas, write_table
from .outputs.privacy import mask_pii
from .sources.base import ImagerySource
from .types import SCHEMA_VERSION


def save_series(series: xr.Dataset, path: Path) -> Path:
    with atomic_path(path) as tmp:
        series.to_netcdf(tmp, engine="scipy")
    return path


def result_table(parcels: gpd.GeoDataFrame, decided: pd.DataFrame, include_pii: bool
                 ) -> gpd.GeoDataFrame:
    """The user's parcel columns (nothing dropped) + the decision columns, row for row."""
    own = parcels.drop(columns=[c for c in decided.columns if c in parcels.columns
                                and c != "parcel_id"])
    table = pd.concat([own.reset_index(drop=True),
                       decided.drop(columns="parcel_id").reset_index(drop=True)], axis=1)
    table = gpd.GeoDataFrame(table, geometry=parcels.geometry.name, crs=parcels.crs)
    if "schema_version" not in table:
        table["schema_version"] = SCHEMA_VERSION  # every exported row names its schema
    return table if include_pii else mask_pii(table)


def write_outputs(out: Path, name: str, table: gpd.GeoDataFrame,
                  series: Callable[[], xr.Dataset], formats: tuple[str, ...],
                  include_pii: bool = False, *, stage: Stage | None = None) -> dict[str, Path]:
    """The table in each format, its schemas and the series (``series()``: made only when
    written); a file an interrupted run of the same job already wrote is taken from the
    checkpoints (``stage``)."""
    reused = []

    def kept(path: Path, write: Callable[..., Path]) -> Path:
        """``write(path, resume)``, or the file an interrupted run of the same job wrote; a
        table grows block by block in the checkpoints (``resume``: folder, key)."""
        if stage is None or stage.parts is None:
            return write(path, None)
        key = content_key(stage.key, path.name, include_pii)
        path, again = reuse_or_write(stage.parts, key, path,
                                     lambda p: write(p, (stage.parts / "outputs", key)))
        reused.extend([path.name] if again else [])
        return path

    # the series first: a job killed during the long tables resumes without assembling them
    written = {"series.nc": kept(out / "series.nc", lambda p, _: save_series(series(), p))}
    files = {f"{name}{fmt}": kept(out / f"{name}{fmt}", lambda p, resume: write_table(
        table, p, export=name, resume=resume)) for fmt in formats}
    files.update(write_schemas(out, name, table, formats, include_pii=include_pii))
    files.update(written)
    if reused and stage.log:
        stage.log(f"resuming: {', '.join(reused)} of the interrupted run reused.")
    return files


#: Above this many parcels a job writes no ``map.html`` (one HTML page cannot hold them).
MAP_MAX_PARCELS = 100_000


def map_or_skip(path: Path, table: gpd.GeoDataFrame, log: Callable[[str], None] | None,
                series: Callable[[], xr.Dataset], **kwargs) -> dict[str, Path]:
    """``{"map.html": path}``, or nothing (with a message) for a batch too big for one page
    (``series()``: made only for a map)."""
    if len(table) > MAP_MAX_PARCELS:
        if log:
            log(f"map.html not written: {len(table):,} parcels are more than one page holds "
                f"({MAP_MAX_PARCELS:,}); map areas of them with `agri3s map`.")
        return {}
    return {"map.html": write_map(path, table, series=series(), **kwargs)}


def write_map(path: Path, table: gpd.GeoDataFrame, **kwargs) -> Path:
    """Write a map: one file, or above ``MAX_PARCELS_PER_MAP`` one per partition beside an
    index map at ``path`` (the map's :func:`~agri_3s.outputs.webmap.write_maps`)."""
    from .outputs.webmap import write_maps

    return write_maps(table, path, **kwargs)[path.name]


def map_imagery(out: Path, source: ImagerySource | None, parcels: gpd.GeoDataFrame,
                 series: Callable[[], xr.Dataset], *, stage: Stage | None = None,
                 **when) -> tuple[list, dict[str, Path], list[str]]:
    """The map's Sentinel-2 layers from the job's own looks, saved for ``agri3s map``;
    checkpointed in ``stage`` (reading a province's look takes seconds: a resumed job takes
    them back).

    ``series()``: the job's series, made only when the layers are. ``when``: ``event=`` or
    ``season=``. Without a source (a series given) there are none; a
    source that fails to deliver them leaves the map without imagery, saying why."""
    from .errors import Agri3sError
    from .outputs.webmap import job_imagery, save_imagery

    if source is None:
        return [], {}, []
    parts = stage.parts if stage is not None else None
    key = content_key(stage.key, "map imagery") if parts is not None else ""
    layers = load_pickled(parts, "imagery", key)
    if layers is not None:
        if stage.log:
            stage.log("resuming: the map imagery of the interrupted run reused.")
    else:
        try:
            layers = job_imagery(source, parcels, series(), **when)
        except (Agri3sError, OSError) as exc:
            return [], {}, [f"imagery layers unavailable: {exc}"]
        save_pickled(parts, "imagery", key, layers)
    return layers, save_imagery(layers, out), []
