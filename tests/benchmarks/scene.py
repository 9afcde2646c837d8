"""A deterministic benchmark scene: a Sentinel-2-like local archive whose true parcel NDVI is known.

The landscape is fields everywhere: a grid of 200 m × 110 m cells separated by 6 m roads, each
cell a block of strips (north–south or, in a quarter of the cells, east–west; half the blocks
split in two along the strips) with slightly slanted shared edges, so fields are quadrilaterals
that share edges and never align with the pixel grid. Strip widths are 16–24 m (≈ 2 pixels;
45 %), 25–45 m (35 %) or 45–90 m (20 %), so many parcels are strips two pixels wide and many
are under 0.2 ha. About 540,000 fields fill the default 4000 × 4000 px scene; the insured
parcels of a run are ``n`` of them drawn at random (:func:`scene_parcels`), so their
neighbours are other crops.

Each field has one crop (winter wheat, summer maize, vegetables, fallow) and per date one NIR
reflectance and one NDVI (crop curve + field offset + date noise), hence one red reflectance.
The 10 m pixels are rendered from 2 m sub-pixels (25 samples per pixel: the reflectance of a
pixel is the mean of its sub-pixels' reflectances, which is how mixed pixels form), plus
sensor noise (σ = 0.004 reflectance). So the TRUE NDVI of a parcel on a date is its field's
NDVI, known exactly (:func:`truth_ndvi`). Dates are 8 days apart from 2024-03-01 (processing
baseline ≥ 04.00: DN = reflectance × 10000 + 1000); every other date is cloud-free, the others
have 8–50 % cloud (SCL 8/9, bright in B04/B08), cloud shadow (SCL 3, dark) and clear land (4).

Layout on disk (cached; a date is generated only if its folder is missing)::

    /tmp/agri3s_bench/scene-s0-4000px/archive/2024-03-01/B04.tif B08.tif SCL.tif
                                     truth/2024-03-01.npy   (true NDVI of every field, float32)

B04/B08: 10 m uint16, SCL: 20 m uint8, all tiled 512 × 512, DEFLATE (predictor 2), nodata 0,
EPSG:32650. Generation takes ~4–6 s per date on 2 cores plus ~40 s of sub-pixel rendering.

Example
-------
>>> scene = ensure_scene(20)                          # doctest: +SKIP
>>> parcels = scene_parcels(scene, 50_000)            # doctest: +SKIP
>>> truth = truth_ndvi(scene, parcels)                # (50000, 20) float32   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from scipy import ndimage

CRS = "EPSG:32650"
RES = 10.0
X0, Y0 = 600_000.0, 4_000_000.0  # top-left corner of the scene (UTM 50N, North China Plain)
CELL_W, CELL_H, ROAD = 200.0, 110.0, 6.0
CELL_OFFSET = (3.7, 4.3)  # cells start off the pixel grid
SUB = 5  # 2 m sub-pixels per 10 m pixel (per axis)
FIRST_DATE, DATE_STEP = dt.date(2024, 3, 1), 8
CLOUD_COVER = (0.0, 0.25, 0.0, 0.08, 0.0, 0.5, 0.0, 0.15)  # by date index mod 8
CROPS = ("winter_wheat", "summer_maize", "vegetables", "fallow")
NOISE = 0.004
ROAD_RED, ROAD_NIR = 0.14, 0.19
WIDTHS = ((0.45, 16.0, 24.0), (0.35, 25.0, 45.0), (0.20, 45.0, 90.0))  # share, min, max (m)
MIN_WIDTH, MAX_SLANT = 16.0, 3.0
VERSION = 1


def default_root() -> Path:
    return Path(os.environ.get("AGRI3S_BENCH_DIR", "/tmp/agri3s_bench"))


def scene_dates(n_dates: int) -> list[dt.date]:
    return [FIRST_DATE + dt.timedelta(days=DATE_STEP * i) for i in range(n_dates)]


def cloud_cover(i: int) -> float:
    """Cloud cover of date index ``i`` (0 = cloud-free)."""
    return CLOUD_COVER[i % len(CLOUD_COVER)]


@dataclass(frozen=True)
class Layout:
    """The field layout of a scene (depends on ``size_px`` and ``seed`` only)."""

    size_px: int
    seed: int

    @property
    def geobox_transform(self) -> Affine:
        return Affine(RES, 0, X0, 0, -RES, Y0)

    @cached_property
    def _cells(self) -> dict:
        rng = np.random.default_rng([self.seed, 1])
        extent = self.size_px * RES
        ncx = int((extent - CELL_OFFSET[0]) // CELL_W)
        ncy = int((extent - CELL_OFFSET[1]) // CELL_H)
        n_cells = ncx * ncy
        horizontal = rng.random(n_cells) < 0.25  # strips run east–west
        split = rng.random(n_cells) < 0.5  # block cut in two halves along the strips
        span_s = np.where(horizontal, CELL_H - ROAD, CELL_W - ROAD)  # across the strips
        span_t = np.where(horizontal, CELL_W - ROAD, CELL_H - ROAD)  # along the strips
        k_max = int((CELL_W - ROAD) // MIN_WIDTH) + 1
        # widths from the mixture, for each (cell, half); boundaries at their running sums
        share = np.array([w[0] for w in WIDTHS])
        kind = rng.choice(len(WIDTHS), p=share, size=(n_cells, 2, k_max))
        lo = np.array([w[1] for w in WIDTHS])[kind]
        hi = np.array([w[2] for w in WIDTHS])[kind]
        widths = lo + rng.random(lo.shape) * (hi - lo)
        a = np.cumsum(widths, axis=2)
        # a boundary must leave ≥ MIN_WIDTH to the far edge (a short leftover joins the strip)
        a[a > span_s[:, None, None] - MIN_WIDTH] = np.inf
        slant = rng.uniform(-MAX_SLANT, MAX_SLANT, a.shape) / span_t[:, None, None]
        slant[~np.isfinite(a)] = 0.0
        n_halves = np.where(split, 2, 1)
        n_strips = np.isfinite(a).sum(axis=2) + 1
        n_strips[:, 1] *= n_halves - 1  # unsplit cells have one half
        offset = np.concatenate([[0], np.cumsum(n_strips.ravel())])[:-1].reshape(n_cells, 2)
        return {"ncx": ncx, "ncy": ncy, "horizontal": horizontal, "split": split,
                "span_s": span_s, "span_t": span_t, "a": a, "slant": slant,
                "n_strips": n_strips, "offset": offset, "n_fields": int(n_strips.sum())}

    @property
    def n_fields(self) -> int:
        return self._cells["n_fields"]

    @cached_property
    def fields(self) -> gpd.GeoDataFrame:
        """Every field: ``field``, ``crop``, ``area_ha``, ``width_m`` and its quadrilateral."""
        c = self._cells
        cell = np.repeat(np.arange(len(c["split"])).repeat(2), c["n_strips"].ravel())
        half = np.repeat(np.tile([0, 1], len(c["split"])), c["n_strips"].ravel())
        k = np.arange(self.n_fields) - c["offset"][cell, half]
        s_span, t_span = c["span_s"][cell], c["span_t"][cell]
        a = np.concatenate([np.zeros((*c["a"].shape[:2], 1)), c["a"]], axis=2)
        b = np.concatenate([np.zeros((*c["a"].shape[:2], 1)), c["slant"]], axis=2)
        a_l, b_l = a[cell, half, k], b[cell, half, k]
        last = k == c["n_strips"][cell, half] - 1
        a_r = np.where(last, s_span, a[cell, half, np.minimum(k + 1, a.shape[2] - 1)])
        b_r = np.where(last, 0.0, b[cell, half, np.minimum(k + 1, a.shape[2] - 1)])
        split = c["split"][cell]
        t0 = np.where(split & (half == 1), t_span / 2, 0.0)
        t1 = np.where(split & (half == 0), t_span / 2, t_span)
        s = np.stack([a_l + b_l * t0, a_r + b_r * t0, a_r + b_r * t1, a_l + b_l * t1], axis=1)
        t = np.stack([t0, t0, t1, t1], axis=1)
        hor = c["horizontal"][cell][:, None]
        u, v = np.where(hor, t, s), np.where(hor, s, t)  # u east, v south, in the cell
        ci, cj = cell % c["ncx"], cell // c["ncx"]
        x = X0 + CELL_OFFSET[0] + ci[:, None] * CELL_W + u
        y = Y0 - CELL_OFFSET[1] - cj[:, None] * CELL_H - v
        geoms = shapely.polygons(np.stack([x, y], axis=-1))
        geoms = shapely.orient_polygons(geoms)
        width = np.minimum(np.minimum(s[:, 1] - s[:, 0], s[:, 2] - s[:, 3]), t1 - t0)
        rng = np.random.default_rng([self.seed, 2])
        crop = rng.choice(len(CROPS), p=[0.35, 0.35, 0.15, 0.15], size=self.n_fields)
        return gpd.GeoDataFrame({"field": np.arange(self.n_fields), "crop_code": crop,
                                 "area_ha": shapely.area(geoms) / 1e4, "width_m": width},
                                geometry=geoms, crs=CRS)

    def labels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Field index at points (x, y); ``n_fields`` on roads and outside the cells."""
        c = self._cells
        ut = x - X0 - CELL_OFFSET[0]
        vt = Y0 - CELL_OFFSET[1] - y
        ci = np.floor(ut / CELL_W).astype(np.int64)
        cj = np.floor(vt / CELL_H).astype(np.int64)
        inside = (ci >= 0) & (ci < c["ncx"]) & (cj >= 0) & (cj < c["ncy"])
        cell = np.where(inside, cj * c["ncx"] + ci, 0)
        u, v = ut - ci * CELL_W, vt - cj * CELL_H
        inside &= (u < CELL_W - ROAD) & (v < CELL_H - ROAD)
        hor = c["horizontal"][cell]
        s, t = np.where(hor, v, u), np.where(hor, u, v)
        half = (c["split"][cell] & (t >= c["span_t"][cell] / 2)).astype(np.int64)
        k = np.zeros(x.shape, np.int64)
        for j in range(c["a"].shape[2]):
            k += s >= c["a"][cell, half, j] + c["slant"][cell, half, j] * t
        return np.where(inside, c["offset"][cell, half] + k, self.n_fields)


def _local_labels(layout: Layout, cells: np.ndarray) -> np.ndarray:
    """Field labels of the 2 m sub-pixels of whole cells: ``(len(cells), rows, cols)``.

    The cell size is a multiple of the sub-pixel size, so every cell holds the same local grid
    of sub-pixel centres; a field index is then a count of the strip boundaries left of (or
    above) the centre, found with one ``searchsorted`` per local row (or column).
    """
    c = layout._cells
    us, vs = _local_centres()
    n, k_max = len(cells), c["a"].shape[2]
    out = np.empty((n, len(vs), len(us)), np.int64)
    base = np.arange(n)[:, None] * 1000.0  # keeps each cell's boundaries apart in one sort
    hor = c["horizontal"][cells]
    for along, across, is_h in ((vs, us, False), (us, vs, True)):
        # along = local coordinate along the strips (t), across = across them (s)
        sel = np.flatnonzero(hor == is_h)
        if len(sel) == 0:
            continue
        cs = cells[sel]
        for i, t in enumerate(along):
            half = (c["split"][cs] & (t >= c["span_t"][cs] / 2)).astype(np.int64)
            pos = c["a"][cs, half] + c["slant"][cs, half] * t
            pos = np.where(np.isfinite(pos), pos, 999.0) + base[:len(cs)]
            q = (across[None, :] + base[:len(cs)]).ravel()
            k = np.searchsorted(pos.ravel(), q, side="right").reshape(len(cs), -1)
            k -= np.arange(len(cs))[:, None] * k_max
            lab = c["offset"][cs, half][:, None] + k
            if is_h:
                out[sel, :, i] = lab
            else:
                out[sel, i, :] = lab
    road = (vs[:, None] >= CELL_H - ROAD) | (us[None, :] >= CELL_W - ROAD)
    out[:, road] = layout.n_fields
    return out


def _local_centres() -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centres inside a cell (east, south of its corner); the same in every cell."""
    step = RES / SUB
    if (CELL_W / step) % 1 or (CELL_H / step) % 1:
        raise ValueError("cell sizes must be multiples of the sub-pixel size")
    u0 = (step / 2 - CELL_OFFSET[0]) % step
    v0 = (step / 2 - CELL_OFFSET[1]) % step
    return np.arange(u0, CELL_W, step), np.arange(v0, CELL_H, step)


def _label_rows(layout: Layout, j0: int, j1: int) -> np.ndarray:
    """Field labels of sub-pixel rows ``j0:j1`` over the whole scene width."""
    c = layout._cells
    step = RES / SUB
    us, vs = _local_centres()
    n_sub = layout.size_px * SUB
    i_first = round(float((CELL_OFFSET[0] + us[0] - step / 2) / step))  # first cell column
    j_first = round(float((CELL_OFFSET[1] + vs[0] - step / 2) / step))
    out = np.full((j1 - j0, n_sub), layout.n_fields, np.int64)
    cj0 = max((j0 - j_first) // len(vs), 0)
    cj1 = min((j1 - 1 - j_first) // len(vs) + 1, c["ncy"])
    if cj1 <= cj0:
        return out
    cells = (np.arange(cj0, cj1)[:, None] * c["ncx"] + np.arange(c["ncx"])[None, :]).ravel()
    lab = _local_labels(layout, cells).reshape(cj1 - cj0, c["ncx"], len(vs), len(us))
    img = lab.transpose(0, 2, 1, 3).reshape((cj1 - cj0) * len(vs), c["ncx"] * len(us))
    top = j_first + cj0 * len(vs)
    a, b = max(j0, top), min(j1, top + img.shape[0])
    w = min(img.shape[1], n_sub - i_first)
    out[a - j0:b - j0, i_first:i_first + w] = img[a - top:b - top, :w]
    return out


def _composition(layout: Layout, rows_px: int = 200) -> tuple[np.ndarray, ...]:
    """For every 10 m pixel: which fields its 25 sub-pixels fall in and how many of them.

    Returns ``(pixel, field, count)`` (a pixel appears once per distinct field).
    """
    n = layout.size_px
    pix, lab, cnt = [], [], []
    for r0 in range(0, n, rows_px):
        h = min(rows_px, n - r0)
        lbl = _label_rows(layout, r0 * SUB, (r0 + h) * SUB)
        lbl = lbl.reshape(h, SUB, n, SUB).transpose(0, 2, 1, 3).reshape(h * n, SUB * SUB)
        lbl.sort(axis=1)
        new = np.ones(lbl.shape, bool)
        new[:, 1:] = lbl[:, 1:] != lbl[:, :-1]
        row, col = np.nonzero(new)
        ends = np.append(col[1:], SUB * SUB)
        ends[np.append(row[1:] != row[:-1], True)] = SUB * SUB
        pix.append((r0 * n + row).astype(np.int64))
        lab.append(lbl[row, col])
        cnt.append((ends - col).astype(np.float32))
    return np.concatenate(pix), np.concatenate(lab), np.concatenate(cnt)


def _field_values(layout: Layout, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(NDVI, NIR) of every field on date index ``i`` (deterministic in seed and ``i``)."""
    fields = layout.fields
    rng0 = np.random.default_rng([layout.seed, 3])
    offset = rng0.normal(0, 0.06, layout.n_fields)
    phase = rng0.uniform(0, 2 * np.pi, layout.n_fields)
    d = DATE_STEP * i  # days since 1 March

    def ramp(x, a, b):
        return np.clip((x - a) / (b - a), 0, 1)

    curves = np.array([
        0.25 + 0.55 * ramp(d, -20, 40) - 0.6 * ramp(d, 85, 105) + 0.15 * ramp(d, 220, 260),
        0.18 + 0.62 * ramp(d, 110, 160) - 0.5 * ramp(d, 200, 230),
        0.0, 0.16])
    crop = fields["crop_code"].to_numpy()
    ndvi = curves[crop] + offset
    ndvi = np.where(crop == 2, 0.45 + 0.25 * np.sin(phase + d / 30), ndvi)
    rng = np.random.default_rng([layout.seed, 4, i])
    ndvi = np.clip(ndvi + rng.normal(0, 0.03, layout.n_fields), 0.05, 0.9)
    nir = rng.uniform(0.22, 0.45, layout.n_fields)
    return ndvi, nir


def _clouds(size20: int, cover: float, rng) -> np.ndarray:
    """SCL at 20 m: 4 clear, 9/8 cloud (core/edge), 3 shadow; smooth blobs covering ``cover``."""
    scl = np.full((size20, size20), 4, np.uint8)
    if cover <= 0:
        return scl
    coarse = rng.normal(size=(max(size20 // 40, 4),) * 2)
    field = ndimage.zoom(ndimage.gaussian_filter(coarse, 1.0), size20 / coarse.shape[0],
                         order=1)[:size20, :size20]
    cloud = field > np.quantile(field, 1 - cover)
    edge = ndimage.binary_dilation(cloud, iterations=2) & ~cloud
    shadow = np.roll(cloud, (12, 9), axis=(0, 1)) & ~cloud & ~edge
    scl[shadow], scl[edge], scl[cloud] = 3, 8, 9
    return scl


_WORK: dict = {}


def _write_date(args: tuple) -> str:
    """Render and write one date (runs in a forked worker sharing the composition table)."""
    layout, i, archive, truth_dir = args
    pix, lab, cnt = _WORK["composition"]
    n = layout.size_px
    ndvi, nir = _field_values(layout, i)
    red = nir * (1 - ndvi) / (1 + ndvi)
    rng = np.random.default_rng([layout.seed, 5, i])
    road = rng.uniform(-0.01, 0.01)
    bands = {}
    for name, lut, road_v in (("B04", red, ROAD_RED), ("B08", nir, ROAD_NIR)):
        lut = np.append(lut, road_v + road)
        refl = np.bincount(pix, cnt * lut[lab], minlength=n * n) / (SUB * SUB)
        bands[name] = (refl + rng.normal(0, NOISE, refl.shape)).reshape(n, n)
    scl = _clouds(n // 2, cloud_cover(i), rng)
    scl10 = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)
    bands["B04"][scl10 >= 8] = 0.33 + rng.normal(0, 0.01, int((scl10 >= 8).sum()))
    bands["B08"][scl10 >= 8] = 0.36 + rng.normal(0, 0.01, int((scl10 >= 8).sum()))
    for b in ("B04", "B08"):
        bands[b][scl10 == 3] *= 0.35
    date = scene_dates(i + 1)[-1].isoformat()
    tmp = archive.parent / f".tmp-{date}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t10 = layout.geobox_transform
    for name, refl in bands.items():
        dn = np.clip(np.round(refl * 10000 + 1000), 1, 65535).astype(np.uint16)
        _write_tif(tmp / f"{name}.tif", dn, t10)
    _write_tif(tmp / "SCL.tif", scl, t10 @ Affine.scale(2))
    np.save(truth_dir / f"{date}.npy", ndvi.astype(np.float32))
    os.rename(tmp, archive / date)  # a date folder appears complete or not at all
    return date


def _write_tif(path: Path, array: np.ndarray, transform: Affine) -> None:
    h, w = array.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=1,
                       dtype=array.dtype, crs=CRS, transform=transform, nodata=0, tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate", predictor=2) as dst:
        dst.write(array, 1)


@dataclass(frozen=True)
class Scene:
    """A generated scene: ``archive`` is a LocalSource folder; ``dates`` the first ``n_dates``."""

    root: Path
    layout: Layout
    n_dates: int

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def dates(self) -> list[dt.date]:
        return scene_dates(self.n_dates)

    @property
    def cloud_free(self) -> np.ndarray:
        return np.array([cloud_cover(i) == 0 for i in range(self.n_dates)])

    @property
    def size_px(self) -> int:
        return self.layout.size_px

    @property
    def transform(self) -> Affine:
        return self.layout.geobox_transform

    def files(self, band: str) -> list[Path]:
        return [self.archive / d.isoformat() / f"{band}.tif" for d in self.dates]


def ensure_scene(n_dates: int = 20, *, size_px: int = 4000, seed: int = 0,
                 root: Path | None = None, workers: int = 2, log=print) -> Scene:
    """The cached scene with at least ``n_dates`` dates; missing dates are generated."""
    layout = Layout(size_px, seed)
    root = (root or default_root()) / f"scene-v{VERSION}-s{seed}-{size_px}px"
    archive, truth_dir = root / "archive", root / "truth"
    archive.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(exist_ok=True)
    todo = [i for i, d in enumerate(scene_dates(n_dates))
            if not (archive / d.isoformat()).is_dir()
            or not (truth_dir / f"{d.isoformat()}.npy").exists()]
    if todo:
        t0 = time.perf_counter()
        log(f"scene: rendering {size_px}×{size_px} px from 2 m sub-pixels "
            f"({layout.n_fields:,} fields) into {root} …")
        _WORK["composition"] = _composition(layout)
        log(f"scene: sub-pixel composition {time.perf_counter() - t0:.0f} s; "
            f"writing {len(todo)} date(s) with {workers} worker(s) …")
        jobs = [(layout, i, archive, truth_dir) for i in todo]
        if workers > 1 and len(todo) > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_date, jobs):
                    pass
        else:
            for job in jobs:
                _write_date(job)
        _WORK.clear()
        (root / "scene.json").write_text(json.dumps({
            "version": VERSION, "size_px": size_px, "seed": seed, "crs": CRS,
            "n_fields": layout.n_fields, "dates_generated": len(list(archive.iterdir()))}))
        log(f"scene: ready in {time.perf_counter() - t0:.0f} s")
    return Scene(root, layout, n_dates)


def scene_parcels(scene: Scene, n: int) -> gpd.GeoDataFrame:
    """``n`` insured parcels: fields drawn at random (same ``n`` → same parcels), in field
    order (row-major by block, as parcel files are usually grouped by village)."""
    fields = scene.layout.fields
    if n > len(fields):
        raise ValueError(f"the {scene.size_px} px scene has only {len(fields):,} fields; "
                         f"ask for ≤ {len(fields):,} parcels or a larger size_px")
    pick = np.sort(np.random.default_rng([scene.layout.seed, 6, n]).choice(
        len(fields), n, replace=False))
    out = fields.iloc[pick].reset_index(drop=True)
    out.insert(0, "parcel_id", np.char.add("F", out["field"].to_numpy().astype(str)))
    out["crop"] = np.asarray(CROPS)[out["crop_code"].to_numpy()]
    return out


def truth_ndvi(scene: Scene, parcels: gpd.GeoDataFrame) -> np.ndarray:
    """True NDVI (parcel, date) of parcels from :func:`scene_parcels`."""
    field = parcels["field"].to_numpy()
    return np.stack([np.load(scene.root / "truth" / f"{d.isoformat()}.npy")[field]
                     for d in scene.dates], axis=1)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dates", type=int, default=20)
    p.add_argument("--size", type=int, default=4000)
    a = p.parse_args()
    s = ensure_scene(a.dates, size_px=a.size)
    print(s.root, s.layout.n_fields, "fields")
