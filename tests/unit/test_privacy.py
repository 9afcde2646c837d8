"""PII masking: names keep first + last character, ID numbers their last four; nothing else moves."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agri_3s.outputs.privacy import mask_id_number, mask_name, mask_pii


@pytest.mark.parametrize("name, masked", [
    ("张三丰", "张*丰"), ("王五", "王*"), ("欧阳娜娜", "欧**娜"), ("李", "*"),
    ("John Smith", "J********h"), (" 张三丰 ", "张*丰"), ("", ""), (None, ""), (np.nan, ""),
    (pd.NA, ""),
])
def test_mask_name(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize("number, masked", [
    ("371428199001011234", "**************1234"), ("37142819900101123X", "**************123X"),
    ("1234", "****"), ("", ""), (None, ""), (float("nan"), ""),
])
def test_mask_id_number(number, masked):
    assert mask_id_number(number) == masked


def test_masking_is_idempotent():
    assert mask_name(mask_name("张三丰")) == "张*丰"
    assert mask_id_number(mask_id_number("371428199001011234")) == "**************1234"


def test_mask_pii_masks_only_pii_columns_and_copies():
    df = pd.DataFrame({"parcel_id": ["p1", "p2"], "farmer_name": ["张三丰", None],
                       "farmer_id_number": ["371428199001011234", np.nan],
                       "declared_area_mu": [12.5, 3.0]}, index=[10, 20])
    out = mask_pii(df)
    assert out["farmer_name"].tolist() == ["张*丰", ""]
    assert out["farmer_id_number"].tolist() == ["**************1234", ""]
    pd.testing.assert_frame_equal(out[["parcel_id", "declared_area_mu"]],
                                  df[["parcel_id", "declared_area_mu"]])
    assert df["farmer_name"].iloc[0] == "张三丰"  # the input is not modified


def test_mask_pii_without_pii_columns_and_geodataframe():
    gdf = gpd.GeoDataFrame({"parcel_id": ["p1"], "farmer_name": ["王五"]},
                           geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    out = mask_pii(gdf)
    assert isinstance(out, gpd.GeoDataFrame) and out.crs == gdf.crs
    assert out["farmer_name"].tolist() == ["王*"]
    assert out.geometry.iloc[0].equals(gdf.geometry.iloc[0])
    plain = pd.DataFrame({"parcel_id": ["p1"], "crop": ["soybean"]})
    pd.testing.assert_frame_equal(mask_pii(plain), plain)
