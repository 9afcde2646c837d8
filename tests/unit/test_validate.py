"""Validation and repair: one hand-built case per rule, with hand-computed areas.

The parcels sit on UTM 50N's central meridian (x ≈ 500 000 m), where the UTM scale factor is
k0 = 0.9996: a square of side s metres drawn in UTM covers s² / k0² m² on the ground.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from agri_3s.parcels.validate import validate_parcels

K0 = 0.9996
M2_PER_MU = 10_000 / 15
X0, Y0 = 500_000.0, 4_100_000.0


def sq(side, dx=0.0, dy=0.0):
    return shapely.box(X0 + dx, Y0 + dy, X0 + dx + side, Y0 + dy + side)


def ground_mu(m2_in_utm):
    return m2_in_utm / K0**2 / M2_PER_MU


CASES = {  # parcel_id: (geometry, crop, declared_area_mu)
    "ok": (sq(100), "winter_wheat", 15.0),
    "bowtie": (shapely.Polygon([(X0, Y0), (X0 + 100, Y0 + 100), (X0 + 100, Y0), (X0, Y0 + 100)]),
               "winter_wheat", 15.0),
    "empty": (shapely.Polygon(), "winter_wheat", 15.0),
    "null": (None, "winter_wheat", 15.0),
    "z": (shapely.Polygon([(x, y, 12.5) for x, y in sq(100, dy=200).exterior.coords]),
          "summer_maize", 15.0),
    "dupvertex": (shapely.Polygon([(X0, Y0), (X0 + 100, Y0), (X0 + 100, Y0), (X0 + 100, Y0 + 100),
                                   (X0, Y0 + 100), (X0, Y0 + 100)]), "cotton", 15.0),
    "sliverpart": (shapely.MultiPolygon([sq(100, dy=400), sq(1, dx=300, dy=400)]), "soybean", 15.0),
    "holes": (shapely.Polygon(sq(100, dy=600).exterior.coords,
                              [sq(20, dx=40, dy=640).exterior.coords]), "soybean", 14.4),
    "tiny": (sq(8, dy=800), "soybean", 0.1),
    "huge": (sq(3000, dy=5000), "soybean", 13500.0),
    "sliver": (shapely.box(X0, Y0 + 900, X0 + 400, Y0 + 900.5), "soybean", 0.3),
    "point": (shapely.Point(X0, Y0), "soybean", 1.0),
    "ring_as_line": (shapely.LineString(sq(100, dy=1000).exterior.coords), "soybean", 15.0),
    "open_line": (shapely.LineString([(X0, Y0), (X0 + 100, Y0)]), "soybean", 15.0),
    "collapsed": (shapely.Polygon([(X0, Y0), (X0 + 100, Y0), (X0 + 100, Y0), (X0, Y0)]),
                  "soybean", 1.0),
    "nocrop": (sq(100, dy=1200), None, 15.0),
    "zeroarea": (sq(100, dy=1400), "soybean", 0.0),
    "noarea": (sq(100, dy=1600), "soybean", np.nan),
    "": (sq(100, dy=1800), "soybean", 15.0),
    "sunflower": (sq(100, dy=2000), "向日葵", 15.0),
    "declared_low": (sq(100, dy=2200), "soybean", 13.0),
    "collection": (shapely.GeometryCollection([sq(100, dy=2400), shapely.Point(X0, Y0)]),
                   "soybean", 15.0),
}
CASES_WITH_DUP = list(CASES.items()) + [("ok", (sq(100, dy=2600), "winter_wheat", 15.0))]


@pytest.fixture(scope="module")
def checked():
    gdf = gpd.GeoDataFrame({"parcel_id": [k for k, _ in CASES_WITH_DUP],
                            "crop": [v[1] for _, v in CASES_WITH_DUP],
                            "declared_area_mu": [v[2] for _, v in CASES_WITH_DUP]},
                           geometry=[v[0] for _, v in CASES_WITH_DUP], crs=32650)
    out = validate_parcels(gdf)
    assert len(out) == len(gdf)  # no row dropped
    out = out.set_index(out["row_number"] - 1)
    out["key"] = [k for k, _ in CASES_WITH_DUP]
    return out


def row(checked, key, nth=0):
    return checked[checked["key"] == key].iloc[nth]


EXPECTED = {  # key: (validity, reason codes)
    "ok": ("ok", ""),
    "bowtie": ("repaired", "SELF_INTERSECTION;MULTIPART;AREA_MISMATCH"),
    "empty": ("rejected", "EMPTY_GEOMETRY"),
    "null": ("rejected", "EMPTY_GEOMETRY"),
    "z": ("ok", "Z_DROPPED"),
    "dupvertex": ("ok", "DUPLICATE_VERTICES"),
    "sliverpart": ("repaired", "SLIVER_PARTS_REMOVED"),
    "holes": ("ok", "HOLES"),
    "tiny": ("rejected", "AREA_TOO_SMALL"),
    "huge": ("rejected", "AREA_TOO_LARGE"),
    "sliver": ("rejected", "SLIVER"),
    "point": ("rejected", "NOT_POLYGON"),
    "ring_as_line": ("repaired", "LINE_TO_POLYGON"),
    "open_line": ("rejected", "NOT_POLYGON"),
    "collapsed": ("rejected", "DUPLICATE_VERTICES;TOO_FEW_VERTICES"),
    "nocrop": ("rejected", "MISSING_ATTRIBUTE"),
    "zeroarea": ("rejected", "DECLARED_AREA_INVALID"),
    "noarea": ("rejected", "MISSING_ATTRIBUTE"),
    "": ("rejected", "MISSING_ID"),
    "sunflower": ("ok", "CROP_UNRECOGNISED"),
    "declared_low": ("ok", "AREA_MISMATCH"),
    "collection": ("repaired", "INVALID_GEOMETRY"),
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_status_and_reasons(checked, key):
    r = row(checked, key)
    assert (r["validity"], r["validity_reasons"]) == EXPECTED[key]
    # every code has a Chinese and an English text, in the same order
    n = len(r["validity_reasons"].split(";")) if r["validity_reasons"] else 0
    assert len([t for t in r["validity_reasons_zh"].split("；") if t]) == n
    assert len([t for t in r["validity_reasons_en"].split("; ") if t]) == n


def test_duplicate_id_rejects_the_later_row(checked):
    first, dup = row(checked, "ok", 0), row(checked, "ok", 1)
    assert first["validity"] == "ok"
    assert dup["validity"] == "rejected" and dup["validity_reasons"] == "DUPLICATE_ID"
    assert "row 1" in dup["validity_reasons_en"]


def test_areas_hand_computed(checked):
    assert row(checked, "ok")["area_mu"] == pytest.approx(ground_mu(100 * 100), rel=1e-6)
    # the bow-tie becomes its two triangles of 50 × 100 / 2 m² each
    assert row(checked, "bowtie")["area_mu"] == pytest.approx(ground_mu(5000), rel=1e-6)
    assert row(checked, "holes")["area_mu"] == pytest.approx(ground_mu(100 * 100 - 20 * 20),
                                                             rel=1e-6)
    assert row(checked, "sliverpart")["area_mu"] == pytest.approx(ground_mu(100 * 100), rel=1e-6)
    assert row(checked, "empty")["area_mu"] == 0.0
    r = row(checked, "declared_low")
    assert r["area_ratio"] == pytest.approx(ground_mu(10_000) / 13.0, rel=1e-6)


def test_repairs_are_stated(checked):
    bow = row(checked, "bowtie")
    assert bow["repairs"] == "make_valid"
    assert "Self-intersection" in bow["validity_reasons_en"] and "2 part" in bow["validity_reasons_en"]
    assert "make_valid" in bow["validity_reasons_zh"]
    assert row(checked, "z")["repairs"] == "dropped_z" and not row(checked, "z").geometry.has_z
    assert row(checked, "sliverpart")["repairs"] == "removed_slivers"
    assert row(checked, "sliverpart").geometry.geom_type == "Polygon"
    assert row(checked, "dupvertex").geometry.equals(sq(100))
    assert "removed 2 repeated" in row(checked, "dupvertex")["validity_reasons_en"]


def test_rejected_rows_keep_the_geometry_given(checked):
    assert row(checked, "point").geometry.geom_type == "Point"
    assert row(checked, "ok", 1).geometry.equals(sq(100, dy=2600))


def test_area_tolerance_is_a_parameter():
    gdf = gpd.GeoDataFrame({"parcel_id": ["a"], "crop": ["soybean"], "declared_area_mu": [13.0]},
                           geometry=[sq(100)], crs=32650)
    assert validate_parcels(gdf)["validity_reasons"].iloc[0] == "AREA_MISMATCH"
    assert validate_parcels(gdf, area_tolerance=0.2)["validity_reasons"].iloc[0] == ""
    assert validate_parcels(gdf, area_tolerance=0.2)["validity"].iloc[0] == "ok"


def test_parcel_reason_texts_never_contain_the_column_separators():
    from agri_3s.reasons import REASONS

    codes = ["EMPTY_GEOMETRY", "GEOMETRY_UNREADABLE", "NOT_POLYGON", "LINE_TO_POLYGON",
             "RING_NOT_CLOSED", "TOO_FEW_VERTICES", "DUPLICATE_VERTICES", "Z_DROPPED",
             "SELF_INTERSECTION", "REPAIR_FAILED", "SLIVER_PARTS_REMOVED", "SLIVER", "MULTIPART",
             "HOLES", "COORDS_SWAPPED", "COORDS_NOT_DEGREES", "CRS_CONVERTED", "AREA_TOO_SMALL",
             "AREA_TOO_LARGE", "AREA_MISMATCH", "MISSING_ID", "DUPLICATE_ID", "MISSING_ATTRIBUTE",
             "DECLARED_AREA_INVALID", "CROP_UNRECOGNISED", "ATTRIBUTES_VARY",
             "COLUMN_NAME_TRUNCATED", "ATTRIBUTE_ABSENT", "FIELD_TOO_LONG"]
    for code in codes:
        zh, en = REASONS[code]
        assert "；" not in zh and "; " not in en, code


def test_absent_columns_refuse_the_jobs_and_are_flagged_for_the_check():
    from agri_3s.errors import InputError

    gdf = gpd.GeoDataFrame({"parcel_id": ["a", "b"]}, geometry=[sq(100), sq(1, dy=300)],
                           crs=32650)
    with pytest.raises(InputError, match="crop, declared_area_mu missing") as e:
        validate_parcels(gdf)                               # a job needs them
    assert "--columns" in str(e.value)
    out = validate_parcels(gdf, required=())                # the check goes as far as it can
    assert out["validity"].tolist() == ["ok", "rejected"]   # b is 1 m²: too small
    assert out["validity_reasons"].tolist() == ["ATTRIBUTE_ABSENT", "ATTRIBUTE_ABSENT;AREA_TOO_SMALL"]
    assert out["area_mu"].iloc[0] == pytest.approx(ground_mu(100 * 100))
    assert out["missing_attributes"].tolist() == ["crop;declared_area_mu"] * 2
    assert out["area_ratio"].isna().all()


def test_missing_attributes_lists_blank_cells():
    gdf = gpd.GeoDataFrame({"parcel_id": ["a", "", "c"], "crop": ["soybean", "soybean", None],
                            "declared_area_mu": [15.0, np.nan, 15.0]},
                           geometry=[sq(100), sq(100, dy=200), sq(100, dy=400)], crs=32650)
    out = validate_parcels(gdf)
    assert out["missing_attributes"].tolist() == ["", "parcel_id;declared_area_mu", "crop"]
    assert out["validity"].tolist() == ["ok", "rejected", "rejected"]


def test_long_text_cells_reject_the_row():
    gdf = gpd.GeoDataFrame({"parcel_id": ["a", "b"], "crop": ["soybean", "s" * 201],
                            "declared_area_mu": [15.0, 15.0], "note": ["n" * 200, None]},
                           geometry=[sq(100), sq(100, dy=200)], crs=32650)
    out = validate_parcels(gdf)
    assert out["validity"].tolist() == ["ok", "rejected"]
    assert out["validity_reasons"].iloc[1].split(";")[0] == "FIELD_TOO_LONG"
    assert "crop 长 201 个字符，超过上限 200" in out["validity_reasons_zh"].iloc[1]
    assert validate_parcels(gdf, max_text_chars=300)["validity"].tolist() == ["ok", "ok"]
