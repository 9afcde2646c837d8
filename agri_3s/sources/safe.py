"""Sentinel-2 L2A SAFE products (unzipped ``*.SAFE`` folders or zips) as local acquisitions.

What is read from a product::

    S2B_MSIL2A_20250512T030529_N0511_R075_T50SMG_20250512T061816.SAFE/
        MTD_MSIL2A.xml                               PRODUCT_START_TIME, PROCESSING_BASELINE,
                                                     BOA_ADD_OFFSET_VALUES_LIST, quantification
        GRANULE/L2A_T50SMG_.../IMG_DATA/R10m/T50SMG_20250512T030529_B02_10m.jp2  B03 B04 B08
        GRANULE/L2A_T50SMG_.../IMG_DATA/R20m/T50SMG_20250512T030529_B11_20m.jp2  SCL_20m

Zips are read in place through GDAL's ``/vsizip/`` (nothing is unpacked). The reflectance offset
is the product's own ``BOA_ADD_OFFSET`` per band; products without the list (baseline < 04.00)
have none; when the XML gives neither, the date rule of
:func:`~agri_3s.sources.base.default_boa_offset` applies. :func:`scan_safe_products` finds the
products in a folder, and :class:`~agri_3s.sources.local.LocalSource` reads them beside the
per-date folders.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageryError
from .base import L2A_QUANTIFICATION, default_boa_offset

#: Band id → (resolution folder, file suffix) inside ``IMG_DATA``; the native resolution.
SAFE_BANDS = {"B02": ("R10m", "10m"), "B03": ("R10m", "10m"), "B04": ("R10m", "10m"),
              "B08": ("R10m", "10m"), "B11": ("R20m", "20m"), "SCL": ("R20m", "20m")}
#: ``band_id`` of ``BOA_ADD_OFFSET`` → band, when the XML has no Spectral_Information_List
#: (the order of the 13 MSI bands, fixed by the product specification).
MSI_BAND_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                  "B11", "B12")
_NAME_TIME = re.compile(r"_(\d{8}T\d{6})_")
_IMG = re.compile(r"GRANULE/([^/]+)/IMG_DATA/(R10m|R20m)/[^/]*_(B\d\d|B8A|SCL)_(10m|20m)\.jp2$",
                  re.IGNORECASE)


@dataclass(frozen=True)
class SafeProduct:
    """One SAFE product's metadata and band files."""

    #: The ``.SAFE`` folder or the zip.
    path: Path
    #: Product name (``S2B_MSIL2A_…``, without ``.SAFE``).
    name: str
    #: UTC sensing start time.
    time: np.datetime64
    #: ``PROCESSING_BASELINE`` (e.g. ``"05.11"``), or None when the XML does not give it.
    processing_baseline: str | None
    #: Band id → DN offset added before dividing by the quantification value.
    band_offsets: dict = field(default_factory=dict)
    #: Band id → path GDAL opens (``/vsizip/…`` inside zips).
    files: dict = field(default_factory=dict)
    #: Where the offset came from: ``BOA_ADD_OFFSET`` | ``PROCESSING_BASELINE`` | ``date``.
    offset_rule: str = ""

    @property
    def boa_add_offset(self) -> float:
        """The one offset of the reflectance bands present (they are equal in every real product).

        Raises :class:`ImageryError` if they differ, since a single offset per acquisition is
        what the local archive reader applies.
        """
        values = {self.band_offsets[b] for b in self.files if b != "SCL"}
        if len(values) > 1:
            raise ImageryError(f"{self.path}: BOA_ADD_OFFSET differs between bands "
                               f"({self.band_offsets}); agri_3s applies one offset per "
                               "acquisition. Convert the bands with their own offsets first.")
        return values.pop() if values else 0.0


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_metadata(xml: bytes, source: str) -> dict:
    """PRODUCT_START_TIME, PROCESSING_BASELINE, offsets per band, quantification."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ImageryError(f"{source}: MTD_MSIL2A.xml is not valid XML ({exc}). The product is "
                           "damaged: download it again.") from exc
    out: dict = {"offsets": {}, "band_ids": {}}
    for el in root.iter():
        tag = _local(el.tag)
        text = (el.text or "").strip()
        if tag == "PRODUCT_START_TIME" and "time" not in out:
            out["time"] = text
        elif tag == "PROCESSING_BASELINE" and "baseline" not in out:
            out["baseline"] = text
        elif tag == "BOA_ADD_OFFSET":
            out["offsets"][el.get("band_id")] = float(text)
        elif tag == "BOA_QUANTIFICATION_VALUE":
            out["quantification"] = float(text)
        elif tag == "Spectral_Information" and el.get("bandId") is not None:
            phys = el.get("physicalBand", "")
            m = re.fullmatch(r"B(\d+|8A)", phys)
            if m:
                out["band_ids"][el.get("bandId")] = (f"B{int(m.group(1)):02d}"
                                                     if m.group(1).isdigit() else "B8A")
    return out


def _members(path: Path) -> tuple[list[str], callable, callable]:
    """Relative member names, a reader of one member's bytes, and member → GDAL path."""
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        return names, lambda m: (path / m).read_bytes(), lambda m: path / m
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImageryError(f"{path}: not a readable zip ({exc}). Download the product "
                           "again or unzip it.") from exc
    names = zf.namelist()

    def read(member: str) -> bytes:
        return zf.read(member)
    return names, read, lambda m: f"/vsizip/{path.resolve().as_posix()}/{m}"


def read_safe(path: str | Path) -> SafeProduct:
    """Read one SAFE product (folder or zip): times, baseline, offsets and band files.

    Examples
    --------
    >>> p = read_safe("S2B_MSIL2A_20250512T030529_N0511_R075_T50SMG_20250512T061816.SAFE.zip")
    ... # doctest: +SKIP
    >>> p.processing_baseline, p.boa_add_offset, sorted(p.files)  # doctest: +SKIP
    ('05.11', -1000.0, ['B02', 'B03', 'B04', 'B08', 'B11', 'SCL'])
    """
    path = Path(path)
    names, read, gdal_path = _members(path)
    mtd = [n for n in names if n.rsplit("/", 1)[-1].upper() == "MTD_MSIL2A.XML"]
    if not mtd:
        kind = ("a Level-1C product (top-of-atmosphere, no SCL); agri_3s needs Level-2A"
                if any(n.rsplit("/", 1)[-1].upper() == "MTD_MSIL1C.XML" for n in names)
                else "not a Sentinel-2 L2A SAFE product (no MTD_MSIL2A.xml)")
        raise ImageryError(f"{path}: {kind}. Download the L2A product, or move this file "
                           "out of the imagery folder.")
    mtd_name = min(mtd, key=len)
    prefix = mtd_name[: -len("MTD_MSIL2A.xml")]
    meta = _parse_metadata(read(mtd_name), f"{path}/{mtd_name}")
    name = Path(prefix.rstrip("/")).name.removesuffix(".SAFE") if prefix else \
        path.name.removesuffix(".zip").removesuffix(".SAFE")

    if meta.get("time"):
        time = np.datetime64(meta["time"].replace("Z", ""), "s")
    else:
        m = _NAME_TIME.search(name)
        if not m:
            raise ImageryError(f"{path}: no PRODUCT_START_TIME in MTD_MSIL2A.xml and no "
                               "sensing time in the product name. Keep the original name.")
        time = np.datetime64(dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S"), "s")

    quant = meta.get("quantification", L2A_QUANTIFICATION)
    if quant != L2A_QUANTIFICATION:
        raise ImageryError(f"{path}: BOA_QUANTIFICATION_VALUE is {quant:g}, agri_3s expects "
                           f"{L2A_QUANTIFICATION:g} (every L2A baseline so far uses it).")

    files, granules = {}, set()
    for member in names:
        m = _IMG.search(member)
        if not m or not member.startswith(prefix):
            continue
        band = m.group(3).upper()
        if band in SAFE_BANDS and SAFE_BANDS[band] == (m.group(2), m.group(4)):
            granules.add(m.group(1))
            files[band] = gdal_path(member)
    if len(granules) > 1:
        raise ImageryError(f"{path}: {len(granules)} granules in one product (the pre-2016 "
                           "multi-tile format); agri_3s reads single-tile products. Download "
                           "the products tile by tile.")
    missing = [b for b in ("B04", "B08", "SCL") if b not in files]
    if missing:
        raise ImageryError(f"{path}: band file(s) {', '.join(missing)} missing from "
                           "GRANULE/*/IMG_DATA (B04/B08 in R10m as *_B04_10m.jp2, SCL in R20m as "
                           "*_SCL_20m.jp2). The product is incomplete: download it again.")

    baseline = meta.get("baseline") or None
    if baseline is None:
        m = re.search(r"_N(\d{2})(\d{2})_", name)
        baseline = f"{m.group(1)}.{m.group(2)}" if m else None
    order = meta["band_ids"] or {str(i): b for i, b in enumerate(MSI_BAND_ORDER)}
    if meta["offsets"]:
        by_band = {order.get(k): v for k, v in meta["offsets"].items()}
        rule = "BOA_ADD_OFFSET"
        default = None
    elif baseline is not None:
        default, rule, by_band = (-1000.0 if float(baseline) >= 4.0 else 0.0), \
            "PROCESSING_BASELINE", {}
    else:
        default, rule, by_band = default_boa_offset(time.astype(dt.datetime).date()), "date", {}
    offsets = {}
    for band in files:
        if band == "SCL":
            continue
        if band in by_band:
            offsets[band] = float(by_band[band])
        elif default is not None:
            offsets[band] = default
        else:
            raise ImageryError(f"{path}: BOA_ADD_OFFSET_VALUES_LIST has no entry for {band}. "
                               "The metadata is damaged: download the product again.")
    return SafeProduct(path, name, time, baseline, offsets, files, rule)


def is_safe_candidate(path: Path) -> bool:
    """``*.SAFE`` folders, ``*.SAFE.zip`` and Sentinel-2 named zips (``S2?_MSIL…zip``)."""
    n = path.name.upper()
    if path.is_dir():
        return n.endswith(".SAFE")
    return n.endswith(".SAFE.ZIP") or (n.endswith(".ZIP") and re.match(r"S2[A-D]_MSIL", n)
                                        is not None)


def scan_safe_products(root: str | Path) -> list[SafeProduct]:
    """Every SAFE product directly in ``root``, sorted by time.

    >>> [p.name for p in scan_safe_products("imagery/")]  # doctest: +SKIP
    ['S2B_MSIL2A_20250512T030529_N0511_R075_T50SMG_20250512T061816']
    """
    products = [read_safe(p) for p in sorted(Path(root).iterdir()) if is_safe_candidate(p)]
    return sorted(products, key=lambda p: p.time)
