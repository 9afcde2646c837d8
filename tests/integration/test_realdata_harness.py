"""The real-data harness (tests/realdata.py) against independent truth: the Flanders label
raster and band files, the Slovenia NDVI tif, hand counts of the declaration split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from scipy import ndimage

from tests.realdata import (
    FLANDERS_CALENDAR,
    FLANDERS_CHIP,
    FLANDERS_CT,
    FLANDERS_REGION,
    FLANDERS_SEASONS,
    SLOVENIA_CHIP,
    SLOVENIA_NDVI_MAX_ERROR,
    SLOVENIA_RABA,
    SLOVENIA_RED_DN,
    flanders_archive,
    flanders_batch,
    flanders_declarations,
    slovenia_archive,
    slovenia_batch,
    slovenia_grid,
)

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def flanders(shared_data, tmp_path_factory):
    if not (shared_data / FLANDERS_CHIP).is_dir():
        pytest.skip(f"{shared_data / FLANDERS_CHIP} is absent")
    return shared_data, tmp_path_factory.mktemp("flanders")


@pytest.fixture(scope="module")
def slovenia(shared_data, tmp_path_factory):
    if not (shared_data / SLOVENIA_CHIP).is_dir():
        pytest.skip(f"{shared_data / SLOVENIA_CHIP} is absent")
    return shared_data, tmp_path_factory.mktemp("slovenia")


@pytest.fixture(scope="module")
def flanders_all(flanders):
    return flanders_batch(*flanders, crop=None)


def _read(path, band=None):
    with rasterio.open(path) as ds:
        return (ds.read() if band is None else ds.read(band)), ds.transform, list(ds.descriptions)


# ---------------------------------------------------------------------------------- Flanders

def test_blocks_lie_inside_one_crop_class_pixel_by_pixel(flanders, flanders_all):
    shared, _ = flanders
    ct, transform, _ = _read(shared / FLANDERS_CHIP / "labels_10m_LC_CT.tif", 2)
    parcels, series, truth = flanders_all
    blocks = parcels[~parcels["parcel_id"].str.startswith("lpis-")].reset_index(drop=True)
    code = truth.set_index("parcel_id").loc[blocks["parcel_id"], "label_code"].to_numpy()
    # blocks do not overlap: burn each one's number (centre-in-pixel) onto the label grid
    burnt = rasterize(zip(blocks.geometry, range(1, len(blocks) + 1)), out_shape=ct.shape,
                      transform=transform, fill=0, dtype="int32")
    for i, (c, pid) in enumerate(zip(code, blocks["parcel_id"]), start=1):
        under = ct[burnt == i]
        assert under.size >= 12 and (under == c).all(), (pid, np.unique(under))
        # whole pixels only: the polygon's area is its pixel count, which the engine measured
        assert blocks.geometry[i - 1].area == pytest.approx(100.0 * under.size)
        assert series.sel(parcel=i - 1)["full_pixels"] == under.size
    # found crop = the label class
    assert (truth["crop"].iloc[:len(blocks)].to_numpy() == [FLANDERS_CT[c] for c in code]).all()


def test_block_counts_equal_connected_pieces_of_the_label_raster(flanders, flanders_all):
    """Independent count: per 8 × 8 px cell and class, the 4-connected pixel groups of ≥ 12."""
    shared, _ = flanders
    ct, _, _ = _read(shared / FLANDERS_CHIP / "labels_10m_LC_CT.tif", 2)
    expected = dict.fromkeys(FLANDERS_CT.values(), 0)
    for r in range(0, 64, 8):
        for c in range(0, 64, 8):
            cell = ct[r:r + 8, c:c + 8]
            for code, crop in FLANDERS_CT.items():
                lab, n = ndimage.label(cell == code)
                expected[crop] += int((np.bincount(lab.ravel())[1:] >= 12).sum())
    _, _, truth = flanders_all
    got = truth[truth["parcel_id"].str.startswith("fl-")].groupby("crop").size().to_dict()
    assert got == expected
    assert expected == {"maize": 30, "grassland": 20, "legumes": 4, "cabbage": 1, "potato": 1}


def test_clear_date_means_equal_numpy_over_whole_pixels(flanders, flanders_all):
    """Series mean and median on dates when a block and its cloud-dilation halo are all SCL 4/5
    equal numpy over the block's pixels, straight from the chip's band files."""
    shared, _ = flanders
    src = shared / FLANDERS_CHIP
    red, transform, stamps = _read(src / "s2_l2a_B04_10m.tif")
    nir, _, _ = _read(src / "s2_l2a_B08_10m.tif")
    scl, _, _ = _read(src / "s2_l2a_SCL_20m.tif")
    ndvi = (nir.astype(np.float64) - red) / (nir.astype(np.float64) + red)
    parcels, series, _ = flanders_all
    assert list(pd.to_datetime(series["time"].values).strftime("%Y-%m-%dT%H:%M:%S")) == stamps
    checked = 0
    for i in np.flatnonzero(series["pixel_rule"].values == "whole_pixels")[::3]:
        geom = parcels.geometry[i]
        if geom.area > 100 * 64:  # (the LPIS parcel is not pixel-aligned)
            continue
        mask = rasterize([geom], out_shape=(64, 64), transform=transform, fill=0) == 1
        rows, cols = np.nonzero(mask)
        # SCL pixels of the block ± 1 (the 2 px dilation at 10 m is 1 px at 20 m)
        r0, r1 = max(rows.min() // 2 - 1, 0), rows.max() // 2 + 2
        c0, c1 = max(cols.min() // 2 - 1, 0), cols.max() // 2 + 2
        clear = np.isin(scl[:, r0:r1, c0:c1], (4, 5)).all(axis=(1, 2))
        for t in np.flatnonzero(clear)[::4]:
            values = ndvi[t][mask]
            s = series.isel(parcel=i, time=t)
            assert float(s["clear_fraction"]) == 1.0
            assert float(s["ndvi_mean"]) == pytest.approx(values.mean(), abs=1e-6)
            assert float(s["ndvi_p50"]) == pytest.approx(
                np.quantile(values, 0.5, method="inverted_cdf"), abs=1e-6)
            checked += 1
    assert checked >= 30


def test_declaration_split_is_deterministic_and_every_parcel_appears_once(flanders,
                                                                          flanders_all):
    shared, workdir = flanders
    parcels, series, truth = flanders_all
    assert parcels["parcel_id"].is_unique and len(parcels) == 57  # 56 blocks + LPIS
    assert (series["parcel_id"].values == parcels["parcel_id"].to_numpy()).all()
    assert (truth["parcel_id"] == parcels["parcel_id"]).all()
    assert (truth["declared_crop"] == parcels["crop"]).all()
    assert (truth["declaration_true"] == (truth["crop"] == truth["declared_crop"])).all()
    assert parcels.crs.to_epsg() == 32631 and (parcels["validity"] == "ok").all()
    # hand counts from the shares: maize 30 → 10 wheat; grass 20 → 10 / 10; others 6 → 3 / 3
    counts = truth.groupby(["crop", "declared_crop"]).size()
    assert counts[("maize", "winter_wheat")] == 10 and counts[("maize", "maize")] == 21
    assert counts[("grassland", "maize")] == 10 and counts[("grassland", "winter_wheat")] == 10
    others = truth[truth["crop"].isin(["legumes", "cabbage", "potato"])]
    assert (others["declared_crop"] == "maize").sum() == 3 and others["declaration_true"].sum() == 3
    # the same again, and a different seed changes the split but not the shares
    again = flanders_batch(shared, workdir, crop=None)[2]
    assert again.equals(truth)
    blocks = truth["parcel_id"].str.startswith("fl-")
    found, declared = truth.loc[blocks, "crop"], truth.loc[blocks, "declared_crop"].to_numpy()
    other = flanders_declarations(found, seed=7)
    assert (other != declared).any()
    for crop in ("maize", "grassland"):
        mine = found.to_numpy() == crop
        assert sorted(other[mine]) == sorted(declared[mine])
    pooled = found.isin(["legumes", "cabbage", "potato"]).to_numpy()
    assert (other[pooled] == "maize").sum() == 3
    # the two seasons' batches: every parcel once in each; together they are the whole batch
    ids = {}
    for crop in FLANDERS_SEASONS:
        p, s, t = flanders_batch(shared, workdir, crop)
        assert p["parcel_id"].is_unique and (s["parcel_id"].values == p["parcel_id"]).all()
        assert set(t["declared_crop"]) <= {crop, "legumes", "cabbage", "potato"}
        ids[crop] = set(p["parcel_id"])
    assert ids["maize"] | ids["winter_wheat"] == set(parcels["parcel_id"])
    shared_ids = ids["maize"] & ids["winter_wheat"]
    assert set(truth.loc[truth["parcel_id"].isin(shared_ids), "declared_crop"]) <= {
        "legumes", "cabbage", "potato"}


def test_imagery_from_drops_the_earlier_dates_only(flanders, flanders_all):
    shared, workdir = flanders
    archive = flanders_archive(shared, workdir, imagery_from="2018-01-01")
    assert min(p.name for p in archive.iterdir() if p.is_dir()) >= "2018-01-01"
    p, s, t = flanders_batch(shared, workdir, "winter_wheat", imagery_from="2018-01-01")
    full = flanders_all[1]
    assert s.sizes["time"] == 91 and pd.Timestamp(s["time"].values[0]) >= pd.Timestamp("2018")
    sub = full.sel(time=s["time"].values, parcel=pd.Index(full["parcel_id"].values)
                   .get_indexer(p["parcel_id"]))
    np.testing.assert_array_equal(s["ndvi_mean"].values, sub["ndvi_mean"].values)


def test_flanders_calendar_reads_with_both_crops():
    from agri_3s.decisions.calendar import calendar_for, load_calendars
    from agri_3s.types import Season

    calendars = load_calendars(FLANDERS_CALENDAR)
    wheat = calendar_for(calendars, "winter_wheat", FLANDERS_REGION)
    season = Season.parse(FLANDERS_SEASONS["winter_wheat"])
    assert wheat.region == FLANDERS_REGION
    assert [str(d) for d in wheat.sowing.within(season)] == ["2017-10-15", "2017-11-30"]
    assert [str(d) for d in wheat.harvest.within(season)] == ["2018-07-15", "2018-08-15"]
    assert calendar_for(calendars, "maize", FLANDERS_REGION).peak_ndvi_min == 0.60


# ---------------------------------------------------------------------------------- Slovenia

def test_slovenia_grid_and_archive_reproduce_the_ndvi_tif(slovenia):
    shared, workdir = slovenia
    src = shared / SLOVENIA_CHIP
    transform, crs, shape = slovenia_grid(shared)
    ndvi, tif_transform, _ = _read(src / "ndvi_68dates.tif")
    assert transform.almost_equals(tif_transform) and ndvi.shape[1:] == shape
    assert transform.a == pytest.approx(9.9948, abs=1e-4)
    assert -transform.e == pytest.approx(9.9974, abs=1e-4)
    stamps = json.loads((src / "timestamps.json").read_text())
    archive = slovenia_archive(shared, workdir)
    folders = sorted(p.name for p in archive.iterdir() if p.is_dir())
    assert len(folders) == 67 and [f for f in folders if f.startswith("2015-12-08")] == [
        "2015-12-08T10:04:09"]
    worst = 0.0
    for name in folders:
        k = stamps.index(name)
        red, t, _ = _read(archive / name / "B04.tif", 1)
        nir, _, _ = _read(archive / name / "B08.tif", 1)
        assert t.almost_equals(transform) and (red == SLOVENIA_RED_DN).all()
        rebuilt = (nir.astype(np.float32) - red) / (nir.astype(np.float32) + red)
        worst = max(worst, float(np.abs(rebuilt - ndvi[k]).max()))
    assert 1e-5 < worst <= SLOVENIA_NDVI_MAX_ERROR


def test_slovenia_series_on_clear_dates_equal_the_ndvi_tif(slovenia):
    """On fully clear dates (CLM all 0) a polygon's series mean is the NDVI tif's mean over its
    whole pixels (pixels whose area lies inside the polygon, by shapely, to 1e-6 as the
    engine), within the DN rounding."""
    shared, workdir = slovenia
    src = shared / SLOVENIA_CHIP
    ndvi, transform, stamps = _read(src / "ndvi_68dates.tif")
    clm, _, _ = _read(src / "clm_68dates.tif")
    parcels, series, truth = slovenia_batch(shared, workdir, "maize")
    times = pd.to_datetime(series["time"].values).strftime("%Y-%m-%dT%H:%M:%S")
    clear = [(stamps.index(s), j) for j, s in enumerate(times) if not clm[stamps.index(s)].any()]
    assert len(clear) >= 25
    rows, cols = np.mgrid[0:101, 0:100]
    x0, y0 = transform.c + cols * transform.a, transform.f + rows * transform.e
    boxes = shapely.box(x0, y0 + transform.e, x0 + transform.a, y0)
    checked = 0
    for i in np.flatnonzero(series["pixel_rule"].values == "whole_pixels"):
        share = shapely.area(shapely.intersection(parcels.geometry[i], boxes)) / shapely.area(boxes)
        inside = share >= 1 - 1e-6
        assert inside.sum() == series["full_pixels"].values[i]
        for k, j in clear:
            got = float(series["ndvi_mean"].values[i, j])
            assert got == pytest.approx(ndvi[k][inside].mean(), abs=SLOVENIA_NDVI_MAX_ERROR)
            checked += 1
    assert checked > 500


def test_slovenia_batch_declares_every_kept_polygon_falsely(slovenia):
    shared, workdir = slovenia
    parcels, series, truth = slovenia_batch(shared, workdir, None)
    assert parcels["parcel_id"].is_unique and (series["parcel_id"].values == parcels["parcel_id"]).all()
    assert not truth["declaration_true"].any()
    assert set(truth["crop"]) <= set(SLOVENIA_RABA.values()) and 1100 not in set(truth["label_code"])
    assert (series["full_pixels"].values >= 4).all() and parcels.crs.to_epsg() == 32633
    # each polygon once per season, declared maize and winter wheat
    per = truth.groupby(["label_code", "declared_crop"]).size().unstack()
    assert (per["maize"] == per["winter_wheat"]).all()
    assert per["maize"].to_dict() == {1300: 15, 1410: 2, 1500: 4, 1600: 3, 2000: 8, 3000: 2}
    maize = slovenia_batch(shared, workdir, "maize")[0]
    assert len(maize) == 34 and (maize["crop"] == "maize").all()
    # clipped to the chip: no parcel reaches beyond the imagery
    transform, _, _ = slovenia_grid(shared)
    assert parcels.total_bounds[0] >= transform.c - 1e-6
