"""Parcel validation and repair. Every row stays in the table with a status and reasons:
``validity`` ok | repaired | rejected, ``validity_reasons`` (codes) / ``_zh`` / ``_en``,
``repairs`` (what was changed), the measured ``area_mu`` and ``area_ratio`` (measured / declared).

* ``ok`` — usable as given (informative reasons may still be listed: Z dropped, holes, several
  parts, a conversion from GCJ-02, the declared area differing from the drawn one, …);
* ``repaired`` — usable after a stated repair of its geometry (ring closed, bow-tie split,
  lat/lon swapped back, slivers removed, …); please check it;
* ``rejected`` — not usable; the reasons say why and what to fix.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..crs import require_crs
from ..errors import InputError
from ..units import m2_to_mu
from .columns import CROP_CODES, dbf_alternatives
from .overlap import flag_overlaps
from .repair import Notes, clean_geometries, measure_and_trim

#: The contract's attribute columns a row is checked for (:data:`agri_3s.parcels.io.REQUIRED_COLUMNS`).
ATTRIBUTE_COLUMNS = ("parcel_id", "crop", "declared_area_mu")
#: Longest text accepted in an attribute cell. Ids, names, crops, villages and notes are far
#: shorter; 200 leaves room for a long address while a pasted document, a hostile 10,000-
#: character string or a whole boundary in a wrong column is refused.
MAX_TEXT_CHARS = 200
#: Columns agri_3s writes itself while reading (not user text).
_OWN_COLUMNS = ("row_number", "source_rows")

#: Below this a "parcel" is a digitising slip rather than a field.
MIN_AREA_MU = 0.1
#: Above this (≈ 667 ha) one polygon is not a single insured field (a village boundary, a CRS
#: mix-up); large state farms' fields stay well below.
MAX_AREA_MU = 10_000.0
#: Default tolerance of |measured / declared − 1| before AREA_MISMATCH is noted.
AREA_TOLERANCE = 0.15
#: report columns, in order, before the user's own columns
REPORT_COLUMNS = ("row_number", "parcel_id", "validity", "validity_reasons", "validity_reasons_zh",
                  "validity_reasons_en", "repairs", "area_mu", "declared_area_mu", "area_ratio",
                  "missing_attributes")


def validate_parcels(gdf: gpd.GeoDataFrame, *, area_tolerance: float = AREA_TOLERANCE,
                     min_area_mu: float = MIN_AREA_MU, max_area_mu: float = MAX_AREA_MU,
                     known_crops: tuple[str, ...] | None = CROP_CODES,
                     required: tuple[str, ...] = ATTRIBUTE_COLUMNS,
                     max_text_chars: int = MAX_TEXT_CHARS) -> gpd.GeoDataFrame:
    """A copy of ``gdf`` with every row kept, geometries repaired where possible, and the
    columns ``validity``, ``validity_reasons`` / ``_zh`` / ``_en``, ``repairs``, ``area_mu``,
    ``area_ratio`` and ``missing_attributes`` added (``row_number`` too, if the reader did not
    set it).

    Parameters
    ----------
    gdf : parcels with a CRS and the columns ``parcel_id``, ``crop``, ``declared_area_mu``.
    area_tolerance : |measured / declared − 1| above which AREA_MISMATCH is noted (not a reject).
    min_area_mu, max_area_mu : measured areas outside these are rejected.
    known_crops : crop codes not noted as CROP_UNRECOGNISED (``None``: no crop-code check).
    required : the columns of :data:`ATTRIBUTE_COLUMNS` the caller's job needs: absent from the
        table (or added empty by the reader, ``attrs["absent_columns"]``) they raise
        :class:`InputError` naming them. The others, when absent, are noted on every row
        (``ATTRIBUTE_ABSENT``, not a reject) — a geometry-only file is checked as far as it
        goes. A blank cell of a column the file has is a reject whatever ``required`` says.
    max_text_chars : text cells longer than this reject their row (``FIELD_TOO_LONG``).

    Area is measured per parcel on a local Lambert azimuthal equal-area projection
    (:func:`agri_3s.crs.equal_area_measures`) — exact whatever the parcel's UTM zone.
    Rejected rows keep the geometry they came with, so ``rejects.gpkg`` shows what was given.

    Examples
    --------
    >>> import shapely
    >>> bowtie = shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100)])
    >>> gdf = gpd.GeoDataFrame({"parcel_id": ["A"], "crop": ["winter_wheat"],
    ...                         "declared_area_mu": [15.0]}, geometry=[bowtie], crs=32650)
    >>> validate_parcels(gdf)[["validity", "validity_reasons"]].iloc[0].tolist()
    ['repaired', 'SELF_INTERSECTION;MULTIPART;AREA_MISMATCH']
    """
    source = gdf.attrs.get("source", "parcels")
    crs = require_crs(gdf, source)
    absent = [c for c in ATTRIBUTE_COLUMNS
              if c not in gdf.columns or c in (gdf.attrs.get("absent_columns") or ())]
    refused = [c for c in required if c in absent]
    if refused:
        raise InputError(f"column(s) {', '.join(refused)} missing: this job needs them for "
                         f"every parcel.", source=source,
                         fix=f"add the column(s) {', '.join(refused)} (or a Chinese header such "
                             f"as 地块编号 / 作物 / 面积(亩)), or map yours with --columns "
                             f"表头=crop,…")
    out = gdf.copy()
    for col in absent:
        if col not in out.columns:
            out[col] = np.full(len(out), None, dtype=object)
    n = len(out)
    if "row_number" not in out.columns:
        out.insert(0, "row_number", np.arange(1, n + 1))
    row_numbers = out["row_number"].to_numpy()
    notes = Notes(n)
    read_notes = gdf.attrs.get("read_notes") or {}
    repaired_on_read = {"RING_NOT_CLOSED": ("repaired", "closed_ring"),
                        "ATTRIBUTES_VARY": ("ok", None)}
    at = pd.Series(np.arange(n), index=row_numbers)
    for rn, items in read_notes.items():  # problems met while reading: few rows
        for i in np.atleast_1d(at.get(int(rn), [])):
            for code, fields in items:
                status, repair = repaired_on_read.get(code, ("rejected", None))
                notes.add([i], code, status, repair, **fields)
    everyone = np.ones(n, bool)
    for k, (src, ours) in enumerate((gdf.attrs.get("truncated_columns") or {}).items()):
        alt = " / ".join(dbf_alternatives(src))
        notes.add(everyone, "COLUMN_NAME_TRUNCATED", repair="mapped_truncated_column" if k == 0
                  else None, source=src, column=ours, alt_zh=f"（也可能是 {alt}）" if alt else "",
                  alt_en=f" (it could also be {alt})" if alt else "")
    if absent:
        notes.add(everyone, "ATTRIBUTE_ABSENT", columns=", ".join(absent))
    _check_text_length(out, notes, max_text_chars)
    original = out.geometry.to_numpy()
    shift = gdf.attrs.get("datum_shift")
    if shift:
        converted = ~(shapely.is_missing(original) | shapely.is_empty(original))
        notes.add(converted, "CRS_CONVERTED", source=gdf.attrs.get("source_crs", shift))
    unreadable = notes.rejected()
    cleaned, intersect = clean_geometries(original, crs.is_geographic, notes, unreadable)

    area_mu = m2_to_mu(measure_and_trim(cleaned, crs, notes, min_area_mu))
    if intersect is not None:
        intersect["area_mu"] = area_mu[intersect.pop("_rows")]
    measured = ~shapely.is_missing(cleaned) & ~notes.rejected()
    small = measured & (area_mu < min_area_mu)
    large = measured & (area_mu > max_area_mu)
    notes.add(small, "AREA_TOO_SMALL", "rejected", area_mu=area_mu[small], min_mu=min_area_mu)
    notes.add(large, "AREA_TOO_LARGE", "rejected", area_mu=area_mu[large], max_mu=max_area_mu)

    _check_attributes(out, notes, row_numbers, known_crops, absent)

    declared = pd.to_numeric(out["declared_area_mu"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((declared > 0) & (area_mu > 0), area_mu / declared, np.nan)
    off = (np.abs(ratio - 1) > area_tolerance) & ~notes.rejected()
    notes.add(off, "AREA_MISMATCH", measured=area_mu[off], declared=declared[off],
              diff=np.abs(ratio[off] - 1), tol=area_tolerance)

    rejected = notes.rejected()
    final = np.where(rejected, original, cleaned)
    out = out.set_geometry(gpd.GeoSeries(final, index=out.index, crs=out.crs))
    codes, zh, en = notes.texts()
    out["validity"] = notes.status()
    out["validity_reasons"], out["validity_reasons_zh"], out["validity_reasons_en"] = codes, zh, en
    out["repairs"] = notes.repairs
    out["area_mu"] = np.where(rejected & shapely.is_missing(cleaned), 0.0, area_mu)
    out["area_ratio"] = ratio
    out["missing_attributes"] = _missing_attributes(out, absent)
    return out


def _missing_attributes(out: gpd.GeoDataFrame, absent: list[str]) -> np.ndarray:
    """Per row, the contract attributes it lacks (``;``-separated): absent columns and blank
    cells (a non-positive declared area counts as given: its own reason says what is wrong)."""
    joined = pd.Series("", index=range(len(out)), dtype=object)
    for col in ATTRIBUTE_COLUMNS:
        blank = np.ones(len(out), bool) if col in absent else _blank(out[col])
        joined = joined + np.where(blank, col + ";", "")
    return joined.str.rstrip(";").to_numpy(dtype=object)


def _is_text(values: pd.Series) -> bool:
    """Object or string dtype (pandas ≥ 3 reads text as ``str``)."""
    return values.dtype == object or isinstance(values.dtype, pd.StringDtype)


def _text_lengths(values: pd.Series) -> np.ndarray:
    """Characters per cell (0 for missing and non-text cells)."""
    try:
        return values.str.len().fillna(0).to_numpy(dtype=np.int64)
    except AttributeError:  # an object column holding no text at all
        return np.zeros(len(values), dtype=np.int64)


def _check_text_length(out: gpd.GeoDataFrame, notes: Notes, limit: int) -> None:
    """Reject rows holding a text cell longer than ``limit`` characters (any user column)."""
    for col in out.columns:
        if col == out.geometry.name or col in _OWN_COLUMNS or not _is_text(out[col]):
            continue
        lengths = _text_lengths(out[col])
        long = lengths > limit
        notes.add(long, "FIELD_TOO_LONG", "rejected", column=str(col)[:limit], n=lengths[long],
                  max=limit)


def _blank(values: pd.Series) -> np.ndarray:
    return (values.isna() | (values.astype(str).str.strip().isin(["", "nan", "None"]))).to_numpy()


def _check_attributes(out: gpd.GeoDataFrame, notes: Notes, row_numbers: np.ndarray,
                      known_crops, absent: list[str]) -> None:
    """Missing / duplicate ids, missing crop, non-positive declared area, unknown crop codes.
    Columns the file does not have at all (``absent``) were noted on every row already."""
    if "parcel_id" not in absent:
        no_id = _blank(out["parcel_id"])
        ids = pd.Series(out["parcel_id"].astype(str).str.strip().to_numpy(dtype=object))
        notes.add(no_id, "MISSING_ID", "rejected")
        dup = ids.duplicated().to_numpy() & ~no_id       # the first row keeps the id
        first = pd.Series(row_numbers[~no_id], index=ids[~no_id]).groupby(level=0).first()
        notes.add(dup, "DUPLICATE_ID", "rejected", parcel_id=ids[dup].to_numpy(dtype=object),
                  first=first.loc[ids[dup]].to_numpy())
    if "crop" not in absent:
        blank = _blank(out["crop"])
        text = out["crop"].astype(str).str.strip().to_numpy(dtype=object)
        notes.add(blank, "MISSING_ATTRIBUTE", "rejected", column="crop")
        if known_crops is not None:
            unknown = ~blank & ~np.isin(text, list(known_crops))
            notes.add(unknown, "CROP_UNRECOGNISED",
                      crop=np.array([t[:40] for t in text[unknown]], dtype=object))
    if "declared_area_mu" not in absent:
        value = out["declared_area_mu"]
        declared = pd.to_numeric(value, errors="coerce").to_numpy(dtype=float)
        missing = value.isna().to_numpy()
        invalid = ~(declared > 0) & ~missing
        notes.add(missing, "MISSING_ATTRIBUTE", "rejected", column="declared_area_mu")
        notes.add(invalid, "DECLARED_AREA_INVALID", "rejected",
                  value=np.array([str(v)[:40] for v in value[invalid]], dtype=object))


def report_table(validated: gpd.GeoDataFrame) -> pd.DataFrame:
    """The check report: one row per input row, :data:`REPORT_COLUMNS` first, then the user's
    other columns (no geometry)."""
    first = [c for c in REPORT_COLUMNS if c in validated.columns]
    rest = [c for c in validated.columns if c not in first and c != validated.geometry.name]
    return pd.DataFrame(validated[first + rest])


def check_parcels_file(path: str | Path, out_dir: str | Path, *, crs: object = None,
                       layer: str | None = None, columns: dict | str | None = None,
                       encoding: str | None = None, area_tolerance: float = AREA_TOLERANCE,
                       include_pii: bool = False, max_text_chars: int = MAX_TEXT_CHARS) -> dict:
    """``agri3s parcels check``: read + validate a parcel file, flag overlaps inside it, and
    write ``parcels_report.csv`` (one row per input row) and ``rejects.gpkg`` (rejected rows,
    as given) into ``out_dir``.

    A file without crop / declared area (a field app's KML, a surveyed vertex table) is
    checked too: geometry, area and CRS, with the absent attributes noted on every row
    (``ATTRIBUTE_ABSENT``, column ``missing_attributes``); the jobs refuse it. Parcels that
    overlap another one of the file get ``OVERLAP`` / ``DUPLICATE_PARCEL`` (the rule of
    ``agri3s parcels overlaps``, :func:`agri_3s.parcels.overlap.flag_overlaps`). Farmer names and ID numbers are
    masked in both files unless ``include_pii``; text cells over ``max_text_chars`` are cut
    there (their row is rejected with ``FIELD_TOO_LONG``).

    Returns a summary dict: ``files`` (name → path), ``rows_in``, ``ok``, ``repaired``,
    ``rejected``, ``overlapping`` (rows flagged), ``absent_columns``, ``truncated_columns``,
    ``source_crs``, ``datum_shift``, ``encoding``, ``column_mapping``.
    Raises :class:`InputError` (exit 2) — after writing the report — when no row is usable.

    Examples
    --------
    >>> summary = check_parcels_file("parcels.csv", "out/check", crs="gcj02")  # doctest: +SKIP
    >>> summary["rejected"], summary["files"]["report"]                          # doctest: +SKIP
    (2, PosixPath('out/check/parcels_report.csv'))
    """
    # writing files is orchestration: the outputs layer's writer and masking are used here
    from ..outputs.export import write_table
    from ..outputs.privacy import mask_pii
    from .io import read_parcels

    out_dir = Path(out_dir)
    gdf = read_parcels(path, crs=crs, layer=layer, columns=columns, encoding=encoding,
                       require=())
    checked = validate_parcels(gdf, area_tolerance=area_tolerance, required=(),
                               max_text_chars=max_text_chars)
    checked = flag_overlaps(checked)
    counts = checked["validity"].value_counts()
    summary = {
        "rows_in": len(gdf), **{k: int(counts.get(k, 0)) for k in ("ok", "repaired", "rejected")},
        "overlapping": int((checked["overlapping_parcels"] != "").sum()),
        "absent_columns": list(gdf.attrs.get("absent_columns") or []),
        "truncated_columns": dict(gdf.attrs.get("truncated_columns") or {}),
        "source_crs": gdf.attrs.get("source_crs"), "datum_shift": gdf.attrs.get("datum_shift"),
        "encoding": gdf.attrs.get("encoding"), "column_mapping": gdf.attrs.get("column_mapping"),
        "files": {},
    }
    shown = _cut_text(checked if include_pii else mask_pii(checked), max_text_chars)
    report = write_table(report_table(shown), out_dir / "parcels_report.csv",
                         export="parcels_report")
    summary["files"]["report"] = report
    rejects = shown[shown["validity"] == "rejected"]
    if len(rejects):
        summary["files"]["rejects"] = write_table(_plain(rejects), out_dir / "rejects.gpkg")
    if not len(checked):
        raise InputError("the file holds no parcel (no row, no feature).", source=path,
                         fix="check that it is the right file (and --layer, for a GeoPackage, "
                             "KML or workbook)")
    if summary["rejected"] == len(checked):
        raise InputError(f"no usable parcel in the file ({len(checked)} row(s), all rejected).",
                         source=path, fix=f"see {report} for each row's reasons")
    return summary


def _cut_text(table: gpd.GeoDataFrame, limit: int) -> gpd.GeoDataFrame:
    """Text cells over ``limit`` characters cut to it (ending in …) for the written files."""
    out = table.copy()
    for col in out.columns:
        if col != out.geometry.name and _is_text(out[col]):
            long = _text_lengths(out[col]) > limit
            if long.any():
                out.loc[long, col] = out.loc[long, col].map(lambda v: v[:limit - 1] + "…")
    return out


def _plain(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Object columns as text so GPKG stores them; geometry left as given."""
    out = gdf.copy()
    for col in out.columns:
        if col != out.geometry.name and out[col].dtype == object:
            out[col] = out[col].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                    else str(v))
    return out
