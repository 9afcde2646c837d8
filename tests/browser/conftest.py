"""Browser fixtures: Debian's chromium driven by Playwright, offline (every http/https request
aborted), the demo maps and a generated 100,000-parcel county map.

Without chromium or Playwright the browser tests skip locally and fail on CI (``CI`` set), where
``make test`` installs them."""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("AGRI3S_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
HERE = Path(__file__).parent


def load_county():
    """tests/browser/county.py as a module (by path: no folder is put on sys.path)."""
    spec = importlib.util.spec_from_file_location("agri3s_test_county", HERE / "county.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing on CI (make test installs it)")
    pytest.skip(f"{what} is missing: `make test` installs it (apt-get install chromium; "
                "pip install playwright)")


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python")
    if not CHROMIUM.exists():
        _missing(f"Debian's chromium ({CHROMIUM})")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


@dataclass
class Opened:
    """A map opened offline, and what happened while it opened."""

    page: object
    seconds: float
    requests: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def point(self, lat: float, lon: float) -> tuple[float, float]:
        """Page pixel of a location on the map (where a real mouse click goes)."""
        return tuple(self.js("""([lat, lon]) => { const m = agri3sMap.app.map;
            const p = m.latLngToContainerPoint([lat, lon]);
            const r = m.getContainer().getBoundingClientRect();
            return [p.x + r.left, p.y + r.top]; }""", [lat, lon]))

    def view(self, lat: float, lon: float, zoom: int) -> None:
        self.js("([lat, lon, z]) => agri3sMap.app.map.setView([lat, lon], z, {animate: false})",
                [lat, lon, zoom])
        self.page.wait_for_function("""() => { const l = agri3sMap.app.layers;
            const k = l.loss || l.verdict || l.parcels; return !k._map || !k._loading; }""")
        self.page.wait_for_timeout(150)


@pytest.fixture()
def open_map(browser):
    """``open_map(path, **context)`` → :class:`Opened`, with the network cut off."""
    contexts = []

    def open_(path: Path, timeout_s: float = 60, **context) -> Opened:
        context.setdefault("viewport", {"width": 1200, "height": 800})
        ctx = browser.new_context(**context)
        contexts.append(ctx)
        ctx.route("http://**/*", lambda route: route.abort())
        ctx.route("https://**/*", lambda route: route.abort())
        page = ctx.new_page()
        opened = Opened(page, 0.0)
        page.on("request", lambda r: opened.requests.append((r.url, r.resource_type)))
        page.on("requestfailed", lambda r: opened.failed.append((r.url, r.resource_type)))
        page.on("pageerror", lambda e: opened.errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(Path(path).resolve().as_uri())
        page.wait_for_function("window.agri3sMap && (agri3sMap.ready || agri3sMap.error)",
                               timeout=timeout_s * 1000)
        opened.seconds = time.perf_counter() - t0
        assert page.evaluate("agri3sMap.error") is None
        return opened

    yield open_
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="session")
def demo_out(sample, tmp_path_factory):
    """The demo (``agri3s demo``) on the sample, plus its combined maps in English."""
    from agri_3s.pipeline import map_results
    from agri_3s.sample.demo import demo

    out = tmp_path_factory.mktemp("demo")
    files = demo(out, sample_dir=sample.root)
    files["map_wheat_en.html"] = map_results([out / "underwrite_wheat", out / "assess_hail"],
                                             out / "map_wheat_en.html", lang="en")
    return out, files


@pytest.fixture(scope="session")
def county_map(tmp_path_factory):
    """A generated county of 100,000 parcels (tests/browser/county.py) as one map."""
    from agri_3s.outputs.webmap import build_map, write_map

    c = load_county().county(100_000)
    page = build_map(c["parcels"], verdicts=c["verdicts"], claims=c["claims"],
                     series=c["series"], imagery=c["imagery"])
    path = write_map(page, tmp_path_factory.mktemp("county") / "county.html")
    return path, c, page
