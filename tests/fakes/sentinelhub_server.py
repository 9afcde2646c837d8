"""A local fake Sentinel Hub on 127.0.0.1 speaking the real wire formats, for sentinelhub-py.

It serves a local archive in agri_3s's layout (read with :mod:`agri_3s.sources.local`) through:

* ``POST /oauth/token`` — OAuth2 client credentials → ``{"access_token", "token_type",
  "expires_in"}``; wrong credentials → 401 ``{"error": "invalid_client"}`` like Keycloak.
* ``POST /api/v1/catalog/1.0.0/search`` — STAC ItemCollection, paged with ``context.next``.
* ``POST /api/v1/process`` — one response → ``image/tiff``; several → ``application/x-tar``
  holding ``<identifier>.tif`` files (what the service returns for sentinelhub-py's accept header).
* ``POST /api/v1/statistics`` — ``{"data": [{"interval", "outputs": {id: {"bands": {"B0":
  {"stats": {min, max, mean, stDev, sampleCount, noDataCount, percentiles}}}}}}], "status"}``
  (the ``StatisticalResponse`` of the published OpenAPI schema; an interval that failed is
  ``{"interval", "error": {"type": "BAD_REQUEST" | "EXECUTION_ERROR" | "TIMEOUT"}}``).
* ``/api/v1/statistics/batch`` — create, ``/{id}/start``, ``GET /{id}`` and ``/{id}/status``;
  status goes CREATED → ANALYSING → PROCESSING → DONE (``PARTIAL`` when a feature failed) on
  successive polls; results are written as ``<output>/<request id>/<feature id>.json`` (the
  layout sentinelhub-py's ``AwsBatchStatisticalResults`` reads) into a local folder standing
  in for the S3 bucket (``s3://<bucket>/<key>`` ↔ ``bucket_root/<bucket>/<key>``).

Statistical and Batch Statistical request bodies are validated (jsonschema) against the fields
of the published OpenAPI schema that agri_3s relies on, transcribed in
``tests/data/sentinelhub_statistical_request.schema.json`` (the schema itself is not vendored);
a body that breaks them gets the service's 400 ``COMMON_BAD_PAYLOAD`` naming the field.

The fake cannot run evalscripts: it recognises agri_3s's own (marker comments
``// agri_3s:cube v1 bands=...`` and ``// agri_3s:ndvi-stats v1``) and computes the same thing
from the archive. Its rules, stated so tests can rely on them:

* harmonised values: reflectance from the archive (offset removed) × 10000, clamped to 0..65535;
* ``dataMask`` = every requested spectral band has data; mosaics fill gaps in time order
  (``leastRecent``);
* statistics rasterise the geometry on a ``resx``/``resy`` grid anchored at the geometry's
  top-left bound and count pixels whose centre is inside; percentiles are numpy's
  ``inverted_cdf`` (the real service's interpolation is not documented here) at the requested
  ``k`` read as fractions, keyed ``str(k)`` — or as percent with ``percentile_scale=100``, to
  play a service that reads them so.

Faults are queued per endpoint (``token``, ``catalog``, ``process``, ``statistics``, ``batch``)
and consumed one per request: :class:`Fault` ``ok`` (answer normally), ``rate_limit`` (429 +
``Retry-After`` in ms, as Sentinel Hub sends it), ``server_error`` (500), ``slow`` (sleep past
the client timeout), ``truncated`` (half the body then close), ``expired_token`` (401 and revoke
issued tokens), ``garbage`` (200 with a corrupt body of the right length); for statistics also
``failed_status`` (200 ``{"status": "FAILED", "data": []}``), ``empty`` (200 ``{"status": "OK",
"data": []}``) and ``interval_error`` (one interval's ``error``, status ``PARTIAL``).
``batch_feature_faults`` maps a feature identifier to such a statistics fault, or to
:meth:`Fault.feature_error` (a result file with only ``id``, ``identifier`` and ``error``).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import io
import json
import math
import tarfile
import threading
import time
import urllib.parse
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
import tifffile
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS, Transformer

from agri_3s.sources.base import INVALID_SCL, dn_to_reflectance
from agri_3s.sources.local import Acquisition, read_band, scan_archive

CUBE_MARKER = "// agri_3s:cube v1"
STATS_MARKER = "// agri_3s:ndvi-stats v1"


@dataclass(frozen=True)
class Fault:
    kind: str
    value: float = 0.0
    detail: str = ""
    day: str | None = None

    @classmethod
    def ok(cls) -> Fault:
        return cls("ok")

    @classmethod
    def rate_limit(cls, retry_after_ms: int = 200) -> Fault:
        return cls("rate_limit", retry_after_ms)

    @classmethod
    def server_error(cls) -> Fault:
        return cls("server_error")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds)

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")

    @classmethod
    def expired_token(cls) -> Fault:
        return cls("expired_token")

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")

    @classmethod
    def failed_status(cls) -> Fault:
        return cls("failed_status")

    @classmethod
    def empty(cls) -> Fault:
        return cls("empty")

    @classmethod
    def interval_error(cls, error_type: str = "EXECUTION_ERROR", day: str | None = None) -> Fault:
        """The interval of ``day`` (``YYYY-MM-DD``; default the first) fails with ``error_type``."""
        return cls("interval_error", detail=error_type, day=day)

    @classmethod
    def feature_error(cls, message: str = "Failed to process feature") -> Fault:
        return cls("feature_error", detail=message)


_STATS_FAULTS = ("failed_status", "empty", "interval_error")


def apply_stats_fault(response: dict, fault: Fault) -> dict:
    """A Statistical API response as the service answers it under ``fault``."""
    if fault.kind == "failed_status":
        return {"status": "FAILED", "data": []}
    if fault.kind == "empty":
        return {"status": "OK", "data": []}
    data = list(response["data"])
    hit = next((k for k, e in enumerate(data)
                if fault.day is None or e["interval"]["from"].startswith(fault.day)), None)
    if hit is None:
        return response
    data[hit] = {"interval": data[hit]["interval"], "error": {"type": fault.detail}}
    failed = all("error" in e for e in data)
    return {"status": "FAILED" if failed else "PARTIAL", "data": data}


# --------------------------------------------------------------------------- request schemas
# The fields of Sentinel Hub's published OpenAPI schema that agri_3s relies on, transcribed into
# tests/data/sentinelhub_statistical_request.schema.json (its licence is not stated, so it is not
# vendored whole); bodies are validated with the jsonschema library, draft 2020-12.

REQUEST_SCHEMA_FILE = (Path(__file__).resolve().parents[1] / "data"
                       / "sentinelhub_statistical_request.schema.json")
REQUEST_SCHEMAS: dict = json.loads(REQUEST_SCHEMA_FILE.read_text(encoding="utf-8"))
#: Entry points of :data:`REQUEST_SCHEMAS` (``$defs`` names) for :func:`schema_errors`.
STATISTICAL_REQUEST = "StatisticalRequest"
BATCH_STATISTICAL_REQUEST = "BatchStatisticalRequest"


def _k_up_to(schemas: dict, maximum: float) -> dict:
    """``schemas`` with ``percentiles.k`` allowed up to ``maximum`` (a service reading percent)."""
    out = copy.deepcopy(schemas)
    stats = out["$defs"]["Calculations"]["additionalProperties"]["properties"]["statistics"]
    k = stats["additionalProperties"]["properties"]["percentiles"]["properties"]["k"]
    k["items"]["maximum"] = maximum
    return out


def schema_errors(value, request: str, schemas: dict = REQUEST_SCHEMAS) -> list[str]:
    """Where ``value`` breaks the ``request`` body schema (``$.path: message``, sorted); [] if
    valid. Validated by :mod:`jsonschema` (draft 2020-12), the schema itself checked first."""
    import jsonschema

    schema = {**schemas, "$ref": f"#/$defs/{request}"}
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(f"{e.json_path}: {e.message}" for e in validator.iter_errors(value))


def _parse_time(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _epsg_of(crs_url: str) -> CRS:
    # "http://www.opengis.net/def/crs/EPSG/0/32650" or ".../OGC/1.3/CRS84"
    if crs_url.endswith("CRS84"):
        return CRS.from_epsg(4326)
    return CRS.from_epsg(int(crs_url.rstrip("/").split("/")[-1]))


def _sh_error(status: int, message: str, code: str = "COMMON_BAD_PAYLOAD") -> bytes:
    reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
              429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "Error")
    return json.dumps({"error": {"status": status, "reason": reason, "message": message,
                                 "code": code}}).encode()


class FakeSentinelHub:
    """The fake service; use as a context manager (``with FakeSentinelHub(archive) as sh:``)."""

    def __init__(self, archive: Path, *, client_id: str = "fake-client",
                 client_secret: str = "fake-secret", bucket_root: Path | None = None,
                 token_ttl_s: int = 3600, page_limit: int | None = None,
                 percentile_scale: float = 1.0):
        self.archive = Path(archive)
        self.client_id, self.client_secret = client_id, client_secret
        self.bucket_root = Path(bucket_root) if bucket_root else None
        self.token_ttl_s = token_ttl_s
        self.page_limit = page_limit
        self.faults: dict[str, deque] = defaultdict(deque)
        self.log: list[tuple[str, str, int]] = []
        self.tokens: set[str] = set()
        self.issued: list[str] = []  # every token handed out, revoked or not
        self.batch_jobs: dict[str, dict] = {}
        self.batch_fail: str | None = None
        self.batch_feature_faults: dict[str, Fault] = {}
        self.percentile_scale = percentile_scale
        self.bodies: list[tuple[str, dict]] = []  # (endpoint, JSON body) of every API request
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._scanned: list[Acquisition] | None = None

    # -- lifecycle
    def __enter__(self) -> FakeSentinelHub:  # noqa: PYI034
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def config(self, **overrides):
        """An SHConfig pointing at this fake, with short timeouts and back-off for tests."""
        from sentinelhub import SHConfig

        settings = {"sh_client_id": self.client_id, "sh_client_secret": self.client_secret,
                    "sh_base_url": self.url, "sh_token_url": f"{self.url}/oauth/token",
                    "max_download_attempts": 3, "download_sleep_time": 0.05,
                    "download_timeout_seconds": 1.0}
        settings.update(overrides)
        return SHConfig(use_defaults=True, **settings)

    def inject(self, endpoint: str, *faults: Fault) -> None:
        self.faults[endpoint].extend(faults)

    def requests_to(self, endpoint_prefix: str) -> list[tuple[str, str, int]]:
        return [r for r in self.log if r[1].startswith(endpoint_prefix)]

    # -- archive access
    def acquisitions(self, t0: dt.datetime, t1: dt.datetime) -> list[Acquisition]:
        if self._scanned is None:  # the archive does not change while the fake runs
            self._scanned = scan_archive(self.archive)
        acqs = self._scanned
        return [a for a in acqs if t0 <= a.time.astype(dt.datetime) <= t1]

    def footprint(self, acq: Acquisition) -> shapely.Polygon:
        with rasterio.open(acq.files["B04"]) as src:
            b = src.bounds
            tr = Transformer.from_crs(src.crs, 4326, always_xy=True)
        xs, ys = tr.transform([b.left, b.right, b.right, b.left], [b.bottom, b.bottom, b.top, b.top])
        return shapely.Polygon(zip(xs, ys))

    def mosaic(self, acqs: list[Acquisition], geobox: GeoBox, bands: list[str]):
        """Reflectance per band, SCL and dataMask of the acquisitions filling gaps in order."""
        h, w = geobox.shape
        refl = {b: np.full((h, w), np.nan, np.float32) for b in bands}
        scl = np.zeros((h, w), np.uint8)
        mask = np.zeros((h, w), bool)
        for acq in sorted(acqs, key=lambda a: a.time):
            r = {b: dn_to_reflectance(read_band(acq.files[b], geobox), acq.boa_add_offset)
                 if b in acq.files else np.full((h, w), np.nan, np.float32) for b in bands}
            m = np.logical_and.reduce([np.isfinite(r[b]) for b in bands])
            s = read_band(acq.files["SCL"], geobox) if "SCL" in acq.files else np.zeros((h, w))
            fill = m & ~mask
            for b in bands:
                refl[b][fill] = r[b][fill]
            scl[fill] = s[fill]
            mask |= fill
        return refl, scl, mask


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSentinelHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # -- plumbing
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict | None = None) -> None:
        self.fake.log.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _fault(self, endpoint: str, body_fn) -> bool:
        """Apply the next queued fault for ``endpoint``; True when the request is answered."""
        with self.fake._lock:
            queue = self.fake.faults[endpoint]
            fault = queue.popleft() if queue else None
        if fault is None or fault.kind == "ok":
            return False
        if fault.kind in _STATS_FAULTS:
            status, body, ctype = body_fn()
            if status == 200:
                body = json.dumps(apply_stats_fault(json.loads(body), fault)).encode()
            self._send(status, body, ctype)
            return True
        if fault.kind == "rate_limit":
            self._send(429, _sh_error(429, "You have exceeded your rate limit",
                                      "RATE_LIMIT_EXCEEDED"),
                       headers={"Retry-After": str(int(fault.value))})
            return True
        if fault.kind == "server_error":
            self._send(500, _sh_error(500, "Illegal state", "INTERNAL_SERVER_ERROR"))
            return True
        if fault.kind == "expired_token":
            with self.fake._lock:
                self.fake.tokens.clear()
            self._send(401, _sh_error(401, "Token expired", "COMMON_UNAUTHORIZED"))
            return True
        if fault.kind == "slow":
            self.fake.log.append((self.command, self.path, 0))  # 0 = the client timed out
            time.sleep(fault.value)
            return False  # then answer normally; the client has given up by then
        status, body, ctype = body_fn()
        if fault.kind == "garbage":
            self._send(200, bytes(reversed(body)), ctype)
            return True
        if fault.kind == "truncated":
            self.fake.log.append((self.command, self.path, -status))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return True
        raise ValueError(f"unknown fault {fault}")

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        with self.fake._lock:
            ok = token in self.fake.tokens
        if not ok:
            self._send(401, _sh_error(401, "Your request is not authorized",
                                      "COMMON_UNAUTHORIZED"))
        return ok

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlparse(self.path).path
        body = self._body() if method == "POST" else b""
        if path == "/oauth/token":
            return self._token(body)
        routes = [
            ("/api/v1/catalog/1.0.0/search", "catalog", self._catalog),
            ("/api/v1/process", "process", self._process),
            ("/api/v1/statistics/batch", "batch", self._batch),
            ("/api/v1/statistics", "statistics", self._statistics),
        ]
        for prefix, endpoint, fn in routes:
            if path.startswith(prefix):
                if not self._authorised():
                    return None
                if method == "POST" and body[:1] == b"{":
                    with self.fake._lock:
                        self.fake.bodies.append((endpoint, json.loads(body)))
                def compute(fn=fn):
                    return fn(method, path, body)
                if self._fault(endpoint, compute):
                    return None
                status, out, ctype = compute()
                return self._send(status, out, ctype)
        return self._send(404, _sh_error(404, f"no route {path}", "NOT_FOUND"))

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    # -- endpoints
    def _token(self, body: bytes) -> None:
        form = urllib.parse.parse_qs(body.decode())
        cid = form.get("client_id", [""])[0]
        secret = form.get("client_secret", [""])[0]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            cid, secret = urllib.parse.unquote(cid), urllib.parse.unquote(secret)

        def ok():
            if cid != self.fake.client_id or secret != self.fake.client_secret:
                return 401, json.dumps({"error": "invalid_client", "error_description":
                                        "Invalid client or Invalid client credentials"}).encode(), \
                    "application/json"
            payload = base64.urlsafe_b64encode(json.dumps(
                {"azp": cid, "exp": int(time.time()) + self.fake.token_ttl_s}).encode()).decode()
            token = f"eyJhbGciOiJub25lIn0.{payload.rstrip('=')}.{uuid.uuid4().hex}"
            with self.fake._lock:
                self.fake.tokens.add(token)
                self.fake.issued.append(token)
            return 200, json.dumps({"access_token": token, "token_type": "Bearer",
                                    "expires_in": self.fake.token_ttl_s}).encode(), \
                "application/json"

        if self._fault("token", ok):
            return
        status, out, ctype = ok()
        self._send(status, out, ctype)

    def _catalog(self, method, path, body):
        q = json.loads(body)
        t0, t1 = (_parse_time(x) for x in q["datetime"].split("/"))
        box = shapely.box(*q["bbox"]) if q.get("bbox") else shapely.geometry.shape(q["intersects"])
        items = []
        for acq in self.fake.acquisitions(t0, t1):
            fp = self.fake.footprint(acq)
            if not fp.intersects(box):
                continue
            t = acq.time.astype(dt.datetime)
            items.append({"type": "Feature", "stac_version": "1.0.0",
                          "id": f"S2X_MSIL2A_{t:%Y%m%dT%H%M%S}_{acq.folder.name}",
                          "collection": "sentinel-2-l2a",
                          "geometry": shapely.geometry.mapping(fp), "bbox": list(fp.bounds),
                          "properties": {"datetime": f"{t:%Y-%m-%dT%H:%M:%S}Z",
                                         "eo:cloud_cover": 0.0}})
        start = int(q.get("next") or 0)
        limit = min(int(q.get("limit", 100)), self.fake.page_limit or 10**6)
        page = items[start:start + limit]
        context = {"limit": limit, "returned": len(page)}
        if start + limit < len(items):
            context["next"] = start + limit
        return 200, json.dumps({"type": "FeatureCollection", "features": page, "links": [],
                                "context": context}).encode(), "application/geo+json"

    @staticmethod
    def _grid(bounds: dict, out: dict) -> GeoBox:
        crs = _epsg_of(bounds["properties"]["crs"])
        minx, miny, maxx, maxy = bounds["bbox"]
        if "width" in out:
            w, h = int(out["width"]), int(out["height"])
        else:
            w = max(1, math.ceil(round((maxx - minx) / out["resx"], 6)))
            h = max(1, math.ceil(round((maxy - miny) / out["resy"], 6)))
        return GeoBox((h, w), Affine((maxx - minx) / w, 0, minx, 0, -(maxy - miny) / h, maxy), crs)

    def _process(self, method, path, body):
        q = json.loads(body)
        script = q["evalscript"]
        if CUBE_MARKER not in script:
            return 400, _sh_error(400, "evalscript not supported by the fake",
                                  "RENDERER_EXCEPTION"), "application/json"
        marker = next(line for line in script.splitlines() if CUBE_MARKER in line)
        bands = marker.split("bands=")[1].strip().split(",")
        data = q["input"]["data"][0]
        tr = data["dataFilter"]["timeRange"]
        t0, t1 = _parse_time(tr["from"]), _parse_time(tr["to"])
        if not data.get("processing", {}).get("harmonizeValues", True):
            return 400, _sh_error(400, "fake supports harmonised values only"), "application/json"
        geobox = self._grid(q["input"]["bounds"], q["output"])
        refl, scl, mask = self.fake.mosaic(self.fake.acquisitions(t0, t1), geobox, bands)
        layers = [np.where(mask, np.clip(np.round(np.nan_to_num(refl[b]) * 10000), 0, 65535), 0)
                  for b in bands]
        img = np.stack(layers + [np.where(mask, scl, 0), mask.astype(np.uint16)], axis=-1)
        img = img.astype(np.uint16)
        responses = q["output"]["responses"]

        def tiff(a):
            buf = io.BytesIO()
            tifffile.imwrite(buf, a, photometric="minisblack", planarconfig="contig")
            return buf.getvalue()

        if len(responses) == 1:
            return 200, tiff(img), "image/tiff"
        buf = io.BytesIO()  # several outputs: a tar of <identifier>.tif, like the service
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for resp in responses:
                data_ = tiff(img)
                info = tarfile.TarInfo(f"{resp['identifier']}.tif")
                info.size = len(data_)
                tar.addfile(info, io.BytesIO(data_))
        return 200, buf.getvalue(), "application/x-tar"

    def _stats_for(self, geometry, crs: CRS, aggregation: dict, calculations: dict) -> dict:
        """The Statistical API answer for one geometry (agri_3s's NDVI evalscript only)."""
        stats_def = (calculations or {}).get("ndvi", {}).get("statistics", {})
        ks = (stats_def.get("default") or stats_def.get("B0") or {}).get(
            "percentiles", {}).get("k", [])
        res = aggregation.get("resx", 10.0), aggregation.get("resy", 10.0)
        minx, miny, maxx, maxy = geometry.bounds
        w = max(1, math.ceil(round((maxx - minx) / res[0], 6)))
        h = max(1, math.ceil(round((maxy - miny) / res[1], 6)))
        geobox = GeoBox((h, w), Affine(res[0], 0, minx, 0, -res[1], maxy), crs)
        cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        xs, ys = geobox.transform @ (cols, rows)
        inside = shapely.contains_xy(geometry, xs, ys)
        t0 = _parse_time(aggregation["timeRange"]["from"])
        t1 = _parse_time(aggregation["timeRange"]["to"])
        data = []
        day = dt.datetime.combine(t0.date(), dt.time())
        while day < t1:
            nxt = day + dt.timedelta(days=1)
            acqs = [a for a in self.fake.acquisitions(day, nxt)
                    if a.time.astype(dt.datetime) < nxt]
            if acqs:
                refl, scl, mask = self.fake.mosaic(acqs, geobox, ["B03", "B04", "B08"])
                # harmonised DN as the service would see them
                dn = {b: np.clip(np.round(np.nan_to_num(refl[b]) * 10000), 0, 65535)
                      for b in refl}
                s = dn["B08"] + dn["B04"]
                clear = inside & mask & ~np.isin(scl, INVALID_SCL) & (s > 0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    ndvi = (dn["B08"] - dn["B04"]) / s
                    g = dn["B03"] + dn["B08"]
                    ndwi = np.where(g > 0, (dn["B03"] - dn["B08"]) / g, 0)
                values = {"ndvi": ndvi[clear], "vegetated": (ndvi[clear] >= 0.4).astype(float),
                          "water": (ndwi[clear] > 0).astype(float)}
                n, nodata = int(inside.sum()), int((inside & ~clear).sum())
                outputs = {}
                for name, v in values.items():
                    st = {"sampleCount": n, "noDataCount": nodata}
                    if len(v):
                        st.update(min=float(v.min()), max=float(v.max()), mean=float(v.mean()),
                                  stDev=float(v.std(ddof=1)) if len(v) > 1 else 0.0)
                        if name == "ndvi" and ks:
                            scale = 100.0 / self.fake.percentile_scale  # numpy wants percent
                            st["percentiles"] = {
                                str(k): float(np.percentile(v, min(100.0, k * scale),
                                                            method="inverted_cdf"))
                                for k in ks}
                    else:
                        st.update(min="NaN", max="NaN", mean="NaN", stDev="NaN")
                    outputs[name] = {"bands": {"B0": {"stats": st}}}
                data.append({"interval": {"from": f"{day:%Y-%m-%dT%H:%M:%S}Z",
                                          "to": f"{nxt:%Y-%m-%dT%H:%M:%S}Z"},
                             "outputs": outputs})
            day = nxt
        return {"data": data, "status": "OK"}

    def _statistics(self, method, path, body):
        q = json.loads(body)
        schemas = (REQUEST_SCHEMAS if self.fake.percentile_scale == 1
                   else _k_up_to(REQUEST_SCHEMAS, self.fake.percentile_scale))
        bad = schema_errors(q, STATISTICAL_REQUEST, schemas)
        if bad:
            return 400, _sh_error(400, "; ".join(bad)), "application/json"
        if STATS_MARKER not in q["aggregation"]["evalscript"]:
            return 400, _sh_error(400, "evalscript not supported by the fake"), "application/json"
        bounds = q["input"]["bounds"]
        crs = _epsg_of(bounds["properties"]["crs"])
        geometry = (shapely.geometry.shape(bounds["geometry"]) if "geometry" in bounds
                    else shapely.box(*bounds["bbox"]))
        return 200, json.dumps(self._stats_for(geometry, crs, q["aggregation"],
                                               q.get("calculations"))).encode(), \
            "application/json"

    # -- batch statistical
    def _bucket_path(self, url: str) -> Path:
        if self.fake.bucket_root is None:
            raise ValueError("the fake was started without bucket_root")
        parsed = urllib.parse.urlparse(url)
        return self.fake.bucket_root / parsed.netloc / parsed.path.lstrip("/")

    def _batch_view(self, job: dict) -> dict:
        return {k: job[k] for k in ("id", "status", "completionPercentage", "request", "created",
                                    "userAction")} | ({"error": job["error"]} if job.get("error")
                                                      else {})

    def _batch(self, method, path, body):
        parts = path[len("/api/v1/statistics/batch"):].strip("/").split("/")
        jobs = self.fake.batch_jobs
        if method == "POST" and parts == [""]:
            bad = schema_errors(json.loads(body), BATCH_STATISTICAL_REQUEST)
            if bad:
                return 400, _sh_error(400, "; ".join(bad)), "application/json"
            jid = str(uuid.uuid4())
            jobs[jid] = {"id": jid, "status": "CREATED", "completionPercentage": 0,
                         "request": json.loads(body), "userAction": "NONE",
                         "created": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%S}Z"}
            return 201, json.dumps(self._batch_view(jobs[jid])).encode(), "application/json"
        jid = parts[0]
        if jid not in jobs:
            return 404, _sh_error(404, f"batch request {jid} not found"), "application/json"
        job = jobs[jid]
        if method == "POST" and parts[1:] == ["start"]:
            job["status"], job["userAction"] = "ANALYSING", "START"
            return 204, b"", "application/json"
        if method == "GET":
            view = self._batch_view(job)  # report the current status, then move on
            self._advance(job)
            if parts[1:] == ["status"]:
                view = {k: view[k] for k in view if k != "request"}
            return 200, json.dumps(view).encode(), "application/json"
        return 400, _sh_error(400, "unsupported batch call"), "application/json"

    def _advance(self, job: dict) -> None:
        order = ["ANALYSING", "PROCESSING", "DONE"]
        if job["status"] not in order[:-1]:
            return
        job["status"] = order[order.index(job["status"]) + 1]
        job["completionPercentage"] = 50 if job["status"] == "PROCESSING" else 100
        if job["status"] == "PROCESSING" and self.fake.batch_fail:
            job["status"], job["error"] = "FAILED", self.fake.batch_fail
        if job["status"] == "DONE" and self._run_batch(job):
            job["status"] = "PARTIAL"  # some features failed

    def _run_batch(self, job: dict) -> bool:
        """Write one result per feature into ``<output>/<request id>/``; True if any failed."""
        req = job["request"]
        features = gpd.read_file(self._bucket_path(req["input"]["features"]["s3"]["url"]))
        out = self._bucket_path(req["output"]["s3"]["url"].rstrip("/") + "/" + job["id"])
        out.mkdir(parents=True, exist_ok=True)
        crs = CRS.from_user_input(features.crs)
        any_failed = False
        for row in features.itertuples():
            result = {"id": int(row.id), "identifier": str(row.identifier)}
            fault = self.fake.batch_feature_faults.get(str(row.identifier))
            if fault is not None and fault.kind == "feature_error":
                result["error"] = fault.detail
            else:
                resp = self._stats_for(row.geometry, crs, req["aggregation"],
                                       req.get("calculations"))
                result["response"] = apply_stats_fault(resp, fault) if fault else resp
            any_failed |= fault is not None
            (out / f"{row.id}.json").write_text(json.dumps(result))
        return any_failed
