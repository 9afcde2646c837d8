"""The insured book: land parcels, households, policies, each season's truth class, and the
agronomy (phenology dates, soil) of every strip."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from ..units import M2_PER_MU
from .landscape import Landscape
from .scene import COUNTY, SOIL_NDVI_RANGE, d

SURNAMES = "王李张刘陈杨赵黄周吴孙马朱胡郭"
GIVEN = "建国华明志军红英秀兰强伟芳丽敏静海涛平刚玉桂凤春云福德成文岩金荣庆玲霞立新振"

#: The verdict a correct underwriting gives each truth class.
CLASS_VERDICT = {"planted": "green", "late_sown": "green", "half_planted": "yellow",
                 "area_inflated": "yellow", "fallow": "red", "other_crop": "red",
                 "cover_crop": "red", "mown_meadow": "red", "weedy_fallow": "red"}
#: What grows on a parcel of each class (the cover-history code of ``covers.field_veg``).
GROWTH = {"planted": "planted", "area_inflated": "planted", "late_sown": "late",
          "half_planted": "half", "fallow": "fallow", "weedy_fallow": "weedy",
          "other_crop": "cotton", "mown_meadow": "meadow", "cover_crop": "cover"}
OLD_SHARE = 0.035   # fallow, half_planted, other_crop, area_inflated (per season)
NEW_SHARE = 0.04    # cover_crop (wheat), mown_meadow, weedy_fallow, late_sown (per season)


@dataclass
class Field:
    """Per-strip agronomy: what grows in each season, and its phenology."""

    wheat: str = "planted"      # a GROWTH code
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
    dv = e1 if np.linalg.norm(e1) >= np.linalg.norm(e2) else e2
    dv = dv / np.linalg.norm(dv)
    nvec = np.array([-dv[1], dv[0]])
    pts = np.asarray(poly.exterior.coords)
    proj = pts @ nvec
    lo, hi = proj.min(), proj.max()
    c = pts.mean(axis=0)
    big = 1e4

    def half(o):
        base = c + (o - c @ nvec) * nvec
        return Polygon([base - big * dv, base + big * dv, base + big * dv - big * nvec,
                        base - big * dv - big * nvec])

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


def _phenology(rng: np.random.Generator) -> dict:
    """Dates and levels of every cover history one strip might follow (drawn for all strips,
    in a fixed order, so a strip's draws do not depend on its class)."""
    sh = rng.uniform(-5, 5)
    hw = d(2025, 6, 5) + rng.uniform(0, 7)
    hm = d(2025, 9, 25) + rng.uniform(0, 10)
    p = {
        "sh": sh, "c0": rng.uniform(0.3, 0.5), "h0": d(2024, 9, 22) + rng.uniform(0, 8),
        "sw": d(2024, 10, 5) + rng.uniform(0, 10), "hw": hw,
        "sm": max(d(2025, 6, 10) + rng.uniform(0, 10), hw + 2), "hm": hm,
        "sw2": max(d(2025, 10, 5) + rng.uniform(0, 10), hm + 3),
        "kw": rng.uniform(0.9, 1.1), "pw": rng.uniform(0.86, 0.92),
        "pm": rng.uniform(0.86, 0.92),
        "pc": rng.uniform(0.8, 0.88), "hc0": d(2024, 10, 12) + rng.uniform(0, 6),
        "sc": d(2025, 4, 20) + rng.uniform(0, 10), "hc": d(2025, 10, 12) + rng.uniform(0, 6),
        "flood_days": rng.uniform(8, 10),
        # bare-soil NDVI of the parcel and a brightness factor (all bands)
        "soil_ndvi": rng.uniform(*SOIL_NDVI_RANGE), "soil_b": rng.uniform(0.9, 1.1),
        # late sowing: wheat early–mid November, maize early–mid July
        "swl": d(2024, 11, 1) + rng.uniform(0, 14), "hwl": hw + rng.uniform(3, 6),
        "sml": d(2025, 7, 2) + rng.uniform(0, 13), "hml": d(2025, 10, 12) + rng.uniform(0, 8),
        # winter cover crop: sown early October, ploughed in late April – early May
        "ccs": d(2024, 10, 1) + rng.uniform(0, 8), "ccw": rng.uniform(0.42, 0.52),
        "ccp": rng.uniform(0.78, 0.86), "ccd": d(2025, 4, 25) + rng.uniform(0, 12),
        # weedy fallow: peak weed cover in spring (wheat season) and summer (maize season)
        "wpw": rng.uniform(0.3, 0.55), "wpm": rng.uniform(0.3, 0.55),
        # meadow: peak cover, first cut late May – early June, a second cut in 60 % of them
        "mp": rng.uniform(0.88, 0.95), "cut1": d(2025, 5, 20) + rng.uniform(0, 20),
    }
    p["cut2"] = p["cut1"] + rng.uniform(45, 70) if rng.random() < 0.6 else np.nan
    for k in ("1", "2"):
        p["cutr" + k] = rng.uniform(0.22, 0.32)   # stubble cover right after mowing
        p["cutd" + k] = rng.uniform(1, 3)         # days from standing grass to stubble
        p["cutg" + k] = rng.uniform(14, 28)       # days to regrow
    return p


def build_farms(land: Landscape, rng: np.random.Generator):
    """Choose the insured book, households, policies, season classes and truth.

    Returns ``(fields, book, rows_w, rows_m, truth)``: a ``Field`` per strip, the strip index of
    each insured land parcel (in parcel-id order), the two seasons' parcel rows and the truth
    rows.
    """
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

    fields = [Field(params=_phenology(rng)) for _ in range(n)]
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
    # the same land in both seasons: cotton, and meadows
    other = rng.choice(nb, int(np.rint(OLD_SHARE * nb)), replace=False)
    for s in ("wheat", "maize"):
        classes[s][other] = "other_crop"
    meadow = rng.choice(np.flatnonzero(classes["wheat"] == "planted"),
                        int(np.rint(NEW_SHARE * nb)), replace=False)
    for s in ("wheat", "maize"):
        classes[s][meadow] = "mown_meadow"
    for s, ins in (("wheat", ins_w), ("maize", ins_m)):
        cl = classes[s]
        k_old, k_new = int(np.rint(OLD_SHARE * ins.sum())), int(np.rint(NEW_SHARE * ins.sum()))
        draws = [("fallow", k_old, True), ("half_planted", k_old, barea >= 4.0),
                 ("area_inflated", k_old, barea <= 18.0), ("weedy_fallow", k_new, True),
                 ("late_sown", k_new, True)]
        if s == "wheat":
            draws.append(("cover_crop", k_new, True))
        for cls, k, cond in draws:
            pool = np.flatnonzero(ins & (cl == "planted") & cond)
            cl[rng.choice(pool, k, replace=False)] = cls
    for j, i in enumerate(book):
        f = fields[i]
        f.wheat = GROWTH[classes["wheat"][j]]
        f.maize = GROWTH[classes["maize"][j]]
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
        if in_hail[i] and fields[i].wheat in ("planted", "half", "late"):
            rel = min(1.0, d_line[i] / land.hail_halfwidth)
            fields[i].hail_loss = float(np.clip(0.85 - 0.65 * rel + rng.normal(0, 0.03),
                                                0.05, 0.95))

    # households, policies: runs of 1–4 parcels; a third of the households farm neighbouring
    # strips (consecutive in the book), the others strips scattered over the village's land
    sizes = []
    while sum(sizes) < nb:
        sizes.append(int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.22, 0.13])))
    sizes[-1] -= sum(sizes) - nb
    hh_of = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    scattered = np.repeat(rng.random(len(sizes)) >= 0.35, sizes)
    hh_of[scattered] = rng.permutation(hh_of[scattered])
    hh = len(sizes)
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
            if cls in ("planted", "area_inflated", "late_sown"):
                frac, planted_geom = 1.0, st.geom
            elif cls == "half_planted":
                frac, planted_geom = f.planted_side.area / st.geom.area, f.planted_side
            else:
                frac, planted_geom = 0.0, None
            row = {"parcel_id": pid, "season": season, "truth_class": cls,
                   "true_planted_fraction": round(frac, 4), "true_area_mu": round(true_mu, 3),
                   "declared_area_mu": declared, "expected_verdict": CLASS_VERDICT[cls],
                   "hail_loss_rate": np.nan, "flooded_fraction": np.nan,
                   "flood_loss_rate": np.nan, "soil_ndvi": round(f.params["soil_ndvi"], 4)}
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
