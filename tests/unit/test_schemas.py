"""The published export schemas, spreadsheet-safe CSV cells and field-length limits.

Truth here is independent of the code under test: rows written by hand (a valid verdict, and
one mutation per rule a platform relies on), the OWASP list of formula-starting characters,
the Frictionless Table Schema v2 rules, and the values a hostile table was built with.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import re
from importlib import resources

import geopandas as gpd
import jsonschema
import numpy as np
import pandas as pd
import pytest
import shapely

from agri_3s.outputs.export import neutralise_formulas, write_schemas, write_table
from agri_3s.outputs.privacy import mask_id_number, mask_name, mask_pii
from agri_3s.outputs.schemas import (
    EXPORTS,
    json_schema,
    shipped_texts,
    table_schema,
    text_limits,
)
from agri_3s.types import SCHEMA_VERSION, TEXT_MAX_LENGTH
from tests.export_schemas import export_rows, validate_folder


def _validator(schema):
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _ok(schema, row) -> bool:
    return _validator(schema).is_valid(row)


# --- the shipped files ---------------------------------------------------------------------

def test_shipped_schema_files_are_current_and_in_the_package():
    folder = resources.files("agri_3s.outputs.schemas")
    texts = shipped_texts()
    assert sorted(texts) == sorted(f"{e}.{k}.json" for e in EXPORTS
                                   for k in ("schema", "tableschema"))
    for name, text in texts.items():
        assert folder.joinpath(name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run `python -m agri_3s.outputs.schemas`")


@pytest.mark.parametrize("export", EXPORTS)
def test_json_schemas_are_valid_2020_12_and_versioned(export):
    schema = json_schema(export)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:agri_3s:schema:{export}:{SCHEMA_VERSION}"
    assert set(schema["required"]) <= set(schema["properties"])
    if export != "parcels_report":
        version = schema["properties"]["schema_version"]
        assert re.fullmatch(version["pattern"], SCHEMA_VERSION)
        assert "schema_version" in schema["required"]


#: Table Schema v2 (datapackage.org/standard/table-schema): types and the constraints each takes.
TS_CONSTRAINTS = {
    "string": {"required", "unique", "pattern", "enum", "minLength", "maxLength"},
    "number": {"required", "unique", "enum", "minimum", "maximum", "exclusiveMinimum",
               "exclusiveMaximum"},
    "integer": {"required", "unique", "enum", "minimum", "maximum", "exclusiveMinimum",
                "exclusiveMaximum"},
    "boolean": {"required", "enum"},
    "date": {"required", "unique", "enum", "minimum", "maximum"},
}


@pytest.mark.parametrize("export", EXPORTS)
def test_table_schemas_follow_the_frictionless_v2_rules(export):
    ts = table_schema(export)
    assert ts["$schema"] == "https://datapackage.org/profiles/2.0/tableschema.json"
    assert ts["version"] == SCHEMA_VERSION
    assert ts["missingValues"] == [""]
    assert ts["fieldsMatch"] in ("exact", "equal", "subset", "superset", "partial")
    names = [f["name"] for f in ts["fields"]]
    assert len(names) == len(set(names)) and set(ts["primaryKey"]) <= set(names)
    assert names == list(json_schema(export)["properties"])
    for field in ts["fields"]:
        assert set(field) <= {"name", "type", "description", "constraints", "format"}
        assert set(field.get("constraints", {})) <= TS_CONSTRAINTS[field["type"]], field
        pattern = field.get("constraints", {}).get("pattern")
        if pattern:  # XML Schema regexes: implicitly anchored, no (?:…) groups
            assert not pattern.startswith("^") and not pattern.endswith("$")
            assert "(?" not in pattern
        for v in field.get("constraints", {}).get("enum", []):
            assert isinstance(v, str) and v  # "" is a missing value, never an enum member


# --- the JSON Schema against hand-written rows ---------------------------------------------

VERDICT_ROW = {
    "row_number": 7, "parcel_id": "371428-0007", "household_id": "H1", "policy_id": "PW-7",
    "crop": "winter_wheat", "declared_area_mu": 4.2, "sum_insured_cny_per_mu": 450.0,
    "farmer_name": "张*丰", "farmer_id_number": "**************1234", "validity": "ok",
    "validity_reasons": "", "validity_reasons_zh": "", "validity_reasons_en": "", "repairs": "",
    "missing_attributes": "",
    "area_mu": 4.17, "area_ratio": 0.99, "status": "green",
    "reasons": "HARVEST_UNOBSERVED;CROP_MODEL_UNAVAILABLE", "reasons_zh": "收获期无晴空观测",
    "reasons_en": "no clear look in the harvest window", "planted_fraction": 1.0,
    "emergence_date": "2024-11-10", "peak_ndvi": 0.72, "peak_date": "2025-04-25",
    "measured_area_mu": 4.17, "parcel_area_mu": 4.17, "clear_observations": 43.0,
    "unobserved": "harvest", "full_pixels": 12.0, "pixel_rule": "buffered",
    "crop_model_p_declared": None, "crop_model_crop": None, "decided_by": "rules",
    "p_declared": 0.94, "confidence": 0.94, "schema_version": SCHEMA_VERSION,
    "village": "城关镇",  # the user's own column, passed through
}

BAD_VERDICTS = {
    "name not masked": {"farmer_name": "张三丰"},
    "two-character name not masked": {"farmer_name": "王五"},
    "ID number not masked": {"farmer_id_number": "371428199001011234"},
    "ID number half masked": {"farmer_id_number": "3714281990******34"},
    "unknown status": {"status": "accepted"},
    "status missing": {"status": None},
    "reason codes in lower case": {"reasons": "planted"},
    "confidence above 1": {"confidence": 1.2},
    "negative planted fraction": {"planted_fraction": -0.1},
    "not a date": {"peak_date": "2025-13-45"},
    "unknown window": {"unobserved": "winter"},
    "unknown decision": {"decided_by": "oracle"},
    "validity missing": {"validity": None},
    "own column too long": {"village": "村" * (TEXT_MAX_LENGTH + 1)},
    "id too long": {"parcel_id": "P" * (TEXT_MAX_LENGTH + 1)},
    "reason text too long": {"reasons_en": "x" * 4001},
    "own column not a scalar": {"village": ["a", "b"]},
    "row number not whole": {"row_number": 7.5},
}


def test_a_hand_written_verdict_row_is_valid():
    schema = json_schema("verdicts")
    assert _ok(schema, VERDICT_ROW), list(_validator(schema).iter_errors(VERDICT_ROW))


@pytest.mark.parametrize("case", BAD_VERDICTS)
def test_each_rule_of_the_verdict_schema_bites(case):
    row = {**VERDICT_ROW, **BAD_VERDICTS[case]}
    assert not _ok(json_schema("verdicts"), row)


@pytest.mark.parametrize("column", ["row_number", "parcel_id", "status", "confidence",
                                    "schema_version", "validity", "unobserved"])
def test_required_columns_must_be_present(column):
    row = {k: v for k, v in VERDICT_ROW.items() if k != column}
    assert not _ok(json_schema("verdicts"), row)


CLAIM_ROW = {
    **{k: VERDICT_ROW[k] for k in ("row_number", "parcel_id", "household_id", "policy_id",
                                   "crop", "declared_area_mu", "sum_insured_cny_per_mu",
                                   "farmer_name", "farmer_id_number", "validity",
                                   "validity_reasons", "validity_reasons_zh",
                                   "validity_reasons_en", "repairs", "area_mu", "area_ratio",
                                   "missing_attributes")},
    "claim_id": "CLM-A9786022C1F5C2DA", "event_id": "hail-2025-05-14", "event_type": "hail",
    "event_date": "2025-05-14", "baseline_method": "neighbours+own_pre", "soil_ndvi": 0.16,
    "soil_source": "own", "loss_rate": 0.45, "loss_rate_low": 0.38, "loss_rate_high": 0.52,
    "parcel_loss_rate": 0.45, "damaged_area_mu": 4.2, "flooded_fraction": None,
    "footprint_share": 1.0, "loss_grade": "moderate", "growth_stage": "heading_to_maturity",
    "stage_share": 1.0, "payout_threshold": 0.3, "total_loss_at": 0.8, "deductible": 0.0,
    "indemnity_cny": 850.5, "status": "survey", "n_neighbours": 30, "reasons": "LOSS_ESTIMATED",
    "reasons_zh": "估算损失", "reasons_en": "loss estimated",
    "imagery_dates": "2025-05-11;2025-05-18", "schema_version": SCHEMA_VERSION,
}

BAD_CLAIMS = {
    "claim id not ours": {"claim_id": "clm-1"},
    "unknown peril": {"event_type": "typhoon"},
    "loss above 1": {"loss_rate": 1.3},
    "negative indemnity": {"indemnity_cny": -1.0},
    "unknown status": {"status": "paid"},
    "dates not ';'-joined ISO": {"imagery_dates": "2025/05/11"},
    "unknown soil source": {"soil_source": "guess"},
    "fractional neighbour count": {"n_neighbours": 2.5},
    "name not masked": {"farmer_name": "欧阳娜娜"},
}


def test_a_hand_written_claim_row_is_valid():
    assert _ok(json_schema("claims"), CLAIM_ROW)


@pytest.mark.parametrize("case", BAD_CLAIMS)
def test_each_rule_of_the_claim_schema_bites(case):
    assert not _ok(json_schema("claims"), {**CLAIM_ROW, **BAD_CLAIMS[case]})


NAMES = ["王", "王五", "张三丰", "欧阳娜娜", "John Smith", "阿卜杜热合曼·买买提"]
IDS = ["1234", "12345", "371428199001011234", "37142819900101123X"]


@pytest.mark.parametrize("export", EXPORTS)
def test_masked_values_pass_and_raw_ones_fail(export):
    schema = json_schema(export)
    name = schema["properties"]["farmer_name"]
    ident = schema["properties"]["farmer_id_number"]
    for raw in NAMES:
        assert jsonschema.validate(mask_name(raw), name) is None
        if len(raw) >= 2:
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(raw, name)
    for raw in IDS:
        assert jsonschema.validate(mask_id_number(raw), ident) is None
        if len(raw) > 4:
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(raw, ident)


def test_the_include_pii_schema_says_so_and_accepts_raw_values():
    raw = {**VERDICT_ROW, "farmer_name": "张三丰", "farmer_id_number": "371428199001011234"}
    schema = json_schema("verdicts", include_pii=True)
    assert _ok(schema, raw) and not _ok(json_schema("verdicts"), raw)
    assert "NOT masked" in schema["properties"]["farmer_name"]["description"]
    assert "NOT masked" in schema["description"]


# --- spreadsheet formulas (OWASP CSV injection) ---------------------------------------------

#: OWASP: cells starting with = + - @ TAB CR are formulas to Excel / LibreOffice / Sheets.
FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1",
            "=cmd|' /C calc'!A0", "-", "-inf", "+86 138 0000 0000"]
#: Text a spreadsheet does not run: plain numbers (read as numbers) and ordinary text.
HARMLESS = ["-0.5", "+12", "-1e-3", "1.5", ".5", "ok", "a=b", "张*丰", "'already", ""]


def test_formula_cells_get_a_leading_quote_and_nothing_else_changes():
    t = pd.DataFrame({"note": FORMULAS + HARMLESS + [None],
                      "loss_rate": np.linspace(-0.5, 0.5, len(FORMULAS) + len(HARMLESS) + 1)})
    out = neutralise_formulas(t)
    got = [None if pd.isna(v) else v for v in out["note"]]
    assert got == ["'" + v for v in FORMULAS] + HARMLESS + [None]
    assert out["note"].dtype == t["note"].dtype
    assert out["loss_rate"].tolist() == t["loss_rate"].tolist()  # numbers are numbers
    assert t["note"].tolist()[:1] == FORMULAS[:1]  # the input is not changed


def test_formula_column_names_and_mixed_columns():
    dates = pd.Series([pd.Timestamp("2025-05-01").date(), None], dtype=object)
    t = pd.DataFrame({"=cmd": ["a", "b"], "when": dates,
                      "mixed": pd.Series(["=1", 3], dtype=object),
                      "text": pd.Series(["@x", None], dtype="string")})
    out = neutralise_formulas(t)
    assert list(out.columns) == ["'=cmd", "when", "mixed", "text"]
    assert out["when"].tolist() == dates.tolist()
    assert out["mixed"].tolist() == ["'=1", 3]
    assert out["text"].tolist()[0] == "'@x"


def _hostile_table() -> gpd.GeoDataFrame:
    boxes = [shapely.box(116.3 + i * 0.001, 37.4, 116.3009 + i * 0.001, 37.4009)
             for i in range(4)]
    return gpd.GeoDataFrame({
        "row_number": [1, 2, 3, 4],
        "parcel_id": ['=HYPERLINK("http://evil","点我")', "@P2", "-0.5", "P4"],
        "status": ["green", "red", "yellow", "no_data"],
        "peak_ndvi": [-0.5, 0.1, np.nan, 0.7],
        "note": ["+SUM(A1:A9)", "\t-1", "普通", None],
    }, geometry=boxes, crs=4326)


def test_csv_is_neutralised_while_gis_formats_keep_the_values(tmp_path):
    table = _hostile_table()
    for suffix in (".csv", ".geojson", ".gpkg", ".parquet"):
        write_table(table, tmp_path / f"t{suffix}")
    with open(tmp_path / "t.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["parcel_id"] for r in rows] == ["'" + table["parcel_id"][0], "'@P2", "-0.5", "P4"]
    assert [r["note"] for r in rows] == ["'+SUM(A1:A9)", "'\t-1", "普通", ""]
    assert [r["peak_ndvi"] for r in rows] == ["-0.5", "0.1", "", "0.7"]
    for name in ("t.geojson", "t.gpkg", "t.parquet"):
        back = gpd.read_parquet(tmp_path / name) if name.endswith("parquet") else (
            gpd.read_file(tmp_path / name))
        assert back["parcel_id"].tolist() == table["parcel_id"].tolist(), name
        assert back["note"].tolist()[:3] == table["note"].tolist()[:3], name


# --- field lengths ----------------------------------------------------------------------------

def test_exports_never_carry_more_than_the_schema_allows(tmp_path, caplog):
    table = _hostile_table()
    table["parcel_id"] = ["=" + "X" * 10_000, "P2", "P3", "P4"]
    table["farmer_name"] = ["张" * 10_000, "王五", None, "李四光"]
    table["village"] = ["村" * 300, "城关", "", None]
    table = mask_pii(table)
    with caplog.at_level(logging.WARNING):
        for suffix in (".csv", ".geojson", ".gpkg", ".parquet"):
            write_table(table, tmp_path / f"verdicts{suffix}", export="verdicts")
    for suffix in (".csv", ".geojson", ".gpkg", ".parquet"):
        f = tmp_path / f"verdicts{suffix}"
        if suffix == ".csv":
            with open(f, encoding="utf-8-sig", newline="") as fh:
                rows = list(csv.DictReader(fh))
        else:
            rows = export_rows(f)
        for col in ("parcel_id", "farmer_name", "village"):
            assert len(rows[0][col]) == TEXT_MAX_LENGTH, (suffix, col)
            assert rows[0][col].endswith("…")
        assert rows[1]["farmer_name"] == "王*" and rows[1]["village"] == "城关"
        if suffix == ".csv":
            assert rows[0]["parcel_id"].startswith("'=XXX")
    said = caplog.text
    assert f"column parcel_id longer than {TEXT_MAX_LENGTH}" in said and "rows 1" in said


def test_limits_come_from_the_schema():
    limits = text_limits("claims", ["claim_id", "reasons_zh", "imagery_dates", "my_own"])
    assert limits == {"claim_id": TEXT_MAX_LENGTH, "reasons_zh": 4000, "imagery_dates": 4000,
                      "my_own": TEXT_MAX_LENGTH}


# --- the schemas written beside an export -----------------------------------------------------

def test_written_schemas_describe_the_file(tmp_path):
    table = _hostile_table().assign(**{"=evil": ["a", "b", "c", "d"]})
    write_table(table, tmp_path / "verdicts.csv", export="verdicts")
    files = write_schemas(tmp_path, "verdicts", table, (".csv", ".geojson"))
    assert sorted(files) == ["verdicts.schema.json", "verdicts.tableschema.json"]
    ts = json.loads((tmp_path / "verdicts.tableschema.json").read_text("utf-8"))
    with open(tmp_path / "verdicts.csv", encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f))
    assert [fl["name"] for fl in ts["fields"]] == header  # exactly the file's columns
    assert header[-1] == "'=evil" and "fieldsMatch" not in ts  # default: exact
    status = next(fl for fl in ts["fields"] if fl["name"] == "status")
    assert status["constraints"]["required"] is True
    own = next(fl for fl in ts["fields"] if fl["name"] == "'=evil")
    assert own["type"] == "string" and own["constraints"]["maxLength"] == TEXT_MAX_LENGTH
    shipped = json.loads((tmp_path / "verdicts.schema.json").read_text("utf-8"))
    assert shipped == json_schema("verdicts")
    pii = write_schemas(tmp_path / "pii", "verdicts", table, (".geojson",), include_pii=True)
    assert list(pii) == ["verdicts.schema.json"]
    written = json.loads(pii["verdicts.schema.json"].read_text("utf-8"))
    assert "pattern" not in written["properties"]["farmer_name"]


def test_whole_numbers_with_gaps_and_booleans_keep_their_types(tmp_path):
    table = _hostile_table().assign(unit_n_parcels=[2.0, np.nan, 1.0, 3.0],
                                    pooled=pd.Series([True, None, False, True], dtype=object))
    for suffix in (".csv", ".geojson"):
        write_table(table, tmp_path / f"verdicts{suffix}", export="verdicts")
    with open(tmp_path / "verdicts.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["unit_n_parcels"] for r in rows] == ["2", "", "1", "3"]
    feats = json.loads((tmp_path / "verdicts.geojson").read_text("utf-8"))["features"]
    assert [f["properties"]["pooled"] for f in feats] == [True, None, False, True]
    assert [f["properties"]["unit_n_parcels"] for f in feats] == [2, None, 1, 3]


# --- a real run: every export of it follows its schema ---------------------------------------

@pytest.fixture(scope="module")
def pooled_maize(sample, tmp_path_factory):
    from agri_3s.pipeline import underwrite

    return underwrite(sample.parcels_maize, f"local:{sample.imagery}", "2025-06-10/2025-10-10",
                      out=tmp_path_factory.mktemp("maize"), pool_units=True,
                      formats=(".csv", ".geojson", ".gpkg", ".parquet"))


def test_every_format_of_a_pooled_run_follows_its_schema(pooled_maize):
    checked = validate_folder(pooled_maize.out)
    n = len(pooled_maize.table)
    assert checked == {f"verdicts{s}": n for s in (".csv", ".geojson", ".gpkg", ".parquet")}
    assert pooled_maize.table["pooled"].any()  # the unit columns were there to check
    manifest = json.loads((pooled_maize.out / "run.json").read_text("utf-8"))
    for name in ("verdicts.schema.json", "verdicts.tableschema.json"):
        assert len(manifest["outputs"][name]["sha256"]) == 64


def test_a_broken_export_fails_validation(pooled_maize, tmp_path):
    """The check above can fail: one unmasked name in a copy of the GeoJSON is caught."""
    src = pooled_maize.out
    data = json.loads((src / "verdicts.geojson").read_text("utf-8"))
    data["features"][3]["properties"]["farmer_name"] = "张三丰"
    (tmp_path / "verdicts.geojson").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "verdicts.schema.json").write_bytes((src / "verdicts.schema.json").read_bytes())
    with pytest.raises(AssertionError, match="row 4: farmer_name"):
        validate_folder(tmp_path)
    broken = copy.deepcopy(data)
    broken["features"][0]["properties"]["status"] = "approved"
    (tmp_path / "verdicts.geojson").write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(AssertionError, match="row 1: status"):
        validate_folder(tmp_path)


def test_the_input_limit_is_within_the_export_limit():
    """A field the parcel check accepts always fits the export schemas."""
    from agri_3s.parcels.validate import MAX_TEXT_CHARS

    assert MAX_TEXT_CHARS <= TEXT_MAX_LENGTH == 200


def test_geojson_written_in_blocks_holds_every_feature_as_given(tmp_path, monkeypatch):
    """The GeoJSON writer encodes features in blocks (bounded memory at 10⁶ parcels): across
    block edges every feature keeps its values, gaps, Chinese text (line separators inside
    text included) and geometry, in order."""
    import json

    import geopandas as gpd
    import shapely

    from agri_3s.outputs import export, streaming

    monkeypatch.setattr(streaming, "BLOCK", 3)
    given = gpd.GeoDataFrame(
        {"parcel_id": [f"p{i}" for i in range(8)], "reasons_zh": ["出苗偏晚"] * 7 + ["甲\u2028乙\x0b"],
         "confidence": [0.5, None, 0.25, 1.0, 0.0, 0.75, None, 0.125],
         "n": pd.array([1, None, 3, 4, 5, 6, 7, 8], dtype="Int64")},
        geometry=[shapely.box(i, 0, i + 0.5, 0.5) for i in range(7)] + [None], crs=4326)
    path = export.write_table(given, tmp_path / "verdicts.geojson")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["name"] == "verdicts" and len(doc["features"]) == 8
    props = [f["properties"] for f in doc["features"]]
    assert [p["parcel_id"] for p in props] == given["parcel_id"].tolist()
    assert [p["confidence"] for p in props] == [0.5, None, 0.25, 1.0, 0.0, 0.75, None, 0.125]
    assert [p["n"] for p in props] == [1, None, 3, 4, 5, 6, 7, 8]
    assert [p["reasons_zh"] for p in props] == given["reasons_zh"].tolist()  # U+2028 is no row end
    assert doc["features"][7]["geometry"] is None
    assert shapely.geometry.shape(doc["features"][4]["geometry"]).equals(shapely.box(4, 0, 4.5, 0.5))
