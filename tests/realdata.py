"""Real labelled data from ../shared/data as parcel series for the decision layer (tests only).

Each loader returns ``(parcels, series, truth)``: a GeoDataFrame of parcels with the columns the
jobs use (``parcel_id``, ``crop`` = the *declared* crop, ``declared_area_mu``, ``area_mu``,
``validity``), a parcel-series Dataset in the engine's contract, and a truth table
(``parcel_id``, ``crop`` = the crop found in the field, ``declared_crop``,
``declaration_true``). Declarations are built from the labels: true ones, plus false ones
(other land declared as the insured crop) chosen with a fixed seed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import xarray as xr
from rasterio.transform import from_bounds
from scipy.stats import norm

from agri_3s.sources.local import LocalSource
from agri_3s.testing.builders import write_band
from agri_3s.timeseries.zonal import parcel_series, pixel_weights
from agri_3s.units import m2_to_mu

DATA = Path(__file__).resolve().parent / "data"
KENYA_CALENDAR = DATA / "kenya_calendar.toml"
#: The long rains season of 2019 in Western Kenya (planting Mar–May, harvest Jul–Sep).
KENYA_SEASON = "2019-02-01/2019-09-30"


def kenya_fields(shared: Path) -> tuple[gpd.GeoDataFrame, xr.Dataset]:
    """The 319 WorldCrops / PlantVillage fields and their Sentinel Hub FIS per-field L2A
    statistics as a parcel series (no pixels: quantiles and the vegetated share are derived
    from each field's mean and standard deviation under a normal approximation, clipped to the
    field's min / max; the FIS cloud mask's cloudy share gives the clear fraction)."""
    root = shared / "worldcrops-kenya-2019"
    fields = gpd.read_file(root / "fields.geojson")
    stats = pd.read_csv(root / "l2a_stats.csv.gz", parse_dates=["date"])
    ids = fields["field_id"].to_numpy()
    times = np.sort(stats["date"].unique())
    row = pd.Index(ids).get_indexer(stats["field_id"])
    col = pd.Index(times).get_indexer(stats["date"])

    def grid(column: str) -> np.ndarray:
        out = np.full((len(ids), len(times)), np.nan, np.float32)
        out[row, col] = stats[column].to_numpy(np.float32)
        return out

    mean, sd = grid("ndvi_mean"), np.maximum(grid("ndvi_stdev"), 1e-6)
    lo, hi = grid("ndvi_min"), grid("ndvi_max")
    clear = 1.0 - grid("cloud_mean")
    pixels = (fields["area_m2"].to_numpy() / 100.0).astype(np.float32)
    data = {f"ndvi_p{q}": np.clip(mean + norm.ppf(q / 100) * sd, lo, hi)
            for q in (25, 50, 75)}
    data.update(ndvi_mean=mean, clear_fraction=clear, n_pixels=clear * pixels[:, None],
                vegetated_fraction=(1.0 - norm.cdf((0.4 - mean) / sd)).astype(np.float32),
                water_fraction=np.full_like(mean, np.nan),
                blue_mean=grid("B02_mean"), green_mean=grid("B03_mean"))
    series = xr.Dataset(
        {k: (("parcel", "time"), v.astype(np.float32)) for k, v in data.items()},
        coords={"parcel_id": ("parcel", ids), "time": times,
                "full_pixels": ("parcel", np.floor(pixels).astype(np.int64)),
                "weight_sum": ("parcel", pixels),
                "pixel_rule": ("parcel", np.full(len(ids), "fis_mean")),
                "small_parcel": ("parcel", pixels < 4)},
        attrs={"pixel_rule": "Sentinel Hub FIS per-field statistics (pixel centres inside)"})
    fields = fields.rename(columns={"field_id": "parcel_id"})
    fields["area_mu"] = m2_to_mu(fields["area_m2"])
    fields["declared_area_mu"] = fields["area_mu"].round(2)
    fields["validity"] = "ok"
    return fields, series


def kenya_batch(shared: Path, *, false_share: float = 0.5, seed: int = 2019
                ) -> tuple[gpd.GeoDataFrame, xr.Dataset, pd.DataFrame]:
    """Kenya as an insurer's batch: every field declared with its surveyed main crop, except a
    ``false_share`` of the non-maize fields (fallow, cassava, millet, …), chosen at random with
    ``seed``, declared as maize. ``false_share=1`` declares every non-maize field as maize."""
    fields, series = kenya_fields(shared)
    rng = np.random.default_rng(seed)
    found = fields["crop"].to_numpy()
    false = (found != "maize") & (rng.random(len(fields)) < false_share)
    declared = np.where(false, "maize", found)
    parcels = fields.assign(crop=declared)
    truth = pd.DataFrame({"parcel_id": fields["parcel_id"], "crop": found,
                          "declared_crop": declared, "declaration_true": declared == found})
    return parcels, series, truth


# --------------------------------------------------------------------------------------------
# Europe: the WorldCereal Flanders 2018 chip and the eo-learn Slovenia chip, run through the
# engine (LocalSource → pixel_weights → parcel_series, default pixel rule and cloud dilation)
# --------------------------------------------------------------------------------------------

FLANDERS_CHIP = Path("worldcereal-flanders-2018") / "2018_00002806639B424A"
FLANDERS_CALENDAR = DATA / "flanders_calendar.toml"
#: The calendars' region in FLANDERS_CALENDAR (pass it: winter wheat also has a built-in one).
FLANDERS_REGION = "flanders"
#: The insured seasons of the Flanders batches (one job per season, as an insurer runs them).
FLANDERS_MAIZE_SEASON = "2018-04-01/2018-10-31"
FLANDERS_WHEAT_SEASON = "2017-10-01/2018-08-31"
FLANDERS_SEASONS = {"maize": FLANDERS_MAIZE_SEASON, "winter_wheat": FLANDERS_WHEAT_SEASON}
#: A season spanning both, for ``flanders_batch(crop=None)`` run as one job.
FLANDERS_BOTH_SEASONS = "2017-10-01/2018-10-31"
#: WorldCereal crop-type codes (CT band) present on the 2018 chip → the crop found there.
FLANDERS_CT = {1200: "maize", 9120: "grassland", 7900: "legumes", 2130: "cabbage",
               5100: "potato"}
#: Crops declared as themselves (true, no calendar: the crop model's other classes).
FLANDERS_OWN_CROPS = ("legumes", "cabbage", "potato")
FLANDERS_BANDS = ("B03", "B04", "B08", "SCL")

SLOVENIA_CHIP = Path("eolearn-slovenia")
SLOVENIA_MAIZE_SEASON = "2016-04-01/2016-10-31"
SLOVENIA_WHEAT_SEASON = "2016-10-01/2017-08-31"
SLOVENIA_SEASONS = {"maize": SLOVENIA_MAIZE_SEASON, "winter_wheat": SLOVENIA_WHEAT_SEASON}
#: RABA land-use codes kept (1100 arable, 11 px on the chip, is left out) → land found there.
SLOVENIA_RABA = {1300: "permanent_meadow", 1410: "overgrowing", 1500: "trees_shrubs",
                 1600: "uncultivated", 2000: "forest", 3000: "built_up"}
#: The rebuilt red DN of every Slovenian pixel: NIR = RED (1 + v) / (1 − v) carries the NDVI v.
SLOVENIA_RED_DN = 2000
#: Largest |NDVI from the rebuilt DNs − the chip's NDVI| over all pixels and dates (measured in
#: float32 as the engine computes it: 1.53e-4, from rounding B08 to whole DNs where v is low).
SLOVENIA_NDVI_MAX_ERROR = 1.7e-4


def _done(folder: Path) -> bool:
    return (folder / ".complete").exists()


def _write_archive(folder: Path, stacks: dict[str, tuple[np.ndarray, object]], crs: str,
                   stamps: list[str]) -> Path:
    """A local archive (DESIGN.md): ``folder/<stamp>/<BAND>.tif`` for every date of ``stamps``;
    ``stacks`` maps band → ((date, y, x) array, transform). Written once: a marker file says
    the archive is complete (a half-written one from an interrupted run is rewritten)."""
    if not _done(folder):
        for i, stamp in enumerate(stamps):
            for band, (stack, transform) in stacks.items():
                write_band(folder / stamp / f"{band}.tif", stack[i], transform, crs)
        (folder / ".complete").write_text("")
    return folder


def engine_series(parcels: gpd.GeoDataFrame, archive: Path) -> xr.Dataset:
    """The parcel series a user gets from ``archive`` (every date in it): LocalSource, then
    :func:`~agri_3s.timeseries.zonal.pixel_weights` and
    :func:`~agri_3s.timeseries.zonal.parcel_series` with their defaults (whole pixels first,
    5 m inward buffer, 2-pixel cloud dilation)."""
    cube = LocalSource(archive).load(tuple(parcels.total_bounds), parcels.crs,
                                     dt.date(1900, 1, 1), dt.date(2100, 1, 1))
    return parcel_series(cube, pixel_weights(parcels, cube.odc.geobox))


def _cached_series(parcels: gpd.GeoDataFrame, archive: Path, name: str) -> xr.Dataset:
    """:func:`engine_series`, kept beside the archive (parcel ids and geometry hashed into the
    file name, so a changed parcel set is recomputed)."""
    key = hashlib.sha256(parcels["parcel_id"].astype(str).str.cat().encode()
                         + b"".join(shapely.to_wkb(parcels.geometry.values))).hexdigest()[:16]
    path = archive.parent / f"{name}-{archive.name}-{key}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    series = engine_series(parcels, archive)
    path.write_bytes(pickle.dumps(series))
    return series


def _check_crop(crop: str | None, seasons: dict) -> None:
    if crop is not None and crop not in seasons:
        raise ValueError(f"crop={crop!r}; use one of {', '.join(seasons)} or None (all)")


def _batch(parcels: gpd.GeoDataFrame, series: xr.Dataset, truth: pd.DataFrame,
           keep: np.ndarray) -> tuple[gpd.GeoDataFrame, xr.Dataset, pd.DataFrame]:
    """Rows ``keep`` (boolean) of the three, in the same order (series by parcel_id)."""
    p = parcels[keep].reset_index(drop=True)
    t = truth[keep].reset_index(drop=True)
    s = series.isel(parcel=pd.Index(series["parcel_id"].values).get_indexer(p["parcel_id"]))
    return p, s, t


def flanders_archive(shared: Path, workdir: Path, *, imagery_from: str | None = None) -> Path:
    """The Flanders 2018 chip laid out as a local archive under ``workdir`` (B03, B04, B08 at
    10 m, SCL at 20 m, one folder per UTC time stamp; no metadata.json: the 2017–18 dates
    predate processing baseline 04.00, so no offset is inferred). ``imagery_from``
    ("YYYY-MM-DD") keeps only the acquisitions from that day on, in a folder of its own.

    Examples
    --------
    >>> archive = flanders_archive(shared, tmp_path)   # doctest: +SKIP
    >>> underwrite(parcels, f"local:{archive}", FLANDERS_MAIZE_SEASON, out=out,
    ...            calendar=FLANDERS_CALENDAR)          # doctest: +SKIP
    """
    src = shared / FLANDERS_CHIP
    folder = workdir / ("imagery" if imagery_from is None else f"imagery_from_{imagery_from}")
    if _done(folder):
        return folder
    stacks, crs, stamps = {}, None, None
    for band in FLANDERS_BANDS:
        with rasterio.open(src / f"s2_l2a_{band}_{'20m' if band == 'SCL' else '10m'}.tif") as ds:
            stacks[band] = (ds.read(), ds.transform)
            crs, stamps = ds.crs.to_string(), list(ds.descriptions)
    keep = [i for i, s in enumerate(stamps)
            if imagery_from is None or s[:10] >= pd.Timestamp(imagery_from).strftime("%Y-%m-%d")]
    stacks = {b: (stack[keep], tr) for b, (stack, tr) in stacks.items()}
    return _write_archive(folder, stacks, crs, [stamps[i] for i in keep])


def flanders_blocks(shared: Path, *, block_px: int = 8) -> gpd.GeoDataFrame:
    """Field-sized parcels cut from the chip's crop-class regions: a grid of ``block_px`` ×
    ``block_px`` pixel cells (8 px = 80 m, 0.64 ha) on the chip's pixel grid, intersected with
    each CT region of :data:`FLANDERS_CT`, every connected piece a candidate parcel (EPSG:32631;
    columns ``parcel_id`` ``fl-<crop>-<nnn>``, ``found_crop``, ``label_code`` (CT)). Pieces
    follow pixel edges, so each is a set of whole pixels of one class."""
    regions = gpd.read_file(shared / FLANDERS_CHIP / "label_regions_from_CT_raster.gpkg")
    regions = regions[regions["CT"].isin(list(FLANDERS_CT))]
    left, bottom, right, top = 501360.0, 5629040.0, 502000.0, 5629680.0  # PROVENANCE.md
    step = 10.0 * block_px
    xs, ys = np.arange(left, right, step), np.arange(top, bottom, -step)
    x0, y1 = np.meshgrid(xs, ys)
    cells = gpd.GeoDataFrame(
        {"cell": np.arange(x0.size)},
        geometry=shapely.box(x0.ravel(), (y1 - step).ravel(), (x0 + step).ravel(), y1.ravel()),
        crs=regions.crs)
    pieces = gpd.overlay(regions[["CT", "geometry"]], cells, how="intersection",
                         keep_geom_type=True).explode(index_parts=False)
    pieces = pieces.sort_values(["CT", "cell"], kind="stable").reset_index(drop=True)
    pieces["found_crop"] = pieces["CT"].map(FLANDERS_CT)
    pieces["parcel_id"] = [f"fl-{c}-{i:03d}" for c, i in zip(
        pieces["found_crop"], pieces.groupby("CT").cumcount())]
    pieces = pieces.rename(columns={"CT": "label_code"})
    return gpd.GeoDataFrame(pieces[["parcel_id", "found_crop", "label_code", "geometry"]],
                            crs=regions.crs)


def flanders_lpis_parcel(shared: Path) -> gpd.GeoDataFrame:
    """The chip's one real LPIS parcel (maize, 2.52 ha) in EPSG:32631, like
    :func:`flanders_blocks`; id ``lpis-00002806639B424A``. It overlaps maize blocks (same
    field): a batch measures both, as an insurer could be handed both."""
    lpis = gpd.read_file(shared / FLANDERS_CHIP / "lpis_sample_parcel_epsg4326.geojson")
    lpis = lpis.to_crs(32631)
    return gpd.GeoDataFrame({"parcel_id": "lpis-" + lpis["sampleID"], "found_crop": "maize",
                             "label_code": lpis["CT"].astype(int)},
                            geometry=lpis.geometry.values, crs=lpis.crs)


def flanders_declarations(found: pd.Series, *, wheat_share: float = 1 / 3,
                          grass_maize_share: float = 0.5, other_maize_share: float = 0.5,
                          seed: int = 2018) -> np.ndarray:
    """One declared crop per parcel from the crops found (``found``, in parcel order), split
    deterministically: in each group, the parcels are put in a random order drawn with
    ``seed`` (groups drawn in this order) and the first ``round(n × share)`` take the first
    declaration below, the rest the second.

    * maize → ``winter_wheat`` (false) for a ``wheat_share``, ``maize`` (true) for the rest;
    * grassland → ``maize`` (false) for a ``grass_maize_share``, ``winter_wheat`` (false);
    * legumes, cabbage and potato pooled (one or a few blocks each) → ``maize`` (false) for an
      ``other_maize_share``, else their own code (true).

    >>> found = pd.Series(["maize"] * 6 + ["grassland"] * 4 + ["potato"] * 2)
    >>> declared = flanders_declarations(found)
    >>> [int((declared[found == c] == "maize").sum()) for c in ("maize", "grassland", "potato")]
    [4, 2, 1]
    """
    found = np.asarray(found, dtype=object)
    declared = found.copy()
    rng = np.random.default_rng(seed)
    groups = ((found == "maize", wheat_share, "winter_wheat", "maize"),
              (found == "grassland", grass_maize_share, "maize", "winter_wheat"),
              (np.isin(found, FLANDERS_OWN_CROPS), other_maize_share, "maize", None))
    for members, share, first, rest in groups:
        idx = np.flatnonzero(members)
        order = idx[rng.permutation(len(idx))]
        n_first = int(np.floor(len(idx) * share + 0.5))
        declared[order[:n_first]] = first
        if rest is not None:
            declared[order[n_first:]] = rest
    return declared


def flanders_batch(shared: Path, workdir: Path, crop: str | None = "maize", *,
                   imagery_from: str | None = None, block_px: int = 8, min_full_pixels: int = 12,
                   seed: int = 2018, **shares: float
                   ) -> tuple[gpd.GeoDataFrame, xr.Dataset, pd.DataFrame]:
    """The Flanders 2018 chip as an insurer's batch of one insured crop (``crop`` = ``maize`` or
    ``winter_wheat``; None: every declaration, both crops, for one job over
    :data:`FLANDERS_BOTH_SEASONS`).

    Parcels: :func:`flanders_blocks` pieces with at least ``min_full_pixels`` whole pixels (the
    engine's ``full_pixels``), plus the real LPIS maize parcel. Each parcel has one declaration
    (:func:`flanders_declarations`, ``seed`` and ``shares`` passed on): the batch of ``crop``
    holds the parcels declared as it plus the true legumes / cabbage / potato declarations (in
    both batches). The LPIS parcel is declared maize. With the defaults (8 px blocks, seed
    2018) the 56 blocks split as: maize 30 → 20 ``maize`` (true; + the LPIS parcel) and 10
    ``winter_wheat``; grassland 20 → 10 ``maize``, 10 ``winter_wheat``; legumes 4, cabbage 1,
    potato 1 → 3 ``maize`` (2 legumes, the cabbage) and 3 own codes (2 legumes, the potato).
    So the maize batch has 37 parcels (21 true maize, 13 false, 3 true others), the wheat
    batch 23 (20 false, 3 true others). Run the maize batch with
    :data:`FLANDERS_MAIZE_SEASON`, the wheat batch with :data:`FLANDERS_WHEAT_SEASON`, both with
    :data:`FLANDERS_CALENDAR` and region :data:`FLANDERS_REGION`. The chip has no winter
    wheat: every wheat declaration is false.

    ``series`` covers every date of the archive (2017-08-04 → 2018-11-27, 118 dates; from
    ``imagery_from`` on if given: insurers who buy the calendar year 2018 see no wheat sowing).

    Examples
    --------
    >>> parcels, series, truth = flanders_batch(shared, tmp_path, "winter_wheat",
    ...                                         imagery_from="2018-01-01")  # doctest: +SKIP
    """
    _check_crop(crop, FLANDERS_SEASONS)
    archive = flanders_archive(shared, workdir, imagery_from=imagery_from)
    candidates = pd.concat([flanders_blocks(shared, block_px=block_px),
                            flanders_lpis_parcel(shared)], ignore_index=True)
    candidates = gpd.GeoDataFrame(candidates, crs=32631)
    series = _cached_series(candidates, archive, f"flanders{block_px}")
    lpis = candidates["parcel_id"].str.startswith("lpis-").to_numpy()
    keep = (series["full_pixels"].values >= min_full_pixels) | lpis
    parcels, lpis = candidates[keep].reset_index(drop=True), lpis[keep]
    declared = np.empty(len(parcels), dtype=object)
    declared[~lpis] = flanders_declarations(parcels.loc[~lpis, "found_crop"], seed=seed, **shares)
    declared[lpis] = "maize"
    found = parcels["found_crop"].to_numpy()
    truth = pd.DataFrame({"parcel_id": parcels["parcel_id"], "crop": found,
                          "declared_crop": declared, "declaration_true": declared == found,
                          "label_code": parcels["label_code"]})
    parcels = _parcel_table(parcels.drop(columns=["found_crop", "label_code"]), declared)
    keep = (np.ones(len(parcels), bool) if crop is None
            else (declared == crop) | np.isin(declared, FLANDERS_OWN_CROPS))
    return _batch(parcels, series, truth, keep)


def _parcel_table(parcels: gpd.GeoDataFrame, declared: np.ndarray) -> gpd.GeoDataFrame:
    """The jobs' parcel columns: declared crop, measured and declared area (mu), validity."""
    area = m2_to_mu(parcels.geometry.area.to_numpy())
    return parcels.assign(crop=declared, declared_area_mu=np.round(area, 2), area_mu=area,
                          validity="ok")[["parcel_id", "crop", "declared_area_mu", "area_mu",
                                          "validity", "geometry"]]


def slovenia_grid(shared: Path):
    """The Slovenia chip's pixel grid: ``(transform, crs, (height, width))`` from its bbox and
    100 × 101 pixels (9.9948 × 9.9974 m, not exactly 10 m; PROVENANCE.md)."""
    bbox = gpd.read_file(shared / SLOVENIA_CHIP / "bbox_epsg32633.geojson")
    left, bottom, right, top = bbox.total_bounds
    return from_bounds(left, bottom, right, top, 100, 101), "EPSG:32633", (101, 100)


def slovenia_archive(shared: Path, workdir: Path) -> Path:
    """The Slovenia chip's real NDVI series (L1C, Sentinel Hub; 2015-07 → 2017-12) as a local
    archive the engine reads. There are no band DNs, so they are rebuilt from the NDVI v:
    B04 = :data:`SLOVENIA_RED_DN`, B08 = round(B04 (1 + v) / (1 − v)), which gives v back
    within :data:`SLOVENIA_NDVI_MAX_ERROR`; SCL = 9 where the chip's cloud mask CLM is 1, else
    4 (vegetation) or 5 (not vegetated) where v < 0.4. Every band on the chip's own grid
    (:func:`slovenia_grid`; SCL too: at 9.995 m a 20 m SCL grid would not fit 101 rows). Of
    the two 2015-12-08 acquisitions only the first is kept: LocalSource would merge the two
    into one solar day, the first's pixels winning."""
    src = shared / SLOVENIA_CHIP
    folder = workdir / "imagery"
    if _done(folder):
        return folder
    stamps = json.loads((src / "timestamps.json").read_text())
    with rasterio.open(src / "ndvi_68dates.tif") as ds:
        v = ds.read().astype(np.float64)
    with rasterio.open(src / "clm_68dates.tif") as ds:
        clm = ds.read()
    first = ~pd.Series([s[:10] for s in stamps]).duplicated().to_numpy()
    v, clm, stamps = v[first], clm[first], [s for s, k in zip(stamps, first) if k]
    red = np.full(v.shape, SLOVENIA_RED_DN, np.uint16)
    nir = np.round(SLOVENIA_RED_DN * (1 + v) / (1 - v)).astype(np.uint16)
    scl = np.where(clm == 1, 9, np.where(v < 0.4, 5, 4)).astype(np.uint8)
    transform, crs, _ = slovenia_grid(shared)
    return _write_archive(folder, {"B04": (red, transform), "B08": (nir, transform),
                                   "SCL": (scl, transform)}, crs, stamps)


def slovenia_batch(shared: Path, workdir: Path, crop: str | None = "maize", *,
                   min_full_pixels: int = 4) -> tuple[gpd.GeoDataFrame, xr.Dataset, pd.DataFrame]:
    """The Slovenia chip's real land-use polygons (RABA register, :data:`SLOVENIA_RABA`:
    meadows, overgrowing land, trees and shrubs, uncultivated land, forest, built-up) declared
    as ``crop``: ``maize`` for :data:`SLOVENIA_MAIZE_SEASON`, ``winter_wheat`` for
    :data:`SLOVENIA_WHEAT_SEASON` (None: both, each polygon twice with ids ``…-maize`` /
    ``…-winter_wheat``). All declarations are false: no crop grows there.

    Polygons are clipped to the chip (the imagery covers nothing beyond it); those with fewer
    than ``min_full_pixels`` whole pixels (engine's ``full_pixels``) are left out. Ids are
    ``si-<RABA_ID>-<feature number>``; ``series`` covers every kept date (67).

    Examples
    --------
    >>> parcels, series, truth = slovenia_batch(shared, tmp_path, "maize")  # doctest: +SKIP
    """
    _check_crop(crop, SLOVENIA_SEASONS)
    archive = slovenia_archive(shared, workdir)
    raba = gpd.read_file(shared / SLOVENIA_CHIP / "lulc_raba_polygons.gpkg")
    transform, _, (h, w) = slovenia_grid(shared)
    chip = shapely.box(transform.c, transform.f + h * transform.e, transform.c + w * transform.a,
                       transform.f)
    raba = raba.assign(parcel_id=[f"si-{r}-{i:02d}" for i, r in enumerate(raba["RABA_ID"])],
                       geometry=raba.geometry.intersection(chip))
    raba = raba[raba["RABA_ID"].isin(list(SLOVENIA_RABA)) & ~raba.geometry.is_empty]
    raba = raba.reset_index(drop=True)
    series = _cached_series(raba[["parcel_id", "geometry"]], archive, "slovenia")
    keep = series["full_pixels"].values >= min_full_pixels
    raba, series = raba[keep].reset_index(drop=True), series.isel(parcel=keep)
    crops = list(SLOVENIA_SEASONS) if crop is None else [crop]
    parts = []
    for c in crops:
        ids = raba["parcel_id"] + (f"-{c}" if crop is None else "")
        parts.append((raba.assign(parcel_id=ids), series.assign_coords(
            parcel_id=("parcel", ids.to_numpy())), np.full(len(raba), c, dtype=object)))
    parcels = pd.concat([p for p, _, _ in parts], ignore_index=True)
    declared = np.concatenate([d for _, _, d in parts])
    found = parcels["RABA_ID"].map(SLOVENIA_RABA).to_numpy()
    truth = pd.DataFrame({"parcel_id": parcels["parcel_id"], "crop": found,
                          "declared_crop": declared, "declaration_true": declared == found,
                          "label_code": parcels["RABA_ID"].to_numpy()})
    parcels = _parcel_table(gpd.GeoDataFrame(parcels[["parcel_id", "geometry"]], crs=raba.crs),
                            declared)
    series = xr.concat([s for _, s, _ in parts], dim="parcel")
    return parcels, series, truth


def inject_canopy_loss(series: xr.Dataset, soil: np.ndarray, loss: np.ndarray,
                       day: dt.date) -> xr.Dataset:
    """A real series with a known bare-soil level and a known loss (the truth of a loss test).

    Each parcel's series is rescaled so that its bare looks — the median of its three lowest
    clear looks (clear fraction ≥ 0.6) — sit at ``soil`` (``b + (NDVI − m)(1 − b)/(1 − m)``),
    then from ``day`` on it keeps ``1 − loss`` of its canopy above that soil:
    ``NDVI' = s + (1 − L)(NDVI − s)``. ``soil`` and ``loss`` are per parcel (loss 0: healthy).
    """
    clear = series["clear_fraction"].values >= 0.6
    ndvi = series["ndvi_mean"].values.astype(np.float64)
    looks = np.sort(np.where(clear, ndvi, np.inf), axis=1)
    bare = np.median(looks[:, :3], axis=1)
    scaled = soil[:, None] + (ndvi - bare[:, None]) * ((1 - soil) / (1 - bare))[:, None]
    after = series["time"].values >= np.datetime64(day)
    damaged = np.where(after[None, :], soil[:, None] + (1 - loss[:, None])
                       * (scaled - soil[:, None]), scaled)
    return series.assign(ndvi_mean=(("parcel", "time"), damaged.astype(np.float32)))
