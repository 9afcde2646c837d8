"""Cover histories: the vegetation cover (0–1) of a piece of land on every acquisition day.

A field's history is a chain of key points (day, cover) interpolated linearly: the previous
summer's maize up to its harvest, then the wheat season's class, then the maize season's class,
then the next wheat sowing. Meadows and cotton follow a curve of their own over the whole year.
"""

from __future__ import annotations

import numpy as np

from .scene import END, HAIL_DATE, d, day

Keys = list[tuple[float, float]]


def seasonal(days: np.ndarray, kp: Keys) -> np.ndarray:
    """Cover at ``days`` from key points ``[(day, cover), …]`` (linear in between).

    Examples
    --------
    >>> seasonal(np.array([0.0, 5.0, 10.0]), [(0, 0.1), (10, 0.5)]).round(2).tolist()
    [0.1, 0.3, 0.5]
    """
    x, y = np.array(kp, float).T
    return np.interp(days, x, y)


def grass_keys() -> Keys:
    """Road verges, ditches and field margins (unmanaged grass)."""
    return [(-1, 0.5), (d(2024, 11, 15), 0.25), (d(2025, 1, 15), 0.12), (d(2025, 3, 15), 0.18),
            (d(2025, 5, 1), 0.45), (d(2025, 7, 15), 0.6), (d(2025, 9, 1), 0.58),
            (d(2025, 10, 25), 0.45)]


def _cotton(p: dict) -> Keys:
    sh, end = p["sh"], day(END) + 10
    return [(-1, 0.62), (d(2024, 10, 1), 0.5), (p["hc0"] - 0.5, 0.4), (p["hc0"], 0.07),
            (d(2024, 11, 15), 0.04), (p["sc"], 0.03), (p["sc"] + 10, 0.05),
            (d(2025, 6, 1) + sh, 0.2), (d(2025, 6, 20) + sh, 0.42),
            (d(2025, 7, 15) + sh, 0.75), (d(2025, 8, 10) + sh, p["pc"]),
            (d(2025, 9, 10) + sh, p["pc"] - 0.07), (d(2025, 10, 1) + sh, 0.5),
            (p["hc"] - 0.5, 0.4), (p["hc"], 0.07), (end, 0.05)]


def _meadow(days: np.ndarray, p: dict) -> np.ndarray:
    """Perennial grass, green all year but winter, mown once or twice from late May: cover falls
    to stubble (0.22–0.32) in 1–3 days and regrows in 2–4 weeks."""
    sh, mp = p["sh"], p["mp"]
    base = [(-1, 0.62), (d(2024, 10, 20), 0.6), (d(2024, 11, 20) + sh, 0.45),
            (d(2024, 12, 20), 0.33), (d(2025, 2, 10), 0.28), (d(2025, 3, 5) + sh, 0.33),
            (d(2025, 4, 5) + sh, 0.65), (d(2025, 4, 30) + sh, mp), (d(2025, 9, 10), mp - 0.04),
            (d(2025, 10, 10), 0.72), (day(END) + 10, 0.62)]
    veg = seasonal(days, base)
    for k in ("1", "2"):
        cut = p["cut" + k]
        if np.isnan(cut):
            continue
        dd, grow = p["cutd" + k], p["cutg" + k]
        stub = p["cutr" + k] / float(seasonal(np.array([cut + dd]), base)[0])
        veg = veg * np.interp(days, [cut, cut + dd, cut + grow], [1.0, stub, 1.0])
    return veg


def _wheat_season(p: dict, cls: str) -> tuple[Keys, float, bool]:
    """Key points from the previous maize harvest to the end of the wheat season's cover.

    Returns the key points, the day the land is free for the summer crop, and whether it is
    still vegetated then (weeds that the summer crop's tillage must clear).
    """
    sh, k = p["sh"], p["kw"]
    kp: Keys = []
    if cls == "planted":
        kp += [(p["sw"], 0.03), (p["sw"] + 10 + 0.5 * sh, 0.05),
               (d(2024, 11, 25) + sh, 0.35 * k), (d(2024, 12, 15) + sh, 0.30 * k),
               (d(2025, 2, 25) + sh, 0.28 * k), (d(2025, 3, 5) + sh, 0.30 * k),
               (d(2025, 3, 28) + sh, 0.6), (d(2025, 4, 20) + sh, p["pw"]),
               (d(2025, 5, 17) + 0.5 * sh, p["pw"] - 0.02), (d(2025, 5, 28) + sh, 0.6),
               (p["hw"] - 0.5, 0.3), (p["hw"], 0.07)]
        return kp, p["hw"], False
    if cls == "late":  # sown 3–5 weeks late: small before winter, later green-up and harvest
        kp += [(p["h0"] + 5, 0.05), (p["swl"] - 1, 0.06), (p["swl"], 0.03),
               (p["swl"] + 14, 0.05), (d(2024, 12, 20) + sh, 0.13 * k),
               (d(2025, 2, 25) + sh, 0.12 * k), (d(2025, 3, 15) + sh, 0.2),
               (d(2025, 4, 10) + sh, 0.55), (d(2025, 5, 3) + sh, p["pw"] - 0.02),
               (d(2025, 5, 22) + 0.5 * sh, p["pw"] - 0.04), (d(2025, 6, 2) + sh, 0.6),
               (p["hwl"] - 0.5, 0.3), (p["hwl"], 0.07)]
        return kp, p["hwl"], False
    if cls == "cover":  # green manure: lush from November, ploughed in before wheat's peak
        ccd = p["ccd"]
        kp += [(p["h0"] + 3, 0.05), (p["ccs"], 0.03), (p["ccs"] + 8, 0.06),
               (d(2024, 10, 30) + sh, 0.3), (d(2024, 11, 25) + sh, p["ccw"]),
               (d(2024, 12, 20), p["ccw"] - 0.05), (d(2025, 2, 20), p["ccw"] - 0.08),
               (d(2025, 3, 10) + sh, p["ccw"]), (d(2025, 4, 8) + sh, 0.72),
               (ccd - 1, p["ccp"]), (ccd + 1.5, 0.06), (ccd + 10, 0.04), (d(2025, 5, 31), 0.05)]
        return kp, d(2025, 5, 31), False
    if cls == "weedy":  # no sowing, no harvest: weeds follow the season
        w = p["wpw"]
        kp += [(p["h0"] + 6, 0.06), (d(2024, 10, 25), 0.12), (d(2024, 11, 25), 0.16),
               (d(2025, 1, 15), 0.08), (d(2025, 3, 5), 0.1), (d(2025, 4, 10) + sh, 0.5 * w),
               (d(2025, 5, 10) + sh, w), (d(2025, 6, 5) + sh, 0.95 * w)]
        return kp, d(2025, 6, 5) + sh, True
    # fallow: bare with sparse weeds
    kp += [(p["h0"] + 5, 0.05), (d(2024, 11, 10), 0.06), (d(2025, 1, 10), 0.03),
           (d(2025, 3, 20), 0.04), (d(2025, 5, 5), 0.07), (p["hw"], 0.09)]
    return kp, p["hw"], False


def _maize_season(p: dict, cls: str, free: float, weedy: bool) -> tuple[Keys, float]:
    """Key points of the summer season on land free from day ``free``; returns them and the day
    the land is free for the next wheat."""
    sh = p["sh"]
    if cls in ("planted", "late"):
        sm = max(p["sm"] if cls == "planted" else p["sml"], free + 2)
        kp: Keys = [(sm - 1.5, None), (sm - 1, 0.04)] if weedy else []
        if cls == "late":
            kp += [(free + 8, 0.06), (d(2025, 6, 30), 0.08)] if not weedy else []
            kp += [(sm, 0.03), (sm + 6, 0.05), (sm + 22 + 0.5 * sh, 0.28),
                   (d(2025, 8, 15) + sh, 0.72), (d(2025, 8, 28) + sh, p["pm"]),
                   (d(2025, 9, 20) + sh, p["pm"] - 0.03), (d(2025, 10, 3) + sh, 0.6),
                   (p["hml"] - 0.5, 0.38), (p["hml"], 0.06)]
            return kp, p["hml"]
        kp += [(sm, 0.03), (sm + 7, 0.05), (sm + 25 + 0.5 * sh, 0.28),
               (d(2025, 7, 20) + sh, 0.72), (d(2025, 8, 1) + sh, p["pm"]),
               (d(2025, 9, 1) + sh, p["pm"] - 0.02), (d(2025, 9, 15) + sh, 0.6),
               (p["hm"] - 0.5, 0.38), (p["hm"], 0.06)]
        return kp, p["hm"]
    if cls == "weedy":
        w = p["wpm"]
        kp = [] if weedy else [(free + 8, 0.08)]
        kp += [(d(2025, 7, 10) + sh, max(0.5 * w, 0.2)), (d(2025, 8, 10) + sh, w),
               (d(2025, 9, 10) + sh, 0.95 * w), (d(2025, 10, 5), 0.7 * w)]
        return kp, d(2025, 10, 5)
    # fallow (weeds, if any, cleared by a tillage right after the wheat season)
    kp = [(free + 1, None), (free + 2, 0.05)] if weedy else []
    kp += [(d(2025, 7, 10), 0.08), (d(2025, 8, 15), 0.11), (d(2025, 9, 20), 0.09),
           (p["hm"], 0.06)]
    return kp, p["hm"]


def field_veg(days: np.ndarray, p: dict, wcls: str, mcls: str, hail_loss: float) -> np.ndarray:
    """Vegetation cover of one field piece at ``days`` (days since the first acquisition).

    ``wcls`` / ``mcls`` are the wheat and maize seasons' growth codes (``farms.GROWTH``);
    hail multiplies the wheat canopy by ``1 − hail_loss`` from the event to the harvest, so the
    loss is the share of green cover destroyed whatever the soil.
    """
    if "meadow" in (wcls, mcls):
        return _meadow(days, p)
    if wcls == "cotton":
        return seasonal(days, _cotton(p))
    kp: Keys = [(-1, p["c0"]), (p["h0"] - 0.5, 0.32), (p["h0"], 0.07)]
    wkp, free, weedy = _wheat_season(p, wcls)
    kp += wkp
    mkp, free2 = _maize_season(p, mcls, free, weedy)
    kp += mkp
    sw2 = max(p["sw2"], free2 + 3)
    kp += [(sw2 - 0.5, None)] if mcls == "weedy" else []
    kp += [(sw2, 0.03), (sw2 + 10, 0.05), (day(END) + 10, 0.08)]
    kp.sort(key=lambda x: x[0])
    # a key point with cover None holds the cover of the key point before it (the weeds that a
    # tillage clears stand until it)
    held: Keys = []
    for x, y in kp:
        held.append((x, held[-1][1] if y is None else y))
    veg = seasonal(days, held)
    if hail_loss and wcls in ("planted", "late"):
        harvest = p["hw"] if wcls == "planted" else p["hwl"]
        hit = (days >= day(HAIL_DATE)) & (days < harvest)
        veg[hit] *= 1 - hail_loss
    return veg
