"""A crop model learnt from the batch's own declarations (the Sen4CAP / Sen2-Agri approach).

Most declarations in a batch are true, so the declarations themselves are training labels: a
random forest learns what each declared crop's season looks like here, this year, and each
parcel is then given the probability of its declared crop — by trees that never saw that
parcel (**cross-fitting**): a parcel the forest trained on is judged by its *out-of-bag* trees
only (each tree grows on a bootstrap sample of the training pool, and a parcel outside it is
unseen by that tree; Breiman 2001), every other parcel by the whole forest. False declarations
are a minority; to keep them from teaching the forest, the parcels whose declared crop the
first round finds very unlikely are left out of the second round's training. Parcels the forest
finds unlike their declared crop are the ones to flag — the verdict combines this with the
calendar rules (:mod:`.planting`).

Features are season-relative, so a model trained on one batch (or on labelled inspections) can
be saved and applied to another batch of the same crops and region: NDVI of the smoothed season
curve every ``step_days`` from ``LOOKBACK`` before the season start (NaN where the season was
not observed: the forest handles missing values), the highest clear NDVI in each step, and
season metrics (peak, start, end, growth cycles, seasonal integral; :mod:`~agri_3s.timeseries`).

A batch too small, or with too few parcels of at least two crops, cannot train a model; the
verdicts then rest on the rules alone and say so (``CROP_MODEL_UNAVAILABLE`` and ``run.json``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..blocks import for_blocks
from ..errors import InputError

#: A crop needs this many judged parcels to be learnt; the model needs two such crops.
MIN_PER_CROP = 10
MIN_PARCELS = 40
#: Most parcels a forest trains on (a stratified sample of the others when the batch is larger).
MAX_TRAIN = 10_000
#: Parcels whose features are made at a time: a block's temporaries stay in the processor's
#: caches (10⁶ parcels × 70 dates: 0.7 s at 8192, 1.3 s at 65,536).
CHUNK = 8192
#: Parcels each tree is grown on (a bootstrap sample of the training pool).
TREE_SAMPLES = 1_000
#: Trees a forest grows at least …
TREES = 100
#: … and the out-of-bag trees it aims to judge each of its own training parcels with (a small
#: pool needs more trees: each tree sees ~63 % of it; a province's pool of 10⁴ is out of the
#: bag of 90 % of 100 trees).
OOB_TREES = 90
#: Declarations whose crop the first round finds less likely than this are left out of the
#: second round's training (presumed false).
CLEAN_BELOW = 0.1


@dataclass
class CropModel:
    """A fitted crop model and how its features are made."""

    forest: object
    classes: list[str]
    step_days: float
    n_steps: int
    #: What it was trained on (crops and counts, season, the batch's hash).
    trained_on: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the model (joblib). Load only models you made: a model file runs code."""
        import joblib

        joblib.dump(self, path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> CropModel:
        import joblib

        try:
            model = joblib.load(path)
        except Exception as exc:  # a file that is not a model: pickle raises many kinds
            raise InputError(f"cannot read the crop model ({exc}).", source=path,
                             fix="pass a file written by --save-crop-model") from exc
        if not isinstance(model, cls):
            raise InputError("the file is not an agri_3s crop model.", source=path,
                             fix="pass a file written by --save-crop-model")
        return model

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(parcels, classes) probabilities, in chunks (bounded memory)."""
        out = np.empty((len(x), len(self.classes)), np.float32)
        for a in range(0, len(x), 200_000):
            out[a:a + 200_000] = self.forest.predict_proba(x[a:a + 200_000])
        return out


@dataclass(frozen=True)
class SeasonCurve:
    """Each parcel's smoothed season (Whittaker) and its season metrics, computed once per
    batch for the verdicts and the crop model."""

    smooth: np.ndarray
    spread: np.ndarray
    metrics: dict
    start_day: float
    end_day: float


def season_curve(values: np.ndarray, ok: np.ndarray, days: np.ndarray, start_day: float,
                 end_day: float) -> SeasonCurve:
    """Smooth the clear looks and read the season metrics over [start_day, end_day]."""
    from ..timeseries.phenology import season_metrics
    from ..timeseries.smoothing import whittaker

    smooth, spread = whittaker(values, ok, days)  # weight 0 (False): not a clear look
    n = len(values)
    metrics = season_metrics(smooth, ok, days, np.full(n, start_day), np.full(n, end_day))
    return SeasonCurve(smooth, spread, metrics, start_day, end_day)


def features(curve: SeasonCurve, values: np.ndarray, ok: np.ndarray, days: np.ndarray, *,
             step_days: float, n_steps: int) -> np.ndarray:
    """(parcels, features): per step of the season, the highest clear NDVI and the smoothed
    curve's value; then the season metrics. NaN where unobserved."""
    start_day = curve.start_day
    step = np.floor((days - start_day) / step_days).astype(int)
    bins = [np.flatnonzero(step == k) for k in range(n_steps)]
    grid = start_day + (np.arange(n_steps) + 0.5) * step_days
    col = np.clip(np.searchsorted(days, grid), 0, len(days) - 1)
    names = ("peak_value", "peak_day", "sos_day", "eos_day", "amplitude", "n_cycles",
             "integral", "season_integral")
    out = np.empty((len(values), 2 * n_steps + 1 + len(names)), np.float32)

    def block(rows: slice) -> None:  # a block of parcels: bounded memory
        out[rows] = np.nan  # (filled here, on the threads: a province's array is large)
        v, o = values[rows], ok[rows]
        for k, cols in enumerate(bins):
            if len(cols):  # the highest clear look in the step (NaN only if none is clear)
                out[rows, k] = np.fmax.reduce(np.where(o[:, cols], v[:, cols], np.nan), axis=1)
        # the smoothed curve on the step grid, where a look is within a step of it
        seen = np.abs(_nearest_look(o, days, col) - grid[None, :]) <= step_days
        out[rows, n_steps:2 * n_steps] = np.where(seen, curve.smooth[rows][:, col], np.nan)

    for_blocks(block, len(values), CHUNK)
    out[:, 2 * n_steps] = curve.spread
    out[:, 2 * n_steps + 1:] = np.column_stack([np.asarray(curve.metrics[k], np.float32)
                                                for k in names])
    out[:, 2 * n_steps + 2:2 * n_steps + 5] -= start_day  # peak, start, end: days in
    return out


def _nearest_look(ok: np.ndarray, days: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per parcel, the day of the clear look nearest to each of the dates ``cols`` (±inf where
    none)."""
    n_t = len(days)
    t = np.arange(n_t, dtype=np.int16)
    prev = np.maximum.accumulate(np.where(ok, t, np.int16(-1)), axis=1)[:, cols]
    nxt = np.minimum.accumulate(np.where(ok, t, np.int16(n_t))[:, ::-1], axis=1)[:, ::-1][:, cols]
    d_prev = np.where(prev >= 0, days[np.clip(prev, 0, None)], -np.inf)
    d_next = np.where(nxt < n_t, days[np.clip(nxt, None, n_t - 1)], np.inf)
    at = days[cols][None, :]
    return np.where(at - d_prev <= d_next - at, d_prev, d_next)


def _train(x: np.ndarray, labels: np.ndarray, seed: int, *, out_of_bag: bool = False):
    from sklearn.ensemble import RandomForestClassifier

    # each tree sees at most TREE_SAMPLES parcels (bootstrap): a large batch's forests cost
    # what a small batch's do, and 100 trees still see the whole pool
    samples = min(len(x), TREE_SAMPLES)
    trees = TREES
    if out_of_bag:  # the share of trees that leave a parcel out: (1 − 1/n)^samples
        unseen = (1.0 - 1.0 / len(x)) ** samples
        trees = max(TREES, int(np.ceil(OOB_TREES / max(unseen, 1e-3))))
    forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2, max_features="sqrt",
                                    class_weight="balanced_subsample", n_jobs=2,
                                    max_samples=samples, oob_score=out_of_bag,
                                    random_state=seed)
    return forest.fit(x, labels)


def _sample(rows: np.ndarray, labels: np.ndarray, limit: int, rng) -> np.ndarray:
    """At most ``limit`` of ``rows``, stratified by label."""
    if len(rows) <= limit:
        return rows
    keep = []
    for lab in np.unique(labels[rows]):
        mine = rows[labels[rows] == lab]
        keep.append(rng.choice(mine, max(1, int(limit * len(mine) / len(rows))), replace=False))
    return np.sort(np.concatenate(keep))


def cross_fitted(x: np.ndarray, declared: np.ndarray, trainable: np.ndarray, *,
                 seed: int = 0) -> tuple[np.ndarray, list[str], dict]:
    """Probabilities (parcels, classes) where every parcel is judged by trees that did not
    train on it; two rounds, the second without presumed-false declarations.

    Each round's forest trains on a stratified pool of at most ``MAX_TRAIN`` parcels and judges
    those out of bag; the first round only judges that pool (to find the presumed-false
    declarations in it), the second judges every parcel — so a province costs two forests,
    not a forest per parcel."""
    code, names = pd.factorize(declared, sort=True)
    learnt = np.unique(code[trainable & (code >= 0)])
    classes = [str(c) for c in names[learnt]]
    label = np.full(len(names) + 1, -1)  # crop code → class column (-1: not learnt)
    label[learnt] = np.arange(len(learnt))
    label = label[code]
    rng = np.random.default_rng(seed)
    pool = _sample(np.flatnonzero(trainable), label, MAX_TRAIN, rng)

    def judge(train: np.ndarray, others: np.ndarray, k: int) -> np.ndarray:
        """Class probabilities: ``train`` out of bag, ``others`` by the whole forest (NaN
        for the rest)."""
        forest = _train(x[train], label[train], seed + k, out_of_bag=True)
        out = np.full((len(x), len(classes)), np.nan, np.float32)
        oob = np.zeros((len(train), len(classes)), np.float32)
        oob[:, forest.classes_] = forest.oob_decision_function_
        oob[oob.sum(axis=1) == 0] = np.nan  # never out of bag (rare): no judgement
        out[train] = oob
        trained = np.zeros(len(x), bool)
        trained[train] = True
        others = others[~trained[others]]
        for a in range(0, len(others), 200_000):
            part = others[a:a + 200_000]
            p = np.zeros((len(part), len(classes)), np.float32)
            p[:, forest.classes_] = forest.predict_proba(x[part])
            out[part] = p
        return out

    first = judge(pool, pool[:0], 0)
    own = first[pool, label[pool]]
    kept = pool[~(own < CLEAN_BELOW)]
    proba = judge(kept, np.arange(len(x)), 1)
    return proba, classes, {"presumed_false_left_out": int(len(pool) - len(kept)),
                            "training_pool": int(len(pool))}


def judge_declarations(crop_model, curve: SeasonCurve, values, ok, days, declared: np.ndarray,
                       judged: np.ndarray, *, step_days: float = 15.0,
                       save_to: str | Path | None = None
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(probability of the declared crop, likeliest crop, report) per parcel.

    ``crop_model``: ``"auto"`` trains on this batch (cross-fitted), a :class:`CropModel` or a
    path applies a saved one. Parcels not judged, or whose declared crop the model does not
    know, get NaN."""
    n = len(declared)
    p_declared = np.full(n, np.nan)
    likeliest = np.full(n, None, dtype=object)
    # the crop names hashed once: below, a province's parcels are looked up by integer codes
    declared = pd.Categorical(np.asarray(declared, object))
    if isinstance(crop_model, (str, Path)) and str(crop_model) != "auto":
        crop_model = CropModel.load(crop_model)
    if isinstance(crop_model, CropModel):
        x = features(curve, values, ok, days, step_days=crop_model.step_days,
                     n_steps=crop_model.n_steps)
        proba = crop_model.probabilities(x)
        classes = crop_model.classes
        report = {"used": True, "how": "applied a saved model",
                  "trained_on": crop_model.trained_on}
    else:
        code, names = pd.factorize(declared[judged], sort=True)
        counts = {str(c): int(k) for c, k in zip(names, np.bincount(code[code >= 0],
                                                                    minlength=len(names)))}
        learnt = {c: k for c, k in counts.items() if k >= MIN_PER_CROP}
        if len(learnt) < 2 or judged.sum() < MIN_PARCELS:
            why = (f"{len(learnt)} crop(s) with at least {MIN_PER_CROP} parcels among "
                   f"{int(judged.sum())} (a model needs two such crops and {MIN_PARCELS} "
                   "parcels)")
            why_zh = (f"{int(judged.sum())} 个地块中有至少 {MIN_PER_CROP} 个地块的作物 "
                      f"{len(learnt)} 种（模型需要两种这样的作物和 {MIN_PARCELS} 个地块）")
            return p_declared, likeliest, {"used": False, "why_en": why, "why_zh": why_zh,
                                           "declared_counts": counts}
        n_steps = int(np.ceil((curve.end_day - curve.start_day) / step_days))
        x = features(curve, values, ok, days, step_days=step_days, n_steps=n_steps)
        trainable = judged & np.isin(declared.codes,
                                     declared.categories.get_indexer(list(learnt)))
        proba, classes, info = cross_fitted(x, declared, trainable)
        report = {"used": True, "how": "random forest on the batch's own "
                  "declarations, its training parcels judged out of bag", "crops": learnt, **info}
        if save_to:
            forest = _train(x[trainable], np.asarray(declared[trainable], object), 0)
            CropModel(forest, list(forest.classes_), step_days, n_steps,
                      {"crops": learnt, "parcels": int(trainable.sum()),
                       "features": hashlib.sha256(x[trainable].tobytes()).hexdigest()[:16]}
                      ).save(save_to)
            report["saved_to"] = str(save_to)
    # the declared crop's class (-1: unknown)
    col = np.append(pd.Index(classes).get_indexer(declared.categories), -1)[declared.codes]
    known = judged & (col >= 0)
    p_declared[known] = proba[np.flatnonzero(known), col[known]]
    best = np.nan_to_num(proba, nan=-1).argmax(axis=1)
    likeliest[judged] = np.asarray(classes, dtype=object)[best[judged]]
    report["agreement_with_declarations"] = round(float(
        (best[known] == col[known]).mean()), 4) if known.any() else None
    # how well this batch's crops can be told apart: the mean share of each learnt crop's
    # parcels the (cross-fitted) model gives back to that crop (balanced recall)
    hits = np.bincount(col[known], weights=best[known] == col[known], minlength=len(classes))
    seen = np.bincount(col[known], minlength=len(classes))
    recall = hits[seen > 0] / seen[seen > 0]
    if len(recall) >= 2:  # chance-corrected, on the scale of "probability a verdict is right":
        chance = 1.0 / len(recall)  # 0.5 when the crops look alike, 1 when always told apart
        kappa = max(0.0, (float(np.mean(recall)) - chance) / (1.0 - chance))
        report["separability"] = round(0.5 + 0.5 * kappa, 4)
    else:
        report["separability"] = None
    return p_declared, likeliest, report
