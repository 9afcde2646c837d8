"""Where the parts of a generated sample are, and imagery folders that start at a given date."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .scene import FLOOD_ID, HAIL_ID


@dataclass(frozen=True)
class SamplePaths:
    """Where the parts of a generated sample are.

    Examples
    --------
    >>> p = SamplePaths.at("/data/sample")
    >>> p.truth.name, p.unflagged_clouds.name, p.hail_event.name
    ('truth.csv', 'unflagged_clouds.csv', 'hail_2025-05-14.toml')
    """

    root: Path
    imagery: Path
    parcels_wheat: Path
    parcels_maize: Path
    truth: Path
    hail_event: Path
    flood_event: Path
    hail_footprint: Path
    flood_footprint: Path
    unflagged_clouds: Path
    snow: Path

    @classmethod
    def at(cls, root: Path | str) -> SamplePaths:
        """The paths of a sample generated into ``root``."""
        root = Path(root)
        ev = root / "events"
        return cls(root=root, imagery=root / "imagery",
                   parcels_wheat=root / "parcels_wheat.geojson",
                   parcels_maize=root / "parcels_maize.geojson", truth=root / "truth.csv",
                   hail_event=ev / f"{HAIL_ID}.toml", flood_event=ev / f"{FLOOD_ID}.toml",
                   hail_footprint=ev / f"{HAIL_ID}_footprint.geojson",
                   flood_footprint=ev / f"{FLOOD_ID}_footprint.geojson",
                   unflagged_clouds=root / "unflagged_clouds.csv", snow=root / "snow.csv")

    def imagery_from(self, start: dt.date | str) -> Path:
        """An imagery folder holding only the acquisitions on or after ``start``.

        Made once, beside ``imagery``, as ``imagery_from_<start>`` of symbolic links to the
        date folders (relative links, so the sample can be moved), as when a season's imagery
        is bought from 1 January and the autumn sowing is never seen.

        Examples
        --------
        >>> src = ensure_sample().imagery_from("2025-01-01")   # doctest: +SKIP
        >>> underwrite(parcels, f"local:{src}", "2024-10-01/2025-06-15")   # doctest: +SKIP
        """
        try:
            start = dt.date.fromisoformat(str(start))
        except ValueError as exc:
            raise InputError(f"start {start!r} is not a date.", source="imagery_from",
                             fix="give a date as YYYY-MM-DD") from exc
        dst = self.root / f"imagery_from_{start.isoformat()}"
        if dst.is_dir():
            return dst
        names = sorted(p.name for p in self.imagery.iterdir()
                       if p.is_dir() and dt.date.fromisoformat(p.name[:10]) >= start)
        if not names:
            raise InputError(f"no acquisition on or after {start}.", source=self.imagery,
                             fix="choose an earlier start date")
        tmp = self.root / f".{dst.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in names:
            (tmp / name).symlink_to(Path("..") / self.imagery.name / name,
                                    target_is_directory=True)
        try:
            tmp.rename(dst)
        except OSError:   # another process made it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            if not dst.is_dir():
                raise
        return dst
