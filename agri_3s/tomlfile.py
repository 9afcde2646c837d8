"""Reading the TOML files users write (job files, event files, crop calendars)."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: str | Path, what: str = "file") -> dict:
    """Parse ``path`` or raise an :class:`InputError` naming the file and the line."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found.", source=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc}).", source=path,
                         fix="check quotes and brackets on that line") from exc
