"""Reason columns (``reasons``, ``reasons_zh``, ``reasons_en``) built for a whole batch at once.

A province has a million parcels but only a few distinct reason texts: each reason is filled
once per distinct set of values (rounded to the precision the texts show) and spread to its
parcels with array indexing: :class:`BatchReasons` keeps one small table of distinct reason
lists and an index per parcel; appending makes the new lists once per distinct (list, reason)
pair, so no string at all is built per parcel, and the final columns hold references to the
shared strings (:meth:`BatchReasons.columns`) or are built in Arrow from the distinct texts
(:meth:`BatchReasons.text_columns`: each text encoded once, not once per parcel).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from ..reasons import REASONS, reason

COLUMNS = ("reasons", "reasons_zh", "reasons_en")
_SEPARATORS = (";", "；", "; ")


@cache
def shown_decimals(code: str) -> dict[str, int]:
    """Per value of reason ``code``, the decimals its texts show (4 where a text shows the
    value as it is): values that print alike make one text.

    >>> shown_decimals("NOT_PLANTED")
    {'p75': 2, 'min': 2}
    """
    out: dict[str, int] = {}
    for template in REASONS[code]:
        for _, name, spec, _ in string.Formatter().parse(template):
            if name:
                fixed = re.fullmatch(r"\.(\d+)([f%])", spec or "")
                shown = 4 if not fixed else int(fixed[1]) + (2 if fixed[2] == "%" else 0)
                out[name] = max(out.get(name, 0), shown)
    return out


def _texts(code: str, mask: np.ndarray, values: dict, *, compact: bool = False
           ) -> tuple[np.ndarray, np.ndarray, list]:
    """Rows where ``mask``, each row's index into the distinct texts, and those texts (floats
    rounded to the decimals the texts show first). ``compact``: array values are already those
    of the rows (see :func:`compact_values`)."""
    rows = np.flatnonzero(mask)
    if not rows.size:
        return rows, rows, []
    fixed, names, arrays = {}, [], []
    for name, v in values.items():
        v = np.asarray(v)
        if not v.ndim:  # the same for every row
            fixed[name] = v.item()
            continue
        if not compact:
            v = np.broadcast_to(v, mask.shape)[rows]
        shown = shown_decimals(code).get(name, 4)
        names.append(name)
        arrays.append(np.round(v.astype(np.float64), shown) if v.dtype.kind == "f" else v)
    which, first = distinct_rows(arrays, rows.size)
    return rows, which, [reason(code, **fixed, **{k: a[i] for k, a in zip(names, arrays)})
                         for i in first]


def distinct_rows(arrays: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's index into the distinct rows of the columns ``arrays`` (in order of first
    appearance), and the first row of each.

    >>> which, first = distinct_rows([np.array([1, 2, 1]), np.array(["a", "b", "a"])], 3)
    >>> which.tolist(), first.tolist()
    ([0, 1, 0], [0, 1])
    """
    which = np.zeros(n, np.int64)
    for a in arrays:  # fold in one column at a time; the codes stay below n
        code, uniques = pd.factorize(a, use_na_sentinel=True)
        which, _ = pd.factorize(which * (len(uniques) + 1) + code + 1)
    first = np.full(int(which.max(initial=-1)) + 1, n, np.int64)
    np.minimum.at(first, which, np.arange(n))
    return which, first


def compact_values(mask: np.ndarray, values: dict) -> dict:
    """``values`` with every per-parcel array cut to the parcels where ``mask``: what a reason
    keeps until its texts are made (a province's full-length arrays would pile up otherwise).

    >>> compact_values(np.array([True, False, True]), {"n": np.array([1, 2, 3]), "k": 5})
    {'n': array([1, 3]), 'k': 5}
    """
    return {k: (np.broadcast_to(v, mask.shape)[mask] if np.ndim(v) else v)
            for k, v in values.items()}


@dataclass
class BatchReasons:
    """Reasons of a batch: ``texts[index[i]]`` is parcel i's (codes, zh, en).

    >>> r = BatchReasons.empty(3)
    >>> r.add("LOSS_ESTIMATED", np.array([True, True, False]))
    >>> r.add("FEW_NEIGHBOURS", np.array([False, True, True]), n=np.array([0, 2, 3]))
    >>> r.columns()["reasons"].tolist()
    ['LOSS_ESTIMATED', 'LOSS_ESTIMATED;FEW_NEIGHBOURS', 'FEW_NEIGHBOURS']
    >>> len(r.texts)  # the empty list and three distinct lists: nothing per parcel
    4
    """

    index: np.ndarray
    texts: list[tuple[str, str, str]]

    @classmethod
    def empty(cls, n: int) -> BatchReasons:
        return cls(np.zeros(n, np.int64), [("", "", "")])

    @classmethod
    def of(cls, table: pd.DataFrame) -> BatchReasons:
        """The reasons already in ``table``'s three reason columns (to append more).

        >>> BatchReasons.of(pd.DataFrame({"reasons": ["A", "A"], "reasons_zh": ["甲", "甲"],
        ...                               "reasons_en": ["a", "a"]})).texts
        [('A', '甲', 'a')]
        """
        index, distinct = pd.MultiIndex.from_arrays(
            [table[c].fillna("").astype(object).to_numpy() for c in COLUMNS]).factorize()
        return cls(index.astype(np.int64), [tuple(t) for t in distinct])

    def add(self, code: str, mask: np.ndarray, *, compact: bool = False,
            **values: object) -> None:
        """Append reason ``code`` to the parcels where ``mask``, filled with ``values`` (scalars
        or arrays over all parcels — over the masked parcels only with ``compact``; floats are
        rounded to the decimals the texts show before they are made)."""
        rows, which, new = _texts(code, np.asarray(mask, bool), values, compact=compact)
        if not rows.size:
            return
        # one new list per distinct (current list, new reason) pair
        pairs, combo = np.unique(self.index[rows] * len(new) + which, return_inverse=True)
        start = len(self.texts)
        for p in pairs:
            old, add = self.texts[p // len(new)], new[p % len(new)]
            self.texts.append(tuple(a + s + b if a else b
                                    for a, s, b in zip(old, _SEPARATORS, add)))
        self.index[rows] = start + combo.ravel()

    def columns(self) -> dict[str, pd.Series]:
        """The three reason columns (object dtype: references to the shared texts)."""
        table = [np.array([t[k] for t in self.texts], dtype=object) for k in range(3)]
        return {c: pd.Series(table[k][self.index], dtype=object) for k, c in enumerate(COLUMNS)}

    def text_columns(self) -> dict[str, pd.api.extensions.ExtensionArray]:
        """The three reason columns as pandas strings, gathered in Arrow from the distinct
        texts (a million parcels' columns in milliseconds).

        >>> r = BatchReasons.empty(2)
        >>> r.add("LOSS_ESTIMATED", np.array([False, True]))
        >>> r.text_columns()["reasons"].tolist()
        ['', 'LOSS_ESTIMATED']
        """
        import pyarrow as pa

        at = pa.array(self.index)
        return {c: pd.array(pa.array([t[k] for t in self.texts], pa.string()).take(at),
                            dtype="str") for k, c in enumerate(COLUMNS)}

    def merged(self, other: BatchReasons, take_other: np.ndarray) -> BatchReasons:
        """Each parcel's reasons from ``other`` where ``take_other``, else from this one.

        >>> a, b = BatchReasons.empty(2), BatchReasons.empty(2)
        >>> a.add("LOSS_ESTIMATED", np.array([True, True]))
        >>> b.add("NO_PIXELS", np.array([True, True]))
        >>> a.merged(b, np.array([False, True])).text_columns()["reasons"].tolist()
        ['LOSS_ESTIMATED', 'NO_PIXELS']
        """
        return BatchReasons(np.where(take_other, len(self.texts) + other.index, self.index),
                            self.texts + other.texts)
