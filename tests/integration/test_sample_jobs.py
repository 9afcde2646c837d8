"""The three user jobs on the embedded synthetic sample, scored against its generated truth."""

import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from agri_3s.pipeline import assess, map_results, underwrite

WHEAT_SEASON = "2024-10-01/2025-06-15"
MAIZE_SEASON = "2025-06-10/2025-10-10"


@pytest.fixture(scope="module")
def truth(sample):
    return pd.read_csv(sample.truth, dtype={"parcel_id": str})


@pytest.fixture(scope="module")
def wheat(sample, tmp_path_factory):
    return underwrite(sample.parcels_wheat, f"local:{sample.imagery}", WHEAT_SEASON,
                      out=tmp_path_factory.mktemp("wheat"))


@pytest.fixture(scope="module")
def maize(sample, tmp_path_factory):
    return underwrite(sample.parcels_maize, f"local:{sample.imagery}", MAIZE_SEASON,
                      out=tmp_path_factory.mktemp("maize"))


@pytest.fixture(scope="module")
def hail(sample, tmp_path_factory):
    return assess(sample.parcels_wheat, f"local:{sample.imagery}", sample.hail_event,
                  out=tmp_path_factory.mktemp("hail"))


@pytest.fixture(scope="module")
def flood(sample, tmp_path_factory):
    return assess(sample.parcels_maize, f"local:{sample.imagery}", sample.flood_event,
                  out=tmp_path_factory.mktemp("flood"))


@pytest.mark.parametrize("run,season", [("wheat", "wheat"), ("maize", "maize")])
def test_verdicts_agree_with_truth(run, season, truth, request):
    result = request.getfixturevalue(run)
    v = result.table.merge(truth[truth["season"] == season], on="parcel_id", how="left")
    parcels = gpd.read_file(getattr(request.getfixturevalue("sample"), f"parcels_{season}"))
    assert len(result.table) == len(parcels)  # nobody dropped
    judged = v[(v["full_pixels"] >= 8) & (v["clear_observations"] >= 8)
               & v["status"].isin(["green", "yellow", "red"])]
    assert len(judged) >= 0.6 * len(v)
    agreement = (judged["status"] == judged["expected_verdict"]).mean()
    assert agreement >= 0.95, judged.loc[judged["status"] != judged["expected_verdict"],
                                         ["parcel_id", "truth_class", "status", "reasons"]].head(20)
    # every class of error is caught, not just the majority class
    for cls, expected in (("fallow", "red"), ("other_crop", "red"), ("half_planted", "yellow"),
                          ("area_inflated", "yellow")):
        sub = judged[judged["truth_class"] == cls]
        if len(sub):
            assert (sub["status"] == expected).mean() >= 0.8, (cls, sub["status"].value_counts())


def test_hail_loss_rates_against_truth(hail, truth):
    c = hail.table.merge(truth[truth["season"] == "wheat"], on="parcel_id")
    c = c[(c["full_pixels"] >= 8) if "full_pixels" in c else slice(None)]
    est = c[c["parcel_loss_rate"].notna()]
    assert len(est) >= 0.8 * len(c)
    mae = (est["parcel_loss_rate"] - est["hail_loss_rate"]).abs().mean()
    assert mae <= 0.10
    hit = est[est["hail_loss_rate"] >= 0.3]
    assert len(hit) >= 20
    covered = ((hit["hail_loss_rate"] >= hit["loss_rate_low"] - 0.05)
               & (hit["hail_loss_rate"] <= hit["loss_rate_high"] + 0.05)).mean()
    assert covered >= 0.7


def test_flood_fraction_and_loss_against_truth(flood, truth):
    c = flood.table.merge(truth[truth["season"] == "maize"], on="parcel_id")
    est = c[c["parcel_loss_rate"].notna() & (c["flooded_fraction_y"] > 0.2)]
    assert len(est) >= 10
    assert (est["parcel_loss_rate"] - est["flood_loss_rate"]).abs().mean() <= 0.15


def test_indemnity_follows_the_policy_formula(hail):
    """Recomputed here from the exported columns with the wording's formula."""
    c = hail.table
    paid = c[c["indemnity_cny"] > 0].head(10)
    assert len(paid) >= 5
    for _, r in paid.iterrows():
        rate = 1.0 if r["loss_rate"] >= r["total_loss_at"] else r["loss_rate"]
        area = min(r["damaged_area_mu"], r["declared_area_mu"])
        expect = r["sum_insured_cny_per_mu"] * r["stage_share"] * rate * area * (1 - r["deductible"])
        assert r["indemnity_cny"] == pytest.approx(expect, abs=0.01)
    assert (c.loc[c["loss_rate"] < c["payout_threshold"], "indemnity_cny"] == 0).all()


def test_exports_and_manifest(hail):
    out = hail.out
    csv_bytes = (out / "claims.csv").read_bytes()
    assert csv_bytes.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the Chinese text
    claims = pd.read_csv(out / "claims.csv", encoding="utf-8-sig")
    assert claims["schema_version"].eq("1.0").all() and claims["claim_id"].is_unique
    assert not claims["farmer_name"].astype(str).str.len().gt(0).all() or \
        claims["farmer_name"].astype(str).str.contains(r"\*").all()  # masked for third parties
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["inputs"]["parcels"]["sha256"] and manifest["imagery"]["dates"]
    assert len(gpd.read_file(out / "claims.geojson")) == len(claims)


def test_map_has_one_feature_per_parcel(wheat, hail, tmp_path):
    path = map_results([wheat.out, hail.out], tmp_path / "map.html", lang="en")
    html = path.read_text(encoding="utf-8")
    n = len(wheat.table)
    for pid in wheat.table["parcel_id"].head(20):
        assert len(re.findall(rf'"parcel_id": ?"{re.escape(pid)}"', html)) >= 1
    assert html.count('"type": "Feature"') + html.count('"type":"Feature"') >= n
