"""The demo on the embedded sample (``make demo``, ``agri3s demo``): both seasons'
underwriting, both events' loss assessment, two adjuster maps, scored against the sample's
truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..outputs.export import atomic_path
from ..pipeline import Progress, RunResult, assess, map_results, underwrite


def demo(out: str | Path = "maps/demo", *, sample_dir: str | Path | None = None, lang: str = "zh",
         progress: Progress | None = None) -> dict[str, Path]:
    """Generate (once) the synthetic sample, run both seasons' underwriting and both events'
    loss assessment, write two adjuster maps, and score the results against the sample's truth.
    Returns the written files; ``files["summary"]`` holds the scores as text."""
    from . import ensure_sample

    sample = ensure_sample(sample_dir)
    out = Path(out)
    imagery = f"local:{sample.imagery}"
    runs = {
        "underwrite_wheat": lambda o: underwrite(sample.parcels_wheat, imagery,
                                                 "2024-10-01/2025-06-15", out=o, lang=lang,
                                                 progress=progress),
        "underwrite_maize": lambda o: underwrite(sample.parcels_maize, imagery,
                                                 "2025-06-10/2025-10-10", out=o, lang=lang,
                                                 progress=progress),
        "assess_hail": lambda o: assess(sample.parcels_wheat, imagery, sample.hail_event, out=o,
                                        lang=lang, progress=progress,
                                        verdicts=out / "underwrite_wheat"),
        "assess_flood": lambda o: assess(sample.parcels_maize, imagery, sample.flood_event,
                                         out=o, lang=lang, progress=progress,
                                         verdicts=out / "underwrite_maize"),
    }
    results = {name: run(out / name) for name, run in runs.items()}
    files = {f"{name}/{k}": v for name, r in results.items() for k, v in r.files.items()}
    files["map_wheat.html"] = map_results([out / "underwrite_wheat", out / "assess_hail"],
                                          out / "map_wheat.html", lang=lang)
    files["map_maize.html"] = map_results([out / "underwrite_maize", out / "assess_flood"],
                                          out / "map_maize.html", lang=lang)
    summary = _score(results, pd.read_csv(sample.truth, dtype={"parcel_id": str}))
    with atomic_path(out / "summary.txt") as tmp:
        tmp.write_text(summary + "\n", encoding="utf-8")
    files["summary.txt"] = out / "summary.txt"
    return files


def _score(results: dict[str, RunResult], truth: pd.DataFrame) -> str:
    """Agreement with the synthetic sample's truth, as the demo prints it."""
    lines = []
    for season, run in (("wheat", "underwrite_wheat"), ("maize", "underwrite_maize")):
        v = results[run].table.merge(truth[truth["season"] == season], on="parcel_id")
        judged = v[v["status"].isin(["green", "yellow", "red"])]
        agree = (judged["status"] == judged["expected_verdict"]).mean()
        lines.append(f"{season} verdicts: {len(v)} parcels, {len(judged)} judged, "
                     f"{agree:.1%} agree with truth; status counts "
                     f"{v['status'].value_counts().to_dict()}")
    for run, col, season in (("assess_hail", "hail_loss_rate", "wheat"),
                             ("assess_flood", "flood_loss_rate", "maize")):
        c = results[run].table.merge(truth[truth["season"] == season], on="parcel_id")
        c = c[c["parcel_loss_rate"].notna()]
        mae = (c["parcel_loss_rate"] - c[col]).abs().mean()
        lines.append(f"{run}: {len(c)} parcels estimated, parcel loss-rate MAE {mae:.3f}, "
                     f"indemnity total {c['indemnity_cny'].sum():,.0f} CNY")
    return "\n".join(lines)
