"""Rendering one acquisition: pixel cover → reflectance (linear mixing of endmember spectra),
snow, clouds, haze and shadows, sensor noise, L2A digital numbers and a scene classification."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atmosphere import snow_fraction, unflagged_fields
from .scene import (
    EM_BUILT,
    EM_HAZE,
    EM_PLASTIC,
    EM_ROAD,
    EM_SNOW,
    EM_SOIL_BRIGHT,
    EM_SOIL_DARK,
    EM_VEG,
    EM_WATER,
    EPSG,
    N10,
    N20,
    NOISE_SD,
    X0,
    Y0,
    soil_weight,
)

_EM_SOIL_MID = (lambda w: w * EM_SOIL_DARK + (1 - w) * EM_SOIL_BRIGHT)(float(soil_weight(0.16)))


def block_mean(a: np.ndarray) -> np.ndarray:
    """10 m → 20 m by 2 × 2 means."""
    return a.reshape(N20, 2, N20, 2).mean(axis=(1, 3))


def _ground(tab: np.ndarray, A, het: np.ndarray,
            moisture: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground reflectance (N10, N10, 4) and water fraction from the units' cover on one date;
    ``moisture`` scales the soil's brightness (all bands: the soil's NDVI stays)."""
    P = np.asarray(A @ tab, dtype=np.float64)          # (pixels, N_COLS)
    veg0, water, built, road, plastic, soil, soil_dark, soil_bright = P.T
    # static within-field variation of the canopy, taken from / given back to the soil
    veg = np.maximum(np.minimum(veg0 * het, veg0 + soil), 0.0)
    soil_new = np.maximum(soil - (veg - veg0), 0.0)
    has = soil > 1e-6
    soil_spec = np.where(has[:, None],
                         (np.outer(soil_dark, EM_SOIL_DARK) + np.outer(soil_bright, EM_SOIL_BRIGHT))
                         / np.maximum(soil, 1e-6)[:, None], _EM_SOIL_MID)
    refl = (np.outer(veg, EM_VEG) + np.outer(water, EM_WATER) + np.outer(built, EM_BUILT)
            + np.outer(road, EM_ROAD) + np.outer(plastic, EM_PLASTIC)
            + (soil_new * moisture)[:, None] * soil_spec)
    return refl.reshape(N10, N10, 4), water.reshape(N10, N10)


def render(k: int, tab: np.ndarray, A, het: np.ndarray, plan: dict, seed: int):
    """One acquisition → (dict of uint16 10 m / 20 m DN arrays, uint8 SCL at 20 m)."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    rng = np.random.default_rng([seed, 2, k])
    refl, water = _ground(tab, A, het, plan["soil"])
    snow = snow_fraction(plan, seed, k)
    refl = (1 - snow[..., None]) * refl + snow[..., None] * EM_SNOW

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
    # small clouds / thick haze the classification misses; their shadows are lit by the blue sky,
    # which has less near infrared than the sun, so NIR darkens most
    haze, dark = unflagged_fields(plan, seed, k)
    refl *= 1 - dark[..., None] * np.array([0.8, 0.85, 1.0, 1.0])
    refl = (1 - haze[..., None]) * refl + haze[..., None] * EM_HAZE

    noise = rng.normal(0, NOISE_SD, (N10, N10, 3))
    out = {}
    for b, name in enumerate(("B03", "B04", "B08")):
        out[name] = refl[..., b] + noise[..., b]
    out["B11"] = block_mean(refl[..., 3]) + rng.normal(0, NOISE_SD, (N20, N20))
    dn = {name: np.clip(np.round(v * 10000) + 1000, 1, 65535).astype(np.uint16)
          for name, v in out.items()}

    # scene classification at 20 m
    red20, nir20 = block_mean(refl[..., 1]), block_mean(refl[..., 2])
    ndvi20 = (nir20 - red20) / np.maximum(nir20 + red20, 1e-6)
    scl = np.where(ndvi20 > 0.4, 4, 5).astype(np.uint8)
    scl[block_mean(water) > 0.5] = 6
    u = rng.random((N20, N20))
    scl[(u < 0.003) | ((np.abs(ndvi20 - 0.39) < 0.03) & (u < 0.15))] = 7
    if plan["snow"]:
        snow20 = block_mean(snow)
        scl[snow20 > 0.5] = 11
        # Sen2Cor takes some bright snow edges for cloud
        scl[(snow20 > 0.25) & (snow20 <= 0.5) & (u > 0.7)] = 8
    scl[block_mean(shadow) > 0.5] = 3
    a20 = block_mean(alpha)
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


def write_tif(path: Path, arr: np.ndarray, res: float) -> None:
    """A tiled, DEFLATE-compressed single-band GeoTIFF on the scene's grid."""
    import rasterio
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1,
               "dtype": arr.dtype.name, "crs": f"EPSG:{EPSG}",
               "transform": from_origin(X0, Y0, res, res), "nodata": 0, "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "predictor": 2,
               "zlevel": 9}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
