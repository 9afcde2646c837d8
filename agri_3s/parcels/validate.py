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

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..crs import degree_problem, equal_area_measures, require_crs, swap_xy
from ..errors import InputError
from ..reasons import reason
from ..units import M2_PER_MU, m2_to_mu
from .columns import CROP_CODES

#: Below this a "parcel" is a digitising slip rather than a field.
MIN_AREA_MU = 0.1
#: Above this (≈ 667 ha) one polygon is not a single insured field (a village boundary, a CRS
#: mix-up); large state farms' fields stay well below.
MAX_AREA_MU = 10_000.0
#: Default tolerance of |measured / declared − 1| before AREA_MISMATCH is noted.
AREA_TOLERANCE = 0.15
#: A parcel whose mean width (2 · area / perimeter) is below this is a sliver, not a field.
SLIVER_WIDTH_M = 1.0
#: A part of a multi-part parcel is a sliver when smaller than this share of the parcel and
#: smaller than MIN_AREA_MU (e.g. the spikes make_valid leaves behind).
SLIVER_PART_SHARE = 0.01

_RANK = {"ok": 0, "repaired": 1, "rejected": 2}
#: report columns, in order, before the user's own columns
REPORT_COLUMNS = ("row_number", "parcel_id", "validity", "validity_reasons", "validity_reasons_zh",
                  "validity_reasons_en", "repairs", "area_mu", "declared_area_mu", "area_ratio")


def _polygonal(geom):
    """The polygonal part of a geometry (make_valid can return collections)."""
    if geom is None or geom.is_empty:
        return geom
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


class _Row:
    """Status, reasons and repairs collected for one row."""

    def __init__(self) -> None:
        self.status = "ok"
        self.notes: list[tuple[str, dict]] = []
        self.repairs: list[str] = []

    def add(self, code: str, status: str = "ok", repair: str | None = None, **fields) -> None:
        self.notes.append((code, fields))
        if _RANK[status] > _RANK[self.status]:
            self.status = status
        if repair:
            self.repairs.append(repair)


def _clean_geometry(g, geographic: bool, row: _Row):
    """Geometry checks that need no area. Returns the cleaned geometry (None when rejected)."""
    if g is None or g.is_empty:
        row.add("EMPTY_GEOMETRY", "rejected")
        return None
    if shapely.has_z(g) or shapely.has_m(g):
        g = shapely.force_2d(g)
        row.add("Z_DROPPED", repair="dropped_z")
    if geographic:
        problem = degree_problem(g)
        if problem == "swapped":
            g = swap_xy(g)
            row.add("COORDS_SWAPPED", "repaired", "swapped_lon_lat")
        elif problem == "not_degrees":
            x, y = shapely.get_coordinates(g)[0]
            row.add("COORDS_NOT_DEGREES", "rejected", x=x, y=y)
            return None
    kind = g.geom_type
    if kind in ("LineString", "LinearRing"):
        xy = shapely.get_coordinates(g)
        if len(xy) >= 4 and np.array_equal(xy[0], xy[-1]):
            g = shapely.Polygon(xy)
            row.add("LINE_TO_POLYGON", "repaired", "line_to_polygon")
        else:
            row.add("NOT_POLYGON", "rejected", kind=kind)
            return None
    elif kind == "GeometryCollection":
        poly = _polygonal(g)
        if poly.is_empty:
            row.add("NOT_POLYGON", "rejected", kind=kind)
            return None
        g = poly
        row.add("INVALID_GEOMETRY", "repaired", "kept_polygons",
                detail="geometry collection: only its polygons kept")
    elif kind not in ("Polygon", "MultiPolygon"):
        row.add("NOT_POLYGON", "rejected", kind=kind)
        return None
    n_before = shapely.get_num_coordinates(g)
    try:
        deduped = shapely.remove_repeated_points(g)
    except shapely.errors.GEOSException:  # a ring collapsing below 4 points: caught below
        deduped = g
    removed = n_before - shapely.get_num_coordinates(deduped)
    if removed > 0:
        g = deduped
        row.add("DUPLICATE_VERTICES", repair="removed_duplicate_vertices", n=int(removed))
    parts = list(getattr(g, "geoms", [g]))
    distinct = [len(np.unique(shapely.get_coordinates(p.exterior), axis=0)) for p in parts]
    if max(distinct) < 3:
        row.add("TOO_FEW_VERTICES", "rejected", n=max(distinct))
        return None
    if not g.is_valid:
        why = shapely.is_valid_reason(g)
        fixed = _polygonal(shapely.make_valid(g))
        if fixed is None or fixed.is_empty or fixed.area == 0:
            row.add("REPAIR_FAILED", "rejected", detail=why)
            return None
        g = fixed
        n_parts = len(getattr(g, "geoms", [g]))
        # area_mu is filled in once areas are measured
        row.add("SELF_INTERSECTION", "repaired", "make_valid", detail=why, parts=n_parts)
    return g


def validate_parcels(gdf: gpd.GeoDataFrame, *, area_tolerance: float = AREA_TOLERANCE,
                     min_area_mu: float = MIN_AREA_MU, max_area_mu: float = MAX_AREA_MU,
                     known_crops: tuple[str, ...] | None = CROP_CODES) -> gpd.GeoDataFrame:
    """A copy of ``gdf`` with every row kept, geometries repaired where possible, and the
    columns ``validity``, ``validity_reasons`` / ``_zh`` / ``_en``, ``repairs``, ``area_mu``
    and ``area_ratio`` added (``row_number`` too, if the reader did not set it).

    Parameters
    ----------
    gdf : parcels with a CRS and the columns ``parcel_id``, ``crop``, ``declared_area_mu``.
    area_tolerance : |measured / declared − 1| above which AREA_MISMATCH is noted (not a reject).
    min_area_mu, max_area_mu : measured areas outside these are rejected.
    known_crops : crop codes not noted as CROP_UNRECOGNISED (``None``: no crop-code check).

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
    crs = require_crs(gdf, gdf.attrs.get("source", "parcels"))
    out = gdf.copy()
    n = len(out)
    if "row_number" not in out.columns:
        out.insert(0, "row_number", np.arange(1, n + 1))
    row_numbers = out["row_number"].to_numpy()
    rows = [_Row() for _ in range(n)]
    read_notes = gdf.attrs.get("read_notes") or {}
    repaired_on_read = {"RING_NOT_CLOSED": ("repaired", "closed_ring"),
                        "ATTRIBUTES_VARY": ("ok", None)}
    for i, rn in enumerate(row_numbers):
        for code, fields in read_notes.get(int(rn), []):
            status, repair = repaired_on_read.get(code, ("rejected", None))
            rows[i].add(code, status, repair, **fields)
    shift = gdf.attrs.get("datum_shift")
    original = out.geometry.to_numpy()
    cleaned = np.empty(n, dtype=object)
    for i, g in enumerate(original):
        if shift and g is not None and not g.is_empty:
            rows[i].add("CRS_CONVERTED", repair=None, source=gdf.attrs.get("source_crs", shift))
        if rows[i].status == "rejected":  # unreadable on input
            continue
        cleaned[i] = _clean_geometry(g, crs.is_geographic, rows[i])

    area_m2 = _measure_and_trim(cleaned, crs, rows, min_area_mu)

    area_mu = m2_to_mu(area_m2)
    for i in range(n):
        r = rows[i]
        r.notes = [(c, {**f, "area_mu": area_mu[i]}) if c == "SELF_INTERSECTION" else (c, f)
                   for c, f in r.notes]
        if cleaned[i] is None or r.status == "rejected":
            continue
        if area_mu[i] < min_area_mu:
            r.add("AREA_TOO_SMALL", "rejected", area_mu=area_mu[i], min_mu=min_area_mu)
        elif area_mu[i] > max_area_mu:
            r.add("AREA_TOO_LARGE", "rejected", area_mu=area_mu[i], max_mu=max_area_mu)

    _check_attributes(out, rows, row_numbers, known_crops)

    declared = pd.to_numeric(out["declared_area_mu"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((declared > 0) & (area_mu > 0), area_mu / declared, np.nan)
    for i in np.flatnonzero(np.abs(ratio - 1) > area_tolerance):
        if rows[i].status != "rejected":
            rows[i].add("AREA_MISMATCH", measured=area_mu[i], declared=declared[i],
                        diff=abs(ratio[i] - 1), tol=area_tolerance)

    final = [original[i] if rows[i].status == "rejected" else cleaned[i] for i in range(n)]
    out = out.set_geometry(gpd.GeoSeries(final, index=out.index, crs=out.crs))
    texts = [[reason(c, **f) for c, f in r.notes] for r in rows]
    out["validity"] = [r.status for r in rows]
    out["validity_reasons"] = [";".join(t[0] for t in ts) for ts in texts]
    out["validity_reasons_zh"] = ["；".join(t[1] for t in ts) for ts in texts]
    out["validity_reasons_en"] = ["; ".join(t[2] for t in ts) for ts in texts]
    out["repairs"] = [";".join(dict.fromkeys(r.repairs)) for r in rows]
    out["area_mu"] = np.where([r.status == "rejected" and cleaned[i] is None
                               for i, r in enumerate(rows)], 0.0, area_mu)
    out["area_ratio"] = ratio
    return out


def _measure_and_trim(cleaned: np.ndarray, crs, rows: list[_Row], min_area_mu: float
                      ) -> np.ndarray:
    """Measure every part on equal-area projections; drop sliver parts; reject slivers.

    Returns each row's area in m² (after trimming; 0 where no geometry).
    """
    n = len(cleaned)
    owner = [i for i in range(n) if cleaned[i] is not None for _ in
             range(len(getattr(cleaned[i], "geoms", [cleaned[i]])))]
    parts = [p for g in cleaned if g is not None for p in getattr(g, "geoms", [g])]
    area = np.zeros(n)
    if not parts:
        return area
    p_area, p_len = equal_area_measures(gpd.GeoSeries(parts, crs=crs))
    holes = [(i, shapely.Polygon(ring)) for i, p in zip(owner, parts) for ring in p.interiors]
    hole_area = np.zeros(n)
    hole_count = np.zeros(n, dtype=int)
    if holes:
        h_area, _ = equal_area_measures(gpd.GeoSeries([h for _, h in holes], crs=crs))
        for (i, _), a in zip(holes, h_area):
            hole_area[i] += a
            hole_count[i] += 1
    owner = np.array(owner)
    min_m2 = min_area_mu * M2_PER_MU
    for i in np.unique(owner):
        pick = np.flatnonzero(owner == i)
        total = p_area[pick].sum()
        sliver = (p_area[pick] < SLIVER_PART_SHARE * total) & (p_area[pick] < min_m2)
        keep = pick[~sliver] if (~sliver).any() else pick
        if len(keep) < len(pick):
            cut = pick[sliver]
            rows[i].add("SLIVER_PARTS_REMOVED", "repaired", "removed_slivers", n=len(cut),
                        area_m2=float(p_area[cut].sum()))
            kept = [parts[k] for k in keep]
            cleaned[i] = kept[0] if len(kept) == 1 else shapely.MultiPolygon(kept)
        area[i] = p_area[keep].sum()
        perimeter = p_len[keep].sum()
        if len(keep) > 1:
            rows[i].add("MULTIPART", n=len(keep))
        if hole_count[i]:
            rows[i].add("HOLES", n=int(hole_count[i]), area_mu=m2_to_mu(hole_area[i]))
        width = 2 * area[i] / perimeter if perimeter > 0 else 0.0
        if width < SLIVER_WIDTH_M and area[i] >= min_m2:
            rows[i].add("SLIVER", "rejected", width=width)
    return area


def _blank(values: pd.Series) -> np.ndarray:
    return (values.isna() | (values.astype(str).str.strip().isin(["", "nan", "None"]))).to_numpy()


def _check_attributes(out: gpd.GeoDataFrame, rows: list[_Row], row_numbers: np.ndarray,
                      known_crops) -> None:
    """Missing / duplicate ids, missing crop, non-positive declared area, unknown crop codes."""
    ids = out["parcel_id"]
    no_id = _blank(ids)
    first_row: dict[str, int] = {}
    for i, pid in enumerate(ids.astype(str).str.strip()):
        if no_id[i]:
            rows[i].add("MISSING_ID", "rejected")
        elif pid in first_row:
            rows[i].add("DUPLICATE_ID", "rejected", parcel_id=pid, first=first_row[pid])
        else:
            first_row[pid] = int(row_numbers[i])
    crop_blank = _blank(out["crop"])
    declared = pd.to_numeric(out["declared_area_mu"], errors="coerce")
    for i in range(len(out)):
        if crop_blank[i]:
            rows[i].add("MISSING_ATTRIBUTE", "rejected", column="crop")
        elif known_crops is not None and str(out["crop"].iloc[i]).strip() not in known_crops:
            rows[i].add("CROP_UNRECOGNISED", crop=str(out["crop"].iloc[i]).strip())
        if not declared.iloc[i] > 0:
            value = out["declared_area_mu"].iloc[i]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                rows[i].add("MISSING_ATTRIBUTE", "rejected", column="declared_area_mu")
            else:
                rows[i].add("DECLARED_AREA_INVALID", "rejected", value=value)


def report_table(validated: gpd.GeoDataFrame) -> pd.DataFrame:
    """The check report: one row per input row, :data:`REPORT_COLUMNS` first, then the user's
    other columns (no geometry)."""
    first = [c for c in REPORT_COLUMNS if c in validated.columns]
    rest = [c for c in validated.columns if c not in first and c != validated.geometry.name]
    return pd.DataFrame(validated[first + rest])


def check_parcels_file(path: str | Path, out_dir: str | Path, *, crs: object = None,
                       layer: str | None = None, columns: dict | str | None = None,
                       encoding: str | None = None, area_tolerance: float = AREA_TOLERANCE
                       ) -> dict:
    """``agri3s parcels check``: read + validate a parcel file, write ``parcels_report.csv``
    (one row per input row) and ``rejects.gpkg`` (rejected rows, as given) into ``out_dir``.

    Returns a summary dict: ``files`` (name → path), ``rows_in``, ``ok``, ``repaired``,
    ``rejected``, ``source_crs``, ``datum_shift``, ``encoding``, ``column_mapping``.
    Raises :class:`InputError` (exit 2) — after writing the report — when no row is usable.

    Examples
    --------
    >>> summary = check_parcels_file("parcels.csv", "out/check", crs="gcj02")  # doctest: +SKIP
    >>> summary["rejected"], summary["files"]["report"]                          # doctest: +SKIP
    (2, PosixPath('out/check/parcels_report.csv'))
    """
    from .io import read_parcels

    out_dir = Path(out_dir)
    gdf = read_parcels(path, crs=crs, layer=layer, columns=columns, encoding=encoding)
    checked = validate_parcels(gdf, area_tolerance=area_tolerance)
    counts = checked["validity"].value_counts()
    summary = {
        "rows_in": len(gdf), **{k: int(counts.get(k, 0)) for k in ("ok", "repaired", "rejected")},
        "source_crs": gdf.attrs.get("source_crs"), "datum_shift": gdf.attrs.get("datum_shift"),
        "encoding": gdf.attrs.get("encoding"), "column_mapping": gdf.attrs.get("column_mapping"),
        "files": {},
    }
    report = out_dir / "parcels_report.csv"
    _atomic_write(report, lambda tmp: report_table(checked).to_csv(tmp, index=False,
                                                                  encoding="utf-8-sig"))
    summary["files"]["report"] = report
    rejects = checked[checked["validity"] == "rejected"]
    if len(rejects):
        target = out_dir / "rejects.gpkg"
        _atomic_write(target, lambda tmp: _plain(rejects).to_file(tmp, driver="GPKG",
                                                                 layer="rejects"))
        summary["files"]["rejects"] = target
    if summary["rejected"] == len(checked):
        raise InputError(f"no usable parcel in the file ({len(checked)} row(s), all rejected).",
                         source=path, fix=f"see {report} for each row's reasons")
    return summary


def _plain(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Object columns as text so GPKG stores them; geometry left as given."""
    out = gdf.copy()
    for col in out.columns:
        if col != out.geometry.name and out[col].dtype == object:
            out[col] = out[col].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                    else str(v))
    return out


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
