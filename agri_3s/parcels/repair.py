"""Geometry checks and repairs of parcel validation as array code over all rows at once
(a province's million parcels): the notes of every row, cleaning (Z, lat/lon order, lines and
collections, repeated vertices, invalid rings) and measuring (areas, sliver parts, holes).

Only the rare rows that need one (a line to close, a collection, an invalid ring, a sliver part
to cut) are handled one by one.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from ..crs import equal_area_measures
from ..reasons import reason
from ..units import M2_PER_MU, m2_to_mu

#: A parcel whose mean width (2 · area / perimeter) is below this is a sliver, not a field.
SLIVER_WIDTH_M = 1.0
#: A part of a multi-part parcel is a sliver when smaller than this share of the parcel and
#: smaller than the smallest parcel (e.g. the spikes make_valid leaves behind).
SLIVER_PART_SHARE = 0.01

_RANK = {"ok": 0, "repaired": 1, "rejected": 2}
_STATUS = np.array(["ok", "repaired", "rejected"], dtype=object)
_TYPE_NAMES = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint",
                        "MultiLineString", "MultiPolygon", "GeometryCollection"], dtype=object)
_CHUNK = 20_000


class Notes:
    """Status, reasons and repairs of ``n`` rows. A note is added to many rows at once; its
    fields are scalars or arrays aligned with those rows; texts are assembled note by note.

    Examples
    --------
    >>> notes = Notes(3)
    >>> _ = notes.add(np.array([True, False, True]), "MULTIPART", n=np.array([2, 3]))
    >>> _ = notes.add([2], "EMPTY_GEOMETRY", "rejected")
    >>> notes.status().tolist(), notes.texts()[0].tolist()
    (['ok', 'ok', 'rejected'], ['MULTIPART', '', 'MULTIPART;EMPTY_GEOMETRY'])
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.rank = np.zeros(n, np.int8)
        self.events: list[tuple[np.ndarray, str, dict]] = []
        self.repairs = np.full(n, "", dtype=object)

    def add(self, rows, code: str, status: str = "ok", repair: str | None = None,
            **fields) -> dict:
        """Note ``code`` on ``rows`` (a boolean mask or indices); returns its fields, which a
        caller may complete later (a value measured afterwards)."""
        rows = np.asarray(rows)
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.intp)
        if len(idx):
            self.rank[idx] = np.maximum(self.rank[idx], _RANK[status])
            if repair:
                cur = self.repairs[idx]
                self.repairs[idx] = np.where(cur == "", repair, cur + ";" + repair)
            self.events.append((idx, code, fields))
        return fields

    def rejected(self) -> np.ndarray:
        return self.rank == _RANK["rejected"]

    def status(self) -> np.ndarray:
        return _STATUS[self.rank]

    def texts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(codes, zh, en)`` per row, ``;`` / ``；`` / ``; ``-separated, in the notes' order."""
        out = [np.full(self.n, "", dtype=object) for _ in range(3)]
        seps = (";", "；", "; ")
        for idx, code, fields in self.events:
            per_row = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
            if per_row:
                common = {k: v for k, v in fields.items() if k not in per_row}
                made = [reason(code, **common, **{k: v[j] for k, v in per_row.items()})
                        for j in range(len(idx))]
                parts = [np.array([m[t] for m in made], dtype=object) for t in range(3)]
            else:
                parts = list(reason(code, **fields))
            for t in range(3):
                cur = out[t][idx]
                out[t][idx] = np.where(cur == "", parts[t], cur + seps[t] + parts[t])
        return out[0], out[1], out[2]


def _polygonal(geom):
    """The polygonal part of a geometry (make_valid can return collections)."""
    if geom is None or geom.is_empty:
        return geom
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _first_coordinates(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy, owner = shapely.get_coordinates(geoms, return_index=True)
    _, first = np.unique(owner, return_index=True)
    return xy[first, 0], xy[first, 1]


def _dedupe(geoms: np.ndarray) -> np.ndarray:
    """Repeated vertices removed, in chunks; a row whose ring would collapse is kept as is
    (the vertex count rejects it next)."""
    out = geoms.copy()
    for start in range(0, len(geoms), _CHUNK):
        part = geoms[start:start + _CHUNK]
        try:
            out[start:start + _CHUNK] = shapely.remove_repeated_points(part)
        except shapely.errors.GEOSException:
            for k, g in enumerate(part):
                try:
                    out[start + k] = shapely.remove_repeated_points(g)
                except shapely.errors.GEOSException:
                    out[start + k] = g
    return out


def clean_geometries(geoms: np.ndarray, geographic: bool, notes: Notes,
                     skip: np.ndarray) -> tuple[np.ndarray, dict | None]:
    """The checks that need no area, on every row not in ``skip``. Returns the cleaned
    geometries (None where rejected or skipped) and the fields of the SELF_INTERSECTION note
    (its ``area_mu`` is filled in once measured)."""
    n = len(geoms)
    g = np.asarray(geoms, dtype=object).copy()
    todo = ~skip
    empty = todo & (shapely.is_missing(g) | shapely.is_empty(g))
    notes.add(empty, "EMPTY_GEOMETRY", "rejected")
    todo &= ~empty
    z = todo & (shapely.has_z(g) | shapely.has_m(g))
    if z.any():
        g[z] = shapely.force_2d(g[z])
        notes.add(z, "Z_DROPPED", repair="dropped_z")
    if geographic and todo.any():
        b = np.full((n, 4), np.nan)
        b[todo] = shapely.bounds(g[todo])
        ax = np.maximum(np.abs(b[:, 0]), np.abs(b[:, 2]))
        ay = np.maximum(np.abs(b[:, 1]), np.abs(b[:, 3]))
        in_range = (ax <= 180) & (ay <= 90)
        swapped = todo & ~in_range & (ax <= 90) & (ay <= 180)
        far = todo & ~in_range & ~swapped
        if swapped.any():
            g[swapped] = shapely.transform(g[swapped], lambda c: c[:, [1, 0]].copy())
            notes.add(swapped, "COORDS_SWAPPED", "repaired", "swapped_lon_lat")
        if far.any():
            x, y = _first_coordinates(g[far])
            notes.add(far, "COORDS_NOT_DEGREES", "rejected", x=x, y=y)
            todo &= ~far
    kind = np.where(todo, shapely.get_type_id(g), -1)
    for i in np.flatnonzero(np.isin(kind, (1, 2))):   # lines: a closed one is a boundary
        xy = shapely.get_coordinates(g[i])
        if len(xy) >= 4 and np.array_equal(xy[0], xy[-1]):
            g[i], kind[i] = shapely.Polygon(xy), 3
            notes.add([i], "LINE_TO_POLYGON", "repaired", "line_to_polygon")
    for i in np.flatnonzero(kind == 7):                # collections: their polygons
        poly = _polygonal(g[i])
        if not poly.is_empty:
            g[i], kind[i] = poly, shapely.get_type_id(poly)
            notes.add([i], "INVALID_GEOMETRY", "repaired", "kept_polygons",
                      detail="geometry collection: only its polygons kept")
    other = todo & ~np.isin(kind, (3, 6))
    notes.add(other, "NOT_POLYGON", "rejected", kind=_TYPE_NAMES[kind[other]])
    todo &= ~other
    idx = np.flatnonzero(todo)
    before = shapely.get_num_coordinates(g[idx])
    deduped = _dedupe(g[idx])
    removed = before - shapely.get_num_coordinates(deduped)
    g[idx] = np.where(removed > 0, deduped, g[idx])
    notes.add(idx[removed > 0], "DUPLICATE_VERTICES", repair="removed_duplicate_vertices",
              n=removed[removed > 0])
    # a valid polygon has three distinct vertices a part; only the invalid need a closer look
    bad = idx[~shapely.is_valid(g[idx])]
    few, fixed, failed = [], [], []
    for i in bad:
        rings = [p.exterior for p in getattr(g[i], "geoms", [g[i]])]
        distinct = max(len(np.unique(shapely.get_coordinates(r), axis=0)) for r in rings)
        if distinct < 3:
            few.append((i, distinct))
            continue
        reason_text = shapely.is_valid_reason(g[i])
        repaired = _polygonal(shapely.make_valid(g[i]))
        if repaired is None or repaired.is_empty or repaired.area == 0:
            failed.append((i, reason_text))
        else:
            g[i] = repaired
            fixed.append((i, reason_text, len(getattr(repaired, "geoms", [repaired]))))
    notes.add([i for i, _ in few], "TOO_FEW_VERTICES", "rejected",
              n=np.array([k for _, k in few], dtype=int))
    notes.add([i for i, _ in failed], "REPAIR_FAILED", "rejected",
              detail=np.array([w for _, w in failed], dtype=object))
    intersect = notes.add([i for i, *_ in fixed], "SELF_INTERSECTION", "repaired", "make_valid",
                          detail=np.array([w for _, w, _ in fixed], dtype=object),
                          parts=np.array([k for *_, k in fixed], dtype=int)) if fixed else None
    if intersect is not None:
        intersect["_rows"] = np.array([i for i, *_ in fixed], dtype=np.intp)
    cleaned = np.full(n, None, dtype=object)
    keep = todo & ~notes.rejected()
    cleaned[keep] = g[keep]
    return cleaned, intersect


def measure_and_trim(cleaned: np.ndarray, crs, notes: Notes, min_area_mu: float) -> np.ndarray:
    """Measure every part on equal-area projections; cut sliver parts; reject slivers.

    Returns each row's area in m² (after trimming; 0 where no geometry); ``cleaned`` is
    updated where parts were cut.
    """
    n = len(cleaned)
    area = np.zeros(n)
    parts, owner = shapely.get_parts(cleaned, return_index=True)
    if not len(parts):
        return area
    p_area, p_len = equal_area_measures(gpd.GeoSeries(parts, crs=crs))
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    is_hole = np.ones(len(rings), bool)
    is_hole[np.unique(ring_part, return_index=True)[1]] = False  # each part's first: exterior
    hole_count = np.bincount(owner[ring_part[is_hole]], minlength=n)
    hole_m2 = np.zeros(n)
    if is_hole.any():
        h_area, _ = equal_area_measures(gpd.GeoSeries(shapely.polygons(rings[is_hole]), crs=crs))
        hole_m2 = np.bincount(owner[ring_part[is_hole]], h_area, minlength=n)
    min_m2 = min_area_mu * M2_PER_MU
    total = np.bincount(owner, p_area, minlength=n)
    sliver = (p_area < SLIVER_PART_SHARE * total[owner]) & (p_area < min_m2)
    kept_parts = np.bincount(owner[~sliver], minlength=n)
    keep = ~sliver | (kept_parts[owner] == 0)          # all slivers: keep them all
    cut = np.bincount(owner[~keep], minlength=n)
    rows_cut = np.flatnonzero(cut)
    if len(rows_cut):  # rebuild those parcels from the parts they keep
        sel = np.flatnonzero(keep & np.isin(owner, rows_cut))
        pos = np.searchsorted(rows_cut, owner[sel])
        rebuilt = shapely.multipolygons(parts[sel], indices=pos)
        single = np.bincount(pos, minlength=len(rows_cut)) == 1
        cleaned[rows_cut] = np.where(single, shapely.get_geometry(rebuilt, 0), rebuilt)
    notes.add(rows_cut, "SLIVER_PARTS_REMOVED", "repaired", "removed_slivers",
              n=cut[rows_cut], area_m2=np.bincount(owner, p_area * ~keep, minlength=n)[rows_cut])
    area = np.bincount(owner, p_area * keep, minlength=n)
    perimeter = np.bincount(owner, p_len * keep, minlength=n)
    n_parts = np.bincount(owner[keep], minlength=n)
    multi = n_parts > 1
    notes.add(multi, "MULTIPART", n=n_parts[multi])
    has_holes = hole_count > 0
    notes.add(has_holes, "HOLES", n=hole_count[has_holes], area_mu=m2_to_mu(hole_m2[has_holes]))
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.where(perimeter > 0, 2 * area / perimeter, 0.0)
    thin = (n_parts > 0) & (width < SLIVER_WIDTH_M) & (area >= min_m2)
    notes.add(thin, "SLIVER", "rejected", width=width[thin])
    return area
