"""Overlap / duplicate-insurance checks against hand-computed areas and a brute-force
pairwise shapely loop (the independent truth)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agri_3s.errors import InputError
from agri_3s.parcels.overlap import Register, find_overlaps, overlap_summary

UTM50 = "EPSG:32650"
X0, Y0 = 500_000.0, 4_000_000.0  # a spot in UTM zone 50N (Hebei)


def _parcels(geoms, ids=None, **cols) -> gpd.GeoDataFrame:
    ids = ids or [f"p{i}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"parcel_id": ids, **cols}, geometry=list(geoms), crs=UTM50)


def _box(x0, y0, x1, y1):
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def test_hand_built_layout():
    # a, b share an edge (not an overlap); c lies half on b; d is a copy of a (other policy);
    # e is a 0.2 m digitising sliver onto b (below the thresholds).
    geoms = [_box(0, 0, 100, 50), _box(100, 0, 200, 50), _box(150, 0, 250, 50),
             _box(0, 0, 100, 50), _box(199.8, 50, 300, 100).union(_box(199.8, 0, 200.2, 50))]
    p = _parcels(geoms, ["a", "b", "c", "d", "e"], policy_id=["P1", "P1", "P2", "P3", "P1"],
                 household_id=["H1", "H1", "H2", "H3", "H1"])
    pairs = find_overlaps(p)
    got = {(r.parcel_id_a, r.parcel_id_b): r for r in pairs.itertuples()}
    assert set(got) == {("a", "d"), ("b", "c")}
    ad, bc = got["a", "d"], got["b", "c"]
    assert ad.kind == "duplicate" and ad.share_a == pytest.approx(1) and not ad.same_policy
    assert ad.overlap_m2 == pytest.approx(5000) and ad.overlap_mu == pytest.approx(7.5)
    assert bc.kind == "overlap" and bc.overlap_m2 == pytest.approx(2500)
    assert bc.share_a == pytest.approx(0.5) and bc.share_b == pytest.approx(0.5)
    assert (bc.policy_id_a, bc.household_id_b, bc.source_b) == ("P1", "H2", "batch")
    # with no thresholds the sliver shows: 0.2 m × 50 m = 10 m² of b
    everything = find_overlaps(p, min_share=0, min_area_m2=0)
    sliver = everything[(everything.parcel_id_a == "b") & (everything.parcel_id_b == "e")]
    assert sliver.overlap_m2.item() == pytest.approx(0.2 * 50)


def test_small_parcel_inside_large_one_is_reported():
    p = _parcels([_box(0, 0, 1000, 1000), _box(10, 10, 40, 40)], ["big", "small"])
    pairs = find_overlaps(p)  # 900 m² is 0.09 % of big but 100 % of small
    assert len(pairs) == 1
    assert pairs.share_a.item() == pytest.approx(900 / 1e6)
    assert pairs.share_b.item() == pytest.approx(1.0)
    assert pairs.kind.item() == "overlap"


def _random_layout(seed: int, n: int = 120) -> gpd.GeoDataFrame:
    """Random quadrilaterals and triangles, plus exact copies and edge-sharing neighbours."""
    rng = np.random.default_rng(seed)
    geoms = []
    for _ in range(n):
        cx, cy = rng.uniform(0, 600, 2)
        k = rng.integers(3, 7)
        # angles less than pi apart → a star-shaped, hence simple, polygon
        ang = (np.arange(k) + rng.uniform(0, 0.8, k)) * 2 * np.pi / k
        rad = rng.uniform(10, 40, k)
        geoms.append(shapely.Polygon(np.column_stack([X0 + cx + rad * np.cos(ang),
                                                      Y0 + cy + rad * np.sin(ang)])))
    for i in rng.choice(n, 10, replace=False):   # duplicates
        geoms.append(geoms[i])
    for _ in range(20):                           # touching grid neighbours
        x, y = rng.uniform(0, 600, 2)
        geoms += [_box(x, y, x + 20, y + 30), _box(x + 20, y, x + 45, y + 30)]
    return _parcels(geoms)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equals_brute_force_pairwise(seed):
    p = _random_layout(seed)
    pairs = find_overlaps(p, min_share=0, min_area_m2=0)
    g = list(p.geometry)
    expected = {}
    for i in range(len(g)):
        for j in range(i + 1, len(g)):
            area = g[i].intersection(g[j]).area
            if area > 1e-6:
                expected[p.parcel_id[i], p.parcel_id[j]] = (area, area / g[i].area,
                                                            area / g[j].area)
    got = {(r.parcel_id_a, r.parcel_id_b): (r.overlap_m2, r.share_a, r.share_b)
           for r in pairs.itertuples()}
    assert set(got) == set(expected) and len(pairs) == len(expected)
    for k, (area, sa, sb) in expected.items():
        ga, gsa, gsb = got[k]
        assert ga == pytest.approx(area, rel=1e-9)
        assert sorted([gsa, gsb]) == pytest.approx(sorted([sa, sb]), rel=1e-9)
    assert (pairs.kind == "duplicate").sum() >= 10


def test_thresholds_match_brute_force():
    p = _random_layout(7)
    pairs = find_overlaps(p, min_share=0.2, min_area_m2=50)
    g = list(p.geometry)
    n_expected = 0
    for i in range(len(g)):
        for j in range(i + 1, len(g)):
            a = g[i].intersection(g[j]).area
            sa, sb = a / g[i].area, a / g[j].area
            # the documented rule: big enough, or a (near-)duplicate (both shares >= 0.9)
            if a > 1e-6 and ((a >= 50 and max(sa, sb) >= 0.2) or min(sa, sb) >= 0.9):
                n_expected += 1
    assert len(pairs) == n_expected


def test_lonlat_input_measured_in_metres():
    p = _parcels([_box(0, 0, 100, 100), _box(50, 0, 150, 100)]).to_crs(4326)
    pairs = find_overlaps(p)
    assert pairs.overlap_m2.item() == pytest.approx(5000, rel=1e-6)


def test_invalid_geometry_is_refused_with_its_id():
    bowtie = shapely.Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)])
    with pytest.raises(InputError, match="bow"):
        find_overlaps(_parcels([bowtie, _box(0, 0, 5, 5)], ["bow", "ok"]))


def test_register_accept_and_check(tmp_path):
    reg = Register(tmp_path / "register.gpkg")
    first = _parcels([_box(0, 0, 100, 100), _box(100, 0, 200, 100), _box(5000, 0, 5100, 100)],
                     ["r1", "r2", "far"], policy_id=["P1", "P1", "P9"],
                     household_id=["H1", "H1", "H9"], crop=["winter_wheat"] * 3)
    assert reg.accept(first, "B1", season="2025") == 3
    with pytest.raises(InputError, match="already in the register"):
        reg.accept(first, "B1")
    batches = reg.batches()
    assert list(batches.batch_id) == ["B1"] and batches.n_parcels.item() == 3

    new = _parcels([_box(0, 0, 100, 100), _box(150, 0, 250, 100), _box(300, 0, 400, 100)],
                   ["n1", "n2", "n3"], policy_id=["P7", "P8", "P8"])
    pairs = reg.overlaps(new, season="2025")
    got = {(r.parcel_id_a, r.parcel_id_b): r for r in pairs.itertuples()}
    assert set(got) == {("n1", "r1"), ("n2", "r2")}
    assert got["n1", "r1"].kind == "duplicate" and got["n1", "r1"].source_b == "B1"
    assert got["n2", "r2"].overlap_m2 == pytest.approx(5000, rel=1e-6)
    assert got["n2", "r2"].accepted_at_b.endswith("+00:00")
    assert reg.overlaps(new, season="2026").empty          # other seasons are not compared
    # the bbox read only fetched register parcels near the batch
    assert set(reg.read_near(new).parcel_id) == {"r1", "r2"}

    # within batch + register together; then accept the new batch and see it in the register
    both = find_overlaps(new, register=reg.path)
    assert set(both.source_b) == {"B1"}
    reg.accept(new, "B2", season="2025")
    assert len(reg.read()) == 6 and set(reg.batches().batch_id) == {"B1", "B2"}
    assert not list(tmp_path.glob(".*tmp*"))              # no temporary copy left behind


def test_summary_keeps_every_parcel():
    p = _parcels([_box(0, 0, 100, 50), _box(50, 0, 150, 50), _box(500, 0, 600, 50)],
                 ["a", "b", "c"])
    s = overlap_summary(p, find_overlaps(p))
    assert list(s.parcel_id) == ["a", "b", "c"]
    assert list(s.n_overlaps) == [1, 1, 0]
    assert s.max_share.tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert s.overlap_reasons[0] == "OVERLAP" and "b" in s.overlap_reasons_en[0]


def test_empty_batch():
    assert find_overlaps(_parcels([])).empty
    assert list(find_overlaps(_parcels([])).columns)[:2] == ["parcel_id_a", "policy_id_a"]
    assert isinstance(find_overlaps(_parcels([_box(0, 0, 1, 1)])), pd.DataFrame)
