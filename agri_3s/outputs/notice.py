"""The village posting list (理赔公示): before an agricultural claim is paid, the households'
figures are posted in their village so that every farmer can check his own and object.

From a claims result (``agri3s assess``'s ``claims.geojson`` / ``.parquet`` / ``.csv``, or its
table in Python) one list per village (or township): a row per household — insured area,
damaged area, loss rate and indemnity — names and ID numbers masked as posting requires, and the
village's totals. Each list is written as XLSX (to print and post) and CSV.

Villages come from a column of the claims (the user's parcel columns travel into them):
``village`` / ``行政村`` / ``村`` …, else ``township`` / ``乡镇`` …; without one, from the household
id (else the policy id): an 18-digit land-contract code (承包方编码: county 6 + township 3 +
village 3 + group 2 + household 4 digits) gives its first 12 digits, the village's code; another
id its text before the last ``-`` / ``_`` / ``.`` / ``/`` (``H371428-0001`` → ``H371428``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..parcels.columns import TOWNSHIP_ALIASES, VILLAGE_ALIASES, normalise_header, to_number
from .export import atomic_path

#: Claim statuses a household is posted for (``not_affected`` parcels are not a claim).
POSTING_STATUSES = ("estimated", "survey", "below_threshold", "no_data", "invalid")
#: Columns a claims table must have.
NEEDED = ("declared_area_mu", "damaged_area_mu", "loss_rate", "indemnity_cny", "status")
#: Two-character surnames (复姓) kept whole: 欧阳修 → 欧阳*.
COMPOUND_SURNAMES = frozenset((
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "令狐", "端木", "独孤", "南宫", "西门", "澹台", "公冶", "宗政", "濮阳", "淳于", "单于",
    "太叔", "申屠", "轩辕", "呼延", "万俟", "闻人", "赫连", "钟离", "拓跋", "百里", "东郭", "北堂"))
_EVENT_ZH = {"hail": "冰雹", "flood": "洪涝", "drought": "干旱", "lodging": "倒伏", "freeze": "冻害"}
_NOTES = {  # status → (zh, en) note on the household's row
    "survey": ("暂估，待查勘", "provisional: field survey"),
    "below_threshold": ("未达起赔点", "below the payout threshold"),
    "no_data": ("无影像数据，待查勘", "no imagery: field survey"),
    "invalid": ("地块信息有误，待核实", "parcel data invalid: to be checked"),
}
_HEADERS = {
    "zh": {"no": "序号", "name": "农户姓名", "id": "身份证号", "household": "农户编号",
           "parcels": "地块数", "insured": "投保面积(亩)", "damaged": "受灾面积(亩)",
           "loss": "损失率(%)", "indemnity": "赔款(元)", "note": "备注", "total": "合计",
           "village": "村", "households": "户数", "file": "文件"},
    "en": {"no": "no", "name": "farmer", "id": "id_number", "household": "household_id",
           "parcels": "parcels", "insured": "insured_area_mu", "damaged": "damaged_area_mu",
           "loss": "loss_rate_pct", "indemnity": "indemnity_cny", "note": "note",
           "total": "total", "village": "village", "households": "households", "file": "file"},
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def posting_name(names: pd.Series) -> pd.Series:
    """Names as posted: the surname and one ``*`` (张三丰 → 张*; 欧阳修 → 欧阳*).

    Already masked names give the same (张*丰 → 张*); missing ones give ``""``. A Latin name
    keeps its first letter (``John Smith`` → ``J*``).

    Examples
    --------
    >>> posting_name(pd.Series(["张三丰", "王五", "欧阳修", "张*丰", None, "李"])).tolist()
    ['张*', '王*', '欧阳*', '张*', '', '李*']
    """
    text = names.astype(object).where(names.notna(), "").astype(str).str.strip()
    text = text.where(~text.isin(["nan", "None", "<NA>"]), "")
    compound = text.str[:2].isin(COMPOUND_SURNAMES) & (text.str.len() >= 3)
    surname = text.str[:1].where(~compound, text.str[:2])
    return (surname + "*").where(text != "", "")


def posting_id_number(numbers: pd.Series) -> pd.Series:
    """ID numbers as posted: every character but the last four replaced by ``*``.

    Examples
    --------
    >>> posting_id_number(pd.Series(["371428199001011234", "12", None])).tolist()
    ['**************1234', '**', '']
    """
    text = numbers.astype(object).where(numbers.notna(), "").astype(str).str.strip()
    text = text.where(~text.isin(["nan", "None", "<NA>"]), "")
    short = text.str.len() <= 4
    return text.str.replace(r".(?=.{4})", "*", regex=True).where(
        ~short, text.str.replace(r".", "*", regex=True))


def read_claims(result: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A claims table: a DataFrame as given, a claims file, or a result folder (its
    ``claims.geojson``, else ``claims.parquet``, else ``claims.csv``).

    Examples
    --------
    >>> claims = read_claims("out/hail")  # doctest: +SKIP
    """
    if isinstance(result, pd.DataFrame):
        return pd.DataFrame(result.drop(columns="geometry", errors="ignore"))
    path = Path(result)
    if path.is_dir():
        found = [path / f"claims{s}" for s in (".geojson", ".parquet", ".csv")]
        found = [f for f in found if f.is_file()]
        if not found:
            raise InputError("no claims.geojson, claims.parquet or claims.csv in the folder.",
                             source=path, fix="pass the --out folder of an `agri3s assess` run")
        path = found[0]
    if not path.is_file():
        raise InputError("claims file not found.", source=path, fix="check the path")
    try:
        if path.suffix.lower() == ".csv":
            # text as written: ids keep their leading zeros and 18 digits
            table = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False,
                                na_values=[""])
            for col in NEEDED[:-1]:
                if col in table.columns:
                    table[col] = to_number(table[col])
            return table
        import geopandas as gpd

        frame = (gpd.read_parquet(path) if path.suffix.lower() == ".parquet"
                 else gpd.read_file(path))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the claims ({exc}).", source=path,
                         fix="pass claims.geojson / .parquet / .csv of an `agri3s assess` run"
                         ) from exc
    return pd.DataFrame(frame.drop(columns="geometry", errors="ignore"))


def _column(table: pd.DataFrame, aliases: tuple[str, ...]) -> str | None:
    by_norm = {normalise_header(c): c for c in table.columns}
    return next((by_norm[normalise_header(a)] for a in aliases if normalise_header(a) in by_norm),
                None)


def villages(table: pd.DataFrame, by: str | None = None) -> tuple[pd.Series, str]:
    """The village (or township) of each claim, and how it was found (module docstring).

    ``by``: a column of the claims to group by (its header as written).

    Examples
    --------
    >>> t = pd.DataFrame({"household_id": ["371428101203010007", "H9-0001", "H9-0002"]})
    >>> villages(t)[0].tolist(), villages(t)[1]
    (['371428101203', 'H9', 'H9'], 'household_id prefix')
    """
    if by is not None:
        col = by if by in table.columns else _column(table, (by,))
        if col is None:
            raise InputError(f"column {by!r} is not in the claims (found: "
                             f"{', '.join(map(str, table.columns))}).", source="--by",
                             fix="give a column of claims.csv, e.g. the village column of "
                                 "your parcel file")
        return _text(table[col]), str(col)
    col = _column(table, VILLAGE_ALIASES) or _column(table, TOWNSHIP_ALIASES)
    if col is not None:
        return _text(table[col]), str(col)
    for id_col in ("household_id", "policy_id"):
        if id_col not in table.columns:
            continue
        ids = _text(table[id_col])
        land_code = ids.str.fullmatch(r"\d{18}")
        prefix = ids.str.extract(r"^(.+)[-_./][^-_./]*$", expand=False).fillna("")
        group = ids.str[:12].where(land_code, prefix)
        if (group != "").any():
            return group, f"{id_col} prefix"
    raise InputError("cannot tell the villages: the claims have no village column (village / "
                     "行政村 / 村 / township / 乡镇) and their household / policy ids have no "
                     "prefix.", source="claims",
                     fix="add a village column to the parcel file and assess again, or name "
                         "the column to group by with --by COLUMN")


def _text(values: pd.Series) -> pd.Series:
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    return text.where(~text.isin(["nan", "None", "<NA>"]), "")


def household_table(claims: pd.DataFrame, *, by: str | None = None,
                    statuses: tuple[str, ...] = POSTING_STATUSES) -> pd.DataFrame:
    """One row per household and village: ``village``, ``household``, ``name`` (posted form),
    ``id_number`` (posted form, when the claims have ID numbers), ``household_id``,
    ``parcels``, ``insured_area_mu`` (all the household's parcels in the claims),
    ``damaged_area_mu``, ``loss_rate`` (damaged-area weighted), ``indemnity_cny`` and the
    status flags behind ``note``. Households none of whose claims has a status in
    ``statuses`` are left out.

    A household is its ``household_id``, else its ``policy_id``, else each parcel alone.

    Examples
    --------
    >>> t = pd.DataFrame({"household_id": ["V1-1", "V1-1", "V1-2"], "farmer_name": ["张三丰"] * 2
    ...                   + ["李四"], "declared_area_mu": [2.0, 3.0, 4.0],
    ...                   "damaged_area_mu": [2.0, 3.0, 0.0], "loss_rate": [0.5, 0.4, 0.0],
    ...                   "indemnity_cny": [450.0, 540.0, 0.0],
    ...                   "status": ["estimated", "estimated", "not_affected"]})
    >>> h = household_table(t)
    >>> h[["village", "name", "parcels", "insured_area_mu"]].values.tolist(), h["loss_rate"].round(4).tolist()
    ([['V1', '张*', 2, 5.0]], [0.44])
    """
    missing = [c for c in NEEDED if c not in claims.columns]
    if missing:
        raise InputError(f"column(s) {', '.join(missing)} missing: not a claims table.",
                         source="claims", fix="pass the claims of an `agri3s assess` run")
    village, _ = villages(claims, by)
    key_col = next((c for c in ("household_id", "policy_id", "parcel_id") if c in claims.columns),
                   None)
    # a claim without a household key stands alone
    alone = pd.Series(np.arange(len(claims)), index=claims.index).map("row {}".format)
    key = _text(claims[key_col]) if key_col else alone
    key = key.where(key != "", alone)
    status = _text(claims["status"])
    damaged = to_number(claims["damaged_area_mu"])
    loss = to_number(claims["loss_rate"])
    weighted = (loss * damaged).where(damaged > 0)
    frame = pd.DataFrame({
        "village": village.to_numpy(), "household": key.to_numpy(),
        "name": (posting_name(claims["farmer_name"]) if "farmer_name" in claims.columns
                 else pd.Series("", index=claims.index)).to_numpy(),
        "insured_area_mu": to_number(claims["declared_area_mu"]).to_numpy(),
        "damaged_area_mu": damaged.to_numpy(), "weighted_loss": weighted.to_numpy(),
        "weight": damaged.where(damaged > 0).to_numpy(),
        "indemnity_cny": to_number(claims["indemnity_cny"]).to_numpy(),
        "posted": status.isin(statuses).to_numpy(),
        **{f"is_{s}": (status == s).to_numpy() for s in _NOTES},
    })
    if "farmer_id_number" in claims.columns:
        frame["id_number"] = posting_id_number(claims["farmer_id_number"]).to_numpy()
    if "household_id" in claims.columns:
        frame["household_id"] = _text(claims["household_id"]).to_numpy()
    first = {c: "first" for c in ("name", "id_number", "household_id") if c in frame.columns}
    grouped = frame.groupby(["village", "household"], sort=True)
    out = grouped.agg(parcels=("insured_area_mu", "size"), **{c: (c, f) for c, f in first.items()},
                      insured_area_mu=("insured_area_mu", "sum"),
                      damaged_area_mu=("damaged_area_mu", lambda v: v.sum(min_count=1)),
                      weighted_loss=("weighted_loss", "sum"), weight=("weight", "sum"),
                      indemnity_cny=("indemnity_cny", lambda v: v.sum(min_count=1)),
                      posted=("posted", "any"),
                      **{f"is_{s}": (f"is_{s}", "any") for s in _NOTES})
    out = out[out["posted"]].reset_index()
    out["loss_rate"] = np.where(out["weight"] > 0, out["weighted_loss"] / out["weight"].where(
        out["weight"] > 0, 1.0), np.where(out["damaged_area_mu"].notna(), 0.0, np.nan))
    return out.drop(columns=["weighted_loss", "weight", "posted"])


def _notes(table: pd.DataFrame, lang: str) -> pd.Series:
    k = 0 if lang == "zh" else 1
    sep = "；" if lang == "zh" else "; "
    note = pd.Series("", index=table.index)
    for status, texts in _NOTES.items():
        add = table[f"is_{status}"].to_numpy()
        note = note.where(~add, note.where(note == "", note + sep) + texts[k])
    return note


def _posting_frame(households: pd.DataFrame, lang: str) -> pd.DataFrame:
    """The posted table of one village: numbered rows and a totals row."""
    h = _HEADERS[lang]
    cols = {h["no"]: np.arange(1, len(households) + 1).astype(object),
            h["name"]: households["name"].to_numpy()}
    if "id_number" in households.columns:
        cols[h["id"]] = households["id_number"].to_numpy()
    if "household_id" in households.columns:
        cols[h["household"]] = households["household_id"].to_numpy()
    cols.update({
        h["parcels"]: households["parcels"].to_numpy(),
        h["insured"]: households["insured_area_mu"].round(2).to_numpy(),
        h["damaged"]: households["damaged_area_mu"].round(2).to_numpy(),
        h["loss"]: (households["loss_rate"] * 100).round(1).to_numpy(),
        h["indemnity"]: households["indemnity_cny"].round(2).to_numpy(),
        h["note"]: _notes(households, lang).to_numpy(),
    })
    frame = pd.DataFrame(cols)
    damaged = households["damaged_area_mu"].sum(min_count=1)
    weight = households["damaged_area_mu"].where(households["damaged_area_mu"] > 0)
    rate = ((households["loss_rate"] * weight).sum() / weight.sum()) if weight.sum() > 0 else 0.0
    total = {c: "" for c in frame.columns}
    total.update({h["no"]: h["total"], h["name"]: f"{len(households)} "
                  + ("户" if lang == "zh" else "households"),
                  h["parcels"]: int(households["parcels"].sum()),
                  h["insured"]: round(float(households["insured_area_mu"].sum()), 2),
                  h["damaged"]: round(float(damaged), 2) if pd.notna(damaged) else np.nan,
                  h["loss"]: round(float(rate) * 100, 1),
                  h["indemnity"]: round(float(households["indemnity_cny"].sum()), 2)})
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True)


def _csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading ``'`` (OWASP)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            s = out[col].astype(object)
            risky = s.map(lambda v: isinstance(v, str) and v.startswith(_FORMULA_START))
            out.loc[risky, col] = "'" + s[risky]
    return out


def _file_stem(label: str, used: set[str]) -> str:
    """A village's file name: its text with path and shell characters replaced, unique."""
    stem = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|'`$;&]", "_", label).strip(" .")[:60] or "village"
    candidate, k = stem, 2
    while candidate.lower() in used:
        candidate, k = f"{stem}_{k}", k + 1
    used.add(candidate.lower())
    return candidate


def _event_line(claims: pd.DataFrame, lang: str) -> str:
    def first(col: str) -> str:
        return _text(claims[col]).iloc[0] if col in claims.columns and len(claims) else ""

    kind, date, event_id = first("event_type"), first("event_date")[:10], first("event_id")
    if lang == "zh":
        return f"灾害：{_EVENT_ZH.get(kind, kind)}（{date}，事件 {event_id}）"
    return f"event: {kind} ({date}, {event_id})"


def _write_xlsx(path: Path, frame: pd.DataFrame, title: str, subtitle: str,
                footer: str) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = "公示"
    width = len(frame.columns)

    def put(row: int, col: int, value, bold: bool = False):
        if isinstance(value, float) and np.isnan(value):
            value = None
        cell = ws.cell(row=row, column=col, value=value)
        if isinstance(value, str):
            cell.data_type = "s"  # never a formula, whatever the text starts with
        if bold:
            cell.font = Font(bold=True)
        return cell

    put(1, 1, title, bold=True).font = Font(bold=True, size=14)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    ws.cell(row=1, column=1).alignment = Alignment(horizontal="center")
    put(2, 1, subtitle)
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width)
    for j, name in enumerate(frame.columns, start=1):
        put(3, j, str(name), bold=True)
    values = frame.to_numpy(dtype=object)
    for i, row in enumerate(values, start=4):
        last = i == len(values) + 3
        for j, v in enumerate(row, start=1):
            put(i, j, v.item() if isinstance(v, np.generic) else v, bold=last)
    put(len(values) + 5, 1, footer)
    ws.merge_cells(start_row=len(values) + 5, start_column=1, end_row=len(values) + 5,
                   end_column=width)
    ws.freeze_panes = "A4"
    for j, name in enumerate(frame.columns, start=1):
        longest = max([len(str(name))] + [len(str(v)) for v in values[:, j - 1]])
        ws.column_dimensions[ws.cell(row=3, column=j).column_letter].width = min(
            max(8, longest * 1.6), 40)
    with atomic_path(path) as tmp:
        wb.save(tmp)


def posting_lists(claims: str | Path | pd.DataFrame, out: str | Path, *, by: str | None = None,
                  event: str | None = None, statuses: tuple[str, ...] = POSTING_STATUSES,
                  lang: str = "zh") -> dict:
    """Write the posting list (公示) of every village: ``<village>.xlsx`` and ``<village>.csv``
    in ``out``, and ``villages.csv`` (one row per village: households, totals, file names).

    Parameters
    ----------
    claims : a result folder of ``agri3s assess``, a claims file, or a claims table.
    out : folder for the lists.
    by : the column naming each parcel's village or township; default: found (module docstring).
    event : the event to post when the claims hold several (its ``event_id``).
    statuses : claim statuses that put a household on the list (default: every claim but
        ``not_affected``). A household's insured area counts all its parcels in the claims.
    lang : ``zh`` or ``en`` headers.

    Returns
    -------
    dict: ``files`` (village → ``{"xlsx": path, "csv": path}``), ``summary`` (path of
    ``villages.csv``), ``grouped_by``, ``villages``, ``households``, ``indemnity_cny``.

    Examples
    --------
    >>> posting_lists("out/hail", "notices")["households"]  # doctest: +SKIP
    312
    """
    if lang not in _HEADERS:
        raise InputError(f"unknown language {lang!r}.", source="--lang", fix="use zh or en")
    table = read_claims(claims)
    if "event_id" in table.columns:
        ids = _text(table["event_id"])
        if event is not None:
            if not (ids == event).any():
                raise InputError(f"event {event!r} is not in the claims (found: "
                                 f"{', '.join(sorted(set(ids)))}).", source="--event",
                                 fix="give one of the event ids listed")
            table = table[(ids == event).to_numpy()]
        elif ids.nunique() > 1:
            raise InputError(f"the claims hold {ids.nunique()} events "
                             f"({', '.join(sorted(set(ids)))}); a posting list is per event.",
                             source="claims", fix="choose one with --event ID")
    households = household_table(table, by=by, statuses=statuses)
    _, how = villages(table, by)
    h = _HEADERS[lang]
    out = Path(out)
    files: dict[str, dict[str, Path]] = {}
    rows, used = [], set()
    event_line = _event_line(table, lang)
    for label, group in households.groupby("village", sort=True):
        shown = label or ("未分村" if lang == "zh" else "no village")
        stem = _file_stem(shown, used)
        frame = _posting_frame(group.reset_index(drop=True), lang)
        csv_path, xlsx_path = out / f"{stem}.csv", out / f"{stem}.xlsx"
        with atomic_path(csv_path) as tmp:
            _csv_safe(frame).to_csv(tmp, index=False, encoding="utf-8-sig")
        n, paid = len(group), float(group["indemnity_cny"].sum())
        provisional = bool(group["is_survey"].any() or group["is_no_data"].any())
        if lang == "zh":
            title = f"{shown} 农业保险理赔公示"
            subtitle = (f"{event_line}　{n} 户　赔款合计 {paid:,.2f} 元"
                        + ("（含待查勘暂估）" if provisional else ""))
            footer = "姓名、身份证号已按公示要求脱敏。公示期内如有异议，请向承保机构反映。"
        else:
            title = f"{shown}: agricultural insurance claims posting"
            subtitle = (f"{event_line}; {n} households; indemnity {paid:,.2f} CNY"
                        + (" (with provisional survey estimates)" if provisional else ""))
            footer = ("Names and ID numbers are masked as posting requires. Objections during "
                      "the posting period go to the insurer.")
        _write_xlsx(xlsx_path, frame, title, subtitle, footer)
        files[shown] = {"xlsx": xlsx_path, "csv": csv_path}
        rows.append({h["village"]: shown, h["households"]: n,
                     h["parcels"]: int(group["parcels"].sum()),
                     h["insured"]: round(float(group["insured_area_mu"].sum()), 2),
                     h["damaged"]: round(float(group["damaged_area_mu"].sum()), 2),
                     h["indemnity"]: round(paid, 2), h["file"]: xlsx_path.name})
    summary = out / "villages.csv"
    with atomic_path(summary) as tmp:
        _csv_safe(pd.DataFrame(rows, columns=[h["village"], h["households"], h["parcels"],
                                              h["insured"], h["damaged"], h["indemnity"],
                                              h["file"]])).to_csv(tmp, index=False,
                                                                  encoding="utf-8-sig")
    return {"files": files, "summary": summary, "grouped_by": how, "villages": len(files),
            "households": len(households),
            "indemnity_cny": round(float(households["indemnity_cny"].sum()), 2)}
