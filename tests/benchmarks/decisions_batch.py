"""The decisions benchmark's batch: a synthetic province with a known truth.

One underwriting year, season ``2024-10-01/2025-10-15`` (series from 2024-09-01, the 30-day
look-back), dates evenly over it. Parcels on a grid of 45 m cells (1000 a row, EPSG:32650);
60 % declare ``winter_wheat``, 40 % ``summer_maize`` (one crop a year, as in the North China
Plain's seasonal-fallow scheme), so both built-in calendars lie inside the season and the crop
model has two crops to learn. Truth per parcel: the declared crop planted (76 %), partly
planted (6 %: 35–75 % of the parcel, the rest weedy fallow), fallow with weeds (7 %), a meadow
mown in May–June (5 %), the other crop (6 %), no pixels (0.1 %); of the planted ones, 2 % too
small to judge (< 2 pixel-equivalents) and 3 % declared 30–80 % larger than they are. A hail
on 2025-05-14 takes a known share (10–90 %) of the wheat canopy inside an ellipse over ~8 % of
the parcels until the harvest.

Each parcel's green cover follows key points (previous maize harvest, sowing, winter,
green-up, peak, harvest; ±5 days of phenology shift) → NDVI = soil + (0.9 − soil) × cover over
its own soil (0.08–0.25); the planted and unplanted parts with a within-parcel spread (σ 0.05)
give the mean, the p75 (the mixture's quantile) and the vegetated share (NDVI ≥ 0.4), plus
look noise (σ 0.012). Clouds: a smooth random field per date on 1.5 km cells, cloudy below the
date's quantile (35 % of dates nearly clear, 25 % overcast, the rest in between):
``clear_fraction`` is 0 on ~42 % of parcel-dates, partial on ~3 % (their NDVI pulled down by
up to 0.12 × the cloudy share), NaN values where less than 0.5 clear pixel-equivalents remain
(the engine's rule); 2.5 % of clear looks are dimmed by haze the SCL missed (NDVI × 0.5–0.85).
``water_fraction`` is 0 (no flood).

Generated in blocks of 50,000 parcels into ``$AGRI3S_BENCH_DIR/decisions/v{VERSION}-{n}x{dates}``
(default ``/tmp/agri3s_bench``): one ``.npy`` per variable (float32, (parcel, time), C order,
as a saved series loads), ``time.npy``, ``parcels.parquet`` (the user's columns, the engine's
per-parcel coords, box corners, the truth), ``meta.json``. ~40 s and 1.4 GB for 1,000,000 ×
70. ``python tests/benchmarks/decisions_batch.py --parcels N --dates N`` generates one alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np

SEASON = "2024-10-01/2025-10-15"
ORIGIN = dt.date(2024, 9, 1)       # the season start − LOOKBACK
LAST = dt.date(2025, 10, 15)
HAIL = dt.date(2025, 5, 14)
VERSION = 2                        # bump when the generator changes (new cache folder)
PITCH_M, N_COLS = 45.0, 1000       # parcels on a grid of 45 m cells, 1000 per row
X0, Y0 = 400_000.0, 4_100_000.0    # in CRS
CRS = "EPSG:32650"
VARS = ("ndvi_mean", "ndvi_p75", "vegetated_fraction", "clear_fraction", "water_fraction")
EXPECTED = {"planted": "green", "partial": "yellow", "fallow": "red", "meadow": "red",
            "other": "red", "no_pixels": "no_data"}
CHUNK = 50_000


def bench_dir() -> Path:
    return Path(os.environ.get("AGRI3S_BENCH_DIR", "/tmp/agri3s_bench")) / "decisions"


# ---------------------------------------------------------------- the synthetic batch

def _d(y: int, m: int, dd: int) -> float:
    return float((dt.date(y, m, dd) - ORIGIN).days)


def interp_rows(days: np.ndarray, kd: np.ndarray, kv: np.ndarray) -> np.ndarray:
    """Row-wise ``np.interp(days, kd[i], kv[i])`` (constant beyond the ends).

    >>> interp_rows(np.array([0.0, 5.0, 20.0]), np.array([[0.0, 10.0], [10.0, 0.0]]),
    ...             np.array([[0.1, 0.5], [1.0, 0.0]])).round(2).tolist()
    [[0.1, 0.3, 0.5], [0.0, 0.5, 1.0]]
    """
    order = np.argsort(kd, axis=1, kind="stable")
    kd, kv = np.take_along_axis(kd, order, 1), np.take_along_axis(kv, order, 1)
    seg = np.clip((kd[:, :, None] <= days[None, None, :]).sum(axis=1) - 1, 0, kd.shape[1] - 2)
    x0, x1 = np.take_along_axis(kd, seg, 1), np.take_along_axis(kd, seg + 1, 1)
    y0, y1 = np.take_along_axis(kv, seg, 1), np.take_along_axis(kv, seg + 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip(np.where(x1 > x0, (days[None, :] - x0) / (x1 - x0), 1.0), 0.0, 1.0)
    return y0 + frac * (y1 - y0)


def _curve(days: np.ndarray, pts: list) -> np.ndarray:
    m = max(np.size(x) for p in pts for x in p)
    kd = np.column_stack([np.broadcast_to(np.asarray(x, float), (m,)) for x, _ in pts])
    kv = np.column_stack([np.broadcast_to(np.asarray(v, float), (m,)) for _, v in pts])
    return interp_rows(days, kd, kv)


def cover_curves(days: np.ndarray, p: dict) -> dict[str, np.ndarray]:
    """Green cover (0–1) per parcel and date of every history a parcel might follow."""
    sh, end = p["sh"], float((LAST - ORIGIN).days) + 30
    prev = [(-30.0, p["c0"]), (p["h0"] - 0.5, 0.32), (p["h0"], 0.07)]  # 2024 maize harvest
    bare = [(p["h0"] + 5, 0.05), (_d(2024, 11, 10), 0.06), (_d(2025, 1, 10), 0.03),
            (_d(2025, 3, 20), 0.05)]
    wheat = _curve(days, prev + [
        (p["sw"], 0.03), (p["sw"] + 10 + 0.5 * sh, 0.05), (_d(2024, 11, 25) + sh, 0.35 * p["kw"]),
        (_d(2024, 12, 15) + sh, 0.30 * p["kw"]), (_d(2025, 2, 25) + sh, 0.28 * p["kw"]),
        (_d(2025, 3, 5) + sh, 0.30 * p["kw"]), (_d(2025, 3, 28) + sh, 0.6),
        (_d(2025, 4, 20) + sh, p["pw"]), (_d(2025, 5, 17) + 0.5 * sh, p["pw"] - 0.02),
        (_d(2025, 5, 28) + sh, 0.6), (p["hw"] - 0.5, 0.3), (p["hw"], 0.07),
        (p["hw"] + 12, 0.06), (_d(2025, 7, 25), p["ws"]), (_d(2025, 9, 10), p["ws"]),
        (end, 0.08)])
    hit = (days[None, :] >= (HAIL - ORIGIN).days) & (days[None, :] < p["hw"][:, None])
    wheat = np.where(hit, wheat * (1 - p["hail"][:, None]), wheat)
    maize = _curve(days, prev + bare + [
        (_d(2025, 5, 10), p["wsp"]), (p["sm"] - 1.5, p["wsp"]), (p["sm"] - 1, 0.04),
        (p["sm"], 0.03), (p["sm"] + 7, 0.05), (p["sm"] + 25 + 0.5 * sh, 0.28),
        (_d(2025, 7, 20) + sh, 0.72), (_d(2025, 8, 1) + sh, p["pm"]),
        (_d(2025, 9, 1) + sh, p["pm"] - 0.02), (_d(2025, 9, 15) + sh, 0.6),
        (p["hm"] - 0.5, 0.38), (p["hm"], 0.06), (end, 0.05)])
    fallow = _curve(days, prev + bare + [
        (_d(2025, 5, 10) + sh, p["w1"]), (_d(2025, 6, 20), 0.9 * p["w1"]),
        (_d(2025, 8, 10) + sh, p["w2"]), (_d(2025, 9, 20), 0.9 * p["w2"]), (end, 0.08)])
    meadow = _curve(days, [
        (-30.0, 0.62), (_d(2024, 10, 20), 0.6), (_d(2024, 11, 20) + sh, 0.45),
        (_d(2024, 12, 20), 0.33), (_d(2025, 2, 10), 0.28), (_d(2025, 3, 5) + sh, 0.33),
        (_d(2025, 4, 5) + sh, 0.65), (_d(2025, 4, 30) + sh, p["mp"]),
        (_d(2025, 9, 10), p["mp"] - 0.04), (_d(2025, 10, 10), 0.72), (end, 0.62)])
    mown = _curve(days, [(-30.0, 1.0), (p["cut"], 1.0), (p["cut"] + p["cutd"], p["stub"]),
                         (p["cut"] + p["cutg"], 1.0), (end, 1.0)])
    return {"winter_wheat": wheat, "summer_maize": maize, "fallow": fallow,
            "meadow": meadow * mown}


def _draws(rng: np.random.Generator, m: int) -> dict:
    """Every random quantity of ``m`` parcels, drawn in a fixed order."""
    u = lambda a, b: rng.uniform(a, b, m)  # noqa: E731
    p = {"sh": u(-5, 5), "c0": u(0.5, 0.75), "h0": _d(2024, 9, 22) + u(0, 8),
         "sw": _d(2024, 10, 5) + u(0, 10), "hw": _d(2025, 6, 5) + u(0, 7), "kw": u(0.9, 1.1),
         "pw": u(0.86, 0.92), "ws": u(0.05, 0.2), "wsp": u(0.08, 0.25),
         "sm": _d(2025, 6, 10) + u(0, 10), "pm": u(0.86, 0.92), "hm": _d(2025, 9, 25) + u(0, 10),
         "w1": u(0.08, 0.4), "w2": u(0.08, 0.4), "mp": u(0.85, 0.93),
         "cut": _d(2025, 5, 20) + u(0, 20), "cutd": u(1, 3), "cutg": u(14, 28),
         "stub": u(0.3, 0.4), "soil": u(0.08, 0.25), "class_u": u(0, 1), "crop_u": u(0, 1),
         "planted_f": u(0.93, 1.0), "partial_f": u(0.35, 0.75), "small_u": u(0, 1),
         "over_u": u(0, 1), "declared_k": u(0.97, 1.05), "over_k": u(1.3, 1.8),
         "w_m": u(30, 44), "h_m": u(30, 44), "ws_m": u(8, 12), "hs_m": u(10, 18),
         "hail_l": u(0.1, 0.9)}
    return p


def _cloud_fields(n_rows: int, days: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per date a smooth random field on 1.5 km cells and the threshold giving its cloudiness
    (35 % of dates nearly clear, 25 % overcast, 40 % in between: ~40 % cloudy looks)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, 7])
    ny = max(2, int(np.ceil(n_rows * PITCH_M / 1500)) + 2)
    nx = int(np.ceil(N_COLS * PITCH_M / 1500)) + 2
    fields = np.stack([gaussian_filter(rng.normal(size=(ny, nx)), 2.0, mode="wrap")
                       for _ in days])
    fields /= fields.std(axis=(1, 2), keepdims=True)
    kind = rng.uniform(size=len(days))
    cloudiness = np.where(kind < 0.35, rng.uniform(0, 0.08, len(days)),
                          np.where(kind < 0.6, rng.uniform(0.85, 1.0, len(days)),
                                   rng.uniform(0.1, 0.85, len(days))))
    thr = np.array([np.quantile(f, c) for f, c in zip(fields, cloudiness)])
    return fields, thr


def _bilinear(field: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    f = field
    return ((1 - fy) * (1 - fx) * f[y0, x0] + (1 - fy) * fx * f[y0, x0 + 1]
            + fy * (1 - fx) * f[y0 + 1, x0] + fy * fx * f[y0 + 1, x0 + 1])


def hail_footprint(n: int):
    """The hail's footprint: an ellipse over the middle of the batch, 9 km × 2 km or more
    (~8 % of 1,000,000 parcels; a batch only a few km deep has it across its whole depth)."""
    import shapely

    width, depth = N_COLS * PITCH_M, -(-n // N_COLS) * PITCH_M
    circle = shapely.Point(X0 + width / 2, Y0 + depth / 2).buffer(1.0, 64)
    return shapely.affinity.scale(circle, 0.2 * width, max(0.13 * depth, 2000.0))


def generate(root: Path, n: int, n_dates: int, seed: int = 20250514, log=print) -> Path:
    """Write the batch (series arrays, parcels, truth) into ``root`` once."""
    import pandas as pd
    import shapely
    from scipy.special import ndtr, ndtri

    if (root / "meta.json").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    span = (LAST - ORIGIN).days
    days = np.round(np.linspace(0, span, n_dates)).astype(np.float64)
    times = np.datetime64(ORIGIN, "D") + days.astype("timedelta64[D]")
    n_rows = -(-n // N_COLS)
    fields, thr = _cloud_fields(n_rows, days, seed)
    arrays = {v: np.lib.format.open_memmap(root / f"{v}.tmp.npy", "w+", np.float32, (n, n_dates))
              for v in VARS}
    footprint = hail_footprint(n)
    shapely.prepare(footprint)
    tables = []
    for c0 in range(0, n, CHUNK):
        i = np.arange(c0, min(n, c0 + CHUNK))
        m = len(i)
        rng = np.random.default_rng([seed, c0 // CHUNK])
        p = _draws(rng, m)
        row, col = np.divmod(i, N_COLS)
        small = p["small_u"] < 0.02
        w = np.where(small, p["ws_m"], p["w_m"])
        h = np.where(small, p["hs_m"], p["h_m"])
        x0, y0 = X0 + col * PITCH_M + 0.5, Y0 + row * PITCH_M + 0.5
        boxes = shapely.box(x0, y0, x0 + w, y0 + h)
        declared_crop = np.where(p["crop_u"] < 0.6, "winter_wheat", "summer_maize")
        cls = np.select([p["class_u"] < 0.76, p["class_u"] < 0.82, p["class_u"] < 0.89,
                         p["class_u"] < 0.94, p["class_u"] < 0.999],
                        ["planted", "partial", "fallow", "meadow", "other"], "no_pixels")
        grown = np.where(cls == "other", np.where(declared_crop == "winter_wheat",
                                                  "summer_maize", "winter_wheat"),
                         declared_crop)
        hit = shapely.contains_xy(footprint, x0 + w / 2, y0 + h / 2)
        wheat_grown = (grown == "winter_wheat") & np.isin(cls, ["planted", "partial", "other"])
        hail = np.where(hit & wheat_grown, p["hail_l"], 0.0)
        p["hail"] = hail
        curves = cover_curves(days, p)
        crop_cover = np.where((grown == "winter_wheat")[:, None], curves["winter_wheat"],
                              curves["summer_maize"])
        cover = np.select([np.isin(cls, ["fallow", "no_pixels"])[:, None],
                           (cls == "meadow")[:, None]],
                          [curves["fallow"], curves["meadow"]], crop_cover)
        frac = np.where(cls == "partial", p["partial_f"],
                        np.where(np.isin(cls, ["planted", "other"]), p["planted_f"], 1.0))
        soil = p["soil"][:, None]
        x_c = soil + (0.9 - soil) * cover                 # NDVI of the planted part
        x_u = soil + (0.9 - soil) * curves["fallow"]      # … and of the rest (weeds, soil)
        f = frac[:, None]
        sd = 0.05                                         # pixel spread inside a parcel
        noise = rng.normal(0, 0.012, (m, n_dates))
        mean = f * x_c + (1 - f) * x_u + noise
        hi_, lo_ = np.maximum(x_c, x_u), np.minimum(x_c, x_u)
        f_hi = np.where(x_c >= x_u, f, 1 - f)
        with np.errstate(divide="ignore", invalid="ignore"):
            q_hi = ndtri(np.clip(1 - 0.25 / np.maximum(f_hi, 1e-9), 1e-4, 1 - 1e-4))
            q_lo = ndtri(np.clip(0.75 / np.maximum(1 - f_hi, 1e-9), 1e-4, 1 - 1e-4))
        p75 = np.maximum(np.where(f_hi >= 0.25, hi_ + sd * q_hi, lo_ + sd * q_lo) + noise, mean)
        veg = np.clip(f * ndtr((x_c - 0.4) / sd) + (1 - f) * ndtr((x_u - 0.4) / sd)
                      + rng.normal(0, 0.01, (m, n_dates)), 0, 1)
        # where the parcel's pixels are: its weight after the 5 m inward buffer (or unbuffered)
        buffered = np.clip(w - 10, 0, None) * np.clip(h - 10, 0, None) / 100
        weight = np.where(buffered >= 1, buffered, w * h / 100)
        weight = np.where(cls == "no_pixels", 0.0, weight)
        rule = np.where(cls == "no_pixels", "none", np.where(buffered >= 1, "buffered",
                                                              "unbuffered"))
        full = np.where(buffered >= 1, np.floor((w - 10) / 10) * np.floor((h - 10) / 10), 0)
        # clouds: the smooth field at the parcel, cloudy below the date's threshold
        gy, gx = 1 + row * PITCH_M / 1500, 1 + col * PITCH_M / 1500
        g = np.stack([_bilinear(fields[t], gy, gx) for t in range(n_dates)], axis=1)
        cf = np.clip((g - thr[None, :]) / 0.15, 0, 1)
        contamination = rng.uniform(0, 0.12, (m, n_dates)) * (1 - cf)
        mean, p75 = mean - contamination, p75 - contamination
        haze = (cf >= 1) & (rng.uniform(size=(m, n_dates)) < 0.025)
        dim = np.where(haze, rng.uniform(0.5, 0.85, (m, n_dates)), 1.0)
        mean, p75, veg = mean * dim, p75 * dim, veg * dim ** 2
        seen = cf * weight[:, None] >= 0.5               # the engine's min_clear_weight
        out = {"ndvi_mean": mean, "ndvi_p75": p75, "vegetated_fraction": veg,
               "water_fraction": np.zeros_like(mean)}
        for v, a in out.items():
            arrays[v][i] = np.where(seen, a, np.nan)
        arrays["clear_fraction"][i] = np.where(weight[:, None] > 0, cf, np.nan)
        area_mu = shapely.area(boxes) / (10_000 / 15)
        over = p["over_u"] < 0.03
        declared = area_mu * np.where(over, p["over_k"], p["declared_k"])
        expected = np.array([EXPECTED[c] for c in cls], dtype=object)
        expected[(cls == "planted") & ((weight < 2) | over)] = "yellow"
        tables.append(pd.DataFrame({
            "parcel_id": [f"DK{k:07d}" for k in i], "policy_id": [f"P{k // 4:06d}" for k in i],
            "household_id": [f"H{k // 4:06d}" for k in i], "crop": declared_crop,
            "declared_area_mu": declared.round(2), "area_mu": area_mu,
            "sum_insured_cny_per_mu": np.where(declared_crop == "winter_wheat", 950.0, 800.0),
            "validity": "ok", "full_pixels": full.astype(np.int64),
            "weight_sum": weight.astype(np.float32), "pixel_rule": rule,
            "x0": x0, "y0": y0, "x1": x0 + w, "y1": y0 + h,
            "truth_class": cls, "truth_crop": grown, "expected": expected,
            "hail_loss": np.where(hit & wheat_grown, hail, np.nan), "in_footprint": hit}))
        log(f"  generated {i[-1] + 1:,}/{n:,} parcels ({time.perf_counter() - t0:.0f} s)")
    for a in arrays.values():
        a.flush()
    del arrays
    for v in VARS:
        os.replace(root / f"{v}.tmp.npy", root / f"{v}.npy")
    pd.concat(tables, ignore_index=True).to_parquet(root / "parcels.parquet")
    np.save(root / "time.npy", times.astype("datetime64[ns]"))
    (root / "meta.json").write_text(json.dumps({
        "parcels": n, "dates": n_dates, "season": SEASON, "seed": seed, "version": VERSION,
        "hail": str(HAIL), "seconds": round(time.perf_counter() - t0, 1)}))
    return root


def ensure_batch(n: int, n_dates: int, log=print) -> Path:
    root = bench_dir() / f"v{VERSION}-{n}x{n_dates}"
    if not (root / "meta.json").exists():
        log(f"generating the batch {n:,} parcels × {n_dates} dates into {root} (once)")
        generate(root, n, n_dates, log=log)
    return root


# ---------------------------------------------------------------- shared by the workers

PARCEL_COLUMNS = ["parcel_id", "policy_id", "household_id", "crop", "declared_area_mu",
                  "area_mu", "sum_insured_cny_per_mu", "validity", "full_pixels", "weight_sum",
                  "pixel_rule"]


def load_batch(root: Path, rows: np.ndarray | None = None, extra: tuple[str, ...] = ()):
    """The cached series as the engine hands it over (float32 (parcel, time) variables, coords
    ``parcel_id``, ``time``, ``full_pixels``, ``weight_sum``, ``pixel_rule``) and the parcels
    table (only the columns a user's file has: the truth stays out)."""
    import pandas as pd
    import xarray as xr

    table = pd.read_parquet(root / "parcels.parquet", columns=PARCEL_COLUMNS + list(extra))
    data = {}
    for v in VARS:
        a = np.load(root / f"{v}.npy", mmap_mode=None if rows is None else "r")
        data[v] = a if rows is None else np.ascontiguousarray(a[rows])
    if rows is not None:
        table = table.iloc[rows].reset_index(drop=True)
    series = xr.Dataset(
        {v: (("parcel", "time"), a) for v, a in data.items()},
        coords={"parcel_id": ("parcel", table["parcel_id"].astype(str).to_numpy()),
                "time": np.load(root / "time.npy"),
                "full_pixels": ("parcel", table["full_pixels"].to_numpy()),
                "weight_sum": ("parcel", table["weight_sum"].to_numpy(np.float32)),
                "pixel_rule": ("parcel", table["pixel_rule"].astype(str).to_numpy())})
    parcels = table.drop(columns=["full_pixels", "weight_sum", "pixel_rule"])
    return series, parcels


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parcels", type=int, default=1_000_000)
    p.add_argument("--dates", type=int, default=70)
    a = p.parse_args()
    print(ensure_batch(a.parcels, a.dates))
