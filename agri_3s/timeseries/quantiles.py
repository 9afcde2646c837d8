"""Weighted quantiles of many small groups (a parcel's pixels on one date), compiled.

The inverse of the weighted empirical CDF: a group's q-quantile is its smallest value whose
cumulative weight reaches q of the group's weight (with equal weights, numpy's
``method="inverted_cdf"``). Groups are given as CSR (``indptr``, ``indices`` into the values), so
a processing window's sum matrix is its own grouping and nothing is sorted across the window:
each group's values are sorted on their own, a few to a few dozen pixels, by insertion.

Before, one ``lexsort`` of a window's (parcel, value) pairs took most of a province job's
series time (10⁶ parcels × 24 dates: about 1.6 s of each partition's 3 s). The kernel
releases the GIL, so the engine's two threads run two windows at once.
"""

from __future__ import annotations

import numba
import numpy as np

QUANTILES = (0.25, 0.50, 0.75)
#: Groups up to this size are sorted by insertion; larger ones (big parcels) by merge sort.
_INSERTION_MAX = 48


@numba.njit(nogil=True, cache=True)
def _grouped(indptr, indices, weights, values, keep, qs, out):  # pragma: no cover (compiled)
    longest = 0
    for p in range(len(indptr) - 1):
        longest = max(longest, indptr[p + 1] - indptr[p])
    v = np.empty(longest, np.float64)
    w = np.empty(longest, np.float64)
    for p in range(len(indptr) - 1):
        m = 0
        for j in range(indptr[p], indptr[p + 1]):
            e = indices[j]
            if not keep[e]:
                continue
            x, wt = values[e], weights[j]
            i = m
            if m < _INSERTION_MAX:  # stable: equal values keep their order
                while i > 0 and v[i - 1] > x:
                    v[i] = v[i - 1]
                    w[i] = w[i - 1]
                    i -= 1
            v[i] = x
            w[i] = wt
            m += 1
        if m == 0:
            continue
        if m > _INSERTION_MAX:
            order = np.argsort(v[:m], kind="mergesort")
            v[:m] = v[:m][order]
            w[:m] = w[:m][order]
        total = 0.0
        for i in range(m):
            total += w[i]
        for k in range(len(qs)):
            target = qs[k] * total - 1e-12 * total  # (rounding of the running sum)
            cum = 0.0
            i = 0
            while i < m - 1:
                cum += w[i]
                if cum >= target:
                    break
                i += 1
            out[p, k] = v[i]


def grouped_quantiles(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray,
                      values: np.ndarray, keep: np.ndarray, qs=QUANTILES) -> np.ndarray:
    """Weighted quantiles of each CSR group: group ``p`` is the entries
    ``indices[indptr[p]:indptr[p + 1]]`` of ``values`` with the weights
    ``weights[indptr[p]:indptr[p + 1]]``, those where ``keep`` (per entry of ``values``) is
    False left out. Returns ``(groups, len(qs))``, NaN for groups with nothing kept."""
    out = np.full((len(indptr) - 1, len(qs)), np.nan)
    if len(values):
        # (compiled once per dtype combination: a window's int32 indices are not copied)
        _grouped(indptr, indices, weights, values, np.asarray(keep, np.bool_),
                 np.asarray(qs, np.float64), out)
    return out


def weighted_quantiles(group: np.ndarray, values: np.ndarray, weights: np.ndarray,
                       n_groups: int, qs=QUANTILES) -> np.ndarray:
    """Weighted quantiles per group (``group``: each value's group number, < ``n_groups``).
    Returns ``(n_groups, len(qs))``, NaN for empty groups."""
    group = np.asarray(group, np.int64)
    values = np.asarray(values)
    order = np.argsort(group, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(group, minlength=n_groups))])
    return grouped_quantiles(indptr, order, np.asarray(weights)[order], values,
                             np.ones(len(values), bool), qs)
