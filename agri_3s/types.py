"""Frozen records shared across layers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Season:
    """An insurance season: the period whose imagery decides a verdict."""

    start: dt.date
    end: dt.date

    @classmethod
    def parse(cls, text: str) -> Season:
        """``Season.parse("2024-10-01/2025-06-15")``"""
        from .errors import InputError

        try:
            a, b = text.split("/")
            season = cls(dt.date.fromisoformat(a.strip()), dt.date.fromisoformat(b.strip()))
        except ValueError as exc:
            raise InputError(f"season {text!r} is not START/END.", source="--season",
                             fix="write it as 2024-10-01/2025-06-15") from exc
        if season.end <= season.start:
            raise InputError(f"season {text!r} ends before it starts.", source="--season",
                             fix="give START/END with END after START")
        return season

    def __str__(self) -> str:
        return f"{self.start}/{self.end}"

#: Version of the export schemas (verdicts, claims, parcel check report; DESIGN.md data
#: contracts, ``agri_3s/outputs/schemas/``): a minor step adds columns or values, a major one
#: removes or redefines them. Three parts, so CSV / Excel never read it back as a number.
SCHEMA_VERSION = "1.1.0"

#: Longest text agri_3s accepts in a user's field (ids, crop codes, names, any own column) and
#: writes in an export; the export schemas state it as ``maxLength``.
TEXT_MAX_LENGTH = 200

#: Longest reason text (``reasons_zh`` / ``reasons_en``, all of a row's reasons joined).
REASON_TEXT_MAX_LENGTH = 4000
