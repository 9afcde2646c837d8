"""Policy terms → indemnity (赔款), following common Chinese crop-insurance wordings, and
survey routing (查勘) — array code over the batch, terms per parcel.

    indemnity = sum insured per mu × stage share × applied loss rate × damaged area × (1 − deductible)

* no payout below ``payout_threshold`` (起赔点, commonly 30 %);
* a loss rate at or above ``total_loss_at`` (全损标准, commonly 70–80 %) is paid as a total loss;
* ``deductible`` is an absolute deductible rate (绝对免赔率) taken off the payout;
* the stage share (不同生长期最高赔偿比例) comes from the crop calendar's growth stage on the event
  date, when ``use_stage_caps``;
* the damaged area is capped at the declared (insured) area.

All are policy parameters (job file ``[policy]`` or per-parcel columns), never constants.

Survey routing: when a claim's loss range [``loss_rate_low``, ``loss_rate_high``] straddles its
policy's payout threshold or total-loss level, the imagery cannot say on which side the parcel
lies, so it goes to a field survey (``status = survey``, reason ``SURVEY_REQUIRED``). Its
``indemnity_cny`` stays the point estimate's value — the best single figure for reserving —
but is provisional: the adjuster's measurement on site decides what is paid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd

from ..errors import InputError
from ..types import SCHEMA_VERSION
from .calendar import calendar_for
from .loss import LossParams, claim_ids, loss_grades
from .reason_arrays import BatchReasons

TERM_COLUMNS = ("payout_threshold", "total_loss_at", "deductible", "use_stage_caps")


@dataclass(frozen=True)
class PolicyTerms:
    payout_threshold: float = 0.30
    total_loss_at: float = 0.80
    deductible: float = 0.0
    use_stage_caps: bool = True

    def __post_init__(self):
        for name in ("payout_threshold", "total_loss_at", "deductible"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise InputError(f"policy term {name} = {v!r} is not a rate in [0, 1].",
                                 source="policy terms", fix=f"write {name} as e.g. 0.3 for 30 %")
        if self.total_loss_at < self.payout_threshold:
            raise InputError("total_loss_at is below payout_threshold.", source="policy terms")

    def override(self, values: dict) -> PolicyTerms:
        """These terms with the non-empty ``values`` (e.g. a parcel row's columns) applied."""
        names = {f.name for f in fields(self)}
        given = {k: v for k, v in values.items()
                 if k in names and v is not None and not (isinstance(v, float) and math.isnan(v))}
        return replace(self, **given) if given else self


def parcel_terms(parcels: pd.DataFrame, terms: PolicyTerms) -> dict[str, np.ndarray]:
    """The policy terms of every parcel: its own columns (``payout_threshold``,
    ``total_loss_at``, ``deductible``, ``use_stage_caps``) where given, else ``terms``.

    Examples
    --------
    >>> t = parcel_terms(pd.DataFrame({"deductible": [0.1, None]}), PolicyTerms())
    >>> t["deductible"].tolist(), t["payout_threshold"].tolist()
    ([0.1, 0.0], [0.3, 0.3])
    """
    n = len(parcels)
    out: dict[str, np.ndarray] = {}
    for name in TERM_COLUMNS:
        default = getattr(terms, name)
        if name not in parcels:
            out[name] = np.full(n, default, dtype=bool if name == "use_stage_caps" else float)
            continue
        given = pd.Series(parcels[name].to_numpy(), dtype=object)
        if name == "use_stage_caps":
            text = given.astype(str).str.strip().str.lower()
            out[name] = np.where(given.isna(), default,
                                 ~text.isin(["false", "0", "0.0", "no", "否"])).astype(bool)
            continue
        values = pd.to_numeric(given, errors="coerce").to_numpy(np.float64)
        bad = given.notna().to_numpy() & ~(np.isfinite(values) & (values >= 0) & (values <= 1))
        if bad.any():
            _bad_rows(parcels, bad, f"{name} is not a rate in [0, 1]",
                      f"write {name} as e.g. 0.3 for 30 %")
        out[name] = np.where(np.isfinite(values), values, default)
    crossed = out["total_loss_at"] < out["payout_threshold"]
    if crossed.any():
        _bad_rows(parcels, crossed, "total_loss_at is below payout_threshold",
                  "give total_loss_at ≥ payout_threshold (e.g. 0.8 and 0.3)")
    return out


def _bad_rows(parcels: pd.DataFrame, bad: np.ndarray, what: str, fix: str):
    ids = (parcels["parcel_id"] if "parcel_id" in parcels else pd.Series(parcels.index))
    first = ids.to_numpy()[bad][:5]
    raise InputError(f"{what} for {int(bad.sum())} parcel(s) (first: "
                     f"{', '.join(map(str, first))}).", source=parcels.attrs.get(
                         "source", "parcels"), row=first[0], fix=fix)


def applied_loss_rates(loss_rate, payout_threshold, total_loss_at) -> np.ndarray:
    """The loss rate each policy pays: 0 below its threshold (or unknown), 1 from its total-loss
    level, else the rate.

    >>> applied_loss_rates(np.array([0.25, 0.5, 0.85, np.nan]), 0.3, 0.8).tolist()
    [0.0, 0.5, 1.0, 0.0]
    """
    rate = np.asarray(loss_rate, np.float64)
    pays = np.isfinite(rate) & (rate >= payout_threshold)
    return np.where(pays, np.where(rate >= total_loss_at, 1.0, rate), 0.0)


def indemnities(sum_insured_cny_per_mu, loss_rate, damaged_area_mu, declared_area_mu,
                payout_threshold, total_loss_at, deductible, stage_share) -> np.ndarray:
    """Payouts in CNY (rounded to the fen) for arrays of parcels; the stage share is 1 where
    stage caps are off (pass 1.0 there). An unknown damaged area pays nothing.

    >>> indemnities(500, np.array([0.5, 0.2]), 4.0, 5.0, 0.3, 0.8, 0.1, 0.8).tolist()
    [720.0, 0.0]
    """
    area = np.fmin(np.asarray(damaged_area_mu, np.float64), declared_area_mu)
    amount = (np.asarray(sum_insured_cny_per_mu, np.float64) * stage_share
              * applied_loss_rates(loss_rate, payout_threshold, total_loss_at) * area
              * (1.0 - np.asarray(deductible, np.float64)))
    return np.round(np.where(np.isfinite(amount), amount, 0.0), 2) + 0.0


def applied_loss_rate(loss_rate: float, terms: PolicyTerms) -> float:
    """The loss rate the policy pays: 0 below the threshold, 1 from total loss, else the rate.

    >>> applied_loss_rate(0.25, PolicyTerms()), applied_loss_rate(0.5, PolicyTerms())
    (0.0, 0.5)
    >>> applied_loss_rate(0.85, PolicyTerms())
    1.0
    """
    return float(applied_loss_rates(loss_rate, terms.payout_threshold, terms.total_loss_at))


def indemnity_cny(sum_insured_cny_per_mu: float, loss_rate: float, damaged_area_mu: float,
                  declared_area_mu: float, terms: PolicyTerms, stage_share: float = 1.0) -> float:
    """The payout in CNY, rounded to the fen.

    >>> indemnity_cny(500, 0.5, 4.0, 5.0, PolicyTerms(deductible=0.1), stage_share=0.8)
    720.0
    """
    share = stage_share if terms.use_stage_caps else 1.0
    return float(indemnities(sum_insured_cny_per_mu, loss_rate, damaged_area_mu,
                             declared_area_mu, terms.payout_threshold, terms.total_loss_at,
                             terms.deductible, share))


def _stages(crops: np.ndarray, calendars: dict, day) -> tuple[np.ndarray, np.ndarray]:
    """Growth stage name and share of the sum insured on ``day``, per parcel (one calendar
    look-up per crop)."""
    names = np.full(len(crops), "", dtype=object)
    shares = np.ones(len(crops))
    for crop in pd.unique(crops):
        cal = calendar_for(calendars, crop)
        stage = cal.stage_on(day) if cal else None
        if stage:
            names[crops == crop], shares[crops == crop] = stage.name, stage.share
    return names, shares


def _straddles(low, high, level) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (low < level) & (high >= level)


def claims_table(estimates: pd.DataFrame, parcels: pd.DataFrame, event, terms: PolicyTerms,
                 calendars: dict, params: LossParams | None = None) -> pd.DataFrame:
    """Claim estimates (DESIGN.md contract) from loss estimates, parcels and policy terms, one
    row per parcel in the same order.

    Per-parcel columns ``payout_threshold``, ``total_loss_at``, ``deductible``,
    ``use_stage_caps`` override ``terms``. Statuses: ``estimated`` (paid as estimated),
    ``below_threshold``, ``survey`` (the loss range straddles the payout threshold or the
    total-loss level, or an edge parcel of the footprint may have a payable loss: a field
    survey decides; the indemnity shown is provisional), ``not_affected``, ``no_data``.

    Examples
    --------
    >>> claims_table(estimate_losses(series, parcels, event), parcels, event,
    ...              PolicyTerms(), load_calendars())                    # doctest: +SKIP
    """
    params = params or LossParams()
    n = len(parcels)
    t = parcel_terms(parcels, terms)
    crops = parcels["crop"].astype(str).to_numpy()
    stage, share = _stages(crops, calendars, event.date)
    share = np.where(t["use_stage_caps"], share, 1.0)
    rate = estimates["loss_rate"].to_numpy(np.float64)
    low = estimates["loss_rate_low"].to_numpy(np.float64)
    high = estimates["loss_rate_high"].to_numpy(np.float64)
    area = parcels["area_mu"].to_numpy(np.float64) if "area_mu" in parcels else np.full(n, np.nan)
    declared = parcels["declared_area_mu"].to_numpy(np.float64)
    damaged = estimates["damaged_fraction"].to_numpy(np.float64) * np.fmin(area, declared)
    status = estimates["status"].to_numpy(object).copy()
    thr, tot = t["payout_threshold"], t["total_loss_at"]
    priced = np.isin(status, ["estimated", "edge"])
    si = pd.to_numeric(parcels["sum_insured_cny_per_mu"], errors="coerce").to_numpy(np.float64)
    pay = np.where(priced, indemnities(si, rate, damaged, declared, thr, tot, t["deductible"],
                                       share), 0.0)

    reasons = BatchReasons.of(estimates)
    hit = status == "estimated"
    at_thr, at_tot = _straddles(low, high, thr) & hit, _straddles(low, high, tot) & hit
    survey = at_thr | at_tot
    below = hit & ~survey & (rate < thr)
    total = hit & (rate >= tot)
    pct = np.round(rate, 2)
    reasons.add("BELOW_THRESHOLD", below, rate=pct, threshold=thr)
    reasons.add("TOTAL_LOSS", total & ~survey, rate=pct, total=tot)
    level_zh = np.select([at_thr & at_tot, at_thr], ["起赔点和全损标准", "起赔点"], "全损标准")
    level_en = np.select([at_thr & at_tot, at_thr],
                         ["payout threshold and the total-loss level", "payout threshold"],
                         "total-loss level")
    reasons.add("SURVEY_REQUIRED", survey, low=np.round(low, 2), high=np.round(high, 2),
                level_zh=level_zh, level_en=level_en)
    edge = status == "edge"
    edge_survey = edge & (high >= thr)
    reasons.add("SURVEY_EDGE", edge_survey, high=np.round(high, 2), threshold=thr)
    status[below] = "below_threshold"
    status[survey | edge_survey] = "survey"
    status[edge & ~edge_survey] = "not_affected"
    pay[edge & ~edge_survey] = 0.0
    unaffected = status == "not_affected"  # no loss claimed: none damaged, no grade of loss
    damaged = np.where(unaffected, 0.0, damaged)
    grade = np.where(unaffected, "none", loss_grades(rate, tot, params.grade_bounds))

    est = estimates
    return pd.DataFrame({
        "claim_id": claim_ids(event.id, parcels["policy_id"] if "policy_id" in parcels
                              else [None] * n, est["parcel_id"]),
        "parcel_id": est["parcel_id"].to_numpy(),
        "policy_id": parcels["policy_id"].to_numpy() if "policy_id" in parcels else None,
        "household_id": (parcels["household_id"].to_numpy() if "household_id" in parcels
                         else None),
        "crop": crops, "event_id": event.id, "event_type": event.type,
        "event_date": str(event.date), "baseline_method": est["baseline_method"].to_numpy(),
        "soil_ndvi": est["soil_ndvi"].to_numpy(), "soil_source": est["soil_source"].to_numpy(),
        "loss_rate": rate, "loss_rate_low": low, "loss_rate_high": high,
        "parcel_loss_rate": est["parcel_loss_rate"].to_numpy(), "damaged_area_mu": damaged,
        "flooded_fraction": est["flooded_fraction"].to_numpy(),
        "footprint_share": est["footprint_share"].to_numpy(),
        "loss_grade": grade, "growth_stage": stage,
        "stage_share": share, "payout_threshold": thr, "total_loss_at": tot,
        "deductible": t["deductible"], "sum_insured_cny_per_mu": si,
        "declared_area_mu": declared, "indemnity_cny": pay,
        "status": pd.Series(status, dtype=object),
        "n_neighbours": est["n_neighbours"].to_numpy(), **reasons.columns(),
        "imagery_dates": est["imagery_dates"].astype(object), "schema_version": SCHEMA_VERSION})
