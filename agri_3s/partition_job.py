"""A job's partitioned series: the partitions' keys and checkpoints, resume, the cluster.

Each partition's result (:func:`~agri_3s.partitions.run_partition`) is checkpointed as a NetCDF
part (written under a temporary name and renamed) with a JSON sidecar holding its key and
SHA-256 (a part damaged by a power cut fails its hash and is recomputed). The key hashes what
the part depends on: the imagery (every band file's name, size and modification time, or the
source's description), the grid, the engine's parameters, the code version (agri_3s, the series
code's sources and the libraries that decide the numbers) and the partition's parcels
(positions, ids, geometry). A rerun reuses every part whose key and hash match, recomputes the
others and says why. Partitions run one after another on this machine (each on the engine's
threads), or as one task each on a ``dask.distributed`` cluster, whose results are
checkpointed here as they arrive (a task lost with a killed worker is rerun by the scheduler;
each part is written once).

A job plans its series (:func:`plan_series`: partitions, keys, what is checkpointed), computes
and assembles them (:func:`run_series`) only when a later stage needs them (:func:`job_series`):
what determines them — the job's fingerprint and the parcels' key — stands for them in the
later stages' checkpoint keys, so a job resumed past its decisions does not touch the parts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from .blocks import on_threads
from .checkpoint import content_key
from .errors import InputError, require
from .outputs.export import atomic_path, file_sha256, versions
from .partitions import (
    DEFAULT_PARTITION_PX,
    SERIES_CODE,
    STATS,
    Partition,
    SeriesParams,
    assemble,
    cell_edges,
    cube_bands,
    plan_partitions,
    run_partition,
)
from .sources.base import ImagerySource, window_reader

#: ``progress(step, done, total)``, as the jobs take it.
Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def code_version() -> dict:
    """What decides a series' numbers besides its inputs: agri_3s's version, the SHA-256 of
    the series code's sources (:data:`SERIES_CODE`) and the libraries' versions."""
    from . import __version__

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in SERIES_CODE:
        f = root / name
        h.update(name.encode() + b"\0" + (f.read_bytes() if f.is_file() else b""))
    from importlib.metadata import version

    import dask
    import scipy

    return {"agri_3s": __version__, "sources": h.hexdigest(), "python": platform.python_version(),
            **versions(), "scipy": scipy.__version__, "dask": dask.__version__,
            "numba": version("numba")}  # (compiles the quantiles; not imported to ask)


def imagery_fingerprint(cube: xr.Dataset, source: ImagerySource) -> dict:
    """The imagery a job reads: every band file of a local archive (name, size, modification
    time — hashing gigabytes would cost more than a partition), or the source's description
    and dates."""
    reader = window_reader(cube, cube_bands(cube))
    days = getattr(reader, "days", None)
    if days is None:
        return {"source": source.describe(), "dates": [str(t) for t in cube["time"].values],
                "attrs": {k: str(v) for k, v in cube.attrs.items()}}
    files = []
    for day in days:
        for acq in day:
            for band, path in sorted(acq.files.items()):
                st = os.stat(path)
                files.append((str(acq.folder.name), band, Path(path).name, st.st_size,
                              st.st_mtime_ns))
    return {"files": files, "bands": [list(b) for b in reader.bands]}


def job_fingerprint(cube: xr.Dataset, source: ImagerySource, params: SeriesParams,
                    partition_px: int) -> dict[str, str]:
    """Hashes of what every partition of a job depends on, by kind (for the restart message)."""
    g = cube.odc.geobox
    return {"imagery": _sha(imagery_fingerprint(cube, source)),
            "grid": _sha({"crs": g.crs.to_wkt(), "transform": list(g.transform)[:6],
                          "shape": list(g.shape), "partition_px": partition_px}),
            "parameters": _sha(dataclasses.asdict(params)),
            "code": _sha(code_version())}


def part_key(job: dict[str, str], part: Partition, ids: np.ndarray, wkb: np.ndarray) -> str:
    """The checkpoint key of ``part`` (``ids``, ``wkb``: the batch's parcel ids and shapes in
    the grid's CRS as WKB, None where not measured)."""
    h = hashlib.sha256(_sha(job).encode())
    h.update(np.asarray([part.number, *part.rows, *part.cols], np.int64).tobytes())
    h.update(np.ascontiguousarray(part.parcels, np.int64).tobytes())
    # (whole columns at once: a province's parts hash 10⁶ ids and shapes)
    h.update("\0".join(ids[part.parcels]).encode())
    shapes = np.where(pd.isna(wkb[part.parcels]), b"\1", wkb[part.parcels])
    h.update(np.fromiter(map(len, shapes), np.int64, len(shapes)).tobytes())
    h.update(b"".join(shapes))
    return h.hexdigest()


_KINDS = {"imagery": "the imagery changed", "grid": "the imagery grid or partition size changed",
          "parameters": "the series parameters changed", "code": "the code version changed"}


class PartStore:
    """Checkpointed parts in ``folder``: ``part-NNNNN.nc`` + ``part-NNNNN.json`` (key, SHA-256)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _paths(self, number: int) -> tuple[Path, Path]:
        return (self.folder / f"part-{number:05d}.nc", self.folder / f"part-{number:05d}.json")

    def job(self) -> dict | None:
        f = self.folder / "job.json"
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            return None

    def set_job(self, job: dict) -> None:
        with atomic_path(self.folder / "job.json") as tmp:
            tmp.write_text(json.dumps(job, indent=1))

    def done(self, part: Partition) -> bool:
        """Is ``part`` checkpointed with its key, and is its file intact?"""
        data, meta = self._paths(part.number)
        try:
            info = json.loads(meta.read_text())
            return info["key"] == part.key and file_sha256(data) == info["sha256"]
        except (OSError, ValueError, KeyError):
            return False

    def done_all(self, parts: list[Partition]) -> list[bool]:
        """:meth:`done` of each part, hashed on this machine's threads (hashing releases the
        GIL: a province's parts are a gigabyte)."""
        return on_threads(self.done, parts)

    def write(self, part: Partition, arrays: dict) -> None:
        data, meta = self._paths(part.number)
        # not fsynced (hundreds of MB in a province): a part damaged by a power cut fails its
        # hash on resume and is recomputed
        with atomic_path(data) as tmp:
            _to_dataset(arrays).to_netcdf(tmp, engine="scipy")
        with atomic_path(meta) as tmp:
            tmp.write_text(json.dumps({"key": part.key, "sha256": file_sha256(data),
                                       "parcels": int(len(part.parcels))}))

    def read(self, part: Partition) -> dict:
        ds = xr.load_dataset(self._paths(part.number)[0], engine="scipy")
        out = {k: ds[k].values for k in ds.data_vars}
        out["attrs"] = dict(ds.attrs)
        return out

    def prune(self, keep: set[int]) -> None:
        """Delete parts of cells no longer in the plan."""
        for f in self.folder.glob("part-*.*"):
            number = f.stem.split("-")[1]
            if not number.isdigit() or int(number) not in keep:
                f.unlink(missing_ok=True)


def _to_dataset(a: dict) -> xr.Dataset:
    """A part's arrays as a Dataset (dims ``n_row``, ``n_owned``, ``n_seam``, ``time``)."""
    def dims(k: str) -> tuple[str, ...]:
        if k in STATS:
            return ("n_row", "time")
        if k == "parcel":
            return ("n_row",)
        if k.startswith("owned"):
            return ("n_owned",)
        return ("n_seam",) if k in ("seam_parcel", "seam_weight") else ("n_seam", "time")

    return xr.Dataset({k: (dims(k), v) for k, v in a.items() if k != "attrs"},
                      attrs=a.get("attrs", {}))


# --- the job's series ----------------------------------------------------------------------

@dataclass
class SeriesPlan:
    """A job's series, planned: the batch's parcels in the grid's CRS, the partitions with
    their keys and those still to compute."""

    cube: xr.Dataset
    measured: gpd.GeoDataFrame
    parts: list[Partition]
    todo: list[Partition]
    store: PartStore | None
    params: SeriesParams
    progress: Progress | None = None
    #: The progress last reported, per step (a bar redrawn is a new bar).
    shown: dict = field(default_factory=dict)

    def show(self, done: int, parcels_done: float) -> None:
        for step, value, total in (("partitions", done, len(self.parts)),
                                   ("parcels", int(parcels_done), len(self.measured))):
            if self.progress and self.shown.get(step) != value:
                self.shown[step] = value
                self.progress(step, value, total)


def open_cube(parcels: gpd.GeoDataFrame, source: ImagerySource, start, end) -> xr.Dataset:
    """The imagery over the batch's usable parcels from ``start`` to ``end`` (lazy)."""
    usable = parcels[parcels["validity"] != "rejected"] if "validity" in parcels else parcels
    if usable.empty:
        raise InputError("no usable parcel in the batch (all rejected).",
                         source=parcels.attrs.get("source", "parcels"),
                         fix="see the validity_reasons column of the output")
    return source.load(tuple(usable.total_bounds), usable.crs, start, end)


def plan_series(parcels: gpd.GeoDataFrame, source: ImagerySource, start, end, *,
                cube: xr.Dataset | None = None, work: str | Path | None = None,
                partition_px: int | None = DEFAULT_PARTITION_PX,
                params: SeriesParams = SeriesParams(), progress: Progress | None = None,
                log: Log | None = None, report: dict | None = None) -> SeriesPlan:
    """The partitions of the series of every parcel over ``[start, end]``, their keys, and
    which of them ``work`` holds checkpointed (None: no checkpoints); says what is resumed.

    ``cube``: :func:`open_cube` of the same, if opened already. ``report`` receives what is
    done (for ``run.json``): partition size, partitions, how many are resumed and computed."""
    say = log or (lambda _msg: None)
    partition_px = partition_px or DEFAULT_PARTITION_PX
    cube = open_cube(parcels, source, start, end) if cube is None else cube
    geobox = cube.odc.geobox
    measured = gpd.GeoDataFrame({"parcel_id": parcels["parcel_id"].astype(str).to_numpy()},
                                geometry=parcels.geometry.to_numpy(), crs=parcels.crs)
    if "validity" in parcels:
        measured.loc[(parcels["validity"] == "rejected").to_numpy(), "geometry"] = None
    if measured.crs is None or not geobox.crs == measured.crs:
        measured = measured.to_crs(geobox.crs.to_wkt())
    plan = plan_partitions(measured.geometry.values.to_numpy(), geobox,
                           *cell_edges(cube, partition_px))
    job = job_fingerprint(cube, source, params, partition_px)
    ids = measured["parcel_id"].to_numpy(dtype=object)
    wkb = shapely.to_wkb(measured.geometry.values.to_numpy())  # (once: 36 parts, 10⁶ shapes)
    plan = [dataclasses.replace(part, key=part_key(job, part, ids, wkb)) for part in plan]
    store = PartStore(Path(work)) if work is not None else None
    todo = _resume(store, plan, job, say) if store is not None else list(plan)
    planned = SeriesPlan(cube, measured, plan, todo, store, params, progress)
    waiting = {p.number for p in todo}
    planned.show(len(plan) - len(todo), sum(p.n_counted for p in plan
                                            if p.number not in waiting))
    if report is not None:
        report.update(partition_px=partition_px, partitions=len(plan),
                      resumed=len(plan) - len(todo), computed=len(todo))
    return planned


def run_series(plan: SeriesPlan, *, scheduler: str | None = None) -> xr.Dataset:
    """The planned series: the partitions still to do computed (on this machine, or as tasks
    of the dask.distributed scheduler at ``scheduler``, whose workers must reach the imagery;
    the parts are written here) and checkpointed, then all parts assembled in batch order."""
    results: dict[int, dict] = {}
    waiting = {p.number for p in plan.todo}
    n_done = len(plan.parts) - len(plan.todo)
    counted = sum(p.n_counted for p in plan.parts if p.number not in waiting)

    def finished(part: Partition, arrays: dict) -> None:
        nonlocal n_done, counted
        if plan.store is not None:
            plan.store.write(part, arrays)
        else:
            results[part.number] = arrays
        n_done += 1
        counted += part.n_counted
        plan.show(n_done, counted)

    if scheduler:
        _run_on_cluster(scheduler, plan.cube, plan.todo, plan.measured, plan.params, finished)
    else:
        for part in plan.todo:
            def dates(k: int, n_t: int, part=part) -> None:
                plan.show(n_done, counted + part.n_counted * k / n_t)
            finished(part, run_partition(plan.cube, part, plan.measured.iloc[part.parcels],
                                         plan.params, progress=dates))
    plan.show(len(plan.parts), len(plan.measured))
    parts = (plan.store.read(p) if plan.store is not None else results[p.number]
             for p in plan.parts)
    return assemble(parts, plan.measured["parcel_id"].to_numpy(), plan.cube["time"].values,
                    plan.params)


def partitioned_series(parcels: gpd.GeoDataFrame, source: ImagerySource, start, end, *,
                       work: str | Path | None = None,
                       partition_px: int | None = DEFAULT_PARTITION_PX,
                       params: SeriesParams = SeriesParams(), scheduler: str | None = None,
                       progress: Progress | None = None, log: Log | None = None,
                       report: dict | None = None) -> xr.Dataset:
    """Parcel series of every parcel (rejected ones get no pixels) over ``[start, end]``,
    partition by partition, checkpointed in ``work`` (None: no checkpoints) and resumed from it
    (:func:`plan_series`, then :func:`run_series`).

    Examples
    --------
    >>> series = partitioned_series(parcels, LocalSource("/data/s2"), start, end,
    ...                             work="out/.wheat.agri3s/parts")       # doctest: +SKIP
    """
    plan = plan_series(parcels, source, start, end, work=work, partition_px=partition_px,
                       params=params, progress=progress, log=log, report=report)
    return run_series(plan, scheduler=scheduler)


class Deferred:
    """A value made on first use and kept (a job's series: a job resumed past the stages that
    need them never assembles them)."""

    def __init__(self, make: Callable[[], object]):
        self._make, self.made = make, False

    def __call__(self):
        if not self.made:
            self._value, self.made = self._make(), True
        return self._value


def job_series(parcels: gpd.GeoDataFrame, source: ImagerySource, start, end, *,
               parcels_key: str | pd.DataFrame, screen: Callable[[xr.Dataset], xr.Dataset] | None = None,
               scheduler: str | None = None, work: str | Path | None = None,
               partition_px: int | None = DEFAULT_PARTITION_PX,
               params: SeriesParams = SeriesParams(), progress: Progress | None = None,
               log: Log | None = None, report: dict | None = None) -> tuple[Deferred, str]:
    """A job's series (``screen``: the job's look screen applied to them), planned, computed
    and assembled when first called (:func:`plan_series`, :func:`run_series`), and the key that
    stands for them in the later stages' checkpoints.

    The key hashes what determines the series without planning them: the job's fingerprint
    (imagery, grid and partition size, parameters, code) and ``parcels_key``, which identifies
    ``parcels`` (the parcels' checkpoint key). A job resumed past every stage that needs the
    series thus neither plans nor reads its partitions; ``report`` then holds the partitions
    its interrupted run planned."""
    partition_px = partition_px or DEFAULT_PARTITION_PX
    cube = open_cube(parcels, source, start, end)
    job = job_fingerprint(cube, source, params, partition_px)
    if report is not None:
        before = PartStore(Path(work)).job() if work is not None else None
        planned = (before or {}).get("partitions") if (before or {}).get(
            "fingerprint") == job else None
        report.update(partition_px=partition_px, partitions=planned, resumed=planned,
                      computed=0)

    def make() -> xr.Dataset:
        plan = plan_series(parcels, source, start, end, cube=cube, work=work,
                           partition_px=partition_px, params=params, progress=progress,
                           log=log, report=report)
        series = run_series(plan, scheduler=scheduler)
        return screen(series) if screen else series

    return Deferred(make), content_key(job, parcels_key)


def _resume(store: PartStore, plan: list[Partition], job: dict, say: Log) -> list[Partition]:
    """The partitions still to compute; says what is resumed and why anything restarts."""
    before = store.job()
    if before is not None and before.get("fingerprint") != job:
        why = [text for kind, text in _KINDS.items()
               if before.get("fingerprint", {}).get(kind) != job[kind]]
        say(f"checkpoints found but {' and '.join(why) or 'the job changed'}: restarting all "
            f"{len(plan)} partitions.")
        store.prune(set())
    store.set_job({"fingerprint": job, "partitions": len(plan)})
    store.prune({p.number for p in plan})
    todo = [p for p, ok in zip(plan, store.done_all(plan)) if not ok]
    done = len(plan) - len(todo)
    if done and before is not None and before.get("fingerprint") == job:
        stale = sum(1 for p in todo if store._paths(p.number)[1].exists())
        text = f"resuming: {done} of {len(plan)} partitions already done"
        if stale:
            text += f"; the parcels of {stale} partition(s) changed: recomputing them"
        say(text + ".")
    elif before is not None and before.get("fingerprint") == job and todo:
        say(f"checkpoints found but none matches: computing all {len(plan)} partitions.")
    return todo



def connect(address: str):
    """A ``dask.distributed`` client of the scheduler at ``address`` (``tcp://host:8786``);
    bad input (exit 2) when it cannot be reached."""
    distributed = require("distributed", "distributed")
    try:
        return distributed.Client(address, timeout="30s")
    except OSError as exc:
        raise InputError(f"cannot reach the dask scheduler at {address} ({exc}).",
                         source="--scheduler",
                         fix="start it with `dask scheduler` (and workers with `dask worker "
                             "ADDRESS`) or leave --scheduler out to run on this machine") from exc


def _run_on_cluster(address: str, cube: xr.Dataset, todo: list[Partition],
                    measured: gpd.GeoDataFrame, params: SeriesParams,
                    finished: Callable[[Partition, dict], None]) -> None:
    """Every partition as one task on the cluster at ``address``; parts are checkpointed here as
    their results arrive. A task on a worker that dies is rerun by the scheduler, and each
    partition's future resolves once, so no partition is lost or written twice."""
    distributed = require("distributed", "distributed")
    with connect(address) as client:
        # the cube (lazy: file names) and each partition's parcels travel inside the tasks,
        # held by the scheduler: data scattered to a worker dies with it
        futures = {client.submit(_partition_task, cube, part, measured.iloc[part.parcels],
                                 params, key=f"agri3s-partition-{part.number}-{part.key[:16]}",
                                 pure=False): part for part in todo}
        for future in distributed.as_completed(futures):
            finished(futures.pop(future), future.result())


def _partition_task(cube: xr.Dataset, part: Partition, parcels: gpd.GeoDataFrame,
                    params: SeriesParams) -> dict:
    """:func:`run_partition` on a cluster worker, on the worker's own threads."""
    import dask

    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        threads = None
    with dask.config.set(scheduler="threads", num_workers=threads or os.cpu_count() or 1):
        return run_partition(cube, part, parcels, params)
