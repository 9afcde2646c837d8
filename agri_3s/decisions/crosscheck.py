"""Claims checked against underwriting: a claim on a parcel underwriting rejected is flagged.

Underwriting said the declared crop was not there (verdict ``red``); a loss paid on that parcel
needs a look before the money goes out. The claim keeps its estimate and status and gets the
reason ``UNDERWRITING_REJECTED`` naming the verdict's reasons — in the claims export and on the
map (outlined, and flagged in its popup).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .reason_arrays import BatchReasons

#: Claim statuses that may lead to a payment (the ones a rejected parcel is flagged on).
PAYABLE_STATUSES = ("estimated", "survey")


def rejected_claims(claims: pd.DataFrame, verdicts: pd.DataFrame) -> np.ndarray:
    """Per claim row: True where the parcel's verdict is ``red`` and the claim may be paid.

    >>> c = pd.DataFrame({"parcel_id": ["a", "b", "c"], "status": ["estimated"] * 2 + ["survey"]})
    >>> v = pd.DataFrame({"parcel_id": ["a", "b"], "status": ["red", "green"]})
    >>> rejected_claims(c, v).tolist()
    [True, False, False]
    """
    status = verdicts.assign(parcel_id=verdicts["parcel_id"].astype(str)).drop_duplicates(
        "parcel_id", keep="last").set_index("parcel_id")["status"]
    verdict = status.reindex(claims["parcel_id"].astype(str)).to_numpy(object)
    return (verdict == "red") & claims["status"].isin(PAYABLE_STATUSES).to_numpy()


def flag_rejected(claims: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """``claims`` with the reason ``UNDERWRITING_REJECTED`` on claims of rejected parcels.

    Parameters
    ----------
    claims : pandas.DataFrame
        Claim estimates (``parcel_id``, ``status``, the three reason columns).
    verdicts : pandas.DataFrame
        Underwriting verdicts of the same parcels (``parcel_id``, ``status``, ``reasons``).

    Returns
    -------
    pandas.DataFrame
        A copy; estimates, statuses and indemnities unchanged.

    Examples
    --------
    >>> c = pd.DataFrame({"parcel_id": ["a"], "status": ["estimated"], "reasons": ["LOSS_ESTIMATED"],
    ...                   "reasons_zh": ["已估损"], "reasons_en": ["loss estimated"]})
    >>> v = pd.DataFrame({"parcel_id": ["a"], "status": ["red"], "reasons": ["NOT_PLANTED"]})
    >>> flag_rejected(c, v)["reasons"].tolist()
    ['LOSS_ESTIMATED;UNDERWRITING_REJECTED']
    """
    out = claims.copy()
    hit = rejected_claims(out, verdicts)
    if not hit.any():
        return out
    codes = verdicts.assign(parcel_id=verdicts["parcel_id"].astype(str)).drop_duplicates(
        "parcel_id", keep="last").set_index("parcel_id")["reasons"].fillna("")
    why = codes.reindex(out["parcel_id"].astype(str)).fillna("").str.replace(";", ", ")
    reasons = BatchReasons.of(out)
    reasons.add("UNDERWRITING_REJECTED", hit, codes=why.to_numpy(object))
    for col, values in reasons.columns().items():
        out[col] = values.to_numpy()
    return out
