"""Crop calendars: when a crop is sown, emerges, peaks and is harvested, and its growth stages.

The table is data (``agri_3s/data/crop_calendars.toml``); users extend or override it with a
file of the same format. Windows are month-day pairs placed into a concrete season by
:meth:`Window.within`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..tomlfile import check_keys, read_toml
from ..types import TEXT_MAX_LENGTH, Season

BUILTIN = Path(__file__).resolve().parents[1] / "data" / "crop_calendars.toml"
#: The keys of a calendar entry ``[crop.region]`` and of one of its ``stages``: a misspelt one
#: (``peak_ndvi_mn``) is refused, never left to a default.
ENTRY_KEYS = ("name_zh", "name_en", "sowing", "emergence", "peak", "harvest", "peak_ndvi_min",
              "stages")
STAGE_KEYS = ("name", "name_zh", "start", "share")


def _md(text: str, where: str) -> tuple[int, int]:
    try:
        m, d = (int(x) for x in str(text).split("-"))
        dt.date(2000, m, d)  # validates (2000 is a leap year, so 02-29 is allowed)
        return m, d
    except ValueError as exc:
        raise InputError(f"{where}: {text!r} is not a month-day like \"10-05\".") from exc


def _on(year: int, md: tuple[int, int]) -> dt.date:
    m, d = md
    return dt.date(year, m, min(d, 28) if (m, d) == (2, 29) else d)


@dataclass(frozen=True)
class Window:
    """A recurring [start, end] month-day window; may cross the new year."""

    start: tuple[int, int]
    end: tuple[int, int]

    def within(self, season: Season) -> tuple[dt.date, dt.date]:
        """The occurrence of this window that overlaps ``season`` the most."""
        best, best_overlap = None, None
        for year in range(season.start.year - 1, season.end.year + 1):
            a = _on(year, self.start)
            b = _on(year + (1 if self.end < self.start else 0), self.end)
            overlap = (min(b, season.end) - max(a, season.start)).days
            if best_overlap is None or overlap > best_overlap:
                best, best_overlap = (a, b), overlap
        return best


@dataclass(frozen=True)
class GrowthStage:
    name: str
    name_zh: str
    #: Month-day the stage starts.
    start: tuple[int, int]
    #: Most the policy pays for a total loss in this stage, as a share of the sum insured.
    share: float


@dataclass(frozen=True)
class CropCalendar:
    crop: str
    region: str
    name_zh: str
    name_en: str
    sowing: Window
    emergence: Window
    peak: Window
    harvest: Window
    peak_ndvi_min: float
    stages: tuple[GrowthStage, ...]

    def stage_on(self, day: dt.date) -> GrowthStage | None:
        """The growth stage in force on ``day``: stages run in order from the last sowing start."""
        sow = _on(day.year, self.sowing.start)
        if sow > day:
            sow = _on(day.year - 1, self.sowing.start)
        current = None
        for stage in self.stages:
            start = _on(sow.year, stage.start)
            if start < sow:
                start = _on(sow.year + 1, stage.start)
            if start <= day:
                current = stage
        return current


def _parse(crop: str, region: str, entry: dict, source: Path) -> CropCalendar:
    where = f"{source} [{crop}.{region}]"
    if isinstance(entry, dict):
        _check_entry(entry, crop, region, source)
    try:
        windows = {k: Window(_md(entry[k][0], where), _md(entry[k][1], where))
                   for k in ("sowing", "emergence", "peak", "harvest")}
        stages = tuple(GrowthStage(s["name"], s.get("name_zh", s["name"]),
                                   _md(s["start"], where), float(s["share"]))
                       for s in entry.get("stages", []))
        return CropCalendar(crop, region, entry.get("name_zh", crop), entry.get("name_en", crop),
                            peak_ndvi_min=float(entry["peak_ndvi_min"]), stages=stages,
                            **windows)
    except (KeyError, IndexError, TypeError) as exc:
        raise InputError(f"crop calendar entry is incomplete ({exc!r}).", source=where,
                         fix="give sowing, emergence, peak, harvest as [\"MM-DD\", \"MM-DD\"] and "
                             "peak_ndvi_min") from exc


def _check_entry(entry: dict, crop: str, region: str, source: Path) -> None:
    """Unknown keys of an entry and its stages are refused (naming the closest known key), and
    so are names longer than the exports' text limit: names go into every claim's growth stage
    and the posting list, and are refused here rather than cut in them."""
    where = f"[{crop}.{region}]"
    check_keys(entry, ENTRY_KEYS, where=where, source=source)
    parts = [("", entry)]
    for n, stage in enumerate(entry.get("stages") or [], 1):
        if isinstance(stage, dict):
            check_keys(stage, STAGE_KEYS, where=f"stage {n} of {where}", source=source)
            parts.append((f"stage {n} ", stage))
    for label, part in parts:
        for key in ("name", "name_zh", "name_en"):
            text = part.get(key)
            if isinstance(text, str) and len(text) > TEXT_MAX_LENGTH:
                raise InputError(f"{label}{key} of {where} is {len(text)} characters long, "
                                 f"above the limit of {TEXT_MAX_LENGTH}.", source=source,
                                 fix=f"shorten it to at most {TEXT_MAX_LENGTH} characters")


def load_calendars(path: str | Path | None = None) -> dict[str, list[CropCalendar]]:
    """Built-in calendars, overridden / extended by ``path`` (same TOML format).

    Returns crop code → calendars (one per region).
    """
    table: dict[tuple[str, str], CropCalendar] = {}
    for src in [BUILTIN] + ([Path(path)] if path else []):
        data = read_toml(src, "crop calendar file")
        for crop, regions in data.items():
            for region, entry in regions.items():
                table[(crop, region)] = _parse(crop, region, entry, Path(src))
    out: dict[str, list[CropCalendar]] = {}
    for (crop, _), cal in table.items():
        out.setdefault(crop, []).append(cal)
    return out


def calendar_for(calendars: dict[str, list[CropCalendar]], crop: str,
                 region: str | None = None) -> CropCalendar | None:
    """The calendar for ``crop`` (in ``region`` if given, else the crop's only/first region)."""
    options = calendars.get(crop, [])
    if region:
        options = [c for c in options if c.region == region] or options
    return options[-1] if options else None  # a user file, loaded last, wins
