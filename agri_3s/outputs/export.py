"""Verdict and claim exports (versioned schema), the run manifest, atomic writes.

Formats by file suffix: ``.csv`` (UTF-8 with BOM so Excel shows Chinese), ``.geojson``
(EPSG:4326), ``.gpkg``, ``.parquet`` (GeoParquet). Every file is written to a temporary name in
the same folder and renamed into place, so a reader never sees half a file.

CSV cells are spreadsheet-safe: a text cell that would start a formula (``=``, ``+``, ``-``,
``@``, TAB, CR — OWASP's list) gets a leading ``'``; numbers, and text that is a plain number
(``-0.5``), are left alone. GeoJSON, GeoPackage and GeoParquet keep every value as it is.
An export with a published schema (:mod:`.schemas`) has its text clipped to the schema's
``maxLength`` (with a warning), and the schema is written beside it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
from collections.abc import Iterator, Sequence
from pathlib import Path

import geopandas as gpd
import pandas as pd

from ..blocks import on_threads
from ..errors import InputError
from ..types import SCHEMA_VERSION
from .schemas import json_schema, table_schema, text_limits
from .streaming import csv_blocks, geojson_blocks, write_blocks

FORMATS = (".csv", ".geojson", ".gpkg", ".parquet")
LOGGER = logging.getLogger(__name__)
#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_START = r"^[=+\-@\t\r]"
#: Text that is just a number: a spreadsheet reads it as that number, never as a formula.
PLAIN_NUMBER = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
ELLIPSIS = "…"


@contextlib.contextmanager
def atomic_path(path: str | Path, *, sync: bool = False) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s own name, in a hidden folder beside it
    (``.NAME.tmp-HOST-PID-…/NAME``), and move it onto ``path`` on success.

    The file is written under its real name, so no temporary name reaches its content (a
    GeoJSON's or GeoPackage's layer name is the file's stem), and what a killed writer left
    beside ``path`` is removed by the next write there (:func:`remove_stale_temporaries`).
    ``sync``: flush the file and its folder to disk before returning (checkpoints).

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> sorted(p.name for p in folder.iterdir()), tmp.name
    (['a.txt'], 'a.txt')
    """
    import shutil
    import tempfile

    path = output_file(path)
    remove_stale_temporaries(path.parent)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{_HOST}-{os.getpid()}-",
                                   dir=path.parent))
    tmp = folder / path.name
    try:
        yield tmp
        if sync:
            fsync_path(tmp)
        os.replace(tmp, path)
        if sync:
            fsync_path(path.parent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_folder(folder: str | Path) -> Path:
    """Create ``folder`` and its parents (``mkdir -p``). A file standing where a folder must be
    is bad input (exit 2) naming that file.

    >>> import tempfile; base = Path(tempfile.mkdtemp()); (base / "f").touch()
    >>> try:
    ...     make_folder(base / "f" / "out")
    ... except InputError as exc:
    ...     exc.problem == f"cannot create the folder {base}/f/out: {base}/f is a file."
    True
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), folder)
        raise InputError(f"cannot create the folder {folder}: {blocker} is a file.",
                         fix="give --out a path that does not run through a file (missing "
                             "folders are created)") from exc
    return folder


def output_file(path: str | Path) -> Path:
    """``path``, ready to be written: its folder made (:func:`make_folder`); a folder standing
    at ``path`` itself is bad input (exit 2) naming it."""
    path = Path(path)
    make_folder(path.parent)
    if path.is_dir():
        raise InputError("a folder stands where this file is to be written.", source=path,
                         fix="give --out a file name that is not a folder (or remove it)")
    return path


_HOST = "".join(ch if ch.isalnum() else "_" for ch in platform.node() or "host")


def fsync_path(path: str | Path) -> None:
    """Flush a file or a folder (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries that writers on this host left in ``folder`` when they were killed
    (their process is gone): :func:`atomic_path`'s ``.NAME.tmp-HOST-PID-…`` folders and the
    ``.STEM.tmp-PID.SUFFIX`` files of earlier agri_3s versions. Returns what was removed."""
    import re
    import shutil

    removed = []
    ours = re.compile(rf"^\..+\.tmp-{re.escape(_HOST)}-(\d+)-[^/]*$")
    older = re.compile(r"^\..+\.tmp-(\d+)(\.[^.]*)?$")
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = ours.match(entry.name) or older.match(entry.name)
        if not m:
            continue  # not a temporary, or another host's
        if _alive(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return pid > 0


def write_table(table: pd.DataFrame, path: str | Path, *, export: str | None = None,
                resume: tuple[Path, str] | None = None) -> Path:
    """Write a table (a GeoDataFrame for the spatial formats) atomically, in the format of
    ``path``'s suffix.

    Parameters
    ----------
    table : the rows; for ``.csv`` the geometry column is left out.
    path : ``.csv`` | ``.geojson`` | ``.gpkg`` | ``.parquet``.
    export : the export's name when it has a published schema (``verdicts``, ``claims``,
        ``parcels_report``): text is clipped to the schema's ``maxLength``.
    resume : (checkpoint folder, key): a CSV or GeoJSON grows block by block in the folder and
        an interrupted write with the same key goes on where it stopped (:mod:`.streaming`).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> write_table(claims, "out/claims.csv", export="claims")  # doctest: +SKIP
    PosixPath('out/claims.csv')
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError("unsupported export format.", source=path,  # a ValueError too
                         fix=f"end the file name in {', '.join(FORMATS)}")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame = pd.DataFrame(table.drop(columns="geometry", errors="ignore"))
            integers = _integer_columns(frame, export)
            write_blocks(csv_blocks(frame, lambda rows: _fit_schema(
                neutralise_formulas(rows), export, path, integers)), tmp, resume)
            return path
        gdf = table if isinstance(table, gpd.GeoDataFrame) else gpd.GeoDataFrame(table)
        # (decided on whole columns, so that every block of rows is written alike)
        kinds, integers = _column_kinds(gdf), _integer_columns(gdf, export)

        def prepare(rows: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            return _fit_schema(_plain_columns(rows, kinds), export, path, integers)

        if suffix == ".geojson":
            write_blocks(geojson_blocks(gdf, path.stem, lambda rows: prepare(rows).to_crs(4326)),
                         tmp, resume)
        elif suffix == ".gpkg":
            prepare(gdf).to_file(tmp, driver="GPKG", layer=path.stem)
        else:
            prepare(gdf).to_parquet(tmp)
    return path


def _text_cells(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s)


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` safe to open in a spreadsheet: every text cell (and column name) that
    starts with ``=``, ``+``, ``-``, ``@``, TAB or CR gets a leading ``'`` (OWASP), unless the
    text is a plain number. Numeric columns are untouched.

    Examples
    --------
    >>> t = pd.DataFrame({"note": ["=1+1", "-0.5", "@SUM(A1)", "ok"],
    ...                   "loss_rate": [-0.5, 0.1, 0.2, 0.3]})
    >>> neutralise_formulas(t)["note"].tolist()
    ["'=1+1", '-0.5', "'@SUM(A1)", 'ok']
    """
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if not _text_cells(s):
            continue
        try:
            risky = s.str.match(FORMULA_START, na=False) & ~s.str.fullmatch(PLAIN_NUMBER,
                                                                            na=False)
        except AttributeError:  # an object column without text (dates, mixed objects)
            continue
        if risky.any():
            out[col] = s.where(~risky, "'" + s[risky].astype(str))
    names = pd.Series([str(c) for c in out.columns])
    risky = names.str.match(FORMULA_START) & ~names.str.fullmatch(PLAIN_NUMBER)
    if risky.any():
        out.columns = names.where(~risky, "'" + names).tolist()
    return out


def _integer_columns(frame: pd.DataFrame, export: str | None) -> set[str]:
    """The float columns the export's schema calls integers that hold only whole numbers (and
    gaps): written as integers (``2``, not ``2.0``)."""
    if export is None:
        return set()
    props = json_schema(export)["properties"]
    out = set()
    for col in frame.columns:
        s = frame[col]
        if "integer" in props.get(col, {}).get("type", ()) and pd.api.types.is_float_dtype(s):
            finite = s.dropna()
            if (finite == finite.round()).all():
                out.add(col)
    return out


def _fit_schema(frame: pd.DataFrame, export: str | None, path: Path,
                integers: set[str] | None = None) -> pd.DataFrame:
    """``frame`` as its export schema states it: whole-number columns with gaps as integers
    (``integers``, default: :func:`_integer_columns` of ``frame``), and text longer than
    ``maxLength`` cut to it (ending in …) with a warning naming the column and rows. Row
    validation rejects such input (the reason is in the row); this keeps the file within its
    published schema all the same."""
    if export is None:
        return frame
    out = frame.copy()
    for col in _integer_columns(frame, export) if integers is None else integers:
        out[col] = frame[col].astype("Int64")
    geometry = frame.geometry.name if isinstance(frame, gpd.GeoDataFrame) else None
    for col, limit in text_limits(export, [c for c in frame.columns if c != geometry]).items():
        s = frame[col]
        if not _text_cells(s):
            continue
        try:
            long = s.str.len().fillna(0).to_numpy() > limit
        except AttributeError:
            continue
        if long.any():
            out[col] = s.where(~long, s[long].str.slice(0, limit - 1) + ELLIPSIS)
            rows = (frame["row_number"][long] if "row_number" in frame
                    else frame.index[long]).tolist()
            LOGGER.warning("%s: %d value(s) of column %s longer than %d characters cut to it "
                           "(rows %s)", path.name, int(long.sum()), col, limit,
                           ", ".join(map(str, rows[:10])) + (" …" if len(rows) > 10 else ""))
    return out


def csv_header(table: pd.DataFrame) -> list[str]:
    """The column names :func:`write_table` writes in a CSV of ``table``."""
    frame = pd.DataFrame(columns=[c for c in table.columns if c != "geometry"])
    return [str(c) for c in neutralise_formulas(frame).columns]


def write_schemas(out: Path, export: str, table: pd.DataFrame, formats: Sequence[str], *,
                  include_pii: bool = False) -> dict[str, Path]:
    """Write the export's published JSON Schema (``<export>.schema.json``) and, when a CSV is
    among ``formats``, the Table Schema of that CSV (``<export>.tableschema.json``) into ``out``.

    ``include_pii``: the table was written unmasked; the schemas say so (no masking patterns).

    Examples
    --------
    >>> write_schemas(Path("out"), "claims", claims, (".csv", ".geojson"))  # doctest: +SKIP
    {'claims.schema.json': ..., 'claims.tableschema.json': ...}
    """
    header = csv_header(table) if ".csv" in formats else None
    return _schema_files(Path(out), export, header, include_pii)


def write_csv_schemas(csv_path: str | Path, export: str, *, include_pii: bool = False
                      ) -> dict[str, Path]:
    """The schemas of a CSV export already written (e.g. ``parcels_report.csv``), beside it:
    the JSON Schema and the Table Schema of the file's header.

    Examples
    --------
    >>> write_csv_schemas("out/parcels_report.csv", "parcels_report")  # doctest: +SKIP
    {'parcels_report.schema.json': ..., 'parcels_report.tableschema.json': ...}
    """
    import csv

    csv_path = Path(csv_path)
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), [])
    return _schema_files(csv_path.parent, export, header, include_pii)


def _schema_files(out: Path, export: str, header: list[str] | None, include_pii: bool
                  ) -> dict[str, Path]:
    name = f"{export}.schema.json"
    files = {name: write_json(json_schema(export, include_pii=include_pii), out / name)}
    if header is not None:
        name = f"{export}.tableschema.json"
        files[name] = write_json(table_schema(export, header, include_pii=include_pii),
                                 out / name)
    return files


#: GeoJSON's coordinates are WGS84 longitude, latitude (what GDAL's driver declares too).
def _column_kinds(gdf: gpd.GeoDataFrame) -> dict[str, str]:
    """How each object / date column is stored in a GIS format: ``boolean`` (True / False /
    missing, not the text "True"), ``text`` (as it is) or ``iso`` (dates and mixed objects as
    ISO strings)."""
    kinds = {}
    for col in gdf.columns:
        s = gdf[col]
        if col == gdf.geometry.name or not (s.dtype == object
                                            or str(s.dtype).startswith("datetime")):
            continue
        inferred = pd.api.types.infer_dtype(s, skipna=True) if s.dtype == object else ""
        kinds[col] = ("boolean" if inferred == "boolean" else
                      "text" if inferred in ("string", "empty") else "iso")
    return kinds


def _plain_columns(gdf: gpd.GeoDataFrame, kinds: dict[str, str] | None = None
                   ) -> gpd.GeoDataFrame:
    """Dates and mixed objects → ISO strings, which every GIS format stores (``kinds``:
    :func:`_column_kinds`, default those of ``gdf``)."""
    out = gdf.copy()
    for col, kind in (_column_kinds(gdf) if kinds is None else kinds).items():
        if kind == "boolean":
            out[col] = gdf[col].astype("boolean")
        elif kind == "iso":  # ("text": as it is, nothing per cell to convert)
            out[col] = gdf[col].map(lambda v: None if v is None or (isinstance(v, float)
                                                                    and v != v)
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
                   outputs: dict, started: dt.datetime, relative_to: str | Path | None = None,
                   **more) -> Path:
    """``run.json`` in ``out``: inputs with hashes, parameters, imagery dates, outputs with
    hashes, versions (and any ``more`` sections).

    Paths are relative: outputs to ``out``, inputs to ``relative_to`` (the published ``--out``
    when ``out`` is the staging folder it is assembled in; default ``out``) where they can be,
    so a run folder does not carry the user's home folder; the hashes identify the files."""
    base = Path(relative_to if relative_to is not None else out)
    imagery = {k: relative_path(v, base) if k in ("path", "series") and v
               and imagery.get("kind", "local") == "local" else v for k, v in imagery.items()}

    # (gigabytes at a province: hashed on the job's threads, as hashing releases the GIL)
    hashed = [p for p in (*inputs.values(), *outputs.values()) if Path(p).is_file()]
    sha256 = dict(zip(hashed, on_threads(file_sha256, hashed)))

    def described(files: dict, root: Path) -> dict:
        return {k: {"path": relative_path(p, root), "sha256": sha256[p]} if p in sha256
                else {"path": relative_path(p, root)} for k, p in files.items()}

    manifest = {"job": job, "schema_version": SCHEMA_VERSION,
                "started": started.isoformat(timespec="seconds"),
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "inputs": described(inputs, base), "parameters": parameters, "imagery": imagery,
                "outputs": described(outputs, Path(out)), **more, "versions": versions()}
    return write_json(manifest, Path(out) / "run.json")


def relative_path(path: str | Path, base: str | Path) -> str:
    """``path`` relative to the folder ``base`` (POSIX separators), or as given when it cannot
    be (another drive); a name that is not a file path (``sample:…``) is kept."""
    p = Path(path)
    try:
        return Path(os.path.relpath(p.resolve(), Path(base).resolve())).as_posix()
    except (ValueError, OSError):
        return str(path)
