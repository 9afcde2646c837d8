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
