"""Reading the TOML files users write (job files, event files, crop calendars), their keys and
value types checked."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

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


def check_keys(table: Mapping, known: Iterable[str], *, where: str, source: object,
               elsewhere: Mapping[str, str] | None = None) -> None:
    """Refuse keys of ``table`` that are not ``known``, naming the closest known key.

    A typo must not run silently with a default (``calender = …`` would use the built-in
    calendar). ``elsewhere`` maps keys that belong to another table or job to where they go
    ("in [rules]").

    Examples
    --------
    >>> check_keys({"calender": "x.toml"}, ["calendar", "region"], where="the job file",
    ...            source="job.toml")
    Traceback (most recent call last):
    ...
    agri_3s.errors.InputError: job.toml: unknown key 'calender' in the job file. Fix: did you mean 'calendar'?
    """
    known = list(known)
    unknown = [k for k in table if k not in known]
    if not unknown:
        return
    key = unknown[0]
    elsewhere = elsewhere or {}
    if key in elsewhere:
        raise InputError(f"'{key}' is not a key of {where}.", source=source,
                         fix=f"it belongs {elsewhere[key]}")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    more = f" (also unknown: {', '.join(repr(k) for k in unknown[1:])})" if unknown[1:] else ""
    fix = (f"did you mean '{close[0]}'?" if close
           else f"the keys of {where} are {', '.join(sorted(known))}")
    raise InputError(f"unknown key '{key}' in {where}{more}.", source=source, fix=fix)


T = TypeVar("T")


def settings(cls: type[T], table: object, *, where: str, source: object) -> T:
    """A settings dataclass (``PlantingRules``, ``PolicyTerms``, …) from a TOML table, its keys
    and value types checked: unknown keys name the closest one, a wrong type names the key.

    Examples
    --------
    >>> from agri_3s.decisions.indemnity import PolicyTerms
    >>> settings(PolicyTerms, {"deductible": 0.1}, where="[policy]", source="job.toml")
    PolicyTerms(payout_threshold=0.3, total_loss_at=0.8, deductible=0.1, use_stage_caps=True)
    """
    if not isinstance(table, Mapping):
        raise InputError(f"{where} is {table!r}, not a table.", source=source,
                         fix=f"write it as a table: {where} on its own line, then key = value "
                             "lines")
    defaults = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(table, defaults, where=where, source=source)
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        try:
            values[key] = _typed(value, hints.get(key, object))
        except TypeError:
            default = defaults[key].default
            example = (_toml_literal(default) if default not in (None, dataclasses.MISSING)
                       else f"<{_kind(hints[key])}>")
            raise InputError(f"{where} {key} = {_toml_literal(value)} is not {_kind(hints[key])}.",
                             source=source, fix=f"write it like {key} = {example}") from None
    return cls(**values)


def _typed(value: object, hint: object) -> object:
    """``value`` as the type ``hint`` names (int → float; TOML arrays → tuples), or TypeError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                with contextlib.suppress(TypeError):
                    return _typed(value, arg)
        raise TypeError(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise TypeError(hint)
        if args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise TypeError(hint)
            return tuple(_typed(v, a) for v, a in zip(value, args))
        return tuple(_typed(v, args[0] if args else object) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(hint)
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                hint is int and not isinstance(value, int)):
            raise TypeError(hint)
        return hint(value)
    if hint is str and not isinstance(value, str):
        raise TypeError(hint)
    return value


def _kind(hint: object) -> str:
    """The type ``hint`` names, as a user reads it."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is tuple:
        args = typing.get_args(hint)
        n = "" if not args or args[-1] is Ellipsis else f"{len(args)} "
        return f"a list of {n}{_kind(args[0]).removeprefix('a ').removeprefix('an ')}s" \
            if args else "a list"
    return {bool: "true or false", int: "a whole number", float: "a number",
            str: "a text in quotes"}.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _toml_literal(value: object) -> str:
    """``value`` spelt as in TOML (true, [10.0, 50.0], "text")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
