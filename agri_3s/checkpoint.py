"""Checkpoints of a job's later stages, so that a rerun after a kill resumes past them.

The partitions' series are checkpointed by :mod:`agri_3s.partition_job`. After them a job
decides (verdicts or losses: the crop model, the neighbours and the soil levels need the whole
batch) and writes its outputs. Both are kept in the work folder's ``parts/`` under a key that
hashes everything they depend on — the series (by what determines them: the imagery, grid,
series parameters and code, and the parcels; a job resumed past its decisions and
``series.nc`` never assembles them), the parcels, the job's parameters and the package's code
— so a rerun reads them back only when it would compute the same thing; any
change gives another key and they are recomputed:

* ``parcels.pkl`` + ``parcels.json``: the parcels as read and checked (validation of 10⁶
  polygons takes longer than reading them back), under a key of the parcel file's bytes (with
  its companions), the reading options and the code;
* ``decided.pkl`` + ``decided.json``: the decision table and what the job reports about it
  (the crop model's report and the series' facts for ``run.json``) — pickled, because only that
  gives back exactly the same table (a user's column of mixed types, dates, pandas' string
  dtype), which the outputs need to come out byte-identical; it is the job's own file;
* ``imagery.pkl`` + ``imagery.json``: the map's imagery layers (reading a province's look
  takes seconds), under the decisions' key;
* ``outputs/NAME.partial`` + ``.partial.json``: a CSV or GeoJSON being written, block by block
  (:mod:`agri_3s.outputs.streaming`);
* ``outputs/NAME`` + ``outputs/NAME.json``: each output file as written into the staging
  folder (a hard link to it: keeping it costs no copy).

Each file is checked by its size and modification time, recorded in its JSON sidecar (written
after it): hashing gigabytes again on resume would cost seconds; ``run.json`` hashes the files
it publishes. The series' partitions are checked by SHA-256 (:mod:`agri_3s.partition_job`).
"""

from __future__ import annotations

import gc
import glob
import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
import xarray as xr

from .blocks import on_threads
from .outputs.export import atomic_path, file_sha256, versions
from .outputs.publish import RunFolder

#: The package's files whose content decides a job's results (all of its code and data).
_PACKAGE = Path(__file__).resolve().parent


def package_fingerprint() -> str:
    """SHA-256 of agri_3s's sources and data files and the libraries' versions."""
    h = hashlib.sha256(json.dumps(versions(), sort_keys=True).encode())
    for f in sorted(_PACKAGE.rglob("*")):
        if f.suffix in (".py", ".toml", ".json") and "node_modules" not in f.parts:
            h.update(str(f.relative_to(_PACKAGE)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def content_key(*items) -> str:
    """One SHA-256 over ``items``: datasets and tables by their content (every variable,
    coordinate, column and geometry), arrays by their bytes, the rest as sorted JSON."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, xr.Dataset):
            arrays = [(name, item[name].values) for name in sorted(map(str, item.variables))]
            h.update(_digests(arrays))
            h.update(json.dumps(item.attrs, sort_keys=True, default=str).encode())
        elif isinstance(item, pd.DataFrame):
            arrays = []
            for name in item.columns:
                col = item[name]
                if col.dtype.name == "geometry":
                    wkb = shapely.to_wkb(np.asarray(col.values))
                    wkb = np.where(pd.isna(wkb), b"", wkb)
                    arrays += [(f"{name}.length", np.fromiter(map(len, wkb), np.int64,
                                                              len(wkb))),
                               (f"{name}.wkb", np.frombuffer(b"".join(wkb), np.uint8))]
                else:
                    arrays.append((str(name), col.to_numpy() if col.dtype.kind in "biufcmM"
                                   else col.to_numpy(dtype=object)))
            h.update(_digests(arrays))
        elif isinstance(item, np.ndarray):
            h.update(_digests([("array", item)]))
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _digests(arrays: list[tuple[str, object]]) -> bytes:
    """The SHA-256 of each named array, on the job's threads (a province's series is a
    gigabyte; hashing releases the GIL)."""
    def digest(named: tuple[str, object]) -> bytes:
        name, a = named
        a = np.asarray(a)
        h = hashlib.sha256(f"{name}|{a.dtype}|{a.shape}".encode())
        if a.dtype == object:  # strings, dates, None: pandas' vectorised hash of each value
            a = pd.util.hash_pandas_object(pd.Series(a.ravel(), dtype=object), index=False)
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        return h.digest()

    return b"".join(on_threads(digest, arrays))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_pickled(parts: Path | None, name: str, key: str):
    """What was checkpointed as ``name`` under ``key``, or None."""
    if parts is None:
        return None
    data = parts / f"{name}.pkl"
    if not _intact(data, parts / f"{name}.json", key):
        return None
    collecting = gc.isenabled()
    gc.disable()  # (it would walk the 10⁶ shapes and rows again and again: 1.8 → 0.8 s)
    try:
        return pd.read_pickle(data)
    except (OSError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError):
        return None
    finally:
        if collecting:
            gc.enable()


def save_pickled(parts: Path | None, name: str, key: str, obj) -> None:
    """Checkpoint ``obj`` as ``name`` (atomically: the sidecar is written last)."""
    if parts is None:
        return
    parts.mkdir(parents=True, exist_ok=True)
    data = parts / f"{name}.pkl"
    with atomic_path(data) as tmp:
        pd.to_pickle(obj, tmp, protocol=pickle.HIGHEST_PROTOCOL)
    _seal(data, parts / f"{name}.json", key)


def _seal(data: Path, meta: Path, key: str) -> None:
    """Record ``data`` as checkpointed under ``key``: its size and modification time (hashing
    a province's gigabytes again on resume would cost seconds)."""
    st = os.stat(data)
    with atomic_path(meta) as tmp:
        tmp.write_text(json.dumps({"key": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def _intact(data: Path, meta: Path, key: str) -> bool:
    """Is ``data`` the file :func:`_seal` recorded under ``key``?"""
    info = _read_json(meta)
    try:
        st = os.stat(data)
    except OSError:
        return False
    return info is not None and info.get("key") == key and \
        [st.st_size, st.st_mtime_ns] == [info.get("size"), info.get("mtime_ns")]


def file_identity(path: str | Path) -> str:
    """SHA-256 of an input file with its companions (a shapefile's ``.dbf``, ``.prj``, ``.cpg``
    …: the files beside it with the same stem), or of every file in an input folder."""
    path = Path(path)
    files = (sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else
             sorted(f for f in path.parent.glob(f"{glob.escape(path.stem)}.*") if f.is_file()))
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path if path.is_dir() else path.parent)).encode() + b"\0")
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def checkpointed_parcels(parts: Path | None, source, read: Callable[[], pd.DataFrame],
                         log: Callable[[str], None] | None = None, **options
                         ) -> tuple[pd.DataFrame, str | pd.DataFrame]:
    """``read()`` — the parcels read and validated from the file ``source`` with
    ``options`` — or the same, checkpointed by an interrupted run of the same job (the file,
    its companions, the options and agri_3s's code unchanged). Parcels given as a table in
    memory are read every time.

    Returns the parcels and what identifies them in a later stage's key: the key they are
    checkpointed under (it determines them, and costs nothing to hash again), or the hash of
    the table given (without ``parts``: the table)."""
    if parts is None or not isinstance(source, (str, Path)) or not Path(source).exists():
        gdf = read()
        return gdf, (gdf if parts is None else content_key(gdf, options, package_fingerprint()))
    key = content_key(file_identity(source), options, package_fingerprint())
    done = load_pickled(parts, "parcels", key)
    if done is not None:
        if log:
            log("resuming: the parcels as the interrupted run read and checked them.")
        return done, key
    gdf = read()
    save_pickled(parts, "parcels", key, gdf)
    return gdf, key


def reuse_or_write(parts: Path, key: str, path: Path, write: Callable[[Path], Path]
                   ) -> tuple[Path, bool]:
    """``write(path)`` an output file — unless an earlier, killed run of the same job (same
    ``key``) already wrote it: then it is linked back into place. Either way it is kept as a
    checkpoint in ``parts/outputs/``. Returns the path and whether it was reused."""
    keep = parts / "outputs" / path.name
    meta = keep.with_name(keep.name + ".json")
    if _intact(keep, meta, key):
        path.unlink(missing_ok=True)
        _link(keep, path)
        return path, True
    meta.unlink(missing_ok=True)
    written = write(path)
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.unlink(missing_ok=True)
    _link(written, keep)
    _seal(keep, meta, key)
    return written, False


def _link(src: Path, dst: Path) -> None:
    """A hard link (the staging folder and the checkpoints share a file system); a copy
    where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass(frozen=True)
class Stage:
    """Where a job's decisions and outputs are checkpointed (``parts``, None: nowhere), the
    key of everything they depend on, and where the job says what it reused."""

    parts: Path | None
    key: str
    log: Callable[[str], None] | None = None

    @classmethod
    def of(cls, work: RunFolder | None, log: Callable[[str], None] | None,
           *data: xr.Dataset | pd.DataFrame | str, **parameters) -> Stage:
        """The stage of a job on ``data`` (its series, parcels or their checkpoint key, …)
        with ``parameters``."""
        if work is None:
            return cls(None, "", log)
        return cls(work.parts, content_key(*data, parameters, package_fingerprint()), log)

    def decide(self, decide: Callable[[], tuple[pd.DataFrame, dict]]
               ) -> tuple[pd.DataFrame, dict]:
        """``decide()`` → (table, report), or both from an interrupted run of the same job."""
        done = load_pickled(self.parts, "decided", self.key)
        if done is not None:
            if self.log:
                self.log("resuming: the decisions of the interrupted run are reused.")
            return done
        table, report = decide()
        save_pickled(self.parts, "decided", self.key, (table, report))
        return table, report
