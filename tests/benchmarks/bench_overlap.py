"""Benchmark: overlap checks on ~1 million parcels on this 2-core machine.

Run ``python tests/benchmarks/bench_overlap.py [--n 1000000]`` or ``pytest -s tests/benchmarks``
(``AGRI3S_BENCH_N`` sets the size there). It

1. builds a synthetic county: an ``n``-parcel grid of 8 m × 80 m strips (≈ 1 mu each) whose
   shared vertices are jittered by up to 2 m, so neighbours share slanted edges exactly (and
   their bounding boxes overlap, as real parcels' do); 1 % of the parcels are planted
   problems: every 200th is a copy of its right-hand neighbour (duplicate insurance), every
   200th + 100 is shifted 3 m onto it (overlap);
2. times :func:`find_overlaps` within that batch;
3. accepts it into a :class:`Register` GeoPackage (timed) and times checking a second
   ``n``-parcel batch — a neighbouring grid sharing the register's north edge, with 1 % copies
   of register parcels — against the register;
4. compares with the naive peer, geopandas ``sjoin`` + ``overlay``, on the first
   ``--peer-n`` parcels: same pairs and areas, and the time ratio.

Peak memory is the process's peak resident set size (``resource.getrusage``) after each step:
tracemalloc would not see GEOS's allocations. The last line printed is ``BENCH_OVERLAP {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

if __name__ == "__main__":  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agri_3s.parcels.overlap import Register, find_overlaps

CRS = "EPSG:32650"
W, H = 8.0, 80.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def synthetic_grid(n: int, *, n_cols: int = 1000, x0: float = 500_000.0,
                   y0: float = 4_000_000.0, seed: int = 0, plant_below: int | None = None
                   ) -> tuple[gpd.GeoDataFrame, int]:
    """``n`` jittered strips in rows of ``n_cols``; returns the parcels and the number of
    planted overlapping pairs among the first ``plant_below`` (default all) parcels (each
    planted parcel overlaps exactly its right neighbour by more than the default
    thresholds)."""
    rng = np.random.default_rng(seed)
    n_rows = -(-n // n_cols)
    vx = x0 + np.arange(n_cols + 1)[None, :] * W + rng.uniform(-2, 2, (n_rows + 1, n_cols + 1))
    vy = y0 + np.arange(n_rows + 1)[:, None] * H + rng.uniform(-2, 2, (n_rows + 1, n_cols + 1))
    r, c = np.divmod(np.arange(n), n_cols)
    xs = np.stack([vx[r, c], vx[r, c + 1], vx[r + 1, c + 1], vx[r + 1, c], vx[r, c]], axis=1)
    ys = np.stack([vy[r, c], vy[r, c + 1], vy[r + 1, c + 1], vy[r + 1, c], vy[r, c]], axis=1)
    n_planted = 0
    if plant_below != 0:
        k = np.arange(0, (plant_below or n) - 1, 100)
        k = k[(k % n_cols) != n_cols - 1]
        dup, shift = k[0::2], k[1::2]
        xs[dup], ys[dup] = xs[dup + 1], ys[dup + 1]
        xs[shift] += 3.0
        n_planted = len(dup) + len(shift)
    geoms = shapely.polygons(np.stack([xs, ys], axis=-1))
    ids = np.char.add("p", np.arange(n).astype(str))
    hh = np.char.add("H", (np.arange(n) // 7).astype(str))
    gdf = gpd.GeoDataFrame({"parcel_id": ids, "policy_id": np.char.add("P", (np.arange(n) // 50)
                                                                       .astype(str)),
                            "household_id": hh, "crop": "winter_wheat"},
                           geometry=geoms, crs=CRS)
    return gdf, n_planted


def peer_pairs(sub: gpd.GeoDataFrame) -> tuple[dict, float]:
    """The naive peer: sjoin for candidates, overlay for the intersection pieces."""
    t = time.perf_counter()
    cand = gpd.sjoin(sub, sub, predicate="intersects")
    cand = cand[cand.index < cand["index_right"]]
    left = sub[["parcel_id", "geometry"]].rename(columns={"parcel_id": "a"})
    right = sub[["parcel_id", "geometry"]].rename(columns={"parcel_id": "b"})
    pieces = gpd.overlay(left, right, how="intersection", keep_geom_type=True)
    order = {p: i for i, p in enumerate(sub["parcel_id"])}
    pieces = pieces[[order[a] < order[b] for a, b in zip(pieces.a, pieces.b)]]
    areas = pieces.assign(area=pieces.area).groupby(["a", "b"])["area"].sum()
    elapsed = time.perf_counter() - t
    assert len(cand) >= len(areas)
    return {k: v for k, v in areas.items() if v > 1e-6}, elapsed


def run(n: int = 1_000_000, peer_n: int = 20_000, workdir: Path | None = None) -> dict:
    res: dict = {"n": n, "cores": os.cpu_count()}
    t = time.perf_counter()
    # one grid of 2n: the batch is the south half, the second batch (step 3) the north half,
    # so the two share their boundary edges exactly
    grid, planted = synthetic_grid(2 * n, plant_below=n)
    batch, new = grid.iloc[:n].copy(), grid.iloc[n:].reset_index(drop=True)
    del grid
    res["generate_s"] = round(time.perf_counter() - t, 2)
    res["planted_pairs"] = planted

    t = time.perf_counter()
    pairs = find_overlaps(batch)
    res["within_batch_s"] = round(time.perf_counter() - t, 2)
    res["within_batch_pairs"] = len(pairs)
    res["within_batch_kinds"] = pairs["kind"].value_counts().to_dict()
    res["peak_rss_mb_after_within"] = round(peak_rss_mb())
    print(f"within batch: {n:,} parcels, {len(pairs):,} pairs in {res['within_batch_s']} s",
          flush=True)

    # peer on a subset (rows of the same grid: includes planted problems and slivers)
    sub = batch.iloc[:peer_n].copy()
    t = time.perf_counter()
    ours = find_overlaps(sub, min_share=0, min_area_m2=0)
    res["peer_subset_n"] = peer_n
    res["ours_subset_s"] = round(time.perf_counter() - t, 3)
    theirs, res["peer_sjoin_overlay_s"] = peer_pairs(sub)
    res["peer_sjoin_overlay_s"] = round(res["peer_sjoin_overlay_s"], 3)
    got = dict(zip(zip(ours.parcel_id_a, ours.parcel_id_b), ours.overlap_m2))
    res["peer_same_pairs"] = set(got) == set(theirs)
    res["peer_max_area_diff_m2"] = max((abs(got[k] - theirs[k]) for k in theirs
                                        if k in got), default=0.0)
    res["peer_speedup"] = round(res["peer_sjoin_overlay_s"] / max(res["ours_subset_s"], 1e-9), 1)
    print(f"peer on {peer_n:,}: ours {res['ours_subset_s']} s, sjoin+overlay "
          f"{res['peer_sjoin_overlay_s']} s, same pairs: {res['peer_same_pairs']}", flush=True)

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        reg = Register(Path(tmp) / "register.gpkg")
        t = time.perf_counter()
        reg.accept(batch, "B1", season="2025")
        res["register_accept_s"] = round(time.perf_counter() - t, 2)
        res["register_mb"] = round(reg.path.stat().st_size / 2**20)
        print(f"accepted {n:,} parcels into the register in {res['register_accept_s']} s",
              flush=True)

        # second batch: the grid north of the register, plus 1 % copies of register parcels
        copies = np.arange(0, n, 100)
        new.geometry.values[copies] = batch.geometry.values[copies]
        t = time.perf_counter()
        reg_pairs = reg.overlaps(new, season="2025")
        res["vs_register_s"] = round(time.perf_counter() - t, 2)
        res["vs_register_pairs"] = len(reg_pairs)
        res["vs_register_copies"] = len(copies)
        found = set(zip(reg_pairs.parcel_id_a[reg_pairs.kind == "duplicate"],
                        reg_pairs.parcel_id_b[reg_pairs.kind == "duplicate"]))
        res["vs_register_copies_found"] = sum(
            (a, b) in found for a, b in zip(new.parcel_id.to_numpy()[copies],
                                            batch.parcel_id.to_numpy()[copies]))
        res["vs_register_kinds"] = reg_pairs["kind"].value_counts().to_dict()
        res["peak_rss_mb_after_register"] = round(peak_rss_mb())
        print(f"against a register of {n:,}: {len(reg_pairs):,} pairs in "
              f"{res['vs_register_s']} s", flush=True)
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--peer-n", type=int, default=20_000)
    args = ap.parse_args(argv)
    res = run(args.n, args.peer_n)
    print("BENCH_OVERLAP " + json.dumps(res, default=str), flush=True)
    return res


def test_bench_overlap():
    """Collected by ``pytest tests/benchmarks``: correctness of the big run, figures printed."""
    n = int(os.environ.get("AGRI3S_BENCH_N", "1000000"))
    res = main(["--n", str(n), "--peer-n", str(min(20_000, n))])
    assert res["within_batch_pairs"] == res["planted_pairs"]
    assert res["peer_same_pairs"] and res["peer_max_area_diff_m2"] < 1e-6
    assert res["vs_register_copies_found"] == res["vs_register_copies"]
    # every copy sits on a planted pair, so it also overlaps that pair's other parcel
    assert res["vs_register_pairs"] == 2 * res["vs_register_copies"]


if __name__ == "__main__":
    main(sys.argv[1:])
