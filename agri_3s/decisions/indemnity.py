"""Policy terms → indemnity (赔款), following common Chinese crop-insurance wordings.

    indemnity = sum insured per mu × stage share × applied loss rate × damaged area × (1 − deductible)

* no payout below ``payout_threshold`` (起赔点, commonly 30 %);
* a loss rate at or above ``total_loss_at`` (全损标准, commonly 70–80 %) is paid as a total loss;
* ``deductible`` is an absolute deductible rate (绝对免赔率) taken off the payout;
* the stage share (不同生长期最高赔偿比例) comes from the crop calendar's growth stage on the event
  date, when ``use_stage_caps``;
* the damaged area is capped at the declared (insured) area.

All are policy parameters (job file ``[policy]`` or per-parcel columns), never constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import pandas as pd

from ..errors import InputError
from ..reasons import join_reasons, reason
from ..types import SCHEMA_VERSION
from .calendar import calendar_for
from .loss import LossParams, claim_id, loss_grade


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


def applied_loss_rate(loss_rate: float, terms: PolicyTerms) -> float:
    """The loss rate the policy pays: 0 below the threshold, 1 from total loss, else the rate.

    >>> applied_loss_rate(0.25, PolicyTerms()), applied_loss_rate(0.5, PolicyTerms())
    (0.0, 0.5)
    >>> applied_loss_rate(0.85, PolicyTerms())
    1.0
    """
    if not math.isfinite(loss_rate) or loss_rate < terms.payout_threshold:
        return 0.0
    return 1.0 if loss_rate >= terms.total_loss_at else float(loss_rate)


def indemnity_cny(sum_insured_cny_per_mu: float, loss_rate: float, damaged_area_mu: float,
                  declared_area_mu: float, terms: PolicyTerms, stage_share: float = 1.0) -> float:
    """The payout in CNY, rounded to the fen.

    >>> indemnity_cny(500, 0.5, 4.0, 5.0, PolicyTerms(deductible=0.1), stage_share=0.8)
    720.0
    """
    area = min(damaged_area_mu, declared_area_mu)
    share = stage_share if terms.use_stage_caps else 1.0
    amount = (sum_insured_cny_per_mu * share * applied_loss_rate(loss_rate, terms) * area
              * (1.0 - terms.deductible))
    return round(amount, 2)


def claims_table(estimates, parcels, event, terms: PolicyTerms, calendars: dict,
                 params=None):
    """Claim estimates (DESIGN.md contract) from loss estimates, parcels and policy terms.

    Per-parcel columns ``payout_threshold``, ``total_loss_at``, ``deductible`` override ``terms``.
    """
    params = params or LossParams()
    rows = []
    for est, rec in zip(estimates.to_dict("records"), parcels.to_dict("records")):
        t = terms.override(rec)
        cal = calendar_for(calendars, rec["crop"])
        stage = cal.stage_on(event.date) if cal else None
        share = stage.share if stage else 1.0
        rate = est["loss_rate"]
        area_basis = min(rec["area_mu"], rec["declared_area_mu"])
        damaged = (est["damaged_fraction"] * area_basis
                   if pd.notna(est["damaged_fraction"]) else float("nan"))
        status = est["status"]
        pay = 0.0
        extra = []
        if status == "estimated":
            pay = indemnity_cny(rec["sum_insured_cny_per_mu"], rate, damaged,
                                rec["declared_area_mu"], t, share)
            if rate < t.payout_threshold:
                status = "below_threshold"
                extra.append(reason("BELOW_THRESHOLD", rate=rate, threshold=t.payout_threshold))
            elif rate >= t.total_loss_at:
                extra.append(reason("TOTAL_LOSS", rate=rate, total=t.total_loss_at))
        rows.append({
            "claim_id": claim_id(event.id, rec.get("policy_id"), est["parcel_id"]),
            "parcel_id": est["parcel_id"], "policy_id": rec.get("policy_id"),
            "household_id": rec.get("household_id"), "crop": rec["crop"],
            "event_id": event.id, "event_type": event.type, "event_date": str(event.date),
            "baseline_method": "neighbours+own_pre", "soil_ndvi": est["soil_ndvi"],
            "loss_rate": rate, "loss_rate_low": est["loss_rate_low"],
            "loss_rate_high": est["loss_rate_high"], "parcel_loss_rate": est["parcel_loss_rate"],
            "damaged_area_mu": damaged, "flooded_fraction": est["flooded_fraction"],
            "loss_grade": loss_grade(rate, t.total_loss_at, params.grade_bounds),
            "growth_stage": stage.name if stage else "", "stage_share": share,
            "payout_threshold": t.payout_threshold, "total_loss_at": t.total_loss_at,
            "deductible": t.deductible, "sum_insured_cny_per_mu": rec["sum_insured_cny_per_mu"],
            "declared_area_mu": rec["declared_area_mu"], "indemnity_cny": pay,
            "status": status, "n_neighbours": est["n_neighbours"],
            **join_reasons(est["reason_items"] + extra),
            "imagery_dates": est["imagery_dates"], "schema_version": SCHEMA_VERSION})
    return pd.DataFrame(rows)
