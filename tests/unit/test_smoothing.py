"""Whittaker smoother: against a direct sparse solve, known curves, outliers, real series."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from agri_3s.errors import InputError
from agri_3s.timeseries.smoothing import DEFAULT_LAMBDA, whittaker


def _reference(y: np.ndarray, w: np.ndarray, days: np.ndarray, lam: float) -> np.ndarray:
    """(W + λ DᵀD) z = W y with D built independently: second divided differences
    f[t0, t1, t2] = ((z2 − z1)/(t2 − t1) − (z1 − z0)/(t1 − t0)) / (t2 − t0)."""
    t = days.size
    h = np.diff(days)
    rows, cols, vals = [], [], []
    for i in range(t - 2):
        span = days[i + 2] - days[i]
        for j, v in ((i, 1 / (h[i] * span)), (i + 1, -(1 / h[i] + 1 / h[i + 1]) / span),
                     (i + 2, 1 / (h[i + 1] * span))):
            rows.append(i)
            cols.append(j)
            vals.append(v)
    d = sp.csr_matrix((vals, (rows, cols)), shape=(t - 2, t))
    a = sp.diags(w) + lam * (d.T @ d)
    return spsolve(a.tocsc(), w * y)


def _logistic_season(days, sos, eos, base=0.2, amp=0.6, k=4.394 / 30):
    """Double logistic: rises (10 % → 90 %) in 30 days around sos, falls likewise around eos."""
    return base + amp * (1 / (1 + np.exp(-k * (days - sos))) - 1 / (1 + np.exp(-k * (days - eos))))


@pytest.mark.parametrize("lam", [10.0, 1e3, DEFAULT_LAMBDA, 1e6])
def test_equals_direct_sparse_solve_with_gaps_and_uneven_dates(lam):
    rng = np.random.default_rng(int(lam))
    for t in (3, 4, 7, 45):
        days = np.cumsum(rng.uniform(1, 30, t)) + 700.0
        n = 12
        y = rng.uniform(-0.1, 0.9, (n, t))
        w = rng.uniform(0, 1, (n, t))
        w[rng.uniform(size=(n, t)) < 0.4] = 0.0
        w[:, :3] = np.maximum(w[:, :3], 0.1)          # at least 3 looks in every parcel
        y[w == 0] = np.nan
        if t > 3:
            w[:, -1] = 0.0                             # a cloudy last date in every parcel
        z, _ = whittaker(y, w, days, lam=lam, robust=False, chunk=5)
        for k in range(n):
            ref = _reference(np.nan_to_num(y[k]), w[k], days, lam)
            last = np.flatnonzero(w[k] > 0)[-1]
            np.testing.assert_allclose(z[k, :last + 1], ref[:last + 1], atol=1e-6, rtol=1e-5)
            # after the last look the curve is held, not extrapolated
            np.testing.assert_allclose(z[k, last:], ref[last], atol=1e-6, rtol=1e-5)


def test_leave_one_out_residuals_equal_refits_without_the_look():
    """The robust step's residuals against brute force: each look's residual from a dense
    refit with that look's weight set to 0 (the hat-matrix identity is not assumed)."""
    from agri_3s.timeseries import banded
    from agri_3s.timeseries.smoothing import _penalty_bands

    rng = np.random.default_rng(5)
    t, n, lam = 9, 4, 1e3
    days = np.cumsum(rng.uniform(3, 20, t))
    y = rng.uniform(0.1, 0.9, (t, n))
    w = rng.uniform(0.2, 1, (t, n))
    w[rng.uniform(size=(t, n)) < 0.25] = 0.0
    inv_d, l1, l2, z, loo = (np.empty((t, n)) for _ in range(5))
    banded.factor_solve(w, w * y, *_penalty_bands(days, lam), inv_d, l1, l2, z)
    banded.loo_residuals(w, y, z, inv_d, l1, l2, loo)
    for k in range(n):
        np.testing.assert_allclose(z[:, k], _reference(y[:, k], w[:, k], days, lam), rtol=1e-9)
        for i in np.flatnonzero(w[:, k] > 0):
            held_out = w[:, k].copy()
            held_out[i] = 0.0
            refit = _reference(y[:, k], held_out, days, lam)
            assert loo[i, k] == pytest.approx(y[i, k] - refit[i], rel=1e-7, abs=1e-10)


def test_recovers_a_known_curve_from_noisy_gappy_samples():
    rng = np.random.default_rng(1)
    days = np.cumsum(rng.choice([5.0, 5.0, 10.0], 70))
    truth = _logistic_season(days[None], rng.uniform(80, 140, (300, 1)),
                             rng.uniform(220, 260, (300, 1)))
    noise = 0.03
    y = truth + rng.normal(0, noise, truth.shape)
    w = (rng.uniform(size=y.shape) > 0.4).astype(float)
    y[w == 0] = np.nan
    for robust in (False, True):
        z, sd = whittaker(y, w, days, robust=robust)
        err = z - truth                                    # at every date, gaps included
        assert np.median(np.abs(err)) < 0.8 * noise * 0.6745, robust   # raw |noise| median
        assert np.sqrt(np.mean(err ** 2)) < 0.95 * noise, robust
        # residual_sd is 1.4826 × MAD of the residuals at the looks (numpy's median here)
        r = np.where(w > 0, y - z, np.nan)
        mad = np.nanmedian(np.abs(r - np.nanmedian(r, axis=1, keepdims=True)), axis=1)
        np.testing.assert_allclose(sd, 1.4826 * mad, rtol=1e-4, atol=1e-6)
        # … a little below σ: the curve absorbs part of the noise
        assert 0.5 * noise < np.median(sd) < noise


def test_zero_weight_dates_are_interpolated():
    days = np.arange(0.0, 200.0, 5.0)
    truth = 0.3 + 0.4 * np.sin(days / 40.0)
    w = np.ones_like(days)
    w[14:19] = 0.0                                         # a 25-day cloudy gap
    y = np.where(w > 0, truth, 0.0)                       # garbage under weight 0 is ignored
    z, _ = whittaker(y[None], w[None], days, robust=False)
    assert np.abs(z[0, 14:19] - truth[14:19]).max() < 0.01


def test_single_low_outlier_is_pulled_back_when_robust():
    rng = np.random.default_rng(2)
    days = np.arange(0.0, 300.0, 5.0)
    truth = _logistic_season(days, 90, 230)
    y = truth + rng.normal(0, 0.01, days.size)
    y[30] -= 0.4                                           # undetected cloud at the peak
    w = np.ones_like(y)
    plain, _ = whittaker(y[None], w[None], days, robust=False)
    env, sd = whittaker(y[None], w[None], days, robust=True)
    assert truth[30] - plain[0, 30] > 0.05                 # the plain fit dips
    assert abs(env[0, 30] - truth[30]) < 0.02              # the envelope does not
    assert abs(env[0, 30] - truth[30]) < 0.3 * abs(plain[0, 30] - truth[30])
    assert sd[0] < 0.02                                    # the dip does not inflate the spread


def test_keeps_emergence_and_harvest_and_invents_none():
    """A 0.6 NDVI rise / fall within 30 days is kept (its half-way day within a few days);
    a flat series with cloud dips does not get a season."""
    rng = np.random.default_rng(3)
    days = np.arange(0.0, 365.0, 5.0)
    n = 400
    sos = rng.uniform(90, 150, n)
    truth = _logistic_season(days[None], sos[:, None], sos[:, None] + 100)
    y = truth + rng.normal(0, 0.02, truth.shape)
    dips = rng.uniform(size=y.shape) < 0.08
    y[dips] -= rng.uniform(0.1, 0.4, dips.sum())
    w = (rng.uniform(size=y.shape) > 0.35).astype(float)
    z, _ = whittaker(y, w, days)
    fine = np.arange(0.0, 365.0, 0.5)
    half_day = np.array([fine[np.argmax(np.interp(fine, days, row) >= 0.5)] for row in z])
    err = np.abs(half_day - sos)
    assert np.percentile(err, 90) < 4.0, np.percentile(err, 90)
    assert np.median(z.max(axis=1) - truth.max(axis=1)) > -0.03   # peak not flattened

    flat = 0.25 + rng.normal(0, 0.02, (n, days.size))
    flat[dips] -= rng.uniform(0.1, 0.4, dips.sum())
    zf, _ = whittaker(flat, w, days)
    assert np.percentile(zf.max(axis=1) - zf.min(axis=1), 95) < 0.12
    assert np.percentile(zf.max(axis=1) - zf.min(axis=1), 50) < 0.06


def test_parcels_without_enough_looks_are_nan_not_an_error():
    days = np.arange(10.0)
    y = np.full((4, 10), 0.5)
    w = np.ones((4, 10))
    y[0] = np.nan                        # no looks at all
    w[1, 2:] = 0.0                       # two looks
    w[2] = np.nan                        # NaN weights count as 0
    z, sd = whittaker(y, w, days)
    assert np.isnan(z[:3]).all() and np.isnan(sd[:3]).all()
    np.testing.assert_allclose(z[3], 0.5, atol=1e-6)
    assert z.dtype == np.float32 and sd.dtype == np.float32
    z0, sd0 = whittaker(np.empty((0, 10)), np.empty((0, 10)), days)
    assert z0.shape == (0, 10) and sd0.shape == (0,)


def test_lambda_means_the_same_at_any_revisit():
    """Divided differences: a 5-day and a 10-day sampling of one curve are smoothed alike,
    where a unit-spacing penalty would smooth the 10-day series 2⁴ = 16 times harder."""
    fine = np.arange(0.0, 400.0, 5.0)
    truth = 0.2 + 0.6 * np.exp(-(((fine - 150) / 25.0) ** 2))
    z5, _ = whittaker(truth[None], np.ones((1, fine.size)), fine, robust=False)
    z10, _ = whittaker(truth[None, ::2], np.ones((1, fine.size // 2)), fine[::2], robust=False)
    unit, _ = whittaker(truth[None, ::2], np.ones((1, fine.size // 2)), fine[::2],
                        lam=16 * DEFAULT_LAMBDA, robust=False)
    shrink5, shrink10, shrink_unit = (truth.max() - z.max() for z in (z5, z10, unit))
    assert shrink5 > 0.01                                    # λ does smooth this peak …
    assert abs(shrink5 - shrink10) < 0.2 * shrink5           # … by the same amount
    assert shrink_unit > 3 * shrink5


@pytest.mark.parametrize("bad", ["days", "shape", "weights", "lam"])
def test_bad_input_raises_input_error(bad):
    days = np.arange(5.0)
    y = np.zeros((2, 5))
    w = np.ones((2, 5))
    kwargs = {}
    if bad == "days":
        days = np.array([0.0, 1.0, 1.0, 2.0, 3.0])
    elif bad == "shape":
        w = np.ones((2, 4))
    elif bad == "weights":
        w[0, 0] = -1.0
    else:
        kwargs["lam"] = -5.0
    with pytest.raises(InputError):
        whittaker(y, w, days, **kwargs)


def _kenya(shared_data):
    pd = pytest.importorskip("pandas")
    d = pd.read_csv(shared_data / "worldcrops-kenya-2019" / "l2a_stats.csv.gz",
                    usecols=["field_id", "date", "ndvi_mean", "cloud_max"])
    y = d.pivot(index="field_id", columns="date", values="ndvi_mean")
    clear = d.pivot(index="field_id", columns="date", values="cloud_max").to_numpy() == 0
    days = (pd.to_datetime(y.columns) - pd.Timestamp("2019-01-01")).days.to_numpy(float)
    return y.index.to_numpy(), y.to_numpy(float), clear, days


@pytest.mark.realdata
def test_default_lambda_is_cross_validated_on_real_kenya_series(shared_data):
    """5-fold hold-out of clear looks on 319 real fields: the default λ is within 2 % of the
    best RMSE over a grid 100× wide."""
    _, y, clear, days = _kenya(shared_data)
    rng = np.random.default_rng(42)
    fold = np.where(clear, rng.integers(0, 5, clear.shape), -1)

    def cv_rmse(lam, robust=True):
        err = []
        for k in range(5):
            z, _ = whittaker(y, (clear & (fold != k)).astype(float), days, lam=lam,
                             robust=robust)
            err.append((y - z)[fold == k])
        return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))

    grid = {lam: cv_rmse(lam) for lam in (1e3, 3e3, DEFAULT_LAMBDA, 3e4, 1e5)}
    assert grid[DEFAULT_LAMBDA] <= 1.02 * min(grid.values()), grid
    assert grid[1e5] > 1.05 * grid[DEFAULT_LAMBDA]            # smoother is worse
    # the envelope costs nothing on these clean looks (it pays off on undetected clouds)
    assert grid[DEFAULT_LAMBDA] < 1.01 * cv_rmse(DEFAULT_LAMBDA, robust=False)


def test_blocks_on_threads_equal_one_block_at_a_time():
    """Blocks of parcels run on two threads give exactly the single-threaded curves (each
    block writes its own rows only); the reference is one block holding every parcel."""
    import dask

    rng = np.random.default_rng(3)
    days = np.cumsum(rng.uniform(3, 12, 40))
    y = 0.2 + 0.6 * np.exp(-((days - days.mean()) / 40) ** 2) + rng.normal(0, 0.03, (1000, 40))
    w = (rng.random((1000, 40)) > 0.4).astype(np.float32)
    whole = whittaker(y, w, days, chunk=1000)
    with dask.config.set(num_workers=2):
        blocks = whittaker(y, w, days, chunk=64)
    np.testing.assert_array_equal(blocks[0], whole[0])
    np.testing.assert_array_equal(blocks[1], whole[1])
