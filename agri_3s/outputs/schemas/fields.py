"""The columns of each export, as JSON Schema (draft 2020-12) property definitions.

The source the published schema files in this folder are built from (``python -m
agri_3s.outputs.schemas`` rewrites them; a test checks they are current). Every string a user
can supply is limited to :data:`~agri_3s.types.TEXT_MAX_LENGTH` characters; an empty string and
``null`` both mean "none" (a CSV cannot tell them apart).
"""

from __future__ import annotations

from ...types import REASON_TEXT_MAX_LENGTH, TEXT_MAX_LENGTH

#: ``;``-joined reason codes (``agri_3s/reasons.py``; README lists them), or empty.
CODES = r"^([A-Z][A-Z0-9_]*(;[A-Z][A-Z0-9_]*)*)?$"
#: ``;``-joined lower-case repair names, or empty.
REPAIRS = r"^([a-z][a-z0-9_]*(;[a-z][a-z0-9_]*)*)?$"
#: ``;``-joined ISO dates, or empty.
DATES = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}(;[0-9]{4}-[0-9]{2}-[0-9]{2})*)?$"
#: A masked name (``privacy.mask_name``): first character, ``*`` …, last character.
MASKED_NAME = r"^(\*|.\*+.?)?$"
#: A masked ID number (``privacy.mask_id_number``): ``*`` …, the last four characters.
MASKED_ID = r"^(\*{0,4}|\*+.{4})$"


def text(description: str, *, max_length: int = TEXT_MAX_LENGTH, pattern: str | None = None,
         enum: list[str] | None = None, nullable: bool = True) -> dict:
    """A string property (``null`` and ``""`` allowed when ``nullable``)."""
    prop: dict = {"type": ["string", "null"] if nullable else "string",
                  "description": description, "maxLength": max_length}
    if pattern:
        prop["pattern"] = pattern
    if enum:
        prop["enum"] = [*enum, "", None] if nullable else list(enum)
    if not nullable:
        prop["minLength"] = 1
    return prop


def number(description: str, *, minimum: float | None = None, maximum: float | None = None,
           integer: bool = False, nullable: bool = True) -> dict:
    """A numeric property; ``null`` where not computed (NaN in GeoParquet / GeoPackage)."""
    kind = "integer" if integer else "number"
    prop: dict = {"type": [kind, "null"] if nullable else kind, "description": description}
    if minimum is not None:
        prop["minimum"] = minimum
    if maximum is not None:
        prop["maximum"] = maximum
    return prop


def share(description: str) -> dict:
    """A fraction in [0, 1]."""
    return number(description, minimum=0.0, maximum=1.0)


def date(description: str) -> dict:
    """An ISO date (``YYYY-MM-DD``)."""
    return {"type": ["string", "null"], "format": "date", "description": description}


def boolean(description: str) -> dict:
    return {"type": ["boolean", "null"], "description": description}


def reason_text(language: str) -> dict:
    return text(f"the reasons in {language}, in the order of the codes",
                max_length=REASON_TEXT_MAX_LENGTH)


# --- the parcel's own columns and its input check (every export starts with them)
PARCEL = {
    "row_number": number("the row / feature number in the parcel file (1-based)", minimum=1,
                         integer=True, nullable=False),
    "parcel_id": text("the parcel id as given (地块编号; empty only on a rejected row)"),
    "policy_id": text("the policy id (保单号)"),
    "household_id": text("the insured household (农户) id"),
    "crop": text("the declared crop code (crop calendar, e.g. winter_wheat)"),
    "declared_area_mu": number("the insured area declared on the policy, in mu (亩)"),
    "sum_insured_cny_per_mu": number("the sum insured per mu, in CNY"),
    "farmer_name": text("the farmer's name, masked (张*丰) unless written with --include-pii",
                        pattern=MASKED_NAME),
    "farmer_id_number": text("the farmer's ID number, masked to its last four characters "
                             "unless written with --include-pii", pattern=MASKED_ID),
}
CHECK = {
    "validity": text("the input check: ok | repaired (usable after the repairs listed) | "
                     "rejected (not usable; see validity_reasons)",
                     enum=["ok", "repaired", "rejected"], nullable=False),
    "validity_reasons": text("reason codes of the input check", pattern=CODES),
    "validity_reasons_zh": reason_text("Chinese"),
    "validity_reasons_en": reason_text("English"),
    "repairs": text("repairs made to the geometry (e.g. dropped_z)", pattern=REPAIRS),
    "area_mu": number("the area of the parcel's polygon, in mu (equal-area)", minimum=0.0),
    "area_ratio": number("measured / declared area", minimum=0.0),
    "missing_attributes": text("contract attributes the row lacks (e.g. crop;declared_area_mu)",
                               pattern=r"^([a-z][a-z0-9_]*(;[a-z][a-z0-9_]*)*)?$"),
}
#: What ``agri3s parcels check`` adds: the rule of ``agri3s parcels overlaps`` inside the file.
OVERLAPS = {
    "overlapping_parcels": text("ids of the parcels of the file this one overlaps (';'-joined; "
                                "'row N' for one without an id)"),
}
#: Columns a run with ``pool_units`` adds (连片 monitoring units).
UNITS = {
    "unit_id": text("the monitoring unit the parcel was judged in (U- + 12 hex digits)",
                    pattern=r"^(U-[0-9a-f]{12})?$"),
    "pooled": boolean("whether the unit pools several parcels"),
    "unit_n_parcels": number("parcels in the unit", minimum=1, integer=True),
    "has_unit_result": boolean("whether the unit had a result"),
}
SCHEMA_VERSION_FIELD = {"schema_version": {
    "type": "string", "description": "version of this schema the row follows",
    "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"}}

VERDICT = {
    "status": text("green accepted | yellow review | red rejected | no_data (no pixels, too "
                   "few clear looks, or none in the peak window) | invalid (rejected on input)",
                   enum=["green", "yellow", "red", "no_data", "invalid"], nullable=False),
    "reasons": text("reason codes of the verdict", pattern=CODES),
    "reasons_zh": reason_text("Chinese"),
    "reasons_en": reason_text("English"),
    "planted_fraction": share("share of the parcel with the crop's canopy"),
    "emergence_date": date("first look after the seedbed with the crop emerged"),
    "peak_ndvi": number("highest NDVI p75 of a clear look in the peak window", minimum=-1.0,
                        maximum=1.0),
    "peak_date": date("date of peak_ndvi"),
    "measured_area_mu": number("planted area measured from imagery, in mu", minimum=0.0),
    "parcel_area_mu": number("the polygon's area used for the verdict, in mu", minimum=0.0),
    "clear_observations": number("clear looks in the season (a whole number)", minimum=0.0),
    "unobserved": text("windows of the crop calendar without a clear look",
                       pattern=r"^((sowing|peak|harvest)(;(sowing|peak|harvest))*)?$"),
    "full_pixels": number("10 m pixels wholly inside the buffered parcel (a whole number)",
                          minimum=0.0),
    "pixel_rule": text("how the parcel's pixels were weighted",
                       enum=["buffered", "unbuffered", "whole_pixels", "none"]),
    "crop_model_p_declared": share("the crop model's probability of the declared crop"),
    "crop_model_crop": text("the crop the crop model finds likeliest"),
    "decided_by": text("what decided the verdict (empty: no verdict)",
                       enum=["rules", "rules+crop_model", "crop_model"]),
    "p_declared": share("calibrated probability that the declared crop was planted"),
    "confidence": share("calibrated probability that the verdict is right"),
}

CLAIM = {
    "claim_id": text("stable claim id: the same event, policy and parcel give the same id",
                     pattern=r"^CLM-[0-9A-F]{16}$", nullable=False),
    "event_id": text("the event's id (event file)", nullable=False),
    "event_type": text("the peril", enum=["hail", "flood", "drought", "lodging", "freeze"],
                       nullable=False),
    "event_date": date("the event's (first) day"),
    "baseline_method": text("what the loss was measured against (empty: not estimated)",
                            enum=["neighbours+own_pre", "far_neighbours+own_pre",
                                  "own_past+own_pre"]),
    "soil_ndvi": number("the parcel's bare-soil NDVI level", minimum=-1.0, maximum=1.0),
    "soil_source": text("where soil_ndvi came from",
                        enum=["own", "neighbours", "batch", "param"]),
    "loss_rate": share("estimated loss rate in the damaged area (损失率)"),
    "loss_rate_low": share("lower end of the loss rate's range"),
    "loss_rate_high": share("upper end of the loss rate's range"),
    "parcel_loss_rate": number("loss over the whole parcel (before the damaged share); may "
                               "fall below 0 where the parcel did better than its baseline"),
    "damaged_area_mu": number("damaged area, in mu (capped at the declared area)",
                              minimum=0.0),
    "flooded_fraction": share("share of the parcel seen under water (floods)"),
    "footprint_share": share("share of the parcel inside the event's footprint"),
    "loss_grade": text("none | light | moderate | severe | total | unknown",
                       enum=["none", "light", "moderate", "severe", "total", "unknown"],
                       nullable=False),
    "growth_stage": text("the crop's growth stage on the event date (crop calendar)"),
    "stage_share": share("the stage's share of the sum insured"),
    "payout_threshold": share("policy term: no payout below this loss rate (起赔点)"),
    "total_loss_at": share("policy term: a loss rate from here is a total loss (全损标准)"),
    "deductible": share("policy term: deductible share (免赔率)"),
    "indemnity_cny": number("indemnity in CNY (provisional while status is survey)",
                            minimum=0.0),
    "status": text("estimated (paid as estimated) | below_threshold | survey (a field survey "
                   "decides; the indemnity is provisional) | not_affected | no_data | invalid "
                   "(rejected on input)",
                   enum=["estimated", "below_threshold", "survey", "not_affected", "no_data",
                         "invalid"], nullable=False),
    "n_neighbours": number("healthy neighbours the baseline used", minimum=0, integer=True),
    "reasons": text("reason codes of the estimate", pattern=CODES),
    "reasons_zh": reason_text("Chinese"),
    "reasons_en": reason_text("English"),
    "imagery_dates": text("dates of the looks the estimate used, ';'-joined",
                          max_length=REASON_TEXT_MAX_LENGTH, pattern=DATES),
}

#: Per export: its title, its columns (every one agri_3s may write), the ones always present.
EXPORTS: dict[str, dict] = {
    "verdicts": {
        "title": "agri_3s underwriting verdict",
        "description": "One parcel's verdict: a row of verdicts.csv, or the properties of a "
                       "feature of verdicts.geojson / .gpkg / .parquet. Columns of the user's "
                       "parcel file that agri_3s does not know are passed through (any name; "
                       "text at most TEXT_MAX_LENGTH characters).",
        "properties": {**PARCEL, **CHECK, **UNITS, **VERDICT, **SCHEMA_VERSION_FIELD},
        "required": ["row_number", "parcel_id", *CHECK, "policy_id", "crop", "declared_area_mu",
                     *VERDICT, "schema_version"],
    },
    "claims": {
        "title": "agri_3s claim estimate",
        "description": "One parcel's loss estimate for one event: a row of claims.csv, or the "
                       "properties of a feature of claims.geojson / .gpkg / .parquet. Unknown "
                       "columns of the user's parcel file are passed through as for verdicts.",
        "properties": {**PARCEL, **CHECK, **CLAIM, **SCHEMA_VERSION_FIELD},
        "required": ["row_number", "parcel_id", *CHECK, "policy_id", "household_id", "crop",
                     "declared_area_mu", "sum_insured_cny_per_mu", *CLAIM, "schema_version"],
    },
    "parcels_report": {
        "title": "agri_3s parcel check report",
        "description": "One row of parcels_report.csv (agri3s parcels check): the input check "
                       "of one row of the parcel file, then the row's own columns (no "
                       "geometry).",
        "properties": {**PARCEL, **CHECK, **OVERLAPS},
        "required": ["row_number", "parcel_id", *CHECK],
    },
}
