"""Which looks of a parcel series are usable: the SCL mask's verdict, then a temporal screen.

Sen2Cor's SCL misses thin clouds, haze and the shadows of small clouds; on a parcel they show as
one look whose NDVI drops sharply and is back on the next look — something no crop does (a
harvest, a mowing or a flood does not recover within days). Sen4CAP / Sen2-Agri and Sentinel
Hub's area monitoring screen such looks in time; so does :func:`screen_looks`, and where the
series carries the blue band (``blue_mean``; else the green band, ``green_mean``, which the
local engine gives), a look much brighter than both its neighbours is dropped too (clouds and
haze are bright in blue and green; soil after a harvest stays bright on the next look as well,
so a real change is not screened).

Each look gets a flag (``look_flag``, CF ``flag_values`` / ``flag_meanings``), so the series says
which looks were dropped and why; decisions use only ``look_flag == 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..blocks import for_blocks

#: ``look_flag`` values, in order: 0 a clear look, used; 1 masked as cloud, shadow or snow by the
#: scene classification (or too little of the parcel clear); 2 no data (outside the imagery,
#: no pixels); 3 a transient NDVI drop that recovers (cloud or shadow the SCL called clear);
#: 4 much brighter in blue (or, without a blue band, green) than both neighbouring looks (haze
#: or cloud the SCL called clear).
LOOK_FLAGS = ("clear", "masked", "no_data", "ndvi_dip", "bright")
CLEAR, MASKED, NO_DATA, NDVI_DIP, BRIGHT = range(len(LOOK_FLAGS))
#: The band of the brightness check, first found: mean reflectance variables of the series.
BRIGHTNESS_BANDS = ("blue_mean", "green_mean")


@dataclass(frozen=True)
class ScreenRules:
    """Thresholds of the look screen (a job file's ``[screen]``)."""

    #: Share of the parcel's weight that must be clear for the look to count at all.
    min_clear_fraction: float = 0.6
    #: A dip: NDVI below both neighbouring clear looks by more than this …
    dip_ndvi: float = 0.12
    #: … and by more than this share of their level (a cloud dims vegetation by a share) …
    dip_share: float = 0.2
    #: … with both neighbours within this many days, and the look after back to within half
    #: the drop of the look before (a mown meadow or a harvest stays low on the next look).
    max_neighbour_days: float = 16.0
    #: Blue (or green) reflectance this much above both neighbours' marks haze or cloud. On
    #: the Kenya fields' real series a green check at 0.04 flags 83 % of the looks the blue
    #: check flags, and 21 more (of 14,000 clear looks).
    bright_excess: float = 0.04


#: Parcels screened at a time: the (parcel × time) temporaries of a block stay a few MB, in
#: the processor's caches (on 10⁶ parcels × 70 dates 16,384 screens 20–30 % faster than 65,536).
CHUNK = 16_384


def _neighbour_looks(clear: np.ndarray, arrays: list[np.ndarray], days: np.ndarray,
                     forward: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per (time, parcel): the day of the nearest clear look strictly before (``forward``) or
    after each date (∓1e30 where none), and ``arrays``' values there (NaN where none). The
    looks are carried along the dates, a row at a time: three times faster than gathering
    them by index from (parcel, time) arrays."""
    n_t, n = clear.shape
    far = np.float32(-1e30 if forward else 1e30)
    day = np.empty((n_t, n), np.float32)
    values = [np.empty_like(a) for a in arrays]
    carry_day = np.full(n, far, np.float32)
    carry = [np.full(n, np.nan, a.dtype) for a in arrays]
    for t in range(n_t) if forward else range(n_t - 1, -1, -1):
        day[t] = carry_day
        for out, c in zip(values, carry):
            out[t] = c
        carry_day[clear[t]] = days[t]
        for c, a in zip(carry, arrays):
            np.copyto(c, a[t], where=clear[t])
    return day, values


def _transients(values: np.ndarray, clear: np.ndarray, days: np.ndarray, rules: ScreenRules,
                brightness: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(NDVI dips, bright looks) among the clear looks of (parcel, time) arrays, judged against
    their neighbouring clear looks (worked out in (time, parcel) order)."""
    clear = np.ascontiguousarray(clear.T)
    looks = [np.ascontiguousarray(values.T)]
    if brightness is not None:
        looks.append(np.ascontiguousarray(brightness.T))
    before, previous = _neighbour_looks(clear, looks, days, forward=True)
    after, following = _neighbour_looks(clear, looks, days, forward=False)
    d = days[:, None]
    near = clear & (d - before <= rules.max_neighbour_days) \
        & (after - d <= rules.max_neighbour_days)
    (y, *b), (y_p, *b_p), (y_n, *b_n) = looks, previous, following
    with np.errstate(invalid="ignore"):
        level = np.minimum(y_p, y_n)
        drop = level - y
        dip = near & (drop > rules.dip_ndvi) & (drop > rules.dip_share * level) \
            & (np.abs(y_n - y_p) < 0.5 * drop)
        bright = np.zeros_like(dip)
        if brightness is not None:
            ref = np.maximum(b_p[0], b_n[0])
            bright = near & (b[0] - ref > rules.bright_excess) & ~dip
    return dip.T, bright.T


def screen_looks(series: xr.Dataset, rules: ScreenRules = ScreenRules()) -> xr.Dataset:
    """The series with ``look_flag`` (parcel, time): which looks are clear and why the others
    were dropped (see :data:`LOOK_FLAGS`); ``attrs["looks_dropped"]`` counts them by reason.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.date_range("2025-05-01", periods=5, freq="5D")
    >>> s = xr.Dataset({"ndvi_mean": (("parcel", "time"), [[0.8, 0.8, 0.45, 0.8, 0.8]]),
    ...                 "clear_fraction": (("parcel", "time"), [[1.0] * 5])},
    ...                coords={"time": t})
    >>> screen_looks(s)["look_flag"].values.tolist()   # the 0.45 look recovers: a cloud
    [[0, 0, 3, 0, 0]]
    """
    values, cf = series["ndvi_mean"].values, series["clear_fraction"].values
    band = next((b for b in BRIGHTNESS_BANDS if b in series), None)
    brightness = None if band is None else series[band].values
    weight = series["weight_sum"].values if "weight_sum" in series.coords else None
    days = ((series["time"].values - series["time"].values[0])
            / np.timedelta64(1, "D")).astype(np.float32)
    flag = np.full(values.shape, CLEAR, np.uint8)

    def screen(rows: slice) -> None:  # a block of parcels: bounded memory
        v, c = values[rows], cf[rows]
        no_data = ~np.isfinite(c)
        if weight is not None:
            no_data |= (weight[rows] <= 0)[:, None]
        with np.errstate(invalid="ignore"):
            masked = ~no_data & ((c < rules.min_clear_fraction) | ~np.isfinite(v))
        f = flag[rows]
        f[masked] = MASKED
        f[no_data] = NO_DATA
        # one pass: a look is judged against its clear neighbours (two cloudy looks in a row,
        # each the other's neighbour, are not caught — the smoother's robust weights lean on
        # them less)
        dip, bright = _transients(v, f == CLEAR, days, rules,
                                  None if brightness is None else brightness[rows])
        f[dip] = NDVI_DIP
        f[bright] = BRIGHT

    for_blocks(screen, len(values), CHUNK)
    counts = {name: int((flag == k).sum()) for k, name in enumerate(LOOK_FLAGS) if k}
    out = series.assign(look_flag=(("parcel", "time"), flag))
    out["look_flag"].attrs.update(
        flag_values=np.arange(len(LOOK_FLAGS), dtype=np.uint8), flag_meanings=" ".join(LOOK_FLAGS),
        long_name="why a look was dropped (0: clear, used)")
    out.attrs["looks_dropped"] = ", ".join(f"{k}={v}" for k, v in counts.items())
    return out


def clear_looks(series: xr.Dataset) -> np.ndarray:
    """(parcel, time) bool: the looks decisions use (screened if not yet)."""
    if "look_flag" not in series:
        series = screen_looks(series)
    return series["look_flag"].values == CLEAR
