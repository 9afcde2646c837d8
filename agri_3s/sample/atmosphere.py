"""The weather of each acquisition: how cloudy it is, where the clouds and their shadows fall,
snow on the ground, and the small clouds / thick haze the scene classification misses.

Every field here is a function of the date plan, the seed and the date's index only, so the
truth written about them does not depend on which dates are rendered.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from .scene import N10, SIZE_M, SNOW_TARGETS, UNFLAGGED_TARGETS, nearest

_MONTH_COVER = {12: 0.2, 1: 0.2, 2: 0.2, 3: 0.3, 4: 0.3, 5: 0.3, 6: 0.4, 7: 0.55, 8: 0.55,
                9: 0.35, 10: 0.25, 11: 0.25}
# dates kept (nearly) clear: the tests and the demo's event assessments rely on them
_ANCHORS = [dt.date(2025, 5, 8), dt.date(2025, 5, 20), dt.date(2025, 7, 15),
            dt.date(2025, 7, 26), dt.date(2025, 8, 10), dt.date(2025, 4, 25)]
COVERED = 0.1    # opacity / darkening from which a pixel counts as under an unflagged cloud


def date_plan(dates: list[dt.date], rng: np.random.Generator) -> list[dict]:
    """Per acquisition: cloud cover and texture, shadow offset, soil moisture factor, whether
    ``metadata.json`` is written, a no-data wedge, snow share, unflagged clouds."""
    anchors = {nearest(dates, a) for a in _ANCHORS}
    snow = {nearest(dates, t): share for t, share in SNOW_TARGETS}
    unflagged = {nearest(dates, t) for t in UNFLAGGED_TARGETS}
    plan = []
    for d in dates:
        m = _MONTH_COVER[d.month]
        p_total = float(np.clip(0.05 + 0.3 * (m - 0.2) / 0.35, 0.03, 0.35))
        p_clear = 0.15 if d.month in (7, 8) else (0.3 if m <= 0.3 else 0.25)
        u = rng.random()
        if u < p_clear:
            cover = 0.0
        elif u < p_clear + p_total:
            cover = rng.uniform(0.85, 0.99)
        else:
            mu = float(np.clip((m - p_total * 0.93) / (1 - p_clear - p_total), 0.05, 0.8))
            cover = float(np.clip(rng.beta(4 * mu, 4 * (1 - mu)), 0.02, 0.8))
        if d in anchors:
            cover = min(cover, rng.uniform(0.0, 0.1))
        if d in snow or d in unflagged:   # a clear sky, as after a snowfall
            cover = 0.0
        az = math.radians(rng.uniform(145, 165) - 180)   # shadows fall to the NNW
        dist = rng.uniform(300, 600)
        plan.append({"date": d, "cover": cover, "sigma": rng.uniform(8, 25),
                     "shift": (int(np.rint(-dist * math.cos(az) / 10)),  # rows (north = up)
                               int(np.rint(dist * math.sin(az) / 10))),
                     "base": rng.uniform(0.3, 0.6), "shade": rng.uniform(0.35, 0.55),
                     "soil": float(np.clip(rng.normal(1.0, 0.03), 0.92, 1.08)),
                     "metadata": rng.random() >= 0.1, "wedge": None, "anchor": d in anchors,
                     "snow": snow.get(d, 0.0), "unflagged": d in unflagged})
    free = [k for k, p in enumerate(plan)
            if not (p["anchor"] or p["snow"] or p["unflagged"])]
    for k in rng.choice(free, 4, replace=False):
        plan[int(k)]["wedge"] = (int(rng.integers(0, 4)), rng.uniform(40, 110),
                                 rng.uniform(40, 130))
    return plan


def _shifted(a: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """``out[r, c] = a[r − sr, c − sc]``, zero where that falls outside."""
    sr, sc = shift
    out = np.zeros_like(a)
    rs = slice(max(sr, 0), N10 + min(sr, 0))
    rd = slice(max(-sr, 0), N10 + min(-sr, 0))
    cs = slice(max(sc, 0), N10 + min(sc, 0))
    cd = slice(max(-sc, 0), N10 + min(-sc, 0))
    out[rs, cs] = a[rd, cd]
    return out


def unflagged_fields(plan: dict, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Opacity of small clouds / thick haze patches and darkening of their shadows (10 m grid,
    0–1) on a date the scene classification will call clear; zeros on other dates."""
    alpha = np.zeros((N10, N10))
    if not plan["unflagged"]:
        return alpha, np.zeros((N10, N10))
    rng = np.random.default_rng([seed, 6, k])
    yy, xx = (np.mgrid[0:N10, 0:N10] * 10.0 + 5.0)
    caster = np.zeros((N10, N10))
    for _ in range(int(rng.integers(6, 10))):
        cloud = rng.random() < 0.6        # a small cumulus (casts a shadow) or a haze patch
        r = rng.uniform(60, 200) if cloud else rng.uniform(150, 320)
        a = rng.uniform(0.45, 0.7) if cloud else rng.uniform(0.35, 0.5)
        cy, cx = rng.uniform(200, SIZE_M - 200, 2)
        amp, phase = rng.uniform(0, 0.12, 3), rng.uniform(0, 2 * np.pi, 3)
        ang = np.arctan2(yy - cy, xx - cx)
        rough = 1 + sum(amp[q] * np.sin((q + 2) * ang + phase[q]) for q in range(3))
        rho = np.hypot(yy - cy, xx - cx) / (r * rough)
        prof = np.clip(1 - rho ** 2, 0, 1) ** 1.2
        alpha = np.maximum(alpha, a * prof)
        if cloud:
            caster = np.maximum(caster, prof)
    shadow = rng.uniform(0.35, 0.5) * np.clip(1.5 * _shifted(caster, plan["shift"]), 0, 1)
    return alpha, shadow * (alpha < COVERED)


def snow_fraction(plan: dict, seed: int, k: int) -> np.ndarray:
    """Share of each 10 m pixel under snow (0–1): a large smooth snow field on the heavy snow
    date, patches where it lay longest a few days later."""
    if not plan["snow"]:
        return np.zeros((N10, N10))
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, 7, k])
    sigma = 30.0 if plan["snow"] >= 0.5 else 10.0
    fld = gaussian_filter(rng.normal(size=(N10, N10)), sigma, mode="reflect")
    fld = (fld - fld.mean()) / fld.std()
    thr = np.quantile(fld, 1 - plan["snow"])
    return np.clip((fld - thr) / 0.3 + 0.5, 0, 1)
