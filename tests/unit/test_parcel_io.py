"""Parcel readers on a corpus generated here: every format, encoding and table shape users send.

Truth is hand-made: known polygons (areas from pyproj.Geod, an independent geodesic reference),
known attributes, and GCJ-02 files made from WGS84 truth with the published forward algorithm.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from pyproj import Geod

from agri_3s.crs import wgs84_to_gcj02
from agri_3s.errors import InputError
from agri_3s.parcels.io import parse_vertex_list, read_parcels
from agri_3s.parcels.validate import check_parcels_file, validate_parcels

GEOD = Geod(ellps="WGS84")
M2_PER_MU = 10_000 / 15

# three ~3-mu parcels near Dezhou, Shandong (WGS84), the first a skewed quadrilateral
SQUARE = [(116.3000, 37.4000), (116.3005, 37.4000), (116.3005, 37.4004), (116.3000, 37.4004)]
P1 = [(116.3000, 37.4000), (116.3006, 37.40005), (116.30055, 37.4004), (116.29995, 37.40038)]
P2 = [(x + 0.001, y) for x, y in SQUARE]
P3 = [(x + 0.002, y) for x, y in SQUARE]


def geodesic_mu(coords) -> float:
    return abs(GEOD.geometry_area_perimeter(shapely.Polygon(coords))[0]) / M2_PER_MU


def wkt(coords, close=True) -> str:
    pts = list(coords) + ([coords[0]] if close else [])
    return "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in pts) + "))"


# --- Shapefile in GBK without .cpg ------------------------------------------------------------
def test_gbk_shapefile_without_cpg(tmp_path):
    gdf = gpd.GeoDataFrame({"地块编号": ["DK-01", "DK-02"], "农户姓名": ["张三", "李四"],
                            "作物": ["冬小麦", "玉米"], "面积": [3.1, 2.9]},
                           geometry=[shapely.Polygon(P1), shapely.Polygon(P2)], crs=4326)
    shp = tmp_path / "确权.shp"
    gdf.to_file(shp, encoding="GBK", engine="pyogrio")
    shp.with_suffix(".cpg").unlink(missing_ok=True)
    dbf = shp.with_suffix(".dbf")
    raw = bytearray(dbf.read_bytes())
    raw[29] = 0  # no language driver id either, as many Chinese tools leave it
    dbf.write_bytes(bytes(raw))
    assert "张三".encode("gbk") in raw and "张三".encode() not in raw

    out = read_parcels(shp)
    assert out.attrs["encoding"] == "GB18030"
    assert out["farmer_name"].tolist() == ["张三", "李四"]
    assert out["parcel_id"].tolist() == ["DK-01", "DK-02"]
    assert out["crop"].tolist() == ["winter_wheat", "summer_maize"]
    assert out["crop_input"].tolist() == ["冬小麦", "玉米"]   # the user's text is kept
    assert out["row_number"].tolist() == [1, 2]


# --- GeoJSON with an unclosed ring -----------------------------------------------------------
def test_geojson_unclosed_ring_is_closed_and_noted(tmp_path):
    feats = [{"type": "Feature", "properties": {"parcel_id": pid, "crop": "winter_wheat",
                                                "declared_area_mu": 3.0},
              "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}}
             for pid, ring in (("A", P1 + [P1[0]]), ("B", P2))]  # B is not closed
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    out = validate_parcels(read_parcels(path))
    assert out["validity"].tolist() == ["ok", "repaired"]
    assert out.loc[1, "validity_reasons"].startswith("RING_NOT_CLOSED")
    assert out.loc[1, "repairs"] == "closed_ring"
    assert out.loc[1, "area_mu"] == pytest.approx(geodesic_mu(P2), rel=1e-4)


# --- KML (3-D, Chinese ExtendedData, two folders) and KMZ ---------------------------------
KML = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document><name>外业采集</name>
<Folder><name>一组</name>
<Placemark><name>DK-01</name><description>张三</description>
<ExtendedData><Data name="作物"><value>冬小麦</value></Data>
<Data name="面积(亩)"><value>{a1}</value></Data></ExtendedData>
<Polygon><outerBoundaryIs><LinearRing><coordinates>{c1}</coordinates></LinearRing></outerBoundaryIs>
</Polygon></Placemark></Folder>
<Folder><name>二组</name>
<Placemark><name>DK-02</name>
<ExtendedData><Data name="作物"><value>夏玉米</value></Data>
<Data name="面积(亩)"><value>{a2}</value></Data></ExtendedData>
<Polygon><outerBoundaryIs><LinearRing><coordinates>{c2}</coordinates></LinearRing></outerBoundaryIs>
</Polygon></Placemark></Folder></Document></kml>"""


def _kml_coords(ring) -> str:
    return " ".join(f"{x},{y},35.5" for x, y in list(ring) + [ring[0]])


def _write_kml(path: Path) -> Path:
    path.write_text(KML.format(c1=_kml_coords(P1), c2=_kml_coords(P2), a1=round(geodesic_mu(P1), 2),
                               a2=round(geodesic_mu(P2), 2)), encoding="utf-8")
    return path


@pytest.mark.parametrize("kmz", [False, True])
def test_kml_and_kmz_3d(tmp_path, kmz):
    path = _write_kml(tmp_path / "doc.kml")
    if kmz:
        with zipfile.ZipFile(tmp_path / "parcels.kmz", "w") as z:
            z.write(path, "doc.kml")
        path = tmp_path / "parcels.kmz"
    out = validate_parcels(read_parcels(path))
    assert out["parcel_id"].tolist() == ["DK-01", "DK-02"]          # from the placemark names
    assert out["crop"].tolist() == ["winter_wheat", "summer_maize"]  # Chinese field names kept
    assert out["kml_folder"].tolist() == ["一组", "二组"]
    assert out["description"].tolist()[0] == "张三"
    assert out["validity"].tolist() == ["ok", "ok"]
    assert all(r.startswith("Z_DROPPED") for r in out["validity_reasons"])
    assert not out.geometry.has_z.any()
    assert out["area_mu"].to_numpy() == pytest.approx([geodesic_mu(P1), geodesic_mu(P2)], rel=1e-4)


# --- GeoPackage and GeoParquet ----------------------------------------------------------------
def _frame(crs=4326):
    return gpd.GeoDataFrame({"parcel_id": ["A", "B"], "crop": ["winter_wheat", "cotton"],
                             "declared_area_mu": [3.0, 3.0], "farmer_id_number": ["37010219800101001X",
                                                                                   "370102198001010021"]},
                            geometry=[shapely.Polygon(P1), shapely.Polygon(P2)], crs=crs)


def test_geopackage_layer_and_geoparquet(tmp_path):
    gpkg = tmp_path / "p.gpkg"
    _frame().to_file(gpkg, layer="wheat")
    _frame().iloc[:1].to_file(gpkg, layer="other")
    assert read_parcels(gpkg, layer="wheat")["parcel_id"].tolist() == ["A", "B"]
    pq = tmp_path / "p.parquet"
    _frame(4490).to_parquet(pq)
    out = read_parcels(pq)
    assert out.crs.to_epsg() == 4490 and out["row_number"].tolist() == [1, 2]
    # ID numbers stay text (an 18-digit number as float would lose its last digits)
    assert out["farmer_id_number"].tolist()[1] == "370102198001010021"


# --- CSV / XLSX shapes ------------------------------------------------------------------------
def test_csv_wkt_with_ewkt_srid_and_broken_rows(tmp_path):
    df = pd.DataFrame({"地块编号": ["A", "B", "C"], "作物": ["小麦", "小麦", "小麦"],
                       "面积(亩)": ["3.0", "3.0亩", "3"],
                       "wkt": ["SRID=4326;" + wkt(P1), "SRID=4326;" + wkt(P2, close=False),
                               "POLYGON ((116.3 37.4, oops"]})
    path = tmp_path / "p.csv"
    df.to_csv(path, index=False)
    gdf = read_parcels(path)
    assert gdf.crs.to_epsg() == 4326
    assert gdf["declared_area_mu"].tolist() == [3.0, 3.0, 3.0]
    out = validate_parcels(gdf)
    assert out["row_number"].tolist() == [2, 3, 4]   # spreadsheet rows (header is row 1)
    assert out["validity"].tolist() == ["ok", "repaired", "rejected"]
    assert out.loc[1, "validity_reasons"].split(";")[0] == "RING_NOT_CLOSED"
    assert out.loc[2, "validity_reasons"] == "GEOMETRY_UNREADABLE"
    assert "无法读取" in out.loc[2, "validity_reasons_zh"]


def test_csv_vertex_list_gb18030_in_gcj02(tmp_path):
    gcj = [tuple(map(float, wgs84_to_gcj02(x, y))) for x, y in P1]
    lists = [";".join(f"{x:.9f},{y:.9f}" for x, y in gcj),
             json.dumps([[x, y] for x, y in gcj[::-1]])]
    df = pd.DataFrame({"地块编号": ["A", "B"], "作物": ["水稻", "早稻"], "面积(公顷)": ["0.2", "0.2"],
                       "保险金额": ["900", "900"], "坐标": lists})
    path = tmp_path / "app.csv"
    df.to_csv(path, index=False, encoding="gb18030")
    out = validate_parcels(read_parcels(path, crs="gcj02"))
    assert out.crs.to_epsg() == 4326
    assert out.attrs["source_crs"] == "GCJ-02"
    assert out["crop"].tolist() == ["rice_single", "rice_early"]
    assert out["declared_area_mu"].tolist() == pytest.approx([3.0, 3.0])   # 0.2 ha × 15
    assert out["sum_insured_cny_per_mu"].tolist() == pytest.approx([300.0, 300.0])
    for geom in out.geometry:  # every vertex back on the WGS84 truth, well within 0.5 m
        for x, y in shapely.get_coordinates(geom):
            d = min(abs(GEOD.inv(x, y, px, py)[2]) for px, py in P1)
            assert d < 0.05
    assert all("CRS_CONVERTED" in r for r in out["validity_reasons"])
    assert "GCJ-02" in out.loc[0, "validity_reasons_en"]


def test_vertex_list_formats():
    expect = [[116.1, 37.2], [116.2, 37.2], [116.2, 37.3]]
    for text in ("116.1,37.2;116.2,37.2;116.2,37.3", "116.1 37.2, 116.2 37.2, 116.2 37.3",
                 "[[116.1, 37.2], [116.2, 37.2], [116.2, 37.3]]", "116.1,37.2,116.2,37.2,116.2,37.3",
                 "116.1,37.2,10；116.2,37.2,10；116.2,37.3,10"):
        assert parse_vertex_list(text).tolist() == expect


def test_xlsx_one_row_per_vertex(tmp_path):
    rows = []
    for pid, ring, crop in (("A", P1, "冬小麦"), ("B", P2, "大豆")):
        order = [3, 1, 4, 2]  # rows out of order: the 点号 column decides
        for k in order:
            rows.append({"地块编号": pid if k == 3 else None, "作物": crop, "面积(亩)": 3.0,
                         "点号": k, "经度": ring[k - 1][0], "纬度": ring[k - 1][1]})
    rows.append({"地块编号": "C", "作物": "棉花", "面积(亩)": 3.0, "点号": 1, "经度": 116.3,
                 "纬度": 37.4})  # a single vertex is not a parcel
    path = tmp_path / "界址点.xlsx"
    pd.DataFrame(rows).to_excel(path, index=False)
    out = validate_parcels(read_parcels(path, crs="EPSG:4326"))
    assert out["parcel_id"].tolist() == ["A", "B", "C"]
    assert out["row_number"].tolist() == [2, 6, 10]
    assert out["source_rows"].tolist() == ["2-5", "6-9", "10"]
    assert out["validity"].tolist() == ["ok", "ok", "rejected"]
    assert out.loc[2, "validity_reasons"].startswith("TOO_FEW_VERTICES")
    assert out["area_mu"].iloc[:2].to_numpy() == pytest.approx([geodesic_mu(P1), geodesic_mu(P2)],
                                                               rel=1e-4)


def test_csv_needs_a_crs(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"parcel_id": ["A"], "crop": ["cotton"], "declared_area_mu": [3],
                  "wkt": [wkt(P1)]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="--crs") as e:
        read_parcels(path)
    assert "p.csv" in str(e.value) and "gcj02" in str(e.value)


def test_missing_columns_and_user_mapping(tmp_path):
    path = tmp_path / "p.geojson"
    gdf = _frame().rename(columns={"parcel_id": "编号", "declared_area_mu": "亩"})
    gdf.to_file(path)
    with pytest.raises(InputError, match="parcel_id, declared_area_mu") as e:
        read_parcels(path)
    assert "--columns" in str(e.value)
    out = read_parcels(path, columns="编号=parcel_id,亩=declared_area_mu")
    assert out["parcel_id"].tolist() == ["A", "B"]
    assert out.attrs["column_mapping"]["编号"] == "parcel_id"
    with pytest.raises(InputError, match="not in the file"):
        read_parcels(path, columns={"地块": "parcel_id"})


def test_swapped_and_projected_coordinates(tmp_path):
    swapped = _frame()
    swapped.geometry = [shapely.Polygon([(y, x) for x, y in P1]), shapely.Polygon(P2)]
    path = tmp_path / "swapped.geojson"
    swapped.to_file(path)
    out = validate_parcels(read_parcels(path))
    assert out["validity"].tolist() == ["repaired", "ok"]
    assert out.loc[0, "validity_reasons"].startswith("COORDS_SWAPPED")
    assert out.loc[0, "area_mu"] == pytest.approx(geodesic_mu(P1), rel=1e-4)

    metres = _frame().to_crs(4527).set_crs(4326, allow_override=True)  # GK metres "in degrees"
    path = tmp_path / "metres.gpkg"
    metres.to_file(path)
    with pytest.raises(InputError, match="projected metres"):
        read_parcels(path)
    assert read_parcels(path, crs="EPSG:4527").crs.to_epsg() == 4527


def test_rows_in_equal_rows_out_plus_rejects(tmp_path):
    """The check report keeps every row; rejects.gpkg holds exactly the rejected ones."""
    geoms = [shapely.Polygon(P1), shapely.Polygon(P2), None,                       # empty
             shapely.Polygon([(116.3, 37.4), (116.3005, 37.4004), (116.3005, 37.4),
                              (116.3, 37.4004)]),                                   # bow-tie
             shapely.Polygon(P3), shapely.Point(116.3, 37.4)]
    gdf = gpd.GeoDataFrame({"地块编号": ["A", "B", "C", "D", "A", "F"], "作物": "冬小麦",
                            "面积(亩)": [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]}, geometry=geoms, crs=4326)
    path = tmp_path / "mixed.gpkg"
    gdf.to_file(path)
    summary = check_parcels_file(path, tmp_path / "check")
    report = pd.read_csv(summary["files"]["report"], dtype={"parcel_id": str})
    rejects = gpd.read_file(summary["files"]["rejects"])
    assert len(report) == len(gdf) == summary["rows_in"]
    assert summary["ok"] + summary["repaired"] + summary["rejected"] == len(gdf)
    assert len(rejects) == summary["rejected"] == 3              # C empty, second A, F a point
    assert report["validity"].tolist() == ["ok", "ok", "rejected", "repaired", "rejected",
                                           "rejected"]
    assert report.columns[:10].tolist() == ["row_number", "parcel_id", "validity",
                                            "validity_reasons", "validity_reasons_zh",
                                            "validity_reasons_en", "repairs", "area_mu",
                                            "declared_area_mu", "area_ratio"]
    assert report.loc[4, "validity_reasons"] == "DUPLICATE_ID"
    assert "第 1 行" in report.loc[4, "validity_reasons_zh"]


def test_check_exits_bad_input_only_when_nothing_usable(tmp_path):
    gdf = gpd.GeoDataFrame({"parcel_id": ["A", "B"], "crop": "cotton", "declared_area_mu": 3.0},
                           geometry=[None, shapely.Point(116.3, 37.4)], crs=4326)
    path = tmp_path / "bad.gpkg"
    gdf.to_file(path)
    with pytest.raises(InputError, match="no usable parcel"):
        check_parcels_file(path, tmp_path / "check")
    assert len(pd.read_csv(tmp_path / "check" / "parcels_report.csv")) == 2  # report still written
