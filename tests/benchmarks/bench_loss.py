"""Loss assessment at province scale: estimate_losses + claims_table on a synthetic batch.

1,000,000 parcels (60 m squares at random points in a 100 km square, two crops), 70 dates
(5-day revisit, ~30 % cloudy looks), a hail footprint (a disc over ~20 % of the square) whose
parcels lose a random share of their canopy. Prints the time of each step and the peak memory
of the process (``ru_maxrss``; run under ``/usr/bin/time -v`` for the same figure).

    python tests/benchmarks/bench_loss.py [--parcels 1000000] [--dates 70]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time
import tracemalloc

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from agri_3s.decisions.calendar import load_calendars
from agri_3s.decisions.indemnity import PolicyTerms, claims_table
from agri_3s.decisions.loss import Event, LossParams, estimate_losses

EVENT = dt.date(2025, 5, 14)


def synthetic_batch(n: int, n_dates: int, seed: int = 1):
    """Parcels, series, event and the true loss of a synthetic province."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100_000, (n, 2))
    parcels = gpd.GeoDataFrame(
        {"parcel_id": np.char.add("P", np.arange(n).astype(str)).astype(object),
         "policy_id": "POL-1", "household_id": "H",
         "crop": np.where(rng.random(n) < 0.6, "winter_wheat", "summer_maize"),
         "area_mu": 5.4, "declared_area_mu": 5.4, "sum_insured_cny_per_mu": 500.0},
        geometry=shapely.box(xy[:, 0] - 30, xy[:, 1] - 30, xy[:, 0] + 30, xy[:, 1] + 30),
        crs=32650)
    centre, radius = (50_000, 50_000), np.sqrt(0.2 * 1e10 / np.pi)
    footprint = gpd.GeoDataFrame(geometry=[shapely.Point(centre).buffer(radius, 64)], crs=32650)
    times = (np.datetime64(EVENT) - np.timedelta64(5 * (n_dates - 12), "D")
             + np.arange(n_dates) * np.timedelta64(5, "D"))
    days = (times - times[0]).astype(int).astype(np.float32)
    soil = rng.uniform(0.08, 0.25, n).astype(np.float32)
    vigour = rng.uniform(0.7, 1.0, n).astype(np.float32)
    shift = rng.normal(0, 6, n).astype(np.float32)
    inside = np.hypot(xy[:, 0] - centre[0], xy[:, 1] - centre[1]) < radius
    loss = np.where(inside & (parcels["crop"].to_numpy() == "winter_wheat"),
                    rng.uniform(0.1, 0.9, n), 0.0).astype(np.float32)
    hit_day = float((np.datetime64(EVENT) - times[0]).astype(int))
    ndvi = np.empty((n, n_dates), np.float32)
    clear = np.empty((n, n_dates), np.float32)
    for j, d in enumerate(days):  # loop over dates, arrays over parcels
        cover = np.clip((d - 60 + shift) / 150.0, 0.02, 0.9) * vigour
        if d >= hit_day:
            cover = cover * (1 - loss)
        ndvi[:, j] = soil + (0.88 - soil) * cover + rng.normal(0, 0.01, n).astype(np.float32)
        clear[:, j] = rng.random(n, dtype=np.float32) < 0.7
    series = xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi),
                         "clear_fraction": (("parcel", "time"), clear),
                         "water_fraction": (("parcel", "time"), np.zeros_like(ndvi))},
                        coords={"parcel_id": ("parcel", parcels["parcel_id"].to_numpy()),
                                "time": times.astype("datetime64[ns]")})
    event = Event("hail-bench", "hail", EVENT, footprint=footprint, crops=("winter_wheat",))
    return parcels, series, event, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parcels", type=int, default=1_000_000)
    ap.add_argument("--dates", type=int, default=70)
    ap.add_argument("--trace", action="store_true",
                    help="tracemalloc the assessment (slower; its own peak allocation)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    parcels, series, event, truth = synthetic_batch(args.parcels, args.dates)
    inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    if args.trace:
        tracemalloc.start()
    t1 = time.perf_counter()
    est = estimate_losses(series, parcels, event, LossParams())
    t2 = time.perf_counter()
    claims = claims_table(est, parcels, event, PolicyTerms(), load_calendars())
    t3 = time.perf_counter()
    traced = tracemalloc.get_traced_memory()[1] / 1024 ** 3 if args.trace else float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    hit = claims["status"].isin(["estimated", "below_threshold", "survey"]).to_numpy()
    err = np.abs(est["parcel_loss_rate"].to_numpy() - truth)[hit]
    print(f"{args.parcels:,} parcels × {args.dates} dates: synthetic batch {t1 - t0:.1f} s, "
          f"estimate_losses {t2 - t1:.1f} s, claims_table {t3 - t2:.1f} s, "
          f"total {t3 - t1:.1f} s; peak RSS {peak:.2f} GiB (inputs built: {inputs:.2f} GiB; "
          f"traced by the assessment: {traced:.2f} GiB)")
    print(f"hit parcels {hit.sum():,}, loss MAE {np.nanmean(err):.3f}; statuses "
          f"{pd.Series(claims['status']).value_counts().to_dict()}")


if __name__ == "__main__":
    main()
