"""Tiny test inputs built in code: local imagery archives and parcels (kilobytes, not MB)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def write_band(path: Path, array: np.ndarray, transform: Affine, crs: str = "EPSG:32650") -> Path:
    """One single-band tiled DEFLATE GeoTIFF, nodata 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = array.shape
    tiled = h % 16 == 0 and w % 16 == 0 and h >= 16 and w >= 16
    profile = dict(driver="GTiff", height=h, width=w, count=1, dtype=array.dtype, crs=crs,
                   transform=transform, nodata=0, compress="deflate")
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


def write_acquisition(root: Path, name: str, reflectance: dict[str, np.ndarray], scl: np.ndarray,
                      transform: Affine, *, crs: str = "EPSG:32650", boa_add_offset: float = -1000,
                      metadata: bool = True) -> Path:
    """An acquisition folder: reflectance (0–1, NaN = no data) → L2A DNs with the offset; SCL
    at half the resolution of the 10 m bands (20 m), like Sentinel-2."""
    folder = root / name
    for band, refl in reflectance.items():
        dn = np.where(np.isnan(refl), 0, np.clip(np.round(refl * 10000 - boa_add_offset), 1, 65535))
        write_band(folder / f"{band}.tif", dn.astype(np.uint16), transform, crs)
    t20 = transform @ Affine.scale(2)
    write_band(folder / "SCL.tif", scl.astype(np.uint8), t20, crs)
    if metadata:
        (folder / "metadata.json").write_text(json.dumps(
            {"processing_baseline": "05.11", "boa_add_offset": boa_add_offset}))
    return folder
