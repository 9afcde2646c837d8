"""The back-testing report (:mod:`agri_3s.decisions.evaluate`) as tables and files: the
headline figures, the confusion tables and the reliability table, printed by ``agri3s evaluate``
and written to ``--out`` (``evaluation.json`` last, so it describes the files beside it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..decisions.inspections import first_few
from .export import write_json, write_table


def _parts(report: dict) -> list[tuple[str, dict]]:
    return ([("(all)", report)] + [(f"{report['by']}={k}", g) for k, g in report["groups"].items()]
            + [(f"event_type={k}", g) for k, g in report.get("event_types", {}).items()])


SUMMARY = {"verdicts": ("n", "balanced_accuracy", "balanced_accuracy_strict", "agreement",
                        "review_rate", "automation_rate", "no_data_rate", "wrong",
                        "wrong_confident", "brier", "ece"),
           "claims": ("n", "loss_rate_mae", "loss_rate_bias", "parcel_loss_rate_mae",
                      "parcel_loss_rate_bias", "coverage", "survey_rate", "payout_right_side",
                      "paid_below_threshold", "unpaid_above_threshold")}


COUNTS = ("n", "wrong", "wrong_confident", "paid_below_threshold", "unpaid_above_threshold")


def summary_table(report: dict) -> pd.DataFrame:
    """One row per group (``(all)`` first) with the headline figures of a report."""
    rows = [{"group": name, **{k: fig.get(k) for k in SUMMARY[report["kind"]]}}
            for name, fig in _parts(report)]
    return pd.DataFrame(rows).dropna(axis=1, how="all")


def confusion_table(report: dict) -> pd.DataFrame:
    """The confusion tables of every group, long: ``group``, ``truth``, one column per status."""
    rows = [{"group": name, "truth": row, **counts, "total": sum(counts.values())}
            for name, fig in _parts(report) for row, counts in fig["confusion"].items()]
    return pd.DataFrame(rows, columns=["group", "truth", *report["statuses"], "total"])


def write_report(report: dict, out: str | Path) -> dict[str, Path]:
    """Write ``confusion.csv``, ``summary.csv``, ``reliability.csv`` (verdicts) and, last,
    ``evaluation.json`` (the whole report) atomically into the folder ``out``."""
    out = Path(out)
    files = {"confusion.csv": write_table(confusion_table(report), out / "confusion.csv"),
             "summary.csv": write_table(summary_table(report), out / "summary.csv")}
    if report["kind"] == "verdicts":
        rel = pd.DataFrame([{"group": name, **b} for name, fig in _parts(report)
                            for b in fig["reliability"]])
        files["reliability.csv"] = write_table(rel, out / "reliability.csv")
    files["evaluation.json"] = out / "evaluation.json"
    write_json({**report, "files": {k: str(p) for k, p in files.items()}}, files["evaluation.json"])
    return files


def report_tables(report: dict, *, listed: int = 10) -> dict[str, pd.DataFrame]:
    """Tables to print (text cells): summary, overall confusion, reliability, unmatched parcels."""
    def text(v, count: bool = False) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "–"
        if isinstance(v, (float, np.floating)):
            return f"{v:.0f}" if count else f"{v:.3f}"
        return str(v)

    summary = summary_table(report).set_index("group").T
    counts = summary.index.isin(COUNTS)
    summary = summary.astype(object).apply(lambda col: [text(v, c) for v, c in zip(col, counts)])
    tables = {"summary": summary.rename_axis("").reset_index()}
    conf = confusion_table(report)
    conf = conf[conf["group"] == "(all)"].drop(columns="group")
    tables["confusion (rows: truth, columns: status)" if report["kind"] == "verdicts" else
           "payout (rows: truth at / above or below the payout threshold, columns: status)"
           ] = conf.map(text)
    if report["kind"] == "verdicts":
        rel = pd.DataFrame(report["reliability"])
        rel = rel[rel["n"] > 0]
        tables[f"reliability of confidence ({report['n_calibrated']} green / red verdicts)"] = \
            rel.map(text)
    rows = [(what, report[f"n_{key}"], first_few(report[key], listed)) for key, what in
            (("missing_from_results", "truth parcels missing from the results"),
             ("without_truth", "results without truth"), ("truth_blank", "truth left blank"))
            if key in report]
    tables["unmatched"] = pd.DataFrame(rows, columns=["", "n", "parcels"]).map(text)
    if report["notes"]:
        tables["notes"] = pd.DataFrame({"note": report["notes"]})
    return tables
