"""The adjuster map at county scale: size and opening time of a 100,000-parcel map.

The county is generated (tests/browser/county.py: strip fields with jittered corners, random
areas, rates and NDVI noise, three noisy images), built into one map, and opened offline in
Debian's chromium (Playwright; every http/https request aborted) until its parcels are drawn.
Prints::

    map: 100000 parcels, N MB, opens in N s offline; N bytes per parcel

Targets (issue 14): ≤ 60 MB, ≤ 10 s.

    python tests/benchmarks/bench_map.py [--parcels 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(HERE.parents[1]))


def _county():
    """tests/browser/county.py, the generated county (loaded by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("agri3s_test_county",
                                                  HERE.parent / "browser" / "county.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def run(n: int = 100_000, workdir: Path | None = None) -> dict:
    """Build the map of ``n`` generated parcels and open it offline; the figures."""
    from playwright.sync_api import sync_playwright

    from agri_3s.outputs.webmap import build_map, write_map

    t0 = time.perf_counter()
    c = _county().county(n)
    t1 = time.perf_counter()
    page = build_map(c["parcels"], verdicts=c["verdicts"], claims=c["claims"],
                     series=c["series"], imagery=c["imagery"])
    t2 = time.perf_counter()
    folder = Path(workdir or tempfile.mkdtemp(prefix="bench_map_"))
    path = write_map(page, folder / "county.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        ctx = browser.new_context(viewport={"width": 1200, "height": 800})
        ctx.route("http://**/*", lambda route: route.abort())
        ctx.route("https://**/*", lambda route: route.abort())
        tab = ctx.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        start = time.perf_counter()
        tab.goto(path.as_uri())
        tab.wait_for_function("window.agri3sMap && (agri3sMap.ready || agri3sMap.error)",
                              timeout=120_000)
        opened = time.perf_counter() - start
        heap = tab.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
        error = tab.evaluate("agri3sMap.error")
        zoom_s, click_s = _usable(tab, c["parcels"], n) if not error else (None, None)
        browser.close()
    size = path.stat().st_size
    return {"parcels": n, "bytes": size, "open_s": opened, "generate_s": t1 - t0,
            "build_s": t2 - t1, "heap_mb": heap / 1e6, "errors": errors + ([error] if error
                                                                        else []),
            "imagery": page.imagery, "zoom_s": zoom_s, "click_s": click_s}


def _usable(tab, parcels, n: int) -> tuple[float, float]:
    """Seconds to zoom from the county to a field (z16, until its parcels are drawn) and from
    a real mouse click on a parcel there to its popup."""
    p = parcels.to_crs(4326).geometry.iloc[n // 2].representative_point()
    zoom = tab.evaluate("""([lat, lon]) => new Promise(resolve => {
        const a = agri3sMap.app, l = a.layers.loss || a.layers.verdict || a.layers.parcels;
        const t0 = performance.now();
        l.once('load', () => resolve((performance.now() - t0) / 1000));
        a.map.setView([lat, lon], 16, {animate: false}); })""", [p.y, p.x])
    x, y = tab.evaluate("""([lat, lon]) => { const m = agri3sMap.app.map;
        const q = m.latLngToContainerPoint([lat, lon]);
        const r = m.getContainer().getBoundingClientRect();
        return [q.x + r.left, q.y + r.top]; }""", [p.y, p.x])
    t0 = time.perf_counter()
    tab.mouse.click(x, y)
    tab.wait_for_selector(".a3pop .a3pid")
    return zoom, time.perf_counter() - t0


def report(r: dict) -> str:
    return (f"map: {r['parcels']} parcels, {r['bytes'] / 1e6:.1f} MB, opens in "
            f"{r['open_s']:.1f} s offline; {r['bytes'] / r['parcels']:.0f} bytes per parcel")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parcels", type=int, default=100_000)
    args = ap.parse_args(argv)
    r = run(args.parcels)
    print(report(r))
    print(f"  (generated in {r['generate_s']:.1f} s, built in {r['build_s']:.1f} s; "
          f"JS heap {r['heap_mb']:.0f} MB; zoom to a field {r['zoom_s']:.2f} s, click to popup "
          f"{r['click_s']:.2f} s; image layers: {', '.join(r['imagery'])})")
    return r


def test_bench_map(tmp_path):
    r = run(100_000, tmp_path)
    print("\n" + report(r))
    assert not r["errors"], r["errors"]
    assert r["bytes"] <= 60e6 and r["open_s"] <= 10


if __name__ == "__main__":
    main()
