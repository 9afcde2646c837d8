"""Overlap and duplicate-insurance checks (重叠 / 重复投保核查).

Two parcels *overlap* when their interiors share area; neighbours that only share an edge or a
corner do not. Checks run within a batch and against a :class:`Register` of parcels accepted in
earlier batches (a GeoPackage that grows as batches are accepted).

How it scales (1 million parcels on 2 cores, see ``tests/benchmarks/bench_overlap.py``):

1. candidate pairs from a shapely 2 ``STRtree`` bounding-box query, in chunks;
2. pairs whose bounding boxes only touch (zero-area box overlap) are dropped with numpy;
3. ``shapely.relate_pattern(a, b, "T********")`` keeps pairs whose interiors intersect — about
   2x cheaper than constructing an intersection, and most candidate pairs are touching
   neighbours;
4. ``shapely.intersection`` + ``shapely.area`` only for the pairs left.

Everything is measured in one metric CRS (:func:`agri_3s.crs.metric_crs` of the batch).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from ..crs import metric_crs, require_crs
from ..errors import InputError
from ..reasons import reason
from ..units import m2_to_mu

#: Columns of the pair table returned by :func:`find_overlaps`.
PAIR_COLUMNS = [
    "parcel_id_a", "policy_id_a", "household_id_a",
    "parcel_id_b", "policy_id_b", "household_id_b",
    "source_b", "accepted_at_b",
    "overlap_m2", "overlap_mu", "share_a", "share_b", "kind",
    "same_policy", "same_household", "same_parcel_id",
]
#: Attribute columns copied into the register (besides geometry, batch_id, accepted_at).
REGISTER_COLUMNS = ("parcel_id", "policy_id", "household_id", "crop", "season")
#: The register always stores WGS84 lon/lat, whatever CRS each batch came in.
REGISTER_CRS = CRS.from_epsg(4326)
REGISTER_LAYER = "parcels"

# Below this an "overlap" is floating-point noise along a shared edge, not area.
_AREA_EPS_M2 = 1e-6
# Both shares at least this → the two polygons cover the same land: kind "duplicate".
_SAME_GEOMETRY_SHARE = 1.0 - 1e-6


# --------------------------------------------------------------------------------------------
# core pair computation


def _geometry_array(gs: gpd.GeoSeries) -> np.ndarray:
    """A plain object array of shapely geometries (None for missing)."""
    return np.asarray(gs.array, dtype=object)


def _check_valid(geoms: np.ndarray, ids: np.ndarray, source: object) -> None:
    """Invalid polygons make GEOS intersections fail or lie: refuse them with the ids."""
    present = ~shapely.is_missing(geoms)
    bad = present & ~shapely.is_valid(np.where(present, geoms, None))
    if bad.any():
        shown = ", ".join(map(str, ids[bad][:10])) + (" …" if bad.sum() > 10 else "")
        raise InputError(f"{int(bad.sum())} parcel(s) have invalid geometry ({shown}); overlap "
                         "areas cannot be measured on them.", source=source,
                         fix="run validate_parcels (`agri3s parcels check`) and pass the "
                             "repaired geometries")


def overlapping_pairs(left: np.ndarray, right: np.ndarray | None = None, *,
                      chunk_size: int = 200_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` whose interiors intersect, with the overlap area.

    ``right=None`` compares ``left`` with itself and returns each pair once (``i < j``).
    Geometries must be in one (metric) CRS; missing / empty ones never match.

    Examples
    --------
    >>> import shapely
    >>> g = shapely.box([0, 1, 0.5], 0, [1, 2, 1.5], 1)   # two touching boxes + one across both
    >>> overlapping_pairs(g)
    (array([0, 1]), array([2, 2]), array([0.5, 0.5]))
    """
    same = right is None
    right = left if same else right
    ok_r = ~(shapely.is_missing(right) | shapely.is_empty(right))
    tree = shapely.STRtree(np.where(ok_r, right, None))
    bounds_l, bounds_r = shapely.bounds(left), shapely.bounds(right)
    out_i, out_j, out_a = [], [], []
    for start in range(0, len(left), chunk_size):
        qi, tj = tree.query(left[start:start + chunk_size])
        qi = qi + start
        keep = qi < tj if same else np.ones(len(qi), bool)
        # Boxes that only touch (zero-area box intersection) cannot hold overlapping interiors.
        lo = np.maximum(bounds_l[qi, :2], bounds_r[tj, :2])
        hi = np.minimum(bounds_l[qi, 2:], bounds_r[tj, 2:])
        keep &= ((hi - lo) > 0).all(axis=1)
        qi, tj = qi[keep], tj[keep]
        interior = shapely.relate_pattern(left[qi], right[tj], "T********")
        qi, tj = qi[interior], tj[interior]
        area = shapely.area(shapely.intersection(left[qi], right[tj]))
        real = area > _AREA_EPS_M2
        out_i.append(qi[real])
        out_j.append(tj[real])
        out_a.append(area[real])
    if not out_i:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_a)


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A column as an object array of str / None (missing columns → all None)."""
    if name not in df.columns:
        return np.full(len(df), None, dtype=object)
    col = df[name]
    return np.where(col.isna().to_numpy(), None, col.astype(str).to_numpy(dtype=object))


def _pair_table(a: pd.DataFrame, b: pd.DataFrame, i: np.ndarray, j: np.ndarray,
                area: np.ndarray, geoms_a: np.ndarray, geoms_b: np.ndarray,
                source_b: np.ndarray, accepted_b: np.ndarray, *, min_share: float,
                min_area_m2: float, near_duplicate_share: float) -> pd.DataFrame:
    """The pair table for index pairs (rows of ``a`` × rows of ``b``), thresholds applied."""
    area_a = shapely.area(geoms_a[i])
    area_b = shapely.area(geoms_b[j])
    share_a = np.minimum(area / area_a, 1.0)
    share_b = np.minimum(area / area_b, 1.0)
    kind = np.full(len(i), "overlap", dtype=object)
    near = (share_a >= near_duplicate_share) & (share_b >= near_duplicate_share)
    kind[near] = "near_duplicate"
    # Each covers the other up to 1 ppm of its area: the same land. (Not equals(): a parcel
    # that went through the register's WGS84 storage differs by float noise.)
    kind[(share_a >= _SAME_GEOMETRY_SHARE) & (share_b >= _SAME_GEOMETRY_SHARE)] = "duplicate"
    # Slivers from digitising are dropped by the thresholds; duplicates are always reported.
    keep = (((area >= min_area_m2) & (np.maximum(share_a, share_b) >= min_share))
            | (kind != "overlap"))
    i, j = i[keep], j[keep]
    pid_a, pid_b = _column(a, "parcel_id")[i], _column(b, "parcel_id")[j]
    pol_a, pol_b = _column(a, "policy_id")[i], _column(b, "policy_id")[j]
    hh_a, hh_b = _column(a, "household_id")[i], _column(b, "household_id")[j]
    out = pd.DataFrame({
        "parcel_id_a": pid_a, "policy_id_a": pol_a, "household_id_a": hh_a,
        "parcel_id_b": pid_b, "policy_id_b": pol_b, "household_id_b": hh_b,
        "source_b": source_b[j], "accepted_at_b": accepted_b[j],
        "overlap_m2": area[keep], "overlap_mu": m2_to_mu(area[keep]),
        "share_a": share_a[keep], "share_b": share_b[keep], "kind": kind[keep],
    })
    out["same_policy"] = (pol_a == pol_b) & pd.notna(pol_a)
    out["same_household"] = (hh_a == hh_b) & pd.notna(hh_a)
    out["same_parcel_id"] = pid_a == pid_b
    return out


def find_overlaps(parcels: gpd.GeoDataFrame, *, register: Register | str | Path | None = None,
                  within_batch: bool = True, season: str | None = None,
                  min_share: float = 0.05, min_area_m2: float = 10.0,
                  near_duplicate_share: float = 0.9,
                  chunk_size: int = 200_000) -> pd.DataFrame:
    """Overlapping parcel pairs within a batch and against a register of accepted parcels.

    A pair is reported when the overlap is at least ``min_area_m2`` **and** covers at least
    ``min_share`` of one of the two parcels (so digitising slivers along a shared edge are not
    reported, while a small parcel drawn inside a large one is). Same-geometry and
    near-duplicate pairs are always reported. Neighbours sharing only an edge never are.

    Parameters
    ----------
    parcels : the batch (parcels contract; ``parcel_id`` required, ``policy_id`` and
        ``household_id`` used when present). Geometries must be valid.
    register : a :class:`Register` or the path of its GeoPackage; ``None`` → batch only.
    within_batch : also compare the batch's parcels with each other.
    season : compare only with register parcels accepted for this season (``None`` → all).
    min_share, min_area_m2 : thresholds above (set both to 0 to see every overlap).
    near_duplicate_share : both shares at least this → ``kind = "near_duplicate"``.
    chunk_size : parcels per tree query (bounds memory).

    Returns
    -------
    pandas.DataFrame
        One row per pair, columns :data:`PAIR_COLUMNS`: ``*_a`` is the batch parcel, ``*_b`` the
        other one; ``source_b`` is ``"batch"`` or the register batch id; ``share_a`` /
        ``share_b`` are the overlap's share of each parcel's area; ``kind`` is ``duplicate``
        (same geometry), ``near_duplicate`` or ``overlap``. Within a batch each pair appears
        once, ``a`` being the earlier row.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> p = gpd.GeoDataFrame({"parcel_id": ["a", "b", "c"]}, crs=32650,
    ...     geometry=shapely.box([0, 100, 50], 0, [100, 200, 150], 100))
    >>> find_overlaps(p)[["parcel_id_a", "parcel_id_b", "overlap_m2", "share_a"]]
      parcel_id_a parcel_id_b  overlap_m2  share_a
    0           a           c      5000.0      0.5
    1           b           c      5000.0      0.5
    """
    source = parcels.attrs.get("source", "parcels")
    require_crs(parcels, source)
    if "parcel_id" not in parcels.columns:
        raise InputError("column parcel_id missing.", source=source,
                         fix="give every parcel an id in a parcel_id column")
    if len(parcels) == 0:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    crs = metric_crs(parcels)
    geoms = _geometry_array(parcels.geometry.to_crs(crs))
    _check_valid(geoms, parcels["parcel_id"].astype(str).to_numpy(), source)
    thresholds = {"min_share": min_share, "min_area_m2": min_area_m2,
                  "near_duplicate_share": near_duplicate_share}
    tables = []
    if within_batch:
        i, j, area = overlapping_pairs(geoms, chunk_size=chunk_size)
        n = len(parcels)
        tables.append(_pair_table(parcels, parcels, i, j, area, geoms, geoms,
                                  np.full(n, "batch", dtype=object), np.full(n, None, dtype=object),
                                  **thresholds))
    if register is not None:
        reg = register if isinstance(register, Register) else Register(register)
        accepted = reg.read_near(parcels, season=season)
        if len(accepted):
            reg_geoms = _geometry_array(accepted.geometry.to_crs(crs))
            # valid when accepted; the round trip through WGS84 can still break a sliver-thin one
            bad = ~shapely.is_valid(reg_geoms) & ~shapely.is_missing(reg_geoms)
            reg_geoms[bad] = shapely.make_valid(reg_geoms[bad])
            i, j, area = overlapping_pairs(geoms, reg_geoms, chunk_size=chunk_size)
            tables.append(_pair_table(parcels, accepted, i, j, area, geoms, reg_geoms,
                                      _column(accepted, "batch_id"),
                                      _column(accepted, "accepted_at"), **thresholds))
    tables = [t for t in tables if len(t)]
    if not tables:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    out = pd.concat(tables, ignore_index=True)
    return out.sort_values(["parcel_id_a", "parcel_id_b"], kind="stable", ignore_index=True)


def overlap_summary(parcels: gpd.GeoDataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per parcel of the batch (every one, in order): ``n_overlaps``, ``max_share``,
    ``overlapping_parcels`` and bilingual reasons (``OVERLAP`` / ``DUPLICATE_PARCEL``).

    A parcel counts a pair whether it is side ``a`` or (within the batch) side ``b``.

    Examples
    --------
    >>> summary = overlap_summary(parcels, find_overlaps(parcels))  # doctest: +SKIP
    """
    ids = parcels["parcel_id"].astype(str).to_numpy()
    notes: dict[str, list] = {pid: [] for pid in ids}
    shares: dict[str, float] = {pid: 0.0 for pid in ids}
    others: dict[str, list] = {pid: [] for pid in ids}
    for row in pairs.itertuples(index=False):
        sides = [(row.parcel_id_a, row.parcel_id_b, row.share_a, row.source_b)]
        if row.source_b == "batch":
            sides.append((row.parcel_id_b, row.parcel_id_a, row.share_b, "batch"))
        for me, other, share, src in sides:
            if me not in notes:
                continue
            code = "DUPLICATE_PARCEL" if row.kind != "overlap" else "OVERLAP"
            notes[me].append(reason(code, other=other, source=src, area_mu=row.overlap_mu,
                                    share=share))
            shares[me] = max(shares[me], share)
            others[me].append(other)
    return pd.DataFrame({
        "parcel_id": ids,
        "n_overlaps": [len(others[p]) for p in ids],
        "max_share": [shares[p] for p in ids],
        "overlapping_parcels": [";".join(others[p]) for p in ids],
        "overlap_reasons": [";".join(n[0] for n in notes[p]) for p in ids],
        "overlap_reasons_zh": ["；".join(n[1] for n in notes[p]) for p in ids],
        "overlap_reasons_en": ["; ".join(n[2] for n in notes[p]) for p in ids],
    })


def flag_overlaps(checked: gpd.GeoDataFrame, *, min_share: float = 0.05,
                  min_area_m2: float = 10.0, near_duplicate_share: float = 0.9
                  ) -> gpd.GeoDataFrame:
    """Note on each usable parcel of a validated table the others of the same table it
    overlaps: ``OVERLAP`` / ``DUPLICATE_PARCEL`` added to its reasons (its status unchanged)
    and the column ``overlapping_parcels`` (``;``-separated ids, or ``row N`` for a parcel
    without an id). The rule and thresholds are :func:`agri_3s.parcels.overlap.find_overlaps`'
    (``agri3s parcels overlaps``): an overlap of at least ``min_area_m2`` and ``min_share`` of
    one parcel; the same land (both shares ≥ ``near_duplicate_share``) always.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> gdf = gpd.GeoDataFrame({"parcel_id": ["A", "B"], "crop": ["soybean"] * 2,
    ...                         "declared_area_mu": [15.0, 15.0]},
    ...                        geometry=[shapely.box(0, 0, 100, 100)] * 2, crs=32650)
    >>> from agri_3s.parcels.validate import validate_parcels
    >>> flag_overlaps(validate_parcels(gdf))["overlapping_parcels"].tolist()
    ['B', 'A']
    """
    out = checked.copy()
    n = len(out)
    out["overlapping_parcels"] = np.full(n, "", dtype=object)
    geoms = out.geometry.to_numpy()
    usable = (out["validity"] != "rejected").to_numpy() & ~shapely.is_missing(geoms)
    if usable.sum() < 2:
        return out
    pos = np.flatnonzero(usable)
    metric = out.geometry.iloc[pos].to_crs(metric_crs(out.iloc[pos])).to_numpy()
    bad = ~shapely.is_valid(metric)  # reprojection may spoil a valid, nearly degenerate ring
    metric[bad] = shapely.make_valid(metric[bad])
    frame = gpd.GeoDataFrame({"parcel_id": pos.astype(str)}, geometry=metric,
                             crs=metric_crs(out.iloc[pos]))
    pairs = find_overlaps(frame, min_share=min_share, min_area_m2=min_area_m2,
                          near_duplicate_share=near_duplicate_share)
    if pairs.empty:
        return out
    a = pairs["parcel_id_a"].astype(int).to_numpy()
    b = pairs["parcel_id_b"].astype(int).to_numpy()
    # each pair noted on both of its parcels
    me = np.concatenate([a, b])
    other = np.concatenate([b, a])
    share = np.concatenate([pairs["share_a"].to_numpy(), pairs["share_b"].to_numpy()])
    area_mu = np.tile(pairs["overlap_mu"].to_numpy(), 2)
    kind = np.tile(pairs["kind"].to_numpy(dtype=object), 2)
    order = np.lexsort((other, me))
    # how a parcel is named to the user: its id, or its row when it has none
    label = out["parcel_id"].astype(str).str.strip().to_numpy(dtype=object)
    no_id = _blank_ids(out["parcel_id"]) & np.isin(np.arange(n), other)
    label[no_id] = "row " + out["row_number"].to_numpy()[no_id].astype(str).astype(object)
    texts = {"validity_reasons": [], "validity_reasons_zh": [], "validity_reasons_en": []}
    for k in order:
        code = "OVERLAP" if kind[k] == "overlap" else "DUPLICATE_PARCEL"
        r = reason(code, other=label[other[k]], source="batch", area_mu=area_mu[k],
                   share=share[k])
        for col, text in zip(texts, r):
            texts[col].append(text)
    notes = pd.DataFrame({"me": me[order], "other": label[other[order]], **texts})
    seps = {"other": ";", "validity_reasons": ";", "validity_reasons_zh": "；",
            "validity_reasons_en": "; "}
    joined = notes.groupby("me", sort=False).agg({c: sep.join for c, sep in seps.items()})
    at = joined.index.to_numpy()
    out.iloc[at, out.columns.get_loc("overlapping_parcels")] = joined["other"].to_numpy()
    for col, sep in seps.items():
        if col == "other":
            continue
        before = out[col].iloc[at].to_numpy(dtype=object)
        added = joined[col].to_numpy(dtype=object)
        out.iloc[at, out.columns.get_loc(col)] = [f"{x}{sep}{y}" if x else y
                                                  for x, y in zip(before, added)]
    return out


def _blank_ids(ids: pd.Series) -> np.ndarray:
    return (ids.isna() | ids.astype(str).str.strip().isin(["", "nan", "None"])).to_numpy()


# --------------------------------------------------------------------------------------------
# the register of accepted parcels


def _use_arrow() -> bool:
    # pyogrio's Arrow path is several times faster for large layers; it needs pyarrow.
    return importlib.util.find_spec("pyarrow") is not None


class Register:
    """Parcels accepted in earlier batches, in a GeoPackage (layer ``parcels``, WGS84).

    Each accepted parcel keeps ``parcel_id``, ``policy_id``, ``household_id``, ``crop``,
    ``season``, ``batch_id`` and ``accepted_at`` (UTC, ISO 8601). GeoPackage's R-tree spatial
    index makes a bounding-box read cheap, so a check reads only the register parcels near the
    batch.

    Examples
    --------
    >>> reg = Register("register.gpkg")                       # doctest: +SKIP
    >>> pairs = reg.overlaps(batch, season="2025-summer")     # doctest: +SKIP
    >>> reg.accept(batch, "B2025-0142", season="2025-summer")  # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Register({str(self.path)!r})"

    def exists(self) -> bool:
        """Whether anything has been accepted yet."""
        return self.path.exists()

    def batches(self) -> pd.DataFrame:
        """``batch_id``, ``season``, ``n_parcels``, ``accepted_at`` of every accepted batch."""
        cols = ["batch_id", "season", "n_parcels", "accepted_at"]
        if not self.exists():
            return pd.DataFrame(columns=cols)
        with sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True) as con:
            rows = con.execute(f'SELECT batch_id, season, COUNT(*), MIN(accepted_at) FROM '
                               f'"{REGISTER_LAYER}" GROUP BY batch_id, season '
                               f'ORDER BY MIN(accepted_at)').fetchall()
        return pd.DataFrame(rows, columns=cols)

    @staticmethod
    def _empty() -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame({c: [] for c in (*REGISTER_COLUMNS, "batch_id", "accepted_at")},
                                geometry=[], crs=REGISTER_CRS)

    def read(self, *, bbox: tuple[float, float, float, float] | None = None,
             season: str | None = None) -> gpd.GeoDataFrame:
        """Accepted parcels, optionally only those whose box meets ``bbox`` (lon/lat) and of
        one ``season``."""
        import pyogrio

        if not self.exists():
            return self._empty()
        where = None
        if season is not None:
            where = "season = '" + str(season).replace("'", "''") + "'"
        try:
            return pyogrio.read_dataframe(self.path, layer=REGISTER_LAYER, bbox=bbox,
                                          where=where, fid_as_index=True,
                                          use_arrow=_use_arrow())
        except Exception as exc:  # pyogrio / GDAL raise several types for broken files
            raise InputError(f"cannot read the parcel register ({exc}).", source=self.path,
                             fix="give the GeoPackage written by Register.accept") from exc

    def read_near(self, parcels: gpd.GeoDataFrame, *, season: str | None = None,
                  tile_deg: float = 0.1) -> gpd.GeoDataFrame:
        """Accepted parcels near the batch: one indexed bbox read per occupied ``tile_deg``
        tile of the batch, so a batch spread over two distant towns does not read everything
        in between."""
        bounds = parcels.geometry.bounds.to_numpy()
        bounds = bounds[np.isfinite(bounds).all(axis=1)]
        if not self.exists() or not len(bounds):
            return self._empty()
        # Each parcel's box in lon/lat from its four corners (grid convergence turns boxes).
        to_ll = Transformer.from_crs(require_crs(parcels), REGISTER_CRS, always_xy=True)
        corners = [to_ll.transform(bounds[:, xi], bounds[:, yi]) for xi, yi in
                   ((0, 1), (2, 1), (2, 3), (0, 3))]
        lon = np.column_stack([c[0] for c in corners])
        lat = np.column_stack([c[1] for c in corners])
        ll = np.column_stack([lon.min(1), lat.min(1), lon.max(1), lat.max(1)])
        x0, y0 = ll[:, 0].min(), ll[:, 1].min()
        tiles = pd.DataFrame(ll, columns=["x0", "y0", "x1", "y1"])
        tiles["tx"] = np.floor((ll[:, 0] - x0) / tile_deg)
        tiles["ty"] = np.floor((ll[:, 1] - y0) / tile_deg)
        boxes = tiles.groupby(["tx", "ty"]).agg(x0=("x0", "min"), y0=("y0", "min"),
                                                x1=("x1", "max"), y1=("y1", "max"))
        # a small margin for the reprojection of box corners (1e-6 deg ≈ 0.1 m)
        parts = [self.read(bbox=(b.x0 - 1e-6, b.y0 - 1e-6, b.x1 + 1e-6, b.y1 + 1e-6),
                           season=season) for b in boxes.itertuples()]
        out = pd.concat(parts) if len(parts) > 1 else parts[0]
        out = out[~out.index.duplicated()]
        return gpd.GeoDataFrame(out, geometry=out.geometry.name, crs=REGISTER_CRS)

    def overlaps(self, parcels: gpd.GeoDataFrame, *, season: str | None = None,
                 **thresholds) -> pd.DataFrame:
        """Pairs between ``parcels`` and the register only (see :func:`find_overlaps`)."""
        return find_overlaps(parcels, register=self, within_batch=False, season=season,
                             **thresholds)

    def accept(self, parcels: gpd.GeoDataFrame, batch_id: str, *, season: str | None = None,
               accepted_at: datetime | None = None) -> int:
        """Append a batch to the register; returns the number of parcels added.

        The GeoPackage is written to a temporary copy beside it and moved into place with
        ``os.replace``, so a crash leaves either the old or the new register, never half a
        batch. A ``batch_id`` already in the register is refused (a rerun would register
        every parcel twice). One writer at a time: there is no lock between processes.
        """
        import pyogrio

        source = parcels.attrs.get("source", "parcels")
        require_crs(parcels, source)
        batch_id = str(batch_id).strip()
        if not batch_id:
            raise InputError("batch_id is empty.", source=source,
                             fix="give each accepted batch a unique id")
        if "parcel_id" not in parcels.columns:
            raise InputError("column parcel_id missing.", source=source,
                             fix="give every parcel an id in a parcel_id column")
        _check_valid(_geometry_array(parcels.geometry),
                     parcels["parcel_id"].astype(str).to_numpy(), source)
        if batch_id in set(self.batches()["batch_id"]):
            raise InputError(f"batch {batch_id!r} is already in the register.",
                             source=self.path, fix="use a new batch id; a batch is accepted once")
        when = (accepted_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        data = {c: _column(parcels, c) for c in REGISTER_COLUMNS}
        if season is not None:
            data["season"] = np.full(len(parcels), str(season), dtype=object)
        data["batch_id"] = np.full(len(parcels), batch_id, dtype=object)
        data["accepted_at"] = np.full(len(parcels), when.isoformat(timespec="seconds"),
                                      dtype=object)
        out = gpd.GeoDataFrame(data, geometry=parcels.geometry.to_crs(REGISTER_CRS).values,
                               crs=REGISTER_CRS)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.gpkg")
        try:
            if self.exists():
                shutil.copyfile(self.path, tmp)
            pyogrio.write_dataframe(out, tmp, layer=REGISTER_LAYER, driver="GPKG",
                                    append=self.exists(), promote_to_multi=True,
                                    use_arrow=_use_arrow())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        return len(out)
