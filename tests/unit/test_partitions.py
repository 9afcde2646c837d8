"""Partitioned parcel series: the same numbers as the one-pass engine, checkpoints that resume
only what is missing or changed, and say why."""

import datetime as dt
import os

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine

from agri_3s import partition_job
from agri_3s.partition_job import partitioned_series
from agri_3s.partitions import cell_edges, plan_partitions
from agri_3s.sources.local import LocalSource
from agri_3s.testing.builders import write_acquisition
from agri_3s.timeseries.zonal import parcel_series, pixel_weights

T10 = Affine(10, 0, 437000, 0, -10, 4142000)
START, END = dt.date(2025, 5, 1), dt.date(2025, 5, 31)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A 128 × 128 px archive (16 px tiles) of five dates with clouds on the cell edges."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(11)
    for i, day in enumerate(("2025-05-02", "2025-05-07", "2025-05-12", "2025-05-17",
                             "2025-05-22")):
        refl = {b: rng.uniform(0.02, 0.5, (128, 128)).round(4) for b in ("B03", "B04", "B08")}
        scl = rng.choice(np.array([4, 4, 4, 5, 4, 6], np.uint8), size=(64, 64))
        if i % 2:  # a cloud band across the cells' edge at 32 px (16 at 20 m): dilation crosses it
            scl[14:17, :] = 9
            scl[:, 30:33] = 3
        write_acquisition(root, day, refl, scl, T10)
    return root


def _parcels(n: int, seed: int = 3) -> gpd.GeoDataFrame:
    """Boxes and slanted quadrilaterals of 20–150 m anywhere in the scene: many cross the edges
    of 32 px cells; a few are tiny (fewer than four whole pixels) or off the grid."""
    rng = np.random.default_rng(seed)
    x, y = 437000 + rng.uniform(20, 1200, n), 4142000 - rng.uniform(20, 1200, n)
    w, h = rng.uniform(20, 150, n), rng.uniform(20, 150, n)
    slant = rng.uniform(-15, 15, n)
    geoms = [shapely.Polygon([(a, b), (a + c, b + s), (a + c, b - d + s), (a, b - d)])
             for a, b, c, d, s in zip(x, y, w, h, slant)]
    geoms[0] = shapely.box(437000 + 5000, 4142000 - 100, 437000 + 5100, 4142000)  # off the grid
    geoms[1] = shapely.box(437311, 4141689, 437318, 4141682)  # smaller than a pixel
    return gpd.GeoDataFrame({"parcel_id": [f"p{i}" for i in range(n)],
                             "validity": ["ok"] * n}, geometry=geoms, crs=32650)


def _one_pass(archive, parcels):
    cube = LocalSource(archive).load(tuple(parcels.total_bounds), parcels.crs, START, END)
    return parcel_series(cube, pixel_weights(parcels, cube.odc.geobox))


def _same(a, b):
    for var in a.data_vars:
        x, y = a[var].values, b[var].values
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=var)
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=var)
    for coord in ("parcel_id", "full_pixels", "pixel_rule", "small_parcel", "weight_sum"):
        np.testing.assert_array_equal(a[coord].values, b[coord].values, err_msg=coord)
    np.testing.assert_array_equal(a["time"].values, b["time"].values)


@pytest.mark.parametrize("partition_px", [32, 48, 4096])
def test_partitioned_series_equals_the_one_pass_engine(archive, partition_px):
    parcels = _parcels(160)
    reference = _one_pass(archive, parcels)
    series = partitioned_series(parcels, LocalSource(archive), START, END,
                                partition_px=partition_px)
    _same(reference, series)
    assert series.attrs == reference.attrs
    # the comparison means something: values everywhere, parcels crossing cell edges
    assert np.isfinite(reference["ndvi_p50"].values).mean() > 0.5
    assert np.isfinite(reference["water_fraction"].values).any()


def test_seam_parcels_exist_and_every_parcel_is_planned_once(archive):
    parcels = _parcels(160)
    cube = LocalSource(archive).load(tuple(parcels.total_bounds), parcels.crs, START, END)
    plan = plan_partitions(parcels.geometry.values.to_numpy(), cube.odc.geobox,
                           *cell_edges(cube, 32))
    members = np.concatenate([p.parcels for p in plan])
    crossing = len(members) - len(np.unique(members))
    assert crossing > 20  # parcels in more than one cell: the seams are exercised
    on_grid = np.unique(members)
    assert 0 not in on_grid  # the parcel off the grid is in no partition
    assert sum(p.n_counted for p in plan) == len(on_grid)


def test_cells_lie_on_the_files_pixel_grid(archive):
    """A batch whose grid starts inside the file still gets cells on multiples of the cell
    size in the file's own pixels, so a moved batch extent does not move its cells."""
    bounds = (437000 + 205, 4142000 - 900, 437000 + 700, 4142000 - 215)
    cube = LocalSource(archive).load(bounds, "EPSG:32650", START, END)
    row0 = round((4142000 - cube.odc.geobox.transform.f) / 10)
    col0 = round((cube.odc.geobox.transform.c - 437000) / 10)
    ys, xs = cell_edges(cube, 32)
    assert ((ys[1:-1] + row0) % 32 == 0).all() and ((xs[1:-1] + col0) % 32 == 0).all()
    assert ys[0] == 0 and ys[-1] == cube.odc.geobox.shape[0]


def test_resume_recomputes_only_missing_damaged_or_changed_parts(archive, tmp_path,
                                                                monkeypatch):
    parcels = _parcels(120)
    work = tmp_path / "parts"
    messages = []
    first = partitioned_series(parcels, LocalSource(archive), START, END, work=work,
                               partition_px=32, log=messages.append)
    parts = sorted(work.glob("part-*.nc"))
    assert len(parts) > 6 and not messages

    calls = []
    real = partition_job.run_partition
    monkeypatch.setattr(partition_job, "run_partition",
                        lambda cube, part, *a, **k: calls.append(part.number) or real(
                            cube, part, *a, **k))
    parts[0].unlink()                                      # a part lost …
    data = bytearray(parts[1].read_bytes())                # … and one damaged
    data[-10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    again = partitioned_series(parcels, LocalSource(archive), START, END, work=work,
                               partition_px=32, log=messages.append)
    assert sorted(calls) == sorted(int(p.stem.split("-")[1]) for p in parts[:2])
    assert any(m.startswith(f"resuming: {len(parts) - 2} of {len(parts)}") for m in messages)
    for var in first.data_vars:
        np.testing.assert_array_equal(first[var].values, again[var].values)

    # one parcel moved: only the partitions it was and is in are recomputed
    calls.clear()
    messages.clear()
    moved = parcels.copy()
    moved.loc[5, "geometry"] = shapely.affinity.translate(moved.geometry[5], 3.0, 0.0)
    cube = LocalSource(archive).load(tuple(parcels.total_bounds), parcels.crs, START, END)
    plan = plan_partitions(moved.geometry.values.to_numpy(), cube.odc.geobox,
                           *cell_edges(cube, 32))
    holding = {p.number for p in plan if 5 in p.parcels}
    moved_series = partitioned_series(moved, LocalSource(archive), START, END, work=work,
                                      partition_px=32, log=messages.append)
    assert set(calls) == holding
    assert any(f"the parcels of {len(holding)} partition(s) changed" in m for m in messages)
    reference = _one_pass(archive, moved)
    _same(reference, moved_series)

    # another code version: everything restarts, and the message says why
    calls.clear()
    messages.clear()
    version = partition_job.code_version()
    monkeypatch.setattr(partition_job, "code_version", lambda: {**version, "agri_3s": "9.9"})
    partitioned_series(moved, LocalSource(archive), START, END, work=work, partition_px=32,
                       log=messages.append)
    assert len(calls) == len(plan)
    assert any("the code version changed: restarting all" in m for m in messages)


def test_changed_imagery_restarts_everything(archive, tmp_path, monkeypatch):
    parcels = _parcels(40)
    work = tmp_path / "parts"
    partitioned_series(parcels, LocalSource(archive), START, END, work=work, partition_px=64)
    n = len(list(work.glob("part-*.nc")))
    band = archive / "2025-05-12" / "B04.tif"
    stat = band.stat()
    os.utime(band, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rewritten
    messages, calls = [], []
    real = partition_job.run_partition
    monkeypatch.setattr(partition_job, "run_partition",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    try:
        partitioned_series(parcels, LocalSource(archive), START, END, work=work,
                           partition_px=64, log=messages.append)
    finally:
        os.utime(band, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert len(calls) == n
    assert any("the imagery changed" in m for m in messages)
