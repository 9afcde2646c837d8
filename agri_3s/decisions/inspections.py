"""Reading what back-testing compares: the inspectors' truth table (CSV in UTF-8, UTF-8 with BOM
or GBK / GB18030, or XLSX; the spreadsheet row kept for messages) and a job's result table
(a result folder or its verdicts / claims file); the truth's headers and words recognised, and
the two matched parcel by parcel."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..parcels.columns import ALIASES, CROP_NAMES, find_columns

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
    except (OSError, ValueError, ImportError, KeyError, zipfile.BadZipFile) as exc:
        # a broken .xlsx: BadZipFile, or KeyError from openpyxl for a zip without a workbook
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


#: The inspector's verdict → truth label (``yellow``: the inspector wants a review too).
INSPECTED = {"green": "accept", "通过": "accept", "合格": "accept", "accept": "accept",
             "red": "reject", "不通过": "reject", "不合格": "reject", "reject": "reject",
             "yellow": "yellow", "待核": "yellow", "复核": "yellow", "review": "yellow"}
TRUE_WORDS = {"true", "1", "1.0", "yes", "y", "t", "是", "真", "属实", "对"}
FALSE_WORDS = {"false", "0", "0.0", "no", "n", "f", "否", "假", "不属实", "不对"}
#: Truth headers recognised (compared as in :func:`agri_3s.parcels.columns.normalise_header`).
TRUTH_ALIASES: dict[str, tuple[str, ...]] = {
    "parcel_id": ALIASES["parcel_id"],
    "event_id": ("event_id", "事件编号", "灾害编号"),
    "inspected_status": ("inspected_status", "inspection_status", "inspected_verdict",
                         "expected_verdict", "true_verdict", "验标结果", "查勘结果", "核验结果",
                         "核查结果", "检查结果", "验标结论", "查勘结论"),
    "declaration_true": ("declaration_true", "申报属实", "是否属实", "属实"),
    "crop": ("crop", "作物", "实际作物", "实种作物", "查勘作物", "种植作物", "作物名称"),
    "loss_rate": ("loss_rate", "损失率", "查勘损失率", "定损损失率", "损失程度"),
    "parcel_loss_rate": ("parcel_loss_rate", "地块损失率"),
    "damaged_area_mu": ("damaged_area_mu", "受损面积", "受损面积(亩)", "受灾面积", "受灾面积(亩)",
                        "成灾面积", "成灾面积(亩)"),
    "status": ("status", "状态"),
}


def source_of(df: pd.DataFrame, default: str) -> str:
    return df.attrs.get("source", default)


def prepared_table(table: pd.DataFrame, name: str, key: list[str], aliases: dict | None = None,
              fix: str = "keep one row per parcel") -> pd.DataFrame:
    """Recognised headers renamed, ids as stripped text, a spreadsheet ``_row``; no duplicates."""
    src = source_of(table, name)
    df = pd.DataFrame(table).copy()
    if aliases:
        df = df.rename(columns=find_columns([c for c in df.columns if c != "_row"], aliases))
    if "_row" not in df.columns:
        df["_row"] = np.arange(len(df)) + 2
    missing = [k for k in key if k not in df.columns]
    if missing:
        raise InputError(f"no {', '.join(missing)} column (headers: {', '.join(map(str, df.columns))}).",
                         source=src, fix="name the parcel column parcel_id (or 地块编号)")
    for k in key:
        df[k] = df[k].astype("string").str.strip()
    blank = df[df[key].isna().any(axis=1) | (df[key] == "").any(axis=1)]
    if len(blank):
        raise InputError(f"{len(blank)} row(s) without {' / '.join(key)}.", source=src,
                         row=first_few(blank["_row"]), fix="fill in the parcel id of every row")
    dup = df[df.duplicated(key, keep=False)]
    if len(dup):
        ids = ids_text(dup, key).unique()
        raise InputError(f"{len(ids)} duplicate {'/'.join(key)}: {first_few(ids)}.", source=src,
                         row=first_few(dup["_row"]), fix=fix)
    return df


def first_few(values, k: int = 5) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:k]) + (f" … (+{len(values) - k})" if len(values) > k else "")


def ids_text(df: pd.DataFrame, key: list[str]) -> pd.Series:
    """``parcel_id`` (or ``parcel_id/event_id``) as text."""
    ids = df[key[0]].astype(str)
    return ids + "/" + df[key[1]].astype(str) if key[1:] else ids


def match_truth(results: pd.DataFrame, truth: pd.DataFrame, key: list[str], cols: list[str]
           ) -> tuple[pd.DataFrame, dict]:
    """Results with truth columns ``truth_*``; the unmatched parcels on each side, listed."""
    t = truth[key + cols].rename(columns={c: f"truth_{c}" for c in cols})
    both = results.merge(t, on=key, how="outer", indicator=True)
    ids = ids_text(both, key)
    lists = {"missing_from_results": ids[both["_merge"] == "right_only"].tolist(),
             "without_truth": ids[both["_merge"] == "left_only"].tolist()}
    counts = {f"n_{k}": len(v) for k, v in lists.items()}
    matched = both[both["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    return matched, {**counts, **lists}


def crop_code(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.map(CROP_NAMES).fillna(text).str.lower()


def truth_labels(matched: pd.DataFrame, column: str, src: str) -> pd.Series:
    """Truth label per matched parcel: ``accept`` | ``reject`` | ``yellow`` | NA (blank truth)."""
    raw = matched[f"truth_{column}"]
    if column == "crop":  # the crop found vs the declared crop of the verdict table
        found, declared = crop_code(raw), crop_code(matched.get("crop", pd.Series(pd.NA,
                                                                                   raw.index)))
        same = (found == declared.fillna("")).fillna(False).to_numpy(bool)
        label = pd.Series(np.where(same, "accept", "reject"), raw.index)
        return label.where(found.notna() & (found != ""))
    text = raw.astype("string").str.strip().str.lower()
    if column == "inspected_status":
        label = text.map(INSPECTED)
        known = label.notna()
        fix = "use green / yellow / red (or 通过·合格 / 待核·复核 / 不通过·不合格)"
    else:
        label = text.map({**dict.fromkeys(TRUE_WORDS, "accept"),
                          **dict.fromkeys(FALSE_WORDS, "reject")})
        known = label.notna()
        fix = "use true / false (or 是 / 否)"
    bad = text.notna() & (text != "") & ~known
    if bad.any():
        raise InputError(f"unrecognised {column} value(s): {first_few(raw[bad].unique())}.",
                         source=src, row=first_few(matched.loc[bad, "_row"]), fix=fix)
    return label.where(known)


def loss_rates(values: pd.Series, name: str, src: str, rows: pd.Series, notes: list) -> pd.Series:
    """Loss rates as shares 0–1 from ``0.35``, ``35%`` or a column in percent (``35``)."""
    text = values.astype("string").str.strip()
    pct = text.str.endswith("%").fillna(False)
    num = pd.to_numeric(text.str.rstrip("%").str.strip(), errors="coerce").astype(float)
    bad = text.notna() & (text != "") & num.isna()
    if bad.any():
        raise InputError(f"{name} is not a number: {first_few(values[bad].unique())}.", source=src,
                         row=first_few(rows[bad]), fix="write loss rates as 0.35 or 35%")
    num = num.where(~pct, num / 100)
    if ((num < 0) | (num > 100)).any():
        raise InputError(f"{name} outside 0–1 (or 0–100 %).", source=src,
                         row=first_few(rows[(num < 0) | (num > 100)]), fix="write 0.35 or 35%")
    if (num > 1).any():  # a rate above 1 is impossible: the column is in percent
        notes.append(f"{name} read as percent (values above 1)")
        num = num.where(pct, num / 100)
    return num


# --- verdicts -------------------------------------------------------------------------------------
