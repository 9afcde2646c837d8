"""Back-testing against field inspections: every figure checked against hand counts (or a peer
library), every status kept, unmatched parcels reported, bad input exits 2 naming the file."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from agri_3s.cli import main
from agri_3s.decisions.evaluate import evaluate, evaluate_claims, evaluate_verdicts, reliability
from agri_3s.errors import InputError


def _book(groups):
    """Verdicts + truth from ``(truth, status, confidence, crop, n)`` groups."""
    rows = [(t, s, c, crop) for t, s, c, crop, n in groups for _ in range(n)]
    ids = [f"P{i:03d}" for i in range(len(rows))]
    verdicts = pd.DataFrame({"parcel_id": ids, "crop": [r[3] for r in rows],
                             "status": [r[1] for r in rows], "confidence": [r[2] for r in rows]})
    truth = pd.DataFrame({"parcel_id": ids, "inspected_status": [r[0] for r in rows]})
    return verdicts, truth


W, M = "winter_wheat", "summer_maize"
# accept: 6 green, 2 yellow, 1 red (wrong, 0.7), 1 no_data; reject: 1 green (wrong, 0.85),
# 1 yellow, 3 red, 1 invalid, 1 of a status the evaluator has never heard of
BOOK = [("通过", "green", 0.9, W, 4), ("合格", "green", 0.9, M, 2), ("green", "yellow", 0.4, W, 2),
        ("green", "red", 0.7, M, 1), ("green", "no_data", np.nan, M, 1),
        ("不通过", "green", 0.85, W, 1), ("red", "yellow", 0.4, M, 1), ("不合格", "red", 0.9, W, 3),
        ("red", "invalid", np.nan, W, 1), ("red", "pending_v2", 0.5, M, 1)]


def test_confusion_keeps_every_status_and_balanced_accuracy_both_ways():
    r = evaluate_verdicts(*_book(BOOK))
    assert r["statuses"] == ["green", "yellow", "red", "no_data", "invalid", "pending_v2"]
    assert r["confusion"] == {
        "accept": {"green": 6, "yellow": 2, "red": 1, "no_data": 1, "invalid": 0, "pending_v2": 0},
        "reject": {"green": 1, "yellow": 1, "red": 3, "no_data": 0, "invalid": 1, "pending_v2": 1}}
    assert r["n"] == 17 and r["n_judged"] == 14
    assert r["balanced_accuracy"] == pytest.approx((6 / 7 + 3 / 4) / 2)
    assert r["balanced_accuracy_strict"] == pytest.approx((6 / 9 + 3 / 5) / 2)
    assert r["review_rate"] == pytest.approx(3 / 14)
    assert r["automation_rate"] == pytest.approx(11 / 14)
    assert r["no_data_rate"] == pytest.approx(1 / 17)
    assert (r["wrong"], r["wrong_green_on_reject"], r["wrong_red_on_accept"]) == (2, 1, 1)
    assert r["wrong_confident"] == 1  # the green on a rejected parcel at 0.85
    assert sorted(w["confidence"] for w in r["wrong_verdicts"]) == [0.7, 0.85]
    # no review row unless the inspector said yellow
    assert "yellow" not in r["confusion"]


def test_figures_per_crop_and_inspector_yellow_row():
    v, t = _book(BOOK + [("待核", "green", 0.95, W, 1)])
    r = evaluate_verdicts(v, t)
    assert r["confusion"]["yellow"]["green"] == 1
    wheat, maize = r["groups"]["winter_wheat"], r["groups"]["summer_maize"]
    # wheat: accept 4 green + 2 yellow; reject 1 green, 3 red, 1 invalid; yellow 1 green
    assert wheat["n"] == 12
    assert wheat["balanced_accuracy"] == pytest.approx((4 / 4 + 3 / 4) / 2)
    assert wheat["balanced_accuracy_strict"] == pytest.approx((4 / 6 + 3 / 4) / 2)
    # maize: accept 2 green, 1 red, 1 no_data; reject 1 yellow, 1 pending
    assert maize["balanced_accuracy"] is None  # no rejected parcel judged green / red
    assert maize["balanced_accuracy_strict"] == pytest.approx((2 / 3 + 0 / 1) / 2)
    # the inspector's yellow is neither accept nor reject: not in balanced accuracy
    assert r["balanced_accuracy"] == pytest.approx((6 / 7 + 3 / 4) / 2)
    assert r["agreement"] == pytest.approx((6 + 3) / 15)  # one yellow judged green: a miss
    assert evaluate_verdicts(v, t, by=None)["groups"] == {}
    no_region = evaluate_verdicts(v, t, by="region")
    assert no_region["groups"] == {} and "region" in no_region["notes"][0]


def test_brier_reliability_and_ece_hand_computed():
    v = pd.DataFrame({"parcel_id": list("ABCDEF"), "crop": W,
                      "status": ["green", "green", "red", "red", "yellow", "green"],
                      "confidence": [0.95, 0.85, 0.55, 0.05, 0.99, np.nan]})
    t = pd.DataFrame({"parcel_id": list("ABCDEF"),
                      "inspected_status": ["green", "red", "red", "green", "red", "green"]})
    r = evaluate_verdicts(v, t)
    # automated with a confidence: A right, B wrong, C right, D wrong (E is yellow, F has none)
    assert r["n_calibrated"] == 4
    assert r["brier"] == pytest.approx((0.05**2 + 0.85**2 + 0.45**2 + 0.05**2) / 4)
    assert r["ece"] == pytest.approx((0.05 + 0.85 + 0.45 + 0.05) / 4)
    rel = pd.DataFrame(r["reliability"])
    assert len(rel) == 10 and rel["n"].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 1, 1]
    assert rel.loc[8, "mean_confidence"] == pytest.approx(0.85)
    assert rel.loc[8, "observed_right"] == 0 and rel.loc[9, "observed_right"] == 1
    assert r["reliability"][1]["mean_confidence"] is None  # JSON-ready: NaN → None


def test_reliability_bin_edges():
    t = reliability(np.array([0.0, 0.1, 0.3, 0.7, 0.99999, 1.0]), np.ones(6, bool))
    assert t["n"].tolist() == [1, 1, 0, 1, 0, 0, 0, 1, 0, 2]  # [k/10, (k+1)/10), last closed
    assert t["bin_low"].tolist()[3] == pytest.approx(0.3)
    with pytest.raises(InputError):
        reliability(np.array([1.2]), np.array([True]))


def test_matches_scikit_learn_on_random_verdicts():
    from sklearn.metrics import balanced_accuracy_score, brier_score_loss

    rng = np.random.default_rng(7)
    n = 5000
    truth = rng.choice(["green", "red"], n, p=[0.8, 0.2])
    status = rng.choice(["green", "yellow", "red", "no_data"], n, p=[0.6, 0.15, 0.2, 0.05])
    conf = rng.uniform(0, 1, n)
    ids = [f"X{i}" for i in range(n)]
    r = evaluate_verdicts(pd.DataFrame({"parcel_id": ids, "crop": W, "status": status,
                                        "confidence": conf}),
                          pd.DataFrame({"parcel_id": ids, "inspected_status": truth}))
    auto = np.isin(status, ["green", "red"])
    assert r["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(truth[auto], status[auto]))
    right = (status[auto] == truth[auto]).astype(int)
    assert r["brier"] == pytest.approx(brier_score_loss(right, conf[auto]))


def test_declaration_and_crop_truth_and_blank_truth_listed():
    v = pd.DataFrame({"parcel_id": ["1", "2", "3", "4"], "crop": [M, M, W, W],
                      "status": ["green", "red", "green", "green"], "confidence": 0.9})
    by_decl = evaluate_verdicts(v, pd.DataFrame({"地块编号": ["1", "2", "3", "4"],
                                                 "申报属实": ["是", "否", "FALSE", None]}))
    assert by_decl["truth_column"] == "declaration_true"
    assert by_decl["confusion"]["accept"]["green"] == 1
    assert by_decl["confusion"]["reject"] == {"green": 1, "red": 1}
    assert by_decl["truth_blank"] == ["4"] and by_decl["n"] == 3
    # the crop found in the field vs the declared crop: 玉米 is summer maize, 棉花 is not wheat
    v5 = pd.concat([v, pd.DataFrame({"parcel_id": ["5"], "crop": [W], "status": ["red"]})])
    by_crop = evaluate_verdicts(v5, pd.DataFrame({"parcel_id": ["1", "2", "3", "4", "5"],
                                                  "实际作物": ["玉米", "summer_maize", "棉花",
                                                           "winter_wheat", " "]}))
    assert by_crop["truth_column"] == "crop" and by_crop["truth_blank"] == ["5"]
    assert by_crop["confusion"]["accept"] == {"green": 2, "red": 1}
    assert by_crop["confusion"]["reject"] == {"green": 1, "red": 0}
    assert {w["parcel_id"] for w in by_crop["wrong_verdicts"]} == {"2", "3"}


def test_missing_parcels_and_results_without_truth_are_listed():
    v = pd.DataFrame({"parcel_id": ["A", "B", "C"], "crop": W, "status": "green",
                      "confidence": 0.9})
    t = pd.DataFrame({"parcel_id": ["B", "C", "Z", "Y"], "inspected_status": "green"})
    r = evaluate_verdicts(v, t)
    assert r["n"] == 2 and r["n_truth"] == 4 and r["n_results"] == 3
    assert r["n_missing_from_results"] == 2 and sorted(r["missing_from_results"]) == ["Y", "Z"]
    assert r["n_without_truth"] == 1 and r["without_truth"] == ["A"]


@pytest.mark.parametrize("bad, message", [
    (pd.DataFrame({"id": ["A"], "inspected_status": ["green"]}), "parcel_id"),
    (pd.DataFrame({"parcel_id": ["A"], "note": ["ok"]}), "truth column"),
    (pd.DataFrame({"parcel_id": ["A", "A"], "inspected_status": ["green", "red"]}), "duplicate"),
    (pd.DataFrame({"parcel_id": ["A"], "inspected_status": ["maybe"]}), "maybe"),
])
def test_bad_truth_tables_raise_input_error(bad, message):
    v = pd.DataFrame({"parcel_id": ["A"], "crop": W, "status": ["green"], "confidence": [0.9]})
    with pytest.raises(InputError, match=message):
        evaluate_verdicts(v, bad)


def _claims():
    return pd.DataFrame({
        "parcel_id": ["A", "B", "C", "D", "E"], "crop": [W, W, W, M, M],
        "event_type": ["hail", "hail", "hail", "flood", "flood"],
        "status": ["estimated", "below_threshold", "survey", "estimated", "no_data"],
        "loss_rate": [0.5, 0.2, 0.6, 0.9, np.nan], "loss_rate_low": [0.4, 0.1, 0.3, 0.8, np.nan],
        "loss_rate_high": [0.6, 0.3, 0.9, 1.0, np.nan],
        "parcel_loss_rate": [0.5, 0.2, 0.6, 0.45, np.nan],
        "damaged_area_mu": [3.0, 3.0, 2.0, 1.0, np.nan], "payout_threshold": 0.3})


def test_claims_mae_bias_coverage_and_payout_side():
    truth = pd.DataFrame({"parcel_id": ["A", "B", "C", "D", "E", "F"],
                          "损失率": ["35%", "40%", "55%", "20%", "10%", "50%"],
                          "地块损失率": ["0.35", "0.40", "0.55", "0.10", "", "0.5"],
                          "受损面积(亩)": ["3", "2", "2", "0.5", "1", "1"]})
    r = evaluate_claims(_claims(), truth)
    # loss rate errors: +0.15, −0.20, +0.05, +0.70 (E has no estimate)
    assert r["loss_rate_n"] == 4
    assert r["loss_rate_mae"] == pytest.approx((0.15 + 0.20 + 0.05 + 0.70) / 4)
    assert r["loss_rate_bias"] == pytest.approx((0.15 - 0.20 + 0.05 + 0.70) / 4)
    assert r["parcel_loss_rate_mae"] == pytest.approx((0.15 + 0.20 + 0.05 + 0.35) / 4)
    assert r["damaged_area_mu_mae"] == pytest.approx((0 + 1 + 0 + 0.5) / 4)
    # intervals: A [.4,.6]∌.35, B [.1,.3]∌.40, C [.3,.9]∋.55, D [.8,1]∌.20
    assert (r["coverage"], r["coverage_n"]) == (0.25, 4)
    assert r["survey_rate"] == pytest.approx(1 / 5)
    # decided: A paid & truth ≥ .3 (right), B unpaid but .40 (wrong), D paid but .20 (wrong)
    assert (r["payout_right_side"], r["payout_n"]) == (pytest.approx(1 / 3), 3)
    assert (r["paid_below_threshold"], r["unpaid_above_threshold"]) == (1, 1)
    assert r["payout_undecided"] == 2  # C survey, E no_data
    assert r["confusion"]["pay"] == {"estimated": 1, "below_threshold": 1, "survey": 1,
                                     "no_data": 0}
    assert r["missing_from_results"] == ["F"]
    assert r["groups"][W]["loss_rate_mae"] == pytest.approx((0.15 + 0.20 + 0.05) / 3)
    assert r["event_types"]["flood"]["loss_rate_mae"] == pytest.approx(0.70)


def test_claims_of_several_events_need_the_event_in_the_truth():
    c = pd.concat([_claims().assign(event_id="e1"), _claims().assign(event_id="e2")])
    with pytest.raises(InputError, match="event_id"):
        evaluate_claims(c, pd.DataFrame({"parcel_id": ["A"], "loss_rate": [0.5]}))
    r = evaluate_claims(c, pd.DataFrame({"parcel_id": ["A", "A"], "event_id": ["e1", "e2"],
                                         "loss_rate": [0.5, 0.4]}))
    assert r["n"] == 2 and r["loss_rate_mae"] == pytest.approx(0.05)
    assert "B/e1" in r["without_truth"]


def test_percent_column_and_bad_rates():
    r = evaluate_claims(_claims(), pd.DataFrame({"parcel_id": ["A"], "loss_rate": ["35"]}))
    assert r["loss_rate_mae"] == pytest.approx(0.15) and "percent" in r["notes"][0]
    with pytest.raises(InputError, match="not a number"):
        evaluate_claims(_claims(), pd.DataFrame({"parcel_id": ["A"], "loss_rate": ["high"]}))


def test_errors_name_the_spreadsheet_row(tmp_path):
    from agri_3s.decisions.evaluate import read_truth

    path = tmp_path / "t.csv"
    path.write_text("parcel_id,inspected_status\nA,green\n\nB,unsure\n", encoding="utf-8")
    v = pd.DataFrame({"parcel_id": ["A", "B"], "crop": W, "status": "green", "confidence": 0.9})
    with pytest.raises(InputError, match=r"row/parcel 4\).*unsure"):
        evaluate_verdicts(v, read_truth(path))  # row 3 is blank: the header is row 1


# --- files and the command ----------------------------------------------------------------------
def _verdict_folder(tmp_path, suffix=".csv"):
    import geopandas as gpd
    import shapely

    from agri_3s.outputs.export import write_table

    v, _ = _book(BOOK)
    gdf = gpd.GeoDataFrame(v, geometry=[shapely.box(i, 0, i + 1, 1) for i in range(len(v))],
                           crs=4326)
    folder = tmp_path / "wheat"
    write_table(gdf, folder / f"verdicts{suffix}")
    return folder


def _truth_csv(path, encoding):
    _, t = _book(BOOK)
    t = t.rename(columns={"parcel_id": "地块编号", "inspected_status": "验标结果"})
    t.to_csv(path, index=False, encoding=encoding)
    return path


@pytest.mark.parametrize("encoding, suffix", [("gbk", ".csv"), ("utf-8-sig", ".geojson"),
                                              ("utf-8", ".parquet")])
def test_evaluate_files_in_every_encoding_and_format(tmp_path, encoding, suffix):
    truth = _truth_csv(tmp_path / "验标.csv", encoding)
    if encoding == "gbk":
        with pytest.raises(UnicodeDecodeError):
            truth.read_bytes().decode("utf-8")  # really GBK
    r = evaluate(_verdict_folder(tmp_path, suffix), truth)
    assert r["balanced_accuracy"] == pytest.approx((6 / 7 + 3 / 4) / 2)
    assert r["confusion"]["reject"]["pending_v2"] == 1
    assert r["inputs"]["truth"]["sha256"] == hashlib.sha256(truth.read_bytes()).hexdigest()


def test_xlsx_truth(tmp_path):
    _, t = _book(BOOK)
    t.to_excel(tmp_path / "truth.xlsx", index=False)
    r = evaluate(_verdict_folder(tmp_path), tmp_path / "truth.xlsx", by=None)
    assert r["n"] == 17 and r["wrong"] == 2


def test_cli_writes_the_report(tmp_path, capsys):
    folder = _verdict_folder(tmp_path)
    truth = _truth_csv(tmp_path / "truth.csv", "gbk")
    out = tmp_path / "eval"
    assert main(["evaluate", str(folder), str(truth), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "balanced_accuracy" in printed and "pending_v2" in printed
    report = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert report["inputs"]["result"]["sha256"] == hashlib.sha256(
        (folder / "verdicts.csv").read_bytes()).hexdigest()
    assert report["balanced_accuracy"] == pytest.approx((6 / 7 + 3 / 4) / 2)
    conf = pd.read_csv(out / "confusion.csv", encoding="utf-8-sig")
    overall = conf[conf["group"] == "(all)"].set_index("truth")
    assert overall.loc["accept", "green"] == 6 and overall.loc["reject", "total"] == 7
    rel = pd.read_csv(out / "reliability.csv", encoding="utf-8-sig")
    # green / red verdicts with truth accept or reject: 6 + 1 + 1 + 3
    assert rel[rel["group"] == "(all)"]["n"].sum() == report["n_calibrated"] == 11


def test_cli_claims_folder(tmp_path, capsys):
    from agri_3s.outputs.export import write_table

    write_table(_claims(), tmp_path / "hail" / "claims.csv")
    pd.DataFrame({"parcel_id": list("ABCD"), "loss_rate": [0.35, 0.4, 0.55, 0.2]}).to_csv(
        tmp_path / "t.csv", index=False)
    assert main(["evaluate", str(tmp_path / "hail"), str(tmp_path / "t.csv"), "--out",
                 str(tmp_path / "e"), "--by", "none"]) == 0
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text(encoding="utf-8"))
    assert report["kind"] == "claims" and report["groups"] == {}
    assert report["n_without_truth"] == 1 and "payout_right_side" in capsys.readouterr().out


@pytest.mark.parametrize("case, named", [
    ("no_parcel_id", "truth.csv"), ("no_truth_column", "truth.csv"), ("duplicates", "truth.csv"),
    ("unreadable", "truth.xlsx"), ("empty_folder", "empty"), ("no_truth_file", "none.csv")])
def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys, case, named):
    folder = _verdict_folder(tmp_path)
    truth = tmp_path / "truth.csv"
    if case == "no_parcel_id":
        truth.write_text("编号,验标结果\nP000,通过\n", encoding="utf-8")
    elif case == "no_truth_column":
        truth.write_text("parcel_id,备注\nP000,ok\n", encoding="utf-8")
    elif case == "duplicates":
        truth.write_text("parcel_id,inspected_status\nP000,green\nP000,red\n", encoding="utf-8")
    elif case == "unreadable":
        truth = tmp_path / "truth.xlsx"
        truth.write_bytes(b"not a spreadsheet")
    elif case == "empty_folder":
        _truth_csv(truth, "utf-8")
        folder = tmp_path / "empty"
        folder.mkdir()
    else:
        truth = tmp_path / "none.csv"
    assert main(["evaluate", str(folder), str(truth)]) == 2
    err = capsys.readouterr().err
    assert "bad input" in err and named in err and "Fix:" in err


@pytest.mark.parametrize("content", [b"PK\x03\x04not a workbook", "zip without a workbook"],
                         ids=["not a zip", "a zip, no workbook"])
def test_an_unreadable_xlsx_truth_table_is_bad_input(content, tmp_path, capsys):
    """A broken .xlsx gave a traceback (zipfile.BadZipFile, KeyError from openpyxl), exit 1."""
    import zipfile

    path = tmp_path / "查勘.xlsx"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "not a workbook")
    (tmp_path / "res").mkdir()
    pd.DataFrame({"parcel_id": ["A"], "status": ["green"]}).to_csv(tmp_path / "res" /
                                                                     "verdicts.csv")
    assert main(["evaluate", str(tmp_path / "res"), str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 2, err
    assert lines[0].startswith(f"bad input: {path}: cannot read the truth table")
    assert lines[1] == "Fix: save it as CSV (UTF-8 or GBK) or XLSX with a header row"
