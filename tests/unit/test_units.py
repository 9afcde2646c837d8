"""Monitoring units on hand-built layouts whose pooling and pixel counts are known."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from agri_3s.errors import InputError
from agri_3s.parcels.units import pool_units, spread_unit_results, unit_id_for

X0, Y0 = 500_000.0, 4_400_000.0


def box(x0, y0, x1, y1):
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def layout() -> gpd.GeoDataFrame:
    rows = [
        # three 10 m × 30 m wheat strips of H1: 0 whole pixels each after the 5 m buffer; their
        # 30 m × 30 m union keeps 20 m × 20 m = 4 pixels
        ("A1", "H1", "winter_wheat", box(0, 0, 10, 30)),
        ("A2", "H1", "winter_wheat", box(10, 0, 20, 30)),
        ("A3", "H1", "winter_wheat", box(20, 0, 30, 30)),
        ("B", "H1", "summer_maize", box(30, 0, 40, 30)),     # same household, other crop
        ("C", "H2", "winter_wheat", box(40, 0, 50, 30)),     # other household
        # H3: two big fields (90 × 90 m left after the buffer → 81 pixels) and a strip on E
        ("D", "H3", "winter_wheat", box(0, 100, 100, 200)),
        ("E", "H3", "winter_wheat", box(100, 100, 200, 200)),
        ("F", "H3", "winter_wheat", box(200, 100, 210, 200)),
        # H4: two strips 0.5 m apart (a digitising gap) → pooled; a third 2 m away → not
        ("G1", "H4", "winter_wheat", box(0, 300, 10, 330)),
        ("G2", "H4", "winter_wheat", box(10.5, 300, 20.5, 330)),
        ("G3", "H4", "winter_wheat", box(22.5, 300, 32.5, 330)),
        ("X", None, "winter_wheat", box(-10, 0, 0, 30)),     # no household: never pooled
    ]
    return gpd.GeoDataFrame(
        {"parcel_id": [r[0] for r in rows], "household_id": [r[1] for r in rows],
         "crop": [r[2] for r in rows], "policy_id": "P1", "declared_area_mu": 0.5},
        geometry=[r[3] for r in rows], crs=32650)


def test_pooling_follows_the_rule():
    with_units, units = pool_units(layout())
    unit = dict(zip(with_units.parcel_id, with_units.unit_id))
    groups = {frozenset(p for p, u in unit.items() if u == v) for v in unit.values()}
    assert groups == {frozenset(s) for s in (
        {"A1", "A2", "A3"}, {"B"}, {"C"}, {"D"}, {"E", "F"}, {"G1", "G2"}, {"G3"}, {"X"})}
    assert list(with_units.parcel_id) == list(layout().parcel_id)  # same rows, same order
    assert with_units.set_index("parcel_id").full_pixels_est.to_dict() == {
        "A1": 0, "A2": 0, "A3": 0, "B": 0, "C": 0, "D": 81, "E": 81, "F": 0,
        "G1": 0, "G2": 0, "G3": 0, "X": 0}
    a = units.set_index("unit_id").loc[unit_id_for(["A3", "A1", "A2"])]
    assert a.n_parcels == 3 and a.pooled and a.full_pixels_est == 4 and not a.small
    assert a.geometry.area == pytest.approx(900)
    assert a.area_mu == pytest.approx(900 * 15 / 10_000)
    assert a.declared_area_mu == pytest.approx(1.5)
    assert a.parcel_id == a.name and a.crop == "winter_wheat" and a.household_id == "H1"
    g = units.set_index("unit_id").loc[unit_id_for(["G1", "G2"])]
    assert g.geometry.geom_type == "MultiPolygon" and g.small  # each part: 0 pixels
    assert not with_units.set_index("parcel_id").loc["D", "pooled"]
    assert len(units) == 8


def test_unit_ids_are_stable():
    _, u1 = pool_units(layout())
    _, u2 = pool_units(layout().iloc[::-1].reset_index(drop=True))
    assert sorted(u1.unit_id) == sorted(u2.unit_id)
    assert unit_id_for(["A1"]).startswith("U-") and len(unit_id_for(["A1"])) == 14


def test_spread_results_to_every_parcel():
    with_units, _units = pool_units(layout())
    ua = unit_id_for(["A1", "A2", "A3"])
    ue = unit_id_for(["E", "F"])
    results = pd.DataFrame({"parcel_id": [ua, ue],       # a job run on the units table
                            "loss_rate": [0.4, 0.1], "damaged_area_mu": [1.35, 1.5],
                            "reasons": ["LOSS_ESTIMATED", "LOSS_ESTIMATED"],
                            "reasons_zh": ["估算", "估算"], "reasons_en": ["est", "est"]})
    out = spread_unit_results(results, with_units, split_columns=["damaged_area_mu"])
    assert list(out.parcel_id) == list(with_units.parcel_id)
    by = out.set_index("parcel_id")
    assert by.loc[["A1", "A2", "A3"], "loss_rate"].tolist() == [0.4] * 3
    # A's strips are a third of the unit each; E is 100 × 100 of the 110 × 100 m unit
    assert by.loc["A2", "damaged_area_mu"] == pytest.approx(0.45)
    assert by.loc["E", "damaged_area_mu"] == pytest.approx(1.5 * 10 / 11)
    assert by.loc["F", "damaged_area_mu"] == pytest.approx(1.5 / 11)
    assert by.loc["A1", "reasons"] == "POOLED_UNIT;LOSS_ESTIMATED"
    assert ua in by.loc["A1", "reasons_en"] and "3" in by.loc["A1", "reasons_zh"]
    assert by.loc["A1", "has_unit_result"] and not by.loc["D", "has_unit_result"]
    assert pd.isna(by.loc["D", "loss_rate"]) and by.loc["D", "reasons"] == ""


def test_spread_refuses_duplicate_unit_rows():
    with_units, _ = pool_units(layout())
    u = with_units.unit_id[0]
    with pytest.raises(InputError, match="more than one result"):
        spread_unit_results(pd.DataFrame({"unit_id": [u, u], "x": [1, 2]}), with_units)


def test_duplicate_parcel_ids_refused():
    p = layout()
    p.loc[1, "parcel_id"] = "A1"
    with pytest.raises(InputError, match="A1"):
        pool_units(p)
