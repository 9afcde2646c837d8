"""A fake STAC API on 127.0.0.1 serving items built from local archives in agri_3s's layout.

It speaks the parts of STAC API 1.0 that pystac-client uses: landing page with conformance and
a ``search`` link, ``/conformance``, ``/collections``, ``/collections/{id}``, ``POST`` and ``GET
/search`` (``bbox``/``intersects``, ``datetime``, ``collections``, ``limit``, ``next``-link
paging with a ``token``). Asset hrefs are absolute paths of the archive's GeoTIFFs, so odc-stac
reads real pixels. Faults are injected per request (``fail_next``) or for every search
(``fail_always``).

>>> with FakeStac([archive]) as api:                      # doctest: +SKIP
...     StacSource(api.url).load(...)
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import mapping, shape

COLLECTION = "sentinel-2-l2a"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
#: Band id → asset key, per catalogue style.
ASSET_STYLES = {
    "earthsearch": {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16",
                    "SCL": "scl"},
    "planetary": {b: b for b in ("B02", "B03", "B04", "B08", "B11", "SCL")},
}


def _asset(path: Path, band: str, style: str, offset: float | None) -> tuple[str, dict, dict]:
    with rasterio.open(path) as src:
        epsg = CRS.from_user_input(src.crs).to_epsg()
        tr = src.transform
        info = {"transform": [tr.a, tr.b, tr.c, tr.d, tr.e, tr.f], "shape": [src.height,
                                                                              src.width],
                "epsg": epsg, "bounds": tuple(src.bounds), "res": src.res[0]}
    rb = {"nodata": 0, "data_type": "uint8" if band == "SCL" else "uint16",
          "spatial_resolution": info["res"]}
    if band != "SCL" and offset is not None:
        rb.update(scale=0.0001, offset=offset / 10000.0)
    asset = {"href": str(path.resolve()), "type": "image/tiff; application=geotiff; "
             "profile=cloud-optimized", "roles": ["data"],
             "proj:shape": info["shape"], "proj:transform": info["transform"],
             "proj:epsg": epsg, "proj:code": f"EPSG:{epsg}", "raster:bands": [rb]}
    return ASSET_STYLES[style][band], asset, info


def items_from_archive(root: Path, *, style: str = "earthsearch", raster_offset: bool = False,
                       properties=None) -> list[dict]:
    """STAC items for every acquisition folder under ``root`` (agri_3s's local layout).

    ``properties(folder) -> dict`` may add or override item properties (e.g. to test the
    offset rules). ``processing_baseline`` comes from ``metadata.json`` when present.
    """
    items = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        try:
            when = dt.datetime.fromisoformat(folder.name)
        except ValueError:
            continue
        meta = {}
        if (folder / "metadata.json").exists():
            meta = json.loads((folder / "metadata.json").read_text())
        boa = meta.get("boa_add_offset")
        assets, info10 = {}, None
        for tif in sorted(folder.glob("*.tif")):
            key, asset, info = _asset(tif, tif.stem.upper(), style,
                                      boa if raster_offset else None)
            assets[key] = asset
            if tif.stem.upper() == "B04":
                info10 = info
        tr = Transformer.from_crs(info10["epsg"], 4326, always_xy=True)
        west, south, east, north = info10["bounds"]
        xs, ys = tr.transform([west, east, east, west, west], [south, south, north, north, south])
        footprint = shapely.Polygon(zip(xs, ys))
        props = {"datetime": when.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                 "platform": "sentinel-2a", "constellation": "sentinel-2",
                 "eo:cloud_cover": float(meta.get("cloud_cover", 5.0)),
                 "proj:epsg": info10["epsg"], "proj:code": f"EPSG:{info10['epsg']}",
                 "mgrs:utm_zone": info10["epsg"] % 100}
        if "processing_baseline" in meta:
            props["s2:processing_baseline"] = meta["processing_baseline"]
        if properties:
            props.update(properties(folder))
        props = {k: v for k, v in props.items() if v is not None}
        item_id = f"S2A_{info10['epsg'] % 100}XXX_{when:%Y%m%dT%H%M%S}_L2A"
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "stac_extensions": [
                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "collection": COLLECTION, "geometry": mapping(footprint),
            "bbox": list(footprint.bounds), "properties": props, "assets": assets, "links": []})
    return items


class FakeStac:
    """Threaded fake STAC API; use as a context manager. ``url`` is its root.

    Attributes
    ----------
    hits : list of ``(method, path)`` of every request received.
    fail_next : list of ``(status, retry_after or None)`` answered, in order, to the next
        search requests instead of results.
    fail_always : a status every search gets (persistent outage), or None.
    """

    def __init__(self, items: list[dict], *, page_size: int | None = None):
        self.items = items
        self.page_size = page_size
        self.hits: list[tuple[str, str]] = []
        self.fail_next: list[tuple[int, str | None]] = []
        self.fail_always: int | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeStac:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def search_hits(self) -> int:
        return sum(1 for _, p in self.hits if p == "/search")

    # -- request handling -----------------------------------------------------------------
    def _landing(self) -> dict:
        u = self.url
        return {"type": "Catalog", "stac_version": "1.0.0", "id": "fake-stac",
                "description": "fake STAC API for agri_3s tests", "conformsTo": CONFORMANCE,
                "links": [
                    {"rel": "self", "href": f"{u}/", "type": "application/json"},
                    {"rel": "root", "href": f"{u}/", "type": "application/json"},
                    {"rel": "conformance", "href": f"{u}/conformance",
                     "type": "application/json"},
                    {"rel": "data", "href": f"{u}/collections", "type": "application/json"},
                    {"rel": "search", "href": f"{u}/search", "type": "application/geo+json",
                     "method": "GET"},
                    {"rel": "search", "href": f"{u}/search", "type": "application/geo+json",
                     "method": "POST"}]}

    def _collection(self) -> dict:
        return {"type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
                "description": "Sentinel-2 L2A (fake)", "license": "proprietary",
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]}},
                "links": [{"rel": "self", "href": f"{self.url}/collections/{COLLECTION}"},
                          {"rel": "root", "href": f"{self.url}/"},
                          {"rel": "items", "href": f"{self.url}/collections/{COLLECTION}/items"}]}

    def _search(self, params: dict, method: str) -> dict:
        feats = self.items
        if params.get("collections"):
            cols = params["collections"]
            cols = cols.split(",") if isinstance(cols, str) else cols
            feats = [f for f in feats if f["collection"] in cols]
        area = None
        if params.get("bbox"):
            bb = params["bbox"]
            bb = [float(v) for v in (bb.split(",") if isinstance(bb, str) else bb)]
            area = shapely.box(*bb)
        elif params.get("intersects"):
            g = params["intersects"]
            area = shape(json.loads(g) if isinstance(g, str) else g)
        if area is not None:
            feats = [f for f in feats if shape(f["geometry"]).intersects(area)]
        if params.get("datetime"):
            lo, _, hi = str(params["datetime"]).partition("/")
            lo_t = None if lo in ("", "..") else np.datetime64(lo.replace("Z", ""))
            hi_t = None if hi in ("", "..") else np.datetime64(hi.replace("Z", ""))
            if not hi:
                hi_t = lo_t

            def inside(f):
                t = np.datetime64(f["properties"]["datetime"].replace("Z", ""))
                return (lo_t is None or t >= lo_t) and (hi_t is None or t <= hi_t)
            feats = [f for f in feats if inside(f)]
        limit = int(params.get("limit") or 10)
        if self.page_size:
            limit = min(limit, self.page_size)
        start = int(params.get("token") or 0)
        page = feats[start:start + limit]
        links = []
        if start + limit < len(feats):
            nxt = {k: v for k, v in params.items()}
            nxt["token"] = str(start + limit)
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST",
                              "body": nxt, "merge": False, "type": "application/geo+json"})
            else:
                from urllib.parse import urlencode
                q = urlencode({k: (",".join(map(str, v)) if isinstance(v, list) else v)
                               for k, v in nxt.items()})
                links.append({"rel": "next", "href": f"{self.url}/search?{q}",
                              "type": "application/geo+json"})
        return {"type": "FeatureCollection", "features": page, "links": links,
                "numberMatched": len(feats), "numberReturned": len(page)}

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                ctype = "application/geo+json" if "features" in body else "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str, params: dict):
                path = urlparse(self.path).path.rstrip("/") or "/"
                with api._lock:
                    api.hits.append((method, path))
                    fault = None
                    if path == "/search":
                        if api.fail_always:
                            fault = (api.fail_always, None)
                        elif api.fail_next:
                            fault = api.fail_next.pop(0)
                if fault:
                    status, retry_after = fault
                    return self._send(status, {"code": "Fault", "description": "injected"},
                                      {"Retry-After": retry_after} if retry_after else None)
                if path == "/":
                    return self._send(200, api._landing())
                if path == "/conformance":
                    return self._send(200, {"conformsTo": CONFORMANCE})
                if path == "/collections":
                    return self._send(200, {"collections": [api._collection()], "links": []})
                if path == f"/collections/{COLLECTION}":
                    return self._send(200, api._collection())
                if path == "/search":
                    return self._send(200, api._search(params, method))
                return self._send(404, {"code": "NotFound", "description": path})

            def do_GET(self):
                q = parse_qs(urlparse(self.path).query)
                self._route("GET", {k: v[-1] for k, v in q.items()})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                self._route("POST", body)

        return Handler
