"""What an operator sees when a command line or a job file is wrong: one line saying what, one
with the fix, exit 2 (README's exit codes), never a traceback; job-file typos refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from agri_3s import jobfile, pipeline
from agri_3s.cli import main
from agri_3s.errors import ImageryError, InputError
from agri_3s.sources.local import LocalSource

SEASON = "2024-10-01/2025-06-15"


def _bad_input(capsys, argv: list[str]) -> list[str]:
    """Run ``agri3s argv``; assert exit 2 and a short message; return its lines."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert 1 <= len(lines) <= 2, lines
    assert lines[0].startswith("bad input: ")
    return lines


# --- usage errors: (argv, what the first line must say, what the fix line must say) -----------
USAGE = {
    "unknown option, the closest one named": (
        ["underwrite", "p.geojson", "--season", SEASON, "--calender", "c.toml"],
        ["No such option: --calender", "--calendar"], ["agri3s underwrite --help"]),
    "missing argument": (["underwrite"], ["Missing argument 'parcels'"],
                         ["agri3s underwrite PARCELS [OPTIONS]"]),
    "missing option, its help as the fix": (
        ["underwrite", "p.geojson"], ["Missing option '--season'"],
        ["--season: START/END, e.g. 2024-10-01/2025-06-15"]),
    "option without its value": (
        ["underwrite", "p.geojson", "--season"], ["'--season' requires an argument"],
        ["--season: START/END"]),
    "unknown command, the closest one named": (
        ["undrewrite"], ["No such command 'undrewrite'", "Did you mean 'underwrite'?"],
        ["one of assess, demo,", "underwrite"]),
    "unknown sub-command": (["parcels", "chek", "p.geojson"], ["No such command 'chek'",
                                                               "'check'"],
                            ["one of check, from-track, overlaps"]),
    "a number that is not one": (
        ["assess", "p.geojson", "--imagery", "local:x", "--event", "e.toml",
         "--payout-threshold", "abc"], ["Invalid value for '--payout-threshold'"],
        ["--payout-threshold: no payout below this loss rate"]),
    "an unknown map language, refused before any work": (
        ["underwrite", "p.geojson", "--season", SEASON, "--imagery", "local:x", "--lang", "fr"],
        ["Invalid value for '--lang'", "'fr' is not a map language"], ["--lang"]),
    "map without a result folder": (["map"], ["Missing argument 'results'"],
                                    ["agri3s map RESULTS… [OPTIONS]"]),
}


@pytest.mark.parametrize("case", USAGE, ids=list(USAGE))
def test_usage_errors_are_two_lines_with_the_fix_and_exit_2(case, capsys):
    argv, said, fixed = USAGE[case]
    lines = _bad_input(capsys, argv)
    # the command the error is about: the one typed, or the group for an unknown command
    path = "agri3s parcels" if argv[0] == "parcels" else (
        "agri3s" if "command" in case else f"agri3s {argv[0]}")
    assert lines[0].startswith(f"bad input: {path}: "), lines
    for text in said:
        assert text in lines[0], lines
    assert len(lines) == 2 and lines[1].startswith("Fix: "), lines
    for text in fixed:
        assert text in lines[1], lines


def test_no_arguments_prints_the_help(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "underwrite" in text and "assess" in text and "Traceback" not in text


def test_help_exits_0(capsys):
    assert main(["underwrite", "--help"]) == 0
    assert "--season" in capsys.readouterr().out


def test_the_installed_entry_point_exits_2_without_a_traceback():
    """The real process: exit status and stderr as an operator's shell sees them."""
    done = subprocess.run([sys.executable, "-m", "agri_3s.cli", "assess", "--bogus"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[0].startswith("bad input: agri3s assess: No such "
                                                           "option: --bogus")


def test_typer_is_pinned_to_the_version_these_tests_ran_on():
    """cli.main catches the usage errors of typer's vendored click (typer 0.29): pyproject must
    bound typer above and admit the installed one, so a new typer cannot bring tracebacks back."""
    from importlib.metadata import version

    from packaging.requirements import Requirement  # pytest's own dependency

    from agri_3s.tomlfile import read_toml

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = [Requirement(d) for d in read_toml(pyproject)["project"]["dependencies"]]
    (typer,) = [d for d in deps if d.name == "typer"]
    assert version("typer") in typer.specifier
    assert any(s.operator == "<" for s in typer.specifier), typer


def test_brackets_in_messages_are_printed_not_eaten_as_markup(tmp_path, capsys):
    """Rich markup ate '[rules]' out of 'the keys of [rules], [policy] and [loss]'."""
    job = tmp_path / "job.toml"
    job.write_text('job = "underwrite"\nparcels = "p.geojson"\nimagery = "local:x"\n'
                   f'out = "o"\nseason = "{SEASON}"\n[rules]\ncalendar = "c.toml"\n',
                   encoding="utf-8")
    lines = _bad_input(capsys, ["run", str(job)])
    assert lines[0] == f"bad input: {job}: 'calendar' is not a key of [rules]."
    assert lines[1] == "Fix: it belongs at the top of the job file, before any [table]"


# --- job files ----------------------------------------------------------------------------
def _job(tmp_path: Path, text: str, kind: str = "underwrite") -> Path:
    extra = f'season = "{SEASON}"\n' if kind == "underwrite" else 'event = "e.toml"\n'
    (tmp_path / "e.toml").write_text('id = "h"\ntype = "hail"\ndate = "2025-05-14"\n')
    path = tmp_path / "job.toml"
    path.write_text(f'job = "{kind}"\nparcels = "p.geojson"\nimagery = "local:imagery"\n'
                    f'out = "out"\n{extra}{text}', encoding="utf-8")
    return path


JOB_TYPOS = {  # text added to a valid job file → (first line, fix line)
    "top-level calender": ('calender = "my_calendars.toml"\n', "underwrite",
                           "unknown key 'calender' in an underwrite job file.",
                           "Fix: did you mean 'calendar'?"),
    "[rules] typo": ("[rules]\nmin_observatons = 4\n", "underwrite",
                     "unknown key 'min_observatons' in [rules].",
                     "Fix: did you mean 'min_observations'?"),
    "[screen] typo": ("[screen]\ndip_ndv = 0.1\n", "underwrite",
                      "unknown key 'dip_ndv' in [screen].", "Fix: did you mean 'dip_ndvi'?"),
    "[policy] typo": ("[policy]\ndeductable = 0.1\n", "assess",
                      "unknown key 'deductable' in [policy].", "Fix: did you mean 'deductible'?"),
    "[loss] typo": ("[loss]\nneighbor_radius_m = 2000\n", "assess",
                    "unknown key 'neighbor_radius_m' in [loss].",
                    "Fix: did you mean 'neighbour_radius_m'?"),
    "misspelt table": ("[polcy]\ndeductible = 0.1\n", "assess",
                       "unknown key 'polcy' in an assess job file.",
                       "Fix: did you mean 'policy'?"),
    "another job's table": ("[loss]\npre_days = 20\n", "underwrite",
                            "'loss' is not a key of an underwrite job file.",
                            'Fix: it belongs in an assess job (job = "assess")'),
    "a rule outside its table": ("min_clear_fraction = 0.5\n", "underwrite",
                                 "'min_clear_fraction' is not a key of an underwrite job file.",
                                 "Fix: it belongs in [rules] or [screen]"),
    "a text for a number": ('[rules]\nmin_observations = "5"\n', "underwrite",
                            '[rules] min_observations = "5" is not a whole number.',
                            "Fix: write it like min_observations = 5"),
    "a number for a flag": ("pool_units = 1\n", "underwrite",
                            "pool_units = 1 is not true or false.",
                            "Fix: write it like pool_units = true"),
    "a list of the wrong length": ("[loss]\nrange_percentiles = [10, 90]\n", "assess",
                                   "[loss] range_percentiles = [10, 90] is not a list of 3 "
                                   "numbers.",
                                   "Fix: write it like range_percentiles = [10.0, 50.0, 90.0]"),
    "an unknown map language": ('lang = "fr"\n', "assess", "lang = 'fr' is not a map language.",
                                'Fix: write lang = "zh" or "en"'),
}


@pytest.mark.parametrize("case", JOB_TYPOS, ids=list(JOB_TYPOS))
def test_job_file_mistakes_are_refused_by_name(case, tmp_path, capsys):
    text, kind, first, fix = JOB_TYPOS[case]
    job = _job(tmp_path, text, kind)
    lines = _bad_input(capsys, ["run", str(job)])
    assert lines == [f"bad input: {job}: {first}", fix]


def test_a_job_without_its_season_says_what_to_add(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('job = "underwrite"\nparcels = "p.geojson"\nimagery = "local:x"\nout = "o"\n')
    with pytest.raises(InputError, match="no 'season'.*add season = \"2024-10-01/2025-06-15\""):
        jobfile.run_job(job)


def test_job_file_settings_reach_the_job(tmp_path, monkeypatch):
    """[rules], [screen] and the parcel-file keys arrive as given; [rules]'
    min_clear_fraction is the screen's too unless [screen] sets its own."""
    seen = {}
    monkeypatch.setattr(jobfile, "underwrite", lambda *a, **k: seen.update(k, args=a))
    job = _job(tmp_path, 'encoding = "gbk"\nlayer = "wheat"\n[columns]\n"田块代码" = "parcel_id"\n'
                         "[rules]\nmin_clear_fraction = 0.5\nmin_observations = 4\n"
                         "[screen]\ndip_ndvi = 0.2\n")
    jobfile.run_job(job)
    assert (seen["rules"].min_observations, seen["rules"].min_clear_fraction) == (4, 0.5)
    assert (seen["screen"].dip_ndvi, seen["screen"].min_clear_fraction) == (0.2, 0.5)
    assert seen["screen"].bright_excess == 0.04  # ScreenRules' default, untouched
    assert (seen["encoding"], seen["layer"], seen["columns"]) == ("gbk", "wheat",
                                                                  {"田块代码": "parcel_id"})
    job = _job(tmp_path, "[rules]\nmin_clear_fraction = 0.5\n[screen]\nmin_clear_fraction = 0.7\n")
    jobfile.run_job(job)
    assert (seen["rules"].min_clear_fraction, seen["screen"].min_clear_fraction) == (0.5, 0.7)


def test_assess_job_tables_become_terms_and_params(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(jobfile, "assess", lambda *a, **k: seen.update(k))
    jobfile.run_job(_job(tmp_path, "[policy]\ndeductible = 0.1\nuse_stage_caps = false\n"
                                    "[loss]\npre_days = 20\nrange_percentiles = [5, 50, 95]\n",
                          "assess"))
    assert (seen["terms"].deductible, seen["terms"].use_stage_caps) == (0.1, False)
    assert seen["params"].pre_days == 20
    assert seen["params"].range_percentiles == (5.0, 50.0, 95.0)


# --- an empty imagery folder is bad input ---------------------------------------------------
def test_an_empty_imagery_folder_is_bad_input_naming_the_folder(tmp_path, capsys):
    empty = tmp_path / "s2"
    empty.mkdir()
    (empty / "notes.txt").write_text("not imagery")
    with pytest.raises(InputError) as caught:
        LocalSource(empty).load((0, 0, 1, 1), 32650, np.datetime64("2025-01-01").item(),
                                np.datetime64("2025-12-31").item())
    assert isinstance(caught.value, ImageryError)  # still one for callers catching those
    assert caught.value.source == empty and "local:PATH" in caught.value.fix
    parcels = _parcel_table(tmp_path)
    lines = _bad_input(capsys, ["underwrite", str(parcels), "--crs", "EPSG:4326",
                                "--columns", "田块代码=parcel_id", "--season", SEASON, "--imagery", f"local:{empty}",
                                "--out", str(tmp_path / "o")])
    assert lines[0].startswith(f"bad input: {empty}: no acquisition folder")
    assert lines[1].startswith("Fix: point --imagery local:PATH at a folder")


def test_imagery_that_misses_the_season_or_the_parcels_is_bad_input(tmp_path):
    import datetime as dt

    from affine import Affine

    from agri_3s.testing.builders import write_acquisition

    bands = {b: np.full((16, 16), 0.2) for b in ("B03", "B04", "B08")}
    write_acquisition(tmp_path, "2025-05-12", bands, np.full((8, 8), 4),
                      Affine(10, 0, 437000, 0, -10, 4142000))
    src = LocalSource(tmp_path)
    with pytest.raises(InputError, match=r"no acquisition between 2030-01-01 and 2030-06-01 "
                                         r"\(the folder has 2025-05-12 to 2025-05-12\)"):
        src.load((437000, 4141840, 437160, 4142000), "EPSG:32650", dt.date(2030, 1, 1),
                 dt.date(2030, 6, 1))
    with pytest.raises(InputError, match="does not cover the parcels") as caught:
        src.load((0, 0, 10, 10), "EPSG:32650", dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert "--crs" in caught.value.fix


def test_a_region_no_calendar_has_is_refused_naming_the_regions(tmp_path, capsys):
    """A misspelt --region judged every crop by its default calendar without a word."""
    empty = tmp_path / "s2"
    empty.mkdir()
    lines = _bad_input(capsys, ["underwrite", str(_parcel_table(tmp_path)), "--crs", "EPSG:4326",
                                "--columns", "田块代码=parcel_id", "--season", SEASON,
                                "--imagery", f"local:{empty}", "--region", "north_china_plian",
                                "--out", str(tmp_path / "o")])
    assert lines[0] == "bad input: --region: region 'north_china_plian' is in no crop calendar."
    assert lines[1].startswith("Fix: did you mean 'north_china_plain'?")


@pytest.mark.parametrize("option", ["--calibration", "--series", "--crop-model"])
def test_a_missing_model_calibration_or_series_file_is_refused_before_any_work(option, tmp_path,
                                                                               capsys):
    lines = _bad_input(capsys, ["underwrite", "p.geojson", "--season", SEASON, "--imagery",
                                "local:x", option, str(tmp_path / "nope.bin")])
    assert "nope.bin" in lines[0] and ("not found" in lines[0] or "does not exist" in lines[0])


def test_a_job_file_names_a_missing_file_with_its_resolved_path(tmp_path, capsys):
    job = _job(tmp_path, 'calibration = "tables/calibration.json"\n')
    lines = _bad_input(capsys, ["run", str(job)])
    assert lines == [f"bad input: {job}: calibration = 'tables/calibration.json': no such file "
                     f"({tmp_path / 'tables' / 'calibration.json'}).",
                     "Fix: paths in a job file are relative to the job file's folder"]


# --- the parcel-file options on every command that reads parcels -----------------------------
IDS = ["东村01", "东村02", "西村03"]
BOXES = [(116.3000, 37.4000, 116.3010, 37.4008), (116.3005, 37.4000, 116.3015, 37.4008),
         (116.3100, 37.4000, 116.3110, 37.4008)]  # the first two overlap by half


def _parcel_table(tmp_path: Path) -> Path:
    """A GBK CSV whose id header (田块代码) no built-in alias knows, so only --columns reads it."""
    path = tmp_path / "parcels_gbk.csv"
    pd.DataFrame({"田块代码": IDS, "作物": "冬小麦", "面积(亩)": 1.3,
                  "保单号": [f"POL-{i}" for i in range(3)], "单位保险金额": 800,
                  "wkt": [shapely.box(*b).wkt for b in BOXES]}
                 ).to_csv(path, index=False, encoding="gbk")
    return path


def _parcel_workbook(tmp_path: Path) -> Path:
    """An XLSX whose second sheet holds the parcels: only --layer finds them."""
    path = tmp_path / "parcels.xlsx"
    with pd.ExcelWriter(path) as book:
        pd.DataFrame({"说明": ["封面"]}).to_excel(book, sheet_name="封面", index=False)
        pd.DataFrame({"地块编号": IDS, "作物": "冬小麦", "面积(亩)": 1.3,
                      "保单号": [f"POL-{i}" for i in range(3)], "单位保险金额": 800,
                      "wkt": [shapely.box(*b).wkt for b in BOXES]}
                     ).to_excel(book, sheet_name="地块", index=False)
    return path


@pytest.fixture
def reads(monkeypatch):
    """Every read_parcels call's options and the parcel ids it returned."""
    from agri_3s.parcels import io

    calls = []
    real = io.read_parcels

    def spy(path, **kwargs):
        gdf = real(path, **kwargs)
        calls.append({**kwargs, "ids": gdf["parcel_id"].tolist()})
        return gdf

    monkeypatch.setattr(io, "read_parcels", spy)
    monkeypatch.setattr(pipeline, "read_parcels", spy)
    return calls


def _commands(tmp_path: Path, parcels: Path) -> dict[str, list[str]]:
    event = tmp_path / "hail.toml"
    event.write_text('id = "h"\ntype = "hail"\ndate = "2025-05-14"\n')
    empty = tmp_path / "s2"
    empty.mkdir(exist_ok=True)
    out = str(tmp_path / "out")
    return {"underwrite": ["underwrite", str(parcels), "--imagery", f"local:{empty}",
                           "--season", SEASON, "--out", out],
            "assess": ["assess", str(parcels), "--imagery", f"local:{empty}", "--event",
                       str(event), "--out", out],
            "parcels check": ["parcels", "check", str(parcels), "--out", out],
            "parcels overlaps": ["parcels", "overlaps", str(parcels), "--out", out],
            "photos": ["photos", str(tmp_path), str(parcels), "--out",
                       str(tmp_path / "photos.geojson")]}


COMMANDS = ["underwrite", "assess", "parcels check", "parcels overlaps", "photos"]


@pytest.mark.parametrize("command", COMMANDS)
def test_columns_encoding_and_crs_work_on_every_command_reading_parcels(command, tmp_path,
                                                                         reads, capsys):
    argv = _commands(tmp_path, _parcel_table(tmp_path))[command] + [
        "--crs", "EPSG:4326", "--encoding", "gbk", "--columns", "田块代码=parcel_id"]
    code = main(argv)
    err = capsys.readouterr().err
    assert "No such option" not in err and "Traceback" not in err
    assert reads, err
    assert reads[0]["encoding"] == "gbk" and reads[0]["columns"] == "田块代码=parcel_id"
    assert reads[0]["crs"] == "EPSG:4326"
    assert reads[0]["ids"] == IDS  # the Chinese ids read right: the GBK text and the mapping
    if command in ("underwrite", "assess"):  # parcels read; then the (empty) imagery refused
        assert code == 2 and "no acquisition folder" in err, err
    else:
        assert code == 0, err


@pytest.mark.parametrize("command", COMMANDS)
def test_layer_picks_the_sheet_on_every_command_reading_parcels(command, tmp_path, reads,
                                                                 capsys):
    argv = _commands(tmp_path, _parcel_workbook(tmp_path))[command] + [
        "--crs", "EPSG:4326", "--layer", "地块"]
    code = main(argv)
    err = capsys.readouterr().err
    assert reads and reads[0]["layer"] == "地块" and reads[0]["ids"] == IDS, err
    assert code == (2 if command in ("underwrite", "assess") else 0), err


def test_overlaps_found_in_a_file_read_with_the_options(tmp_path, capsys):
    """The options change what is read: the overlapping pair (by construction) is reported
    under the ids only --columns maps."""
    parcels = _parcel_table(tmp_path)
    out = tmp_path / "ov"
    assert main(["parcels", "overlaps", str(parcels), "--crs", "EPSG:4326", "--encoding",
                 "gbk", "--columns", "田块代码=parcel_id", "--out", str(out)]) == 0
    pairs = pd.read_csv(out / "overlaps.csv", encoding="utf-8-sig")
    assert sorted(pairs[["parcel_id_a", "parcel_id_b"]].iloc[0]) == IDS[:2]
    share = shapely.box(*BOXES[0]).intersection(shapely.box(*BOXES[1])).area \
        / shapely.box(*BOXES[0]).area
    assert share == pytest.approx(0.5)
    assert len(pairs) == 1


def test_without_columns_the_unknown_id_header_is_refused(tmp_path, capsys):
    """The counter-check: the same file without --columns does not read as parcels."""
    lines = _bad_input(capsys, ["parcels", "overlaps", str(_parcel_table(tmp_path)), "--crs",
                                "EPSG:4326", "--out", str(tmp_path / "o")])
    assert "parcel_id" in " ".join(lines)


# --- an output path that runs through a file -------------------------------------------------
BLOCKED = {  # command → (argv after the parcels, with {f} a plain file and {d} a folder; said)
    "parcels check --out FILE": (["parcels", "check", "{p}", "--out", "{f}"],
                                 "cannot create the folder {f}: {f} is a file."),
    "parcels check --out FILE/sub": (["parcels", "check", "{p}", "--out", "{f}/sub"],
                                     "cannot create the folder {f}/sub: {f} is a file."),
    "parcels overlaps --out FILE": (["parcels", "overlaps", "{p}", "--out", "{f}"],
                                    "cannot create the folder {f}: {f} is a file."),
    "underwrite --out FILE/x/y": (["underwrite", "{p}", "--imagery", "local:{d}", "--season",
                                   SEASON, "--out", "{f}/x/y"],
                                  "cannot create the folder {f}/x: {f} is a file."),
    "assess --out FILE/x": (["assess", "{p}", "--imagery", "local:{d}", "--event", "{e}",
                             "--out", "{f}/x"], "cannot create the folder {f}: {f} is a file."),
    "photos --out FILE/x.geojson": (["photos", "{d}", "{p}", "--out", "{f}/x.geojson"],
                                    "cannot create the folder {f}: {f} is a file."),
    "photos --out FOLDER": (["photos", "{d}", "{p}", "--out", "{g}"],
                            "{g}: a folder stands where this file is to be written."),
    "photos --out x.txt": (["photos", "{d}", "{p}", "--out", "{t}"],
                           "{t}: unsupported export format."),
}


@pytest.mark.parametrize("case", BLOCKED, ids=list(BLOCKED))
def test_an_out_path_through_a_file_is_bad_input_naming_the_file(case, tmp_path, capsys):
    """A file where --out needs a folder, a folder where it names a file, or a file name of no
    export format gave a 40-line traceback (FileExistsError, NotADirectoryError,
    IsADirectoryError, ValueError) and exit 1."""
    import geopandas as gpd

    parcels = tmp_path / "p.geojson"
    gpd.GeoDataFrame({"parcel_id": ["A"], "crop": "winter_wheat", "declared_area_mu": 1.3,
                      "policy_id": "POL", "sum_insured_cny_per_mu": 800},
                     geometry=[shapely.box(*BOXES[0])], crs=4326).to_file(parcels)
    (tmp_path / "e.toml").write_text('id = "h"\ntype = "hail"\ndate = "2025-05-14"\n')
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    (tmp_path / "s2").mkdir()
    (tmp_path / "photos.geojson").mkdir()
    names = {"p": parcels, "f": tmp_path / "notes.txt", "d": tmp_path / "s2",
             "e": tmp_path / "e.toml", "g": tmp_path / "photos.geojson", "t": tmp_path / "x.txt"}
    argv, said = BLOCKED[case]
    lines = _bad_input(capsys, [a.format(**names) for a in argv])
    assert lines[0] == "bad input: " + said.format(**names)
    assert lines[1].startswith("Fix: " + ("end the file name in .csv" if "txt" in case
                                          else "give --out "))
    assert (tmp_path / "notes.txt").read_text() == "a file, not a folder"  # left as it was
    assert sorted(p.name for p in (tmp_path / "s2").iterdir()) == []


def test_a_map_over_a_file_is_bad_input(tmp_path):
    from types import SimpleNamespace

    from agri_3s.outputs.webmap.page import write_map

    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=f"cannot create the folder {tmp_path}/f: {tmp_path}/f "
                                         "is a file"):
        write_map(SimpleNamespace(html="<p>map</p>"), tmp_path / "f" / "map.html")
    with pytest.raises(InputError, match="a folder stands where this file is to be written"):
        write_map(SimpleNamespace(html="<p>map</p>"), tmp_path)
    assert write_map(SimpleNamespace(html="<p>map</p>"), tmp_path / "m" / "map.html").read_text(
        encoding="utf-8") == "<p>map</p>"
