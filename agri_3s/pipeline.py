"""The user jobs — underwrite, assess, map, demo — and job files (``agri3s run JOB.toml``).

Each job reads parcels, fetches imagery through an :class:`ImagerySource`, computes the parcel
series, decides, and writes its outputs plus a ``run.json`` manifest into ``out``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import functools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import geopandas as gpd
import pandas as pd
import xarray as xr

from .checkpoint import Stage, checkpointed_parcels
from .crs import metric_crs
from .decisions.calendar import load_calendars
from .decisions.confidence import calibration_source
from .decisions.crosscheck import flag_rejected
from .decisions.indemnity import PolicyTerms, claims_table
from .decisions.loss import (
    Event,
    LossParams,
    estimate_losses,
    history_start,
    load_event,
    post_windows,
)
from .decisions.planting import LOOKBACK, PlantingRules, verify_planting
from .errors import InputError
from .job_outputs import (
    map_imagery,
    map_or_skip,
    result_table,
    write_map,
    write_outputs,
)
from .outputs.export import (
    file_sha256,
    write_manifest,
)
from .outputs.publish import RunFolder, open_run, publish
from .parcels.io import CLAIM_COLUMNS, REQUIRED_COLUMNS, read_parcels
from .parcels.units import pool_units as pool
from .parcels.units import spread_unit_results
from .parcels.validate import validate_parcels
from .partition_job import Deferred, connect, job_series
from .partitions import DEFAULT_PARTITION_PX
from .sources.base import ImagerySource
from .sources.local import LocalSource
from .timeseries.screening import ScreenRules, screen_looks
from .timeseries.zonal import parcel_series, pixel_weights
from .types import Season

#: ``progress(step, done, total)`` — how long jobs report progress (the CLI draws bars).
Progress = Callable[[str, int, int], None]


@dataclass
class RunResult:
    """A job's folder, files and result table, and its parcel series (``series_of()``: as the
    job made them, or read back from its ``series.nc`` when it resumed without them)."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    table: pd.DataFrame | None = None
    series_of: Callable[[], xr.Dataset] | None = field(default=None, repr=False)

    @property
    def series(self) -> xr.Dataset | None:
        return self.series_of() if self.series_of is not None else None


def open_source(spec: str | ImagerySource, *, cache: str | Path | None = None) -> ImagerySource:
    """An imagery source from its command-line spelling.

    ``local:PATH`` (per-date GeoTIFF folders and / or SAFE products), ``sentinelhub``
    (sentinel-hub.com, credentials from sentinelhub-py's configuration or SH_CLIENT_ID /
    SH_CLIENT_SECRET), ``sentinelhub:cdse`` (Copernicus Data Space), ``stac:URL``.
    An ImagerySource object is passed through.
    """
    if not isinstance(spec, str):
        return spec
    kind, _, rest = spec.partition(":")
    if kind == "local" and rest:
        return LocalSource(rest)
    if kind == "sentinelhub" and rest in ("", "cdse"):
        from .sources.cache import FetchCache
        from .sources.sentinelhub import SentinelHubSource, cdse_config

        tiles = FetchCache(cache).arrays("sentinelhub")  # a rerun does not fetch again
        if rest == "cdse":
            return SentinelHubSource(cdse_config(os.environ.get("SH_CLIENT_ID", ""),
                                                 os.environ.get("SH_CLIENT_SECRET", "")),
                                     cache=tiles)
        return SentinelHubSource(cache=tiles)
    if kind == "stac" and rest:
        from .sources.cache import FetchCache
        from .sources.stac import StacSource

        return StacSource(rest, cache=FetchCache(cache))
    raise InputError(f"unknown imagery source {spec!r}.", source="--imagery",
                     fix="use local:PATH, sentinelhub, sentinelhub:cdse or stac:URL")


def load_parcels(parcels: str | Path | gpd.GeoDataFrame, crs: object = None, *,
                 columns: str | dict | None = None, encoding: str | None = None,
                 layer: str | None = None, area_tolerance: float = 0.15,
                 require: tuple[str, ...] = REQUIRED_COLUMNS) -> gpd.GeoDataFrame:
    """Read (if a path) and validate parcels; every row kept, with ``validity`` and ``area_mu``.

    ``crs``, ``columns``, ``encoding`` and ``layer`` are :func:`~agri_3s.parcels.io.read_parcels`'s
    (the CLI's ``--crs``, ``--columns``, ``--encoding``, ``--layer`` on every command that reads
    parcels). ``require``: the attribute columns the caller needs (a file without them is
    refused, naming them); overlap and photo checks need only ``parcel_id``.

    Examples
    --------
    >>> gdf = load_parcels("确权地块.shp", encoding="gbk",
    ...                    columns="地块号=parcel_id")                      # doctest: +SKIP
    """
    gdf = (parcels if isinstance(parcels, gpd.GeoDataFrame)
           else read_parcels(parcels, crs=crs, layer=layer, columns=columns, encoding=encoding,
                             require=require))
    return validate_parcels(gdf, area_tolerance=area_tolerance, required=require)


def _job_parcels(work: RunFolder | None, log, parcels, crs, **options
                 ) -> tuple[gpd.GeoDataFrame, str | gpd.GeoDataFrame]:
    """:func:`load_parcels` in a job: checkpointed, so that a resumed job does not read and
    check a province's parcels again; with what identifies them in the decisions' key."""
    return checkpointed_parcels(work.parts if work else None, parcels,
                                lambda: load_parcels(parcels, crs, **options), log,
                                crs=str(crs), **options)


@contextlib.contextmanager
def dask_scheduler(address: str | None):
    """Run the enclosed dask work on a ``dask.distributed`` cluster at ``address``
    (``tcp://host:8786``), or on the local threaded scheduler when ``address`` is None."""
    if not address:
        yield None
        return
    with connect(address) as client:
        yield client


def compute_series(parcels: gpd.GeoDataFrame, source: ImagerySource, start: dt.date,
                   end: dt.date, progress: Progress | None = None,
                   scheduler: str | None = None) -> xr.Dataset:
    """Parcel series for every parcel (rejected parcels get no pixels) over ``[start, end]``.

    ``scheduler``: a dask.distributed scheduler address; the workers must be able to read the
    imagery (a shared folder, or an HTTP/S3 source)."""
    usable = parcels[parcels["validity"] != "rejected"]
    if usable.empty:
        raise InputError("no usable parcel in the batch (all rejected).",
                         source=parcels.attrs.get("source", "parcels"),
                         fix="see the validity_reasons column of the output")
    cube = source.load(tuple(usable.total_bounds), usable.crs, start, end)
    measured = parcels.copy()
    measured.loc[measured["validity"] == "rejected", measured.geometry.name] = None
    weights = pixel_weights(measured, cube.odc.geobox)
    report = (lambda done, total: progress("parcel series", done, total)) if progress else None
    with dask_scheduler(scheduler):
        return parcel_series(cube, weights, progress=report)


def published_job(job: str):
    """Run a job function as one published set: it holds the lock on ``out`` and writes its
    outputs into the run's staging folder (the function's ``out``; ``work`` is the
    :class:`RunFolder`, whose ``parts`` keep the partitions' checkpoints), and only if it
    returns are they published together in place of ``out``'s old set (``restart``: discard
    the checkpoints of an earlier run; ``log``: where messages go)."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, out: str | Path, **kwargs) -> RunResult:
            with open_run(out, job=job, restart=kwargs.get("restart", False),
                          log=kwargs.get("log")) as folder:
                result = fn(*args, out=folder.staging, work=folder, **kwargs)
                publish(folder)
            files = {k: folder.out / Path(p).relative_to(folder.staging)
                     for k, p in result.files.items()}
            series = result.series_of
            if isinstance(series, Deferred) and not series.made:  # (its parts are gone)
                series = Deferred(lambda: _read_series(files["series.nc"]))
            return RunResult(folder.out, files, result.table, series)
        return run
    return wrap


@published_job("underwrite")
def underwrite(parcels, imagery, season: Season | str, *, out: str | Path,
               calendar: str | Path | None = None, rules: PlantingRules = PlantingRules(),
               crs: object = None, region: str | None = None, include_pii: bool = False,
               formats: tuple[str, ...] = (".csv", ".geojson"), lang: str = "zh",
               pool_units: bool = False, scheduler: str | None = None,
               crop_model: str | Path | None = "auto", save_crop_model: str | Path | None = None,
               calibration: str | Path | None = None, series: str | Path | None = None,
               screen: ScreenRules | None = None, columns: str | dict | None = None,
               encoding: str | None = None, layer: str | None = None,
               progress: Progress | None = None, restart: bool = False,
               partition_px: int | None = DEFAULT_PARTITION_PX,
               log: Callable[[str], None] | None = None,
               work: RunFolder | None = None) -> RunResult:
    """Underwriting verification: a verdict per parcel for one season.

    The job runs by spatial partitions (``partition_px`` imagery pixels a side), each
    checkpointed beside ``out``: the same call after a crash resumes from them (``restart``:
    start afresh); its outputs replace ``out``'s old ones all at once (:func:`published_job`).

    ``pool_units``: plots too small to measure alone are judged together with the adjacent
    plots of the same household and crop (连片 monitoring units); every original parcel gets
    its unit's verdict, with ``unit_id`` and the reason ``POOLED_UNIT``.
    ``crop_model``: ``"auto"`` learns the crops from this batch's declarations (cross-fitted),
    a path applies a model saved by an earlier run (``save_crop_model``), None: rules only.
    ``calibration``: a confidence calibration table (``agri3s evaluate --fit-calibration``).
    ``series``: a parcel series already made (NetCDF, e.g. a run's ``series.nc`` or Sentinel
    Hub Statistical API results) instead of ``imagery`` (then None).
    ``screen``: the look screen's thresholds (default: ``rules.min_clear_fraction``, the rest
    :class:`ScreenRules`' defaults). ``columns``, ``encoding``, ``layer``: how to read the parcel
    file (:func:`load_parcels`).

    Examples
    --------
    >>> underwrite("parcels.geojson", "local:imagery", "2024-10-01/2025-06-15",
    ...            out="out/wheat")                                   # doctest: +SKIP
    """
    started = dt.datetime.now(dt.timezone.utc)
    season = Season.parse(season) if isinstance(season, str) else season
    out = Path(out)
    gdf, gdf_key = _job_parcels(work, log, parcels, crs, columns=columns, encoding=encoding,
                                layer=layer)
    calendars = load_calendars(calendar)
    _check_region(region, calendars)
    judged = gdf
    if pool_units:
        with_units, judged = pool(gdf[gdf["validity"] != "rejected"])
        judged = validate_parcels(judged)
    given, source, partitions = series, None, {}
    screen = screen or ScreenRules(min_clear_fraction=rules.min_clear_fraction)
    if given is not None:
        ready = screen_looks(_read_series(given), screen)
        series, series_key = (lambda: ready), ready
    else:
        source = open_source(imagery)
        series, series_key = job_series(
            judged, source, season.start - LOOKBACK, season.end, parcels_key=gdf_key,
            screen=lambda s: screen_looks(s, screen), scheduler=scheduler,
            work=work.parts if work else None, partition_px=partition_px, progress=progress,
            log=log, report=partitions)
    # (a model saved by the run is its side effect: such a run always decides afresh)
    stage = Stage.of(work if save_crop_model is None else None, log, series_key, gdf_key,
                      job="underwrite", season=str(season), rules=_asdict(rules),
                      screen=_asdict(screen), region=region, calendars=calendars,
                      crop_model=_identity(crop_model), calibration=_identity(calibration),
                      pool_units=pool_units)

    def decide() -> tuple[pd.DataFrame, dict]:
        report: dict = {}
        verdicts = verify_planting(series(), judged, calendars, season, rules, region=region,
                                   crop_model=crop_model, save_crop_model=save_crop_model,
                                   calibration=calibration, model_report=report)
        return verdicts, {"crop_model": report, **_series_facts(series())}

    verdicts, decided = stage.decide(decide)
    if pool_units:
        verdicts = _spread_to_parcels(verdicts, with_units, gdf, series(), calendars, season,
                                      rules)
        # the series per original parcel (its unit's), so maps and exports find every parcel
        row = {u: i for i, u in enumerate(series()["parcel_id"].values)}
        per_parcel = series().isel(parcel=[row[u] for u in with_units["unit_id"]]
                                   ).assign_coords(
            parcel_id=("parcel", with_units["parcel_id"].astype(str).to_numpy()),
            unit_id=("parcel", with_units["unit_id"].astype(str).to_numpy()))
        series = lambda: per_parcel  # noqa: E731
    # the imagery first: a kill during the long exports then leaves it checkpointed, and its
    # reading's transient memory comes before the result table's
    images, image_files, notes = map_imagery(out, source, gdf[gdf["validity"] != "rejected"],
                                             series, stage=stage, season=season)
    table = result_table(gdf, verdicts, include_pii)
    files = write_outputs(out, "verdicts", table, series, formats, include_pii, stage=stage)
    files |= image_files
    files |= map_or_skip(out / "map.html", table, log, verdicts=verdicts, series=series,
                         lang=lang, show_pii=include_pii, imagery=images, notes=notes)
    files["run.json"] = write_manifest(
        out, job="underwrite", inputs=_inputs(parcels, calendar, series=given if source is None
                                              else None, crop_model=crop_model,
                                              calibration=calibration),
        parameters={"season": str(season), "rules": _asdict(rules), "screen": _asdict(screen),
                    "region": region, "pixel_rule": decided["pixel_rule"],
                    "looks_dropped": decided["looks_dropped"],
                    "crop_model": decided["crop_model"],
                    "confidence_calibration": calibration_source(calibration)},
        imagery={**(source.describe() if source else {"series": str(given)}),
                 "dates": decided["dates"]}, outputs=files, started=started,
        relative_to=work.out if work else None, partitions=partitions)
    return RunResult(out, files, table, series)


def _check_region(region: str | None, calendars: dict) -> None:
    """A region no calendar has would silently judge every crop by its default calendar."""
    regions = sorted({c.region for cals in calendars.values() for c in cals})
    if region and region not in regions:
        close = difflib.get_close_matches(region, regions, n=1)
        raise InputError(f"region {region!r} is in no crop calendar.", source="--region",
                         fix=(f"did you mean '{close[0]}'? " if close else "")
                         + f"the calendars' regions are {', '.join(regions)}")


def _spread_to_parcels(unit_verdicts: pd.DataFrame, with_units: gpd.GeoDataFrame,
                       parcels: gpd.GeoDataFrame, series: xr.Dataset, calendars: dict,
                       season: Season, rules: PlantingRules) -> pd.DataFrame:
    """Unit verdicts → one row per original parcel (input order); rejected parcels stay
    ``invalid``. Measured area is shared out by area; the area ratio is each parcel's own."""
    per_unit = unit_verdicts.drop(columns=["policy_id", "crop", "declared_area_mu",
                                           "parcel_area_mu", "area_ratio"])
    spread = spread_unit_results(per_unit, with_units, split_columns=["measured_area_mu"])
    spread.index = with_units.index
    rejected = parcels[parcels["validity"] == "rejected"]
    invalid = verify_planting(series, rejected, calendars, season, rules)
    invalid.index = rejected.index
    rows = pd.concat([spread, invalid]).loc[parcels.index]
    rows["area_ratio"] = rows["measured_area_mu"] / parcels["declared_area_mu"]
    return rows.reset_index(drop=True)


@published_job("assess")
def assess(parcels, imagery, event: Event | str | Path, *, out: str | Path,
           terms: PolicyTerms = PolicyTerms(), calendar: str | Path | None = None,
           params: LossParams = LossParams(), crs: object = None, include_pii: bool = False,
           formats: tuple[str, ...] = (".csv", ".geojson"), lang: str = "zh",
           scheduler: str | None = None, columns: str | dict | None = None,
           encoding: str | None = None, layer: str | None = None,
           progress: Progress | None = None, restart: bool = False,
           partition_px: int | None = DEFAULT_PARTITION_PX,
           log: Callable[[str], None] | None = None,
           verdicts: str | Path | None = None, work: RunFolder | None = None) -> RunResult:
    """Loss assessment: a claim estimate per parcel for one event.

    Partitioned, checkpointed and published like :func:`underwrite`.

    ``columns``, ``encoding``, ``layer``: how to read the parcel file (:func:`load_parcels`).
    ``verdicts``: the underwriting result of these parcels (folder or verdicts file): a claim
    that may be paid on a parcel it rejected gets the reason ``UNDERWRITING_REJECTED``.

    Examples
    --------
    >>> assess("parcels.geojson", "local:imagery", "events/hail.toml",
    ...        out="out/hail")                                        # doctest: +SKIP
    """
    started = dt.datetime.now(dt.timezone.utc)
    event = event if isinstance(event, Event) else load_event(event)
    calendars = load_calendars(calendar)  # a bad calendar file is refused before imagery work
    out = Path(out)
    gdf, gdf_key = _job_parcels(work, log, parcels, crs, columns=columns, encoding=encoding,
                                layer=layer)
    missing = [c for c in CLAIM_COLUMNS if c not in gdf.columns]
    if missing:
        raise InputError(f"column(s) {', '.join(missing)} needed for indemnities are missing.",
                         source=gdf.attrs.get("source", "parcels"),
                         fix="add the policy id and the sum insured per mu for each parcel")
    source = open_source(imagery)
    (_, post_end), _ = post_windows(event)
    start = history_start(event, params)  # a year back: each parcel's own bare looks
    end = event.last_day + dt.timedelta(days=post_end + 5)
    partitions: dict = {}
    series, series_key = job_series(gdf, source, start, end, parcels_key=gdf_key,
                                    scheduler=scheduler,
                                    work=work.parts if work else None,
                                    partition_px=partition_px, progress=progress, log=log,
                                    report=partitions)
    checked = _read_verdicts(verdicts) if verdicts is not None else None
    given = tuple(t for t in (event.footprint, checked) if t is not None)
    stage = Stage.of(work, log, series_key, gdf_key, *given, job="assess",
                      event={k: v for k, v in _asdict(event).items() if k != "footprint"},
                      terms=_asdict(terms), params=_asdict(params), calendars=calendars)

    def decide() -> tuple[pd.DataFrame, dict]:
        estimates = estimate_losses(series(), gdf.to_crs(metric_crs(gdf)), event, params)
        return (claims_table(estimates, gdf, event, terms, calendars, params),
                _series_facts(series()))

    claims, decided = stage.decide(decide)
    rejected = (gdf["validity"] == "rejected").to_numpy()
    claims.loc[rejected, "status"] = "invalid"
    for col in ("reasons", "reasons_zh", "reasons_en"):
        claims.loc[rejected, col] = gdf.loc[rejected, col.replace("reasons", "validity_reasons")
                                            ].to_numpy()
    if checked is not None:
        claims = flag_rejected(claims, checked)
    images, image_files, notes = map_imagery(out, source, gdf[gdf["validity"] != "rejected"],
                                             series, stage=stage, event=event)
    table = result_table(gdf, claims, include_pii)
    files = write_outputs(out, "claims", table, series, formats, include_pii, stage=stage)
    files |= image_files
    files |= map_or_skip(out / "map.html", table, log, claims=claims, series=series,
                         lang=lang, show_pii=include_pii, imagery=images, notes=notes,
                         verdicts=checked)
    files["run.json"] = write_manifest(
        out, job="assess", inputs=_inputs(parcels, calendar, event.source),
        parameters={"event": {"id": event.id, "type": event.type, "date": str(event.date),
                              "end": str(event.end) if event.end else None,
                              "crops": list(event.crops)},
                    "policy_terms": _asdict(terms), "loss_params": _asdict(params),
                    "pixel_rule": decided["pixel_rule"]},
        imagery={**source.describe(), "dates": decided["dates"]}, outputs=files,
        started=started,
        relative_to=work.out if work else None, partitions=partitions)
    return RunResult(out, files, table, series)


def _read_verdicts(path: str | Path) -> pd.DataFrame:
    """Verdicts of an underwriting result (its folder, or a verdicts CSV / GeoJSON)."""
    path = Path(path)
    file = next((path / f"verdicts{x}" for x in (".geojson", ".csv")
                 if (path / f"verdicts{x}").is_file()), None) if path.is_dir() else path
    if file is None or not file.is_file():
        raise InputError("no verdicts to check the claims against.", source=path,
                         fix="pass the --out folder of an underwrite run (or its verdicts.csv)")
    table = (pd.read_csv(file, dtype={"parcel_id": str}, encoding="utf-8-sig")
             if file.suffix.lower() == ".csv" else gpd.read_file(file))
    missing = [c for c in ("parcel_id", "status", "reasons") if c not in table.columns]
    if missing:
        raise InputError(f"not a verdicts table (missing {', '.join(missing)}).", source=file,
                         fix="pass the verdicts of an underwrite run")
    return table


def map_results(results: list[str | Path], out: str | Path, *, lang: str = "zh",
                show_pii: bool = False, photos: str | Path | None = None,
                force: bool = False) -> Path:
    """One adjuster map from result folders (verdicts and / or claims of the same parcels),
    with the imagery layers their jobs saved and optionally field photos matched to parcels
    (``agri3s photos`` output).

    Results whose parcels, crops or seasons do not belong together are refused
    (:class:`InputError`) unless ``force`` (the map then lists what did not match). A map of
    more parcels than one file serves is split (index map at ``out``)."""
    from .outputs.webmap.results import merge_results, read_results

    merged = merge_results(read_results(list(results)), force=force)
    notes = [f"--force: {n}" for n in merged["notes"]]
    return write_map(Path(out), merged["parcels"], verdicts=merged["verdicts"],
                     claims=merged["claims"], series=merged["series"], imagery=merged["imagery"],
                     lang=lang, show_pii=show_pii, notes=notes,
                     photos=gpd.read_file(photos) if photos else None)


def _asdict(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _identity(value) -> object:
    """What a checkpoint key records of an input given by name or file: the file's hash, or
    the value; an object given in memory (a fitted model) is never taken as the same."""
    if isinstance(value, (str, Path)) and Path(value).is_file():
        return {"file": str(value), "sha256": file_sha256(value)}
    if value is None or isinstance(value, (str, Path, int, float)):
        return str(value)
    return uuid.uuid4().hex


def _series_facts(series: xr.Dataset) -> dict:
    """What ``run.json`` says of the series (kept with the decisions: a resumed job may not
    assemble the series again)."""
    return {"pixel_rule": series.attrs.get("pixel_rule", ""),
            "looks_dropped": series.attrs.get("looks_dropped", ""),
            "dates": [str(t)[:10] for t in series["time"].values]}


def _inputs(parcels, calendar=None, event=None, **more) -> dict:
    """The input files of a run (``more``: other named files; non-paths are left out)."""
    files = {}
    if isinstance(parcels, (str, Path)):
        files["parcels"] = parcels
    if calendar:
        files["calendar"] = calendar
    if event:
        files["event"] = event
    files.update({k: v for k, v in more.items()
                  if isinstance(v, (str, Path)) and Path(v).is_file()})
    return files


def _read_series(path: str | Path | xr.Dataset) -> xr.Dataset:
    """A parcel series from a NetCDF file (its contract: dims parcel, time; ``parcel_id``)."""
    if isinstance(path, xr.Dataset):
        return path
    try:
        series = xr.load_dataset(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the parcel series ({exc}).", source=path,
                         fix="pass a NetCDF parcel series (e.g. a run's series.nc)") from exc
    missing = [v for v in ("ndvi_mean", "clear_fraction", "parcel_id") if v not in series]
    if missing or set(series["ndvi_mean"].dims) != {"parcel", "time"}:
        raise InputError(f"not a parcel series (missing {', '.join(missing) or 'dims'}).",
                         source=path, fix="it needs ndvi_mean and clear_fraction over "
                                          "(parcel, time) and a parcel_id coordinate")
    return series
