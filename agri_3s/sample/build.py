"""Putting it together: vector files, truth tables, event files and the imagery of a sample."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atmosphere import COVERED, date_plan, snow_fraction, unflagged_fields
from .farms import build_farms
from .landscape import Landscape, build_landscape
from .landunits import area_matrix, build_units, parcel_shares
from .render import render, write_tif
from .scene import (
    COUNTY,
    EPSG,
    FLOOD_DATE,
    FLOOD_ID,
    HAIL_DATE,
    HAIL_ID,
    N10,
    ProgressFn,
    acquisition_dates,
    day,
)

TRUTH_COLUMNS = ["parcel_id", "season", "policy_id", "truth_class", "true_planted_fraction",
                 "true_area_mu", "declared_area_mu", "expected_verdict", "hail_loss_rate",
                 "flooded_fraction", "flood_loss_rate", "soil_ndvi"]
MIN_SHARE = 0.02     # weather truth rows: parcels with at least this share affected


def _write_vectors(root: Path, land: Landscape, rows_w, rows_m, truth) -> None:
    import geopandas as gpd
    import pandas as pd

    cols = ["parcel_id", "policy_id", "household_id", "crop", "declared_area_mu",
            "sum_insured_cny_per_mu", "farmer_name", "farmer_id_number"]
    for rows, name in ((rows_w, "parcels_wheat.geojson"), (rows_m, "parcels_maize.geojson")):
        gdf = gpd.GeoDataFrame(pd.DataFrame(rows)[cols + ["geometry"]], geometry="geometry",
                               crs=f"EPSG:{EPSG}").to_crs(4326)
        gdf["sum_insured_cny_per_mu"] = gdf["sum_insured_cny_per_mu"].astype("int64")
        gdf.to_file(root / name, driver="GeoJSON", engine="pyogrio")
    df = pd.DataFrame(truth)[TRUTH_COLUMNS]
    df["_s"] = df["season"].map({"wheat": 0, "maize": 1})
    df = df.sort_values(["_s", "parcel_id"]).drop(columns="_s")
    df.to_csv(root / "truth.csv", index=False, encoding="utf-8", lineterminator="\n")

    ev = root / "events"
    ev.mkdir(exist_ok=True)
    for eid, typ, date, geom, crop in ((HAIL_ID, "hail", HAIL_DATE, land.hail_fp, "winter_wheat"),
                                       (FLOOD_ID, "flood", FLOOD_DATE, land.flood_fp,
                                        "summer_maize")):
        fp = gpd.GeoDataFrame({"event_id": [eid.replace("_", "-")]}, geometry=[geom],
                              crs=f"EPSG:{EPSG}").to_crs(4326)
        fp.to_file(ev / f"{eid}_footprint.geojson", driver="GeoJSON", engine="pyogrio")
        (ev / f"{eid}.toml").write_text(
            f'id = "{typ}-{date.isoformat()}"\n'
            f'type = "{typ}"\n'
            f'date = "{date.isoformat()}"\n'
            f'footprint = "{eid}_footprint.geojson"\n'
            f'crops = ["{crop}"]\n', encoding="utf-8")


def _write_weather_truth(root: Path, plan: list[dict], seed: int, A, owner: np.ndarray,
                         n_parcels: int) -> None:
    """``unflagged_clouds.csv`` and ``snow.csv``: per date and insured parcel, the share of the
    parcel under clouds / haze / shadows the SCL calls clear, and under snow."""
    import pandas as pd

    pids = np.array([f"{COUNTY}-{j + 1:04d}" for j in range(n_parcels)])
    clouds, snow = [], []
    for k, p in enumerate(plan):
        date = p["date"].isoformat()
        if p["unflagged"]:
            haze, dark = unflagged_fields(p, seed, k)
            for kind, fld in (("cloud", haze), ("shadow", dark)):
                on = fld >= COVERED
                share = parcel_shares(A, owner, n_parcels, on)
                strength = parcel_shares(A, owner, n_parcels, fld * on) / np.maximum(share, 1e-9)
                for j in np.flatnonzero(share >= MIN_SHARE):
                    clouds.append((date, pids[j], kind, round(float(share[j]), 4),
                                   round(float(strength[j]), 4)))
        if p["snow"]:
            share = parcel_shares(A, owner, n_parcels, snow_fraction(p, seed, k))
            for j in np.flatnonzero(share >= MIN_SHARE):
                snow.append((date, pids[j], round(float(share[j]), 4)))
    pd.DataFrame(clouds, columns=["date", "parcel_id", "kind", "share", "strength"]).to_csv(
        root / "unflagged_clouds.csv", index=False, lineterminator="\n")
    pd.DataFrame(snow, columns=["date", "parcel_id", "snow_share"]).to_csv(
        root / "snow.csv", index=False, lineterminator="\n")


def generate_into(root: Path, seed: int, progress: ProgressFn | None = None,
                  only_dates: list | None = None) -> None:
    """Write the whole sample into ``root`` (which must not exist); ``only_dates`` limits imagery
    to a subset of acquisitions (each date's files are identical to a full run's, and so are the
    vector and truth files)."""
    def report(stage, i, n):
        if progress is not None:
            progress(stage, i, n)

    root.mkdir(parents=True)
    report("landscape", 0, 4)
    land = build_landscape(np.random.default_rng([seed, 0]))
    report("farms", 1, 4)
    fields, book, rows_w, rows_m, truth = build_farms(land, np.random.default_rng([seed, 4]))
    _write_vectors(root, land, rows_w, rows_m, truth)

    dates = acquisition_dates()
    days = np.array([day(d) for d in dates], float)
    report("units", 2, 4)
    geoms, tables, owner = build_units(land, fields, book, days,
                                       np.random.default_rng([seed, 5]))
    report("rasterize", 3, 4)
    A = area_matrix(geoms)
    plan = date_plan(dates, np.random.default_rng([seed, 1]))
    _write_weather_truth(root, plan, seed, A, owner, len(book))
    from scipy.ndimage import gaussian_filter
    z = gaussian_filter(np.random.default_rng([seed, 3]).normal(size=(N10, N10)), 1.0)
    het = (1 + 0.05 * z / z.std()).ravel()

    todo = [k for k, d in enumerate(dates) if only_dates is None or d in set(only_dates)]
    img = root / "imagery"
    img.mkdir()

    def one(k):
        dn, scl = render(k, tables[:, k, :], A, het, plan[k], seed)
        folder = img / dates[k].isoformat()
        folder.mkdir()
        for name in ("B03", "B04", "B08"):
            write_tif(folder / f"{name}.tif", dn[name], 10.0)
        write_tif(folder / "B11.tif", dn["B11"], 20.0)
        write_tif(folder / "SCL.tif", scl, 20.0)
        if plan[k]["metadata"]:
            (folder / "metadata.json").write_text(
                json.dumps({"processing_baseline": "05.11", "boa_add_offset": -1000}) + "\n")

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for i, _ in enumerate(pool.map(one, todo)):
            report("imagery", i + 1, len(todo))
