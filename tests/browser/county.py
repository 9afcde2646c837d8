"""A generated county for map tests and the map benchmark: parcels, verdicts, claims, series and
imagery whose every value is known.

Parcels are strips in rows of fields (UTM 50N, near 117° E 37.4° N): field widths cycle
through 12–60 m and every 7th field is a narrow 6 m strip (the adjuster's hard click); corners
are jittered by up to 1 m and the long sides get extra vertices, as digitised fields have.
Verdict status, claim status and grade cycle with the parcel number, so a test knows each
parcel's values from its number alone; areas, rates, NDVI noise and cloudy looks are random
(seeded), so the data compresses no better than real results do.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from agri_3s.outputs.webmap import ImageLayer

STATUSES = np.array(["green", "yellow", "red", "green", "no_data", "invalid", "green"])
CLAIM_STATUSES = np.array(["estimated", "below_threshold", "survey", "not_affected", "no_data",
                           "estimated", "invalid", "estimated"])
GRADES = np.array(["none", "light", "moderate", "severe", "total"])
X0, Y0 = 500_000.0, 4_140_000.0  # UTM 50N, near 117.0° E 37.4° N
FIELD_LENGTH = 150.0
GAP = 2.0


def widths(n: int) -> np.ndarray:
    """Field widths (m): 12, 20 … 60 cycling, every 7th field a 6 m strip."""
    w = 12.0 + 8.0 * (np.arange(n) % 7)
    w[np.arange(n) % 7 == 6] = 6.0
    return w


def parcels(n: int, per_row: int | None = None) -> gpd.GeoDataFrame:
    """``n`` strip parcels, ``per_row`` side by side per row of fields (default: a square)."""
    per_row = per_row or max(1, int(np.sqrt(n * (FIELD_LENGTH + 8.0) / 33.0)))
    i = np.arange(n)
    w = widths(n)
    row, col = i // per_row, i % per_row
    # x of each field: cumulative widths within its row
    starts = np.zeros(n)
    for r in np.unique(row):  # one loop per row of fields (n / per_row rows), not per parcel
        k = row == r
        starts[k] = np.concatenate([[0], np.cumsum(w[k] + GAP)[:-1]])
    x0 = X0 + starts
    y0 = Y0 + row * (FIELD_LENGTH + 8.0)
    rng = np.random.default_rng(7)
    # 6 vertices: the four corners and one more on each long side, each jittered ≤ 1 m
    xs = np.stack([x0, x0 + w, x0 + w, x0 + w, x0, x0], axis=1)
    ys = np.stack([y0, y0, y0 + FIELD_LENGTH / 2, y0 + FIELD_LENGTH, y0 + FIELD_LENGTH,
                   y0 + FIELD_LENGTH / 2], axis=1)
    xs = xs + rng.uniform(-1, 1, xs.shape) * np.minimum(1.0, w / 8)[:, None]
    ys = ys + rng.uniform(-1, 1, ys.shape)
    ring = np.stack([xs, ys], axis=2)
    ring = np.concatenate([ring, ring[:, :1]], axis=1)
    geoms = shapely.polygons(ring)
    area_mu = w * FIELD_LENGTH / 666.67
    digits = len(str(n))
    pid = pd.Series(i + 1).astype(str).str.zfill(max(digits, 6))
    return gpd.GeoDataFrame({
        "parcel_id": "371428-" + pid, "policy_id": "PW2024371428-" + pid.str[-5:],
        "household_id": "H371428-" + (pd.Series(i // 3 + 1).astype(str).str.zfill(6)),
        "crop": "winter_wheat", "declared_area_mu": np.round(area_mu, 1),
        "farmer_name": "张三丰", "farmer_id_number": "371428199001011234",
        "col": col, "row": row}, geometry=geoms, crs=32650)


def verdicts(p: gpd.GeoDataFrame) -> pd.DataFrame:
    n = len(p)
    i = np.arange(n)
    status = STATUSES[i % len(STATUSES)]
    ratio = np.random.default_rng(1).uniform(0.55, 1.1, n)
    zh = ("实测种植面积 " + pd.Series(np.round(p["declared_area_mu"] * ratio, 1)).astype(str)
          + " 亩，为申报的 " + pd.Series(np.round(ratio * 100).astype(int)).astype(str) + "%")
    en = ("measured planted area " + pd.Series(np.round(p["declared_area_mu"] * ratio, 1))
          .astype(str) + " mu, " + pd.Series(np.round(ratio * 100).astype(int)).astype(str)
          + "% of the declared")
    return pd.DataFrame({
        "parcel_id": p["parcel_id"].to_numpy(), "status": status,
        "reasons": np.where(status == "red", "NOT_PLANTED;AREA_SHORTFALL", "PLANTED;AREA_SHORTFALL"),
        "reasons_zh": ("已种植申报作物；" + zh).to_numpy(),
        "reasons_en": ("declared crop planted; " + en).to_numpy(),
        "planted_fraction": np.round(ratio, 3), "emergence_date": "2024-10-20",
        "peak_ndvi": 0.8, "peak_date": "2025-04-10",
        "measured_area_mu": np.round(p["declared_area_mu"].to_numpy() * ratio, 2),
        "area_ratio": np.round(ratio, 3), "clear_observations": 5 + i % 30,
        "confidence": np.round(0.5 + 0.5 * ((i * 13) % 100) / 100, 2)})


def claims(p: gpd.GeoDataFrame) -> pd.DataFrame:
    n = len(p)
    i = np.arange(n)
    status = CLAIM_STATUSES[i % len(CLAIM_STATUSES)]
    rate = np.round(np.random.default_rng(2).uniform(0, 1, n), 3)
    graded = np.isin(status, ["estimated", "below_threshold", "survey"])
    return pd.DataFrame({
        "claim_id": "C" + p["parcel_id"].str[-6:].to_numpy(), "parcel_id": p["parcel_id"],
        "policy_id": p["policy_id"], "event_id": "hail-2025-05-14", "event_type": "hail",
        "event_date": "2025-05-14", "baseline_method": "neighbours+own_pre",
        "loss_rate": np.where(graded, rate, np.nan),
        "loss_rate_low": np.where(graded, np.clip(rate - 0.12, 0, 1), np.nan),
        "loss_rate_high": np.where(graded, np.clip(rate + 0.12, 0, 1), np.nan),
        "damaged_area_mu": np.where(status == "not_affected", 0.0,
                                    np.where(graded, p["declared_area_mu"], np.nan)),
        "loss_grade": np.where(graded, GRADES[i % len(GRADES)], "unknown"),
        "indemnity_cny": np.where(status == "estimated", np.round(450 * rate * 3, 2), 0.0),
        "status": status, "reasons": "LOSS_ESTIMATED",
        "reasons_zh": "与健康同类地块及灾前自身对比估算损失",
        "reasons_en": "loss estimated against healthy same-crop neighbours",
        "imagery_dates": "2025-05-11;2025-05-18;2025-05-23"})


TIMES = pd.date_range("2024-10-01", "2025-06-10", freq="5D")


def series(p: gpd.GeoDataFrame) -> xr.Dataset:
    """NDVI rising 0.2 → 0.8, 0.3 lower after the hail, noise σ 0.04; 35 % of looks cloudy."""
    n, t = len(p), len(TIMES)
    ramp = np.clip((np.arange(t) - 20) / 20, 0, 1)
    ndvi = np.broadcast_to(0.2 + 0.6 * ramp, (n, t)).astype(np.float32).copy()
    ndvi[:, TIMES > "2025-05-14"] -= 0.3
    rng = np.random.default_rng(3)
    ndvi += rng.normal(0, 0.04, (n, t)).astype(np.float32)
    flag = (rng.uniform(0, 1, (n, t)) < 0.35).astype(np.int8)
    return xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi),
                       "look_flag": (("parcel", "time"), flag)},
                      coords={"parcel_id": ("parcel", p["parcel_id"].to_numpy()), "time": TIMES})


def imagery(p: gpd.GeoDataFrame, px: int = 1200) -> list[ImageLayer]:
    """Three synthetic images over the parcels: a red checkerboard before, a blue one after, a
    grey ramp of change (known colours for the imagery-layer checks), with noise (σ 30) so they
    compress like real scenes."""
    w, s, e, n = p.to_crs(4326).total_bounds
    yy, xx = np.mgrid[0:px, 0:px]
    board = ((yy // 40 + xx // 40) % 2).astype(np.uint8)
    before = np.dstack([200 * board + 30, 60 + 0 * board, 60 + 0 * board]).astype(np.uint8)
    after = np.dstack([60 + 0 * board, 60 + 0 * board, 200 * board + 30]).astype(np.uint8)
    change = np.dstack([np.linspace(180, 30, px)[None, :].repeat(px, 0)] * 3).astype(np.uint8)
    noise = np.random.default_rng(4).normal(0, 30, (px, px, 3))
    before, after, change = (np.clip(a + noise, 0, 255).astype(np.uint8)
                             for a in (before, after, change))
    b = (float(w), float(s), float(e), float(n))
    return [ImageLayer("false_before", before, b, "2025-05-11"),
            ImageLayer("false_after", after, b, "2025-05-18"),
            ImageLayer("ndvi_change", change, b, "2025-05-18", before="2025-05-11",
                       legend="change", vmin=-0.5, vmax=0.5)]


def county(n: int = 100_000) -> dict:
    """Everything :func:`~agri_3s.outputs.webmap.build_map` takes, for ``n`` parcels."""
    p = parcels(n)
    return {"parcels": p, "verdicts": verdicts(p), "claims": claims(p), "series": series(p),
            "imagery": imagery(p)}
