"""Loss assessment on hand-built series and layouts whose answers are known exactly, and the
array helpers against brute-force references."""

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from agri_3s.decisions.arrays import nan_median, nan_quantiles
from agri_3s.decisions.calendar import load_calendars
from agri_3s.decisions.canopy import own_soil_levels
from agri_3s.decisions.indemnity import PolicyTerms, claims_table, parcel_terms
from agri_3s.decisions.loss import Event, LossParams, claim_id, estimate_losses
from agri_3s.decisions.neighbours import footprint_shares, nearest_parcels
from agri_3s.errors import InputError

EVENT = dt.date(2025, 5, 14)
K = 0.6  # NDVI of full cover above soil


def _cover(times: np.ndarray) -> np.ndarray:
    """Bare until 15 Feb, full canopy by 15 Apr, then senescence to 0.7 by 10 Jun."""
    day = (pd.DatetimeIndex(times) - pd.Timestamp("2025-01-01")).days.to_numpy()
    return np.interp(day, [0, 45, 104, 160], [0.0, 0.0, 1.0, 0.7])


def _scene(xy, soil, loss, *, start="2025-01-01", past_year=False, vigour=None,
           cloudy_after=()):
    """Series where NDVI = soil + K · vigour · cover(t) · (1 − loss from the event on).

    ``past_year`` prepends 2024 with the same calendar curve and no damage; parcels listed in
    ``cloudy_after`` have no clear look after the event.
    """
    times = pd.date_range(start, "2025-06-10", freq="5D").values
    n = len(xy)
    vigour = np.linspace(0.8, 1.0, n) if vigour is None else np.asarray(vigour)
    after = times >= np.datetime64(EVENT)
    cover = _cover(times if not past_year else times + np.timedelta64(365, "D") *
                   (times < np.datetime64("2025-01-01")))
    ndvi = (np.asarray(soil)[:, None] + K * vigour[:, None] * cover[None, :]
            * np.where(after[None, :], 1 - np.asarray(loss)[:, None], 1.0))
    clear = np.ones_like(ndvi)
    for i in cloudy_after:
        clear[i, after] = 0.0
    ids = [f"p{i}" for i in range(n)]
    series = xr.Dataset({"ndvi_mean": (("parcel", "time"), ndvi.astype(np.float32)),
                         "clear_fraction": (("parcel", "time"), clear.astype(np.float32)),
                         "water_fraction": (("parcel", "time"), np.zeros_like(ndvi))},
                        coords={"parcel_id": ("parcel", ids), "time": times})
    parcels = gpd.GeoDataFrame(
        {"parcel_id": ids, "policy_id": "P1", "household_id": "H1", "crop": "winter_wheat",
         "area_mu": 9.6, "declared_area_mu": 9.6, "sum_insured_cny_per_mu": 500.0},
        geometry=[shapely.box(x, y, x + 80, y + 80) for x, y in xy], crs=32650)
    return series, parcels


def _event(footprint=None, **kw):
    fp = None if footprint is None else gpd.GeoDataFrame(geometry=[footprint], crs=32650)
    return Event("hail-1", "hail", EVENT, footprint=fp, crops=("winter_wheat",), **kw)


def _row(xs, y=0.0):
    return [(x, y) for x in xs]


def test_loss_recovered_exactly_on_each_parcels_own_soil():
    """20 healthy + 10 hail-damaged parcels, each on its own soil (NDVI 0.08–0.30) seen bare
    before emergence; NDVI linear in cover, so every loss is recovered exactly."""
    rng = np.random.default_rng(4)
    n_h, n_d = 20, 10
    truth = np.r_[np.zeros(n_h), rng.uniform(0.1, 0.9, n_d)]
    soil = rng.uniform(0.08, 0.30, n_h + n_d)
    series, parcels = _scene(_row(np.arange(n_h + n_d) * 100.0), soil, truth,
                             vigour=rng.uniform(0.8, 1.0, n_h + n_d))
    ev = _event(shapely.box(n_h * 100 - 10, -10, 4000, 100))
    est = estimate_losses(series, parcels, ev)
    np.testing.assert_allclose(est["soil_ndvi"], soil, atol=1e-6)
    assert (est["soil_source"] == "own").all()
    damaged = est.iloc[n_h:]
    np.testing.assert_allclose(damaged["loss_rate"], truth[n_h:], atol=1e-5)
    assert (damaged["baseline_method"] == "neighbours+own_pre").all()
    # the range is at least ± method_error around the point
    lo, hi = damaged["loss_rate_low"], damaged["loss_rate_high"]
    np.testing.assert_allclose(hi - lo, np.minimum(1, truth[n_h:] + 0.12)
                               - np.maximum(0, truth[n_h:] - 0.12), atol=1e-5)
    assert (est.iloc[:n_h]["status"] == "not_affected").all()
    assert est.iloc[:n_h]["reasons"].str.contains("OUTSIDE_FOOTPRINT").all()
    # the old batch-wide soil (one level for all) misreads every parcel not on that soil
    batch = estimate_losses(series, parcels, ev, LossParams(soil_ndvi=0.08)).iloc[n_h:]
    assert (batch["soil_source"] == "param").all()
    assert (batch["loss_rate"] - truth[n_h:]).abs().mean() > 0.03


def test_indemnity_of_an_estimated_claim_hand_computed():
    series, parcels = _scene(_row(np.arange(12) * 100.0), np.full(12, 0.2),
                             np.r_[np.zeros(6), [0.5, 0.6, 0.65, 0.55, 0.7, 0.6]])
    ev = _event(shapely.box(590, -10, 2000, 100))
    est = estimate_losses(series, parcels, ev)
    claims = claims_table(est, parcels, ev, PolicyTerms(), load_calendars())
    row = claims.iloc[7]  # loss 0.60, range 0.48–0.72: clear of 0.30 and 0.80
    assert row["status"] == "estimated" and row["loss_rate"] == pytest.approx(0.6, abs=1e-5)
    assert row["indemnity_cny"] == pytest.approx(round(500 * 1.0 * row["loss_rate"] * 9.6, 2))
    assert row["stage_share"] == 1.0 and row["growth_stage"] == "heading_to_maturity"
    assert row["claim_id"] == claim_id("hail-1", "P1", "p7")
    again = claims_table(est, parcels, ev, PolicyTerms(), load_calendars())
    assert again["claim_id"].equals(claims["claim_id"]) and claims["claim_id"].is_unique


def test_soil_from_neighbours_then_batch_when_never_seen_bare():
    """p5–p7 are only seen in full canopy: p5 takes the median soil of the same-crop parcels
    around it (p8–p10), p6 and p7 — with nobody seen bare within 3 km — the batch's median."""
    xy = (_row([0, 100, 200, 300, 400]) + _row([8000]) + _row([20000, 20100])
          + _row([8100, 8200, 8300]))
    soil = np.array([0.10, 0.12, 0.14, 0.16, 0.18, 0.2, 0.2, 0.2, 0.25, 0.27, 0.29])
    series, parcels = _scene(xy, soil, np.zeros(11))
    late = (series["time"] >= np.datetime64("2025-04-15")).values
    ndvi = series["ndvi_mean"].values
    ndvi[5:8, :] = np.where(late, ndvi[5:8, :], np.nan)
    series["clear_fraction"][:] = np.isfinite(ndvi)
    est = estimate_losses(series, parcels, _event(shapely.box(-10, -10, 50, 50)))
    src, level = est["soil_source"], est["soil_ndvi"]
    assert src[5] == "neighbours" and level[5] == pytest.approx(0.27, abs=1e-6)
    assert (src[[6, 7]] == "batch").all()
    np.testing.assert_allclose(level[[6, 7]], np.median(soil[[0, 1, 2, 3, 4, 8, 9, 10]]),
                               atol=1e-6)
    assert (src.drop([5, 6, 7]) == "own").all()


def test_footprint_share_edge_and_touching_parcels():
    """A footprint drawn by hand over p3–p5 (whole), 40 % of p2, and the edge of p6 (a parcel
    is hit from 50 % inside)."""
    xy = _row(np.arange(10) * 80.0)  # 80 m squares side by side: neighbours touch
    loss = np.array([0, 0, 0.3, 0.6, 0.6, 0.6, 0, 0, 0, 0])
    series, parcels = _scene(xy, np.full(10, 0.2), loss)
    fp = shapely.box(208, -5, 480, 85)  # p2 (x 160–240) 40 %, p3–p5 whole, p6 touched at 480
    est = estimate_losses(series, parcels, _event(fp)).set_index("parcel_id")
    np.testing.assert_allclose(est["footprint_share"], [0, 0, 0.4, 1, 1, 1, 0, 0, 0, 0],
                               atol=1e-9)
    assert (est.loc[["p3", "p4", "p5"], "status"] == "estimated").all()
    np.testing.assert_allclose(est.loc[["p3", "p4", "p5"], "loss_rate"], 0.6, atol=1e-5)
    # the touching p6 is a healthy neighbour; the partly covered p2 is neither hit nor healthy
    assert est.loc["p6", "status"] == "not_affected"
    assert "OUTSIDE_FOOTPRINT" in est.loc["p6", "reasons"]
    assert est.loc["p2", "status"] == "edge" and "FOOTPRINT_EDGE" in est.loc["p2", "reasons"]
    assert (est.loc[["p3", "p4", "p5"], "n_neighbours"] == 6).all()  # p0, p1, p6–p9
    claims = claims_table(est.reset_index(), parcels, _event(fp), PolicyTerms(),
                          load_calendars()).set_index("parcel_id")
    # p2 lost 0.30 of its canopy (range up to 0.42 ≥ the 0.30 threshold): surveyed, not paid
    # automatically; its indemnity is the point estimate's, provisional
    assert claims.loc["p2", "status"] == "survey" and "SURVEY_EDGE" in claims.loc["p2", "reasons"]
    assert claims.loc["p6", "status"] == "not_affected"


def test_survey_routing_at_both_levels_with_per_parcel_terms():
    ids = list("ABCDEFGH")
    est = pd.DataFrame({
        "parcel_id": ids,
        "loss_rate": [0.35, 0.85, 0.50, 0.20, 0.50, 0.65, 0.25, 0.10],
        "loss_rate_low": [0.23, 0.73, 0.38, 0.08, 0.38, 0.53, 0.13, 0.0],
        "loss_rate_high": [0.47, 0.97, 0.62, 0.28, 0.62, 0.77, 0.37, 0.22],
        "parcel_loss_rate": [0.35, 0.85, 0.50, 0.20, 0.50, 0.65, 0.25, 0.10],
        "damaged_fraction": 1.0, "flooded_fraction": np.nan, "footprint_share": 1.0,
        "n_neighbours": 8, "baseline_method": "neighbours+own_pre", "soil_ndvi": 0.2,
        "soil_source": "own", "imagery_dates": "",
        "status": ["estimated"] * 6 + ["edge", "edge"],
        "reasons": "LOSS_ESTIMATED", "reasons_zh": "估", "reasons_en": "est"})
    parcels = pd.DataFrame({"parcel_id": ids, "policy_id": "P", "crop": "winter_wheat",
                            "area_mu": 10.0, "declared_area_mu": 8.0,
                            "sum_insured_cny_per_mu": 1000.0,
                            "payout_threshold": [None] * 4 + [0.45, None, None, None],
                            "total_loss_at": [None] * 5 + [0.7, None, None],
                            "deductible": [0.1] + [None] * 7})
    c = claims_table(est, parcels, _event(), PolicyTerms(), load_calendars()).set_index(
        "parcel_id")
    assert c["status"].to_dict() == {
        "A": "survey", "B": "survey", "C": "estimated", "D": "below_threshold",
        "E": "survey", "F": "survey", "G": "survey", "H": "not_affected"}
    assert "起赔点" in c.loc["A", "reasons_zh"] and "payout threshold" in c.loc["A", "reasons_en"]
    assert "total-loss level" in c.loc["B", "reasons_en"]
    assert "payout threshold" in c.loc["E", "reasons_en"]  # its own threshold of 45 %
    assert "total-loss level" in c.loc["F", "reasons_en"]  # its own total-loss level of 70 %
    # indemnities at the point estimate (area capped at the declared 8 mu; heading share 1.0)
    expect = {"A": 1000 * 0.35 * 8 * 0.9, "B": 1000 * 1.0 * 8, "C": 1000 * 0.5 * 8,
              "D": 0.0, "E": 1000 * 0.5 * 8, "F": 1000 * 0.65 * 8, "G": 0.0, "H": 0.0}
    for pid, pay in expect.items():
        assert c.loc[pid, "indemnity_cny"] == pytest.approx(pay), pid
    assert c.loc["A", "deductible"] == 0.1 and c.loc["E", "payout_threshold"] == 0.45


def test_bad_per_parcel_terms_name_the_parcel():
    parcels = pd.DataFrame({"parcel_id": ["a", "b"], "deductible": [0.1, 5.0]})
    with pytest.raises(InputError, match="deductible.*b"):
        parcel_terms(parcels, PolicyTerms())
    parcels = pd.DataFrame({"parcel_id": ["a"], "payout_threshold": [0.9]})
    with pytest.raises(InputError, match="below payout_threshold"):
        parcel_terms(parcels, PolicyTerms())


def test_few_neighbours_then_the_far_ones():
    """No healthy parcel within 3 km of the hit ones: the nearest ones 10 km away are used."""
    xy = _row([0, 100, 200]) + _row(10000 + np.arange(6) * 100.0)
    loss = np.r_[[0.4, 0.5, 0.7], np.zeros(6)]
    series, parcels = _scene(xy, np.full(9, 0.2), loss)
    est = estimate_losses(series, parcels, _event(shapely.box(-10, -10, 300, 100)))
    hit = est.iloc[:3]
    np.testing.assert_allclose(hit["loss_rate"], [0.4, 0.5, 0.7], atol=1e-5)
    assert (hit["baseline_method"] == "far_neighbours+own_pre").all()
    assert hit["reasons"].str.contains("FEW_NEIGHBOURS;FAR_NEIGHBOURS").all()
    assert (hit["n_neighbours"] == 6).all()
    # the farthest used: p8's square at x = 10500 from p0's at x = 0
    assert hit["neighbour_distance_m"].iloc[0] == pytest.approx(10500.0)
    assert "10.5 km" in hit["reasons_en"].iloc[0] and "（0 块）" in hit["reasons_zh"].iloc[0]
    # far neighbours are a weaker baseline: a wider range
    assert (hit["loss_rate_high"] - hit["loss_rate"]).min() >= 0.15 - 1e-6


def test_own_past_season_when_the_whole_batch_is_hit():
    """Every parcel in the footprint, a series from 2024: the same calendar window a year
    earlier (undamaged) is the baseline."""
    loss = np.array([0.3, 0.5, 0.8])
    series, parcels = _scene(_row([0, 100, 200]), np.array([0.12, 0.2, 0.25]), loss,
                             start="2024-01-01", past_year=True)
    est = estimate_losses(series, parcels, _event(shapely.box(-10, -10, 400, 100)))
    np.testing.assert_allclose(est["loss_rate"], loss, atol=1e-5)
    assert (est["baseline_method"] == "own_past+own_pre").all()
    assert est["reasons"].str.contains("FEW_NEIGHBOURS;OWN_PAST_SEASONS").all()
    assert (est["n_neighbours"] == 0).all()


def test_no_post_event_obs_only_without_a_clear_post_look():
    """p0 is clouded after the event; p1 was seen but has no baseline at all."""
    series, parcels = _scene(_row([0, 100]), np.full(2, 0.2), np.array([0.5, 0.5]),
                             cloudy_after=[0])
    est = estimate_losses(series, parcels, _event(shapely.box(-10, -10, 300, 100)))
    assert est["status"].tolist() == ["no_data", "no_data"]
    assert est.loc[0, "reasons"] == "NO_POST_EVENT_OBS"
    assert est.loc[1, "reasons"] == "FEW_NEIGHBOURS;NO_BASELINE"


def test_every_parcel_reported_in_input_order():
    series, parcels = _scene(_row(np.arange(8) * 100.0), np.full(8, 0.2), np.zeros(8))
    extra = parcels.iloc[[0]].assign(parcel_id="missing", crop="cotton")
    batch = pd.concat([parcels.iloc[::-1], extra], ignore_index=True)
    est = estimate_losses(series, batch, _event())  # no footprint: every parcel may be hit
    assert est["parcel_id"].tolist() == batch["parcel_id"].tolist()
    assert est.iloc[-1]["status"] == "not_affected" and "NOT_AFFECTED_CROP" in est.iloc[-1][
        "reasons"]
    assert np.isnan(est["footprint_share"]).all()
    # healthy all alike: no footprint, so the better-kept half of the neighbours is the baseline
    np.testing.assert_allclose(est["loss_rate"].iloc[:-1], 0.0, atol=1e-5)


# --- array helpers against brute force ------------------------------------------------------

def test_nan_quantiles_equal_numpy():
    rng = np.random.default_rng(7)
    a = rng.random((200, 13))
    a[rng.random(a.shape) < 0.3] = np.nan
    a[5] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        ref = np.nanpercentile(a, [10, 50, 90], axis=1)
    np.testing.assert_allclose(nan_quantiles(a, (10.0, 50.0, 90.0), axis=1), ref)
    np.testing.assert_allclose(nan_median(a, axis=1), ref[1])


def test_nearest_parcels_equal_brute_force():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 1000, (300, 2))
    crops = rng.choice(["a", "b"], 300)
    cand = rng.random(300) < 0.6
    idx, dist = nearest_parcels(xy, crops, np.ones(300, bool), cand, 5, radius=150)
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    for i in range(300):
        ok = cand & (crops == crops[i]) & (d[i] <= 150)
        ok[i] = False
        want = np.flatnonzero(ok)[np.argsort(d[i, ok], kind="stable")][:5]
        got = idx[i][idx[i] >= 0]
        np.testing.assert_allclose(np.sort(d[i, got]), np.sort(d[i, want]), rtol=1e-6)
        np.testing.assert_allclose(dist[i][: len(got)], d[i, got], rtol=1e-5)


def test_footprint_shares_equal_shapely_one_by_one():
    rng = np.random.default_rng(5)
    centres = rng.uniform(0, 1000, (400, 2))
    geoms = np.array([shapely.Point(c).buffer(rng.uniform(5, 40), 8) for c in centres],
                     dtype=object)
    fp = shapely.Point(500, 500).buffer(300).union(shapely.box(0, 0, 200, 1000))
    want = [g.intersection(fp).area / g.area for g in geoms]
    np.testing.assert_allclose(footprint_shares(geoms, fp), want, atol=1e-12)


def test_own_soil_level_ignores_a_missed_cloud():
    ndvi = np.array([[0.35, 0.18, 0.02, 0.19, 0.20, 0.5, 0.8]])  # 0.02: haze the mask missed
    assert own_soil_levels(ndvi, np.isfinite(ndvi), 1, 0.1)[0] == pytest.approx(0.18)
