"""Parcel readers on a corpus generated here: every format, encoding and table shape users send.

Truth is hand-made: known polygons (areas from pyproj.Geod, an independent geodesic reference),
known attributes, and GCJ-02 files made from WGS84 truth with the published forward algorithm.
"""

from __future__ import annotations

import json
import warnings
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


# --- Shapefiles whose DBF cut the column names at 10 bytes ------------------------------------
def _dbf_names(shp: Path) -> list[bytes]:
    raw = shp.with_suffix(".dbf").read_bytes()
    n = (int.from_bytes(raw[8:10], "little") - 33) // 32
    return [raw[32 + 32 * i:32 + 32 * i + 11].split(b"\0")[0] for i in range(n)]


def _write_shapefile(gdf: gpd.GeoDataFrame, path: Path, encoding: str) -> None:
    with warnings.catch_warnings():  # GDAL warns that it cuts the names: that is the case
        warnings.simplefilter("ignore")
        gdf.to_file(path, encoding=encoding, engine="pyogrio")


def test_gbk_shapefile_with_truncated_contract_names(tmp_path):
    gdf = gpd.GeoDataFrame({"parcel_id": ["DK-01", "DK-02"], "作物": ["冬小麦", "玉米"],
                            "declared_area_mu": [3.1, 2.9], "sum_insured_cny_per_mu": [450.0, 500.0],
                            "household_id": ["H1", "H2"], "farmer_name": ["张三", "李四"]},
                           geometry=[shapely.Polygon(P1), shapely.Polygon(P2)], crs=4326)
    shp = tmp_path / "确权.shp"
    _write_shapefile(gdf, shp, "GBK")
    shp.with_suffix(".cpg").unlink(missing_ok=True)
    names = _dbf_names(shp)
    assert b"declared_a" in names and b"declared_area_mu" not in names   # what GDAL wrote
    assert b"sum_insure" in names and b"household_" in names and b"farmer_nam" in names

    out = read_parcels(shp)        # a job's read: no longer refused
    assert out["declared_area_mu"].tolist() == [3.1, 2.9]
    assert out["sum_insured_cny_per_mu"].tolist() == [450.0, 500.0]
    assert out["household_id"].tolist() == ["H1", "H2"]
    assert out["farmer_name"].tolist() == ["张三", "李四"]
    assert out.attrs["truncated_columns"]["declared_a"] == "declared_area_mu"

    summary = check_parcels_file(shp, tmp_path / "check")
    report = pd.read_csv(summary["files"]["report"])
    assert report["validity"].tolist() == ["ok", "ok"]
    assert all("mapped_truncated_column" in r for r in report["repairs"])
    assert all("COLUMN_NAME_TRUNCATED" in r for r in report["validity_reasons"])
    # the text names the column as found, what it was read as, and the other possibility
    en = report.loc[0, "validity_reasons_en"]
    assert "declared_a read as declared_area_mu" in en and "declared_area_ha" in en
    assert report["area_ratio"].tolist() == pytest.approx(
        [geodesic_mu(P1) / 3.1, geodesic_mu(P2) / 2.9], rel=1e-4)


def test_utf8_shapefile_with_a_chinese_name_cut_mid_character(tmp_path):
    gdf = gpd.GeoDataFrame({"地块编号": ["A"], "作物": ["大豆"], "投保面积(亩)": [3.0]},
                           geometry=[shapely.Polygon(P1)], crs=4326)
    shp = tmp_path / "app.shp"
    _write_shapefile(gdf, shp, "UTF-8")
    cut = "投保面积(亩)".encode()[:10]
    assert cut in _dbf_names(shp)
    with pytest.raises(UnicodeDecodeError):
        cut.decode("utf-8")          # half of 积 is left: GDAL hands it over undecodable
    out = read_parcels(shp)
    assert out["declared_area_mu"].tolist() == [3.0]
    assert out["parcel_id"].tolist() == ["A"]           # 地块编号 (12 bytes) was cut too
    assert out.attrs["truncated_columns"] == {"地块编": "parcel_id", "投保面": "declared_area_mu"}
    mapped = read_parcels(shp, columns={"投保面": "declared_area_mu"})
    assert mapped.attrs["truncated_columns"] == {"地块编": "parcel_id"}   # the user's own is no guess


# --- geometry-only files: checked, flagged per row, refused by the jobs ------------------------
KML_BARE = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document><name>奥维轨迹</name>
<Placemark><name>地块1</name><Polygon><outerBoundaryIs><LinearRing><coordinates>{c1}</coordinates>
</LinearRing></outerBoundaryIs></Polygon></Placemark>
<Placemark><name>地块2</name><Polygon><outerBoundaryIs><LinearRing><coordinates>{c2}</coordinates>
</LinearRing></outerBoundaryIs></Polygon></Placemark>
<Placemark><name>标记点</name><Point><coordinates>116.3,37.4,0</coordinates></Point></Placemark>
</Document></kml>"""


@pytest.mark.parametrize("kmz", [False, True])
def test_geometry_only_kml_is_checked_and_refused_by_jobs(tmp_path, kmz, capsys):
    from agri_3s.cli import main

    path = tmp_path / "doc.kml"
    path.write_text(KML_BARE.format(c1=_kml_coords(P1), c2=_kml_coords(P2)), encoding="utf-8")
    if kmz:
        with zipfile.ZipFile(tmp_path / "外业.kmz", "w") as z:
            z.write(path, "doc.kml")
        path = tmp_path / "外业.kmz"
    summary = check_parcels_file(path, tmp_path / "check")
    assert summary["absent_columns"] == ["crop", "declared_area_mu"]
    report = pd.read_csv(summary["files"]["report"])
    assert report["parcel_id"].tolist() == ["地块1", "地块2", "标记点"]
    assert report["validity"].tolist() == ["ok", "ok", "rejected"]      # the point is no parcel
    assert report["area_mu"].iloc[:2].to_numpy() == pytest.approx(
        [geodesic_mu(P1), geodesic_mu(P2)], rel=1e-4)
    assert report["missing_attributes"].tolist() == ["crop;declared_area_mu"] * 3
    assert all(r.split(";") == ["ATTRIBUTE_ABSENT", "Z_DROPPED"] for r in report["validity_reasons"][:2])
    assert "承保验标和定损需补充" in report.loc[0, "validity_reasons_zh"]

    with pytest.raises(InputError, match="crop, declared_area_mu missing") as e:
        read_parcels(path)          # what underwrite and assess read
    assert "--columns" in str(e.value) and "parcels check" in str(e.value)
    (tmp_path / "series.nc").write_bytes(b"")   # never read: the parcels are refused first
    code = main(["underwrite", str(path), "--season", "2024-10-01/2025-06-15",
                 "--series", str(tmp_path / "series.nc"), "--out", str(tmp_path / "uw")])
    assert code == 2
    said = capsys.readouterr().err
    assert "crop" in said and "declared_area_mu" in said and "--columns" in said


def test_surveyed_vertex_table_without_attributes(tmp_path):
    """A surveyor's 界址点 table in CGCS2000 3-degree Gauss-Krüger zone 39 (EPSG:4527, central
    meridian 117°E, scale 1 on it): a 60 m × 40 m rectangle on the meridian covers 2400 m²."""
    x0, y0 = 39_500_000.0, 4_140_000.0
    corners = [(x0, y0), (x0 + 60, y0), (x0 + 60, y0 + 40), (x0, y0 + 40)]
    rows = [{"地块编号": "JZ-1" if k == 0 else "", "点号": k + 1, "X坐标": x, "Y坐标": y}
            for k, (x, y) in enumerate(corners)]
    rows += [{"地块编号": "JZ-2", "点号": 1, "X坐标": x0 + 100, "Y坐标": y0},
             {"地块编号": "", "点号": 2, "X坐标": x0 + 130, "Y坐标": y0}]   # a line, not a parcel
    path = tmp_path / "界址点.csv"
    pd.DataFrame(rows).to_csv(path, index=False, encoding="gb18030")
    summary = check_parcels_file(path, tmp_path / "check", crs="EPSG:4527")
    report = pd.read_csv(summary["files"]["report"])
    assert report["validity"].tolist() == ["ok", "rejected"]
    assert report.loc[0, "area_mu"] == pytest.approx(2400 / M2_PER_MU, rel=1e-4)
    assert report.loc[0, "missing_attributes"] == "crop;declared_area_mu"
    assert summary["source_crs"] == "EPSG:4527"
    with pytest.raises(InputError, match="crop, declared_area_mu"):
        read_parcels(path, crs="EPSG:4527")


# --- overlaps inside one file -----------------------------------------------------------------
def test_check_flags_parcels_covering_each_other(tmp_path):
    """UTM 50N metres: A and B are the same field insured twice; D (30 × 30 m) lies inside C
    (100 × 100 m); E shares only an edge with A; F overlaps A by 1 m² (a digitising slip)."""
    X, Y = 500_000.0, 4_100_000.0
    box = lambda x, y, w, h: shapely.box(X + x, Y + y, X + x + w, Y + y + h)  # noqa: E731
    geoms = [box(0, 0, 50, 50), box(0, 0, 50, 50), box(200, 0, 100, 100), box(230, 30, 30, 30),
             box(50, 0, 50, 50), box(-1, 49, 1, 1).union(box(-30, 49, 29, 30))]
    gdf = gpd.GeoDataFrame({"parcel_id": list("ABCDEF"), "household_id": ["h1", "h2", "h3",
                                                                             "h4", "h5", "h6"],
                            "crop": "summer_maize", "declared_area_mu": 3.0},
                           geometry=geoms, crs=32650)
    path = tmp_path / "batch.gpkg"
    gdf.to_file(path)
    summary = check_parcels_file(path, tmp_path / "check")
    report = pd.read_csv(summary["files"]["report"], keep_default_na=False)
    by_id = report.set_index("parcel_id")
    assert by_id.loc["A", "overlapping_parcels"] == "B"
    assert by_id.loc["B", "overlapping_parcels"] == "A"
    assert "DUPLICATE_PARCEL" in by_id.loc["A", "validity_reasons"]
    assert by_id.loc["C", "overlapping_parcels"] == "D" and by_id.loc["D", "overlapping_parcels"] == "C"
    assert "OVERLAP" in by_id.loc["D", "validity_reasons"].split(";")
    assert "100%" in by_id.loc["D", "validity_reasons_en"]      # D lies wholly inside C
    assert "9%" in by_id.loc["C", "validity_reasons_en"]         # 900 of C's 10 000 m²
    assert by_id.loc["E", "overlapping_parcels"] == "" and by_id.loc["F", "overlapping_parcels"] == ""
    assert summary["overlapping"] == 4
    # the same pairs as `agri3s parcels overlaps`
    from agri_3s.parcels.overlap import find_overlaps

    pairs = find_overlaps(validate_parcels(read_parcels(path)))
    assert sorted(zip(pairs["parcel_id_a"], pairs["parcel_id_b"])) == [("A", "B"), ("C", "D")]


# --- personal data in the check's outputs ------------------------------------------------------
def test_check_masks_names_and_id_numbers_unless_asked(tmp_path):
    from agri_3s.cli import main

    gdf = gpd.GeoDataFrame({"地块编号": ["A", "B"], "农户姓名": ["张三丰", "李四"],
                            "身份证号": ["371428199001011234", "37142819900101567X"],
                            "作物": ["玉米", "玉米"], "面积(亩)": [3.0, 3.0]},
                           geometry=[shapely.Polygon(P1), None], crs=4326)
    path = tmp_path / "p.geojson"
    gdf.to_file(path)
    assert main(["parcels", "check", str(path), "--out", str(tmp_path / "masked")]) == 0
    for f in ("parcels_report.csv", "rejects.gpkg"):
        raw = (tmp_path / "masked" / f).read_bytes()
        for secret in ("张三丰", "李四", "371428199001011234", "37142819900101567X"):
            assert secret.encode() not in raw, (f, secret)
    report = pd.read_csv(tmp_path / "masked" / "parcels_report.csv", dtype=str)
    assert report["farmer_name"].tolist() == ["张*丰", "李*"]
    assert report["farmer_id_number"].tolist() == ["**************1234", "**************567X"]
    assert gpd.read_file(tmp_path / "masked" / "rejects.gpkg")["farmer_name"].tolist() == ["李*"]

    assert main(["parcels", "check", str(path), "--out", str(tmp_path / "pii"),
                 "--include-pii"]) == 0
    report = pd.read_csv(tmp_path / "pii" / "parcels_report.csv", dtype=str)
    assert report["farmer_name"].tolist() == ["张三丰", "李四"]
    assert report["farmer_id_number"].tolist()[0] == "371428199001011234"


# --- text fields with a length limit -----------------------------------------------------------
def test_text_longer_than_the_limit_rejects_its_row(tmp_path):
    from agri_3s.parcels.validate import MAX_TEXT_CHARS

    notes = ["x" * MAX_TEXT_CHARS, "x" * (MAX_TEXT_CHARS + 1), "=HYPERLINK(\"http://x\",\"y\")" * 400]
    gdf = gpd.GeoDataFrame({"parcel_id": ["A", "B", "C"], "crop": "cotton", "declared_area_mu": 3.0,
                            "备注": notes},
                           geometry=[shapely.Polygon(p) for p in (P1, P2, P3)], crs=4326)
    path = tmp_path / "p.geojson"
    gdf.to_file(path)
    summary = check_parcels_file(path, tmp_path / "check")
    report = pd.read_csv(summary["files"]["report"])
    assert report["validity"].tolist() == ["ok", "rejected", "rejected"]
    assert report.loc[1, "validity_reasons"] == "FIELD_TOO_LONG"
    assert f"备注 is {MAX_TEXT_CHARS + 1} characters long, above the limit of {MAX_TEXT_CHARS}" \
        in report.loc[1, "validity_reasons_en"]
    assert f"is {len(notes[2])} characters long" in report.loc[2, "validity_reasons_en"]
    # the report never carries more than the limit
    assert report["备注"].str.removeprefix("'").str.len().max() <= MAX_TEXT_CHARS  # ' : formula guard


def test_report_cell_with_a_carriage_return_stays_in_its_row(tmp_path):
    """Found by tests/unit/test_parcel_fuzz.py: write_table ends CSV rows with CRLF, so a cell
    holding a lone CR is quoted and stays in its row."""
    path = tmp_path / "p.csv"
    path.write_bytes('wkt,地块编号,作物\r\n,A,"a\rb"\r\n'.encode())
    with pytest.raises(InputError):
        check_parcels_file(path, tmp_path / "check", crs="EPSG:4326")
    report = pd.read_csv(tmp_path / "check" / "parcels_report.csv")
    assert len(report) == 1 and report.loc[0, "crop"] == "a\rb"
