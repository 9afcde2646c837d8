"""The embedded synthetic sample: contract, realism and truth, checked against the files it writes.

The sample is generated once per session (``sample`` fixture in ``tests/conftest.py``). The checks
recompute facts from the files (geometry, rasters) instead of trusting the generator: the rendered
imagery must show what the truth files say (the generator's inputs), read here pixel by pixel with
rasterio, not through agri_3s's own readers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.features import rasterize
from scipy.ndimage import binary_dilation

from agri_3s import sample as S

M2_PER_MU = 10_000.0 / 15.0
UTM = "EPSG:32650"
COLUMNS = ["parcel_id", "policy_id", "household_id", "crop", "declared_area_mu",
           "sum_insured_cny_per_mu", "farmer_name", "farmer_id_number", "geometry"]
TRUTH_COLUMNS = ["parcel_id", "season", "policy_id", "truth_class", "true_planted_fraction",
                 "true_area_mu", "declared_area_mu", "expected_verdict", "hail_loss_rate",
                 "flooded_fraction", "flood_loss_rate", "soil_ndvi"]
VERDICT = {"planted": "green", "late_sown": "green", "half_planted": "yellow",
           "area_inflated": "yellow", "fallow": "red", "other_crop": "red", "cover_crop": "red",
           "mown_meadow": "red", "weedy_fallow": "red"}
OLD_CLASSES = ("fallow", "half_planted", "other_crop", "area_inflated")
NEW_CLASSES = ("cover_crop", "mown_meadow", "weedy_fallow", "late_sown")
# windows of the built-in calendar (agri_3s/data/crop_calendars.toml), North China Plain
SOWING = {"wheat": (dt.date(2024, 9, 25), dt.date(2024, 10, 25)),
          "maize": (dt.date(2025, 6, 5), dt.date(2025, 6, 30))}
PEAK = {"wheat": (dt.date(2025, 4, 10), dt.date(2025, 5, 20)),
        "maize": (dt.date(2025, 7, 25), dt.date(2025, 9, 5))}
SEASONS = {"wheat": (dt.date(2024, 10, 1), dt.date(2025, 6, 15)),
           "maize": (dt.date(2025, 6, 10), dt.date(2025, 10, 10))}


# --- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def truth(sample):
    return pd.read_csv(sample.truth, dtype={"parcel_id": str, "policy_id": str})


@pytest.fixture(scope="module")
def parcels(sample):
    return {s: gpd.read_file(getattr(sample, f"parcels_{s}")) for s in ("wheat", "maize")}


@pytest.fixture(scope="module")
def dates(sample):
    return sorted(dt.date.fromisoformat(p.name) for p in sample.imagery.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def unflagged(sample):
    return pd.read_csv(sample.unflagged_clouds, dtype={"parcel_id": str}, parse_dates=["date"])


@pytest.fixture(scope="module")
def snow(sample):
    return pd.read_csv(sample.snow, dtype={"parcel_id": str}, parse_dates=["date"])


def _refl(folder: Path, band: str) -> np.ndarray:
    with rasterio.open(folder / f"{band}.tif") as src:
        dn = src.read(1).astype(np.float64)
    out = (dn - 1000.0) / 10_000.0
    out[dn == 0] = np.nan
    return out


def _scl10(folder: Path) -> np.ndarray:
    with rasterio.open(folder / "SCL.tif") as src:
        scl = src.read(1)
    return np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)


def _clear10(folder: Path) -> np.ndarray:
    """Clear 10 m pixels: SCL 4/5/6, cloud classes (3, 8, 9, 10) dilated by 2 px at 20 m."""
    with rasterio.open(folder / "SCL.tif") as src:
        scl = src.read(1)
    bad = binary_dilation(np.isin(scl, (0, 3, 8, 9, 10)), iterations=2)
    ok = np.isin(scl, (4, 5, 6)) & ~bad
    return np.repeat(np.repeat(ok, 2, axis=0), 2, axis=1)


def _inner_mask(geom) -> np.ndarray:
    """10 m pixels whose centre is ≥ 10 m inside ``geom`` (EPSG:32650)."""
    from rasterio.transform import from_origin
    g = geom.buffer(-10.0)
    if g.is_empty:
        return np.zeros((S.N10, S.N10), bool)
    return rasterize([(g, 1)], out_shape=(S.N10, S.N10),
                     transform=from_origin(S.X0, S.Y0, 10.0, 10.0)).astype(bool)


def _ndvi(folder: Path) -> np.ndarray:
    red, nir = _refl(folder, "B04"), _refl(folder, "B08")
    return (nir - red) / (nir + red)


def _parcel_ndvi(sample, dates, geom, start, end, min_clear=0.8, skip=()):
    """Median clear-pixel NDVI of ``geom`` on the clearest date in [start, end], leaving out
    the dates in ``skip``."""
    mask = _inner_mask(geom)
    best = None
    for d in dates:
        if not start <= d <= end or d in skip:
            continue
        folder = sample.imagery / d.isoformat()
        clear = _clear10(folder) & mask
        frac = clear.sum() / max(mask.sum(), 1)
        if best is None or frac > best[0]:
            best = (frac, folder, clear)
    assert best is not None and best[0] >= min_clear, f"no clear date in {start}..{end}"
    return float(np.nanmedian(_ndvi(best[1])[best[2]]))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _id_check_ok(idn: str) -> bool:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(idn[:17], weights)) % 11] == idn[17]


# --- layout and vector contract --------------------------------------------------------------

def test_layout_and_version(sample):
    assert (sample.root / "VERSION").read_text().strip() == f"{S.SAMPLE_VERSION}:{S.SAMPLE_SEED}"
    for p in (sample.parcels_wheat, sample.parcels_maize, sample.truth, sample.hail_event,
              sample.flood_event, sample.hail_footprint, sample.flood_footprint,
              sample.unflagged_clouds, sample.snow):
        assert p.is_file(), p
    assert sample.hail_event.name == "hail_2025-05-14.toml"
    assert sample.flood_footprint.parent == sample.root / "events"
    leftovers = [p for p in sample.root.parent.iterdir() if ".tmp-" in p.name]
    assert not leftovers, "atomic write left a temporary folder behind"


def test_event_files(sample):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    hail = tomllib.loads(sample.hail_event.read_text())
    flood = tomllib.loads(sample.flood_event.read_text())
    assert hail == {"id": "hail-2025-05-14", "type": "hail", "date": "2025-05-14",
                    "footprint": "hail_2025-05-14_footprint.geojson", "crops": ["winter_wheat"]}
    assert flood == {"id": "flood-2025-07-22", "type": "flood", "date": "2025-07-22",
                     "footprint": "flood_2025-07-22_footprint.geojson", "crops": ["summer_maize"]}
    for ev, fp in ((sample.hail_event, hail), (sample.flood_event, flood)):
        g = gpd.read_file(ev.parent / fp["footprint"])
        assert g.crs.to_epsg() == 4326
        area = g.to_crs(UTM).area.sum()
        assert 0.3e6 < area < 10e6


@pytest.mark.parametrize("season", ["wheat", "maize"])
def test_parcels_contract(parcels, season):
    g = parcels[season]
    assert list(g.columns) == COLUMNS
    assert g.crs.to_epsg() == 4326
    assert len(g) >= 300
    assert g.parcel_id.is_unique
    assert g.parcel_id.str.fullmatch(r"371428-\d{4}").all()
    prefix = "PW2024" if season == "wheat" else "PM2025"
    assert g.policy_id.str.fullmatch(prefix + r"371428-\d{4}").all()
    assert set(g.crop) == {"winter_wheat" if season == "wheat" else "summer_maize"}
    assert set(g.sum_insured_cny_per_mu) <= ({450, 950} if season == "wheat" else {400, 800})
    # one policy per household and season
    assert (g.groupby("policy_id").household_id.nunique() == 1).all()
    assert (g.groupby("household_id").policy_id.nunique() == 1).all()
    assert g.farmer_id_number.str.fullmatch(r"371428\d{11}[\dX]").all()
    assert g.farmer_id_number.map(_id_check_ok).all()
    assert g.farmer_name.str.len().between(2, 3).all()
    assert g.farmer_name.str[0].isin(list("王李张刘陈杨赵黄周吴孙马朱胡郭")).all()
    area = g.to_crs(UTM).area / M2_PER_MU
    assert area.between(0.5, 30).all()
    assert g.declared_area_mu.between(0.5, 30).all()
    assert (g.declared_area_mu.round(1) == g.declared_area_mu).all()
    assert 3.0 <= area.median() <= 7.0          # many small strips
    assert (area < 2).sum() > 0.05 * len(g) and (area > 15).sum() > 0.01 * len(g)
    assert g.geometry.is_valid.all()
    # inside the 4 km scene
    b = g.to_crs(UTM).total_bounds
    assert b[0] >= S.X0 and b[2] <= S.X0 + 4000 and b[1] >= S.Y0 - 4000 and b[3] <= S.Y0


def test_book_coverage(parcels, truth):
    ids_w, ids_m = set(parcels["wheat"].parcel_id), set(parcels["maize"].parcel_id)
    land = ids_w | ids_m
    for ids in (ids_w, ids_m):
        assert 0.78 <= len(ids) / len(land) <= 0.92      # ~85 % insured per season
    for season, ids in (("wheat", ids_w), ("maize", ids_m)):
        assert set(truth[truth.season == season].parcel_id) == ids
    # same land parcel → same geometry in both seasons
    both = sorted(ids_w & ids_m)[:50]
    gw = parcels["wheat"].set_index("parcel_id").loc[both].geometry
    gm = parcels["maize"].set_index("parcel_id").loc[both].geometry
    assert all(a.equals(b) for a, b in zip(gw, gm))


def test_parcels_share_edges_and_do_not_overlap(parcels):
    g = pd.concat([parcels["wheat"], parcels["maize"]]).drop_duplicates("parcel_id")
    g = gpd.GeoDataFrame(g, crs=4326).to_crs(UTM).reset_index(drop=True)
    pairs = gpd.sjoin(g, g, predicate="intersects")
    pairs = pairs[pairs.index < pairs.index_right]
    left = g.geometry.loc[pairs.index].values
    right = g.geometry.loc[pairs.index_right.values].values
    shared = np.array([a.boundary.intersection(b.boundary).length for a, b in zip(left, right)])
    overlap = np.array([a.intersection(b).area for a, b in zip(left, right)])
    assert (shared > 20).sum() >= len(g) // 2, "neighbouring strips should share long edges"
    assert overlap.max() < 1.0
    # field edges are not pixel-aligned (the layout is rotated)
    rect = g.geometry.iloc[0].minimum_rotated_rectangle
    c = np.asarray(rect.exterior.coords)
    ang = np.degrees(np.arctan2(c[1, 1] - c[0, 1], c[1, 0] - c[0, 0])) % 90
    assert 3 < ang < 87


# --- truth -----------------------------------------------------------------------------------

def test_truth_table(truth, parcels):
    assert list(truth.columns) == TRUTH_COLUMNS
    assert set(truth.season) == {"wheat", "maize"}
    assert (truth.truth_class.map(VERDICT) == truth.expected_verdict).all()
    assert S.CLASS_VERDICT == VERDICT
    for season, grp in truth.groupby("season"):
        share = grp.truth_class.value_counts(normalize=True)
        assert 0.65 <= share["planted"] <= 0.80
        for cls in OLD_CLASSES:
            assert 0.025 <= share[cls] <= 0.05, (season, cls)
        for cls in NEW_CLASSES:
            if season == "maize" and cls == "cover_crop":
                assert cls not in share
                continue
            assert 0.03 <= share[cls] <= 0.05, (season, cls)
        g = parcels[season].set_index("parcel_id")
        declared = g.loc[grp.parcel_id, "declared_area_mu"].values
        assert (declared == grp.declared_area_mu.values).all()
        assert (g.loc[grp.parcel_id, "policy_id"].values == grp.policy_id.values).all()
        true_area = g.loc[grp.parcel_id].to_crs(UTM).area.values / M2_PER_MU
        assert np.allclose(true_area, grp.true_area_mu, atol=0.01)
    half = truth[truth.truth_class == "half_planted"]
    assert half.true_planted_fraction.between(0.4, 0.6).all()
    full = truth[truth.truth_class.isin(["planted", "area_inflated", "late_sown"])]
    assert (full.true_planted_fraction == 1).all()
    bare = truth.truth_class.isin(["fallow", "other_crop", "cover_crop", "mown_meadow",
                                   "weedy_fallow"])
    assert (truth[bare].true_planted_fraction == 0).all()
    ratio = truth.declared_area_mu / truth.true_area_mu
    infl = truth.truth_class == "area_inflated"
    assert ratio[infl].between(1.25, 1.65).all()
    assert (ratio[~infl] - 1).abs().lt(0.03 + 0.05 / truth.true_area_mu[~infl]).all()
    # cotton and meadows are the same land in both seasons
    both = (set(truth[truth.season == "wheat"].parcel_id)
            & set(truth[truth.season == "maize"].parcel_id))
    for cls in ("other_crop", "mown_meadow"):
        for pid in set(truth[truth.truth_class == cls].parcel_id) & both:
            assert (truth[truth.parcel_id == pid].truth_class == cls).all()
    w, m = truth[truth.season == "wheat"], truth[truth.season == "maize"]
    assert w.hail_loss_rate.notna().all() and m.hail_loss_rate.isna().all()
    assert m.flooded_fraction.notna().all() and w.flooded_fraction.isna().all()
    assert m.flood_loss_rate.notna().all() and w.flood_loss_rate.isna().all()
    # bare soil: one level per land parcel, spread from dark loam to bright soil
    assert truth.soil_ndvi.between(0.08, 0.25).all()
    assert truth.soil_ndvi.max() - truth.soil_ndvi.min() >= 0.12
    assert (truth.groupby("parcel_id").soil_ndvi.nunique() == 1).all()


def test_hail_truth_follows_footprint(sample, parcels, truth):
    fp = gpd.read_file(sample.hail_footprint).to_crs(UTM).union_all()
    w = truth[truth.season == "wheat"].set_index("parcel_id")
    g = parcels["wheat"].set_index("parcel_id").to_crs(UTM)
    inside = g.geometry.centroid.within(fp)
    loss = w.loc[g.index, "hail_loss_rate"]
    assert (loss[~inside] == 0).all()
    cropped = w.loc[g.index, "truth_class"].isin(["planted", "area_inflated", "half_planted",
                                                  "late_sown"])
    hit = loss[inside & cropped]
    assert len(hit) >= 30 and (hit > 0.1).all() and (hit < 0.95).all()
    assert (loss[inside & ~cropped] == 0).all()
    assert hit.max() > 0.7 and hit.min() < 0.35        # centre → edge gradient


def test_flood_truth_matches_geometry(sample, parcels, truth):
    fp = gpd.read_file(sample.flood_footprint).to_crs(UTM).union_all()
    m = truth[truth.season == "maize"].set_index("parcel_id")
    g = parcels["maize"].set_index("parcel_id").to_crs(UTM)
    frac = g.geometry.intersection(fp).area / g.geometry.area
    assert np.allclose(frac.values, m.loc[g.index, "flooded_fraction"].values, atol=1e-3)
    assert (frac > 0.05).sum() >= 20
    assert ((frac > 0.02) & (frac < 0.98)).sum() >= 5     # the footprint cuts parcels
    t = m.loc[g.index]
    assert (t.flood_loss_rate <= t.flooded_fraction + 1e-6).all()
    full = t.truth_class.isin(["planted", "area_inflated", "late_sown"])
    assert np.allclose(t.flood_loss_rate[full], t.flooded_fraction[full], atol=1e-3)
    no_maize = t.truth_class.isin(["fallow", "other_crop", "mown_meadow", "weedy_fallow"])
    assert (t.flood_loss_rate[no_maize] == 0).all()


# --- imagery contract ------------------------------------------------------------------------

def test_acquisition_dates(sample, dates):
    assert 90 <= len(dates) <= 115
    assert dates[0] == dt.date(2024, 9, 20) and dates[-1] <= dt.date(2025, 10, 20)
    gaps = np.diff([d.toordinal() for d in dates])
    assert set(gaps) <= {2, 3, 5} and (gaps < 5).sum() >= 20
    for start, end in SEASONS.values():
        assert sum(start <= d <= end for d in dates) >= 30
    missing = [d for d in dates if not (sample.imagery / d.isoformat() / "metadata.json").exists()]
    assert 3 <= len(missing) <= 0.2 * len(dates)
    d = next(d for d in dates if d not in missing)
    meta = json.loads((sample.imagery / d.isoformat() / "metadata.json").read_text())
    assert meta == {"processing_baseline": "05.11", "boa_add_offset": -1000}


def test_raster_format(sample, dates):
    for d in (dates[0], dates[len(dates) // 2], dates[-1]):
        folder = sample.imagery / d.isoformat()
        assert sorted(p.name for p in folder.glob("*.tif")) == \
            ["B03.tif", "B04.tif", "B08.tif", "B11.tif", "SCL.tif"]
        for band, size, dtype in (("B03", 400, "uint16"), ("B04", 400, "uint16"),
                                  ("B08", 400, "uint16"), ("B11", 200, "uint16"),
                                  ("SCL", 200, "uint8")):
            with rasterio.open(folder / f"{band}.tif") as src:
                assert (src.width, src.height, src.count) == (size, size, 1)
                assert src.dtypes[0] == dtype
                assert src.crs.to_epsg() == 32650
                assert src.nodata == 0
                assert src.profile["tiled"] and src.block_shapes == [(256, 256)]
                assert src.compression.name.lower() == "deflate"
                assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
                t = src.transform
                assert (t.c, t.f, t.a, t.e) == (S.X0, S.Y0, 4000 / size, -4000 / size)


def test_digital_numbers_carry_the_offset(sample, dates):
    for d in dates[::15]:
        folder = sample.imagery / d.isoformat()
        for band in ("B03", "B04", "B08", "B11"):
            with rasterio.open(folder / f"{band}.tif") as src:
                dn = src.read(1)
            valid = dn[dn > 0]
            assert valid.size > 0.8 * dn.size
            assert np.percentile(valid, 0.1) >= 1000 - 30    # offset present (noise aside)
            assert np.median(valid) < 1000 + 7000


def test_nodata_wedges(sample, dates):
    wedged = []
    for d in dates:
        folder = sample.imagery / d.isoformat()
        with rasterio.open(folder / "SCL.tif") as src:
            scl = src.read(1)
        if (scl == 0).any():
            wedged.append(d)
            b04 = rasterio.open(folder / "B04.tif").read(1)
            nod = np.repeat(np.repeat(scl == 0, 2, axis=0), 2, axis=1)
            assert (b04[nod] == 0).all() and (b04[~nod] > 0).all()
            # a wedge touches a scene corner
            assert scl[0, 0] == 0 or scl[0, -1] == 0 or scl[-1, 0] == 0 or scl[-1, -1] == 0
    assert 3 <= len(wedged) <= 4


def test_clouds_scl_and_haze(sample, dates):
    cloudy_dates, clear_dates, overcast = 0, 0, 0
    bright, dark, ring, far = [], [], [], []
    for d in dates:
        folder = sample.imagery / d.isoformat()
        with rasterio.open(folder / "SCL.tif") as src:
            scl = src.read(1)
        cloud = np.isin(scl, (8, 9, 10))
        frac = cloud[scl > 0].mean()
        clear_dates += frac == 0
        overcast += frac > 0.8
        if 0.05 < frac < 0.6 and cloudy_dates < 6:
            cloudy_dates += 1
            red20 = _refl(folder, "B04").reshape(200, 2, 200, 2).mean(axis=(1, 3))
            bright.append(np.median(red20[np.isin(scl, (8, 9))]))
            dark.append(np.median(red20[scl == 4]) if (scl == 4).any() else 0.0)
            # the SCL mask misses thin haze just beyond cloud edges
            grown1 = binary_dilation(cloud | (scl == 3), iterations=1)
            grown2 = binary_dilation(cloud | (scl == 3), iterations=8)
            edge = grown1 & ~(cloud | (scl == 3)) & np.isin(scl, (4, 5))
            away = ~grown2 & np.isin(scl, (4, 5))
            ring.append(np.median(red20[edge]))
            far.append(np.median(red20[away]))
    assert cloudy_dates >= 4
    assert min(bright) > 0.25 and max(dark) < 0.15
    assert np.mean(np.array(ring) - np.array(far)) > 0.01
    assert 0.15 * len(dates) <= clear_dates <= 0.45 * len(dates)
    assert 0.05 * len(dates) <= overcast <= 0.3 * len(dates)


def test_shadows_are_dark(sample, dates):
    checked = 0
    for d in dates:
        folder = sample.imagery / d.isoformat()
        scl = _scl10(folder)
        if (scl == 3).mean() > 0.01 and (scl == 4).mean() > 0.2:
            nir = _refl(folder, "B08")
            assert np.median(nir[scl == 3]) < 0.8 * np.median(nir[scl == 4])
            checked += 1
        if checked >= 3:
            break
    assert checked >= 1


# --- the science the tests rely on -----------------------------------------------------------

def _big(truth, parcels, season, cls, n, min_pixels=10):
    """Up to ``n`` parcels of ``cls`` with the most pixels fully inside them."""
    t = truth[(truth.season == season) & (truth.truth_class == cls)]
    g = parcels[season].set_index("parcel_id").to_crs(UTM).loc[t.parcel_id].geometry
    size = np.array([_inner_mask(geom).sum() for geom in g.values])
    order = np.argsort(-size, kind="stable")[:n]
    order = order[size[order] >= min_pixels]
    return t.iloc[order], g.values[order]


def test_wheat_vs_fallow_ndvi_in_early_may(sample, parcels, truth, dates):
    start, end = dt.date(2025, 5, 1), dt.date(2025, 5, 13)
    _, geoms = _big(truth, parcels, "wheat", "planted", 5, min_pixels=40)
    ndvi = [_parcel_ndvi(sample, dates, g, start, end) for g in geoms]
    assert min(ndvi) > 0.7, ndvi
    rows, geoms = _big(truth, parcels, "wheat", "fallow", 5)
    assert len(geoms) >= 3
    ndvi = np.array([_parcel_ndvi(sample, dates, g, start, end) for g in geoms])
    assert (ndvi - rows.soil_ndvi.values).max() < 0.12, ndvi
    # cotton (other crop) is bare in spring, green in mid-summer
    _, geoms = _big(truth, parcels, "wheat", "other_crop", 3)
    assert max(_parcel_ndvi(sample, dates, g, start, end) for g in geoms) < 0.35
    _, geoms = _big(truth, parcels, "maize", "other_crop", 3)
    assert min(_parcel_ndvi(sample, dates, g, dt.date(2025, 7, 5), dt.date(2025, 7, 18))
               for g in geoms) > 0.45


def test_hail_darkens_hit_wheat(sample, parcels, truth, dates):
    w = truth[(truth.season == "wheat") & (truth.truth_class == "planted")]
    g = parcels["wheat"].set_index("parcel_id").to_crs(UTM)
    size = {pid: _inner_mask(g.geometry[pid]).sum() for pid in w.parcel_id}
    w = w.assign(px=w.parcel_id.map(size)).sort_values("px", ascending=False)
    hit = w[(w.hail_loss_rate > 0.6) & (w.px >= 15)].head(5)
    safe = w[(w.hail_loss_rate == 0) & (w.px >= 15)].head(5)
    assert len(hit) >= 3 and len(safe) >= 3

    def drop(pid):
        pre = _parcel_ndvi(sample, dates, g.geometry[pid], dt.date(2025, 5, 1),
                           dt.date(2025, 5, 13))
        post = _parcel_ndvi(sample, dates, g.geometry[pid], dt.date(2025, 5, 15),
                            dt.date(2025, 5, 20))
        return pre - post

    hit_drop = [drop(p) for p in hit.parcel_id]
    safe_drop = [drop(p) for p in safe.parcel_id]
    assert max(np.abs(safe_drop)) < 0.1, safe_drop
    assert min(hit_drop) > max(safe_drop) + 0.15, (hit_drop, safe_drop)


def test_flood_shows_water(sample, dates):
    fp = gpd.read_file(sample.flood_footprint).to_crs(UTM).union_all()
    mask = _inner_mask(fp.buffer(-20))
    post = [d for d in dates if dt.date(2025, 7, 23) <= d <= dt.date(2025, 7, 30)]
    pre = [d for d in dates if dt.date(2025, 7, 10) <= d <= dt.date(2025, 7, 21)]
    assert post and pre

    def water_share(ds):
        best = None
        for d in ds:
            folder = sample.imagery / d.isoformat()
            ok = _clear10(folder) & mask
            if best is None or ok.sum() > best[1].sum():
                best = (folder, ok)
        folder, ok = best
        assert ok.sum() > 0.5 * mask.sum()
        return float((_ndvi(folder)[ok] < 0).mean()), float((_scl10(folder)[ok] == 6).mean())

    ndvi_post, scl_post = water_share(post)
    ndvi_pre, _ = water_share(pre)
    assert ndvi_post > 0.8 and scl_post > 0.6
    assert ndvi_pre < 0.2


# --- the hard cases real fields show ---------------------------------------------------------

@pytest.fixture(scope="module")
def inner(parcels):
    """Every land parcel's pixels ≥ 10 m inside it, as one label raster (1-based, sorted ids)."""
    from rasterio.transform import from_origin
    g = pd.concat([parcels["wheat"], parcels["maize"]]).drop_duplicates("parcel_id")
    g = gpd.GeoDataFrame(g, crs=4326).to_crs(UTM).sort_values("parcel_id")
    shapes = [(geom.buffer(-10.0), k + 1) for k, geom in enumerate(g.geometry)
              if not geom.buffer(-10.0).is_empty]
    labels = rasterize(shapes, out_shape=(S.N10, S.N10), fill=0, dtype="int32",
                       transform=from_origin(S.X0, S.Y0, 10.0, 10.0))
    return g.parcel_id.tolist(), labels.ravel()


@pytest.fixture(scope="module")
def series(sample, dates, inner, unflagged, snow):
    """Per land parcel and date, from the rasters: median NDVI of its clear inner pixels (NaN
    below 80 % clear), the share of inner pixels the SCL calls vegetation / bare land (4, 5) or
    snow (11), and the mean green reflectance. ``screened`` is the NDVI without the
    (date, parcel) pairs the truth lists under unflagged clouds or snow."""
    pids, lab = inner
    n, nt = len(pids), len(dates)
    size = np.bincount(lab, minlength=n + 1)[1:].astype(float)
    out = {k: np.full((n, nt), np.nan) for k in ("ndvi", "clear", "land", "snow", "green")}
    on = lab > 0

    def per_parcel(sel, weights=None):
        return np.bincount(lab[sel], None if weights is None else weights[sel],
                           minlength=n + 1)[1:]

    for t, d in enumerate(dates):
        folder = sample.imagery / d.isoformat()
        v = _ndvi(folder).ravel()
        scl = _scl10(folder).ravel()
        ok = _clear10(folder).ravel() & on & np.isfinite(v)
        out["clear"][:, t] = per_parcel(ok) / np.maximum(size, 1)
        out["land"][:, t] = per_parcel(on & np.isin(scl, (4, 5))) / np.maximum(size, 1)
        out["snow"][:, t] = per_parcel(on & (scl == 11)) / np.maximum(size, 1)
        green = _refl(folder, "B03").ravel()
        good = on & np.isfinite(green)
        out["green"][:, t] = per_parcel(good, green) / np.maximum(per_parcel(good), 1)
        med = pd.Series(v[ok]).groupby(lab[ok]).median()
        out["ndvi"][med.index.values - 1, t] = med.values
    out["ndvi"][out["clear"] < 0.8] = np.nan
    index = {p: i for i, p in enumerate(pids)}
    col = {d: t for t, d in enumerate(dates)}
    screened = out["ndvi"].copy()
    for df in (unflagged, snow):
        for d, pid in zip(df.date.dt.date, df.parcel_id):
            screened[index[pid], col[d]] = np.nan
    return dict(out, screened=screened, size=size, index=index, dates=np.array(dates))


def _rows(series, truth, season, cls, min_pixels=4):
    t = truth[(truth.season == season) & (truth.truth_class == cls)]
    idx = np.array([series["index"][p] for p in t.parcel_id])
    keep = series["size"][idx] >= min_pixels
    return t[keep], idx[keep]


def _window(series, idx, start, end, how="median", values="screened"):
    sel = (series["dates"] >= start) & (series["dates"] <= end)
    v = series[values][idx][:, sel]
    with warnings.catch_warnings():     # a parcel without a clear look in the window → NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return getattr(np, "nan" + how)(v, axis=1)


def test_soil_ndvi_is_what_bare_parcels_show(series, truth):
    """Fallow and cotton land is bare in winter: its NDVI is its own soil's, from dark loam
    (~0.25) to bright soil (~0.08), plus a little residue."""
    t = pd.concat([_rows(series, truth, "wheat", c, min_pixels=4)[0]
                   for c in ("fallow", "other_crop")])
    idx = np.array([series["index"][p] for p in t.parcel_id])
    seen = _window(series, idx, dt.date(2024, 12, 1), dt.date(2025, 2, 20))
    ok = np.isfinite(seen)
    assert ok.sum() >= 20
    soil = t.soil_ndvi.values[ok]
    excess = seen[ok] - soil
    assert np.quantile(excess, 0.05) > -0.03 and np.quantile(excess, 0.95) < 0.09, excess
    assert np.corrcoef(seen[ok], soil)[0, 1] > 0.9
    assert np.ptp(seen[ok]) > 0.1


def test_cover_crop_is_green_until_april_then_bare(series, truth):
    t, idx = _rows(series, truth, "wheat", "cover_crop")
    assert len(idx) >= 8 and (t.expected_verdict == "red").all()
    spring = _window(series, idx, dt.date(2025, 3, 20), dt.date(2025, 4, 24), how="max")
    may = _window(series, idx, dt.date(2025, 5, 12), dt.date(2025, 5, 31))
    assert np.nanmean(spring >= 0.6) >= 0.9, spring
    assert np.nanmean(may - t.soil_ndvi.values < 0.1) >= 0.9, may - t.soil_ndvi.values
    # green through the winter, unlike a bare seedbed
    winter = _window(series, idx, dt.date(2024, 12, 1), dt.date(2025, 2, 20))
    assert np.nanmean(winter - t.soil_ndvi.values > 0.15) >= 0.9


def test_meadows_are_mown_and_regrow(series, truth):
    t = truth[truth.truth_class == "mown_meadow"].drop_duplicates("parcel_id")
    idx = np.array([series["index"][p] for p in t.parcel_id])
    idx = idx[series["size"][idx] >= 4]
    assert len(idx) >= 8
    sel = (series["dates"] >= dt.date(2025, 5, 10)) & (series["dates"] <= dt.date(2025, 9, 30))
    days = np.array([d.toordinal() for d in series["dates"][sel]])
    v = series["screened"][idx][:, sel]
    mown = 0
    for row in v:   # a fall of ≥ 0.2 from the last 20 days' high, regained within 35 days
        for k in np.flatnonzero(np.isfinite(row)):
            before = row[(days >= days[k] - 20) & (days < days[k])]
            after = row[(days > days[k]) & (days <= days[k] + 35)]
            if (np.nanmax(before, initial=-1) - row[k] >= 0.2
                    and np.nanmax(after, initial=-1) - row[k] >= 0.2):
                mown += 1
                break
    assert mown >= 0.6 * len(idx), (mown, len(idx))
    # perennial: green through the wheat sowing window (no seedbed) and the winter
    sow = _window(series, idx, *SOWING["wheat"], how="min")
    assert np.nanmean(sow > 0.45) >= 0.9, sow


def test_weedy_fallow_is_neither_bare_nor_a_crop(series, truth):
    for season, (start, end) in (("wheat", (dt.date(2025, 5, 1), dt.date(2025, 6, 5))),
                                 ("maize", (dt.date(2025, 8, 1), dt.date(2025, 9, 10)))):
        t, idx = _rows(series, truth, season, "weedy_fallow")
        assert len(idx) >= 8
        v = _window(series, idx, start, end) - t.soil_ndvi.values
        assert np.nanmean((v > 0.1) & (v < 0.5)) >= 0.9, (season, v)
        _, crop = _rows(series, truth, season, "planted", min_pixels=40)
        peak = _window(series, crop, *PEAK[season], how="max")
        assert np.nanmedian(peak) > np.nanmax(v + t.soil_ndvi.values)


def test_late_sowing_shows_and_the_crop_comes(series, truth):
    t, idx = _rows(series, truth, "wheat", "late_sown")
    assert len(idx) >= 8 and (t.expected_verdict == "green").all()
    early = _window(series, idx, dt.date(2024, 11, 20), dt.date(2024, 12, 5)) - t.soil_ndvi.values
    tp, crop = _rows(series, truth, "wheat", "planted", min_pixels=20)
    normal = _window(series, crop, dt.date(2024, 11, 20), dt.date(2024, 12, 5)) - tp.soil_ndvi.values
    assert np.nanmean(early < 0.1) >= 0.9 and np.nanmedian(normal) > 0.15, (early, normal)
    peak = _window(series, idx, dt.date(2025, 4, 25), dt.date(2025, 5, 13), how="max")
    assert np.nanmean(peak > 0.65) >= 0.9, peak
    t, idx = _rows(series, truth, "maize", "late_sown")
    t, idx = t[t.flooded_fraction.values == 0], idx[t.flooded_fraction.values == 0]
    assert len(idx) >= 8
    # still small when the normal crop is well up (before the flood)
    july = _window(series, idx, dt.date(2025, 7, 13), dt.date(2025, 7, 21)) - t.soil_ndvi.values
    tp, crop = _rows(series, truth, "maize", "planted", min_pixels=20)
    normal = _window(series, crop, dt.date(2025, 7, 13), dt.date(2025, 7, 21)) - tp.soil_ndvi.values
    assert np.nanmean(july < 0.2) >= 0.9 and np.nanmedian(normal) > 0.3, (july, normal)
    peak = _window(series, idx, dt.date(2025, 8, 25), dt.date(2025, 9, 25), how="max")
    assert np.nanmean(peak > 0.65) >= 0.9, peak


def _around(series, t: int, key: str, days: int = 15) -> np.ndarray:
    """Per parcel, the mean of ``key`` on the nearest screened clear look before date ``t`` and
    the nearest after it, each within ``days``."""
    sides = []
    for order in (range(t - 1, -1, -1), range(t + 1, len(series["dates"]))):
        v = np.full(len(series["size"]), np.nan)
        for u in order:
            if abs((series["dates"][u] - series["dates"][t]).days) > days:
                break
            v = np.where(np.isnan(v) & np.isfinite(series["screened"][:, u]), series[key][:, u], v)
        sides.append(v)
    return (sides[0] + sides[1]) / 2


def test_unflagged_clouds_look_clear_to_scl_but_lower_ndvi(series, unflagged):
    days = sorted(set(unflagged.date.dt.date))
    assert 4 <= len(days) <= 6
    for season in ("wheat", "maize"):
        for lo, hi in (SOWING[season], PEAK[season]):
            assert any(lo <= d <= hi for d in days), (season, lo, hi)
    col = {d: t for t, d in enumerate(series["dates"])}
    clouds = unflagged[(unflagged.kind == "cloud") & (unflagged.share >= 0.8)]
    drops, greens, steady = [], [], []
    for d in days:
        t = col[d]
        ref, gref = _around(series, t, "ndvi"), _around(series, t, "green")
        here = unflagged[unflagged.date.dt.date == d]
        rows = clouds[clouds.date.dt.date == d]
        idx = np.array([series["index"][p] for p in rows.parcel_id], int)
        idx = idx[(series["size"][idx] >= 4) & (ref[idx] > 0.5)]
        # SCL calls them clear land: a standard mask keeps them
        assert (series["land"][idx, t] >= 0.85).all() and (series["clear"][idx, t] >= 0.8).all()
        drops += list(ref[idx] - series["ndvi"][idx, t])
        greens += list(series["green"][idx, t] - gref[idx])
        others = np.setdiff1d(np.arange(len(ref)), [series["index"][p] for p in here.parcel_id])
        others = others[(series["size"][others] >= 4) & np.isfinite(ref[others])]
        steady += list(np.abs(ref[others] - series["ndvi"][others, t]))
    drops, greens, steady = (np.array(x) for x in (drops, greens, steady))
    assert len(drops) >= 10
    assert np.mean(drops > 0.2) >= 0.9, np.sort(drops)
    assert np.mean(greens > 0.05) >= 0.9, np.sort(greens)     # clouds are bright in green
    assert np.nanmean(steady < 0.1) >= 0.9     # elsewhere only the season moves (harvests)


def test_snow_date_is_classified_as_snow(sample, series, snow, inner):
    heavy = snow.groupby(snow.date.dt.date).snow_share.sum().idxmax()
    assert heavy.month in (1, 2)
    assert len(set(snow.date.dt.date)) == 2               # and a date with patchy snow
    with rasterio.open(sample.imagery / heavy.isoformat() / "SCL.tif") as src:
        scl = src.read(1)
    assert (scl == 11).mean() > 0.5                       # a large part of the scene
    t = list(series["dates"]).index(heavy)
    rows = snow[(snow.date.dt.date == heavy) & (snow.snow_share >= 0.95)]
    idx = np.array([series["index"][p] for p in rows.parcel_id])
    idx = idx[series["size"][idx] >= 8]
    assert len(idx) >= 50
    assert np.mean(series["snow"][idx, t] >= 0.9) >= 0.9
    # NDVI of the snowy parcels' inner pixels, whatever their class
    _, lab = inner
    low = np.bincount(lab, (_ndvi(sample.imagery / heavy.isoformat()).ravel() <= 0.1),
                      minlength=len(series["size"]) + 1)[1:] / np.maximum(series["size"], 1)
    assert np.mean(low[idx] >= 0.9) >= 0.9
    free = np.setdiff1d(np.arange(len(series["size"])),
                        [series["index"][p] for p in snow[snow.date.dt.date == heavy].parcel_id])
    free = free[series["size"][free] >= 8]
    assert len(free) >= 10 and np.mean(series["snow"][free, t] <= 0.05) >= 0.95


def test_imagery_from_a_date(sample, dates):
    from agri_3s.errors import InputError
    from agri_3s.sources.local import scan_archive

    start = dt.date(2025, 1, 1)
    folder = sample.imagery_from(start)
    assert folder.parent == sample.root and folder.is_dir()
    names = sorted(p.name for p in folder.iterdir())
    assert names == [d.isoformat() for d in dates if d >= start]
    for name in names[:3]:
        assert (folder / name).is_symlink()
        assert (folder / name).resolve() == (sample.imagery / name).resolve()
    assert sample.imagery_from("2025-01-01") == folder         # made once
    assert not [p for p in sample.root.iterdir() if ".tmp-" in p.name]
    assert len(scan_archive(folder)) == len(names)
    with pytest.raises(InputError):
        sample.imagery_from("2025-13-01")
    with pytest.raises(InputError):
        sample.imagery_from(dates[-1] + dt.timedelta(days=1))


# --- determinism and regeneration ------------------------------------------------------------

def test_same_seed_gives_identical_files(sample, dates, tmp_path):
    subset = [dates[3], dt.date(2025, 7, 27) if dt.date(2025, 7, 27) in dates else dates[-1]]
    again = tmp_path / "again"
    S._generate_into(again, S.SAMPLE_SEED, only_dates=subset)
    files = ["parcels_wheat.geojson", "parcels_maize.geojson", "truth.csv",
             "events/hail_2025-05-14.toml", "events/hail_2025-05-14_footprint.geojson",
             "events/flood_2025-07-22.toml", "events/flood_2025-07-22_footprint.geojson"]
    for d in subset:
        for p in sorted((sample.imagery / d.isoformat()).iterdir()):
            files.append(f"imagery/{d.isoformat()}/{p.name}")
    files += ["unflagged_clouds.csv", "snow.csv"]
    assert len(files) > 15
    for f in files:
        assert _sha(sample.root / f) == _sha(again / f), f
    # a different seed changes the landscape
    other = tmp_path / "other"
    S._generate_into(other, S.SAMPLE_SEED + 1, only_dates=[])
    assert _sha(other / "truth.csv") != _sha(sample.root / "truth.csv")


def test_ensure_sample_regenerates_only_when_stale(tmp_path, monkeypatch):
    calls = []

    def fake(out, *, seed=S.SAMPLE_SEED, progress=None):
        calls.append((Path(out), seed))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "VERSION").write_text(f"{S.SAMPLE_VERSION}:{seed}")
        return S.SamplePaths.at(out)

    monkeypatch.setattr(S, "generate_sample", fake)
    out = tmp_path / "s"
    S.ensure_sample(out)
    assert len(calls) == 1
    S.ensure_sample(out)
    assert len(calls) == 1                       # up to date → untouched
    (out / "VERSION").write_text("0:1")
    paths = S.ensure_sample(out)
    assert len(calls) == 2 and paths.root == out
    assert re.fullmatch(r".*/sample_data/generated", S.default_sample_dir().as_posix())
