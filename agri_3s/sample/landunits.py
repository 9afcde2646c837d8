"""Land units: polygons with one cover table each (a parcel, half a parcel, the flooded part of
a parcel, a road, …), and their 2 m rasterization into a (10 m pixel × unit) area matrix."""

from __future__ import annotations

import numpy as np

from .covers import field_veg, grass_keys, seasonal
from .landscape import Landscape
from .scene import (
    C_BUILT,
    C_PLASTIC,
    C_ROAD,
    C_SOIL,
    C_SOIL_BRIGHT,
    C_SOIL_DARK,
    C_VEG,
    C_WATER,
    FLOOD_DATE,
    N10,
    N_COLS,
    NSUB,
    SIZE_M,
    SUB,
    X0,
    Y0,
    d,
    day,
    soil_weight,
)

DEFAULT_SOIL_NDVI = 0.16   # verges, village, orchards, river bed


def build_units(land: Landscape, fields: list, book: np.ndarray, days: np.ndarray,
                rng: np.random.Generator):
    """Land units in rasterization order (later units win a sub-pixel).

    Returns ``(geoms, tables, owner)``: the polygons, their cover tables of shape
    ``(units, dates, N_COLS)`` and, per unit, the insured parcel (index into ``book``) it
    belongs to, or −1.
    """
    flood = land.flood_fp
    fday = day(FLOOD_DATE)
    nt = len(days)
    geoms, tables, owner = [], [], []
    parcel_of_strip = {int(i): j for j, i in enumerate(book)}

    def table(soil_ndvi=DEFAULT_SOIL_NDVI, bright=1.0):
        t = np.zeros((nt, N_COLS))
        w = float(soil_weight(soil_ndvi))
        t[:, C_SOIL_DARK] = bright * w
        t[:, C_SOIL_BRIGHT] = bright * (1 - w)
        return t

    def add(g, t, parcel=-1):
        # soil fraction = remainder; the soil columns carry fraction × brightness
        t[:, C_SOIL] = np.clip(1 - t[:, :C_SOIL].sum(axis=1), 0, 1)
        t[:, C_SOIL_DARK] *= t[:, C_SOIL]
        t[:, C_SOIL_BRIGHT] *= t[:, C_SOIL]
        geoms.append(g)
        tables.append(t)
        owner.append(parcel)

    def apply_flood(t, flood_days, veg_cap=0.08, regrow=False):
        wet = (days >= fday) & (days < fday + flood_days)
        t[wet, C_VEG] = 0.02
        t[wet, C_WATER] = 0.9
        t[wet, C_SOIL_DARK:] *= 0.6         # wet soil is darker in every band
        after = (days >= fday + flood_days) & (days < d(2025, 10, 1))
        if regrow:
            t[after, C_VEG] = np.minimum(t[after, C_VEG],
                                         0.08 + 0.01 * (days[after] - fday - flood_days))
        else:
            t[after, C_VEG] = np.minimum(t[after, C_VEG], veg_cap)
        t[after, C_SOIL_DARK:] *= (0.7 + 0.3 * np.clip((days[after] - fday - flood_days) / 25,
                                                       0, 1))[:, None]

    # 0: background grass / ditches / field margins (raster fill)
    from shapely.geometry import box
    t = table()
    t[:, C_VEG] = seasonal(days, grass_keys())
    add(box(X0, Y0 - SIZE_M, X0 + SIZE_M, Y0), t)
    # 1: background inside the flood zone
    t = table()
    t[:, C_VEG] = seasonal(days, grass_keys())
    apply_flood(t, 9.0, regrow=True)
    add(flood, t)
    # fields
    for i, st in enumerate(land.strips):
        f = fields[i]
        p = f.params
        parcel = parcel_of_strip.get(i, -1)
        if f.planted_side is not None:
            parts = [(f.planted_side, "planted"), (f.fallow_side, "fallow")]
        else:
            parts = [(st.geom, None)]
        for g, side in parts:
            wcls = f.wheat if f.wheat != "half" else side
            mcls = f.maize if f.maize != "half" else side
            pieces = [(g, False)]
            if g.intersects(flood):
                wet, dry = g.intersection(flood), g.difference(flood)
                pieces = [(x, w) for x, w in ((wet, True), (dry, False))
                          if not x.is_empty and x.area > 1.0]
            veg = field_veg(days, p, wcls, mcls, f.hail_loss)
            for g2, wet in pieces:
                t = table(p["soil_ndvi"], p["soil_b"])
                t[:, C_VEG] = veg
                if wet:
                    apply_flood(t, p["flood_days"])
                add(g2, t, parcel)
    # orchards, greenhouses, village, roads, river
    for g in land.orchards:
        lvl = rng.uniform(0.9, 1.05)
        t = table(bright=rng.uniform(0.9, 1.1))
        t[:, C_VEG] = lvl * seasonal(days, [
            (-1, 0.62), (d(2024, 10, 25), 0.55), (d(2024, 11, 20), 0.15), (d(2025, 3, 20), 0.15),
            (d(2025, 4, 20), 0.6), (d(2025, 7, 15), 0.68), (d(2025, 10, 5), 0.6),
            (d(2025, 10, 25), 0.5)])
        add(g, t)
    for g in land.greenhouses:
        t = table()
        t[:, C_PLASTIC] = rng.uniform(0.65, 0.8)
        t[:, C_VEG] = 0.05
        add(g, t)
    for g in land.village:
        t = table()
        t[:, C_BUILT] = 0.72
        t[:, C_VEG] = seasonal(days, [(-1, 0.2), (d(2024, 11, 20), 0.1), (d(2025, 3, 20), 0.1),
                                      (d(2025, 5, 10), 0.2), (d(2025, 8, 1), 0.24),
                                      (d(2025, 10, 25), 0.18)])
        add(g, t)
    t = table()
    t[:, C_ROAD] = 1.0
    add(land.roads, t)
    t = table(bright=0.6)
    t[:, C_WATER] = 0.95
    add(land.river, t)
    return geoms, np.stack(tables, axis=0).astype(np.float32), np.array(owner)


def area_matrix(geoms):
    """(10 m pixel × unit) area fractions from a 2 m rasterization (later units win)."""
    from rasterio.features import rasterize
    from rasterio.transform import from_origin
    from scipy.sparse import coo_matrix

    ids = rasterize(((g, k) for k, g in enumerate(geoms) if k > 0), out_shape=(NSUB, NSUB),
                    transform=from_origin(X0, Y0, 2.0, 2.0), fill=0, dtype="int32")
    r, c = np.divmod(np.arange(NSUB * NSUB), NSUB)
    pix = (r // SUB) * N10 + (c // SUB)
    data = np.full(pix.size, 1.0 / (SUB * SUB), np.float32)
    return coo_matrix((data, (pix, ids.ravel())), shape=(N10 * N10, len(geoms))).tocsr()


def parcel_shares(A, owner: np.ndarray, n_parcels: int, mask: np.ndarray) -> np.ndarray:
    """Share of each insured parcel's rasterized area where ``mask`` (10 m, 0–1) holds.

    Examples
    --------
    >>> from scipy.sparse import csr_matrix
    >>> A = csr_matrix(np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))   # 3 pixels, 2 units
    >>> parcel_shares(A, np.array([0, 1]), 2, np.array([1.0, 0.0, 0.0])).round(3).tolist()
    [0.667, 0.0]
    """
    hit = np.asarray(A.T @ np.asarray(mask, float).ravel()).ravel()
    size = np.asarray(A.sum(axis=0)).ravel()
    keep = owner >= 0
    num = np.bincount(owner[keep], hit[keep], minlength=n_parcels)
    den = np.bincount(owner[keep], size[keep], minlength=n_parcels)
    return num / np.maximum(den, 1e-12)

