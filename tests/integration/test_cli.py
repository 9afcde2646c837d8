"""The agri3s command: exit codes and messages users see."""

import pytest

from agri_3s.cli import main


def test_missing_parcel_file_is_bad_input(tmp_path, capsys):
    code = main(["underwrite", str(tmp_path / "none.geojson"), "--imagery", f"local:{tmp_path}",
                 "--season", "2024-10-01/2025-06-15", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "none.geojson" in capsys.readouterr().err


def test_bad_season_names_the_argument(tmp_path, capsys, sample):
    code = main(["underwrite", str(sample.parcels_wheat), "--imagery", f"local:{sample.imagery}",
                 "--season", "2025-06-15/2024-10-01", "--out", str(tmp_path)])
    assert code == 2
    assert "--season" in capsys.readouterr().err


def test_unknown_source_kind(tmp_path, capsys, sample):
    code = main(["underwrite", str(sample.parcels_wheat), "--imagery", "ftp://x",
                 "--season", "2024-10-01/2025-06-15", "--out", str(tmp_path)])
    assert code == 2


@pytest.mark.slow
def test_demo_writes_everything_and_prints_paths(tmp_path, capsys, sample):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--sample", str(sample.root)])
    printed = capsys.readouterr().out
    assert code == 0
    for name in ("map_wheat.html", "map_maize.html", "underwrite_wheat/verdicts.csv",
                 "assess_hail/claims.csv", "assess_flood/run.json"):
        assert (tmp_path / "demo" / name).exists()
        assert name.split("/")[-1] in printed
    assert "agree with truth" in printed


def _parcel_file(path, boxes, prefix="P"):
    import geopandas as gpd
    import shapely

    gdf = gpd.GeoDataFrame(
        {"parcel_id": [f"{prefix}{i}" for i in range(len(boxes))], "crop": "winter_wheat",
         "declared_area_mu": 15.0, "policy_id": [f"POL-{prefix}{i}" for i in range(len(boxes))],
         "household_id": "H1"},
        geometry=[shapely.box(*b) for b in boxes], crs=32650)
    gdf.to_file(path)
    return path


def test_overlaps_within_batch_and_against_the_register(tmp_path, capsys):
    import pandas as pd

    boxes = [(437000, 4140000, 437100, 4140100), (437100, 4140000, 437200, 4140100),  # touch
             (437050, 4140000, 437150, 4140100)]                                       # overlaps both
    first = _parcel_file(tmp_path / "b1.geojson", boxes, "A")
    reg = tmp_path / "register.gpkg"
    assert main(["parcels", "overlaps", str(first), "--register", str(reg), "--accept", "B1",
                 "--out", str(tmp_path / "o1")]) == 0
    pairs = pd.read_csv(tmp_path / "o1" / "overlaps.csv", encoding="utf-8-sig")
    assert sorted(map(tuple, pairs[["parcel_id_a", "parcel_id_b"]].values.tolist())) in (
        [("A0", "A2"), ("A1", "A2")], [("A2", "A0"), ("A2", "A1")])
    assert pairs["overlap_m2"].round(3).tolist() == [5000.0, 5000.0]
    # the same land insured again in a later batch
    second = _parcel_file(tmp_path / "b2.geojson", boxes[:1], "B")
    assert main(["parcels", "overlaps", str(second), "--register", str(reg),
                 "--out", str(tmp_path / "o2")]) == 0
    again = pd.read_csv(tmp_path / "o2" / "overlaps.csv", encoding="utf-8-sig")
    assert (again["source_b"] == "B1").all() and "duplicate" in set(again["kind"])
    assert main(["parcels", "overlaps", str(second), "--accept", "B2",
                 "--out", str(tmp_path / "o3")]) == 2  # --accept needs --register


def test_parcels_check_reports_every_row(tmp_path):
    import pandas as pd

    f = _parcel_file(tmp_path / "p.geojson", [(437000, 4140000, 437100, 4140100)] * 2)
    assert main(["parcels", "check", str(f), "--out", str(tmp_path / "c")]) == 0
    report = pd.read_csv(tmp_path / "c" / "parcels_report.csv", encoding="utf-8-sig")
    assert len(report) == 2


def test_job_file_screen_and_rules_tables_reach_the_run(tmp_path, capsys, sample):
    """A job's [screen] was silently ignored (and a typo anywhere ran with the defaults): the
    values given are the ones the run records in run.json; the rest keep their defaults."""
    import dataclasses
    import json

    from agri_3s.timeseries.screening import ScreenRules

    job = tmp_path / "job.toml"
    job.write_text(f'job = "underwrite"\nparcels = "{sample.parcels_wheat}"\n'
                   f'imagery = "local:{sample.imagery}"\nseason = "2024-10-01/2025-06-15"\n'
                   f'out = "{tmp_path / "out"}"\n'
                   "[rules]\nmin_clear_fraction = 0.5\nmin_observations = 4\n"
                   "[screen]\ndip_ndvi = 0.2\n", encoding="utf-8")
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    parameters = json.loads((tmp_path / "out" / "run.json").read_text())["parameters"]
    assert parameters["rules"]["min_observations"] == 4
    defaults = dataclasses.asdict(ScreenRules())
    assert parameters["screen"] == {**defaults, "min_clear_fraction": 0.5, "dip_ndvi": 0.2}
