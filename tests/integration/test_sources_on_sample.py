"""The sample's parcels give the same NDVI series through the local folder and a STAC API
(fake, on 127.0.0.1, serving the sample's own GeoTIFFs as COG hrefs).

The Sentinel Hub Process and Statistical paths are compared on the sample in
tests/unit/test_sentinelhub.py (slow test)."""

import datetime as dt

import geopandas as gpd
import numpy as np
import pytest

from agri_3s.sources.local import LocalSource
from agri_3s.timeseries.zonal import parcel_series, pixel_weights

pytest.importorskip("pystac_client")
pytest.importorskip("odc.stac")

APRIL = (dt.date(2025, 4, 1), dt.date(2025, 4, 30))


def test_stac_and_local_give_the_same_series(sample, tmp_path):
    from agri_3s.sources.stac import StacSource
    from tests.fakes.stac_server import FakeStac, items_from_archive

    parcels = gpd.read_file(sample.parcels_wheat).iloc[:60]
    bounds, crs = tuple(parcels.total_bounds), parcels.crs
    local = LocalSource(sample.imagery).load(bounds, crs, *APRIL)
    items = [i for i in items_from_archive(sample.imagery)
             if i["properties"]["datetime"].startswith("2025-04")]
    with FakeStac(items) as api:
        stac = StacSource(api.url).load(bounds, crs, *APRIL)
        assert stac.odc.geobox.crs == local.odc.geobox.crs
        series = {name: parcel_series(cube, pixel_weights(parcels, cube.odc.geobox))
                  for name, cube in (("local", local), ("stac", stac))}
    a, b = series["local"], series["stac"]
    np.testing.assert_array_equal(a["time"].values.astype("datetime64[D]"),
                                  b["time"].values.astype("datetime64[D]"))
    assert np.isfinite(a["ndvi_mean"].values).sum() > 100
    # same UTM zone and 10 m grid origin rule; tolerance covers a grid cut differing by the
    # 30 m margin's rounding (the parcels are inside both)
    np.testing.assert_allclose(b["ndvi_mean"].values, a["ndvi_mean"].values, atol=1e-4)
    np.testing.assert_allclose(b["clear_fraction"].values, a["clear_fraction"].values, atol=1e-4)
