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

#: Version of the verdict and claim-estimate export schema (DESIGN.md data contracts).
SCHEMA_VERSION = "1.0.0"  # three parts: never read back as a number by CSV / Excel
