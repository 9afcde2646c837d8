"""Result folders read for a map, and the check that they belong together.

``agri3s map`` combines the verdicts and claims of the same parcels. Results of different
parcels, crops or seasons would put a wheat verdict next to a maize flood claim of another
field that happens to share its id, so they are refused (exit 2, with the reasons) unless the
user insists (``--force``; the map then says what did not match).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from ...crs import metric_crs
from ...errors import InputError
from .imagery import ImageLayer, load_imagery

#: Parcels of the same id farther apart than this (metres, centroids) are not the same parcel.
SAME_PARCEL_M = 10.0
#: Share of a claims table's parcels that must have a verdict (and of moved parcels allowed).
MIN_COMMON_SHARE = 0.5
MAX_MOVED_SHARE = 0.05


@dataclass
class Result:
    """One table of a result folder (``verdicts`` or ``claims``) and what came with it."""

    folder: Path
    kind: str
    table: gpd.GeoDataFrame
    series: xr.Dataset | None = None
    imagery: list[ImageLayer] = field(default_factory=list)
    run: dict = field(default_factory=dict)

    @property
    def season(self) -> tuple[dt.date, dt.date] | None:
        text = (self.run.get("parameters") or {}).get("season")
        try:
            a, b = str(text).split("/")
            return dt.date.fromisoformat(a), dt.date.fromisoformat(b)
        except ValueError:
            return None

    @property
    def event_dates(self) -> list[dt.date]:
        d = pd.to_datetime(self.table.get("event_date", pd.Series(dtype=object)),
                           errors="coerce").dropna()
        return sorted({t.date() for t in d})


def _read(path: Path, reader):
    """``reader(path)``; any reader failure is an unreadable file of the user's (exit 2)."""
    try:
        return reader(path)
    except Exception as exc:  # pyogrio, netCDF and JSON readers raise many types
        said = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot read {path.name} ({said}).", source=path,
                         fix="pass the --out folder of an underwrite / assess run as it wrote "
                             "it (run the job again if a file is damaged)") from exc


def read_results(folders: list[str | Path]) -> list[Result]:
    """The verdicts / claims of each result folder (``--out`` of underwrite / assess).

    >>> results = read_results(["out/wheat", "out/hail"])  # doctest: +SKIP
    """
    out = []
    for folder in map(Path, folders):
        run = {}
        if (folder / "run.json").is_file():
            run = _read(folder / "run.json",
                        lambda p: json.loads(p.read_text(encoding="utf-8")))
        series = (_read(folder / "series.nc", lambda p: xr.load_dataset(p, engine="scipy"))
                  if (folder / "series.nc").is_file() else None)
        found = [k for k in ("verdicts", "claims") if (folder / f"{k}.geojson").is_file()]
        if not found:
            raise InputError("no verdicts.geojson or claims.geojson in the result folder.",
                             source=folder, fix="pass the --out folder of an underwrite / "
                                                "assess run")
        imagery = load_imagery(folder)
        for kind in found:
            table = _read(folder / f"{kind}.geojson", gpd.read_file)
            table["parcel_id"] = table["parcel_id"].astype(str)
            out.append(Result(folder, kind, table, series, imagery, run))
    return out


def _centroids(table: gpd.GeoDataFrame) -> pd.DataFrame:
    g = table[table.geometry.notna()]
    metric = g.to_crs(metric_crs(g)) if len(g) else g
    c = shapely.centroid(metric.geometry.values)
    return pd.DataFrame({"x": shapely.get_x(c), "y": shapely.get_y(c)},
                        index=g["parcel_id"].to_numpy()).groupby(level=0).first()


def _pair_problems(v: Result, c: Result) -> list[str]:
    """Why a verdicts table and a claims table do not belong together (empty: they do)."""
    problems = []
    vids, cids = pd.Index(v.table["parcel_id"].unique()), pd.Index(c.table["parcel_id"].unique())
    common = vids.intersection(cids)
    name = f"{v.folder.name} + {c.folder.name}"
    if len(common) < MIN_COMMON_SHARE * min(len(vids), len(cids)):
        problems.append(f"{name}: only {len(common)} of {len(cids)} claimed parcels have a "
                        f"verdict (different parcels)")
    if len(common):
        vc = v.table.drop_duplicates("parcel_id").set_index("parcel_id")
        cc = c.table.drop_duplicates("parcel_id").set_index("parcel_id")
        if "crop" in vc and "crop" in cc:
            a = vc["crop"].reindex(common).astype(str)
            b = cc["crop"].reindex(common).astype(str)
            differ = a != b
            if differ.any():
                pid = differ.idxmax()
                problems.append(f"{name}: {int(differ.sum())} parcels have different crops "
                                f"(e.g. {pid}: {a[pid]} vs {b[pid]})")
        pv, pc = _centroids(v.table), _centroids(c.table)
        both = pv.index.intersection(pc.index)
        if len(both):
            d = np.hypot(pv.loc[both, "x"] - pc.loc[both, "x"], pv.loc[both, "y"] - pc.loc[both, "y"])
            moved = d > SAME_PARCEL_M
            if moved.mean() > MAX_MOVED_SHARE:
                problems.append(f"{name}: {int(moved.sum())} parcels of the same id lie more "
                                f"than {SAME_PARCEL_M:g} m apart (different parcel files)")
    season = v.season
    if season is not None:
        outside = [d for d in c.event_dates if not season[0] <= d <= season[1]]
        if outside:
            problems.append(f"{name}: event on {outside[0]} is outside the underwriting season "
                            f"{season[0]}/{season[1]}")
    return problems


def check_results(results: list[Result]) -> list[str]:
    """Every reason the results cannot be shown as one map (empty when they can).

    Verdicts of two results may not cover the same parcels (two seasons on one layer); each
    claims table must share most parcels, their crops and geometry with the verdicts, and its
    event must fall in the underwriting season.

    >>> check_results(read_results(["out/wheat", "out/flood"]))  # doctest: +SKIP
    ['wheat + flood: 589 parcels have different crops (e.g. 371428-0002: winter_wheat vs ...)']
    """
    problems = []
    for kind in ("verdicts", "claims"):
        same = [r for r in results if r.kind == kind]
        for i, a in enumerate(same):
            for b in same[i + 1:]:
                both = pd.Index(a.table["parcel_id"]).intersection(b.table["parcel_id"])
                if kind == "verdicts" and len(both):
                    problems.append(f"{a.folder.name} + {b.folder.name}: two underwriting "
                                    f"results for {len(both)} of the same parcels")
    verdicts = [r for r in results if r.kind == "verdicts"]
    for c in (r for r in results if r.kind == "claims"):
        if not verdicts:
            continue
        best = min((_pair_problems(v, c) for v in verdicts), key=len)
        problems += best
    return problems


def merge_results(results: list[Result], force: bool = False) -> dict:
    """Parcels, verdicts, claims, series and imagery of results that belong together.

    Raises
    ------
    InputError
        When :func:`check_results` finds a problem and ``force`` is False. With ``force`` the
        problems are returned as ``notes`` for the map.

    Examples
    --------
    >>> merged = merge_results(read_results(["out/wheat", "out/hail"]))  # doctest: +SKIP
    >>> build_map(merged["parcels"], verdicts=merged["verdicts"], claims=merged["claims"],
    ...           series=merged["series"], imagery=merged["imagery"])  # doctest: +SKIP
    """
    problems = check_results(results)
    if problems and not force:
        raise InputError("these results do not belong together: " + "; ".join(problems) + ".",
                         source=", ".join(str(r.folder) for r in results),
                         fix="map results of the same parcels, crops and season (or pass "
                             "--force to map them anyway)")
    tables = {k: [r.table for r in results if r.kind == k] for k in ("verdicts", "claims")}
    verdicts = pd.concat(tables["verdicts"], ignore_index=True) if tables["verdicts"] else None
    claims = pd.concat(tables["claims"], ignore_index=True) if tables["claims"] else None
    frames = [r.table for r in results]
    parcels = pd.concat(frames, ignore_index=True).drop_duplicates("parcel_id")
    parcels = gpd.GeoDataFrame(parcels, geometry=frames[0].geometry.name, crs=frames[0].crs)
    series = None
    for s in dict.fromkeys(id(r.series) for r in results if r.series is not None):
        one = next(r.series for r in results if id(r.series) == s)
        series = one if series is None else _combine(series, one)
    imagery = []
    for folder in dict.fromkeys(r.folder for r in results):
        imagery += next(r.imagery for r in results if r.folder == folder)
    return {"parcels": parcels, "verdicts": verdicts, "claims": claims, "series": series,
            "imagery": imagery, "notes": problems}


def clear_ndvi(series: xr.Dataset) -> xr.Dataset:
    """NDVI of the used looks only (``look_flag == 0``, else clear fraction ≥ 0.6), NaN elsewhere,
    indexed by parcel id (so two series can be combined)."""
    ndvi = series["ndvi_mean"].transpose("parcel", "time").values
    if "look_flag" in series:
        used = series["look_flag"].transpose("parcel", "time").values == 0
    elif "clear_fraction" in series:
        used = series["clear_fraction"].transpose("parcel", "time").values >= 0.6
    else:
        used = np.isfinite(ndvi)
    ids = series["parcel_id"].values.astype(str)
    first = ~pd.Index(ids).duplicated()
    return xr.Dataset({"ndvi_mean": (("parcel", "time"), np.where(used, ndvi, np.nan)[first])},
                      coords={"parcel": ids[first], "time": series["time"].values})


def _combine(a: xr.Dataset, b: xr.Dataset) -> xr.Dataset:
    """Two parcel series as one: union of parcels and dates, ``a``'s looks first."""
    out = clear_ndvi(a).combine_first(clear_ndvi(b))
    return xr.Dataset({"ndvi_mean": (("parcel", "time"), out["ndvi_mean"].values)},
                      coords={"parcel_id": ("parcel", out["parcel"].values),
                              "time": out["time"].values})
