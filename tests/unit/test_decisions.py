"""Calendars, indemnity (hand-computed), planting verdicts and loss rates on series built by hand."""

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from agri_3s.decisions.calendar import Window, load_calendars
from agri_3s.decisions.indemnity import PolicyTerms, claims_table, indemnity_cny
from agri_3s.decisions.loss import Event, LossParams, estimate_losses, loss_grade
from agri_3s.decisions.planting import verify_planting
from agri_3s.errors import InputError
from agri_3s.types import Season

WHEAT = Season(dt.date(2024, 10, 1), dt.date(2025, 6, 15))


def test_window_crossing_new_year_is_placed_in_the_season():
    w = Window((11, 20), (2, 20))
    assert w.within(WHEAT) == (dt.date(2024, 11, 20), dt.date(2025, 2, 20))
    assert Window((4, 10), (5, 20)).within(WHEAT) == (dt.date(2025, 4, 10), dt.date(2025, 5, 20))


def test_growth_stage_on_event_date():
    wheat = load_calendars()["winter_wheat"][0]
    assert wheat.stage_on(dt.date(2025, 5, 14)).share == 1.0
    assert wheat.stage_on(dt.date(2025, 3, 1)).share == 0.6
    assert wheat.stage_on(dt.date(2024, 11, 15)).share == 0.4


def test_user_calendar_file_adds_crops(tmp_path):
    f = tmp_path / "cal.toml"
    f.write_text('[maize.flanders]\nsowing=["04-20","05-20"]\nemergence=["05-05","06-10"]\n'
                 'peak=["07-01","08-31"]\nharvest=["09-15","10-31"]\npeak_ndvi_min=0.6\n')
    cals = load_calendars(f)
    assert cals["maize"][0].region == "flanders" and "winter_wheat" in cals
    f.write_text('[maize.flanders]\nsowing=["04-20"]\n')
    with pytest.raises(InputError, match="maize.flanders"):
        load_calendars(f)


@pytest.mark.parametrize("rate,area,expected", [
    (0.25, 5.0, 0.0),                          # below the 30 % threshold
    (0.50, 5.0, 1000 * 0.8 * 0.50 * 5.0 * 0.9),  # 1800.00
    (0.85, 5.0, 1000 * 0.8 * 1.00 * 5.0 * 0.9),  # total loss → 100 %
    (0.50, 9.0, 1000 * 0.8 * 0.50 * 6.0 * 0.9),  # damaged area capped at the declared 6 mu
])
def test_indemnity_hand_computed(rate, area, expected):
    terms = PolicyTerms(payout_threshold=0.3, total_loss_at=0.8, deductible=0.1)
    assert indemnity_cny(1000, rate, area, 6.0, terms, stage_share=0.8) == pytest.approx(expected)


def test_policy_terms_reject_nonsense():
    with pytest.raises(InputError, match="deductible"):
        PolicyTerms(deductible=10)
    assert PolicyTerms().override({"deductible": 0.05, "other": 1}).deductible == 0.05
    assert PolicyTerms().override({"deductible": float("nan")}).deductible == 0.0


def test_loss_grades():
    assert [loss_grade(r, 0.8) for r in (0.05, 0.2, 0.4, 0.6, 0.8)] == [
        "none", "light", "moderate", "severe", "total"]


# --- planting verdicts on hand-built series ------------------------------------------------

def _series(curves: dict[str, tuple], times, full_pixels=20, weight_sum=None):
    """curves: parcel → (ndvi_mean, p75, vegetated_fraction) arrays over ``times``."""
    ids = list(curves)
    arr = {k: np.array([curves[p][j] for p in ids], np.float32)
           for j, k in enumerate(("ndvi_mean", "ndvi_p75", "vegetated_fraction"))}
    n = len(ids)
    return xr.Dataset(
        {**{k: (("parcel", "time"), v) for k, v in arr.items()},
         "clear_fraction": (("parcel", "time"), np.ones((n, len(times)), np.float32))},
        coords={"parcel_id": ("parcel", ids), "time": times,
                "full_pixels": ("parcel", np.full(n, full_pixels)),
                "weight_sum": ("parcel", np.full(n, float(weight_sum or full_pixels))),
                "pixel_rule": ("parcel", ["buffered"] * n),
                "small_parcel": ("parcel", np.full(n, full_pixels < 4))})


def _wheat_curve(times, scale=1.0, soil=0.2):
    doy = np.array([(pd.Timestamp(t) - pd.Timestamp("2024-10-10")).days for t in times])
    cover = np.interp(doy, [0, 12, 50, 140, 190, 215, 235, 245], [0, 0, .35, .3, .9, .9, .3, 0])
    return soil + 0.63 * cover * scale


def test_planting_verdicts_for_hand_built_cases():
    times = pd.date_range("2024-09-05", "2025-06-15", freq="5D").values
    wheat = _wheat_curve(times)
    bare = np.full(len(times), 0.2)
    doy = np.array([(pd.Timestamp(t) - pd.Timestamp("2025-05-05")).days for t in times])
    cotton = 0.2 + 0.63 * np.clip(doy / 40, 0, 0.8)  # emerges in May, canopy only in June

    def veg(c):
        return (c >= 0.4).astype(float)

    half = (wheat + bare) / 2
    curves = {"green": (wheat, wheat, veg(wheat)), "fallow": (bare, bare, veg(bare)),
              "half": (half, wheat, veg(wheat) * 0.5), "cotton": (cotton, cotton, veg(cotton)),
              "inflated": (wheat, wheat, veg(wheat))}
    parcels = pd.DataFrame({"parcel_id": list(curves), "crop": "winter_wheat",
                            "declared_area_mu": [10, 10, 10, 10, 14], "area_mu": 10.0})
    v = verify_planting(_series(curves, times), parcels, load_calendars(), WHEAT).set_index(
        "parcel_id")
    assert v.loc["green", "status"] == "green"
    assert v.loc["fallow", "status"] == "red" and "NOT_PLANTED" in v.loc["fallow", "reasons"]
    assert v.loc["half", "status"] == "yellow" and "PARTIAL_PLANTING" in v.loc["half", "reasons"]
    assert v.loc["half", "planted_fraction"] == pytest.approx(0.5)
    assert v.loc["cotton", "status"] == "red"
    assert v.loc["inflated", "status"] == "yellow" and "AREA_SHORTFALL" in v.loc["inflated", "reasons"]
    assert v.loc["inflated", "area_ratio"] == pytest.approx(10 / 14)
    # emergence: first date NDVI ≥ 0.30 → cover ≥ 0.159 → ~17 days after the curve's 12-day lag
    assert dt.date(2024, 10, 30) <= v.loc["green", "emergence_date"] <= dt.date(2024, 11, 10)
    assert "未见作物冠层" in v.loc["fallow", "reasons_zh"]


def test_small_parcel_and_missing_data_verdicts():
    times = pd.date_range("2024-09-05", "2025-06-15", freq="5D").values
    wheat = _wheat_curve(times)
    # 1.5 pixel-equivalents measured: below the 2 the rules need to judge
    s = _series({"tiny": (wheat, wheat, np.ones(len(times)))}, times, full_pixels=0,
                weight_sum=1.5)
    parcels = pd.DataFrame({"parcel_id": ["tiny", "gone"], "crop": "winter_wheat",
                            "declared_area_mu": [1.0, 2.0], "area_mu": [1.0, 2.0]})
    v = verify_planting(s, parcels, load_calendars(), WHEAT).set_index("parcel_id")
    assert v.loc["tiny", "status"] == "yellow" and "SMALL_PARCEL" in v.loc["tiny", "reasons"]
    assert v.loc["gone", "status"] == "no_data"  # not in the series: still reported


# --- loss rates on hand-built series --------------------------------------------------------

def test_loss_recovered_exactly_when_ndvi_is_linear_in_cover():
    """20 healthy + 10 hail-damaged parcels; NDVI = soil + k·cover·(1−L); truth L is known."""
    soil, k = 0.18, 0.6
    times = pd.date_range("2025-04-20", "2025-06-05", freq="5D").values
    event = dt.date(2025, 5, 14)
    after = np.array([pd.Timestamp(t).date() > event for t in times])
    rng = np.random.default_rng(4)
    n_h, n_d = 20, 10
    truth = np.r_[np.zeros(n_h), rng.uniform(0.1, 0.9, n_d)]
    vigour = rng.uniform(0.8, 1.0, n_h + n_d)           # each field's own canopy level
    season = np.linspace(1.0, 0.7, len(times))          # senescence common to all fields
    ndvi = soil + k * vigour[:, None] * season[None, :] * np.where(after, 1 - truth[:, None], 1)
    ids = [f"p{i}" for i in range(n_h + n_d)]
    s = xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi),
                    "clear_fraction": (("parcel", "time"), np.ones_like(ndvi)),
                    "water_fraction": (("parcel", "time"), np.zeros_like(ndvi))},
                   coords={"parcel_id": ("parcel", ids), "time": times})
    boxes = [shapely.box(i * 100, 0, i * 100 + 80, 80) for i in range(n_h + n_d)]
    parcels = gpd.GeoDataFrame({"parcel_id": ids, "crop": "winter_wheat", "area_mu": 9.6,
                                "declared_area_mu": 9.6, "policy_id": "P1",
                                "sum_insured_cny_per_mu": 500.0}, geometry=boxes, crs=32650)
    footprint = gpd.GeoDataFrame(geometry=[shapely.box(n_h * 100 - 10, -10, 4000, 100)], crs=32650)
    ev = Event("hail-1", "hail", event, footprint=footprint, crops=("winter_wheat",))
    est = estimate_losses(s, parcels, ev, LossParams(soil_ndvi=soil))
    damaged = est.iloc[n_h:]
    np.testing.assert_allclose(damaged["loss_rate"], truth[n_h:], atol=1e-6)
    assert (damaged["loss_rate_low"] <= damaged["loss_rate"]).all()
    assert (damaged["loss_rate_high"] >= damaged["loss_rate"]).all()
    assert (est.iloc[:n_h]["status"] == "not_affected").all()
    claims = claims_table(est, parcels, ev, PolicyTerms(), load_calendars())
    row = claims.iloc[n_h + int(np.argmax(truth[n_h:] > 0.5))]
    rate = row["loss_rate"]
    expect = 500 * 1.0 * (1.0 if rate >= 0.8 else rate) * 9.6  # heading stage share 100 %
    assert row["indemnity_cny"] == pytest.approx(round(expect, 2))
    assert claims["claim_id"].is_unique
    assert claims_table(est, parcels, ev, PolicyTerms(), load_calendars())["claim_id"].equals(
        claims["claim_id"])  # same inputs → same ids
