"""Sentinel-2 L2A SAFE products (folders and zips): metadata, offsets, 20 m SCL on the 10 m grid.

The products are built here as real JPEG 2000 files (GDAL's JP2OpenJPEG driver, lossless) in the
SAFE folder structure, with an MTD_MSIL2A.xml shaped like ESA's; expected reflectances are
computed by hand from the DNs written: (DN + BOA_ADD_OFFSET) / 10000.
"""

import datetime as dt
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from agri_3s.errors import ImageryError
from agri_3s.sources.local import LocalSource
from agri_3s.sources.safe import read_safe, scan_safe_products
from agri_3s.testing.builders import write_acquisition

T10 = Affine(10, 0, 437000, 0, -10, 4142000)
BOUNDS = (437040, 4141720, 437280, 4141960)  # well inside the 32 × 32 px scene
TILE = "T50SMG"

MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
 <n1:General_Info>
  <Product_Info>
   <PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>
   <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
   <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
  </Product_Info>
  <Product_Image_Characteristics>
   <QUANTIFICATION_VALUES_LIST>
    <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
   </QUANTIFICATION_VALUES_LIST>
   {offsets}
   <Spectral_Information_List>
    {spectral}
   </Spectral_Information_List>
  </Product_Image_Characteristics>
 </n1:General_Info>
</n1:Level-2A_User_Product>
"""
PHYSICAL = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def write_jp2(path: Path, dn: np.ndarray, transform: Affine, crs: str = "EPSG:32650") -> None:
    """A lossless, georeferenced JPEG 2000 band like the ones inside SAFE products."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = dn.shape
    with rasterio.open(path, "w", driver="JP2OpenJPEG", height=h, width=w, count=1,
                       dtype=dn.dtype, crs=crs, transform=transform, QUALITY=100,
                       REVERSIBLE="YES") as dst:
        dst.write(dn, 1)


def write_safe(root: Path, start: str, dns: dict[str, np.ndarray], *, baseline: str = "05.11",
               offsets: dict[int, float] | None = None, zipped: bool = False,
               xml_time: bool = True) -> Path:
    """A minimal L2A SAFE: B03/B04/B08 at 10 m, B11/SCL at 20 m, MTD_MSIL2A.xml.

    ``offsets`` maps BOA_ADD_OFFSET band_id (0 = B1 … 11 = B11) → value; None → no list.
    """
    t = dt.datetime.fromisoformat(start)
    stamp = t.strftime("%Y%m%dT%H%M%S")
    name = f"S2B_MSIL2A_{stamp}_N{baseline.replace('.', '')}_R075_{TILE}_{stamp}"
    safe = root / f"{name}.SAFE"
    img = safe / "GRANULE" / f"L2A_{TILE}_A000001_{stamp}" / "IMG_DATA"
    for band, dn in dns.items():
        res = "20m" if band in ("B11", "SCL") else "10m"
        tr = T10 @ Affine.scale(2) if res == "20m" else T10
        write_jp2(img / f"R{res}" / f"{TILE}_{stamp}_{band}_{res}.jp2", dn, tr)
    off = ""
    if offsets is not None:
        off = "<BOA_ADD_OFFSET_VALUES_LIST>" + "".join(
            f'<BOA_ADD_OFFSET band_id="{k}">{v:g}</BOA_ADD_OFFSET>' for k, v in offsets.items()
        ) + "</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{b}"/>'
                       for i, b in enumerate(PHYSICAL))
    (safe / "MTD_MSIL2A.xml").write_text(MTD.format(
        start=t.strftime("%Y-%m-%dT%H:%M:%S.024Z") if xml_time else "", baseline=baseline,
        offsets=off, spectral=spectral))
    if not zipped:
        return safe
    archive = root / f"{name}.SAFE.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(safe.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    shutil.rmtree(safe)
    return archive


def _dns(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {b: rng.integers(1100, 6000, (32, 32)).astype(np.uint16) for b in ("B03", "B04", "B08")}
    out["B11"] = rng.integers(1100, 6000, (16, 16)).astype(np.uint16)
    out["SCL"] = rng.choice(np.array([4, 5, 8, 9], np.uint8), (16, 16))
    out["B04"][5, 7] = 0  # a no-data pixel inside the window
    return out


ALL_MINUS_1000 = {i: -1000 for i in range(13)}


@pytest.mark.parametrize("zipped", [False, True])
def test_safe_product_reflectance_offset_and_scl(tmp_path, zipped):
    dns = _dns()
    write_safe(tmp_path, "2025-05-12T03:05:29", dns, offsets=ALL_MINUS_1000, zipped=zipped)
    (product,) = scan_safe_products(tmp_path)
    assert product.time == np.datetime64("2025-05-12T03:05:29")
    assert product.processing_baseline == "05.11" and product.offset_rule == "BOA_ADD_OFFSET"
    assert product.boa_add_offset == -1000
    assert sorted(product.files) == ["B03", "B04", "B08", "B11", "SCL"]
    if zipped:
        assert str(product.files["B04"]).startswith("/vsizip/")

    cube = LocalSource(tmp_path).load(BOUNDS, "EPSG:32650", dt.date(2025, 5, 1),
                                      dt.date(2025, 5, 31)).compute()
    assert cube.sizes["time"] == 1 and cube.odc.geobox.crs.epsg == 32650
    # the window: 30 m margin around BOUNDS on the scene's 10 m grid → rows/cols 1..30
    rows, cols = slice(1, 31), slice(1, 31)
    assert cube.sizes["y"] == 30 and cube.sizes["x"] == 30
    red_dn = dns["B04"][rows, cols].astype(float)
    expected = np.where(red_dn == 0, np.nan, (red_dn - 1000) / 10000)
    np.testing.assert_allclose(cube["red"].values[0], expected, atol=1e-6)
    # 20 m bands: each 20 m pixel covers 2 × 2 output pixels
    scl10 = np.repeat(np.repeat(dns["SCL"], 2, 0), 2, 1)[rows, cols]
    np.testing.assert_array_equal(cube["scl"].values[0], scl10)
    b11 = np.repeat(np.repeat(dns["B11"], 2, 0), 2, 1)[rows, cols].astype(float)
    np.testing.assert_allclose(cube["swir16"].values[0], (b11 - 1000) / 10000, atol=1e-6)


def test_offset_comes_from_the_product_metadata(tmp_path):
    dns = _dns(1)
    # an unusual offset proves it is read, not assumed from the date
    odd = {i: -500 for i in range(13)}
    write_safe(tmp_path / "a", "2025-05-12T03:05:29", dns, offsets=odd)
    # baseline 02.14 (2021): no offset list, no offset
    write_safe(tmp_path / "b", "2021-05-12T03:05:29", dns, baseline="02.14", offsets=None)
    # baseline 04.00 product whose XML lacks the list → the baseline rule (−1000)
    write_safe(tmp_path / "c", "2022-03-02T03:05:29", dns, baseline="04.00", offsets=None,
               zipped=True, xml_time=False)
    (a,) = scan_safe_products(tmp_path / "a")
    (b,) = scan_safe_products(tmp_path / "b")
    (c,) = scan_safe_products(tmp_path / "c")
    assert (a.boa_add_offset, a.offset_rule) == (-500, "BOA_ADD_OFFSET")
    assert (b.boa_add_offset, b.offset_rule) == (0, "PROCESSING_BASELINE")
    assert (c.boa_add_offset, c.offset_rule) == (-1000, "PROCESSING_BASELINE")
    assert c.time == np.datetime64("2022-03-02T03:05:29")  # from the product name

    cube = LocalSource(tmp_path / "a").load(BOUNDS, "EPSG:32650", dt.date(2025, 1, 1),
                                            dt.date(2025, 12, 31))
    nir = dns["B08"][1:31, 1:31].astype(float)
    np.testing.assert_allclose(cube["nir"].values[0], (nir - 500) / 10000, atol=1e-6)
    old = LocalSource(tmp_path / "b").load(BOUNDS, "EPSG:32650", dt.date(2021, 1, 1),
                                           dt.date(2021, 12, 31))
    np.testing.assert_allclose(old["nir"].values[0], nir / 10000, atol=1e-6)


def test_per_band_offsets_follow_spectral_information_ids(tmp_path):
    # band_id 3 is B4 and 7 is B8 in Spectral_Information_List; different values must be caught
    offsets = {**ALL_MINUS_1000, 7: -900}
    write_safe(tmp_path, "2025-05-12T03:05:29", _dns(), offsets=offsets)
    (p,) = scan_safe_products(tmp_path)
    assert p.band_offsets["B04"] == -1000 and p.band_offsets["B08"] == -900
    with pytest.raises(ImageryError, match="differs between bands"):
        _ = p.boa_add_offset


def test_safe_and_date_folders_mix_in_one_archive(tmp_path):
    dns = _dns(2)
    write_safe(tmp_path, "2025-05-12T03:05:29", dns, offsets=ALL_MINUS_1000, zipped=True)
    refl = {b: np.full((32, 32), 0.3) for b in ("B03", "B04", "B08")}
    write_acquisition(tmp_path, "2025-05-17T03:05:31", refl, np.full((16, 16), 4), T10)
    cube = LocalSource(tmp_path).load(BOUNDS, "EPSG:32650", dt.date(2025, 5, 1),
                                      dt.date(2025, 5, 31))
    assert list(cube["time"].values.astype("datetime64[D]").astype(str)) == [
        "2025-05-12", "2025-05-17"]
    np.testing.assert_allclose(cube["red"].values[1], 0.3, atol=1e-6)


def test_broken_products_are_clear_errors(tmp_path):
    dns = _dns(3)
    del dns["SCL"]
    write_safe(tmp_path / "noscl", "2025-05-12T03:05:29", dns, offsets=ALL_MINUS_1000)
    with pytest.raises(ImageryError, match="SCL missing"):
        LocalSource(tmp_path / "noscl").load(BOUNDS, "EPSG:32650", dt.date(2025, 1, 1),
                                             dt.date(2025, 12, 31))
    l1c = tmp_path / "l1c" / "S2B_MSIL1C_20250512T030529_N0511_R075_T50SMG_20250512T0.SAFE.zip"
    l1c.parent.mkdir()
    with zipfile.ZipFile(l1c, "w") as zf:
        zf.writestr("S2B_MSIL1C_x.SAFE/MTD_MSIL1C.xml", "<x/>")
    with pytest.raises(ImageryError, match="Level-1C"):
        read_safe(l1c)
    bad = tmp_path / "bad" / "S2A_MSIL2A_20250512T030529_N0511_R075_T50SMG_x.zip"
    bad.parent.mkdir()
    bad.write_bytes(b"not a zip")
    with pytest.raises(ImageryError, match="not a readable zip"):
        scan_safe_products(bad.parent)
