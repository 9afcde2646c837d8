"""The embedded default: a deterministic synthetic piece of a North China Plain county.

A 4 km × 4 km scene near Wucheng (Dezhou, Shandong; county code 371428) in EPSG:32650, top-left
corner (437000, 4142000), with a winter-wheat / summer-maize rotation, two disasters (hail on
2025-05-14, flood on 2025-07-22) and ground truth known exactly. ``agri3s demo`` and the tests
use it; see ``sample_data/README.md`` for the layout and the meaning of the truth columns.

How it is made (all from ``numpy.random.default_rng`` streams derived from the seed, so the same
seed gives byte-identical files):

1. *Landscape* — a slightly rotated, jittered road grid makes blocks; blocks are cut into furlongs
   and furlongs into strips (irregular quadrilaterals sharing their cut lines exactly). One block
   holds the village, one an orchard and a greenhouse cluster, some are consolidated large farms;
   a river with a low-lying flood zone crosses the scene; a hail swath crosses it diagonally.
2. *Farms and truth* — the insured book (land parcels, households, policies) and, per season, a
   truth class (planted / fallow / half_planted / other_crop / area_inflated) per parcel.
3. *Land units* — polygons with one cover history each (a parcel, half a parcel, the flooded part
   of a parcel, a road, …). They are rasterized once at 2 m and summed to a sparse
   (10 m pixel × unit) area-fraction matrix.
4. *Imagery* — per acquisition, unit cover vectors → pixel cover (sparse mat-vec), linear mixing of
   endmember spectra, static within-field heterogeneity, clouds / haze / shadows, sensor noise,
   Sentinel-2 L2A digital numbers (offset +1000, processing baseline ≥ 04.00) and an SCL layer.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .units import M2_PER_MU

SAMPLE_VERSION = "1"  # bump when output changes
SAMPLE_SEED = 20250512

__all__ = ["SAMPLE_SEED", "SAMPLE_VERSION", "SamplePaths", "ensure_sample", "generate_sample"]

# --- fixed facts of the scene ----------------------------------------------------------------

EPSG = 32650
X0, Y0 = 437000.0, 4142000.0          # top-left corner (x, y)
SIZE_M = 4000.0
N10, N20, NSUB = 400, 200, 2000       # 10 m, 20 m and 2 m (sub-pixel) grid sizes
SUB = 5                               # 2 m sub-pixels per 10 m pixel (per axis)
CX, CY = X0 + SIZE_M / 2, Y0 - SIZE_M / 2
COUNTY = "371428"                     # Wucheng county, Dezhou, Shandong

START = dt.date(2024, 9, 20)
END = dt.date(2025, 10, 20)
WHEAT_SEASON = (dt.date(2024, 10, 1), dt.date(2025, 6, 15))
MAIZE_SEASON = (dt.date(2025, 6, 10), dt.date(2025, 10, 10))
HAIL_DATE = dt.date(2025, 5, 14)
FLOOD_DATE = dt.date(2025, 7, 22)
HAIL_ID, FLOOD_ID = "hail_2025-05-14", "flood_2025-07-22"

NOISE_SD = 0.0035                     # sensor noise (reflectance)
BANDS = ("B03", "B04", "B08", "B11")  # green, red, nir, swir16
# Endmember reflectances (green, red, nir, swir16). Soil red+nir ≈ vegetation red+nir, so NDVI is
# close to linear in vegetation cover.
EM_VEG = np.array([0.08, 0.04, 0.42, 0.20])
EM_SOIL = np.array([0.12, 0.16, 0.24, 0.30])
EM_WATER = np.array([0.07, 0.05, 0.03, 0.01])
EM_BUILT = np.array([0.14, 0.16, 0.20, 0.24])
EM_ROAD = np.array([0.10, 0.11, 0.14, 0.16])
EM_PLASTIC = np.array([0.24, 0.25, 0.29, 0.27])  # greenhouse film

# unit cover-table columns
C_VEG, C_WATER, C_BUILT, C_ROAD, C_PLASTIC, C_SOIL, C_SOILB = range(7)

SURNAMES = "王李张刘陈杨赵黄周吴孙马朱胡郭"
GIVEN = "建国华明志军红英秀兰强伟芳丽敏静海涛平刚玉桂凤春云福德成文岩金荣庆玲霞立新振"

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SamplePaths:
    """Where the parts of a generated sample are."""

    root: Path
    imagery: Path
    parcels_wheat: Path
    parcels_maize: Path
    truth: Path
    hail_event: Path
    flood_event: Path
    hail_footprint: Path
    flood_footprint: Path

    @classmethod
    def at(cls, root: Path | str) -> SamplePaths:
        root = Path(root)
        ev = root / "events"
        return cls(root=root, imagery=root / "imagery",
                   parcels_wheat=root / "parcels_wheat.geojson",
                   parcels_maize=root / "parcels_maize.geojson", truth=root / "truth.csv",
                   hail_event=ev / f"{HAIL_ID}.toml", flood_event=ev / f"{FLOOD_ID}.toml",
                   hail_footprint=ev / f"{HAIL_ID}_footprint.geojson",
                   flood_footprint=ev / f"{FLOOD_ID}_footprint.geojson")


def _day(d: dt.date) -> int:
    return (d - START).days


def _d(y: int, m: int, dd: int) -> int:
    return _day(dt.date(y, m, dd))


def acquisition_dates() -> list[dt.date]:
    """Every 5 days from 2024-09-20, plus an adjacent-orbit date 2–3 days later every 3rd cycle."""
    out, k = [], 0
    while START + dt.timedelta(days=5 * k) <= END:
        d = START + dt.timedelta(days=5 * k)
        out.append(d)
        if k % 3 == 1:
            extra = d + dt.timedelta(days=2 if (k // 3) % 2 == 0 else 3)
            if extra <= END:
                out.append(extra)
        k += 1
    return sorted(set(out))


# --- landscape -------------------------------------------------------------------------------

@dataclass
class _Strip:
    geom: object            # shapely Polygon, EPSG:32650
    block: int
    furlong: int
    index: int
    kind: str               # "small" | "big" | "edge"
    river_cut: bool = False


@dataclass
class _Landscape:
    theta: float
    strips: list
    blocks: list            # dicts: id, role, quad (world polygon), inner
    village: list
    orchards: list
    greenhouses: list
    roads: object
    river: object
    flood_fp: object
    hail_line: object
    hail_fp: object
    hail_halfwidth: float
    scene: object


def _bilinear(c, s, t):
    p00, p10, p11, p01 = c
    return ((1 - s) * (1 - t))[..., None] * p00 + (s * (1 - t))[..., None] * p10 + \
        (s * t)[..., None] * p11 + ((1 - s) * t)[..., None] * p01


def _build_landscape(rng: np.random.Generator) -> _Landscape:
    import shapely
    from scipy.ndimage import gaussian_filter1d
    from shapely.geometry import LineString, Polygon, box
    from shapely.ops import unary_union

    theta = math.radians(rng.uniform(6.0, 9.0))
    cos_t, sin_t = math.cos(theta), math.sin(theta)

    def to_world(pts):
        pts = np.asarray(pts, float)
        u, v = pts[..., 0], pts[..., 1]
        return np.stack([CX + u * cos_t - v * sin_t, CY + u * sin_t + v * cos_t], axis=-1)

    H = 2500.0  # half-size of the local frame (covers the rotated scene)
    # road lines in the local frame: vertical u = a + b v, horizontal v = c + d u
    def lines(n):
        pos = np.linspace(-2000, 2000, n) + rng.uniform(-150, 150, n)
        e = rng.uniform(-30, 30, (n, 2))
        a = pos + e.mean(axis=1)
        b = (e[:, 1] - e[:, 0]) / (2 * H)
        w = rng.uniform(6.0, 8.0, n)
        return ([(-H, 0.0, 0.0)] + [(a[i], b[i], w[i]) for i in range(n)] + [(H, 0.0, 0.0)])

    vlines, hlines = lines(5), lines(5)

    def corner(vl, voff, hl, hoff):
        a, b, _ = vl
        c, d, _ = hl
        a = a + voff * math.sqrt(1 + b * b)
        c = c + hoff * math.sqrt(1 + d * d)
        u = (a + b * c) / (1 - b * d)
        return np.array([u, c + d * u])

    road_geoms = []
    for (a, b, w) in vlines[1:-1]:
        road_geoms.append(LineString(to_world([[a + b * -H, -H], [a + b * H, H]])).buffer(
            w / 2, cap_style="flat"))
    for (c, d, w) in hlines[1:-1]:
        road_geoms.append(LineString(to_world([[-H, c + d * -H], [H, c + d * H]])).buffer(
            w / 2, cap_style="flat"))
    roads = unary_union(road_geoms)

    scene = box(X0, Y0 - SIZE_M, X0 + SIZE_M, Y0)
    ncol = len(vlines) - 1
    inner_ids = [j * ncol + i for j in range(1, ncol - 1) for i in range(1, ncol - 1)]
    roles = {bid: "small" for bid in range(ncol * ncol)}
    order = list(rng.permutation(inner_ids))
    roles[order[0]] = "village"
    roles[order[1]] = "orchard"
    for bid in order[2:6]:
        roles[bid] = "big"

    strips, blocks, village, orchards, greenhouses = [], [], [], [], []
    for j in range(ncol):
        for i in range(ncol):
            bid = j * ncol + i
            role = roles[bid]
            inner = bid in inner_ids
            vl, vr, hb, ht = vlines[i], vlines[i + 1], hlines[j], hlines[j + 1]
            quad = np.array([corner(vl, vl[2] / 2, hb, hb[2] / 2),
                             corner(vr, -vr[2] / 2, hb, hb[2] / 2),
                             corner(vr, -vr[2] / 2, ht, -ht[2] / 2),
                             corner(vl, vl[2] / 2, ht, -ht[2] / 2)])
            blocks.append({"id": bid, "role": role, "inner": inner,
                           "quad": Polygon(to_world(quad))})
            orient = int(rng.integers(0, 2))

            def X(a, bb, _q=quad, _o=orient):
                a, bb = np.asarray(a, float), np.asarray(bb, float)
                return _bilinear(_q, bb, a) if _o == 0 else _bilinear(_q, a, bb)

            len_a = float(np.linalg.norm(X(1.0, 0.5) - X(0.0, 0.5)))
            len_b = float(np.linalg.norm(X(0.5, 1.0) - X(0.5, 0.0)))
            big = role == "big"
            # furlong depths (= strip lengths)
            depths = []
            lo, hi = (250.0, 500.0) if big else (60.0, 300.0)
            while sum(depths) < len_a:
                depths.append(rng.uniform(lo, hi))
            excess = sum(depths) - len_a
            depths[-1] -= excess
            if depths[-1] < lo and len(depths) > 1:
                depths[-2] += depths.pop()
            cum = np.concatenate([[0.0], np.cumsum(depths)]) / len_a
            cum[-1] = 1.0
            a0, a1 = cum.copy(), cum.copy()
            jit = rng.normal(0, 6.0, (len(cum), 2)) / len_a
            a0[1:-1] += jit[1:-1, 0]
            a1[1:-1] += jit[1:-1, 1]
            edges = [(X(a0[k], 0.0), X(a1[k], 1.0)) for k in range(len(cum))]
            nf = len(depths)
            village_f = set()
            orchard_f, green_f = -1, -1
            if role == "village":
                k0 = int(rng.integers(0, max(1, nf // 3)))
                k1 = min(nf, k0 + max(2, int(np.rint(nf * rng.uniform(0.5, 0.7)))))
                village_f = set(range(k0, k1))
            elif role == "orchard":
                orchard_f = int(rng.integers(0, nf))
                green_f = (orchard_f + 1 + int(rng.integers(0, nf - 1))) % nf if nf > 1 else -1
            for k in range(nf):
                P, Q = edges[k]
                P2, Q2 = edges[k + 1]
                if k in village_f:
                    village.append(Polygon(to_world([P, Q, Q2, P2])))
                    continue
                if k == orchard_f:
                    # split the orchard furlong into 2–3 orchards
                    m = int(rng.integers(2, 4))
                    ts = np.concatenate([[0], np.sort(rng.uniform(0.15, 0.85, m - 1)), [1]])
                    for q in range(m):
                        orchards.append(Polygon(to_world([
                            P + ts[q] * (Q - P), P + ts[q + 1] * (Q - P),
                            P2 + ts[q + 1] * (Q2 - P2), P2 + ts[q] * (Q2 - P2)])))
                    continue
                L = depths[k]
                widths = []
                if big:
                    wmed, wsd, wlo, whi = 110.0, 0.4, 50.0, 250.0
                else:
                    wmed, wsd = 19.0, 0.55
                    wlo = max(8.0, 0.6 * M2_PER_MU / L)
                    whi = min(80.0, 28.0 * M2_PER_MU / L)
                while sum(widths) < len_b:
                    widths.append(float(np.clip(rng.lognormal(math.log(wmed), wsd), wlo, whi)))
                widths[-1] -= sum(widths) - len_b
                if widths[-1] < wlo and len(widths) > 1:
                    widths[-2] += widths.pop()
                t = np.concatenate([[0.0], np.cumsum(widths)]) / len_b
                t[-1] = 1.0
                s = t.copy()
                for q in range(1, len(t) - 1):
                    lim = 0.3 * min(widths[q - 1], widths[q])
                    s[q] = t[q] + float(np.clip(rng.normal(0, 3.0), -lim, lim)) / len_b
                gh = set()
                if k == green_f:
                    q0 = int(rng.integers(0, max(1, len(widths) - 10)))
                    gh = set(range(q0, min(len(widths), q0 + int(rng.integers(6, 11)))))
                for q in range(len(widths)):
                    pts = to_world([P + t[q] * (Q - P), P + t[q + 1] * (Q - P),
                                    P2 + s[q + 1] * (Q2 - P2), P2 + s[q] * (Q2 - P2)])
                    poly = Polygon(pts)
                    if q in gh:
                        greenhouses.append(poly)
                        continue
                    if not poly.intersects(scene):
                        continue
                    kind = "big" if big else ("small" if inner else "edge")
                    strips.append(_Strip(poly, bid, k, q, kind))

    # river: a meandering channel crossing west → east
    xs = np.arange(X0 - 300, X0 + SIZE_M + 300, 10.0)
    xr_ = xs - X0
    yc = Y0 - rng.uniform(2200, 2800)
    ys = (yc + 170 * np.sin(2 * np.pi * xr_ / rng.uniform(2600, 3200) + rng.uniform(0, 6.3))
          + 30 * np.sin(2 * np.pi * xr_ / rng.uniform(800, 1000) + rng.uniform(0, 6.3))
          + rng.uniform(-0.08, 0.08) * (xr_ - SIZE_M / 2))
    river_line = LineString(np.column_stack([xs, ys]))
    river_w = rng.uniform(25, 35)
    river = river_line.buffer(river_w / 2)
    corridor = river_line.buffer(river_w / 2 + 10.0)
    kept = []
    for st in strips:
        if st.geom.intersects(corridor):
            g = st.geom.difference(corridor)
            if g.geom_type == "MultiPolygon":
                g = max(g.geoms, key=lambda p: p.area)
            if g.is_empty or g.area < 0.6 * M2_PER_MU:
                continue
            st.geom, st.river_cut = shapely.normalize(g), True
        kept.append(st)
    strips = kept

    # low-lying flood zone: union of discs along the river with smoothly varying radius
    n = len(xs[::4])
    z = gaussian_filter1d(rng.normal(size=n), 6, mode="nearest")
    z = (z - z.min()) / (np.ptp(z) + 1e-9)
    z2 = gaussian_filter1d(rng.normal(size=n), 8, mode="nearest")
    z2 = z2 / (np.abs(z2).max() + 1e-9)
    px, py = xs[::4], ys[::4]
    dx, dy = np.gradient(px), np.gradient(py)
    nrm = np.hypot(dx, dy)
    nx, ny = -dy / nrm, dx / nrm
    r = 50 + 170 * z
    discs = [shapely.Point(px[q] + 0.35 * r[q] * z2[q] * nx[q],
                           py[q] + 0.35 * r[q] * z2[q] * ny[q]).buffer(r[q], 24)
             for q in range(n)]
    flood_fp = unary_union(discs + [river]).simplify(1.0).intersection(scene)
    if flood_fp.geom_type != "Polygon":
        flood_fp = max(flood_fp.geoms, key=lambda p: p.area)

    # hail swath: ~1.2 km wide, NW → SE
    p0 = (X0 - 400, Y0 - rng.uniform(300, 1300))
    p1 = (X0 + SIZE_M + 400, Y0 - SIZE_M + rng.uniform(300, 1300))
    hail_line = LineString([p0, p1])
    halfw = rng.uniform(570, 630)
    hail_fp = hail_line.buffer(halfw, cap_style="flat").intersection(scene)

    return _Landscape(theta=math.degrees(theta), strips=strips, blocks=blocks, village=village,
                      orchards=orchards, greenhouses=greenhouses, roads=roads, river=river,
                      flood_fp=flood_fp, hail_line=hail_line, hail_fp=hail_fp,
                      hail_halfwidth=halfw, scene=scene)


# --- farms, policies and truth ---------------------------------------------------------------

@dataclass
class _Field:
    """Per-strip agronomy: season classes and phenology."""

    wheat: str = "planted"      # planted | fallow | half | cotton
    maize: str = "planted"
    half_frac: float = 0.5
    planted_side: object = None  # shapely polygon of the planted part when half-planted
    fallow_side: object = None
    hail_loss: float = 0.0
    params: dict = field(default_factory=dict)


def _id_number(rng: np.random.Generator, seq: int) -> str:
    birth = dt.date(1948, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 47)))
    body = f"{COUNTY}{birth:%Y%m%d}{seq % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]
    return body + check


def _name(rng: np.random.Generator) -> str:
    n = 1 if rng.random() < 0.3 else 2
    return SURNAMES[int(rng.integers(len(SURNAMES)))] + "".join(
        GIVEN[int(rng.integers(len(GIVEN)))] for _ in range(n))


def _split_long_axis(poly, frac: float):
    """Split ``poly`` by a line parallel to its long axis so one part has ≈ ``frac`` of the area."""
    import shapely
    from shapely.geometry import Polygon

    rect = np.asarray(shapely.oriented_envelope(poly).exterior.coords)[:4]
    e1, e2 = rect[1] - rect[0], rect[2] - rect[1]
    d = e1 if np.linalg.norm(e1) >= np.linalg.norm(e2) else e2
    d = d / np.linalg.norm(d)
    nvec = np.array([-d[1], d[0]])
    pts = np.asarray(poly.exterior.coords)
    proj = pts @ nvec
    lo, hi = proj.min(), proj.max()
    c = pts.mean(axis=0)
    big = 1e4

    def half(o):
        base = c + (o - c @ nvec) * nvec
        return Polygon([base - big * d, base + big * d, base + big * d - big * nvec,
                        base - big * d - big * nvec])

    a, b = lo, hi
    for _ in range(40):
        o = 0.5 * (a + b)
        f = poly.intersection(half(o)).area / poly.area
        if f < frac:
            a = o
        else:
            b = o
    hp = half(0.5 * (a + b))
    return poly.intersection(hp), poly.difference(hp)


def _build_farms(land: _Landscape, rng: np.random.Generator):
    """Choose the insured book, households, policies, season classes and truth."""
    import shapely

    strips = land.strips
    n = len(strips)
    inset = land.scene.buffer(-20.0)
    area_mu = np.array([s.geom.area / M2_PER_MU for s in strips])
    cent = shapely.centroid(np.array([s.geom for s in strips]))
    eligible = np.array([s.kind == "small" and inset.contains(s.geom) and 0.55 <= a <= 29.5
                         for s, a in zip(strips, area_mu)])
    in_hail = shapely.contains(land.hail_fp, cent)
    block_of = np.array([s.block for s in strips])
    # book: whole furlongs (rows of neighbouring strips) drawn at random from the smallholder
    # blocks, so insured land is spread over the scene and neighbours share edges
    target = int(rng.integers(760, 840))
    furlong_of = np.array([s.furlong for s in strips])
    index_of = np.array([s.index for s in strips])
    groups = sorted({(int(block_of[i]), int(furlong_of[i])) for i in np.flatnonzero(eligible)})
    picked = []
    for g in rng.permutation(len(groups)):
        if len(picked) >= target:
            break
        b, k = groups[int(g)]
        picked.extend(np.flatnonzero(eligible & (block_of == b) & (furlong_of == k)).tolist())
    book = np.array(sorted(picked, key=lambda i: (block_of[i], furlong_of[i], index_of[i])))
    nb = len(book)

    # phenology for every strip
    fields = []
    for _ in range(n):
        sh = rng.uniform(-5, 5)
        hw = _d(2025, 6, 5) + rng.uniform(0, 7)
        hm = _d(2025, 9, 25) + rng.uniform(0, 10)
        p = {
            "sh": sh, "c0": rng.uniform(0.3, 0.5), "h0": _d(2024, 9, 22) + rng.uniform(0, 8),
            "sw": _d(2024, 10, 5) + rng.uniform(0, 10), "hw": hw,
            "sm": max(_d(2025, 6, 10) + rng.uniform(0, 10), hw + 2), "hm": hm,
            "sw2": max(_d(2025, 10, 5) + rng.uniform(0, 10), hm + 3),
            "kw": rng.uniform(0.9, 1.1), "pw": rng.uniform(0.86, 0.92),
            "pm": rng.uniform(0.86, 0.92),
            "pc": rng.uniform(0.8, 0.88), "hc0": _d(2024, 10, 12) + rng.uniform(0, 6),
            "sc": _d(2025, 4, 20) + rng.uniform(0, 10), "hc": _d(2025, 10, 12) + rng.uniform(0, 6),
            "soil": rng.uniform(0.85, 1.15), "flood_days": rng.uniform(8, 10)}
        fields.append(_Field(params=p))
    # non-book strips: mostly the normal rotation, a few fallow / cotton
    in_book = set(book.tolist())
    for i in range(n):
        if i in in_book:
            continue
        r = rng.random()
        if strips[i].kind == "big":
            continue
        if r < 0.05:
            fields[i].wheat = fields[i].maize = "cotton"
        elif r < 0.08:
            fields[i].wheat = "fallow"
        elif r < 0.10:
            fields[i].maize = "fallow"

    # book: insured seasons, classes
    r = rng.random(nb)
    ins_w = r >= 0.15          # 15 % maize only
    ins_m = (r < 0.15) | (r >= 0.30)   # 15 % wheat only
    classes = {"wheat": np.array(["planted"] * nb, dtype=object),
               "maize": np.array(["planted"] * nb, dtype=object)}
    barea = area_mu[book]
    n_other = int(np.rint(0.05 * nb))
    other = rng.choice(nb, n_other, replace=False)
    for s in ("wheat", "maize"):
        classes[s][other] = "other_crop"
    for s, ins in (("wheat", ins_w), ("maize", ins_m)):
        k = int(np.rint(0.05 * ins.sum()))
        cl = classes[s]
        classes[s][rng.choice(np.flatnonzero(ins & (cl == "planted")), k, replace=False)] = "fallow"
        pool = np.flatnonzero(ins & (cl == "planted") & (barea >= 4.0))
        classes[s][rng.choice(pool, k, replace=False)] = "half_planted"
        pool = np.flatnonzero(ins & (cl == "planted") & (barea <= 18.0))
        classes[s][rng.choice(pool, k, replace=False)] = "area_inflated"
    agro = {"planted": "planted", "area_inflated": "planted", "fallow": "fallow",
            "half_planted": "half", "other_crop": "cotton"}
    for j, i in enumerate(book):
        f = fields[i]
        f.wheat = agro[classes["wheat"][j]]
        f.maize = agro[classes["maize"][j]]
        if "half" in (f.wheat, f.maize):
            f.half_frac = rng.uniform(0.4, 0.6)
            a, b = _split_long_axis(strips[i].geom, f.half_frac)
            if rng.random() < 0.5:
                a, b = b, a
                f.half_frac = 1 - f.half_frac
            f.planted_side, f.fallow_side = a, b

    # hail loss for every wheat field whose centroid lies in the swath
    d_line = shapely.distance(cent, land.hail_line)
    for i in range(n):
        if in_hail[i] and fields[i].wheat in ("planted", "half"):
            rel = min(1.0, d_line[i] / land.hail_halfwidth)
            fields[i].hail_loss = float(np.clip(0.85 - 0.65 * rel + rng.normal(0, 0.03),
                                                0.05, 0.95))

    # households, policies
    order = rng.permutation(nb)
    hh_of = np.empty(nb, int)
    pos, hh = 0, 0
    while pos < nb:
        size = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.22, 0.13]))
        hh += 1
        hh_of[order[pos:pos + size]] = hh
        pos += size
    households = {}
    for h in range(1, hh + 1):
        households[h] = {"name": _name(rng),
                         "idn": _id_number(rng, int(rng.integers(0, 1000))),
                         "si_w": 950 if rng.random() < 0.3 else 450,
                         "si_m": 800 if rng.random() < 0.3 else 400}

    rows_w, rows_m, truth = [], [], []
    flood = land.flood_fp
    for j, i in enumerate(book):
        st, f = strips[i], fields[i]
        pid = f"{COUNTY}-{j + 1:04d}"
        h = hh_of[j]
        hinfo = households[h]
        true_mu = st.geom.area / M2_PER_MU
        for season, ins in (("wheat", ins_w[j]), ("maize", ins_m[j])):
            if not ins:
                continue
            cls = classes[season][j]
            if cls == "area_inflated":
                declared = true_mu * rng.uniform(1.3, 1.6)
            else:
                declared = true_mu * (1 + rng.uniform(-0.03, 0.03))
            declared = float(min(30.0, max(0.5, round(declared, 1))))
            if cls in ("planted", "area_inflated"):
                frac, planted_geom = 1.0, st.geom
            elif cls == "half_planted":
                frac, planted_geom = f.planted_side.area / st.geom.area, f.planted_side
            else:
                frac, planted_geom = 0.0, None
            verdict = {"planted": "green", "fallow": "red", "other_crop": "red",
                       "half_planted": "yellow", "area_inflated": "yellow"}[cls]
            row = {"parcel_id": pid, "season": season, "truth_class": cls,
                   "true_planted_fraction": round(frac, 4), "true_area_mu": round(true_mu, 3),
                   "declared_area_mu": declared, "expected_verdict": verdict,
                   "hail_loss_rate": np.nan, "flooded_fraction": np.nan,
                   "flood_loss_rate": np.nan}
            common = {"parcel_id": pid, "household_id": f"H{COUNTY}-{h:04d}",
                      "declared_area_mu": declared, "farmer_name": hinfo["name"],
                      "farmer_id_number": hinfo["idn"], "geometry": st.geom}
            if season == "wheat":
                row["policy_id"] = f"PW2024{COUNTY}-{h:04d}"
                row["hail_loss_rate"] = round(f.hail_loss, 4) if planted_geom is not None else 0.0
                rows_w.append(dict(common, policy_id=row["policy_id"], crop="winter_wheat",
                                   sum_insured_cny_per_mu=hinfo["si_w"]))
            else:
                row["policy_id"] = f"PM2025{COUNTY}-{h:04d}"
                ff = st.geom.intersection(flood).area / st.geom.area
                lr = (planted_geom.intersection(flood).area / st.geom.area
                      if planted_geom is not None else 0.0)
                row["flooded_fraction"] = round(ff, 4)
                row["flood_loss_rate"] = round(lr, 4)
                rows_m.append(dict(common, policy_id=row["policy_id"], crop="summer_maize",
                                   sum_insured_cny_per_mu=hinfo["si_m"]))
            truth.append(row)
    return fields, book, rows_w, rows_m, truth


# --- cover histories -------------------------------------------------------------------------

def _field_veg(days: np.ndarray, p: dict, wcls: str, mcls: str, hail_loss: float) -> np.ndarray:
    """Vegetation cover of one field piece at ``days`` (days since START)."""
    sh = p["sh"]
    end = _day(END) + 10
    if wcls == "cotton":
        kp = [(-1, 0.62), (_d(2024, 10, 1), 0.5), (p["hc0"] - 0.5, 0.4), (p["hc0"], 0.07),
              (_d(2024, 11, 15), 0.04), (p["sc"], 0.03), (p["sc"] + 10, 0.05),
              (_d(2025, 6, 1) + sh, 0.2), (_d(2025, 6, 20) + sh, 0.42),
              (_d(2025, 7, 15) + sh, 0.75), (_d(2025, 8, 10) + sh, p["pc"]),
              (_d(2025, 9, 10) + sh, p["pc"] - 0.07), (_d(2025, 10, 1) + sh, 0.5),
              (p["hc"] - 0.5, 0.4), (p["hc"], 0.07), (end, 0.05)]
    else:
        kp = [(-1, p["c0"]), (p["h0"] - 0.5, 0.32), (p["h0"], 0.07)]
        k = p["kw"]
        if wcls == "planted":
            kp += [(p["sw"], 0.03), (p["sw"] + 10 + 0.5 * sh, 0.05),
                   (_d(2024, 11, 25) + sh, 0.35 * k), (_d(2024, 12, 15) + sh, 0.30 * k),
                   (_d(2025, 2, 25) + sh, 0.28 * k), (_d(2025, 3, 5) + sh, 0.30 * k),
                   (_d(2025, 3, 28) + sh, 0.6), (_d(2025, 4, 20) + sh, p["pw"]),
                   (_d(2025, 5, 17) + 0.5 * sh, p["pw"] - 0.02), (_d(2025, 5, 28) + sh, 0.6),
                   (p["hw"] - 0.5, 0.3), (p["hw"], 0.07)]
        else:  # fallow: bare with sparse weeds
            kp += [(p["h0"] + 5, 0.05), (_d(2024, 11, 10), 0.06), (_d(2025, 1, 10), 0.03),
                   (_d(2025, 3, 20), 0.04), (_d(2025, 5, 5), 0.07), (p["hw"], 0.09)]
        if mcls == "planted":
            kp += [(p["sm"], 0.03), (p["sm"] + 7, 0.05), (p["sm"] + 25 + 0.5 * sh, 0.28),
                   (_d(2025, 7, 20) + sh, 0.72), (_d(2025, 8, 1) + sh, p["pm"]),
                   (_d(2025, 9, 1) + sh, p["pm"] - 0.02), (_d(2025, 9, 15) + sh, 0.6),
                   (p["hm"] - 0.5, 0.38), (p["hm"], 0.06)]
        else:
            kp += [(_d(2025, 7, 10), 0.08), (_d(2025, 8, 15), 0.11), (_d(2025, 9, 20), 0.09),
                   (p["hm"], 0.06)]
        kp += [(p["sw2"], 0.03), (p["sw2"] + 10, 0.05), (end, 0.08)]
    kp.sort(key=lambda x: x[0])
    x, y = np.array(kp).T
    veg = np.interp(days, x, y)
    if hail_loss and wcls == "planted":
        hit = (days >= _day(HAIL_DATE)) & (days < p["hw"])
        veg[hit] *= 1 - hail_loss
    return veg


def _seasonal(days, kp):
    x, y = np.array(kp, float).T
    return np.interp(days, x, y)


def _grass_kp():
    return [(-1, 0.5), (_d(2024, 11, 15), 0.25), (_d(2025, 1, 15), 0.12), (_d(2025, 3, 15), 0.18),
            (_d(2025, 5, 1), 0.45), (_d(2025, 7, 15), 0.6), (_d(2025, 9, 1), 0.58),
            (_d(2025, 10, 25), 0.45)]


def _build_units(land: _Landscape, fields: list, days: np.ndarray, rng: np.random.Generator):
    """Land units (geometry, cover table over acquisition days) in rasterization order."""
    flood = land.flood_fp
    fday = _day(FLOOD_DATE)
    nt = len(days)
    geoms, tables = [], []

    def table():
        t = np.zeros((nt, 7))
        t[:, C_SOILB] = 1.0
        return t

    def add(g, t):
        # soil fraction = remainder
        t[:, C_SOIL] = np.clip(1 - t[:, :C_SOIL].sum(axis=1), 0, 1)
        t[:, C_SOILB] = t[:, C_SOILB] * t[:, C_SOIL]
        geoms.append(g)
        tables.append(t)

    def apply_flood(t, flood_days, veg_cap=0.08, regrow=False):
        wet = (days >= fday) & (days < fday + flood_days)
        t[wet, C_VEG] = 0.02
        t[wet, C_WATER] = 0.9
        t[wet, C_SOILB] *= 0.6
        after = (days >= fday + flood_days) & (days < _d(2025, 10, 1))
        if regrow:
            t[after, C_VEG] = np.minimum(t[after, C_VEG],
                                         0.08 + 0.01 * (days[after] - fday - flood_days))
        else:
            t[after, C_VEG] = np.minimum(t[after, C_VEG], veg_cap)
        t[after, C_SOILB] *= 0.7 + 0.3 * np.clip((days[after] - fday - flood_days) / 25, 0, 1)

    # 0: background grass / ditches / field margins (raster fill)
    from shapely.geometry import box
    t = table()
    t[:, C_VEG] = _seasonal(days, _grass_kp())
    add(box(X0, Y0 - SIZE_M, X0 + SIZE_M, Y0), t)
    # 1: background inside the flood zone
    t = table()
    t[:, C_VEG] = _seasonal(days, _grass_kp())
    apply_flood(t, 9.0, regrow=True)
    add(flood, t)
    # fields
    for i, st in enumerate(land.strips):
        f = fields[i]
        p = f.params
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
            veg = _field_veg(days, p, wcls, mcls, f.hail_loss)
            for g2, wet in pieces:
                t = table()
                t[:, C_VEG] = veg
                t[:, C_SOILB] = p["soil"]
                if wet:
                    apply_flood(t, p["flood_days"])
                add(g2, t)
    # orchards, greenhouses, village, roads, river
    for g in land.orchards:
        t = table()
        lvl = rng.uniform(0.9, 1.05)
        t[:, C_VEG] = lvl * _seasonal(days, [
            (-1, 0.62), (_d(2024, 10, 25), 0.55), (_d(2024, 11, 20), 0.15), (_d(2025, 3, 20), 0.15),
            (_d(2025, 4, 20), 0.6), (_d(2025, 7, 15), 0.68), (_d(2025, 10, 5), 0.6),
            (_d(2025, 10, 25), 0.5)])
        t[:, C_SOILB] = rng.uniform(0.9, 1.1)
        add(g, t)
    for g in land.greenhouses:
        t = table()
        t[:, C_PLASTIC] = rng.uniform(0.65, 0.8)
        t[:, C_VEG] = 0.05
        add(g, t)
    for g in land.village:
        t = table()
        t[:, C_BUILT] = 0.72
        t[:, C_VEG] = _seasonal(days, [(-1, 0.2), (_d(2024, 11, 20), 0.1), (_d(2025, 3, 20), 0.1),
                                       (_d(2025, 5, 10), 0.2), (_d(2025, 8, 1), 0.24),
                                       (_d(2025, 10, 25), 0.18)])
        add(g, t)
    t = table()
    t[:, C_ROAD] = 1.0
    add(land.roads, t)
    t = table()
    t[:, C_WATER] = 0.95
    t[:, C_SOILB] = 0.6
    add(land.river, t)
    return geoms, np.stack(tables, axis=0).astype(np.float32)  # (units, dates, 7)


def _area_matrix(geoms):
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


# --- per-date atmosphere plan and rendering --------------------------------------------------

_MONTH_COVER = {12: 0.2, 1: 0.2, 2: 0.2, 3: 0.3, 4: 0.3, 5: 0.3, 6: 0.4, 7: 0.55, 8: 0.55,
                9: 0.35, 10: 0.25, 11: 0.25}
_ANCHORS = [dt.date(2025, 5, 8), dt.date(2025, 5, 20), dt.date(2025, 7, 15),
            dt.date(2025, 7, 26), dt.date(2025, 8, 10), dt.date(2025, 4, 25)]


def _date_plan(dates: list[dt.date], rng: np.random.Generator) -> list[dict]:
    anchors = {min(dates, key=lambda d: abs((d - a).days)) for a in _ANCHORS}
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
        az = math.radians(rng.uniform(145, 165) - 180)   # shadows fall to the NNW
        dist = rng.uniform(300, 600)
        plan.append({"date": d, "cover": cover, "sigma": rng.uniform(8, 25),
                     "shift": (int(np.rint(-dist * math.cos(az) / 10)),  # rows (north = up)
                               int(np.rint(dist * math.sin(az) / 10))),
                     "base": rng.uniform(0.3, 0.6), "shade": rng.uniform(0.35, 0.55),
                     "soil": float(np.clip(rng.normal(1.0, 0.03), 0.92, 1.08)),
                     "metadata": rng.random() >= 0.1, "wedge": None, "anchor": d in anchors})
    free = [k for k, p in enumerate(plan) if not p["anchor"]]
    for k in rng.choice(free, 4, replace=False):
        plan[int(k)]["wedge"] = (int(rng.integers(0, 4)), rng.uniform(40, 110),
                                 rng.uniform(40, 130))
    return plan


def _block_mean(a: np.ndarray) -> np.ndarray:
    return a.reshape(N20, 2, N20, 2).mean(axis=(1, 3))


def _render(k: int, tab: np.ndarray, A, het: np.ndarray, plan: dict, seed: int):
    """One acquisition → (dict of uint16 10 m/20 m DN arrays, uint8 SCL)."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    rng = np.random.default_rng([seed, 2, k])
    P = np.asarray(A @ tab, dtype=np.float64)          # (pixels, 7)
    veg0, water, built, road, plastic, soil, soilb = P.T
    veg = np.maximum(np.minimum(veg0 * het, veg0 + soil), 0.0)
    soil_new = np.maximum(soil - (veg - veg0), 0.0)
    bright = np.where(soil > 1e-6, soilb / np.maximum(soil, 1e-6), 1.0) * plan["soil"]
    refl = (np.outer(veg, EM_VEG) + np.outer(water, EM_WATER) + np.outer(built, EM_BUILT)
            + np.outer(road, EM_ROAD) + np.outer(plastic, EM_PLASTIC)
            + np.outer(soil_new * bright, EM_SOIL))
    refl = refl.reshape(N10, N10, 4)
    water = water.reshape(N10, N10)

    pad = 70
    alpha = np.zeros((N10, N10))
    shadow = np.zeros((N10, N10))
    if plan["cover"] > 0:
        npad = N10 + 2 * pad
        fld = gaussian_filter(rng.normal(size=(npad, npad)), plan["sigma"], mode="wrap")
        fld = (fld - fld.mean()) / fld.std()
        thr = np.quantile(fld[pad:-pad, pad:-pad], 1 - plan["cover"])
        core = fld > thr
        a_in = 0.5 + 0.5 * np.clip((fld - thr) / 0.6, 0, 1)
        dist = distance_transform_edt(~core) * 10.0
        a_out = np.where(dist <= 50, 0.45 * np.exp(-dist / 15.0), 0.0)
        alpha_p = np.where(core, a_in, a_out)
        alpha = alpha_p[pad:-pad, pad:-pad]
        sr, sc = plan["shift"]
        caster = fld > thr + 0.7       # the thicker parts of clouds cast detectable shadows
        shadow = caster[pad - sr:pad - sr + N10, pad - sc:pad - sc + N10].astype(float)
        shadow *= 1 - (alpha > 0.5)
        shadow_soft = gaussian_filter(shadow, 1.0)
        refl *= (1 - plan["shade"] * shadow_soft)[..., None]
        cl = plan["base"] * (1 + 0.06 * np.clip(fld[pad:-pad, pad:-pad] - thr, -2, 2))
        cloud = cl[..., None] * np.array([1.0, 0.98, 1.02, 0.8])
        refl = (1 - alpha[..., None]) * refl + alpha[..., None] * cloud

    noise = rng.normal(0, NOISE_SD, (N10, N10, 3))
    out = {}
    for b, name in enumerate(("B03", "B04", "B08")):
        out[name] = refl[..., b] + noise[..., b]
    out["B11"] = _block_mean(refl[..., 3]) + rng.normal(0, NOISE_SD, (N20, N20))
    dn = {name: np.clip(np.round(v * 10000) + 1000, 1, 65535).astype(np.uint16)
          for name, v in out.items()}

    # scene classification at 20 m
    red20, nir20 = _block_mean(refl[..., 1]), _block_mean(refl[..., 2])
    ndvi20 = (nir20 - red20) / np.maximum(nir20 + red20, 1e-6)
    scl = np.where(ndvi20 > 0.4, 4, 5).astype(np.uint8)
    scl[_block_mean(water) > 0.5] = 6
    u = rng.random((N20, N20))
    scl[(u < 0.003) | ((np.abs(ndvi20 - 0.39) < 0.03) & (u < 0.15))] = 7
    scl[_block_mean(shadow) > 0.5] = 3
    a20 = _block_mean(alpha)
    scl[a20 > 0.45] = 10
    scl[a20 > 0.6] = 8
    scl[a20 > 0.8] = 9
    if plan["wedge"] is not None:
        corner_, wa, wb = plan["wedge"]
        rr, cc = np.mgrid[0:N20, 0:N20].astype(float)
        if corner_ in (1, 2):
            cc = N20 - 1 - cc
        if corner_ in (2, 3):
            rr = N20 - 1 - rr
        nod = rr / wb + cc / wa < 1
        scl[nod] = 0
        nod10 = np.repeat(np.repeat(nod, 2, axis=0), 2, axis=1)
        for name, arr in dn.items():
            arr[nod if name == "B11" else nod10] = 0
    return dn, scl


def _write_tif(path: Path, arr: np.ndarray, res: float):
    import rasterio
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1,
               "dtype": arr.dtype.name, "crs": f"EPSG:{EPSG}",
               "transform": from_origin(X0, Y0, res, res), "nodata": 0, "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "predictor": 2,
               "zlevel": 9}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)


# --- vector outputs --------------------------------------------------------------------------

def _write_vectors(root: Path, land: _Landscape, rows_w, rows_m, truth):
    import geopandas as gpd
    import pandas as pd

    cols = ["parcel_id", "policy_id", "household_id", "crop", "declared_area_mu",
            "sum_insured_cny_per_mu", "farmer_name", "farmer_id_number"]
    for rows, name in ((rows_w, "parcels_wheat.geojson"), (rows_m, "parcels_maize.geojson")):
        gdf = gpd.GeoDataFrame(pd.DataFrame(rows)[cols + ["geometry"]], geometry="geometry",
                               crs=f"EPSG:{EPSG}").to_crs(4326)
        gdf["sum_insured_cny_per_mu"] = gdf["sum_insured_cny_per_mu"].astype("int64")
        gdf.to_file(root / name, driver="GeoJSON", engine="pyogrio")
    tcols = ["parcel_id", "season", "policy_id", "truth_class", "true_planted_fraction",
             "true_area_mu", "declared_area_mu", "expected_verdict", "hail_loss_rate",
             "flooded_fraction", "flood_loss_rate"]
    df = pd.DataFrame(truth)[tcols]
    df["_s"] = df["season"].map({"wheat": 0, "maize": 1})
    df = df.sort_values(["_s", "parcel_id"]).drop(columns="_s")
    df.to_csv(root / "truth.csv", index=False, encoding="utf-8", lineterminator="\n")

    ev = root / "events"
    ev.mkdir(exist_ok=True)
    for eid, typ, date, geom, crop in ((HAIL_ID, "hail", HAIL_DATE, land.hail_fp, "winter_wheat"),
                                       (FLOOD_ID, "flood", FLOOD_DATE, land.flood_fp,
                                        "summer_maize")):
        fp = gpd.GeoDataFrame({"event_id": [eid.replace("_", "-")]}, geometry=[geom],
                              crs=f"EPSG:{EPSG}").to_crs(4326)
        fp.to_file(ev / f"{eid}_footprint.geojson", driver="GeoJSON", engine="pyogrio")
        (ev / f"{eid}.toml").write_text(
            f'id = "{typ}-{date.isoformat()}"\n'
            f'type = "{typ}"\n'
            f'date = "{date.isoformat()}"\n'
            f'footprint = "{eid}_footprint.geojson"\n'
            f'crops = ["{crop}"]\n', encoding="utf-8")


# --- public API ------------------------------------------------------------------------------

def _generate_into(root: Path, seed: int, progress: ProgressFn | None = None,
                   only_dates: list[dt.date] | None = None) -> None:
    """Write the whole sample into ``root`` (which must not exist); ``only_dates`` limits imagery
    to a subset of acquisitions (each date's files are identical to a full run's)."""
    def report(stage, i, n):
        if progress is not None:
            progress(stage, i, n)

    root.mkdir(parents=True)
    report("landscape", 0, 4)
    land = _build_landscape(np.random.default_rng([seed, 0]))
    report("farms", 1, 4)
    fields, _book, rows_w, rows_m, truth = _build_farms(land, np.random.default_rng([seed, 4]))
    _write_vectors(root, land, rows_w, rows_m, truth)

    dates = acquisition_dates()
    days = np.array([_day(d) for d in dates], float)
    report("units", 2, 4)
    geoms, tables = _build_units(land, fields, days, np.random.default_rng([seed, 5]))
    report("rasterize", 3, 4)
    A = _area_matrix(geoms)
    plan = _date_plan(dates, np.random.default_rng([seed, 1]))
    from scipy.ndimage import gaussian_filter
    z = gaussian_filter(np.random.default_rng([seed, 3]).normal(size=(N10, N10)), 1.0)
    het = (1 + 0.05 * z / z.std()).ravel()

    todo = [k for k, d in enumerate(dates) if only_dates is None or d in set(only_dates)]
    img = root / "imagery"
    img.mkdir()

    def one(k):
        dn, scl = _render(k, tables[:, k, :], A, het, plan[k], seed)
        folder = img / dates[k].isoformat()
        folder.mkdir()
        for name in ("B03", "B04", "B08"):
            _write_tif(folder / f"{name}.tif", dn[name], 10.0)
        _write_tif(folder / "B11.tif", dn["B11"], 20.0)
        _write_tif(folder / "SCL.tif", scl, 20.0)
        if plan[k]["metadata"]:
            (folder / "metadata.json").write_text(
                json.dumps({"processing_baseline": "05.11", "boa_add_offset": -1000}) + "\n")

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for i, _ in enumerate(pool.map(one, todo)):
            report("imagery", i + 1, len(todo))


def generate_sample(out: Path | str, *, seed: int = SAMPLE_SEED,
                    progress: ProgressFn | None = None) -> SamplePaths:
    """Generate the synthetic sample into ``out`` (replacing it) and return its paths.

    Written into ``<out>.tmp-<pid>`` and renamed into place; ``VERSION`` (``"<version>:<seed>"``)
    is written last. The same seed gives byte-identical files.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / (out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _generate_into(tmp, seed, progress)
        (tmp / "VERSION").write_text(f"{SAMPLE_VERSION}:{seed}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SamplePaths.at(out)


def default_sample_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "sample_data" / "generated"


def ensure_sample(out: Path | str | None = None) -> SamplePaths:
    """The sample at ``out`` (default ``sample_data/generated``), generated only if missing or
    made by another version / seed."""
    out = Path(out) if out is not None else default_sample_dir()
    stamp = out / "VERSION"
    want = f"{SAMPLE_VERSION}:{SAMPLE_SEED}"
    if stamp.is_file() and stamp.read_text().strip() == want:
        return SamplePaths.at(out)
    return generate_sample(out, seed=SAMPLE_SEED)
