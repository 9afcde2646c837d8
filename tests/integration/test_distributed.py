"""The parcel-series computation on a dask.distributed LocalCluster (2 worker processes) equals
the single-process threaded run."""

import datetime as dt

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine

from agri_3s.sources.local import LocalSource
from agri_3s.testing.builders import write_acquisition
from agri_3s.timeseries.zonal import parcel_series, pixel_weights

distributed = pytest.importorskip("distributed")


def test_local_cluster_equals_threaded_run(tmp_path):
    from agri_3s.pipeline import dask_scheduler

    rng = np.random.default_rng(5)
    t10 = Affine(10, 0, 437000, 0, -10, 4142000)
    for day in ("2025-05-02", "2025-05-07", "2025-05-12", "2025-05-17"):
        refl = {b: rng.uniform(0.02, 0.5, (64, 64)).round(4) for b in ("B03", "B04", "B08")}
        scl = rng.choice(np.array([4, 4, 4, 5, 9], np.uint8), size=(32, 32))
        write_acquisition(tmp_path, day, refl, scl, t10)
    parcels = gpd.GeoDataFrame(
        {"parcel_id": [f"p{i}" for i in range(20)]},
        geometry=[shapely.box(437000 + x, 4141360 + y, 437000 + x + rng.uniform(30, 120),
                              4141360 + y + rng.uniform(30, 120))
                  for x, y in rng.uniform(0, 500, (20, 2))], crs=32650)
    src = LocalSource(tmp_path, chunk_px=16)  # many windows: parcels cross their borders
    cube = src.load(tuple(parcels.total_bounds), parcels.crs, dt.date(2025, 5, 1),
                    dt.date(2025, 5, 31))
    w = pixel_weights(parcels, cube.odc.geobox)
    threaded = parcel_series(cube, w)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    try:
        with dask_scheduler(cluster.scheduler_address) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            on_cluster = parcel_series(cube, w)
            # date by date: the windows planned in the first batch serve the later ones
            by_date = parcel_series(cube, w, dates_per_batch=1)
    finally:
        cluster.close()
    for var in threaded.data_vars:
        np.testing.assert_array_equal(on_cluster[var].values, threaded[var].values, err_msg=var)
        np.testing.assert_array_equal(by_date[var].values, threaded[var].values, err_msg=var)
    assert np.isfinite(threaded["ndvi_mean"].values).mean() > 0.3  # enough clear values to compare


def test_weights_reach_the_workers_outside_the_task_graph(tmp_path):
    """The weights (every parcel pixel) are scattered to the workers, not shipped through the
    scheduler inside the graph: a county's weights are hundreds of MB, and the window plans
    made from them stay on the workers."""
    import warnings

    import dask

    from agri_3s.pipeline import dask_scheduler

    rng = np.random.default_rng(8)
    t10 = Affine(10, 0, 437000, 0, -10, 4142000)
    for day in ("2025-05-02", "2025-05-07"):
        refl = {b: rng.uniform(0.02, 0.5, (128, 128)).round(4) for b in ("B04", "B08")}
        write_acquisition(tmp_path, day, refl, np.full((64, 64), 4, np.uint8), t10)
    xy = rng.uniform(0, 1100, (300, 2))
    parcels = gpd.GeoDataFrame(
        {"parcel_id": [f"p{i}" for i in range(300)]},
        geometry=[shapely.box(437010 + x, 4140730 + y, 437060 + x, 4140790 + y) for x, y in xy],
        crs=32650)
    cube = LocalSource(tmp_path, chunk_px=64).load(tuple(parcels.total_bounds), parcels.crs,
                                                  dt.date(2025, 5, 1), dt.date(2025, 5, 31))
    w = pixel_weights(parcels, cube.odc.geobox)
    threaded = parcel_series(cube, w, stats=("ndvi_mean",))
    entries_bytes = w.matrix.data.nbytes + w.matrix.indices.nbytes
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    try:
        with (dask_scheduler(cluster.scheduler_address),
              dask.config.set({"distributed.admin.large-graph-warning-threshold":
                               entries_bytes // 2}),
              warnings.catch_warnings(record=True) as caught):
            warnings.simplefilter("always")
            on_cluster = parcel_series(cube, w, stats=("ndvi_mean",))
    finally:
        cluster.close()
    assert entries_bytes > 50_000
    assert not [c for c in caught if "large graph" in str(c.message)], caught[0].message
    np.testing.assert_array_equal(on_cluster["ndvi_mean"].values, threaded["ndvi_mean"].values)


def test_unreachable_scheduler_is_bad_input():
    from agri_3s.errors import InputError
    from agri_3s.pipeline import dask_scheduler

    with pytest.raises(InputError, match="--scheduler"), dask_scheduler("tcp://127.0.0.1:9"):
        pass
