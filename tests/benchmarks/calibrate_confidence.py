"""Fit the built-in confidence calibration table on every labelled batch we have, and say how
well it holds on data it was not fitted on (run on demand; it is not a test).

    python tests/benchmarks/calibrate_confidence.py [--write]

Labelled batches: the synthetic sample (wheat season, the same with imagery from January,
maize season; truth from the generator), the WorldCereal Flanders 2018 chip and the eo-learn
Slovenia chip (true and false declarations), and the WorldCrops Kenya 2019 fields (half of the
non-maize fields declared as maize). "Declaration true" means the declared crop grows there.

Prints, per data set held out, the Brier score and the wrong automated verdicts with
confidence ≥ 0.8 when the table is fitted on the *other* data sets (leave one data set out),
then the same for the table fitted on all. Then the same batches judged by the calendar rules
alone (``crop_model=None``: what a batch too small or of one crop gets, where nothing
data-driven checks which crop grows): the share of their automated verdicts that are right, per
data set; the lowest share caps the confidence of every verdict the crop model took no part
in. ``--write`` writes the table and that cap to ``agri_3s/data/confidence_calibration.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import tests.realdata as rd  # noqa: E402
from agri_3s.decisions import confidence  # noqa: E402
from agri_3s.decisions.calendar import load_calendars  # noqa: E402
from agri_3s.decisions.planting import LOOKBACK, verify_planting  # noqa: E402
from agri_3s.types import Season  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TRUE_CLASSES = {"planted", "late_sown", "half_planted", "area_inflated"}


def _sample_batches():
    from agri_3s.pipeline import compute_series, load_parcels, open_source
    from agri_3s.sample import ensure_sample

    s = ensure_sample()
    truth = pd.read_csv(s.truth, dtype={"parcel_id": str})
    for name, season in (("wheat", "2024-10-01/2025-06-15"), ("maize", "2025-06-10/2025-10-10")):
        se = Season.parse(season)
        parcels = load_parcels(getattr(s, f"parcels_{name}"))
        series = compute_series(parcels, open_source(f"local:{s.imagery}"), se.start - LOOKBACK,
                                se.end)
        t = truth[truth["season"] == name]
        t = t.assign(declaration_true=t["truth_class"].isin(TRUE_CLASSES))
        yield f"sample-{name}", parcels, series, t, None, season, None
        if name == "wheat":  # imagery bought from January: the same looks from then on
            yield ("sample-wheat-from-january", parcels, series.sel(time=slice("2025-01-01", None)),
                   t, None, season, None)


def _real_batches(work: Path):
    for crop, season in (("maize", rd.FLANDERS_MAIZE_SEASON),
                         ("winter_wheat", rd.FLANDERS_WHEAT_SEASON)):
        yield (f"flanders-{crop}", *rd.flanders_batch(SHARED, work / "fl", crop),
               rd.FLANDERS_CALENDAR, season, rd.FLANDERS_REGION)
    yield ("flanders-wheat-from-january",
           *rd.flanders_batch(SHARED, work / "fl", "winter_wheat", imagery_from="2018-01-01"),
           rd.FLANDERS_CALENDAR, rd.FLANDERS_WHEAT_SEASON, rd.FLANDERS_REGION)
    for crop, season in (("maize", rd.SLOVENIA_MAIZE_SEASON),
                         ("winter_wheat", rd.SLOVENIA_WHEAT_SEASON)):
        yield (f"slovenia-{crop}", *rd.slovenia_batch(SHARED, work / "si", crop),
               rd.FLANDERS_CALENDAR, season, rd.FLANDERS_REGION)
    yield ("kenya", *rd.kenya_batch(SHARED, false_share=0.5), rd.KENYA_CALENDAR, rd.KENYA_SEASON,
           "western_kenya")


def raw_verdicts(work: Path, crop_model: str | None = "auto") -> pd.DataFrame:
    """Every labelled batch's verdicts with the *uncalibrated* probability."""
    confidence.calibrate = lambda p_raw, path=None: p_raw  # raw = calibrated
    rows = []
    for name, parcels, series, truth, calendar, season, region in (
            *_sample_batches(), *_real_batches(work)):
        report: dict = {}
        v = verify_planting(series, parcels, load_calendars(calendar), Season.parse(season),
                            region=region, crop_model=crop_model, model_report=report)
        v = v.merge(truth[["parcel_id", "declaration_true"]], on="parcel_id")
        cap = report.get("separability") or 1.0  # the verdicts' cap (see planting.py)
        rows.append(v.assign(batch=name, dataset=name.split("-")[0], cap=cap))
        print(f"{name}: {len(v)} parcels", file=sys.stderr)
    return pd.concat(rows, ignore_index=True)


def _figures(v: pd.DataFrame, p: np.ndarray) -> dict:
    auto = v["status"].isin(["green", "red"]).to_numpy()
    truth = v["declaration_true"].astype(bool).to_numpy()
    conf = np.minimum(np.where(v["status"] == "green", p, 1 - p), v["cap"].to_numpy())
    right = np.where(v["status"] == "green", truth, ~truth)
    return {"n": int(auto.sum()), "brier": float(np.mean((conf[auto] - right[auto]) ** 2)),
            "wrong": int((~right[auto]).sum()),
            "wrong_confident": int((~right[auto] & (conf[auto] >= 0.8)).sum())}


def _fit(v: pd.DataFrame, table: Path) -> tuple:
    """Leave-one-data-set-out figures of a table, then the table fitted on all (in ``table``):
    ``(raw, truth, fitted_on)`` of all."""
    decided = v[v["status"].isin(["green", "yellow", "red"])]
    raw = decided["p_declared"].to_numpy(float)
    truth = decided["declaration_true"].astype(bool).to_numpy()
    print("held out | parcels | Brier raw | Brier calibrated | wrong | wrong with "
          "confidence ≥ 0.8")
    for held in sorted(decided["dataset"].unique()):
        out = (decided["dataset"] == held).to_numpy()
        confidence.fit_calibration(raw[~out], truth[~out], fitted_on="others", path=table)
        x, y, _ = _read(table)
        cal = np.interp(raw[out], x, y)
        a, b = _figures(decided[out], raw[out]), _figures(decided[out], cal)
        print(f"{held} | {b['n']} | {a['brier']:.3f} | {b['brier']:.3f} | {b['wrong']} | "
              f"{b['wrong_confident']} (raw {a['wrong_confident']})")
    sets = ", ".join(sorted(decided["batch"].unique()))
    fitted_on = f"{len(raw)} labelled parcels: {sets}"
    confidence.fit_calibration(raw, truth, fitted_on=fitted_on, path=table)
    x, y, _ = _read(table)
    f = _figures(decided, np.interp(raw, x, y))
    print(f"all (fitted on all) | {f['n']} | | {f['brier']:.3f} | {f['wrong']} | "
          f"{f['wrong_confident']}")
    return raw, truth, fitted_on


def _rules_only_cap(v: pd.DataFrame) -> tuple[float, str]:
    """The lowest share of right automated verdicts of the rules alone over the data sets."""
    auto = v[v["status"].isin(["green", "red"])]
    right = (auto["status"] == "green") == auto["declaration_true"].astype(bool)
    share = right.groupby(auto["dataset"]).mean()
    n = auto.groupby("dataset").size()
    print("the rules alone: right among automated verdicts | " + " | ".join(
        f"{d} {share[d]:.3f} of {n[d]}" for d in share.index))
    worst = share.idxmin()
    return round(float(share.min()), 3), (f"the calendar rules alone were right on "
                                          f"{share.min():.1%} of {n[worst]} automated verdicts "
                                          f"on {worst}, the lowest of {', '.join(share.index)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the tables fitted on all")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "t.json"
        raw, truth, fitted_on = _fit(raw_verdicts(Path(tmp)), table)
        cap = _rules_only_cap(raw_verdicts(Path(tmp), crop_model=None))
        if args.write:
            confidence.fit_calibration(raw, truth, fitted_on=fitted_on, path=confidence.BUILTIN,
                                       cap=cap)
            print(f"wrote {confidence.BUILTIN}")


def _read(path: Path):
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return np.asarray(data["raw"]), np.asarray(data["calibrated"]), data.get("fitted_on", "")


if __name__ == "__main__":
    main()
