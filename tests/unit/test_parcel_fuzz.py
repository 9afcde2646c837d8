"""Property-based fuzzing of the parcel readers (hypothesis): whatever a file holds, `parcels
check` answers with a report or a bad-input error — never a traceback — and every row given
comes out again (rows in = rows reported).

The profile is derandomised (the same examples on every run, so CI never flakes) and small
(a few seconds in all); CSV, vertex tables, GeoJSON, shapefiles (UTF-8 and GBK DBF) and field-app
KML. For a long hunt with fresh examples:
``AGRI3S_FUZZ_RANDOM=1 AGRI3S_FUZZ_EXAMPLES=2000 pytest tests/unit/test_parcel_fuzz.py``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agri_3s.errors import InputError
from agri_3s.parcels.validate import check_parcels_file

FUZZ = settings(derandomize="AGRI3S_FUZZ_RANDOM" not in os.environ, database=None, deadline=None,
                max_examples=int(os.environ.get("AGRI3S_FUZZ_EXAMPLES", "25")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# text a user (or an attacker) may type into a cell: any character but NUL and lone surrogates
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
HOSTILE = st.sampled_from(["=HYPERLINK(\"http://x\",\"y\")", "+1", "-0.5", "@SUM(A1)", "亩",
                           "3.2亩", "1,200", "NaN", "inf", "-1", "0", "x" * 300, "冬小麦", "玉米",
                           "winter_wheat", "None", "null", "'", '"', "\\", "；", "\t"])
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(-1000, 1000), st.integers(-10**20, 10**20))
CELL = st.one_of(st.just(""), TEXT, HOSTILE, NUMBER.map(str))


def _lon_lat() -> st.SearchStrategy:
    """Coordinates near a county, or anywhere, or nonsense."""
    near = st.tuples(st.floats(116.29, 116.31), st.floats(37.39, 37.41))
    anywhere = st.tuples(st.floats(-1e7, 1e7), st.floats(-1e7, 1e7))
    return st.one_of(near, near, anywhere)


def _wkt(points: list[tuple[float, float]], kind: str) -> str:
    xy = ", ".join(f"{x!r} {y!r}" for x, y in points)
    return {"polygon": f"POLYGON (({xy}))", "line": f"LINESTRING ({xy})",
            "multi": f"MULTIPOLYGON ((({xy})))", "point": f"POINT ({xy.split(',')[0]})",
            "broken": f"POLYGON (({xy}"}[kind]


WKT = st.one_of(
    st.builds(_wkt, st.lists(_lon_lat(), min_size=1, max_size=7),
              st.sampled_from(["polygon", "polygon", "line", "multi", "point", "broken"])),
    st.builds(lambda pts: "SRID=4326;" + _wkt(pts + pts[:1], "polygon"),
              st.lists(_lon_lat(), min_size=3, max_size=6)),
    CELL)
VERTICES = st.one_of(
    st.builds(lambda pts, sep: sep.join(f"{x!r},{y!r}" for x, y in pts),
              st.lists(_lon_lat(), min_size=0, max_size=6), st.sampled_from([";", "；", "\n"])),
    st.builds(lambda pts: json.dumps([list(p) for p in pts]), st.lists(_lon_lat(), max_size=5)),
    st.builds(lambda pts: ", ".join(f"{x!r} {y!r}" for x, y in pts), st.lists(_lon_lat(),
                                                                             max_size=5)),
    CELL)
HEADERS = ["地块编号", "parcel_id", "作物", "crop", "面积(亩)", "declared_area_mu", "农户姓名",
           "身份证号", "备注", "面积(公顷)", "保险金额", "row_number"]


def _nonblank(cells: list[str]) -> bool:
    """What a user sees as a row: one with a cell that is not only white space."""
    return any(str(c).strip() != "" for c in cells)


def _read_report(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _check(path: Path, out: Path, **kw) -> pd.DataFrame | None:
    """Run the check; a bad-input error is an answer too (its message must say something)."""
    try:
        summary = check_parcels_file(path, out, **kw)
    except InputError as exc:
        assert str(exc).strip()
        report = out / "parcels_report.csv"
        return _read_report(report) if report.exists() else None
    report = _read_report(summary["files"]["report"])
    assert len(report) == summary["rows_in"]
    assert summary["ok"] + summary["repaired"] + summary["rejected"] == len(report)
    return report


@FUZZ
@given(headers=st.lists(st.sampled_from(HEADERS), min_size=0, max_size=5, unique=True),
       shape=st.sampled_from(["wkt", "坐标"]),
       rows=st.lists(st.tuples(WKT, VERTICES, st.lists(CELL, min_size=5, max_size=5)),
                     max_size=6),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_csv_tables_never_a_traceback_and_every_row_reported(headers, shape, rows, encoding):
    """One row per parcel with a WKT (``wkt``) or a vertex list (``坐标``) column."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "parcels.csv"
        table = [[shape, *headers]] + [[w if shape == "wkt" else v, *cells[:len(headers)]]
                                       for w, v, cells in rows]
        try:
            with open(path, "w", newline="", encoding=encoding) as f:
                csv.writer(f).writerows(table)
        except UnicodeEncodeError:  # text GB18030 cannot hold: not a file a user has
            return
        report = _check(path, Path(tmp) / "check", crs="EPSG:4326")
        if report is not None:
            expected = [i + 2 for i, r in enumerate(table[1:]) if _nonblank(r)]
            assert report["row_number"].astype(int).tolist() == expected


@FUZZ
@given(groups=st.lists(st.tuples(st.sampled_from(["A", "B", "", " ", "C"]),
                                 st.lists(st.tuples(CELL, CELL, CELL), min_size=1, max_size=5)),
                       max_size=5),
       with_order=st.booleans())
def test_vertex_rows_every_input_row_lands_in_one_parcel(groups, with_order):
    """One row per vertex (地块编号, 点号, 经度, 纬度): each data row is in exactly one reported
    parcel's ``source_rows``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "界址点.csv"
        table = [["地块编号", "点号", "经度", "纬度"] if with_order else ["地块编号", "经度", "纬度"]]
        for pid, vertices in groups:
            for k, (a, b, c) in enumerate(vertices):
                table.append([pid if k == 0 else "", *([a, b, c] if with_order else [b, c])])
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(table)
        report = _check(path, Path(tmp) / "check", crs="EPSG:4326")
        if report is None:
            return
        covered = []
        for ranges in report["source_rows"]:
            for part in filter(None, ranges.split(",")):
                lo, _, hi = part.partition("-")
                covered += range(int(lo), int(hi or lo) + 1)
        expected = [i + 2 for i, r in enumerate(table[1:]) if _nonblank(r)]
        assert sorted(covered) == expected


GEOJSON_GEOMETRY = st.one_of(
    st.builds(lambda ring: {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
              st.lists(_lon_lat(), min_size=0, max_size=6)),
    st.builds(lambda ring: {"type": "Polygon", "coordinates": [[list(p) for p in ring + ring[:1]]]},
              st.lists(_lon_lat(), min_size=3, max_size=6)),
    st.builds(lambda ring: {"type": "LineString", "coordinates": [list(p) for p in ring]},
              st.lists(_lon_lat(), min_size=2, max_size=4)),
    st.builds(lambda p: {"type": "Point", "coordinates": list(p)}, _lon_lat()),
    st.just(None))
PROPERTY = st.one_of(CELL, NUMBER.filter(lambda v: not (isinstance(v, float) and
                                                        (math.isnan(v) or math.isinf(v)))),
                     st.none(), st.booleans())


@FUZZ
@given(features=st.lists(st.tuples(GEOJSON_GEOMETRY,
                                   st.dictionaries(st.sampled_from(HEADERS), PROPERTY,
                                                   max_size=5)),
                         min_size=1, max_size=6))
def test_geojson_never_a_traceback_and_every_feature_reported(features):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "parcels.geojson"
        doc = {"type": "FeatureCollection",
               "features": [{"type": "Feature", "properties": props, "geometry": geom}
                            for geom, props in features]}
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        report = _check(path, Path(tmp) / "check")
        if report is not None:
            assert report["row_number"].astype(int).tolist() == list(range(1, len(features) + 1))


# shapefile field names (DBF: at most 10 bytes; `declared_a` is `declared_area_mu` cut short)
DBF_HEADERS = ["地块编号", "parcel_id", "作物", "crop", "declared_a", "农户姓名", "备注"]
POLYGON = st.one_of(
    st.builds(lambda ring: __import__("shapely").Polygon(ring + ring[:1]),
              st.lists(_lon_lat(), min_size=3, max_size=6)),
    st.just(None))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # GDAL: names laundered, text not in GBK
@FUZZ
@given(headers=st.lists(st.sampled_from(DBF_HEADERS), min_size=0, max_size=4, unique=True),
       rows=st.lists(st.tuples(POLYGON, st.lists(CELL, min_size=4, max_size=4)), min_size=1,
                     max_size=6),
       encoding=st.sampled_from(["utf-8", "gbk"]))
def test_shapefiles_never_a_traceback_and_every_record_reported(headers, rows, encoding):
    """A DBF in UTF-8 or GBK (with its .cpg), polygons or none, text cells of any kind."""
    import geopandas as gpd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "地块.shp"
        table = {h: [cells[k] for _, cells in rows] for k, h in enumerate(headers)}
        gdf = gpd.GeoDataFrame(table or {"id_": list(range(len(rows)))},
                               geometry=[g for g, _ in rows], crs=4326)
        try:
            gdf.to_file(path, encoding=encoding)
        except (UnicodeEncodeError, ValueError):  # text the codepage cannot hold: no real file
            return
        except Exception as exc:  # GDAL refused to write it (e.g. a cell over 254 bytes)
            if "OGR" in type(exc).__name__ or "pyogrio" in type(exc).__module__:
                return
            raise
        report = _check(path, Path(tmp) / "check")
        if report is not None:
            assert report["row_number"].astype(int).tolist() == list(range(1, len(rows) + 1))


@FUZZ
@given(placemarks=st.lists(st.tuples(CELL, CELL, st.one_of(
    st.lists(_lon_lat(), min_size=3, max_size=6), st.just(None))), min_size=1, max_size=6))
def test_field_app_kml_never_a_traceback_and_every_placemark_reported(placemarks):
    """A KML as a phone field app writes it: a name, a description, a polygon or none."""
    from xml.sax.saxutils import escape

    def placemark(name: str, note: str, ring) -> str:
        shape = "" if ring is None else (
            "<Polygon><outerBoundaryIs><LinearRing><coordinates>"
            + " ".join(f"{x!r},{y!r}" for x, y in ring + ring[:1])
            + "</coordinates></LinearRing></outerBoundaryIs></Polygon>")
        return (f"<Placemark><name>{escape(name)}</name><description>{escape(note)}"
                f"</description>{shape}</Placemark>")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "测绘.kml"
        body = "".join(placemark(*p) for p in placemarks)
        try:
            path.write_text('<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.'
                            f'opengis.net/kml/2.2"><Document>{body}</Document></kml>',
                            encoding="utf-8")
        except UnicodeEncodeError:
            return
        report = _check(path, Path(tmp) / "check")
        if report is not None:
            assert len(report) == len(placemarks)
