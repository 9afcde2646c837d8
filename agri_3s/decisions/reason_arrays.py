"""Reason columns (``reasons``, ``reasons_zh``, ``reasons_en``) built for a whole batch at once.

A province has a million parcels but only a few distinct reason texts: each reason is filled
once per distinct set of values (rounded to the precision the texts show) and spread to its
parcels with array indexing, so no Python code runs per parcel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..reasons import reason

COLUMNS = ("reasons", "reasons_zh", "reasons_en")
_SEPARATORS = (";", "；", "; ")


def empty_reasons(n: int) -> dict[str, np.ndarray]:
    """Three empty reason columns (object arrays of ``""``) for ``n`` parcels.

    >>> empty_reasons(2)["reasons"]
    array(['', ''], dtype=object)
    """
    return {c: np.full(n, "", dtype=object) for c in COLUMNS}


def add_reason(columns: dict[str, np.ndarray], code: str, mask: np.ndarray,
               **values: object) -> None:
    """Append reason ``code`` to the parcels where ``mask``, filled with ``values``.

    ``values`` are scalars or arrays over all parcels (floats are rounded to 4 decimals before
    the texts are made, so a batch has few distinct texts).

    Examples
    --------
    >>> cols = empty_reasons(3)
    >>> add_reason(cols, "LOSS_ESTIMATED", np.array([True, True, False]))
    >>> add_reason(cols, "FEW_NEIGHBOURS", np.array([False, True, True]), n=np.array([0, 2, 3]))
    >>> list(cols["reasons"])
    ['LOSS_ESTIMATED', 'LOSS_ESTIMATED;FEW_NEIGHBOURS', 'FEW_NEIGHBOURS']
    >>> cols["reasons_en"][2]
    'too few healthy same-crop neighbours (3)'
    """
    rows = np.flatnonzero(mask)
    if not rows.size:
        return
    names = list(values)
    arrays = []
    for name in names:
        v = np.asarray(values[name])
        v = np.broadcast_to(v, mask.shape)[rows] if v.ndim else np.full(rows.size, v)
        if v.dtype.kind == "f":
            v = np.round(v.astype(np.float64), 4)
        arrays.append(v)
    if arrays:
        which, distinct = pd.factorize(pd.MultiIndex.from_arrays(arrays, names=names))
        texts = [reason(code, **dict(zip(names, key))) for key in distinct]
    else:
        which, texts = np.zeros(rows.size, np.intp), [reason(code)]
    for k, (col, sep) in enumerate(zip(COLUMNS, _SEPARATORS)):
        text = np.array([t[k] for t in texts], dtype=object)[which]
        current = columns[col][rows]
        columns[col][rows] = np.where(current == "", text, current + sep + text)


def replace_reasons(columns: dict[str, np.ndarray], mask: np.ndarray,
                    texts: dict[str, np.ndarray]) -> None:
    """Overwrite the reasons of the parcels where ``mask`` with ready-made ``texts``."""
    for col in COLUMNS:
        columns[col][mask] = np.asarray(texts[col], dtype=object)[mask]
