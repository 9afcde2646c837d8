"""Masking of farmers' personal data (姓名, 身份证号) for maps and exports given to third parties.

Masking is idempotent (masking a masked value gives the same value), so a table may pass through
:func:`mask_pii` more than once.
"""

from __future__ import annotations

import math

import pandas as pd

#: Columns holding personal data, and the function that masks each.
PII_COLUMNS = ("farmer_name", "farmer_id_number")


def _text(value: object) -> str:
    """``value`` as stripped text; ``None`` / NaN / NaT give ``""``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).strip()


def mask_name(name: object) -> str:
    """Mask a person's name, keeping its first and last character.

    Parameters
    ----------
    name : str or None
        A Chinese or Latin name. ``None``, NaN and ``""`` give ``""``.

    Returns
    -------
    str
        The first character, one ``*`` per hidden character, then the last character. A
        two-character name keeps only its first character (``王五`` → ``王*``); a one-character
        name is returned as ``*``.

    Examples
    --------
    >>> mask_name("张三丰"), mask_name("王五"), mask_name("John Smith"), mask_name(None)
    ('张*丰', '王*', 'J********h', '')
    """
    text = _text(name)
    if len(text) <= 1:
        return "*" if text else ""
    if len(text) == 2:
        return text[0] + "*"
    return text[0] + "*" * (len(text) - 2) + text[-1]


def mask_id_number(number: object) -> str:
    """Mask an identity-card number (居民身份证号), keeping its last four characters.

    Parameters
    ----------
    number : str or None
        The number; ``None``, NaN and ``""`` give ``""``. Numbers of four characters or fewer are
        masked completely.

    Returns
    -------
    str
        One ``*`` per hidden character, then the last four characters.

    Examples
    --------
    >>> mask_id_number("371428199001011234")
    '**************1234'
    """
    text = _text(number)
    if len(text) <= 4:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


_MASKERS = {"farmer_name": mask_name, "farmer_id_number": mask_id_number}


def mask_pii(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with ``farmer_name`` and ``farmer_id_number`` masked where present.

    Every other column (geometry included) and the index are left untouched; a GeoDataFrame stays
    a GeoDataFrame. Missing values become ``""``.

    Parameters
    ----------
    df : pandas.DataFrame
        Any table; the PII columns are optional.

    Returns
    -------
    pandas.DataFrame
        A new table of the same type.

    Examples
    --------
    >>> t = pd.DataFrame({"parcel_id": ["p1"], "farmer_name": ["张三丰"],
    ...                   "farmer_id_number": ["371428199001011234"]})
    >>> mask_pii(t).iloc[0].tolist()
    ['p1', '张*丰', '**************1234']
    """
    out = df.copy()
    for column, mask in _MASKERS.items():
        if column in out.columns:
            out[column] = out[column].map(mask).astype(object)
    return out
