"""How sure a verdict is: the probability that the declaration is true, and that the verdict
is right.

The evidence is scored on the log-odds scale — each window's margin to its threshold, every
rule that fired, the crop model's probability — and shrunk towards "don't know" when the
parcel was seen little (few clear looks, none near the peak, few pixels). That raw probability
is then mapped through a calibration table fitted on labelled parcels (isotonic regression of
"declaration true" on the raw probability), so that of the parcels given 0.9, nine in ten are
right. A verdict the crop model took no part in (a batch too small or of one crop: nothing
data-driven checks which crop grows there) is never surer than the calendar rules alone were
right on the labelled data set where they did worst (``rules_only_cap``: on the real Kenya
fields, weedy fallow and cassava pass the rules as maize). The built-in table ships in
``agri_3s/data/confidence_calibration.json`` (what it was fitted on is written in it); an
insurer fits its own on its inspections with ``agri3s evaluate … --fit-calibration FILE`` and
passes it back with ``--calibration FILE``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

BUILTIN = Path(__file__).resolve().parents[1] / "data" / "confidence_calibration.json"
#: Log-odds a fired rule moves the declaration by (red: strong evidence of another use of the
#: land; yellow: a doubt about the crop).
RED_WEIGHT, YELLOW_WEIGHT = 3.0, 1.0
#: Yellow reasons about area or size, not about which crop grows there.
NOT_ABOUT_THE_CROP = {"PARTIAL_PLANTING", "AREA_SHORTFALL", "SMALL_PARCEL", "CANOPY_NOT_REACHED"}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.02, 0.98)
    return np.log(p / (1 - p))


def raw_probability(e, w, rules, weight: np.ndarray, p_model: np.ndarray, why) -> np.ndarray:
    """Uncalibrated probability that each declaration is true, from the evidence."""
    with np.errstate(invalid="ignore"):
        score = 1.5 * np.clip((e.canopy - w.peak_ndvi_min) / 0.1, -3, 3)
        seedbed = np.clip((rules.bare_ndvi_max + 0.1 - e.seedbed_min) / 0.1, -2, 2)
        harvest = np.clip((e.canopy_mean - e.harvest_min - 0.2) / 0.15, -2, 2)
    score = np.where(np.isfinite(score), score, 0.0)
    score += np.where(np.isfinite(seedbed) & (e.n_sowing > 0), 0.75 * seedbed, 0.0)
    score += np.where(np.isfinite(harvest) & (e.n_harvest > 0), 0.5 * harvest, 0.0)
    for code, kind, mask, _ in why.items:
        if code.startswith("CROP_MODEL") or code in NOT_ABOUT_THE_CROP:
            continue
        if kind in ("red", "yellow"):
            score -= mask * (RED_WEIGHT if kind == "red" else YELLOW_WEIGHT)
    score += np.where(np.isfinite(p_model), _logit(p_model), 0.0)
    # seen little → closer to "don't know": few looks, few pixels, and each calendar window
    # (sowing, peak, harvest) left unobserved takes a third of the evidence away
    windows = ((e.n_sowing > 0).astype(float) + (e.n_peak > 0) + (e.n_harvest > 0)) / 3
    seen = (np.minimum(1.0, e.n_season / 10) * np.minimum(1.0, (e.n_peak + 1) / 3)
            * np.sqrt(np.minimum(1.0, weight / 8)) * np.maximum(windows, 1 / 3))
    return 1.0 / (1.0 + np.exp(-score * seen))


@lru_cache(maxsize=8)
def load_calibration(path: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(raw probabilities, calibrated probabilities, what it was fitted on) of a table."""
    data = json.loads(Path(path or BUILTIN).read_text(encoding="utf-8"))
    return np.asarray(data["raw"], float), np.asarray(data["calibrated"], float), \
        data.get("fitted_on", "")


@lru_cache(maxsize=1)
def rules_only_cap() -> tuple[float, str]:
    """(the highest confidence of a verdict without the crop model, why): from the built-in
    file (1.0 when it has none)."""
    data = json.loads(BUILTIN.read_text(encoding="utf-8"))
    cap = data.get("rules_only_cap", [1.0, ""])
    return float(cap[0]), str(cap[1])


def calibration_source(path: str | Path | None = None) -> str:
    """What the calibration tables in use were fitted on (for ``run.json``)."""
    cap, why = rules_only_cap()
    text = f"{BUILTIN.name}: {load_calibration(None)[2]}"
    text += f"; then {Path(path).name}: {load_calibration(str(path))[2]}" if path else ""
    return text + (f"; without the crop model at most {cap} ({why})" if cap < 1 else "")


def calibrate(p_raw: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Raw probabilities through the built-in calibration table, then through an insurer's own
    table (fitted on its inspections against the built-in probabilities) when given."""
    x, y, _ = load_calibration(None)
    p = np.interp(p_raw, x, y)
    if path:
        x, y, _ = load_calibration(str(path))
        p = np.interp(p, x, y)
    return p


def fit_calibration(p_raw: np.ndarray, declaration_true: np.ndarray, *, fitted_on: str,
                    path: str | Path, cap: tuple[float, str] | None = None) -> Path:
    """Fit a calibration table on labelled parcels (isotonic: calibrated probabilities never
    reverse the order of the raw ones) and write it to ``path`` (with ``cap``, the built-in
    file's :func:`rules_only_cap` and why, if given). For an insurer's own table, ``p_raw`` is the
    verdicts' ``p_declared`` (the built-in table's output)."""
    from sklearn.isotonic import IsotonicRegression

    keep = np.isfinite(p_raw)
    iso = IsotonicRegression(y_min=0.01, y_max=0.99, out_of_bounds="clip").fit(
        p_raw[keep], np.asarray(declaration_true, float)[keep])
    x = np.r_[0.0, iso.X_thresholds_, 1.0]
    data = {"fitted_on": fitted_on, "n": int(keep.sum()), "raw": x.round(6).tolist(),
            "calibrated": np.asarray(iso.predict(x)).round(6).tolist()}
    if cap is not None:
        data["rules_only_cap"] = list(cap)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    load_calibration.cache_clear()
    rules_only_cap.cache_clear()
    return Path(path)


def verdict_confidence(status: np.ndarray, e, w, rules, weight: np.ndarray,
                       p_model: np.ndarray, why, calibration: str | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(probability the declaration is true, probability the verdict is right): for green
    the first, for red its complement, for yellow the likelier of the two (how sure the
    parcel's lean is — a reviewer sees which way it leans in ``p_declared``)."""
    p = calibrate(raw_probability(e, w, rules, weight, p_model, why), calibration)
    confidence = np.where(status == "green", p, np.where(status == "red", 1 - p,
                                                         np.maximum(p, 1 - p)))
    confidence = np.where(np.isfinite(p_model), confidence,
                          np.minimum(confidence, rules_only_cap()[0]))
    return p.round(3), confidence.round(3)
