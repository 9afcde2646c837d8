"""Back-testing against field inspections (验标 / 查勘): how the verdicts and claim estimates
compare with what the insurer's inspectors found.

* :func:`evaluate_verdicts` — underwriting verdicts against the inspector's verdict, the
  declaration found true / false, or the crop found in the field;
* :func:`evaluate_claims` — loss estimates against inspected loss rates;
* :func:`evaluate` — the same from files (a result folder or table; a CSV / XLSX truth in UTF-8,
  UTF-8 with BOM or GBK), written to a folder on request (``agri3s evaluate``).

Nothing is dropped silently: truth parcels missing from the results and results without truth
are counted and listed, and every status of the results keeps its column in the confusion table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..parcels.columns import find_columns, to_number
from .inspections import (
    NUMERIC,
    TRUTH_ALIASES,
    first_few,
    loss_rates,
    match_truth,
    prepared_table,
    read_result,
    read_truth,
    result_files,
    source_of,
    truth_labels,
)

VERDICT_ORDER = ("green", "yellow", "red", "no_data", "invalid")
CLAIM_ORDER = ("estimated", "below_threshold", "not_affected", "survey", "no_data", "invalid")
TRUTH_ROWS = ("accept", "reject", "yellow")
#: Claim statuses that are an automated payout decision: paid, or not paid.
PAID, UNPAID = {"estimated"}, {"below_threshold", "not_affected"}
VERDICT_TRUTH = ("inspected_status", "declaration_true", "crop")  # in order of precedence
CLAIM_TRUTH = ("loss_rate", "parcel_loss_rate")


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability table: ``bins`` equal-width confidence bins on [0, 1] (the last one closed).

    Columns ``bin_low``, ``bin_high``, ``n``, ``mean_confidence``, ``observed_right`` (share of
    the bin's verdicts that were right); empty bins have n = 0 and NaN means.

    Examples
    --------
    >>> t = reliability(np.array([0.95, 0.9, 0.55, 1.0]), np.array([True, False, True, True]))
    >>> t.loc[9, ["n", "mean_confidence", "observed_right"]].round(3).tolist(), int(t.n[5])
    ([3.0, 0.95, 0.667], 1)
    """
    c = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if np.isnan(c).any() or (c < 0).any() or (c > 1).any():
        raise InputError("confidence must lie in [0, 1] (no NaN).", source="confidence",
                         fix="drop parcels without a confidence before calling reliability()")
    b = np.minimum((c * bins).astype(int), bins - 1)
    n = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = np.bincount(b, weights=c, minlength=bins) / n
        obs = np.bincount(b, weights=ok, minlength=bins) / n
    edges = np.arange(bins + 1) / bins
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "n": n,
                         "mean_confidence": mean_c, "observed_right": obs})


def _share(mask: pd.Series, among: pd.Series) -> float:
    return float(mask[among].mean()) if among.any() else float("nan")


def _verdict_figures(m: pd.DataFrame, statuses: list[str], confident: float) -> dict:
    s, t, conf = m["status"], m["truth"], m["confidence"]
    g, y, r = s == "green", s == "yellow", s == "red"
    acc, rej = t == "accept", t == "reject"
    auto, judged = g | r, g | y | r
    recall = {"accept": _share(g, acc & auto), "reject": _share(r, rej & auto),
              "accept_strict": _share(g, acc & judged), "reject_strict": _share(r, rej & judged)}
    table = pd.crosstab(t, s).reindex(index=[x for x in TRUTH_ROWS if x != "yellow"
                                             or (t == "yellow").any()],
                        columns=statuses, fill_value=0)
    n, n_judged = len(m), int(judged.sum())
    wrong = (g & rej) | (r & acc)
    expected = t.map({"accept": "green", "reject": "red", "yellow": "yellow"})
    cal = auto & (acc | rej) & conf.notna()
    right = ((g & acc) | (r & rej))[cal].to_numpy()
    rel = reliability(conf[cal].to_numpy(), right)
    return {
        "n": n, "n_judged": n_judged, "counts": s.value_counts().reindex(statuses, fill_value=0
                                                                        ).to_dict(),
        "confusion": {row: table.loc[row].to_dict() for row in table.index},
        "balanced_accuracy": (recall["accept"] + recall["reject"]) / 2,
        "balanced_accuracy_strict": (recall["accept_strict"] + recall["reject_strict"]) / 2,
        "green_share_of_accept": recall["accept"], "red_share_of_reject": recall["reject"],
        "green_share_of_accept_strict": recall["accept_strict"],
        "red_share_of_reject_strict": recall["reject_strict"],
        "agreement": _share(s == expected, judged),
        "review_rate": float(y.sum() / n_judged) if n_judged else float("nan"),
        "automation_rate": float(auto.sum() / n_judged) if n_judged else float("nan"),
        "no_data_rate": float((s == "no_data").mean()) if n else float("nan"),
        "wrong": int(wrong.sum()), "wrong_green_on_reject": int((g & rej).sum()),
        "wrong_red_on_accept": int((r & acc).sum()),
        "wrong_confident": int((wrong & (conf >= confident)).sum()),
        "n_calibrated": int(cal.sum()),
        "brier": float(np.mean((conf[cal].to_numpy() - right) ** 2)) if cal.any() else float("nan"),
        "ece": float((rel["n"] * (rel["mean_confidence"] - rel["observed_right"]).abs()).sum()
                     / cal.sum()) if cal.any() else float("nan"),
        "reliability": rel.to_dict("records"),
    }


def _statuses(values: pd.Series, order: tuple[str, ...]) -> list[str]:
    """Every status present: the known ones in their usual order, then any other."""
    present = set(values.unique())
    return [v for v in order if v in present] + sorted(present - set(order))


def _groups(m: pd.DataFrame, by: str | None, figures, notes: list) -> dict:
    if by is None:
        return {}
    if by not in m.columns:
        notes.append(f"no {by!r} column in the results: no per-{by} figures")
        return {}
    key = m[by].astype("string").fillna("(blank)")
    return {str(k): figures(part) for k, part in m.groupby(key, sort=True)}


def evaluate_verdicts(verdicts: pd.DataFrame, truth: pd.DataFrame, *, by: str | None = "crop",
                      confident: float = 0.8) -> dict:
    """Underwriting verdicts against field inspections (验标).

    ``truth`` has ``parcel_id`` (or 地块编号…) and one of, in order of precedence:
    ``inspected_status`` (green | yellow | red, 通过/合格 | 待核/复核 | 不通过/不合格;
    ``expected_verdict`` is read as this), ``declaration_true`` (true / false, 是 / 否), or
    ``crop`` (the crop found in the field, compared with the verdicts' declared ``crop``).
    An accepted declaration expects ``green``, a rejected one ``red``.

    Returns a JSON-ready dict (NaN → None) with these keys, overall and in ``groups``:

    * ``n`` parcels evaluated (in both tables, truth not blank), ``n_judged`` (green / yellow /
      red), ``counts`` per status; ``confusion`` ``{truth: {status: count}}``, rows ``accept``,
      ``reject`` and ``yellow`` when the inspector gave one, columns ``statuses`` (every status
      of the results: green, yellow, red, no_data, invalid, then any other);
    * ``balanced_accuracy`` = ½ (green share of accepted parcels judged green / red + red share
      of rejected ones); ``balanced_accuracy_strict`` the same over green / yellow / red (a yellow
      counts as a miss); the four shares as ``green_share_of_accept[_strict]``,
      ``red_share_of_reject[_strict]``; ``agreement`` (status = expected, yellow for an
      inspector's yellow, among judged parcels);
    * ``review_rate`` (yellow / judged), ``automation_rate`` ((green + red) / judged),
      ``no_data_rate`` (no_data / n);
    * ``wrong`` automated verdicts (``wrong_green_on_reject`` + ``wrong_red_on_accept``),
      ``wrong_confident`` (of them with ``confidence`` ≥ ``confident``);
    * ``brier``, ``ece``, ``reliability`` (10 bins, see :func:`reliability`) of ``confidence``
      as the probability that a green / red verdict is right, over ``n_calibrated`` parcels;

    and overall only: ``kind`` ("verdicts"), ``truth_column``, ``statuses``, ``n_results``,
    ``n_truth``, ``missing_from_results`` / ``without_truth`` / ``truth_blank`` (parcel ids) with
    their ``n_…`` counts, ``wrong_verdicts`` (parcel_id, status, truth, confidence), ``by``,
    ``groups`` ``{value of by: figures}``, ``notes``.

    Examples
    --------
    >>> v = pd.DataFrame({"parcel_id": ["A", "B", "C", "D"], "crop": "winter_wheat",
    ...                   "status": ["green", "red", "yellow", "green"],
    ...                   "confidence": [0.9, 0.8, 0.5, 0.6]})
    >>> t = pd.DataFrame({"parcel_id": ["A", "B", "C", "D"],
    ...                   "inspected_status": ["通过", "不通过", "合格", "不合格"]})
    >>> r = evaluate_verdicts(v, t)
    >>> r["balanced_accuracy"], r["balanced_accuracy_strict"], r["wrong"], r["review_rate"]
    (0.75, 0.5, 1, 0.25)
    """
    notes: list[str] = []
    tsrc, vsrc = source_of(truth, "truth table"), source_of(verdicts, "verdicts")
    t = prepared_table(truth, tsrc, ["parcel_id"], TRUTH_ALIASES)
    column = next((c for c in VERDICT_TRUTH if c in t.columns), None)
    if column is None:
        raise InputError(f"no truth column (headers: {', '.join(map(str, truth.columns))}).",
                         source=tsrc, fix="add inspected_status (green / yellow / red), "
                                          "declaration_true (true / false) or crop")
    v = prepared_table(verdicts, vsrc, ["parcel_id"]).drop(columns="_row")
    if "status" not in v.columns:
        raise InputError("no status column.", source=vsrc, fix="pass the verdicts agri3s wrote")
    v["status"] = v["status"].astype("string").str.strip().str.lower().fillna("(blank)")
    v["confidence"] = (pd.to_numeric(v["confidence"], errors="coerce") if "confidence" in v
                       else np.nan)
    if "confidence" not in verdicts.columns:
        notes.append("no confidence column: no calibration figures")
    elif ((v["confidence"] < 0) | (v["confidence"] > 1)).any():
        raise InputError("confidence outside [0, 1].", source=vsrc,
                         row=first_few(v.loc[(v["confidence"] < 0) | (v["confidence"] > 1),
                                          "parcel_id"]),
                         fix="pass the verdicts agri3s wrote (confidence is a probability)")
    statuses = _statuses(v["status"], VERDICT_ORDER)
    m, unmatched = match_truth(v, t, ["parcel_id"], [column, "_row"])
    m = m.rename(columns={"truth__row": "_row"})
    m["truth"] = truth_labels(m, column, tsrc)
    blank = m["truth"].isna()
    truth_blank = m.loc[blank, "parcel_id"].astype(str).tolist()
    m = m[~blank].reset_index(drop=True)
    out = {"kind": "verdicts", "truth_column": column, "statuses": statuses,
           "n_results": len(v), "n_truth": len(t), **_verdict_figures(m, statuses, confident),
           **unmatched, "n_truth_blank": len(truth_blank), "truth_blank": truth_blank, "by": by}
    wrong = m[((m["status"] == "green") & (m["truth"] == "reject"))
              | ((m["status"] == "red") & (m["truth"] == "accept"))]
    out["wrong_verdicts"] = wrong[["parcel_id", "status", "truth", "confidence"]].to_dict("records")
    out["groups"] = _groups(m, by, lambda p: _verdict_figures(p, statuses, confident), notes)
    out["notes"] = notes
    return _clean(out)


# --- claims ---------------------------------------------------------------------------------------
def _claim_figures(m: pd.DataFrame, statuses: list[str], basis: str) -> dict:
    s, truth = m["status"], m[f"truth_{basis}"]
    out: dict = {"n": len(m), "counts": s.value_counts().reindex(statuses, fill_value=0).to_dict()}
    for col in ("loss_rate", "parcel_loss_rate", "damaged_area_mu"):
        if f"truth_{col}" in m.columns and col in m.columns:
            both = m[col].notna() & m[f"truth_{col}"].notna()
            d = (m[col] - m[f"truth_{col}"])[both]
            out.update({f"{col}_n": int(both.sum()), f"{col}_mae": float(d.abs().mean()),
                        f"{col}_bias": float(d.mean())})
    low = m.get("loss_rate_low", pd.Series(np.nan, m.index))
    high = m.get("loss_rate_high", pd.Series(np.nan, m.index))
    has = truth.notna() & low.notna() & high.notna()
    out.update({"coverage": _share((low <= truth) & (truth <= high), has),
                "coverage_n": int(has.sum()), "interval_width": float((high - low)[has].mean()),
                "survey_rate": float((s == "survey").mean()) if len(m) else float("nan")})
    threshold = m.get("payout_threshold", pd.Series(np.nan, m.index))
    known = truth.notna() & threshold.notna()
    decided = known & s.isin(PAID | UNPAID)
    paid, should = s.isin(PAID), truth >= threshold
    side = pd.Series(np.where(should, "pay", "no_pay"), m.index)[known]
    table = pd.crosstab(side, s[known]).reindex(index=["pay", "no_pay"], columns=statuses,
                                                fill_value=0)
    out.update({"confusion": {row: table.loc[row].to_dict() for row in table.index},
                "payout_right_side": _share(paid == should, decided),
                "payout_n": int(decided.sum()),
                "paid_below_threshold": int((decided & paid & ~should).sum()),
                "unpaid_above_threshold": int((decided & ~paid & should).sum()),
                "payout_undecided": int((known & ~s.isin(PAID | UNPAID)).sum())})
    if "truth_status" in m.columns:
        given = m["truth_status"].astype("string").str.strip().str.lower()
        out["status_agreement"] = _share(given == s, given.notna() & (given != ""))
    return out


def evaluate_claims(claims: pd.DataFrame, truth: pd.DataFrame, *, by: str | None = "crop"
                    ) -> dict:
    """Loss estimates against inspected losses (查勘定损).

    ``truth`` has ``parcel_id`` (and ``event_id`` when the claims hold several events per
    parcel), ``loss_rate`` (in the damaged area; 损失率) and / or ``parcel_loss_rate`` (share of
    the whole parcel lost), optionally ``damaged_area_mu`` and ``status``. Rates may be shares
    (0.35) or percent (``35%``; a column with values above 1 is read as percent, noted).

    Returns a JSON-ready dict (NaN → None), overall and in ``groups`` / ``event_types``:
    ``n``, ``counts`` per status; ``loss_rate_mae`` / ``_bias`` / ``_n`` (bias = estimate −
    truth), the same for ``parcel_loss_rate`` and ``damaged_area_mu`` when the truth has them;
    ``coverage`` (share of ``coverage_n`` parcels whose [loss_rate_low, loss_rate_high] holds the
    truth) and the mean ``interval_width``; ``survey_rate`` (status ``survey``);
    ``payout_right_side`` (share of the ``payout_n`` automated decisions — ``estimated`` = paid,
    ``below_threshold`` / ``not_affected`` = not paid — on the same side of the claim's
    ``payout_threshold`` as the truth), ``paid_below_threshold``, ``unpaid_above_threshold``,
    ``payout_undecided`` (other statuses); ``confusion`` ``{pay | no_pay: {status: count}}``
    (truth at / above or below the threshold); ``status_agreement`` with a truth ``status``.
    Overall only: ``kind`` ("claims"), ``basis`` (the truth rate compared with the interval and
    the threshold: ``loss_rate``, else ``parcel_loss_rate``), ``statuses``, ``n_results``,
    ``n_truth``, ``missing_from_results`` / ``without_truth`` (ids, ``parcel/event`` when keyed by
    event) with ``n_…`` counts, ``by``, ``groups``, ``event_types``, ``notes``.

    Examples
    --------
    >>> c = pd.DataFrame({"parcel_id": ["A", "B"], "crop": "winter_wheat",
    ...                   "status": ["estimated", "below_threshold"], "loss_rate": [0.5, 0.2],
    ...                   "loss_rate_low": [0.4, 0.1], "loss_rate_high": [0.6, 0.3],
    ...                   "payout_threshold": 0.3})
    >>> r = evaluate_claims(c, pd.DataFrame({"parcel_id": ["A", "B"], "loss_rate": ["70%", "25%"]}))
    >>> round(r["loss_rate_mae"], 3), round(r["loss_rate_bias"], 3), r["coverage"]
    (0.125, -0.125, 0.5)
    """
    notes: list[str] = []
    tsrc, csrc = source_of(truth, "truth table"), source_of(claims, "claims")
    t = pd.DataFrame(truth).rename(columns=find_columns(
        [c for c in truth.columns if c != "_row"], TRUTH_ALIASES))
    key = ["parcel_id", "event_id"] if {"event_id"} <= set(t.columns) & set(claims.columns) \
        else ["parcel_id"]
    t = prepared_table(t, tsrc, key, fix="keep one row per parcel" + (" and event" if key[1:] else ""))
    cols = [c for c in TRUTH_ALIASES if c in t.columns and c not in key]
    rates = [c for c in CLAIM_TRUTH if c in t.columns]
    if not rates:
        raise InputError(f"no loss_rate or parcel_loss_rate column (headers: "
                         f"{', '.join(map(str, truth.columns))}).", source=tsrc,
                         fix="add the inspected loss rate as loss_rate (损失率) or parcel_loss_rate")
    for col in rates + (["damaged_area_mu"] if "damaged_area_mu" in t.columns else []):
        t[col] = (loss_rates(t[col], col, tsrc, t["_row"], notes) if col in rates
                  else to_number(t[col]))
    c = prepared_table(claims, csrc, key, fix="add event_id to the truth table: the claims hold several "
                                         "events per parcel").drop(columns="_row")
    if "status" not in c.columns:
        raise InputError("no status column.", source=csrc, fix="pass the claims agri3s wrote")
    c["status"] = c["status"].astype("string").str.strip().str.lower().fillna("(blank)")
    for col in NUMERIC:
        if col in c.columns:
            c[col] = pd.to_numeric(c[col], errors="coerce")
    if "payout_threshold" not in c.columns:
        notes.append("no payout_threshold column in the claims: no payout figures")
    statuses = _statuses(c["status"], CLAIM_ORDER)
    m, unmatched = match_truth(c, t, key, cols)
    basis = rates[0]
    figures = lambda part: _claim_figures(part, statuses, basis)  # noqa: E731
    out = {"kind": "claims", "basis": basis, "statuses": statuses, "n_results": len(c),
           "n_truth": len(t), **figures(m), **unmatched, "by": by,
           "groups": _groups(m, by, figures, notes),
           "event_types": _groups(m, "event_type", figures, []) if "event_type" in m else {},
           "notes": notes}
    return _clean(out)


# --- files ----------------------------------------------------------------------------------------
def evaluate(result: str | Path, truth: str | Path, *, out: str | Path | None = None,
             by: str | None = "crop") -> dict:
    """Back-test a result (folder or table) against a truth file; write the report to ``out``.

    Verdicts or claims are evaluated by the truth's columns (loss rates → claims). The report
    is that of :func:`evaluate_verdicts` / :func:`evaluate_claims` plus ``inputs`` (path and
    SHA-256 of the result table and the truth) and, with ``out``, ``files`` written there:
    ``evaluation.json``, ``confusion.csv``, ``summary.csv`` and, for verdicts, ``reliability.csv``.

    Examples
    --------
    >>> evaluate("out/wheat", "验标结果.csv", out="out/wheat/evaluation")  # doctest: +SKIP
    """
    from ..outputs.export import file_sha256  # outputs sit below decisions: imported on use

    truth_path = Path(truth)
    t = read_truth(truth_path)
    files = result_files(result)
    names = set(t.columns) | set(find_columns([c for c in t.columns if c != "_row"],
                                              TRUTH_ALIASES).values())
    usable = [k for k in ("claims", "verdicts") if k in files
              and names & set(CLAIM_TRUTH if k == "claims" else VERDICT_TRUTH)]
    if not usable:
        raise InputError(f"no truth column for the {' / '.join(files)} of {result} (headers: "
                         f"{', '.join(c for c in t.columns if c != '_row')}).", source=truth_path,
                         fix="verdicts need inspected_status, declaration_true or crop; claims "
                             "need loss_rate or parcel_loss_rate")
    kind = usable[0]
    table = read_result(files[kind])
    report = (evaluate_claims if kind == "claims" else evaluate_verdicts)(table, t, by=by)
    report["inputs"] = {name: {"path": str(p), "sha256": file_sha256(p)}
                        for name, p in (("result", files[kind]), ("truth", truth_path))}
    if out is not None:
        from ..outputs.evaluation import write_report  # outputs sit below decisions

        report["files"] = {k: str(p) for k, p in write_report(report, out).items()}
    return report


def fit_confidence_calibration(result: str | Path, truth: str | Path, path: str | Path) -> dict:
    """Fit an insurer's own confidence calibration on its inspections: the verdicts'
    ``p_declared`` against whether each declaration was found true (green / red verdicts and
    reviewed ones alike), written to ``path`` for ``agri3s underwrite --calibration``."""
    from .confidence import fit_calibration

    verdicts = read_result(result_files(result)["verdicts"]) if Path(result).is_dir() else \
        read_result(result)
    if "p_declared" not in verdicts.columns:
        raise InputError("the verdicts have no p_declared column.", source=result,
                         fix="pass verdicts written by this version of agri3s underwrite")
    t = prepared_table(read_truth(truth), str(truth), ["parcel_id"], TRUTH_ALIASES)
    column = next((c for c in VERDICT_TRUTH if c in t.columns), None)
    if column is None:
        raise InputError("no truth column.", source=truth,
                         fix="add inspected_status, declaration_true or crop")
    v = prepared_table(verdicts, str(result), ["parcel_id"]).drop(columns="_row")
    m, _ = match_truth(v, t, ["parcel_id"], [column, "_row"])
    label = truth_labels(m, column, str(truth))
    p = pd.to_numeric(m["p_declared"], errors="coerce")
    use = label.isin(["accept", "reject"]) & p.notna()
    if use.sum() < 30:
        raise InputError(f"only {int(use.sum())} inspected parcels with a probability.",
                         source=truth, fix="fit a calibration on at least 30 (better hundreds) "
                                           "inspected parcels")
    fit_calibration(p[use].to_numpy(float), (label[use] == "accept").to_numpy(),
                    fitted_on=f"{int(use.sum())} inspected parcels of {Path(truth).name}",
                    path=path)
    return {"parcels": int(use.sum()), "path": str(path)}


def _clean(obj):
    """JSON-ready: numpy scalars → Python, NaN / NA → None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list) and obj and isinstance(obj[0], str):
        return obj  # parcel ids: already plain text
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if np.isnan(obj) else float(obj)
    if obj is pd.NA or obj is None:
        return None
    return obj
