"""Season metrics: analytic curves with known start / peak / end, cycles, unobserved windows,
and recorded planting dates of real Kenyan maize fields."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from agri_3s.errors import InputError
from agri_3s.timeseries.phenology import season_metrics
from agri_3s.timeseries.smoothing import whittaker

DAYS = np.arange(0.0, 365.0, 5.0)
K = 4.394 / 30.0          # logistic rate: 10 % → 90 % of a rise in 30 days


def season(t, sos, eos, base=0.2, amp=0.6):
    """Double logistic; its half-way (50 % amplitude) days are exactly sos and eos."""
    return base + amp * (1 / (1 + np.exp(-K * (t - sos))) - 1 / (1 + np.exp(-K * (t - eos))))


def metrics(z, observed=None, start=0.0, end=360.0, **kw):
    z = np.atleast_2d(z)
    observed = np.ones(z.shape, bool) if observed is None else np.atleast_2d(observed)
    n = z.shape[0]
    return season_metrics(z, observed, DAYS, np.full(n, start), np.full(n, end), **kw)


def test_double_logistic_start_peak_end_and_integral_match_the_analytic_values():
    sos = np.array([100.0, 121.0, 133.5])
    eos = np.array([220.0, 250.0, 237.0])
    z = season(DAYS[None], sos[:, None], eos[:, None])
    m = metrics(z)
    np.testing.assert_allclose(m["sos_day"], sos, atol=0.3)
    np.testing.assert_allclose(m["eos_day"], eos, atol=0.3)
    np.testing.assert_allclose(m["peak_value"], 0.8, atol=0.002)
    np.testing.assert_allclose(m["base_before"], 0.2, atol=0.002)
    np.testing.assert_allclose(m["amplitude"], 0.6, atol=0.004)
    # the plateau's greenest date lies half-way between the two transitions (± one date)
    assert np.all(np.abs(m["peak_day"] - (sos + eos) / 2) <= 5)
    assert m["sos_observed"].all() and m["eos_observed"].all() and m["peak_observed"].all()
    np.testing.assert_array_equal(m["n_cycles"], 1)
    for i in range(3):
        exact, _ = quad(lambda t, i=i: season(t, sos[i], eos[i]) - 0.2, sos[i], eos[i])
        assert m["integral"][i] == pytest.approx(exact, rel=0.01)
        whole, _ = quad(lambda t, i=i: season(t, sos[i], eos[i]), 0.0, 360.0)
        assert m["season_integral"][i] == pytest.approx(whole, rel=0.005)
    np.testing.assert_allclose(m["observed_days"], 360.0)


def test_end_to_end_from_noisy_cloudy_looks():
    rng = np.random.default_rng(5)
    n = 300
    sos = rng.uniform(90, 150, n)
    eos = sos + rng.uniform(80, 120, n)
    y = season(DAYS[None], sos[:, None], eos[:, None]) + rng.normal(0, 0.02, (n, DAYS.size))
    clear = rng.uniform(size=y.shape) > 0.35
    z, _ = whittaker(np.where(clear, y, np.nan), clear.astype(float), DAYS)
    m = season_metrics(z, clear, DAYS, np.full(n, 20.0), np.full(n, 350.0))
    ok = m["sos_observed"] & m["eos_observed"]
    assert ok.mean() > 0.9
    assert np.percentile(np.abs(m["sos_day"] - sos)[ok], 90) < 5
    assert np.percentile(np.abs(m["eos_day"] - eos)[ok], 90) < 5
    assert (m["n_cycles"] == 1).mean() > 0.97


def test_double_cropping_counts_two_cycles():
    z = season(DAYS, 60, 130) + season(DAYS, 200, 290) - 0.2
    m = metrics(z)
    assert m["n_cycles"][0] == 2
    # start and end around the greener of the two crops
    assert np.isfinite(m["sos_day"][0]) and np.isfinite(m["eos_day"][0])


def test_mown_meadow_counts_its_regrowths_and_ignores_small_dips():
    green = 0.75
    z = np.full(DAYS.size, green)
    for cut in (150.0, 230.0):                    # two mowings: −0.3, regrowth in ~25 days
        z -= 0.3 * np.exp(-(((DAYS - cut) / 12.0) ** 2))
    z -= 0.08 * np.exp(-(((DAYS - 100.0) / 8.0) ** 2))     # a light dip: not a cycle
    z = np.where(DAYS > 300, green - 0.45 * (DAYS - 300) / 60, z)   # autumn decline
    m = metrics(z)
    # each regrowth (rise ≥ 0.15 followed by a fall ≥ 0.15) counts; the first fall, whose
    # rise came before the window, does not
    assert m["n_cycles"][0] == 2
    one_cut = np.where(DAYS > 190, green, z)
    one_cut = np.where(DAYS > 300, green - 0.45 * (DAYS - 300) / 60, one_cut)
    assert metrics(one_cut)["n_cycles"][0] == 1


def test_bare_soil_has_no_cycle_and_no_start_of_season():
    rng = np.random.default_rng(6)
    z = 0.18 + 0.03 * np.sin(DAYS / 30.0) + rng.normal(0, 0.005, DAYS.size)
    m = metrics(z)
    assert m["n_cycles"][0] == 0
    assert m["amplitude"][0] < 0.15
    assert np.isnan(m["sos_day"][0]) and not m["sos_observed"][0]
    assert np.isnan(m["eos_day"][0]) and np.isnan(m["integral"][0])
    assert m["peak_observed"][0]                      # the (low) peak itself was seen


def test_looks_beginning_after_the_start_of_season_give_no_start():
    z = season(DAYS, 120, 240)
    observed = DAYS >= 125                           # first look when the crop is half up
    m = metrics(z, observed, start=30.0, end=330.0)
    assert np.isnan(m["sos_day"][0]) and not m["sos_observed"][0]
    assert np.isnan(m["integral"][0])
    # what was seen is still reported
    assert m["peak_observed"][0] and m["peak_value"][0] == pytest.approx(0.8, abs=0.01)
    assert m["eos_day"][0] == pytest.approx(240, abs=0.5) and m["eos_observed"][0]
    assert m["observed_days"][0] == pytest.approx(330 - 125)
    # the same curve seen from a bare seedbed does get its start
    early = metrics(z, DAYS >= 60, start=30.0, end=330.0)
    assert early["sos_day"][0] == pytest.approx(120, abs=0.5) and early["sos_observed"][0]


def test_window_starting_mid_rise_gives_no_start():
    z = season(DAYS, 120, 240)
    m = metrics(z, start=125.0, end=330.0)           # looks before the window show the rise
    assert np.isnan(m["sos_day"][0]) and not m["sos_observed"][0]
    assert m["eos_day"][0] == pytest.approx(240, abs=0.5)


def test_harvest_after_the_window_gives_no_end():
    z = season(DAYS, 120, 240)
    m = metrics(z, end=200.0)
    assert np.isnan(m["eos_day"][0]) and not m["eos_observed"][0]
    assert m["sos_day"][0] == pytest.approx(120, abs=0.5)
    assert m["n_cycles"][0] == 0                     # the fall is not in the window


def test_crossing_inside_a_long_cloudy_gap_is_estimated_but_not_observed():
    z = season(DAYS, 120, 240)
    observed = (DAYS < 95) | (DAYS > 145)            # looks on days 90 and 150: a 60-day gap
    m = metrics(z, observed)
    assert np.isfinite(m["sos_day"][0]) and not m["sos_observed"][0]
    assert m["eos_observed"][0]
    # the gap is not counted as observed season: 360 days minus the 60-day gap
    assert m["observed_days"][0] == pytest.approx(360 - 60)


def test_season_window_outside_the_dates_is_all_undetermined():
    z = season(DAYS[None], 120.0, 240.0).repeat(3, axis=0)
    z[2] = np.nan                                    # a parcel the smoother left empty
    start = np.array([400.0, np.nan, 0.0])
    end = np.array([600.0, np.nan, 360.0])
    m = season_metrics(z, np.ones(z.shape, bool), DAYS, start, end)
    for key in ("peak_day", "peak_value", "sos_day", "eos_day", "amplitude", "integral",
                "season_integral"):
        assert np.isnan(m[key]).all(), key
    for key in ("peak_observed", "sos_observed", "eos_observed"):
        assert not m[key].any(), key
    np.testing.assert_array_equal(m["n_cycles"], 0)
    np.testing.assert_array_equal(m["observed_days"][:2], 0)


def test_observed_days_and_season_integral_by_hand():
    days = np.array([0.0, 10.0, 20.0, 30.0])
    z = np.array([[0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 1.0, 0.0]])
    obs = np.array([[True, True, True, True], [True, False, False, True]])
    m = season_metrics(z, obs, days, np.array([5.0, 5.0]), np.array([25.0, 25.0]),
                       max_gap_days=25.0)
    assert m["observed_days"][0] == pytest.approx(20.0)
    assert m["season_integral"][0] == pytest.approx(10.0)
    # looks 30 days apart: nothing in between is supported
    assert m["observed_days"][1] == 0 and np.isnan(m["season_integral"][1])
    wide = season_metrics(z, obs, days, np.array([5.0, 5.0]), np.array([25.0, 25.0]),
                          max_gap_days=30.0)
    # ∫_5^25 of the 0 → 1 → 1 → 0 polyline = 0.75·5 + 10 + 0.75·5
    assert wide["season_integral"][1] == pytest.approx(17.5)


@pytest.mark.parametrize("kw", [{"amplitude_fraction": 1.5}, {"min_amplitude": 0.0},
                                {"max_gap_days": -1.0}, {"swap": True}])
def test_bad_input_raises_input_error(kw):
    z = np.zeros((2, DAYS.size))
    start, end = np.array([0.0, 10.0]), np.array([100.0, 200.0])
    if kw.pop("swap", False):
        start, end = end, start
    with pytest.raises(InputError):
        season_metrics(z, np.ones(z.shape, bool), DAYS, start, end, **kw)


@pytest.mark.realdata
def test_start_of_season_follows_recorded_planting_dates_of_kenyan_maize(shared_data):
    """Kenya 2019 long rains, 164 maize fields with a *recorded* planting date. PROVENANCE.md:
    maize NDVI rises 30–60 days after planting. Measured: sos − planting median 33 days
    (IQR 24–46), |deviation from the median| median 10.5 days, correlation with the planting
    day 0.37; fields with an *estimated* planting date lag ~64 days (estimates are early)."""
    pd = pytest.importorskip("pandas")
    gpd = pytest.importorskip("geopandas")
    root = shared_data / "worldcrops-kenya-2019"
    d = pd.read_csv(root / "l2a_stats.csv.gz",
                    usecols=["field_id", "date", "ndvi_mean", "cloud_max"])
    y = d.pivot(index="field_id", columns="date", values="ndvi_mean")
    clear = d.pivot(index="field_id", columns="date", values="cloud_max").to_numpy() == 0
    days = (pd.to_datetime(y.columns) - pd.Timestamp("2019-01-01")).days.to_numpy(float)
    fields = gpd.read_file(root / "fields.geojson").set_index("field_id").loc[y.index]
    planted = (pd.to_datetime(fields["planting_date"]) - pd.Timestamp("2019-01-01")).dt.days
    maize = (fields["crop"] == "maize").to_numpy()
    recorded = maize & ~fields["planting_date_estimated"].to_numpy(bool)
    estimated = maize & fields["planting_date_estimated"].to_numpy(bool)

    z, _ = whittaker(np.where(clear, y.to_numpy(float), np.nan), clear.astype(float), days)
    n = len(y)
    # one calendar window for the long-rains maize: mid-January to mid-September
    m = season_metrics(z, clear, days, np.full(n, 15.0), np.full(n, 258.0))
    lag = (m["sos_day"] - planted.to_numpy(float))
    rec = lag[recorded]
    assert m["sos_observed"][recorded].mean() > 0.9
    assert 25 <= np.nanmedian(rec) <= 60                         # inside the 30–60-day rise
    assert np.nanmedian(np.abs(rec - 45)) <= 21                  # within 3 weeks of mid-rise
    assert np.nanmedian(np.abs(rec - np.nanmedian(rec))) <= 14
    ok = np.isfinite(rec)
    assert np.corrcoef(m["sos_day"][recorded][ok], planted[recorded][ok])[0, 1] > 0.2
    assert np.nanmedian(lag[estimated]) > np.nanmedian(rec) + 14  # estimated dates run early
