"""Benchmark: underwriting decisions for a province — 1,000,000 parcels × 70 dates.

Run ``python tests/benchmarks/bench_decisions.py [--parcels N --dates N] [--quick]
[--scaling] [--no-losses]`` or ``pytest -s tests/benchmarks/bench_decisions.py``. Target (the
issue): ≤ 60 s and ≤ 4 GB peak on 2 cores, ≥ 100× faster per parcel than the previous code.

* **The batch** — :mod:`decisions_batch`: a synthetic province with a known truth (one
  underwriting year, 60 % winter wheat / 40 % summer maize declared; planted, partly planted,
  fallow, meadow, other crop; clouds on ~42 % of parcel-dates; a hail with known losses),
  generated once into ``$AGRI3S_BENCH_DIR/decisions`` (default ``/tmp/agri3s_bench``).
* **New code** — ``screen_looks`` then ``verify_planting(…, crop_model="auto")`` in a fresh
  process; its wall time includes start-up, imports and loading the cached series (page cache
  warm; the load is reported apart), peak memory is the process's VmHWM. The split comes from
  ``time.perf_counter`` wrapped around the package functions from outside (nothing edited).
* **Previous code** — ``verify_planting`` of commit ``575bcd8`` (``git show``, relative imports
  made absolute, loaded as a module of its own from the cache folder), in its own process on
  ``--peer-parcels`` parcels drawn at random (seeded); compared per parcel, in-process
  decision time against in-process decision time.
* **Losses** — ``estimate_losses`` + ``claims_table`` for the hail on the same batch.

The last line: ``decisions: 1000000 parcels x 70 dates in N s; Nx the previous code per
parcel; peak N MB``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _p in (str(HERE), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import decisions_batch as batch  # noqa: E402

PEER_COMMIT = "575bcd8"


class Timers:
    """Exclusive time per label of wrapped functions (a wrapped call inside another counts
    only for the inner label), and the peak resident memory seen while each label was the
    innermost running one (a thread samples VmRSS every 20 ms)."""

    def __init__(self):
        self.own: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.peak_mb: dict[str, float] = {}
        self.entry_mb: dict[str, float] = {}
        self.missing: list[str] = []
        self._stack: list[float] = []
        self._labels: list[str] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            rss = self.rss_mb()
            label = self._labels[-1] if self._labels else "(outside the wrapped functions)"
            if rss > self.peak_mb.get(label, 0.0):
                self.peak_mb[label] = rss

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join()

    def wrap(self, owner, name: str, label: str) -> None:
        fn = getattr(owner, name, None)
        if fn is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return

        def timed(*args, **kwargs):
            self._stack.append(0.0)
            self._labels.append(label)
            rss = self.rss_mb()
            self.entry_mb[label] = min(self.entry_mb.get(label, rss), rss)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                inner = self._stack.pop()
                self._labels.pop()
                self.own[label] = self.own.get(label, 0.0) + spent - inner
                self.calls[label] = self.calls.get(label, 0) + 1
                if self._stack:
                    self._stack[-1] += spent

        setattr(owner, name, timed)


def instrument() -> Timers:
    """Wrap the package functions the decisions go through (from outside: nothing edited)."""
    from sklearn.ensemble import RandomForestClassifier

    from agri_3s.decisions import crop_model, evidence, planting, reason_arrays
    from agri_3s.timeseries import phenology, screening, smoothing

    t = Timers()
    t.wrap(screening, "screen_looks", "screen looks")
    t.wrap(planting, "verify_planting", "rules + table (rest of verify_planting)")
    for name in ("place_windows", "canopy_reference", "gather"):
        t.wrap(evidence, name, "evidence (windows, canopy level, window statistics)")
    t.wrap(crop_model, "judge_declarations", "crop model: rest (sampling, out-of-bag, report)")
    t.wrap(crop_model, "features", "crop model: features (bins, grid)")
    t.wrap(smoothing, "whittaker", "crop model: features, smoothing")
    t.wrap(phenology, "season_metrics", "crop model: features, season metrics")
    t.wrap(crop_model, "_train", "crop model: forests, fit")
    t.wrap(RandomForestClassifier, "predict_proba", "crop model: forests, predict")
    t.wrap(reason_arrays.BatchReasons, "add", "reason texts")
    t.wrap(planting, "_dates", "day numbers → dates (reasons, date columns)")
    t.wrap(planting, "verdict_confidence", "confidence")
    return t


def own_peak_mb() -> float:
    """This process's peak resident set (VmHWM): a child's ru_maxrss also counts its parent's
    RSS at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rows(spec: dict) -> np.ndarray | None:
    return np.load(spec["rows"]) if spec.get("rows") else None


def work_new(spec: dict) -> dict:
    """``screen_looks`` + ``verify_planting(crop_model="auto")`` on the cached batch."""
    imported = time.time()
    from agri_3s.decisions.calendar import load_calendars
    from agri_3s.timeseries import screening
    from agri_3s.types import Season

    timers = instrument()
    from agri_3s.decisions import planting

    started = time.time()
    t0 = time.perf_counter()
    series, parcels = batch.load_batch(Path(spec["root"]), _rows(spec))
    t1 = time.perf_counter()
    report: dict = {}
    if spec.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    screened = screening.screen_looks(series, screening.ScreenRules(min_clear_fraction=0.6))
    verdicts = planting.verify_planting(screened, parcels, load_calendars(),
                                        Season.parse(batch.SEASON), crop_model="auto",
                                        model_report=report)
    t2 = time.perf_counter()
    done = time.time()
    peak = own_peak_mb()
    timers.stop()
    if spec.get("profile"):
        prof.disable()
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
        Path(spec["profile"]).write_text(buf.getvalue())
    if spec.get("out"):
        verdicts[["status", "reasons", "confidence", "decided_by"]].to_parquet(spec["out"])
    return {"start_imports_s": imported - spec["launched"], "package_imports_s": started - imported,
            "load_s": t1 - t0, "decisions_s": t2 - t1, "to_verdicts_s": done - spec["launched"],
            "split": timers.own, "calls": timers.calls, "missing": timers.missing,
            "peak_by_label": timers.peak_mb, "entry_by_label": timers.entry_mb,
            "crop_model": {k: v for k, v in report.items() if k != "why_en"}, "peak_mb": peak,
            "n": int(len(verdicts))}


def previous_code(cache: Path) -> Path:
    """``verify_planting`` as committed at ``PEER_COMMIT``, with absolute imports, as a file
    in the benchmark cache (never in the package)."""
    path = cache / f"previous_planting_{PEER_COMMIT}.py"
    if not path.exists():
        try:
            src = subprocess.run(["git", "-C", str(ROOT), "show",
                                  f"{PEER_COMMIT}:agri_3s/decisions/planting.py"],
                                 check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SystemExit(f"bench_decisions: cannot read the previous code from git "
                             f"({exc}); run it in a git checkout that has {PEER_COMMIT}.") from exc
        src = (src.replace("from ..reasons import", "from agri_3s.reasons import")
                  .replace("from ..types import", "from agri_3s.types import")
                  .replace("from .calendar import", "from agri_3s.decisions.calendar import"))
        if "from .." in src or "from . " in src or "\nfrom ." in src:
            raise SystemExit("bench_decisions: the previous code has relative imports left")
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(src)
    return path


def work_old(spec: dict) -> dict:
    """The previous ``verify_planting`` on the same batch (a subset of its parcels)."""
    import importlib.util

    imported = time.time()
    from agri_3s.decisions.calendar import load_calendars
    from agri_3s.types import Season

    loader = importlib.util.spec_from_file_location("previous_planting", spec["source"])
    old = importlib.util.module_from_spec(loader)
    sys.modules[loader.name] = old  # (dataclasses look their module up)
    loader.loader.exec_module(old)
    started = time.time()
    t0 = time.perf_counter()
    series, parcels = batch.load_batch(Path(spec["root"]), _rows(spec))
    t1 = time.perf_counter()
    verdicts = old.verify_planting(series, parcels, load_calendars(), Season.parse(batch.SEASON))
    t2 = time.perf_counter()
    done = time.time()
    peak = own_peak_mb()
    if spec.get("out"):
        verdicts[["status", "reasons", "confidence"]].to_parquet(spec["out"])
    return {"start_imports_s": imported - spec["launched"], "package_imports_s": started - imported,
            "load_s": t1 - t0, "decisions_s": t2 - t1, "to_verdicts_s": done - spec["launched"],
            "peak_mb": peak, "n": int(len(verdicts))}


def work_losses(spec: dict) -> dict:
    """``estimate_losses`` + ``claims_table`` for the hail on the cached batch."""
    imported = time.time()
    import geopandas as gpd
    import shapely

    from agri_3s.decisions.calendar import load_calendars
    from agri_3s.decisions.indemnity import PolicyTerms, claims_table
    from agri_3s.decisions.loss import Event, estimate_losses

    started = time.time()
    t0 = time.perf_counter()
    corners = ("x0", "y0", "x1", "y1")
    series, parcels = batch.load_batch(Path(spec["root"]), _rows(spec), corners)
    t1 = time.perf_counter()
    geoms = shapely.box(*(parcels.pop(c).to_numpy() for c in corners))
    gdf = gpd.GeoDataFrame(parcels, geometry=geoms, crs=batch.CRS)
    footprint = gpd.GeoDataFrame(geometry=[batch.hail_footprint(spec["n_batch"])], crs=batch.CRS)
    event = Event("hail-2025-05-14", "hail", batch.HAIL, footprint=footprint,
                  crops=("winter_wheat",))
    t2 = time.perf_counter()
    estimates = estimate_losses(series, gdf, event)
    t3 = time.perf_counter()
    claims = claims_table(estimates, gdf, event, PolicyTerms(), load_calendars())
    t4 = time.perf_counter()
    done = time.time()
    peak = own_peak_mb()
    if spec.get("out"):
        claims[["status", "loss_rate", "loss_rate_low", "loss_rate_high", "indemnity_cny"]
               ].to_parquet(spec["out"])
    return {"start_imports_s": imported - spec["launched"], "package_imports_s": started - imported,
            "load_s": t1 - t0, "geometries_s": t2 - t1, "estimate_losses_s": t3 - t2,
            "claims_table_s": t4 - t3, "to_claims_s": done - spec["launched"], "peak_mb": peak,
            "n": int(len(claims))}


WORKERS = {"new": work_new, "old": work_old, "losses": work_losses}


def run_worker(method: str, spec: dict, prefix: tuple[str, ...] = ()) -> dict:
    """One method in a fresh Python process: its report, plus the whole process's wall time
    (``prefix``: a profiler's command line in front of it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dict(spec, launched=time.time()), f)
    t0 = time.perf_counter()
    proc = subprocess.run([*prefix, sys.executable, str(Path(__file__).resolve()), "--worker",
                           method, "--spec", f.name], stdout=subprocess.PIPE, env=env, text=True)
    wall = time.perf_counter() - t0
    os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} worker failed (exit {proc.returncode}); output:\n"
                           f"{proc.stdout}")
    report = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return {**json.loads(report), "process_wall_s": wall}


def warm(root: Path) -> None:
    """Read the cached files once, so every process reads from a warm page cache."""
    for path in root.iterdir():
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


# ---------------------------------------------------------------- checks against the truth

def agreement(statuses, truth, log=print, label: str = "") -> dict:
    """Verdicts against the generated truth: exact status, accept/refuse, and per class."""
    import pandas as pd

    st = pd.Series(np.asarray(statuses, dtype=object))
    expected = truth["expected"].to_numpy(object)
    exact = float(np.mean(st.to_numpy() == expected))
    accept = float(np.mean((st.to_numpy() == "green") == (expected == "green")))
    cls = truth["truth_class"].astype(str).to_numpy()
    cls = np.where((cls == "planted") & (expected == "yellow"), "planted, small/over-declared",
                   cls)
    cls = np.where((cls == "planted") & np.isfinite(truth["hail_loss"].to_numpy(float)),
                   "planted, hail-hit", cls)
    table = pd.crosstab(pd.Series(cls, name="truth"), st.rename("status"), normalize="index")
    log(f"{label}verdicts vs the generated truth: status as expected {exact:.1%}; "
        f"accepted (green) iff expected green {accept:.1%} of {len(st):,} parcels")
    for name, r in table.iterrows():
        counts = ", ".join(f"{k} {v:.0%}" for k, v in r.items() if v >= 0.005)
        log(f"    {name:<30} ({int((cls == name).sum()):>8,}): {counts}")
    return {"exact": exact, "accept": accept}


def loss_check(claims, truth, log=print) -> None:
    hit = np.isfinite(truth["hail_loss"].to_numpy(float))
    planted = truth["truth_class"].to_numpy(object) == "planted"
    est = claims["loss_rate"].to_numpy(float)
    both = hit & planted & np.isfinite(est)
    err = np.abs(est[both] - truth["hail_loss"].to_numpy(float)[both])
    status = claims["status"].to_numpy(object)
    log(f"losses vs the generated truth: {both.sum():,} of {(hit & planted).sum():,} hail-hit "
        f"planted wheat parcels have a loss rate; MAE {err.mean():.3f}, 90th pct |error| "
        f"{np.quantile(err, 0.9):.3f}; outside the footprint "
        f"{np.mean(status[~truth['in_footprint'].to_numpy(bool)] == 'not_affected'):.1%} "
        f"not_affected" if both.any() else "losses: no hail-hit parcel was estimated")


# ---------------------------------------------------------------- the benchmark

def _split_lines(r: dict, log=print) -> None:
    total = r["decisions_s"]
    log(f"  time split of the {total:.1f} s of decisions (exclusive, perf_counter around the "
        "package functions):")
    peaks, entry = r.get("peak_by_label", {}), r.get("entry_by_label", {})
    for label, s in sorted(r["split"].items(), key=lambda kv: -kv[1]):
        log(f"    {label:<52}{s:7.2f} s {s / total:6.1%}  ({r['calls'][label]:>2} calls; "
            f"resident {entry.get(label, float('nan')):5.0f} MB at entry, up to "
            f"{peaks.get(label, float('nan')):5.0f} MB)")
    rest = total - sum(r["split"].values())
    log(f"    {'(outside the wrapped functions)':<52}{rest:7.2f} s {rest / total:6.1%}  "
        f"(resident up to {peaks.get('(outside the wrapped functions)', float('nan')):5.0f} "
        "MB, with the loaded series)")
    if r["missing"]:
        log(f"  not found (renamed?), not timed: {', '.join(r['missing'])}")


def decisions(n: int, n_dates: int, peer_n: int, losses: bool = True, profile: bool = False,
              log=print) -> dict:
    """The benchmark on ``n`` parcels × ``n_dates`` (its working files removed after)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_decisions_"))
    try:
        return _decisions(tmp, n, n_dates, peer_n, losses, profile, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _decisions(tmp: Path, n: int, n_dates: int, peer_n: int, losses: bool, profile: bool,
               log=print) -> dict:
    import pandas as pd

    root = batch.ensure_batch(n, n_dates, log=log)
    source = previous_code(batch.bench_dir())
    warm(root)
    truth = pd.read_parquet(root / "parcels.parquet",
                            columns=["truth_class", "expected", "hail_loss", "in_footprint"])
    peer_rows = np.sort(np.random.default_rng(0).choice(n, min(peer_n, n), replace=False))
    np.save(tmp / "peer_rows.npy", peer_rows)
    load = os.getloadavg()
    log(f"batch {n:,} parcels × {n_dates} dates ({root}); season {batch.SEASON}; machine load "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) on {os.cpu_count()} cores")
    old = run_worker("old", {"root": str(root), "rows": str(tmp / "peer_rows.npy"),
                             "source": str(source), "out": str(tmp / "old.parquet")})
    log(f"previous code ({PEER_COMMIT}) on {len(peer_rows):,} parcels: decisions "
        f"{old['decisions_s']:.2f} s ({1e3 * old['decisions_s'] / old['n']:.2f} ms a parcel); "
        f"process {old['process_wall_s']:.1f} s, peak {old['peak_mb']:.0f} MB")
    small = run_worker("new", {"root": str(root), "rows": str(tmp / "peer_rows.npy"),
                               "out": str(tmp / "new_peer.parquet")})
    log(f"new code on the same {len(peer_rows):,} parcels: decisions {small['decisions_s']:.2f} "
        f"s (its crop model trains 2 forests whatever the batch size)")
    new = run_worker("new", {"root": str(root), "out": str(tmp / "new.parquet")})
    log(f"new code on {n:,} parcels: {new['to_verdicts_s']:.1f} s from launch to the verdicts "
        f"(start-up {new['start_imports_s']:.1f} s, package imports "
        f"{new['package_imports_s']:.1f} s, loading the series {new['load_s']:.1f} s, decisions "
        f"{new['decisions_s']:.1f} s); whole process {new['process_wall_s']:.1f} s (with writing "
        f"the verdicts for the check and exit); peak {new['peak_mb']:.0f} MB")
    _split_lines(new, log)
    cm = new["crop_model"]
    log(f"  crop model: used={cm.get('used')}, training pool {cm.get('training_pool')}, presumed "
        f"false left out {cm.get('presumed_false_left_out')}, agreement with declarations "
        f"{cm.get('agreement_with_declarations')}")
    if profile:
        profile_new(root, tmp, log)
    verdicts = pd.read_parquet(tmp / "new.parquet")
    if len(verdicts) != n:
        raise AssertionError(f"{len(verdicts)} verdicts for {n} parcels")
    out = {"new": new, "old": old, "new_peer": small,
           "agreement": agreement(verdicts["status"], truth, log)}
    old_v = pd.read_parquet(tmp / "old.parquet")["status"]
    sub = truth.iloc[peer_rows].reset_index(drop=True)
    out["agreement_old"] = agreement(old_v, sub, log, label=f"previous code, {len(sub):,} "
                                     "parcels: ")
    log(f"new and previous code give the same status on "
        f"{np.mean(verdicts['status'].to_numpy()[peer_rows] == old_v.to_numpy()):.1%} of those "
        f"parcels")
    out["no_pixels_ok"] = bool(np.all(verdicts["status"].to_numpy()[
        truth["truth_class"].to_numpy(object) == "no_pixels"] == "no_data"))
    if losses:
        try:
            lr = run_worker("losses", {"root": str(root), "n_batch": n,
                                       "out": str(tmp / "claims.parquet")})
        except RuntimeError as exc:  # the loss code is being rewritten: say so, go on
            log(f"losses: skipped, the loss code failed on this batch:\n{exc}")
        else:
            log(f"losses on {n:,} parcels: {lr['to_claims_s']:.1f} s from launch (start-up + "
                f"imports {lr['start_imports_s'] + lr['package_imports_s']:.1f} s, loading "
                f"{lr['load_s']:.1f} s, geometries + event {lr['geometries_s']:.1f} s, "
                f"estimate_losses {lr['estimate_losses_s']:.1f} s, claims_table "
                f"{lr['claims_table_s']:.1f} s); peak {lr['peak_mb']:.0f} MB")
            loss_check(pd.read_parquet(tmp / "claims.parquet"), truth, log)
            out["losses"] = lr
    return out


def profile_new(root: Path, tmp: Path, log=print, top: int = 30) -> None:
    """Where the new code's time goes, by source line (py-spy, 50 samples a second, when
    installed: ``pip install py-spy``), else by function (cProfile)."""
    import linecache

    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not spy:
        run_worker("new", {"root": str(root), "profile": str(tmp / "profile.txt")})
        log("cProfile of the decisions (by own time):\n" + (tmp / "profile.txt").read_text())
        return
    raw = tmp / "py-spy.txt"
    run_worker("new", {"root": str(root)}, (spy, "record", "-r", "50", "-f", "raw", "-o",
                                            str(raw), "--full-filenames", "--nonblocking", "--"))
    line_of: dict[str, int] = {}
    within: dict[str, int] = {}
    total = 0
    for row in raw.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        total += k
        frames = stack.split(";")
        ours = [f for f in frames if "/agri_3s/" in f]
        # a line of agri_3s with what runs under it (numpy, sklearn), else the leaf frame
        key = ours[-1] if ours else frames[-1]
        line_of[key] = line_of.get(key, 0) + k
        for f in {f.rsplit(":", 1)[0] + ")" for f in ours}:
            within[f] = within.get(f, 0) + k
    log(f"py-spy, the new-code process ({total / 50:.0f} thread-seconds sampled at 50/s, all "
        "threads: the forests fit and predict in 2 worker threads):")
    log("  by agri_3s source line (with the numpy / sklearn work under it; other threads and "
        "frames outside agri_3s by their own line):")
    for f, k in sorted(line_of.items(), key=lambda kv: -kv[1])[:top]:
        where = f.rsplit(" (", 1)[-1].rstrip(")")
        path, _, number = where.rpartition(":")
        code = linecache.getline(path, int(number)).strip()[:70] if number.isdigit() else ""
        log(f"    {k / 50:6.1f} s  {f.replace(str(ROOT) + '/', '')}  {code}")
    log("  by agri_3s function (inclusive):")
    for f, k in sorted(within.items(), key=lambda kv: -kv[1])[:top]:
        log(f"    {k / 50:6.1f} s  {f.replace(str(ROOT) + '/', '')}")


def scaling(sizes: list[int], n_dates: int, known: dict[int, dict], log=print) -> list[dict]:
    """New-code time and memory over batch sizes (one run each)."""
    rows = []
    for n in sizes:
        r = known.get(n)
        if r is None:
            root = batch.ensure_batch(n, n_dates, log=log)
            warm(root)
            r = run_worker("new", {"root": str(root)})
        rows.append({"parcels": n, **r})
        log(f"  scaling: {n:>9,} parcels × {n_dates} dates: {r['to_verdicts_s']:6.1f} s to the "
            f"verdicts, decisions {r['decisions_s']:6.1f} s, peak {r['peak_mb']:6.0f} MB")
    log(f"{'parcels':>10}{'to verdicts s':>15}{'load s':>8}{'decisions s':>13}"
        f"{'µs/parcel':>11}{'peak MB':>9}{'MB/1k parcels':>15}")
    for r in rows:
        log(f"{r['parcels']:>10,}{r['to_verdicts_s']:15.1f}{r['load_s']:8.1f}"
            f"{r['decisions_s']:13.1f}{1e6 * r['decisions_s'] / r['parcels']:11.1f}"
            f"{r['peak_mb']:9.0f}{1e3 * r['peak_mb'] / r['parcels']:15.2f}")
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parcels", type=int, default=None, help="batch size (1,000,000)")
    p.add_argument("--dates", type=int, default=70)
    p.add_argument("--quick", action="store_true", help="20,000 parcels")
    p.add_argument("--peer-parcels", type=int, default=2_000,
                   help="parcels the previous code runs on (per-parcel comparison)")
    p.add_argument("--scaling", action="store_true", help="10⁵ / 3·10⁵ / 10⁶ parcels")
    p.add_argument("--no-losses", action="store_true", help="skip the loss assessment")
    p.add_argument("--profile", action="store_true", help="also a cProfile run of the decisions")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        report = WORKERS[a.worker](json.loads(Path(a.spec).read_text()))
        print(json.dumps(report))
        return report
    n = a.parcels or (20_000 if a.quick else 1_000_000)
    t0 = time.perf_counter()
    out = decisions(n, a.dates, a.peer_parcels, losses=not a.no_losses, profile=a.profile)
    if a.scaling:
        sizes = sorted({100_000, 300_000, 1_000_000} | {n})
        out["scaling"] = scaling(sizes, a.dates, {n: out["new"]})
    print(f"(benchmark ran {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    new, old = out["new"], out["old"]
    ratio = (old["decisions_s"] / old["n"]) / (new["decisions_s"] / new["n"])
    out["ratio"] = ratio
    if "losses" in out:
        lr = out["losses"]
        print(f"losses: {n} parcels x {a.dates} dates in {lr['to_claims_s']:.1f} s; "
              f"peak {lr['peak_mb']:.0f} MB")
    # the machine-readable line comes last
    print(f"decisions: {n} parcels x {a.dates} dates in {new['to_verdicts_s']:.1f} s; "
          f"{ratio:.0f}x the previous code per parcel; peak {new['peak_mb']:.0f} MB")
    return out


def test_bench_decisions():
    """``pytest -s tests/benchmarks/bench_decisions.py``: ``AGRI3S_BENCH_QUICK=1``,
    ``AGRI3S_BENCH_PARCELS``, ``AGRI3S_BENCH_DATES``, ``AGRI3S_BENCH_SCALING=1``."""
    env = os.environ
    argv = ["--quick"] if env.get("AGRI3S_BENCH_QUICK") else []
    if env.get("AGRI3S_BENCH_PARCELS"):
        argv += ["--parcels", env["AGRI3S_BENCH_PARCELS"]]
    if env.get("AGRI3S_BENCH_DATES"):
        argv += ["--dates", env["AGRI3S_BENCH_DATES"]]
    if env.get("AGRI3S_BENCH_SCALING"):
        argv.append("--scaling")
    out = main(argv)
    assert out["new"]["n"] == (int(env.get("AGRI3S_BENCH_PARCELS", 0))
                               or (20_000 if env.get("AGRI3S_BENCH_QUICK") else 1_000_000))
    assert out["no_pixels_ok"], "a parcel without pixels did not get no_data"


if __name__ == "__main__":
    main()
