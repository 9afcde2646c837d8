"""Loss assessment on real Sentinel-2 series of Western-Kenya maize with injected hail damage.

What is real: the series — Sentinel Hub FIS per-field L2A NDVI of 319 WorldCrops /
PlantVillage fields over 2019 (73 dates, the FIS cloud mask's clear share), with their real
clouds, real gaps and the real spread between fields (planting dates, vigour, intercrops), and
where the fields lie (so which healthy fields are near which).

What is constructed: the event and the truth. These fields are never bare (weedy seedbeds,
NDVI ~0.35), so each field's series is rescaled so that its bare looks — the median of its
three lowest clear looks — sit at a known soil level of 0.10, 0.20 or 0.30 (``b + (NDVI − m)
(1 − b) / (1 − m)``), and every field is assessed at each level in turn, the levels mixed
across fields in every batch. The hail (2019-06-20) falls on a footprint drawn as the west half
of every village's fields; maize fields at least half inside and in canopy (real NDVI ≥ 0.6
in the 30 days before) lose a known share L ∈ [0.2, 0.9] of their canopy from that day on:
``NDVI' = s + (1 − L)(NDVI − s)`` with ``s`` the field's own soil level.

Measured here (the figures in README "Accuracy"): MAE 0.067–0.069 at each soil level, the
range [low, high] holds the true loss for 92 % of the fields, and 97 % of the claims decided
without survey are on the right side of the payout threshold. The 0.05 MAE aim is not reached
on this date: the error is the real fields' own canopy change in the 2–3 weeks after the
event (p10–p90 of the kept / gained canopy 0.80–1.28 among healthy fields), which even the
true soil level leaves at ~0.06; two weeks later (2019-07-04) the same set-up gives 0.047–0.050.
"""

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agri_3s.crs import metric_crs
from agri_3s.decisions.calendar import load_calendars
from agri_3s.decisions.indemnity import PolicyTerms, claims_table
from agri_3s.decisions.loss import Event, LossParams, estimate_losses, soil_level
from tests.realdata import KENYA_CALENDAR, inject_canopy_loss, kenya_fields

pytestmark = pytest.mark.realdata
LEVELS = np.array([0.10, 0.20, 0.30])


def _west_halves(fields: gpd.GeoDataFrame, maize: np.ndarray) -> shapely.Geometry:
    """A patchy hail footprint: the west half of the maize fields of every 2 km cell."""
    x, y = fields.centroid.x.to_numpy(), fields.centroid.y.to_numpy()
    cell = np.floor(x / 2000) * 1000 + np.floor(y / 2000)
    boxes = []
    for c in np.unique(cell[maize]):
        b = fields[cell == c].total_bounds
        boxes.append(shapely.box(b[0] - 50, b[1] - 50, np.median(x[maize & (cell == c)]),
                                 b[3] + 50))
    return shapely.union_all(boxes)


def _assess(fields, series, event, hit, loss, levels, params=None):
    """Rescale every field to its soil level, inject the loss, assess: one row per hit field."""
    batch = inject_canopy_loss(series, levels, loss, event.date)
    clear = series["clear_fraction"].values >= 0.6
    damaged = batch["ndvi_mean"].values
    if params == "batch-wide":  # the former rule: one soil for the batch, its 2nd percentile
        params = LossParams(soil_ndvi=soil_level(np.where(clear, damaged, np.nan), 2.0))
    params = params or LossParams()
    est = estimate_losses(batch, fields, event, params)
    claims = claims_table(est, fields, event, PolicyTerms(), load_calendars(KENYA_CALENDAR),
                          params)
    return pd.DataFrame({"level": levels, "truth": loss, "loss": est["parcel_loss_rate"],
                         "low": est["loss_rate_low"], "high": est["loss_rate_high"],
                         "soil": est["soil_ndvi"], "status": claims["status"],
                         "reasons": claims["reasons"]})[hit]


@pytest.fixture(scope="module")
def hail(shared_data):
    fields, series = kenya_fields(shared_data)
    fields = fields.to_crs(metric_crs(fields)).assign(policy_id="KE-2019",
                                                     sum_insured_cny_per_mu=800.0)
    maize = (fields["crop"] == "maize").to_numpy()
    footprint = _west_halves(fields, maize)
    day = dt.date(2019, 6, 20)
    event = Event("hail-2019-06-20", "hail", day, crops=("maize",),
                  footprint=gpd.GeoDataFrame(geometry=[footprint], crs=fields.crs))
    share = (shapely.area(shapely.intersection(fields.geometry.values, footprint))
             / fields.area.to_numpy())
    times = series["time"].values
    pre = (times < np.datetime64(day)) & (times >= np.datetime64(day) - np.timedelta64(30, "D"))
    real = np.where(series["clear_fraction"].values >= 0.6, series["ndvi_mean"].values, np.nan)
    with np.errstate(invalid="ignore"):
        in_canopy = np.nanmean(np.where(pre[None, :], real, np.nan), axis=1) >= 0.6
    hit = maize & (share >= 0.5) & in_canopy
    rng = np.random.default_rng(620)
    loss = np.where(hit, rng.uniform(0.2, 0.9, len(fields)), 0.0)
    first = rng.integers(0, 3, len(fields))
    runs = {mode: pd.concat([_assess(fields, series, event, hit, loss,
                                     LEVELS[(first + turn) % 3], mode)
                             for turn in range(3)], ignore_index=True)
            for mode in (None, "batch-wide")}
    return hit, runs


def test_loss_holds_at_every_soil_level(hail):
    hit, runs = hail
    own = runs[None]
    assert hit.sum() >= 60 and own["loss"].notna().all()  # every hit field assessed
    mae = (own["loss"] - own["truth"]).abs().groupby(own["level"]).mean()
    assert len(mae) == 3
    assert mae.max() <= 0.075, mae  # measured 0.067–0.069 (the 0.05 aim: see module docstring)
    assert mae.max() - mae.min() <= 0.01, mae  # the same fields, whatever their soil
    assert (own["soil"] - own["level"]).abs().mean() <= 0.03
    # the former batch-wide soil: right for fields on the batch's darkest soil only
    old = runs["batch-wide"]
    old_mae = (old["loss"] - old["truth"]).abs().groupby(old["level"]).mean()
    assert old_mae.max() >= 0.15 and old_mae.max() > 2 * mae.max(), old_mae


def test_range_holds_the_true_loss(hail):
    own = hail[1][None]
    covered = own["truth"].between(own["low"], own["high"]).mean()
    assert covered >= 0.90, covered  # measured 0.92


def test_uncertain_claims_go_to_survey(hail):
    own = hail[1][None]
    straddle = (((own["low"] < 0.3) & (own["high"] >= 0.3))
                | ((own["low"] < 0.8) & (own["high"] >= 0.8)))
    assert (own.loc[straddle, "status"] == "survey").all()
    assert own.loc[straddle, "reasons"].str.contains("SURVEY_REQUIRED").all()
    assert (own.loc[~straddle, "status"].isin(["estimated", "below_threshold"])).all()
    # decided without survey: paid exactly when the true loss reaches the payout threshold
    auto = own[~straddle]
    right = ((auto["status"] == "estimated") == (auto["truth"] >= 0.3)).mean()
    assert len(auto) >= 50 and right >= 0.95, right  # measured 0.97
    # fields whose true loss is within 0.05 of the threshold are surveyed, not decided
    close = (own["truth"] - 0.3).abs() <= 0.05
    assert (own.loc[close, "status"] == "survey").mean() >= 0.85  # measured 0.91
