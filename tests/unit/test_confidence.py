"""Confidence calibration: isotonic tables fitted on labelled parcels, applied in order."""

import json

import numpy as np
import pandas as pd
import pytest

from agri_3s.decisions import confidence
from agri_3s.decisions.evaluate import fit_confidence_calibration
from agri_3s.errors import InputError


def test_an_overconfident_score_is_calibrated_to_what_was_observed(tmp_path):
    """Parcels scored 0.9 that are right half the time must come out near 0.5."""
    rng = np.random.default_rng(0)
    raw = np.r_[np.full(400, 0.9), np.full(400, 0.2)]
    truth = np.r_[rng.random(400) < 0.5, rng.random(400) < 0.1]
    path = confidence.fit_calibration(raw, truth, fitted_on="test", path=tmp_path / "t.json")
    x, y, fitted_on = confidence.load_calibration(str(path))
    assert fitted_on == "test" and np.all(np.diff(y) >= 0)  # isotonic: order kept
    assert np.interp(0.9, x, y) == pytest.approx(truth[:400].mean(), abs=0.01)
    assert np.interp(0.2, x, y) == pytest.approx(truth[400:].mean(), abs=0.01)


def test_an_insurers_table_applies_after_the_builtin_one(tmp_path):
    table = tmp_path / "mine.json"
    table.write_text(json.dumps({"fitted_on": "x", "raw": [0, 1], "calibrated": [0.1, 0.6]}))
    p = np.array([0.0, 0.5, 1.0])
    builtin = confidence.calibrate(p)
    np.testing.assert_allclose(confidence.calibrate(p, table), 0.1 + 0.5 * builtin)
    assert "mine.json" in confidence.calibration_source(table)


def test_fit_from_inspections_needs_enough_parcels_and_writes_a_table(tmp_path):
    n = 60
    v = pd.DataFrame({"parcel_id": [f"p{i}" for i in range(n)], "crop": "winter_wheat",
                      "status": "green", "p_declared": np.linspace(0.05, 0.95, n),
                      "confidence": 0.5})
    t = pd.DataFrame({"parcel_id": v["parcel_id"], "declaration_true": np.arange(n) >= n / 2})
    v.to_csv(tmp_path / "verdicts.csv", index=False)
    t.to_csv(tmp_path / "truth.csv", index=False)
    fitted = fit_confidence_calibration(tmp_path / "verdicts.csv", tmp_path / "truth.csv",
                                        tmp_path / "cal.json")
    assert fitted["parcels"] == n
    x, y, _ = confidence.load_calibration(str(tmp_path / "cal.json"))
    assert np.interp(0.9, x, y) > 0.9 and np.interp(0.1, x, y) < 0.1  # perfectly separated
    t.head(10).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(InputError, match="at least 30"):
        fit_confidence_calibration(tmp_path / "verdicts.csv", tmp_path / "few.csv",
                                   tmp_path / "cal2.json")


def test_a_verdict_without_the_crop_model_is_no_surer_than_the_rules_were_on_kenya():
    """Real Kenya smallholder maize: the calendar rules alone were right on 71.8 % of their 149
    automated verdicts (tests/benchmarks/calibrate_confidence.py), weedy fallow and cassava
    passing as maize. A strong, well-observed parcel judged by the rules alone must not claim
    more; the same parcel with a crop model's agreement may."""
    from types import SimpleNamespace as NS

    cap, why = confidence.rules_only_cap()
    assert cap == pytest.approx(0.718, abs=0.005) and "kenya" in why
    assert f"at most {cap} ({why})" in confidence.calibration_source()  # said in run.json
    one = np.ones(2)
    e = NS(canopy=0.85 * one, seedbed_min=0.12 * one, canopy_mean=0.7 * one,
           harvest_min=0.2 * one, n_sowing=3 * one, n_harvest=3 * one, n_season=20 * one,
           n_peak=4 * one)
    w = NS(peak_ndvi_min=0.6)
    rules = NS(bare_ndvi_max=0.3)
    why_ = NS(items=[])
    status = np.array(["green", "green"])
    p, conf = confidence.verdict_confidence(status, e, w, rules, 40 * one,
                                            np.array([np.nan, 0.99]), why_)
    assert p[0] > cap  # the evidence alone is strong ...
    assert conf[0] == pytest.approx(cap, abs=0.001)  # ... but the rules alone earn only the cap
    assert conf[1] > 0.9  # with the crop model agreeing it is not capped
