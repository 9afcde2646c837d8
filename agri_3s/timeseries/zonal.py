"""Parcel × date statistics from coverage-weighted pixels (the parcel-series contract).

The pixel weights (:mod:`agri_3s.timeseries.weights`: the exact share of each pixel inside the
parcel shrunk by an inward buffer) are computed once per parcel set and grid and reused for
every date and band; here they are applied per processing window and date.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from scipy import sparse

from ..blocks import local_workers
from ..errors import ImageryError
from ..sources.base import NativeWindow, dn_to_reflectance
from .indices import dn_normalized_difference
from .indices import ndvi as ndvi_index
from .indices import ndwi as ndwi_index
from .masking import clear_mask
from .quantiles import QUANTILES, grouped_quantiles, weighted_quantiles  # noqa: F401
from .weights import PixelWeights, pixel_weights, sort_order  # noqa: F401 (public here too)

#: The quantile statistics, in the order of :data:`QUANTILES`.
QUANTILE_STATS = ("ndvi_p25", "ndvi_p50", "ndvi_p75")
#: Ratio statistics: which per-parcel sum is divided by the clear weight.
_SUM_OF = {"ndvi_mean": "sum", "vegetated_fraction": "veg", "water_fraction": "water",
           "green_mean": "green"}
#: Statistics of the parcel-series contract; ``parcel_series(stats=…)`` computes a subset.
STATS = ("ndvi_mean", "ndvi_p25", "ndvi_p50", "ndvi_p75", "clear_fraction", "n_pixels",
         "vegetated_fraction", "water_fraction", "green_mean")
#: Statistics of the green band (B03): NaN when the imagery has none.
GREEN_STATS = ("water_fraction", "green_mean")
DEFAULT_WINDOW_PX = 1024


@dataclass(frozen=True)
class _Window:
    """The weight entries falling in one processing window (one cube chunk)."""

    ys: slice
    xs: slice
    #: Global parcel index of each parcel with pixels in the window.
    parcels: np.ndarray
    #: Per entry (row-major, so that reads are gathered in memory order): local parcel index,
    #: row and column inside the window, weight.
    entry_parcel: np.ndarray
    entry_row: np.ndarray
    entry_col: np.ndarray
    entry_weight: np.ndarray
    #: Per local parcel: all its pixels are in this window (its quantiles finish here).
    whole: np.ndarray
    #: (local parcel × entry) weights: per-parcel sums are one sparse matrix-vector product
    #: (scipy runs it without the GIL, 2-3x faster than a weighted ``np.bincount``).
    sum_matrix: sparse.csr_matrix
    #: Computed once per window and reused for every date: flat indices per read layout,
    #: grid boxes.
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def take(self, native, top: int = 0, left: int = 0) -> np.ndarray:
        """The entries' values in a source's window read (a ``NativeWindow`` whose first pixel
        is ``top`` rows and ``left`` columns before the window's); indices cached per layout."""
        key = (native.k, native.dr, native.dc, native.data.shape[1], top, left)
        index = self._cache.get(key)
        if index is None:
            index = self._cache[key] = native.flat_index(
                self.entry_row + top, self.entry_col + left).astype(np.intp)
        return np.take(native.data, index)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per local parcel, the weighted sum of the entries' ``values``."""
        return self.sum_matrix @ values

    def boxes(self, geobox: GeoBox, halo_px: int) -> tuple[GeoBox, GeoBox, int, int]:
        """The window's box on ``geobox``, the box grown by ``halo_px`` (within the grid), and
        how many rows and columns the halo adds before the window (slicing a GeoBox is slow)."""
        key = ("boxes", halo_px)  # a window belongs to one grid
        if key not in self._cache:
            d, (h, w) = halo_px, geobox.shape
            top, left = min(d, self.ys.start), min(d, self.xs.start)
            halo = geobox[self.ys.start - top:min(self.ys.stop + d, h),
                          self.xs.start - left:min(self.xs.stop + d, w)]
            self._cache[key] = (geobox[self.ys, self.xs], halo, top, left)
        return self._cache[key]


@dataclass(frozen=True)
class _WindowSplit:
    """The weight entries grouped by processing window: each window's :class:`_Window` is made
    from this by :func:`_window_plan` in a task of its own, so windows are planned in
    parallel."""

    weights: PixelWeights
    #: Window borders (grid rows, grid columns); windows are numbered row-major.
    y_edges: np.ndarray
    x_edges: np.ndarray
    #: Entry numbers grouped by window (each group in entry order, so parcel by parcel), where
    #: each group starts, and every entry's grid row, grid column and parcel.
    order: np.ndarray
    starts: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    parcel: np.ndarray

    @property
    def occupied(self) -> list[int]:
        """The numbers of the windows with entries."""
        return np.flatnonzero(np.diff(self.starts)).tolist()

    def slices(self, k: int) -> tuple[slice, slice]:
        iy, ix = divmod(k, len(self.x_edges) - 1)
        return (slice(int(self.y_edges[iy]), int(self.y_edges[iy + 1])),
                slice(int(self.x_edges[ix]), int(self.x_edges[ix + 1])))


def _split_windows(weights: PixelWeights, y_edges: np.ndarray, x_edges: np.ndarray
                   ) -> _WindowSplit:
    """Group the weight entries by processing window (window borders at the given edges)."""
    m = weights.matrix
    rows, cols = np.divmod(m.indices, weights.geobox.shape[1])
    n_wy, n_wx = len(y_edges) - 1, len(x_edges) - 1
    dtype = np.min_scalar_type(n_wy * n_wx)  # ≤ 16 bits: numpy's stable sort is a radix sort
    window = (np.repeat(np.arange(n_wy, dtype=dtype) * n_wx, np.diff(y_edges))[rows]
              + np.repeat(np.arange(n_wx, dtype=dtype), np.diff(x_edges))[cols])
    order = np.argsort(window, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(window, minlength=n_wy * n_wx))])
    parcel = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
    return _WindowSplit(weights, y_edges, x_edges, order, starts, rows, cols, parcel)


def _window_plan(split: _WindowSplit, k: int) -> _Window:
    """Window ``k``'s entries, row-major inside it, and its sum matrix."""
    m = split.weights.matrix
    ys, xs = split.slices(k)
    sel = split.order[split.starts[k]:split.starts[k + 1]]  # parcel by parcel
    parcel = split.parcel[sel]
    present = np.zeros(m.shape[0], bool)
    present[parcel] = True
    parcels = np.flatnonzero(present)
    local = (np.cumsum(present) - 1)[parcel]
    count = np.bincount(local, minlength=len(parcels))
    whole = count == np.diff(m.indptr)[parcels]
    row, col = split.rows[sel] - ys.start, split.cols[sel] - xs.start
    within = sort_order(row * (xs.stop - xs.start) + col)  # the row-major order of the entries
    position = np.empty_like(within)  # where each entry lands in that order
    position[within] = np.arange(len(within))
    weight = m.data[sel]
    sum_matrix = sparse.csr_matrix((weight, position, np.concatenate([[0], np.cumsum(count)])),
                                   shape=(len(parcels), len(sel)))
    return _Window(ys, xs, parcels, local[within], row[within].astype(np.int32),
                   col[within].astype(np.int32), weight[within], whole, sum_matrix)


def _plane(chunk) -> np.ndarray:
    """A (1, y, x) chunk of a (time, y, x) cube as a 2-D array."""
    a = np.asarray(chunk)
    return a.reshape(a.shape[-2:])


def _halo_clear(scl_blocks: list, dilation_px: int) -> np.ndarray:
    """Clear mask of the centre chunk of a 3 × 3 neighbourhood of SCL chunks (None = beyond the
    scene), with the cloud dilation seeing ``dilation_px`` pixels into the neighbours."""
    centre = _plane(scl_blocks[1][1])
    d = dilation_px
    if d == 0:
        return clear_mask(centre, dilation_px=0)
    h, w = centre.shape
    halo = np.zeros((h + 2 * d, w + 2 * d), np.uint8)  # 0 = no data: masked, never dilated
    # where each neighbour's strip lands in the halo array, and which strip of it to take
    rows = {0: (slice(0, d), slice(-d, None)), 1: (slice(d, d + h), slice(None)),
            2: (slice(d + h, None), slice(0, d))}
    cols = {0: (slice(0, d), slice(-d, None)), 1: (slice(d, d + w), slice(None)),
            2: (slice(d + w, None), slice(0, d))}
    for r in range(3):
        for c in range(3):
            if scl_blocks[r][c] is None:
                continue
            part = _plane(scl_blocks[r][c])[rows[r][1], cols[c][1]]
            target = halo[rows[r][0], cols[c][0]]
            ph, pw = part.shape  # a neighbour thinner than d: keep the side next to the centre
            target[(slice(-ph, None) if r == 0 else slice(0, ph)),
                   (slice(-pw, None) if c == 0 else slice(0, pw))] = part
    return clear_mask(halo, dilation_px=d)[d:d + h, d:d + w]


def _chunk_stats(win: _Window, red, nir, green, scl_blocks: list, dilation_px: int,
                 vegetated_ndvi: float, stats: tuple[str, ...]) -> dict:
    """One window and date from the cube's own chunks (reflectance, SCL)."""
    if dilation_px:
        clear = win.take(NativeWindow(_halo_clear(scl_blocks, dilation_px)))
    else:  # no dilation: classify only the pixels parcels use
        clear = clear_mask(win.take(NativeWindow(_plane(scl_blocks[1][1]))), dilation_px=0)
    nir = win.take(NativeWindow(_plane(nir)))
    v = ndvi_index(win.take(NativeWindow(_plane(red))), nir)
    if green is None:
        return _entry_stats(win, v, None, clear, vegetated_ndvi, stats)
    g = win.take(NativeWindow(_plane(green)))
    return _entry_stats(win, v, ndwi_index(g, nir) > 0, clear, vegetated_ndvi, stats, g)


def _direct_stats(win: _Window, reader, t: int, *, geobox: GeoBox, green: bool,
                  dilation_px: int, vegetated_ndvi: float, stats: tuple[str, ...]) -> dict:
    """One window and date read straight from the source (see ``attach_reader``): raw DNs of
    only the pixels parcels use, indices straight from them, SCL classified at its own
    resolution and read first, so a window whose parcel pixels are all clouded decodes nothing
    else (half of a summer season's acquisitions can be)."""
    # cloud dilation sees dilation_px pixels beyond the window (within the grid)
    d = dilation_px
    box, halo, top, left = win.boxes(geobox, d)

    def dn(variable: str):
        got = reader.read(variable, t, box)
        return None if got is None else (win.take(got[0]), got[1])

    got = reader.read("scl", t, halo)
    if got is None:
        clear = np.zeros(len(win.entry_row), bool)
    else:
        scl = got[0]
        if d == 0:
            clear = clear_mask(win.take(scl), dilation_px=0)
        elif d % scl.k == 0:  # a d-pixel dilation is a d/k one on the coarser SCL grid
            mask = clear_mask(scl.data, dilation_px=d // scl.k)
            clear = win.take(replace(scl, data=mask), top, left)
        else:
            full = NativeWindow(clear_mask(scl.full(halo.shape), dilation_px=d))
            clear = win.take(full, top, left)
    n = len(win.entry_row)
    if not clear.any():  # every parcel pixel under cloud (or no data): nothing else to decode
        return _entry_stats(win, np.full(n, np.nan, np.float32), None, clear, vegetated_ndvi,
                            stats)
    nir = dn("nir")
    v = dn_normalized_difference(nir, dn("red"), n)
    if not green:
        return _entry_stats(win, v, None, clear, vegetated_ndvi, stats)
    g = dn("green")
    water = dn_normalized_difference(g, nir, n) > 0
    return _entry_stats(win, v, water, clear, vegetated_ndvi, stats,
                        None if g is None else dn_to_reflectance(*g))


def _entry_stats(win: _Window, v: np.ndarray, water: np.ndarray | None, clear_px: np.ndarray,
                 vegetated_ndvi: float, stats: tuple[str, ...],
                 green: np.ndarray | None = None) -> dict:
    """Additive sums for one window and date from its entries' NDVI (``v``), open-water flags,
    green reflectance and clear flags (+ finished quantiles of parcels wholly inside, and the
    raw clear entries of parcels that continue in other windows)."""
    clear = clear_px & np.isfinite(v)
    out = {"clear": win.sums(clear.astype(np.float64)),
           "sum": win.sums(np.where(clear, v, 0.0))}
    if "vegetated_fraction" in stats:
        out["veg"] = win.sums((clear & (v >= vegetated_ndvi)).astype(np.float64))
    if "water_fraction" in stats and water is not None:
        out["water"] = win.sums((clear & water).astype(np.float64))
    if "green_mean" in stats and green is not None:
        out["green"] = win.sums(np.where(clear, np.nan_to_num(green), 0.0))
    if any(q in stats for q in QUANTILE_STATS):
        done = clear & win.whole[win.entry_parcel]
        m = win.sum_matrix  # the window's entries parcel by parcel
        out["q"] = grouped_quantiles(m.indptr, m.indices, m.data, v, done)
        rest = clear & ~win.whole[win.entry_parcel]
        out["raw"] = (win.parcels[win.entry_parcel[rest]], v[rest], win.entry_weight[rest])
    return out


def _combine_date(parts: list[dict], windows: list[_Window], n: int) -> dict:
    """Sum the windows' partial results of one date into per-parcel totals (only the sums the
    statistics asked for: these wait in memory for the rest of their batch)."""
    sums = ("clear", "sum", "veg", "water", "green")
    tot = {k: np.zeros(n) for k in sums if any(k in part for part in parts)}
    raw = []
    if any("q" in part for part in parts):
        tot["q"] = np.full((n, 3), np.nan)
    for win, part in zip(windows, parts):
        for k in sums:
            if k in part:
                tot[k][win.parcels] += part[k]  # parcels are unique within a window
        if "q" in part:
            tot["q"][win.parcels[win.whole]] = part["q"][win.whole]
            raw.append(part["raw"])
    if raw:
        g, v, w = (np.concatenate(x) for x in zip(*raw))
        split = weighted_quantiles(g, v, w, n)
        crossing = np.unique(g)
        tot["q"][crossing] = split[crossing]
    return tot


def _rule_text(weights: PixelWeights) -> str:
    """The pixel rule in words, for the series' attributes and the run manifest."""
    b, k = f"{weights.inward_buffer_m:g}", weights.min_full_pixels
    fallback = (f"coverage-weighted pixels of the parcel shrunk by {b} m (the unbuffered "
                f"polygon when less than one pixel remains)")
    if weights.rule == "full_first":
        return (f"whole pixels of the parcel when it has at least {k}; otherwise {fallback}; "
                f"small_parcel when fewer than {k} whole pixels")
    return f"{weights.rule}: {fallback}; small_parcel when fewer than {k} whole pixels"


def _scheduler():
    """The scheduler dask would pick, named without its own lookup when ``dask.distributed`` was
    never imported (then no Client can exist, and the lookup would import it: ~0.2 s)."""
    import sys

    import dask

    if "distributed" in sys.modules:
        return None
    import dask.local
    import dask.threaded

    return {None: dask.threaded.get, "threads": dask.threaded.get,
            "threading": dask.threaded.get, "sync": dask.local.get_sync,
            "synchronous": dask.local.get_sync, "single-threaded": dask.local.get_sync
            }.get(dask.config.get("scheduler", None))


def _window_jobs(cube: xr.Dataset, weights: PixelWeights, green: bool, dilation_px: int,
                 vegetated_ndvi: float, stats: tuple[str, ...]):
    """The weight entries split by processing window, the dask graph their tasks draw on, and
    a function making the task of (window number, key of its plan, date).

    A cube whose source left a direct reader (LocalSource) is read straight from its files in
    the reader's windows, one task per window and date reading what it needs; any other cube
    through its own dask chunks (1024 px windows for a cube without chunks)."""
    from ..sources.base import window_reader

    variables = ["red", "nir", "scl"] + (["green"] if green else [])
    reader = window_reader(cube, variables)
    if reader is not None:
        split = _split_windows(weights, *reader.window_edges())
        one = partial(_direct_stats, geobox=weights.geobox, green=green,
                      dilation_px=dilation_px, vegetated_ndvi=vegetated_ndvi, stats=stats)
        reader_key = f"agri3s-reader-{uuid.uuid4().hex}"
        return split, {reader_key: reader}, lambda k, plan, t: (one, plan, reader_key, t)

    window = {"time": 1, "y": DEFAULT_WINDOW_PX, "x": DEFAULT_WINDOW_PX}
    bands = {b: (cube[b] if cube[b].chunks is not None else cube[b].chunk(window)).data
             for b in variables}
    chunks = bands["red"].chunks
    y_edges = np.concatenate([[0], np.cumsum(chunks[1])])
    x_edges = np.concatenate([[0], np.cumsum(chunks[2])])
    split = _split_windows(weights, y_edges, x_edges)
    for b in variables:
        if bands[b].chunks != chunks:
            bands[b] = bands[b].rechunk(chunks)
    # the chunks' own tasks, optimised once: a window is exactly one chunk of every band
    blocks = {b: a.to_delayed() for b, a in bands.items()}
    graph = {}
    for blk in blocks.values():
        graph.update(blk.flat[0].dask)
    ny, nx = len(chunks[1]), len(chunks[2])
    one = partial(_chunk_stats, dilation_px=dilation_px, vegetated_ndvi=vegetated_ndvi,
                  stats=stats)

    def from_chunks(k, plan, t):
        iy, ix = divmod(k, nx)
        scl = [[blocks["scl"][t, iy + dy, ix + dx].key
                if 0 <= iy + dy < ny and 0 <= ix + dx < nx else None for dx in (-1, 0, 1)]
               for dy in (-1, 0, 1)]
        return (one, plan, blocks["red"][t, iy, ix].key, blocks["nir"][t, iy, ix].key,
                blocks["green"][t, iy, ix].key if green else None, scl)
    return split, graph, from_chunks


#: Per-date results held until their batch of dates is written out (bounds the batch size).
BATCH_RESULT_BYTES = 16 * 1024 * 1024


def parcel_series(cube: xr.Dataset, weights: PixelWeights, *, stats: tuple[str, ...] = STATS,
                  vegetated_ndvi: float = 0.4, dilation_px: int = 2,
                  min_clear_weight: float = 0.5, dates_per_batch: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> xr.Dataset:
    """Per-parcel, per-date NDVI statistics (DESIGN.md parcel-series contract).

    Variables ``(parcel, time)``: ``ndvi_mean`` (weighted mean over clear pixels),
    ``ndvi_p25/p50/p75`` (weighted quantiles, see :func:`weighted_quantiles`),
    ``clear_fraction`` (share of the parcel's weight that is clear), ``n_pixels`` (clear
    pixel-equivalents: the sum of clear weights), ``vegetated_fraction`` (share of clear weight
    with NDVI ≥ ``vegetated_ndvi``), ``water_fraction`` (share of clear weight with NDWI > 0),
    ``green_mean`` (weighted mean green reflectance over clear pixels: the look screen's
    brightness check for haze the SCL calls clear).
    ``stats`` selects a subset (``clear_fraction`` and ``n_pixels`` are always given).
    A parcel-date with less than ``min_clear_weight`` clear pixel-equivalents gets NaN.

    Streaming: the work runs per (window, date) — windows are the cube's dask chunks (or
    1024 px) — as a dask graph, a batch of dates at a time, so memory does not grow with the
    number of dates and no full scene is ever in memory. Parcels crossing window borders are
    combined exactly (sums add up; their quantiles are computed from the pooled pixels). Runs
    on the current dask scheduler: threads by default, a ``dask.distributed`` cluster when a
    ``Client`` is active. Cloud dilation sees ``dilation_px`` pixels beyond each window.
    """
    import dask
    import dask.base
    import dask.threaded
    from dask.delayed import Delayed
    from dask.optimization import cull

    unknown = set(stats) - set(STATS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; choose from {STATS}")
    if cube.odc.geobox != weights.geobox:
        raise ImageryError("the weights were computed for another pixel grid than the cube's; "
                           "recompute them with pixel_weights(parcels, cube.odc.geobox).")
    n, n_t = weights.matrix.shape[0], cube.sizes["time"]
    stats = tuple(dict.fromkeys((*stats, "clear_fraction", "n_pixels")))
    green = any(k in stats for k in GREEN_STATS) and "green" in cube
    split, graph, window_task = _window_jobs(cube, weights, green, dilation_px, vegetated_ndvi,
                                             stats)
    name = f"agri3s-series-{uuid.uuid4().hex}"
    windows = split.occupied
    plans = [(f"{name}-plan", k) for k in windows]
    get = _scheduler() or dask.base.get_scheduler() or dask.threaded.get
    # every window planned first, in parallel, and kept where the reads run (in this process,
    # or on a cluster's workers); with the plans made, dask orders the reads date by date (with
    # them as tasks it goes window by window, every thread cycling through every date's files)
    client = getattr(get, "__self__", None)  # a dask.distributed Client, if get is its get
    if hasattr(client, "scatter"):  # the entries (all the weights) go to the workers directly,
        split = client.scatter(split)  # not through the scheduler inside the graph
    planning = {f"{name}-split": split, **{plan: (_window_plan, f"{name}-split", k)
                                            for plan, k in zip(plans, windows)}}
    del split
    for made in dask.persist(*(Delayed(plan, planning) for plan in plans), scheduler=get):
        graph.update(made.dask)  # {plan: the plan} or, on a cluster, {plan: its future}
    del planning  # (the grouped entries)
    # (time, parcel) while filling: each date writes contiguous rows
    out = {k: np.full((n_t, n), np.nan, np.float32) for k in STATS if k in stats}
    total = weights.weight_sum
    # a date's combined sums (8 bytes a parcel each) wait in memory for the end of its batch
    n_sums = 2 + ("vegetated_fraction" in stats) + green * sum(
        k in stats for k in GREEN_STATS) + 3 * any(
        q in stats for q in QUANTILE_STATS)
    batch = dates_per_batch or int(np.clip(BATCH_RESULT_BYTES // (8 * n_sums * max(n, 1)),
                                           4, 64))
    for t0 in range(0, n_t, batch):
        dates = range(t0, min(t0 + batch, n_t))
        dsk, keys = dict(graph), [(f"{name}-date", t) for t in dates]
        for t, key in zip(dates, keys):
            parts = [(name, k, t) for k in windows]
            dsk.update((part, window_task(k, plan, t))
                       for k, part, plan in zip(windows, parts, plans))
            dsk[key] = (_combine_date, parts, plans, n)
        run = get
        if get is dask.threaded.get:  # a few tasks per hand-out: less scheduler traffic
            run = partial(get, chunksize=int(np.clip(len(dsk) // (8 * local_workers()), 1, 8)))
        for t, tot in zip(dates, run(cull(dsk, keys)[0], keys)):
            cw = tot.get("clear", np.zeros(n))  # no window at all: nothing is clear
            ok = cw >= min_clear_weight
            for k in out if ok.any() else ():
                if k in ("clear_fraction", "n_pixels") or (k in GREEN_STATS and not green):
                    continue  # (water and green stay NaN without a green band)
                if k in QUANTILE_STATS:
                    np.copyto(out[k][t], tot["q"][:, QUANTILE_STATS.index(k)], where=ok)
                else:
                    with np.errstate(invalid="ignore", divide="ignore"):  # (min_clear_weight=0)
                        np.divide(tot[_SUM_OF[k]], cw, out=out[k][t], where=ok)
            np.divide(cw, total, out=out["clear_fraction"][t], where=total > 0)
            out["n_pixels"][t] = cw
        if progress:
            progress(dates.stop, n_t)
    return xr.Dataset(
        {k: (("parcel", "time"), v.T) for k, v in out.items()},  # (a view: no copy)
        coords={"parcel_id": ("parcel", weights.parcel_id), "time": cube["time"].values,
                "full_pixels": ("parcel", weights.full_pixels),
                "weight_sum": ("parcel", total.astype(np.float32)),
                "pixel_rule": ("parcel", weights.pixel_rule),
                "small_parcel": ("parcel", weights.small_parcel)},
        attrs={"pixel_rule": _rule_text(weights),
               "inward_buffer_m": weights.inward_buffer_m, "weights_rule": weights.rule,
               "vegetated_ndvi": vegetated_ndvi, "cloud_dilation_px": dilation_px,
               "quantile_method": "weighted inverted CDF",
               "crs": weights.geobox.crs.to_wkt()})
