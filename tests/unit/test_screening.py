"""The look screen: SCL's verdict first, then looks that drop and recover within days."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from agri_3s.sources.base import INVALID_SCL
from agri_3s.timeseries.masking import clear_mask
from agri_3s.timeseries.screening import (
    BRIGHT,
    CLEAR,
    MASKED,
    NDVI_DIP,
    NO_DATA,
    screen_looks,
)


def _series(ndvi, clear=None, blue=None, every="5D", weight=10.0):
    ndvi = np.atleast_2d(np.asarray(ndvi, float))
    n, t = ndvi.shape
    data = {"ndvi_mean": (("parcel", "time"), ndvi),
            "clear_fraction": (("parcel", "time"),
                               np.ones_like(ndvi) if clear is None else np.atleast_2d(clear))}
    if blue is not None:
        data["blue_mean"] = (("parcel", "time"), np.atleast_2d(np.asarray(blue, float)))
    return xr.Dataset(data, coords={"time": pd.date_range("2025-05-01", periods=t, freq=every),
                                    "weight_sum": ("parcel", np.full(n, weight))})


def test_snow_and_unclassified_are_not_clear_ground():
    assert 11 in INVALID_SCL and 7 in INVALID_SCL and 2 not in INVALID_SCL
    scl = np.array([[4, 5, 11, 7, 2, 6]], np.uint8)
    assert clear_mask(scl, dilation_px=0).tolist() == [[True, True, False, False, True, True]]


def test_a_drop_that_recovers_is_a_cloud_a_drop_that_stays_is_not():
    flags = screen_looks(_series([
        [0.80, 0.81, 0.45, 0.80, 0.82, 0.80],   # cloud SCL missed: down one look, back
        [0.80, 0.81, 0.45, 0.47, 0.55, 0.65],   # mown: stays low on the next look
        [0.80, 0.78, 0.30, 0.22, 0.20, 0.20],   # harvested
        [0.20, 0.21, 0.12, 0.20, 0.21, 0.20],   # bare soil: a 0.09 wiggle is not screened
    ]))["look_flag"].values
    assert flags[0].tolist() == [CLEAR, CLEAR, NDVI_DIP, CLEAR, CLEAR, CLEAR]
    assert (flags[1:] == CLEAR).all()


def test_neighbours_far_apart_do_not_judge_a_look():
    # 20 days on each side: too long for "recovers within days"
    flags = screen_looks(_series([[0.8, 0.45, 0.8]], every="20D"))["look_flag"].values
    assert (flags == CLEAR).all()


def test_brighter_in_blue_than_both_neighbours_is_haze():
    s = _series([[0.70, 0.70, 0.66, 0.70, 0.70]], blue=[0.04, 0.04, 0.11, 0.045, 0.04])
    assert screen_looks(s)["look_flag"].values[0].tolist() == [0, 0, BRIGHT, 0, 0]


def test_masked_and_no_data_looks_are_said_and_counted():
    s = _series([[0.8, np.nan, 0.8, 0.8]], clear=[[1.0, 0.0, 0.3, np.nan]])
    out = screen_looks(s)
    assert out["look_flag"].values[0].tolist() == [CLEAR, MASKED, MASKED, NO_DATA]
    assert out["look_flag"].attrs["flag_meanings"].split()[NDVI_DIP] == "ndvi_dip"
    assert "masked=2" in out.attrs["looks_dropped"] and "no_data=1" in out.attrs["looks_dropped"]


def test_without_blue_the_green_band_judges_brightness_and_blue_comes_first():
    s = _series([[0.70, 0.70, 0.66, 0.70, 0.70]])
    s["green_mean"] = (("parcel", "time"), [[0.06, 0.06, 0.13, 0.065, 0.06]])
    assert screen_looks(s)["look_flag"].values[0].tolist() == [0, 0, BRIGHT, 0, 0]
    s["blue_mean"] = (("parcel", "time"), [[0.04, 0.04, 0.045, 0.04, 0.04]])  # blue: no haze
    assert (screen_looks(s)["look_flag"].values == CLEAR).all()


@pytest.mark.realdata
def test_green_check_finds_what_the_blue_check_finds_on_real_kenya_series(shared_data):
    """Sentinel Hub FIS per-field means of B02 and B03 (real L2A, 319 fields, 2019): the green
    check the local engine can run flags most looks the blue check flags, and few others."""
    from tests.realdata import kenya_fields

    _, series = kenya_fields(shared_data)
    blue = screen_looks(series)["look_flag"].values == BRIGHT
    green = screen_looks(series.drop_vars("blue_mean"))["look_flag"].values == BRIGHT
    clear = screen_looks(series.drop_vars(["blue_mean", "green_mean"]))["look_flag"].values
    assert blue.sum() >= 50
    assert (green & blue).sum() / blue.sum() >= 0.75  # measured 0.83
    assert (green & ~blue).sum() <= 0.005 * (clear == CLEAR).sum()  # measured 21 of 14,116
