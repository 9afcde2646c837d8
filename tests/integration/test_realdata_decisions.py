"""Underwriting verdicts on real fields with true and false declarations (../shared/data).

Europe: the WorldCereal Flanders 2018 chip (real LPIS maize, grassland and other crops, cut into
field-sized blocks; maize and grassland declared as maize and as winter wheat; the wheat
season also with imagery from January only) and the eo-learn Slovenia chip (real meadows,
shrubland and forest declared as maize and as winter wheat). Kenya: 319 real smallholder
fields (WorldCrops / PlantVillage), half of the non-maize ones declared as maize.

The issue's targets are asserted where they are met; where they are not, the test is marked
``xfail(strict=True)`` with the measured figure, so it turns into a failure the day the code
meets it (and the mark must go) — see README, "Accuracy".
"""

import pandas as pd
import pytest

import tests.realdata as rd
from agri_3s.decisions.calendar import load_calendars
from agri_3s.decisions.evaluate import evaluate_verdicts
from agri_3s.decisions.planting import verify_planting
from agri_3s.types import Season

pytestmark = pytest.mark.realdata


def _run(parcels, series, truth, calendar, season, region, batch=""):
    """Verdicts of one batch with its truth; ids prefixed by the batch (the same block is
    declared in several batches)."""
    v = verify_planting(series, parcels, load_calendars(calendar), Season.parse(season),
                        region=region, crop_model="auto")
    v = v.merge(truth[["parcel_id", "declaration_true"]], on="parcel_id")
    return v.assign(parcel_id=batch + v["parcel_id"], batch=batch)


@pytest.fixture(scope="module")
def europe(shared_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("europe")
    runs = []
    for crop, season in (("maize", rd.FLANDERS_MAIZE_SEASON),
                         ("winter_wheat", rd.FLANDERS_WHEAT_SEASON)):
        runs.append(_run(*rd.flanders_batch(shared_data, work / "fl", crop), rd.FLANDERS_CALENDAR,
                         season, rd.FLANDERS_REGION, f"flanders-{crop}:"))
    runs.append(_run(*rd.flanders_batch(shared_data, work / "fl", "winter_wheat",
                                        imagery_from="2018-01-01"),
                     rd.FLANDERS_CALENDAR, rd.FLANDERS_WHEAT_SEASON, rd.FLANDERS_REGION,
                     "flanders-wheat-from-january:"))
    for crop, season in (("maize", rd.SLOVENIA_MAIZE_SEASON),
                         ("winter_wheat", rd.SLOVENIA_WHEAT_SEASON)):
        runs.append(_run(*rd.slovenia_batch(shared_data, work / "si", crop), rd.FLANDERS_CALENDAR,
                         season, rd.FLANDERS_REGION, f"slovenia-{crop}:"))
    return pd.concat(runs, ignore_index=True)


@pytest.fixture(scope="module")
def kenya(shared_data):
    parcels, series, truth = rd.kenya_batch(shared_data, false_share=0.5)
    return _run(parcels, series, truth, rd.KENYA_CALENDAR, rd.KENYA_SEASON, "western_kenya")


def _scores(v):
    return evaluate_verdicts(v, v[["parcel_id", "declaration_true"]], by=None)


def test_europe_true_and_false_declarations(europe):
    s = _scores(europe)
    assert s["balanced_accuracy"] >= 0.95, s
    # one LPIS 'grassland' block is maize: wrong, but at the rules-only cap (0.72)
    assert s["wrong"] <= 1 and s["wrong_confident"] == 0, s["wrong_verdicts"]
    # grassland / meadows / forest declared as a crop are never accepted in bulk
    false = europe[~europe["declaration_true"].astype(bool)]
    assert (false["status"] == "green").mean() <= 0.05


def test_europe_review_rate_target(europe):
    assert _scores(europe)["review_rate"] <= 0.20


def test_europe_winter_wheat_with_imagery_from_january(europe):
    """Maize and grassland declared as wheat, sowing unobserved: not accepted."""
    wheat = europe[europe["batch"] == "flanders-wheat-from-january:"]
    assert (wheat.loc[~wheat["declaration_true"].astype(bool), "status"] == "green").mean() <= 0.1


def test_kenya_false_declarations_are_not_accepted_confidently(kenya):
    s = _scores(kenya)
    assert s["n_judged"] >= 250
    # measured: the data separate maize from weedy fallow and cassava poorly (a random forest
    # on the true labels, cross-validated, reaches balanced accuracy 0.70 maize vs other)
    assert s["balanced_accuracy"] >= 0.55, s


@pytest.mark.xfail(strict=True, reason="issue target: balanced accuracy ≥ 0.80 on Kenya with "
                                       "review ≤ 20 %; measured 0.60 with review 32 %")
def test_kenya_target(kenya):
    s = _scores(kenya)
    assert s["balanced_accuracy"] >= 0.80 and s["review_rate"] <= 0.20


def test_no_wrong_verdict_is_confident_on_kenya(kenya):
    s = _scores(kenya)
    assert s["wrong_confident"] == 0, s["wrong_verdicts"]


def test_a_batch_of_one_declared_crop_is_not_confidently_wrong(shared_data):
    """Every non-maize Kenya field declared as maize: no crop model can be trained on one
    declared crop, and the rules alone pass weedy fallow and cassava as maize. Before the
    rules-only cap 48 of 54 wrong verdicts claimed confidence ≥ 0.8."""
    parcels, series, truth = rd.kenya_batch(shared_data, false_share=1.0)
    s = _scores(_run(parcels, series, truth, rd.KENYA_CALENDAR, rd.KENYA_SEASON,
                     "western_kenya"))
    assert s["wrong"] >= 30  # the rules cannot tell them apart: the case is a hard one
    assert s["wrong_confident"] == 0, s["wrong_verdicts"]


def test_unobserved_windows_are_said(europe):
    jan_wheat = europe[europe["reasons"].str.contains("SOWING_UNOBSERVED", na=False)]
    assert len(jan_wheat) >= 10
    assert jan_wheat["unobserved"].str.contains("sowing").all()
