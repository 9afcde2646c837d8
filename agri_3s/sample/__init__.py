"""The embedded default: a deterministic synthetic piece of a North China Plain county.

A 4 km × 4 km scene near Wucheng (Dezhou, Shandong; county code 371428) in EPSG:32650, top-left
corner (437000, 4142000), with a winter-wheat / summer-maize rotation, two disasters (hail on
2025-05-14, flood on 2025-07-22) and ground truth known exactly. ``agri3s demo`` and the tests
use it; see ``sample_data/README.md`` for the layout and the meaning of the truth columns.

How it is made (all from ``numpy.random.default_rng`` streams derived from the seed, so the same
seed gives byte-identical files), one module per step:

1. ``landscape`` — a slightly rotated, jittered road grid makes blocks; blocks are cut into
   furlongs and furlongs into strips. A village, orchards, greenhouses, large farms, a river with
   a low-lying flood zone, and a hail swath.
2. ``farms`` — the insured book (land parcels, households, policies) and, per season, a truth
   class per parcel: the easy ones (planted / fallow / half_planted / other_crop /
   area_inflated) and the ones real fields show (cover_crop, mown_meadow, weedy_fallow,
   late_sown); a bare-soil NDVI per parcel.
3. ``covers`` — each piece of land's vegetation cover on every acquisition day.
4. ``landunits`` — polygons with one cover table each, rasterized once at 2 m into a sparse
   (10 m pixel × unit) area-fraction matrix.
5. ``atmosphere`` — per date: clouds, shadows, snow, and small clouds / haze the scene
   classification misses.
6. ``render`` — unit cover → pixel cover (sparse mat-vec), linear mixing of endmember spectra,
   static within-field heterogeneity, weather, sensor noise, Sentinel-2 L2A digital numbers
   (offset +1000, processing baseline ≥ 04.00) and an SCL layer.
7. ``build`` — the files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .build import TRUTH_COLUMNS
from .build import generate_into as _generate_into
from .farms import CLASS_VERDICT
from .paths import SamplePaths
from .scene import (
    EPSG,
    FLOOD_DATE,
    HAIL_DATE,
    MAIZE_SEASON,
    N10,
    N20,
    SIZE_M,
    WHEAT_SEASON,
    X0,
    Y0,
    ProgressFn,
    acquisition_dates,
)

SAMPLE_VERSION = "3"  # bump when output changes
SAMPLE_SEED = 20250512

__all__ = ["CLASS_VERDICT", "EPSG", "FLOOD_DATE", "HAIL_DATE", "MAIZE_SEASON", "N10", "N20",
           "SAMPLE_SEED", "SAMPLE_VERSION", "SIZE_M", "TRUTH_COLUMNS", "WHEAT_SEASON", "X0", "Y0",
           "SamplePaths", "acquisition_dates", "default_sample_dir", "ensure_sample",
           "generate_sample"]


def generate_sample(out: Path | str, *, seed: int = SAMPLE_SEED,
                    progress: ProgressFn | None = None) -> SamplePaths:
    """Generate the synthetic sample into ``out`` (replacing it) and return its paths.

    Written into ``<out>.tmp-<pid>`` and renamed into place; ``VERSION`` (``"<version>:<seed>"``)
    is written last. The same seed gives byte-identical files.

    Examples
    --------
    >>> paths = generate_sample("/tmp/my_sample")          # doctest: +SKIP
    >>> paths.truth                                         # doctest: +SKIP
    PosixPath('/tmp/my_sample/truth.csv')
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
    """``sample_data/generated`` of the checkout."""
    return Path(__file__).resolve().parents[2] / "sample_data" / "generated"


def ensure_sample(out: Path | str | None = None) -> SamplePaths:
    """The sample at ``out`` (default ``sample_data/generated``), generated only if missing or
    made by another version / seed.

    Examples
    --------
    >>> ensure_sample().imagery.name                       # doctest: +SKIP
    'imagery'
    """
    out = Path(out) if out is not None else default_sample_dir()
    stamp = out / "VERSION"
    want = f"{SAMPLE_VERSION}:{SAMPLE_SEED}"
    if stamp.is_file() and stamp.read_text().strip() == want:
        return SamplePaths.at(out)
    return generate_sample(out, seed=SAMPLE_SEED)
