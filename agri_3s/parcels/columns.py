"""Column mapping: the headers insurers, village collectors and land-rights registers (土地确权)
use → the parcels contract of DESIGN.md; Chinese crop names → crop codes; hectares → mu.

The user can always override: ``columns={"地块号": "parcel_id"}`` (source header → our name), or
on the command line ``--columns 地块号=parcel_id,亩数=declared_area_mu``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import InputError
from ..units import M2_PER_HA, m2_to_mu

#: Our column → the headers recognised for it, in priority order (compared after
#: :func:`normalise_header`: lower case, no spaces, full-width brackets made ASCII).
ALIASES: dict[str, tuple[str, ...]] = {
    "parcel_id": ("parcel_id", "地块编号", "地块编码", "地块代码", "地块号", "地块id", "地块标识码",
                  "宗地编号", "宗地代码", "dkbm", "plot_id", "field_id", "parcelid"),
    "policy_id": ("policy_id", "保单号", "保单编号", "保险单号", "保单号码", "policy_no", "policyno"),
    "household_id": ("household_id", "农户编号", "户编号", "户号", "承包方编码", "cbfbm"),
    "farmer_name": ("farmer_name", "农户姓名", "户主姓名", "被保险人", "被保险人姓名", "姓名", "户主",
                    "承包方名称", "cbfmc"),
    "farmer_id_number": ("farmer_id_number", "身份证号", "身份证号码", "证件号码", "证件号", "身份证",
                         "id_number"),
    "crop": ("crop", "作物", "作物名称", "作物类型", "种植作物", "投保作物", "标的", "保险标的"),
    "declared_area_mu": ("declared_area_mu", "area_mu", "面积(亩)", "面积/亩", "投保面积(亩)",
                         "投保面积", "承保面积(亩)", "承保面积", "种植面积(亩)", "种植面积",
                         "申报面积(亩)", "申报面积", "地块面积(亩)", "地块面积", "亩数", "面积"),
    "declared_area_ha": ("declared_area_ha", "area_ha", "面积(公顷)", "面积/公顷", "投保面积(公顷)",
                         "承保面积(公顷)", "种植面积(公顷)", "公顷数"),
    "sum_insured_cny_per_mu": ("sum_insured_cny_per_mu", "单位保险金额", "单位保险金额(元/亩)",
                               "每亩保险金额", "保险金额(元/亩)", "保险金额/亩", "亩保额",
                               "保额(元/亩)", "单位保额"),
    #: The parcel's total sum insured (元); per-mu figure derived from it when not given.
    "sum_insured_cny": ("sum_insured_cny", "保险金额", "保险金额(元)", "保额", "保额(元)", "总保额"),
}

#: Geometry columns of tables (CSV / XLSX), recognised the same way.
GEOMETRY_ALIASES: dict[str, tuple[str, ...]] = {
    "wkt": ("wkt", "geometry", "geom", "the_geom", "shape", "几何", "图形", "几何图形"),
    "vertices": ("vertices", "coordinates", "coords", "boundary", "polygon", "坐标", "坐标串",
                 "边界坐标", "界址点坐标", "顶点坐标", "拐点坐标", "地块坐标"),
    "lon": ("lon", "lng", "long", "longitude", "经度", "x", "x坐标", "东坐标", "easting"),
    "lat": ("lat", "latitude", "纬度", "y", "y坐标", "北坐标", "northing"),
    "vertex_order": ("vertex_order", "vertex", "order", "seq", "point_no", "序号", "点号", "顶点号",
                     "顶点序号", "点序", "界址点号", "拐点号"),
}

#: Per-parcel policy terms read by the claims (long names a DBF truncates too).
POLICY_COLUMNS = ("payout_threshold", "total_loss_at", "deductible", "use_stage_caps")

#: A DBF (the attribute file of a Shapefile) stores at most 10 bytes per column name: GDAL and
#: ArcGIS cut longer names (``declared_area_mu`` → ``declared_a``), Chinese ones mid-character.
DBF_NAME_BYTES = 10
#: Encodings a DBF's names may be cut in (UTF-8: 3 bytes per Chinese character, GBK: 2).
_DBF_ENCODINGS = ("utf-8", "gb18030")

#: Headers naming the village (行政村) or the township (乡镇) of a parcel, for the posting list.
VILLAGE_ALIASES = ("village", "village_name", "行政村", "村", "村名", "村庄", "所在村", "村委会",
                   "村居", "社区")
TOWNSHIP_ALIASES = ("township", "town", "乡镇", "乡镇名称", "乡镇(街道)", "乡(镇)", "镇", "乡",
                    "街道", "所在乡镇")

#: Crop codes of the built-in calendar (DESIGN.md).
CROP_CODES = ("winter_wheat", "summer_maize", "spring_maize", "rice_single", "rice_early",
              "rice_late", "soybean", "cotton", "rapeseed")

#: Chinese crop names → crop codes. Ambiguous names take the most common insured crop in China's
#: main grain areas (小麦 → winter wheat; 玉米 → summer maize; 水稻 → single-season rice).
CROP_NAMES: dict[str, str] = {
    "小麦": "winter_wheat", "冬小麦": "winter_wheat", "冬麦": "winter_wheat",
    "玉米": "summer_maize", "夏玉米": "summer_maize", "春玉米": "spring_maize",
    "水稻": "rice_single", "中稻": "rice_single", "一季稻": "rice_single", "单季稻": "rice_single",
    "单季晚稻": "rice_single", "早稻": "rice_early", "双季早稻": "rice_early",
    "晚稻": "rice_late", "双季晚稻": "rice_late",
    "大豆": "soybean", "黄豆": "soybean", "棉花": "cotton", "油菜": "rapeseed", "油菜籽": "rapeseed",
}

_BRACKETS = str.maketrans({"（": "(", "）": ")", "／": "/", "　": " "})


def normalise_header(name: object) -> str:
    """Header as compared with :data:`ALIASES`. ``normalise_header(" 面积（亩） ")`` → ``"面积(亩)"``"""
    return re.sub(r"\s+", "", str(name).translate(_BRACKETS)).lower()


def parse_column_spec(spec: str | dict | None) -> dict[str, str]:
    """``"地块号=parcel_id,亩数=declared_area_mu"`` → ``{"地块号": "parcel_id", …}``.

    Examples
    --------
    >>> parse_column_spec("地块号=parcel_id, 亩数=declared_area_mu")
    {'地块号': 'parcel_id', '亩数': 'declared_area_mu'}
    """
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {str(k): str(v) for k, v in spec.items()}
    out = {}
    for item in str(spec).replace("，", ",").split(","):
        if not item.strip():
            continue
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise InputError(f"column mapping {item!r} is not HEADER=column.", source="--columns",
                             fix="write it as 地块号=parcel_id,亩数=declared_area_mu")
        out[src.strip()] = dst.strip()
    return out


def dbf_truncations(aliases: dict[str, tuple[str, ...]] = ALIASES) -> dict[str, str]:
    """``{normalised truncated header: our name}`` for every recognised header longer than a
    DBF column name may be (:data:`DBF_NAME_BYTES`), cut as a DBF cuts it in UTF-8 or GBK
    (a character split by the cut is dropped). Where two names cut alike, the first in
    priority order wins — the contract's unit: ``declared_a`` is ``declared_area_mu``, not
    ``declared_area_ha``; ``sum_insure`` is the sum insured per mu, not the parcel's total
    (:func:`dbf_alternatives` says which other names a cut could be).

    Examples
    --------
    >>> t = dbf_truncations()
    >>> t["declared_a"], t["sum_insure"], t["面积(亩"], t["投保面积("]
    ('declared_area_mu', 'sum_insured_cny_per_mu', 'declared_area_mu', 'declared_area_mu')
    """
    return {cut: names[0] for cut, names in _dbf_cuts(aliases).items()}


def dbf_alternatives(header: str) -> list[str]:
    """Our other names a DBF-truncated ``header`` could have been cut from.

    Examples
    --------
    >>> dbf_alternatives("declared_a"), dbf_alternatives("household_")
    (['declared_area_ha'], [])
    """
    return _dbf_cuts(ALIASES).get(normalise_header(header), [])[1:]


def _dbf_cuts(aliases: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    names = [(ours, a) for ours, group in aliases.items() for a in (ours, *group)]
    names += [(c, c) for c in POLICY_COLUMNS]
    for ours, alias in names:
        for enc in _DBF_ENCODINGS:
            raw = alias.encode(enc)
            if len(raw) <= DBF_NAME_BYTES:
                continue
            cut = normalise_header(raw[:DBF_NAME_BYTES].decode(enc, errors="ignore"))
            if ours not in out.setdefault(cut, []):
                out[cut].append(ours)
    # a cut that is itself a full recognised name is that name, not a truncation
    for _, alias in names:
        out.pop(normalise_header(alias), None)
    # A cut shared by different columns is guessed only between area units (a hectare figure
    # read as mu is off 15x, which AREA_MISMATCH shows) and for our own ``sum_insure``; not
    # between a per-mu and a total sum insured in Chinese (no check would catch it) nor across
    # kinds (承包方编码 / 承包方名称: a name read as an id would escape the PII masking).
    return {cut: names for cut, names in out.items()
            if len(names) == 1 or cut == "sum_insure"
            or set(names) == {"declared_area_mu", "declared_area_ha"}}


def find_columns(headers, aliases: dict[str, tuple[str, ...]], user: dict[str, str] | None = None,
                 *, truncated: dict[str, str] | None = None) -> dict[str, str]:
    """Map source headers to our names: the user's mapping first, then the first alias found,
    then (``truncated``, from :func:`dbf_truncations`) a DBF's cut form of an alias.

    Returns ``{source_header: our_name}``; a name already present as a header is not remapped.

    Examples
    --------
    >>> find_columns(["地块编号", "作物", "面积（亩）"], ALIASES)
    {'地块编号': 'parcel_id', '作物': 'crop', '面积（亩）': 'declared_area_mu'}
    >>> find_columns(["parcel_id", "declared_a"], ALIASES, truncated=dbf_truncations())
    {'declared_a': 'declared_area_mu'}
    """
    headers = [str(h) for h in headers]
    user = dict(user or {})
    unknown = [h for h in user if h not in headers]
    if unknown:
        raise InputError(f"column(s) {', '.join(unknown)} given in the column mapping are not in "
                         f"the file (found: {', '.join(headers)}).", source="--columns",
                         fix="use the headers exactly as they appear in the file")
    mapping = dict(user)
    taken = set(user.values())
    by_norm: dict[str, str] = {}
    for h in headers:
        by_norm.setdefault(normalise_header(h), h)
    for ours, names in aliases.items():
        if ours in taken:
            continue
        if ours in headers:  # already named ours: keep it
            taken.add(ours)
            continue
        for alias in names:
            src = by_norm.get(normalise_header(alias))
            if src is not None and src not in mapping:
                mapping[src] = ours
                taken.add(ours)
                break
    for h in headers if truncated else ():
        ours = truncated.get(normalise_header(h))
        if ours is not None and ours not in taken and h not in mapping and h not in aliases:
            mapping[h] = ours
            taken.add(ours)
    return mapping


def apply_columns(df: pd.DataFrame, user: dict[str, str] | None = None, *,
                  dbf: bool = False) -> tuple[pd.DataFrame, dict]:
    """Rename recognised headers, translate crop names and hectares; nothing is dropped.

    ``dbf``: the table comes from a DBF, so headers cut at 10 bytes are recognised too
    (:func:`dbf_truncations`; :func:`truncated_in` tells which were).

    * ``crop``: Chinese names → codes (the user's text kept in ``crop_input`` when changed);
      unknown values are kept as given (validation flags them).
    * ``declared_area_ha`` → ``declared_area_mu`` (× 15) when no mu column exists.
    * ``sum_insured_cny`` (the parcel's total) → ``sum_insured_cny_per_mu`` when absent.

    Returns the new table and the ``{source: ours}`` mapping applied.

    Examples
    --------
    >>> df, m = apply_columns(pd.DataFrame({"地块编号": ["A"], "作物": ["冬小麦"], "面积(公顷)": ["2"]}))
    >>> df.loc[0, "parcel_id"], df.loc[0, "crop"], float(df.loc[0, "declared_area_mu"])
    ('A', 'winter_wheat', 30.0)
    """
    mapping = find_columns(df.columns, {**ALIASES, **{c: () for c in POLICY_COLUMNS}}, user,
                           truncated=dbf_truncations() if dbf else None)
    # a user mapping onto a name that already exists would silently hide that column
    clash = [dst for src, dst in mapping.items() if dst in df.columns and dst != src]
    if clash:
        raise InputError(f"the column mapping renames a header to {', '.join(clash)}, which the "
                         f"file already has.", source="--columns",
                         fix="map only headers whose target name is not already in the file")
    out = df.rename(columns=mapping)
    if "crop" in out.columns:
        raw = out["crop"]
        text = raw.map(lambda v: v.strip() if isinstance(v, str) else v)
        coded = text.map(lambda v: CROP_NAMES.get(v, v) if isinstance(v, str) else v)
        if (coded.astype(str) != raw.astype(str)).any() and "crop_input" not in out.columns:
            out["crop_input"] = raw
        out["crop"] = coded
    if "declared_area_mu" in out.columns:
        out["declared_area_mu"] = to_number(out["declared_area_mu"])
    elif "declared_area_ha" in out.columns:
        out["declared_area_mu"] = m2_to_mu(to_number(out["declared_area_ha"]) * M2_PER_HA)
    if "sum_insured_cny_per_mu" in out.columns:
        out["sum_insured_cny_per_mu"] = to_number(out["sum_insured_cny_per_mu"])
    elif "sum_insured_cny" in out.columns and "declared_area_mu" in out.columns:
        out["sum_insured_cny_per_mu"] = to_number(out["sum_insured_cny"]) / out["declared_area_mu"]
    return out, mapping


def truncated_in(mapping: dict[str, str], user: dict[str, str] | None = None) -> dict[str, str]:
    """The entries of a column mapping that recognised a DBF-truncated header (not a full alias
    nor the user's own mapping).

    Examples
    --------
    >>> truncated_in({"地块编号": "parcel_id", "declared_a": "declared_area_mu"})
    {'declared_a': 'declared_area_mu'}
    """
    cuts = dbf_truncations()
    full = {normalise_header(a) for ours, group in ALIASES.items() for a in (ours, *group)}
    return {src: ours for src, ours in mapping.items() if src not in (user or {})
            and normalise_header(src) in cuts and normalise_header(src) not in full}


def to_number(values: pd.Series) -> pd.Series:
    """Numbers from cells like ``"3.2"``, ``"3.2亩"``, ``"1,200"``, ``" 4 "``; NaN when none.

    Examples
    --------
    >>> to_number(pd.Series(["3.2亩", "1,200", "", None])).tolist()
    [3.2, 1200.0, nan, nan]
    """
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)

    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return float("nan")
        if isinstance(v, (int, float)):
            return float(v)
        m = re.search(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", str(v).replace(",", ""))
        return float(m.group()) if m else float("nan")

    return values.map(one).astype(float)
