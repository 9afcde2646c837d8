"""Cloud masks from the Sen2Cor scene classification (SCL)."""

from __future__ import annotations

import functools

import numpy as np

from ..sources.base import INVALID_SCL

#: The cloud and shadow classes whose edges Sen2Cor under-detects; these are dilated.
DILATED_SCL = (3, 8, 9, 10)


@functools.lru_cache(maxsize=16)
def _table(classes: tuple[int, ...], value: bool = True) -> np.ndarray:
    """A 256-entry lookup table, ``value`` for ``classes``: ``np.take(table, scl)`` is far
    faster than ``np.isin`` on a scene."""
    table = np.full(256, not value)
    table[list(classes)] = value
    return table


def clear_mask(scl: np.ndarray, *, dilation_px: int = 2,
               invalid: tuple[int, ...] = INVALID_SCL,
               dilated: tuple[int, ...] = DILATED_SCL) -> np.ndarray:
    """True where a pixel is a usable clear observation.

    Cloud / shadow / cirrus classes are grown by ``dilation_px`` pixels (a square of side
    ``2 * dilation_px + 1``: a separable maximum filter, much faster than a disk), because haze
    at cloud margins is usually classified as clear land and depresses NDVI.

    >>> scl = np.full((5, 5), 4, np.uint8); scl[2, 2] = 9
    >>> int(clear_mask(scl, dilation_px=1).sum())
    16
    """
    if dilation_px <= 0:
        return np.take(_table(invalid, value=False), scl)
    bad = np.take(_table(invalid), scl)
    cloud = np.take(_table(dilated), scl)
    if cloud.any():
        from scipy import ndimage  # only here: importing it costs ~0.15 s

        bad |= ndimage.maximum_filter(cloud.view(np.uint8), size=2 * dilation_px + 1) > 0
    return ~bad
