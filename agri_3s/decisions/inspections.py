"""Reading what back-testing compares: the inspectors' truth table (CSV in UTF-8, UTF-8 with BOM
or GBK / GB18030, or XLSX; the spreadsheet row kept for messages) and a job's result table
(a result folder or its verdicts / claims file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

NUMERIC = ("confidence", "loss_rate", "loss_rate_low", "loss_rate_high", "parcel_loss_rate",
           "damaged_area_mu", "payout_threshold", "indemnity_cny")
RESULT_SUFFIXES = (".csv", ".parquet", ".geojson", ".gpkg")


def read_truth(path: str | Path) -> pd.DataFrame:
    """A truth table as text cells: CSV (UTF-8, UTF-8 with BOM, GBK / GB18030) or XLSX.

    ``_row`` is the spreadsheet row (header = row 1); ``attrs["source"]`` the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("truth file not found.", source=path,
                         fix="give the inspection table (CSV or XLSX) with a parcel_id column")
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            df = pd.read_excel(path, dtype=str)
        else:
            raw = path.read_bytes()
            try:
                raw.decode("utf-8")
                encoding = "utf-8-sig"
            except UnicodeDecodeError:
                encoding = "gb18030"  # superset of GBK: Chinese Excel's "CSV"
            first = raw.decode(encoding).lstrip("\ufeff").partition("\n")[0]
            sep = max([",", "\t", ";", "|"], key=first.count)
            df = pd.read_csv(path, sep=sep, dtype=str, encoding=encoding, keep_default_na=False,
                             na_values=[""], skip_blank_lines=False)
    except (OSError, ValueError, ImportError) as exc:
        raise InputError(f"cannot read the truth table ({exc}).", source=path,
                         fix="save it as CSV (UTF-8 or GBK) or XLSX with a header row") from exc
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    df["_row"] = np.arange(len(df)) + 2
    df = df[df.drop(columns="_row").notna().any(axis=1)]  # blank lines are layout
    df.attrs["source"] = str(path)
    return df


def result_files(result: str | Path) -> dict[str, Path]:
    """``{"verdicts" | "claims": file}`` of a result folder, or of one result table."""
    result = Path(result)
    if result.is_dir():
        found = {}
        for kind in ("verdicts", "claims"):
            for suffix in RESULT_SUFFIXES:
                if (result / f"{kind}{suffix}").is_file():
                    found[kind] = result / f"{kind}{suffix}"
                    break
        if not found:
            raise InputError("no verdicts or claims table in the result folder.", source=result,
                             fix="pass the --out folder of `agri3s underwrite` / `agri3s assess`, "
                                 "or its verdicts.csv / claims.csv")
        return found
    if not result.is_file():
        raise InputError("result not found.", source=result,
                         fix="pass a result folder or its verdicts / claims file")
    if result.suffix.lower() not in RESULT_SUFFIXES:
        raise InputError("not a result table.", source=result,
                         fix=f"pass a {' / '.join(RESULT_SUFFIXES)} file or the result folder")
    kind = "claims" if "claim" in result.stem.lower() else "verdicts"
    if "verdict" not in result.stem.lower() and "claim" not in result.stem.lower():
        kind = "claims" if {"claim_id", "loss_rate"} & set(read_result(result).columns) else kind
    return {kind: result}


def read_result(path: str | Path) -> pd.DataFrame:
    """A verdicts / claims table (CSV, GeoParquet, GeoJSON, GeoPackage), geometry dropped."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False,
                             na_values=[""])
        elif path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            import pyogrio

            df = pyogrio.read_dataframe(path, read_geometry=False)
    except Exception as exc:  # any reader failure is an unreadable user file
        raise InputError(f"cannot read the result table ({exc}).", source=path,
                         fix="pass the verdicts / claims file agri3s wrote, unmodified") from exc
    df = pd.DataFrame(df.drop(columns=["geometry"], errors="ignore"))
    for col in NUMERIC:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df.attrs["source"] = str(path)
    return df
