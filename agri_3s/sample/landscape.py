"""The landscape: roads, blocks, furlongs and strip parcels, the village, orchards, greenhouses,
the river with its low-lying flood zone, and the hail swath (all in EPSG:32650)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..units import M2_PER_MU
from .scene import CX, CY, SIZE_M, X0, Y0


@dataclass
class Strip:
    """One strip of land (a parcel whether insured or not)."""

    geom: object            # shapely Polygon, EPSG:32650
    block: int
    furlong: int
    index: int
    kind: str               # "small" | "big" | "edge"
    river_cut: bool = False


@dataclass
class Landscape:
    """Everything on the ground that does not change with the season."""

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


def build_landscape(rng: np.random.Generator) -> Landscape:
    """Draw the landscape from ``rng`` (the generator's stream 0).

    A slightly rotated, jittered road grid makes blocks; blocks are cut into furlongs and
    furlongs into strips (irregular quadrilaterals sharing their cut lines exactly). One block
    holds the village, one an orchard and a greenhouse cluster, four are consolidated large farms.
    """
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
                    strips.append(Strip(poly, bid, k, q, kind))

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

    return Landscape(theta=math.degrees(theta), strips=strips, blocks=blocks, village=village,
                      orchards=orchards, greenhouses=greenhouses, roads=roads, river=river,
                      flood_fp=flood_fp, hail_line=hail_line, hail_fp=hail_fp,
                      hail_halfwidth=halfw, scene=scene)

