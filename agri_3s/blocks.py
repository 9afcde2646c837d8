"""Blocks of parcels, computed on this machine's threads.

A province's (parcel × time) work is done a block of parcels at a time, which bounds the
temporaries; the blocks are independent, so they run on the local threads (numpy releases the
GIL inside its loops, and so do the compiled kernels: two cores do two blocks at once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def local_workers() -> int:
    """Threads of dask's local scheduler (``num_workers`` in dask's config, else the CPUs)."""
    import dask

    return dask.config.get("num_workers", None) or os.cpu_count() or 1


def for_blocks(work: Callable[[slice], T], n: int, size: int) -> list[T]:
    """``work(rows)`` for consecutive slices of at most ``size`` of ``n`` parcels, on the local
    threads (:func:`local_workers` blocks at a time); the results in block order. ``work``
    writes only its own rows of any shared output.

    >>> for_blocks(lambda rows: (rows.start, rows.stop), 5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return on_threads(work, [slice(a, min(a + size, n)) for a in range(0, n, max(1, size))])


def on_threads(work: Callable[..., T], items: list) -> list[T]:
    """``work(item)`` for each item on the local threads (:func:`local_workers` at a time: for
    work that releases the GIL — numpy loops, compiled kernels, hashing); results in order.

    >>> on_threads(len, ["ab", "c"])
    [2, 1]
    """
    workers = min(local_workers(), len(items))
    if workers <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, items))
