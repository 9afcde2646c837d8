"""`agri3s map` refuses results that do not belong together; claims on rejected parcels are
flagged in the export; result folders are merged (series, imagery) for one map."""

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from agri_3s.cli import main
from agri_3s.decisions.crosscheck import flag_rejected
from agri_3s.errors import InputError
from agri_3s.outputs.webmap import ImageLayer, save_imagery
from agri_3s.outputs.webmap.results import clear_ndvi, merge_results, read_results
from agri_3s.pipeline import map_results


def parcels(n=6, crop="winter_wheat", dx=0.0) -> gpd.GeoDataFrame:
    geoms = [shapely.box(500_000 + 120 * i + dx, 4_000_000, 500_100 + 120 * i + dx, 4_000_100)
             for i in range(n)]
    return gpd.GeoDataFrame({"parcel_id": [f"P{i}" for i in range(n)], "crop": crop,
                             "policy_id": "POL", "declared_area_mu": 15.0},
                            geometry=geoms, crs=32650)


def result(folder, kind, table, run=None, series=None):
    folder.mkdir(parents=True, exist_ok=True)
    table.to_file(folder / f"{kind}.geojson", driver="GeoJSON")
    (folder / "run.json").write_text(json.dumps(run or {}), encoding="utf-8")
    if series is not None:
        series.to_netcdf(folder / "series.nc", engine="scipy")
    return folder


def verdicts(p, season="2024-10-01/2025-06-15", folder=None):
    t = p.assign(status=["green", "red"] * (len(p) // 2), reasons="PLANTED")
    return result(folder, "verdicts", t, {"parameters": {"season": season}})


def claims(p, date="2025-05-14", folder=None):
    t = p.assign(status="estimated", event_date=date, event_id="E", loss_grade="light",
                 reasons="LOSS_ESTIMATED", reasons_zh="已估损", reasons_en="estimated")
    return result(folder, "claims", t, {"parameters": {"event": {"date": date}}})


def test_matching_results_merge(tmp_path):
    v = verdicts(parcels(), folder=tmp_path / "wheat")
    c = claims(parcels(), folder=tmp_path / "hail")
    merged = merge_results(read_results([v, c]))
    assert merged["notes"] == [] and len(merged["parcels"]) == 6
    out = map_results([v, c], tmp_path / "map.html")
    assert out.is_file()


@pytest.mark.parametrize("case, why", [
    ("crops", "different crops (e.g. P0: winter_wheat vs summer_maize)"),
    ("season", "event on 2025-07-22 is outside the underwriting season 2024-10-01/2025-06-15"),
    ("parcels", "only 0 of 6 claimed parcels have a verdict"),
    ("moved", "6 parcels of the same id lie more than 10 m apart"),
])
def test_mismatched_results_refused(tmp_path, case, why):
    v = verdicts(parcels(), folder=tmp_path / "wheat")
    other = {"crops": lambda: claims(parcels(crop="summer_maize"), folder=tmp_path / "c"),
             "season": lambda: claims(parcels(), "2025-07-22", folder=tmp_path / "c"),
             "parcels": lambda: claims(parcels().assign(parcel_id=lambda t: "Q" + t.parcel_id),
                                       folder=tmp_path / "c"),
             "moved": lambda: claims(parcels(dx=5000), folder=tmp_path / "c")}[case]()
    with pytest.raises(InputError) as exc:
        map_results([v, other], tmp_path / "map.html")
    assert why in str(exc.value) and "--force" in exc.value.fix
    assert not (tmp_path / "map.html").exists()
    assert main(["map", str(v), str(other), "--out", str(tmp_path / "m.html")]) == 2
    # --force maps them, and the map says what did not match
    assert main(["map", str(v), str(other), "--out", str(tmp_path / "m.html"), "--force"]) == 0
    assert (tmp_path / "m.html").is_file()
    merged = merge_results(read_results([v, other]), force=True)
    assert any(why in n for n in merged["notes"])


def test_two_underwriting_results_of_the_same_parcels_refused(tmp_path):
    a = verdicts(parcels(), folder=tmp_path / "a")
    b = verdicts(parcels(), "2025-06-10/2025-10-10", folder=tmp_path / "b")
    with pytest.raises(InputError, match="two underwriting results for 6 of the same"):
        merge_results(read_results([a, b]))


def test_series_and_imagery_merged(tmp_path):
    times_a = pd.to_datetime(["2025-04-01", "2025-05-01"])
    times_b = pd.to_datetime(["2025-05-01", "2025-05-20"])
    sa = xr.Dataset({"ndvi_mean": (("parcel", "time"), [[0.5, 0.6]] * 6),
                     "look_flag": (("parcel", "time"), [[0, 1]] * 6)},
                    coords={"parcel_id": ("parcel", [f"P{i}" for i in range(6)]),
                            "time": times_a})
    sb = xr.Dataset({"ndvi_mean": (("parcel", "time"), [[0.65, 0.3]] * 6),
                     "clear_fraction": (("parcel", "time"), [[1.0, 1.0]] * 6)},
                    coords={"parcel_id": ("parcel", [f"P{i}" for i in range(6)]),
                            "time": times_b})
    v = verdicts(parcels(), folder=tmp_path / "wheat")
    sa.to_netcdf(v / "series.nc", engine="scipy")
    c = claims(parcels(), folder=tmp_path / "hail")
    sb.to_netcdf(c / "series.nc", engine="scipy")
    save_imagery([ImageLayer("false_after", np.zeros((4, 4, 3), np.uint8),
                             (117.0, 36.1, 117.01, 36.11), "2025-05-20")], c)
    merged = merge_results(read_results([v, c]))
    s = clear_ndvi(merged["series"])
    # a's masked look on 05-01 does not hide b's clear one; union of the dates
    np.testing.assert_allclose(s["ndvi_mean"].values[0], [0.5, 0.65, 0.3])
    assert [im.kind for im in merged["imagery"]] == ["false_after"]


def test_flag_rejected_keeps_the_money():
    c = pd.DataFrame({"parcel_id": ["a", "b", "c", "d"],
                      "status": ["estimated", "survey", "not_affected", "estimated"],
                      "indemnity_cny": [100.0, 50.0, 0.0, 70.0],
                      "reasons": ["LOSS_ESTIMATED"] * 4, "reasons_zh": ["已估损"] * 4,
                      "reasons_en": ["estimated"] * 4})
    v = pd.DataFrame({"parcel_id": ["a", "b", "c", "d"], "status": ["red", "red", "red", "green"],
                      "reasons": ["NOT_PLANTED", "CROP_MISMATCH_TIMING;AREA_SHORTFALL",
                                  "NOT_PLANTED", "PLANTED"]})
    out = flag_rejected(c, v)
    assert out["reasons"].tolist() == ["LOSS_ESTIMATED;UNDERWRITING_REJECTED"] * 2 + [
        "LOSS_ESTIMATED"] * 2
    assert "CROP_MISMATCH_TIMING, AREA_SHORTFALL" in out.loc[1, "reasons_en"]
    assert out.loc[0, "reasons_zh"].startswith("已估损；承保核验未通过（NOT_PLANTED）")
    pd.testing.assert_series_equal(out["indemnity_cny"], c["indemnity_cny"])
    pd.testing.assert_series_equal(out["status"], c["status"])


@pytest.mark.parametrize("name,content", [("verdicts.geojson", '{"type": "Featu'),
                                          ("series.nc", "not netcdf"), ("run.json", "{")])
def test_an_unreadable_file_in_a_result_folder_is_bad_input(name, content, tmp_path, capsys):
    """A truncated verdicts.geojson, series.nc or run.json gave a traceback and exit 1."""
    folder = tmp_path / "res"
    folder.mkdir()
    gpd.GeoDataFrame({"parcel_id": ["A"], "status": ["green"]},
                     geometry=[shapely.box(116.3, 37.4, 116.301, 37.4008)],
                     crs=4326).to_file(folder / "verdicts.geojson")
    (folder / name).write_text(content)
    with pytest.raises(InputError, match=f"cannot read {name}") as caught:
        read_results([folder])
    assert caught.value.source == folder / name
    assert main(["map", str(folder), "--out", str(tmp_path / "m.html")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2, err
    assert not (tmp_path / "m.html").exists()
