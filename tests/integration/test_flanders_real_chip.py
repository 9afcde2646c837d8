"""Underwriting on real Sentinel-2 L2A: the WorldCereal Flanders 2018 chip (../shared/data).

The chip's band stacks are laid out as a local archive (one folder per date, <BAND>.tif, no
metadata.json: the 2018 dates predate processing baseline 04.00, so no offset is inferred).
"""

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio

from agri_3s.sources.local import LocalSource
from agri_3s.testing.builders import write_band
from agri_3s.timeseries.zonal import parcel_series, pixel_weights
from agri_3s.units import m2_to_mu

CALENDAR = Path(__file__).resolve().parents[1] / "data" / "flanders_maize_calendar.toml"


@pytest.fixture(scope="module")
def chip(shared_data, tmp_path_factory):
    src = shared_data / "worldcereal-flanders-2018" / "2018_00002806639B424A"
    if not src.is_dir():
        pytest.skip(f"{src} is absent")
    archive = tmp_path_factory.mktemp("flanders") / "imagery"
    for band in ("B03", "B04", "B08", "SCL"):
        name = f"s2_l2a_{band}_{'20m' if band == 'SCL' else '10m'}.tif"
        with rasterio.open(src / name) as ds:
            stack, stamps = ds.read(), ds.descriptions
            for i, stamp in enumerate(stamps):
                write_band(archive / stamp / f"{band}.tif", stack[i], ds.transform, ds.crs.to_string())
    return src, archive


def test_real_lpis_maize_parcel_is_green(chip, tmp_path):
    from agri_3s.pipeline import underwrite

    src, archive = chip
    parcel = gpd.read_file(src / "lpis_sample_parcel_epsg4326.geojson")
    parcel["parcel_id"] = parcel["sampleID"]
    parcel["crop"] = "maize"
    parcel["declared_area_mu"] = round(m2_to_mu(float(parcel["area"].iloc[0])), 1)
    # grassland regions of the same chip declared as maize: must not verify as planted
    regions = gpd.read_file(src / "label_regions_from_CT_raster.gpkg")
    grass = regions[(regions["CT"] == 9120) & (regions["n_pixels"] >= 100)].to_crs(4326)
    grass = grass.assign(parcel_id="grass-" + grass["region_id"].astype(str), crop="maize",
                         declared_area_mu=m2_to_mu(grass["area_m2"]))
    parcels = pd.concat([parcel[["parcel_id", "crop", "declared_area_mu", "geometry"]],
                         grass[["parcel_id", "crop", "declared_area_mu", "geometry"]]])
    parcels = gpd.GeoDataFrame(parcels, crs=4326)
    result = underwrite(parcels, f"local:{archive}", "2018-04-01/2018-10-31", out=tmp_path,
                        calendar=CALENDAR)
    v = result.table.set_index("parcel_id")
    maize = v.loc["00002806639B424A"]
    assert maize["status"] == "green", maize["reasons_en"]
    assert maize["planted_fraction"] > 0.9
    assert pd.Timestamp("2018-05-11") < pd.Timestamp(maize["emergence_date"]) < pd.Timestamp("2018-06-30")
    assert pd.Timestamp("2018-07-01") <= pd.Timestamp(maize["peak_date"]) <= pd.Timestamp("2018-08-31")
    assert (v.loc[v.index.str.startswith("grass"), "status"] == "red").all()
    assert (tmp_path / "run.json").exists() and (tmp_path / "verdicts.csv").exists()


def test_region_means_equal_reference_on_fully_clear_dates(chip):
    """Pixel-aligned regions, no buffer, no dilation: coverage weighting is then exactly the
    reference's centre-in-polygon pixel set, so means must agree with reference_zonal_ndvi.csv."""
    src, archive = chip
    regions = gpd.read_file(src / "label_regions_from_CT_raster.gpkg")
    regions["parcel_id"] = regions["region_id"].astype(str)
    ref = pd.read_csv(src / "reference_zonal_ndvi.csv")
    cube = LocalSource(archive).load(tuple(regions.total_bounds), regions.crs,
                                     pd.Timestamp("2017-08-01").date(),
                                     pd.Timestamp("2018-12-01").date())
    assert cube.sizes["time"] == 118
    w = pixel_weights(regions, cube.odc.geobox, inward_buffer_m=0)
    assert np.array_equal(w.full_pixels, regions["n_pixels"].to_numpy())
    s = parcel_series(cube, w, dilation_px=0, min_clear_weight=0.5)
    ours = s["ndvi_mean"].to_dataframe().reset_index()
    ours["timestamp_utc"] = pd.to_datetime(ours["time"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    both = ref[ref["clear_fraction_scl45"] == 1.0].assign(
        parcel_id=lambda r: r["region_id"].astype(str)).merge(ours, on=["parcel_id", "timestamp_utc"])
    assert len(both) > 300
    np.testing.assert_allclose(both["ndvi_mean"], both["ndvi_mean_clear"], atol=1e-5)
