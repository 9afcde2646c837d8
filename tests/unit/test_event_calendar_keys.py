"""Event files (``--event``) and crop calendar files (``--calendar``) refuse a key they do not
know, naming it and the closest known key, as job files do (one rule: ``tomlfile.check_keys``).
A misspelt optional key (``foot_print``, ``name_eng``) used to be ignored without a word.

Truth: the expected lines are written out by hand from the documented file formats (README,
DESIGN.md "File formats users hand to agri_3s")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from agri_3s.cli import main
from agri_3s.decisions.calendar import BUILTIN, calendar_for, load_calendars
from agri_3s.decisions.loss import load_event
from agri_3s.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
SEASON = "2024-10-01/2025-06-15"
EVENT = 'id = "hail-1"\ntype = "hail"\ndate = "2025-05-14"\n'
CALENDAR = """[maize.test_region]
name_zh = "玉米"
name_en = "maize"
sowing = ["04-01", "04-30"]
emergence = ["04-10", "05-15"]
peak = ["06-15", "07-31"]
harvest = ["08-15", "09-30"]
peak_ndvi_min = 0.6
stages = [
  { name = "early", name_zh = "前期", start = "04-01", share = 0.5 },
  { name = "late", start = "06-15", share = 1.0 },
]
"""


def _bad_input(capsys, argv: list[str]) -> list[str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.err.strip().splitlines()


def _parcels(tmp_path: Path) -> Path:
    """Three valid wheat parcels (about 1.3 mu each), so a job gets as far as the calendar."""
    path = tmp_path / "parcels.geojson"
    boxes = [(116.3000, 37.4000, 116.3010, 37.4008), (116.3020, 37.4000, 116.3030, 37.4008),
             (116.3040, 37.4000, 116.3050, 37.4008)]
    gpd.GeoDataFrame({"parcel_id": ["A", "B", "C"], "crop": "winter_wheat",
                      "declared_area_mu": 1.3, "policy_id": "POL", "sum_insured_cny_per_mu": 800},
                     geometry=[shapely.box(*b) for b in boxes], crs=4326).to_file(path)
    return path


# --- event files ------------------------------------------------------------------------------
EVENT_TYPOS = {  # line added to a valid event → (first line's end, fix line)
    "footprint misspelt": ('foot_print = "fp.geojson"\n',
                           "unknown key 'foot_print' in the event file.",
                           "Fix: did you mean 'footprint'?"),
    "crops in the singular": ('crop = ["winter_wheat"]\n',
                              "unknown key 'crop' in the event file.",
                              "Fix: did you mean 'crops'?"),
    "end misspelt": ('ende = "2025-05-20"\n', "unknown key 'ende' in the event file.",
                     "Fix: did you mean 'end'?"),
    "nothing close": ('colour = "red"\n', "unknown key 'colour' in the event file.",
                      "Fix: the keys of the event file are crops, date, end, footprint, id, "
                      "start, type"),
}


@pytest.mark.parametrize("case", EVENT_TYPOS, ids=list(EVENT_TYPOS))
def test_an_unknown_event_key_is_refused_naming_the_closest(case, tmp_path, capsys):
    line, said, fix = EVENT_TYPOS[case]
    event = tmp_path / "hail.toml"
    event.write_text(EVENT + line, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_event(event)
    assert caught.value.source == event
    # the command refuses it before reading anything else (the parcel file does not exist)
    lines = _bad_input(capsys, ["assess", str(tmp_path / "absent.geojson"), "--imagery",
                                f"local:{tmp_path}", "--event", str(event)])
    assert lines == [f"bad input: {event}: {said}", fix]


def test_a_misspelt_type_is_named_not_reported_missing(tmp_path):
    event = tmp_path / "e.toml"
    event.write_text('id = "e"\ntyp = "hail"\ndate = "2025-05-14"\n', encoding="utf-8")
    with pytest.raises(InputError, match="unknown key 'typ' in the event file. Fix: did you "
                                         "mean 'type'"):
        load_event(event)


def test_every_documented_event_key_is_accepted(tmp_path):
    gpd.GeoDataFrame(geometry=[shapely.box(116.30, 37.40, 116.31, 37.41)], crs=4326).to_file(
        tmp_path / "fp.geojson")
    event = tmp_path / "drought.toml"
    event.write_text('id = "dr-1"\ntype = "drought"\nstart = "2025-06-01"\nend = "2025-07-10"\n'
                     'footprint = "fp.geojson"\ncrops = ["summer_maize"]\n', encoding="utf-8")
    got = load_event(event)
    assert (got.id, got.type, got.date, got.end, got.crops) == (
        "dr-1", "drought", dt.date(2025, 6, 1), dt.date(2025, 7, 10), ("summer_maize",))
    assert len(got.footprint) == 1


@pytest.mark.parametrize("length,refused", [(200, False), (201, True), (10_000, True)])
def test_an_event_id_longer_than_the_text_limit_is_refused(length, refused, tmp_path, capsys):
    """The event id is written into every claim (``event_id``, whose schema allows 200
    characters) and the posting lists: a longer one was accepted and then cut in the exports
    with only a log warning. The limit (200) is README's "user text is limited to 200
    characters", written here by hand."""
    event = tmp_path / "hail.toml"
    event_id = ("=HYPERLINK(\"http://x\",\"y\")" * 400)[:length]
    event.write_text(f'id = "{event_id.replace(chr(34), chr(92) + chr(34))}"\ntype = "hail"\n'
                     'date = "2025-05-14"\n', encoding="utf-8")
    if not refused:
        assert load_event(event).id == event_id
        return
    with pytest.raises(InputError) as caught:
        load_event(event)
    assert caught.value.source == event
    lines = _bad_input(capsys, ["assess", str(tmp_path / "absent.geojson"), "--imagery",
                                f"local:{tmp_path}", "--event", str(event)])
    assert lines == [f"bad input: {event}: the event id is {length} characters long, above the "
                     "limit of 200.", "Fix: give the event a shorter id (e.g. "
                                      'id = "hail-2025-05-14")']


# --- crop calendar files ----------------------------------------------------------------------
CALENDAR_TYPOS = {  # (text replaced, by) → (first line's end, fix line)
    "optional entry key": (('name_en = "maize"', 'name_eng = "maize"'),
                           "unknown key 'name_eng' in [maize.test_region].",
                           "Fix: did you mean 'name_en'?"),
    "required entry key": (("harvest = ", "harvst = "),
                           "unknown key 'harvst' in [maize.test_region].",
                           "Fix: did you mean 'harvest'?"),
    "stage key": (('name = "late",', 'name = "late", namezh = "后期",'),
                  "unknown key 'namezh' in stage 2 of [maize.test_region].",
                  "Fix: did you mean 'name_zh'?"),
}


def _calendar(tmp_path: Path, old: str = "", new: str = "") -> Path:
    path = tmp_path / "calendar.toml"
    assert old in CALENDAR
    path.write_text(CALENDAR.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", CALENDAR_TYPOS, ids=list(CALENDAR_TYPOS))
def test_an_unknown_calendar_key_is_refused_naming_the_closest(case, tmp_path, capsys):
    (old, new), said, fix = CALENDAR_TYPOS[case]
    calendar = _calendar(tmp_path, old, new)
    with pytest.raises(InputError) as caught:
        load_calendars(calendar)
    assert caught.value.source == calendar
    expected = [f"bad input: {calendar}: {said}", fix]
    parcels = _parcels(tmp_path)
    event = tmp_path / "hail.toml"
    event.write_text(EVENT, encoding="utf-8")
    # assess refuses it before any imagery work (the imagery folder does not exist) …
    assert _bad_input(capsys, ["assess", str(parcels), "--imagery", f"local:{tmp_path / 'no'}",
                               "--event", str(event), "--calendar", str(calendar)]) == expected
    # … and so does underwrite
    assert _bad_input(capsys, ["underwrite", str(parcels), "--imagery",
                               f"local:{tmp_path / 'no'}", "--season", SEASON, "--calendar",
                               str(calendar), "--out", str(tmp_path / "o")]) == expected


def test_a_valid_calendar_file_still_reads(tmp_path):
    cal = calendar_for(load_calendars(_calendar(tmp_path)), "maize", "test_region")
    assert (cal.name_zh, cal.name_en, cal.peak_ndvi_min) == ("玉米", "maize", 0.6)
    assert [(s.name, s.name_zh, s.start, s.share) for s in cal.stages] == [
        ("early", "前期", (4, 1), 0.5), ("late", "late", (6, 15), 1.0)]


@pytest.mark.parametrize("path", [BUILTIN, *sorted((ROOT / "tests" / "data").glob("*calendar"
                                                                                   ".toml"))],
                         ids=lambda p: p.name)
def test_the_shipped_calendar_files_follow_the_rule(path):
    assert load_calendars(path)


@pytest.mark.parametrize("old, new, said", [
    ('name_zh = "玉米"', 'name_zh = "' + "玉" * 201 + '"', "name_zh of [maize.test_region] is 201"),
    ('{ name = "late",', '{ name = "' + "l" * 300 + '",', "stage 2 name of [maize.test_region] "
                                                        "is 300"),
])
def test_a_calendar_name_longer_than_the_text_limit_is_refused(old, new, said, tmp_path):
    """Stage and crop names go into every claim (growth_stage) and the posting list; one over
    README's 200-character limit used to be cut in the exports with only a warning."""
    assert old in CALENDAR
    path = tmp_path / "calendar.toml"
    path.write_text(CALENDAR.replace(old, new), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_calendars(path)
    assert caught.value.problem == f"{path}: {said} characters long, above the limit of 200."
    path.write_text(CALENDAR.replace(old, new[:old.index('"') + 1] + "x" * 200 + '"'
                                     + new[new.rindex('"') + 1:]), encoding="utf-8")
    assert load_calendars(path)  # 200 characters: accepted
