"""Read insured parcels into the parcels contract (a GeoDataFrame with a CRS, never assumed).

Accepted: GeoJSON, GeoPackage, Shapefile (DBF in GBK/GB18030 detected without a ``.cpg``),
KML/KMZ (Google Earth, 奥维 and other field apps; Chinese ExtendedData names kept), GeoParquet,
and CSV / XLSX tables in three shapes:

* ``wkt`` — one row per parcel with a WKT (or EWKT ``SRID=4326;POLYGON(...)``) column;
* ``vertices`` — one row per parcel with a vertex list (``lon,lat;lon,lat;…``, ``lon lat, …``
  or JSON ``[[lon, lat], …]``);
* ``vertex_rows`` — one row per vertex (lon / lat columns), grouped by ``parcel_id`` (blank ids
  continue the parcel above, as merged Excel cells do) and ordered by a vertex-number column
  when there is one, else by file order.

Every parcel gets ``row_number`` (1-based, as the user sees it: the feature number in GIS files,
the spreadsheet row in CSV/XLSX with the header as row 1). Problems met while reading a row
(unclosed rings, unreadable geometry, …) are passed to validation in
``gdf.attrs["read_notes"]`` = ``{row_number: [(code, fields), …]}``; no row is dropped.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..crs import check_coordinates, parse_crs, require_crs, to_wgs84_from
from ..errors import InputError
from .columns import (
    GEOMETRY_ALIASES,
    apply_columns,
    find_columns,
    parse_column_spec,
    to_number,
    truncated_in,
)

#: Needed by the jobs (underwrite, assess); ``parcels check`` checks files without them.
REQUIRED_COLUMNS = ("parcel_id", "crop", "declared_area_mu")
#: Needed to turn a loss into an indemnity.
CLAIM_COLUMNS = ("policy_id", "sum_insured_cny_per_mu")
TABLE_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls")
#: Columns LIBKML adds to every KML layer; dropped when they hold nothing but defaults.
_KML_DEFAULT_COLUMNS = ("id", "timestamp", "begin", "end", "altitudeMode", "tessellate",
                        "extrude", "visibility", "drawOrder", "icon")

Notes = dict[int, list[tuple[str, dict]]]


def read_parcels(path: str | Path, *, crs: object = None, layer: str | None = None,
                 columns: dict | str | None = None, encoding: str | None = None,
                 require: tuple[str, ...] = REQUIRED_COLUMNS) -> gpd.GeoDataFrame:
    """Read a parcel file and map its columns to the parcels contract.

    Parameters
    ----------
    path : GeoJSON, GeoPackage, Shapefile, KML/KMZ, GeoParquet, CSV or XLSX file.
    crs : the coordinates' CRS when the file has none or states it wrongly: any EPSG / WKT,
        ``"gcj02"`` (Amap/Tencent) or ``"bd09"`` (Baidu) — those are converted to WGS84 here.
        Required for CSV / XLSX (unless the WKT is EWKT with an SRID).
    layer : layer of a GeoPackage / KML, or sheet of an XLSX workbook (default: all KML
        folders; the first layer / sheet otherwise).
    columns : ``{source header: our column}`` overriding the built-in header recognition
        (:mod:`agri_3s.parcels.columns`), or ``"地块号=parcel_id,亩数=declared_area_mu"``.
    encoding : text encoding of a Shapefile DBF or CSV (default: detected).
    require : columns of :data:`REQUIRED_COLUMNS` without which the file is refused
        (:class:`InputError` naming them and the fix). The others, when the file lacks them
        (a field app's KML, a surveyed vertex table), are added empty and listed in
        ``attrs["absent_columns"]``, so the geometry can still be checked
        (``require=()`` in ``agri3s parcels check``).

    Returns
    -------
    GeoDataFrame with ``row_number`` first, the user's columns (recognised ones renamed) and a
    CRS. ``attrs`` holds ``source``, ``source_crs``, ``datum_shift``, ``column_mapping``,
    ``truncated_columns`` (DBF headers cut at 10 bytes that were recognised, e.g.
    ``{"declared_a": "declared_area_mu"}``), ``absent_columns``, ``encoding`` and
    ``read_notes``.

    Examples
    --------
    >>> parcels = read_parcels("sample_data/generated/parcels_wheat.geojson")  # doctest: +SKIP
    >>> parcels = read_parcels("外业采集.csv", crs="gcj02", columns={"编号": "parcel_id"})  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise InputError("parcel file not found.", source=path, fix="check the path")
    spec = parse_crs(crs) if crs is not None else None
    suffix = path.suffix.lower()
    notes: Notes = {}
    used_encoding = None
    dbf = suffix in (".shp", ".dbf", ".shz", ".zip") or (path.is_dir() and any(path.glob("*.shp")))
    try:
        if suffix in TABLE_SUFFIXES:
            gdf, notes, used_encoding = _read_table(path, layer, encoding, spec)
        elif suffix in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(path)
            gdf.insert(0, "row_number", np.arange(1, len(gdf) + 1))
        elif suffix in (".kml", ".kmz"):
            gdf, notes = _read_kml(path, layer)
        else:
            if suffix == ".shp" or (path.is_dir() and any(path.glob("*.shp"))):
                used_encoding = encoding or _shapefile_encoding(path)
            else:
                used_encoding = encoding
            try:
                gdf, notes = _read_vector(str(path), layer, used_encoding)
            except UnicodeDecodeError:
                if not dbf:
                    raise
                with _dbf_names_mended(path) as mended:  # a UTF-8 name cut mid-character
                    gdf, notes = _read_vector(str(mended), layer, used_encoding)
    except InputError:
        raise
    except Exception as exc:  # GDAL / pyogrio / pyarrow / openpyxl raise many types
        raise InputError(f"cannot read the parcel file ({exc}).", source=path,
                         fix="give a GeoJSON, GeoPackage, Shapefile, KML/KMZ, GeoParquet, CSV or "
                             "XLSX file (see README: accepted parcel files)") from exc
    source_crs = gdf.crs
    if spec is not None:
        if spec.datum_shift:
            if source_crs is not None and not gpd.GeoSeries(crs=source_crs).crs.is_geographic:
                raise InputError(f"--crs {spec.label} means lon/lat degrees, but the file is in "
                                 f"the projected CRS {source_crs.to_string()}.", source=path,
                                 fix="drop --crs, or export the parcels as lon/lat")
            geoms = to_wgs84_from(gdf.geometry.to_numpy(), spec.datum_shift)
            gdf = gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index), crs=spec.crs)
        else:
            gdf = gdf.set_crs(spec.crs, allow_override=True)
    require_crs(gdf, path)
    check_coordinates(gdf, path)
    user = parse_column_spec(columns)
    frame, mapping = apply_columns(pd.DataFrame(gdf.drop(columns=gdf.geometry.name)), user,
                                   dbf=dbf)
    gdf = gpd.GeoDataFrame(frame, geometry=gdf.geometry.to_numpy(), crs=gdf.crs)
    _check_required(gdf, path, mapping, require)
    absent = [c for c in REQUIRED_COLUMNS if c not in gdf.columns]
    for col in absent:  # geometry-only file: validation flags each row
        gdf[col] = np.full(len(gdf), None, dtype=object)
    ids = gdf["parcel_id"].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v))
                               else _id_text(v))
    gdf["parcel_id"] = ids
    gdf.attrs.update(source=str(path), source_crs=spec.label if spec else
                     (source_crs.to_string() if source_crs is not None else None),
                     datum_shift=spec.datum_shift if spec else None, column_mapping=mapping,
                     truncated_columns=truncated_in(mapping, user) if dbf else {},
                     absent_columns=absent, encoding=used_encoding, read_notes=notes)
    return gdf


def _id_text(v) -> str:
    """Ids as text; ``1001.0`` (a number cell) → ``"1001"`` so ids match across files."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _check_required(gdf: gpd.GeoDataFrame, path: Path, mapping: dict,
                    require: tuple[str, ...]) -> None:
    missing = [c for c in require if c not in gdf.columns]
    if missing:
        found = [c for c in gdf.columns if c not in ("geometry", "row_number")]
        raise InputError(
            f"column(s) {', '.join(missing)} missing, needed to underwrite or assess these "
            f"parcels (found: {', '.join(map(str, found)) or 'no attribute'}; recognised: "
            f"{mapping or 'none'}).", source=path,
            fix=f"add or name the columns {', '.join(missing)} (or a Chinese header such as "
                f"地块编号 / 作物 / 面积(亩)), or map yours with --columns 表头=parcel_id,…; "
                f"`agri3s parcels check` checks the geometry of a file without them")


# --- GIS files --------------------------------------------------------------------------------
@contextlib.contextmanager
def _gdal_config(**options):
    """Set GDAL config options for one read and restore them after."""
    import pyogrio

    old = {k: pyogrio.get_gdal_config_option(k) for k in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(old)


def _read_vector(path: str, layer, encoding: str | None, first_row: int = 1
                 ) -> tuple[gpd.GeoDataFrame, Notes]:
    """One layer via pyogrio; geometry parsed row by row so one broken ring spoils one row."""
    import pyogrio
    from pyogrio.raw import read as raw_read

    kw = {"encoding": encoding} if encoding else {}
    with warnings.catch_warnings():  # GDAL warns of unclosed rings; we note them per row
        warnings.filterwarnings("ignore", message="Non closed ring", category=RuntimeWarning)
        # GeoJSON properties of mixed types: pyogrio keeps them as text, which is what we want
        warnings.filterwarnings("ignore", message="Could not parse column", category=UserWarning)
        attrs = pyogrio.read_dataframe(path, layer=layer, read_geometry=False, **kw)
        meta, _, wkb, _ = raw_read(path, layer=layer, columns=[], **kw)
    geoms, notes = _geoms_from_wkb(wkb, first_row)
    gdf = gpd.GeoDataFrame(attrs, geometry=gpd.GeoSeries(geoms, index=attrs.index),
                           crs=meta.get("crs"))
    if "row_number" in gdf.columns:
        gdf = gdf.rename(columns={"row_number": "row_number_input"})
    gdf.insert(0, "row_number", np.arange(first_row, first_row + len(gdf)))
    return gdf, notes


def _geoms_from_wkb(wkb, first_row: int) -> tuple[list, Notes]:
    notes: Notes = {}
    out = []
    for i, blob in enumerate(wkb):
        if blob is None:
            out.append(None)
            continue
        try:
            out.append(shapely.from_wkb(blob))
        except shapely.errors.GEOSException as exc:
            fixed = shapely.from_wkb(blob, on_invalid="fix")
            row = first_row + i
            if fixed is not None and "closed" in str(exc):
                notes.setdefault(row, []).append(("RING_NOT_CLOSED", {}))
            else:
                notes.setdefault(row, []).append(("GEOMETRY_UNREADABLE", {"detail": str(exc)}))
                fixed = None
            out.append(fixed)
    return out, notes


def _shapefile_encoding(path: Path) -> str | None:
    """The DBF's text encoding when no ``.cpg`` says it: UTF-8 if its text decodes as UTF-8,
    GB18030 (a superset of GBK / GB2312) if it decodes so and holds Chinese characters.

    GDAL would otherwise trust the DBF language byte, which Chinese tools often leave at 0
    (→ ISO-8859-1, garbled names). ``None`` leaves the choice to GDAL.
    """
    shp = path if path.suffix.lower() == ".shp" else next(path.glob("*.shp"))
    if shp.with_suffix(".cpg").exists() or shp.with_suffix(".CPG").exists():
        return None
    dbf = next((p for p in (shp.with_suffix(".dbf"), shp.with_suffix(".DBF")) if p.exists()), None)
    if dbf is None:
        return None
    data = dbf.read_bytes()
    header_len = int.from_bytes(data[8:10], "little")
    body = data[header_len:]
    if all(b < 128 for b in body):
        return None
    try:
        body.decode("utf-8")
        return "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        text = body.decode("gb18030")
    except UnicodeDecodeError:
        return None
    return "GB18030" if re.search(r"[\u4e00-\u9fff]", text) else None


@contextlib.contextmanager
def _dbf_names_mended(path: Path):
    """A Shapefile whose DBF column names were cut mid-character (UTF-8 ``面积(亩)`` is 11
    bytes; the DBF keeps 10), which GDAL hands over undecodable: yields a copy in a temporary
    folder with each name's broken tail dropped (``面积(亩``), the other files linked."""
    import shutil
    import tempfile

    shp = path if path.suffix.lower() == ".shp" else next(path.glob("*.shp"), None)
    dbf = next((p for p in (shp.with_suffix(".dbf"), shp.with_suffix(".DBF")) if p.exists()),
               None) if shp is not None else None
    if dbf is None:
        raise InputError("the Shapefile's attribute names cannot be decoded.", source=path,
                         fix="re-export it, or give --encoding")
    with tempfile.TemporaryDirectory(prefix="agri3s-dbf-") as tmp:
        for f in shp.parent.glob(shp.stem + ".*"):
            if f != dbf:
                (Path(tmp) / f.name).symlink_to(f.resolve())
        fixed = Path(tmp) / dbf.name
        shutil.copyfile(dbf, fixed)
        with open(fixed, "r+b") as f:
            head = bytearray(f.read(32))
            header_len = int.from_bytes(head[8:10], "little")
            fields = bytearray(f.read(max(header_len - 32, 0)))
            for at in range(0, len(fields) - 31, 32):
                if fields[at] == 0x0D:  # end of the field descriptors
                    break
                raw = bytes(fields[at:at + 11]).split(b"\0")[0]
                name = raw.decode("utf-8", errors="ignore").encode("utf-8")
                fields[at:at + 11] = name.ljust(11, b"\0")
            f.seek(32)
            f.write(fields)
        yield Path(tmp) / shp.name


def _read_kml(path: Path, layer) -> tuple[gpd.GeoDataFrame, Notes]:
    """Every KML folder (layer) of a KML / KMZ, with the folder name in ``kml_folder``."""
    import pyogrio

    src = str(path)
    if path.suffix.lower() == ".kmz":
        with zipfile.ZipFile(path) as z:
            kmls = [n for n in z.namelist() if n.lower().endswith(".kml")]
        if not kmls:
            raise InputError("the KMZ holds no .kml file.", source=path,
                             fix="export the KMZ again from the map app, or give the .kml")
        main = "doc.kml" if "doc.kml" in kmls else kmls[0]
        src = f"/vsizip/{path}/{main}"
    # LIBKML otherwise launders non-ASCII ExtendedData names (作物 → "__"), losing columns
    with _gdal_config(LIBKML_LAUNDER_FIELD_NAMES="NO"):
        names = [str(n) for n in pyogrio.list_layers(src)[:, 0]] if layer is None else [layer]
        parts, notes, row = [], {}, 1
        for name in names:
            gdf, n = _read_vector(src, name, None, first_row=row)
            if gdf.empty:
                continue
            if len(names) > 1:
                gdf.insert(1, "kml_folder", name)
            parts.append(gdf)
            notes.update(n)
            row += len(gdf)
    if not parts:
        raise InputError("the KML holds no placemark.", source=path,
                         fix="check the file in Google Earth; export polygons, not a view")
    gdf = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    gdf = gpd.GeoDataFrame(gdf, geometry="geometry", crs=parts[0].crs or "EPSG:4326")
    for col in _KML_DEFAULT_COLUMNS:
        if col in gdf.columns:
            vals = gdf[col]
            if vals.isna().all() or vals.isin([-1, 0]).all():
                gdf = gdf.drop(columns=col)
    # a placemark's name is its label: the parcel id when the file has no other id column
    if "Name" in gdf.columns and _source_of(gdf.columns, "parcel_id", _parcel_aliases()) is None:
        gdf = gdf.rename(columns={"Name": "parcel_id"})
    return gdf, notes


def _source_of(headers, ours: str, aliases) -> str | None:
    """The header holding ``ours``: itself if present, else the first recognised alias."""
    if ours in headers:
        return ours
    return next(iter(find_columns(headers, {ours: aliases})), None)


def _parcel_aliases():
    from .columns import ALIASES

    return ALIASES["parcel_id"]


# --- tables -----------------------------------------------------------------------------------
def _read_table(path: Path, sheet, encoding: str | None, spec
                ) -> tuple[gpd.GeoDataFrame, Notes, str | None]:
    """A CSV / XLSX table in one of the three shapes (module docstring)."""
    used = None
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        df = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=str)
    else:
        raw = path.read_bytes()
        used = encoding or _text_encoding(raw)
        text = raw.decode(used)
        first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
        sep = max([",", "\t", ";", "|"], key=first.count)
        df = pd.read_csv(path, sep=sep, dtype=str, encoding=used, keep_default_na=False,
                         na_values=[""], skipinitialspace=True)
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    # a cell of spaces or tabs is blank; blank spreadsheet rows are layout, not parcels
    df = df.mask(df.apply(lambda col: col.str.strip() == "")).dropna(how="all")
    # spreadsheet row: header is row 1, so data row i (0-based) is row i + 2
    rows = (df.index.to_numpy() + 2).astype(int)
    if "row_number" in df.columns:
        df = df.rename(columns={"row_number": "row_number_input"})
    role = {k: src for k in GEOMETRY_ALIASES
            if (src := _source_of(df.columns, k, GEOMETRY_ALIASES[k])) is not None}
    srid = None
    if "wkt" in role:
        geoms, notes, srid = _geoms_from_wkt(df[role["wkt"]], rows)
        gdf = gpd.GeoDataFrame(df.drop(columns=role["wkt"]), geometry=geoms)
        gdf.insert(0, "row_number", rows)
    elif "vertices" in role:
        geoms, notes = _geoms_from_vertex_lists(df[role["vertices"]], rows)
        gdf = gpd.GeoDataFrame(df.drop(columns=role["vertices"]), geometry=geoms)
        gdf.insert(0, "row_number", rows)
    elif "lon" in role and "lat" in role:
        gdf, notes = _parcels_from_vertex_rows(df, rows, role, path)
    else:
        raise InputError(
            f"no geometry column found (headers: {', '.join(df.columns)}).", source=path,
            fix="add a WKT column (wkt), a vertex-list column (坐标 / vertices: "
                "'lon,lat;lon,lat;…'), or one row per vertex with 经度/纬度 (lon/lat) columns")
    crs = spec.crs if spec else (f"EPSG:{srid}" if srid else None)
    if crs is None:
        raise InputError(
            "CSV/XLSX files carry no coordinate reference system.", source=path,
            fix="pass --crs: EPSG:4326 for GPS/GNSS receivers, EPSG:4490 for CGCS2000/天地图, "
                "gcj02 for 高德/腾讯 map apps, bd09 for 百度, or the EPSG of projected numbers")
    gdf = gdf.set_crs(crs) if not spec else gdf  # with --crs, read_parcels sets / converts it
    return gdf, notes, used


def _text_encoding(raw: bytes) -> str:
    """UTF-8 (with or without BOM) if it decodes so, else GB18030 (Chinese Excel's CSV)."""
    try:
        raw.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "gb18030"


_SRID = re.compile(r"^\s*SRID\s*=\s*(\d+)\s*;", re.IGNORECASE)


def _geoms_from_wkt(values: pd.Series, rows) -> tuple[list, Notes, int | None]:
    notes: Notes = {}
    geoms, srids = [], set()
    for text, row in zip(values, rows):
        if not isinstance(text, str) or not text.strip():
            geoms.append(None)
            continue
        m = _SRID.match(text)
        if m:
            srids.add(int(m.group(1)))
            text = text[m.end():]
        try:
            geoms.append(shapely.from_wkt(text))
            continue
        except shapely.errors.GEOSException as exc:
            err = str(exc)
        geom, closed = _lenient_polygon_wkt(text)
        if geom is not None and closed:
            notes.setdefault(int(row), []).append(("RING_NOT_CLOSED", {}))
        elif geom is None:
            notes.setdefault(int(row), []).append(("GEOMETRY_UNREADABLE", {"detail": err}))
        geoms.append(geom)
    return geoms, notes, (srids.pop() if len(srids) == 1 else None)


def _lenient_polygon_wkt(text: str):
    """Parse (MULTI)POLYGON WKT whose rings are not closed. Returns (geometry or None, closed?)."""
    m = re.match(r"\s*(MULTIPOLYGON|POLYGON)\s*(Z|M|ZM)?\s*(\(.*\))\s*$", text,
                 re.IGNORECASE | re.DOTALL)
    if not m:
        return None, False
    try:
        nested = json.loads(re.sub(r"\)", "]", re.sub(r"\(", "[", re.sub(
            r"(-?[\d.eE+-]+(?:\s+-?[\d.eE+-]+)+)", lambda g: "[" + ",".join(g.group(1).split())
            + "]", m.group(3)))))
    except ValueError:
        return None, False
    polys = nested if m.group(1).upper() == "MULTIPOLYGON" else [nested]
    closed_any = False
    out = []
    for rings in polys:
        fixed = []
        for ring in rings:
            if len(ring) and ring[0] != ring[-1]:
                ring = ring + [ring[0]]
                closed_any = True
            fixed.append(ring)
        if len(fixed[0]) < 4:
            return None, False
        try:
            out.append(shapely.Polygon(fixed[0], fixed[1:]))
        except (ValueError, shapely.errors.GEOSException):
            return None, False
    return (out[0] if len(out) == 1 else shapely.MultiPolygon(out)), closed_any


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def parse_vertex_list(text: str) -> np.ndarray:
    """A vertex list → (n, 2) array of x, y (a third number per vertex, e.g. height, is dropped).

    Accepted: ``"116.1,37.2;116.2,37.2;…"``, ``"116.1 37.2, 116.2 37.2, …"``,
    ``"[[116.1, 37.2], …]"`` and a flat ``"116.1,37.2,116.2,37.2,…"``.

    Examples
    --------
    >>> parse_vertex_list("116.1,37.2;116.2,37.2;116.2,37.3").tolist()
    [[116.1, 37.2], [116.2, 37.2], [116.2, 37.3]]
    """
    text = text.strip().replace("，", ",").replace("；", ";")
    if text.startswith("["):
        pts = json.loads(text)
        return np.array([[float(p[0]), float(p[1])] for p in pts])
    if ";" in text or "\n" in text:
        groups = [g for g in re.split(r"[;\n]", text) if g.strip()]
    elif "," in text and " " in text.strip():
        groups = [g for g in text.split(",") if g.strip()]
    else:
        nums = [float(n) for n in _NUMBER.findall(text)]
        if len(nums) % 2:
            raise ValueError(f"odd count of numbers ({len(nums)}) in the vertex list")
        return np.array(nums, dtype=float).reshape(-1, 2)
    pts = []
    for g in groups:
        nums = [float(n) for n in _NUMBER.findall(g)]
        if len(nums) not in (2, 3):
            raise ValueError(f"vertex {g.strip()!r} does not have 2 (or 3) numbers")
        pts.append(nums[:2])
    return np.array(pts, dtype=float)


def _ring_polygon(xy: np.ndarray):
    """Polygon from a vertex sequence (closed when open, as vertex lists usually are)."""
    if len(xy) and not np.array_equal(xy[0], xy[-1]):
        xy = np.vstack([xy, xy[:1]])
    if len(xy) < 4:
        return None
    return shapely.Polygon(xy)


def _geoms_from_vertex_lists(values: pd.Series, rows) -> tuple[list, Notes]:
    notes: Notes = {}
    geoms = []
    for text, row in zip(values, rows):
        if not isinstance(text, str) or not text.strip():
            geoms.append(None)
            continue
        try:
            xy = parse_vertex_list(text)
        except (ValueError, TypeError, IndexError) as exc:
            notes.setdefault(int(row), []).append(("GEOMETRY_UNREADABLE", {"detail": str(exc)}))
            geoms.append(None)
            continue
        geom = _ring_polygon(xy)
        if geom is None:
            notes.setdefault(int(row), []).append(("TOO_FEW_VERTICES",
                                                   {"n": len(np.unique(xy, axis=0))}))
        geoms.append(geom)
    return geoms, notes


def _parcels_from_vertex_rows(df: pd.DataFrame, rows, role: dict, path: Path
                              ) -> tuple[gpd.GeoDataFrame, Notes]:
    """One row per vertex → one row per parcel (attributes from its first vertex row)."""
    id_col = _source_of(df.columns, "parcel_id", _parcel_aliases())
    if id_col is None:
        raise InputError("one row per vertex needs a parcel id column to group the vertices "
                         f"(headers: {', '.join(df.columns)}).", source=path,
                         fix="add a 地块编号 / parcel_id column, or map yours with --columns")
    df = df.copy()
    df["_row"] = rows
    # merged Excel cells: the id is written on a parcel's first vertex row only
    df[id_col] = df[id_col].ffill()
    lon, lat = to_number(df[role["lon"]]), to_number(df[role["lat"]])
    order = to_number(df[role["vertex_order"]]) if "vertex_order" in role else None
    coord_cols = {role["lon"], role["lat"], role.get("vertex_order"), "_row"}
    attr_cols = [c for c in df.columns if c not in coord_cols]
    records, geoms, notes = [], [], {}
    key = df[id_col].fillna("\0no-id")  # rows before the first id form one (rejected) parcel
    for idx in df.groupby(key, sort=False).groups.values():
        grp = df.loc[idx]
        if order is not None:
            grp = grp.assign(_o=order.loc[idx]).sort_values("_o", kind="stable")
        first = int(grp["_row"].min())
        rec = df.loc[idx].iloc[0][attr_cols].to_dict()  # attributes: first row in the file
        rec["row_number"] = first
        rec["source_rows"] = _row_ranges(sorted(grp["_row"].astype(int)))
        x, y = lon.loc[grp.index].to_numpy(), lat.loc[grp.index].to_numpy()
        bad = np.flatnonzero(np.isnan(x) | np.isnan(y))
        if len(bad):
            notes.setdefault(first, []).append(("GEOMETRY_UNREADABLE", {
                "detail": f"no number in lon/lat of row(s) "
                          f"{', '.join(str(r) for r in grp['_row'].to_numpy()[bad][:5])}"}))
            geoms.append(None)
        else:
            xy = np.column_stack([x, y])
            geom = _ring_polygon(xy)
            if geom is None:
                notes.setdefault(first, []).append(("TOO_FEW_VERTICES",
                                                    {"n": len(np.unique(xy, axis=0))}))
            geoms.append(geom)
        vary = [c for c in attr_cols if c != id_col and grp[c].nunique(dropna=True) > 1]
        if vary:
            notes.setdefault(first, []).append(("ATTRIBUTES_VARY", {"columns": ", ".join(vary)}))
        if key.loc[idx[0]] == "\0no-id":
            rec[id_col] = None
        records.append(rec)
    table = pd.DataFrame(records)
    table = table[["row_number"] + [c for c in table.columns if c != "row_number"]]
    return gpd.GeoDataFrame(table, geometry=geoms), notes


def _row_ranges(rows: list[int]) -> str:
    """``[2, 3, 4, 7]`` → ``"2-4,7"``."""
    out, start, prev = [], None, None
    for r in rows + [None]:
        if start is None:
            start = prev = r
        elif r is not None and r == prev + 1:
            prev = r
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = r
    return ",".join(out)
