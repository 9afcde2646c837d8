"""The browser files every map inlines: Leaflet from the npm registry, and the map's own script.

Leaflet is not copied into this repository: ``vendor/package.json`` pins it and
``vendor/package-lock.json`` holds the registry's integrity hash, which ``npm ci`` checks when it
installs it (``make`` does this; see :data:`INSTALL`). Here the installed files are checked once
more against the SHA-256 digests of that release, then inlined — CSS images as data URIs — so a
map opens with no network at all.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from ...errors import Agri3sError

HERE = Path(__file__).parent
VENDOR = HERE / "vendor"
LEAFLET_VERSION = "1.9.4"
LEAFLET_DIST = VENDOR / "node_modules" / "leaflet" / "dist"
INSTALL = ("npm ci --ignore-scripts --no-audit --no-fund --prefix "
           "agri_3s/outputs/webmap/vendor")
#: SHA-256 of the files of leaflet@1.9.4 (the npm tarball's sha512 is in package-lock.json).
LEAFLET_SHA256 = {
    "leaflet.js": "db49d009c841f5ca34a888c96511ae936fd9f5533e90d8b2c4d57596f4e5641a",
    "leaflet.css": "a7837102824184820dfa198d1ebcd109ff6d0ff9a2672a074b9a1b4d147d04c6",
    "images/layers.png": "1dbbe9d028e292f36fcba8f8b3a28d5e8932754fc2215b9ac69e4cdecf5107c6",
    "images/layers-2x.png": "066daca850d8ffbef007af00b06eac0015728dee279c51f3cb6c716df7c42edf",
    "images/marker-icon.png": "574c3a5cca85f4114085b6841596d62f00d7c892c7b03f28cbfa301deb1dc437",
    "images/marker-icon-2x.png": "00179c4c1ee830d3a108412ae0d294f55776cfeb085c60129a39aa6fc4ae2528",
    "images/marker-shadow.png": "264f5c640339f042dd729062cfc04c17f8ea0f29882b538e3848ed8f10edb4da",
}


class AssetsMissing(Agri3sError):
    """Leaflet is not installed next to the package (``npm ci`` was not run)."""


def _read(name: str) -> bytes:
    path = LEAFLET_DIST / name
    if not path.is_file():
        raise AssetsMissing(f"the map needs Leaflet {LEAFLET_VERSION}, not installed at "
                            f"{LEAFLET_DIST}. Install it with `{INSTALL}` (run by `make demo` / "
                            "`make test`; needs Node.js' npm and the npm registry once).")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != LEAFLET_SHA256[name]:
        raise AssetsMissing(f"{path} is not the file of leaflet@{LEAFLET_VERSION} (SHA-256 "
                            f"differs). Reinstall it with `{INSTALL}`.")
    return data


def _data_uri(name: str) -> str:
    return "data:image/png;base64," + base64.b64encode(_read(name)).decode("ascii")


@functools.lru_cache(maxsize=1)
def leaflet_js() -> str:
    """Leaflet's script, without its source-map comment (no request for a .map file)."""
    text = _read("leaflet.js").decode("utf-8")
    return re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "\n", text)


@functools.lru_cache(maxsize=1)
def leaflet_css() -> str:
    """Leaflet's style sheet with its images as data URIs."""
    text = _read("leaflet.css").decode("utf-8")
    return re.sub(r"url\((images/[\w.-]+\.png)\)", lambda m: f"url({_data_uri(m.group(1))})",
                  text)


#: The map's own scripts, in load order: data decoding, the map, its controls, popups.
SCRIPTS = ("decode.js", "app.js", "controls.js", "popup.js")


@functools.lru_cache(maxsize=1)
def app_js() -> str:
    """The map's own scripts (:data:`SCRIPTS`), one after the other."""
    return "\n".join((HERE / name).read_text(encoding="utf-8") for name in SCRIPTS)


@functools.lru_cache(maxsize=1)
def app_css() -> str:
    """The map's own styles (``app.css``)."""
    return (HERE / "app.css").read_text(encoding="utf-8")
