"""The village posting list (公示) on a hand-made claims table whose totals are worked out here.

东王村 (village column 行政村):
  H1 张三丰  p1: 4.0 mu insured, 4.0 damaged at 50 %, 900 CNY · p2: 2.0 mu, 1.0 at 30 %, 135 CNY
            → 6.0 mu, 5.0 damaged, (0.5·4 + 0.3·1) / 5 = 46.0 %, 1035 CNY
  H2 欧阳修  p3: 3.0 mu, 3.0 at 60 %, 810 CNY, survey           → note 暂估，待查勘
  H3 李四    p4: not affected                                   → not posted
  H4 王五    p5: 2.5 mu, 2.5 at 20 %, 0 CNY, below threshold     → note 未达起赔点
  total: 3 households, 4 parcels, 11.5 mu, 10.5 damaged, 4.6 / 10.5 = 43.8 %, 1845 CNY
a village named like a spreadsheet formula:
  H5 赵六    p6: 1.0 mu, no imagery                             → note 无影像数据，待查勘
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from openpyxl import load_workbook

from agri_3s.errors import InputError
from agri_3s.outputs.notice import posting_lists, villages

HOSTILE = '=HYPERLINK("http://x","y")'
NAN = np.nan


def claims() -> pd.DataFrame:
    rows = [  # village, household, name, id, parcel, declared, damaged, loss, indemnity, status
        ("东王村", "H1", "张三丰", "371428199001011234", "p1", 4.0, 4.0, 0.5, 900.0, "estimated"),
        ("东王村", "H1", "张三丰", "371428199001011234", "p2", 2.0, 1.0, 0.3, 135.0, "estimated"),
        ("东王村", "H2", "欧阳修", "37142819900101567X", "p3", 3.0, 3.0, 0.6, 810.0, "survey"),
        ("东王村", "H3", "李四", "371428199001019999", "p4", 5.0, 0.0, 0.0, 0.0, "not_affected"),
        ("东王村", "H4", "王五", "371428199001018888", "p5", 2.5, 2.5, 0.2, 0.0,
         "below_threshold"),
        (HOSTILE, "H5", "赵六", "371428199001017777", "p6", 1.0, NAN, NAN, NAN, "no_data"),
    ]
    t = pd.DataFrame(rows, columns=["行政村", "household_id", "farmer_name", "farmer_id_number",
                                    "parcel_id", "declared_area_mu", "damaged_area_mu",
                                    "loss_rate", "indemnity_cny", "status"])
    t["event_id"], t["event_type"], t["event_date"] = "hail-2025-05-14", "hail", "2025-05-14"
    return t


@pytest.fixture(scope="module")
def posted(tmp_path_factory):
    out = tmp_path_factory.mktemp("notices")
    return posting_lists(claims(), out), out


def test_household_rows_and_village_totals(posted):
    result, _ = posted
    assert result["grouped_by"] == "行政村" and result["villages"] == 2
    assert result["households"] == 4 and result["indemnity_cny"] == pytest.approx(1845.0)
    table = pd.read_csv(result["files"]["东王村"]["csv"], dtype={"身份证号": str, "农户编号": str})
    assert table.columns.tolist() == ["序号", "农户姓名", "身份证号", "农户编号", "地块数",
                                      "投保面积(亩)", "受灾面积(亩)", "损失率(%)", "赔款(元)",
                                      "备注"]
    body, total = table.iloc[:-1], table.iloc[-1]
    assert body["农户编号"].tolist() == ["H1", "H2", "H4"]                 # H3 not affected
    assert body["农户姓名"].tolist() == ["张*", "欧阳*", "王*"]
    assert body["身份证号"].tolist() == ["**************1234", "**************567X",
                                     "**************8888"]
    assert body["地块数"].astype(int).tolist() == [2, 1, 1]
    assert body["投保面积(亩)"].tolist() == [6.0, 3.0, 2.5]
    assert body["受灾面积(亩)"].tolist() == [5.0, 3.0, 2.5]
    assert body["损失率(%)"].tolist() == [46.0, 60.0, 20.0]
    assert body["赔款(元)"].tolist() == [1035.0, 810.0, 0.0]
    assert body["备注"].fillna("").tolist() == ["", "暂估，待查勘", "未达起赔点"]
    assert total["序号"] == "合计" and total["农户姓名"] == "3 户"
    assert int(total["地块数"]) == 4
    assert float(total["投保面积(亩)"]) == 11.5 and float(total["受灾面积(亩)"]) == 10.5
    assert float(total["损失率(%)"]) == 43.8 and float(total["赔款(元)"]) == 1845.0


def test_no_name_or_id_number_in_any_file(posted):
    _, out = posted
    files = list(out.iterdir())
    assert len(files) == 5                         # 2 villages × (xlsx, csv) + villages.csv
    for f in files:
        raw = f.read_bytes()
        if f.suffix == ".xlsx":                    # a zip: look inside its XML
            import zipfile

            with zipfile.ZipFile(f) as z:
                raw = b"".join(z.read(n) for n in z.namelist())
        for secret in ("张三丰", "欧阳修", "王五", "赵六", "三丰", "199001011234"):
            assert secret.encode() not in raw, (f.name, secret)


def test_xlsx_is_a_posting_and_never_runs_a_formula(posted):
    result, out = posted
    ws = load_workbook(result["files"]["东王村"]["xlsx"]).active
    assert "东王村" in ws["A1"].value and "理赔公示" in ws["A1"].value
    assert "冰雹" in ws["A2"].value and "1,845.00" in ws["A2"].value and "待查勘" in ws["A2"].value
    assert [c.value for c in ws[3]][:2] == ["序号", "农户姓名"]
    assert ws["A4"].value == 1 and ws["B4"].value == "张*"
    assert ws["A7"].value == "合计" and ws["A7"].font.bold and ws["I7"].value == 1845.0
    hostile = result["files"][HOSTILE]
    assert hostile["xlsx"].parent == out and not set('"/\\:*?<>|') & set(hostile["xlsx"].name)
    ws = load_workbook(hostile["xlsx"]).active
    assert ws["A1"].value.startswith(HOSTILE) and ws["A1"].data_type == "s"   # text, not formula
    assert ws["B4"].value == "赵*" and ws["J4"].value == "无影像数据，待查勘"
    assert ws["I4"].value is None                      # no estimate: blank, not 0
    summary = pd.read_csv(result["summary"])
    assert summary["村"].tolist() == ["'" + HOSTILE, "东王村"]        # OWASP: a leading '
    assert summary["赔款(元)"].tolist() == [0.0, 1845.0]


def test_villages_from_the_household_id():
    t = pd.DataFrame({"household_id": ["371428101203010007", "371428101203010008",
                                       "371428101204010001", "H9-0001", "H9-0002", "H10_0001"]})
    labels, how = villages(t)
    assert how == "household_id prefix"
    assert labels.tolist() == ["371428101203", "371428101203", "371428101204", "H9", "H9", "H10"]
    assert villages(t.assign(乡镇="城关镇"))[0].tolist() == ["城关镇"] * 6
    assert villages(t.assign(village="东王", 乡镇="城关镇"))[1] == "village"   # village first
    with pytest.raises(InputError, match="--by"):
        villages(pd.DataFrame({"household_id": ["0001", "0002"]}))
    with pytest.raises(InputError, match="not in the claims"):
        villages(t, by="组")


def test_english_lists_and_one_event_at_a_time(tmp_path):
    result = posting_lists(claims(), tmp_path / "en", lang="en", by="行政村")
    table = pd.read_csv(result["files"]["东王村"]["csv"])
    assert table.columns[:2].tolist() == ["no", "farmer"]
    assert table.iloc[-1]["no"] == "total" and table.iloc[1]["note"] == "provisional: field survey"
    two = pd.concat([claims(), claims().assign(event_id="flood-2025-07-20", event_type="flood")])
    with pytest.raises(InputError, match="--event"):
        posting_lists(two, tmp_path / "two")
    flood = posting_lists(two, tmp_path / "flood", event="flood-2025-07-20")
    assert flood["indemnity_cny"] == pytest.approx(1845.0)
    with pytest.raises(InputError, match="not a claims table"):
        posting_lists(claims().drop(columns="indemnity_cny"), tmp_path / "bad")


def test_notice_command_on_a_result_folder(tmp_path, capsys):
    from agri_3s.cli import main
    from agri_3s.outputs.export import write_table

    result = tmp_path / "hail"
    t = claims()
    gdf = gpd.GeoDataFrame(t, geometry=[shapely.box(116.3 + i * 1e-3, 37.4, 116.3005 + i * 1e-3,
                                                    37.4004) for i in range(len(t))], crs=4326)
    write_table(gdf, result / "claims.geojson")
    assert main(["notice", str(result), "--out", str(tmp_path / "notices")]) == 0
    said = capsys.readouterr().out
    assert "2 village(s) by 行政村" in said and "4 household(s)" in said and "1,845.00" in said
    assert (tmp_path / "notices" / "东王村.xlsx").is_file()
    (tmp_path / "empty").mkdir()
    assert main(["notice", str(tmp_path / "empty"), "--out", str(tmp_path / "n2")]) == 2
    assert "no claims.geojson" in capsys.readouterr().err
