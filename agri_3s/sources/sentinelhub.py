"""Sentinel-2 L2A from Sentinel Hub (sentinel-hub.com or the Copernicus Data Space) via sentinelhub-py.

Three paths, all returning agri_3s contracts:

* :class:`SentinelHubSource` — the image cube through the **Process API**: a Catalog search gives
  the acquisitions, grouped by solar day; one request per day (and per tile of at most
  ``tile_size_px`` pixels a side) returns B03, B04, B08, B11, SCL and dataMask as one UINT16 TIFF.
* :func:`statistical_series` — the parcel series through the **Statistical API** (no images are
  downloaded): one request per parcel, one interval per UTC day (``P1D``), NDVI with SCL masking
  computed inside the evalscript.
* :func:`batch_statistical_series` — the same statistics through the **Batch Statistical API** for
  very large parcel sets (submit, start, poll, collect results from object storage).

Reflectance convention. Sentinel Hub harmonises Sentinel-2 L2A values by default
(``processing.harmonizeValues = true``): from processing baseline 04.00 on it removes
``BOA_ADD_OFFSET`` (−1000) before returning values, so one DN scale holds for all dates and
negative reflectances are clamped to 0. We request ``units: "DN"`` with ``harmonizeValues`` set
explicitly to ``true`` and convert ``reflectance = DN / 10000``. The offset is therefore **not**
subtracted again here (doing so would bias post-2022 reflectance by −0.1). No-data comes from
Sentinel Hub's ``dataMask`` band (not from DN 0, which after harmonisation is a valid, very dark
pixel).

Errors. Every request (one tile of one date, one parcel's statistics, one batch call) goes
through sentinelhub-py's download client on its own, so that

* HTTP 429 waits for the ``Retry-After`` header, which Sentinel Hub sends in **milliseconds**
  ("Retry-After: Time until the next request is available. In milliseconds",
  https://docs.sentinel-hub.com/api/latest/api/overview/rate-limiting/), capped at
  :data:`MAX_RETRY_AFTER_S` (60 s: the service's rate-limit policies are per minute, so a
  longer wait is a proxy's or a bug's, not the service's); up to ``config.max_retries`` times
  (10 when unset, because sentinelhub-py's default ``None`` retries for ever);
* 5xx, timeouts, dropped connections and truncated bodies are retried
  ``config.max_download_attempts`` times with exponential back-off (×3, starting at
  ``config.download_sleep_time``);
* a 401 (token expired or revoked server-side) fetches a new token once — shared by all
  requests in flight — and retries only the request that got it;
* the Process API stops with :class:`~agri_3s.errors.ImageryError` naming the date and tile (a
  date is never silently left out); the Statistical APIs keep every other parcel and mark the
  failed one ``source_status = "no_data"`` with the service's reason (or raise naming the parcel
  and date with ``fail_on_error=True``).

Missing or rejected credentials raise :class:`~agri_3s.errors.InputError` with the fix. The
client secret and every OAuth token are redacted from the log records of sentinelhub-py,
requests-oauthlib, oauthlib, requests and urllib3 at every level (requests-oauthlib logs the
token request body and the token it obtained at DEBUG) and from every message raised here.

Credentials are read only when a request is made, never at import.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS as ProjCRS
from pyproj import Transformer

from ..crs import utm_crs_for
from ..errors import ImageryError, InputError
from .base import (
    BAND_NAMES,
    DEFAULT_BANDS,
    L2A_QUANTIFICATION,
    cube_from_arrays,
    solar_day,
)

LOGGER = logging.getLogger(__name__)

#: Copernicus Data Space Ecosystem deployment of Sentinel Hub.
CDSE_BASE_URL = "https://sh.dataspace.copernicus.eu"
CDSE_TOKEN_URL = ("https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/"
                  "openid-connect/token")
#: Marker lines the local fake server (tests/fakes/sentinelhub_server.py) recognises.
CUBE_MARKER = "// agri_3s:cube v1"
STATS_MARKER = "// agri_3s:ndvi-stats v1"
RESOLUTION_M = 10.0
CUBE_MARGIN_M = 30.0
MAX_RATE_LIMIT_RETRIES = 10
#: Longest wait a ``Retry-After`` header may impose (seconds); longer values are cut to this.
MAX_RETRY_AFTER_S = 60.0
#: OAuth2 error codes (RFC 6749 §5.2) that mean the client id / secret were refused.
_REJECTED_OAUTH_ERRORS = ("invalid_client", "unauthorized_client", "invalid_grant",
                          "access_denied")
_CREDENTIALS_FIX = ("set sh_client_id / sh_client_secret with `sentinelhub.config "
                    "--sh_client_id ID --sh_client_secret SECRET`, or the environment variables "
                    "SH_CLIENT_ID and SH_CLIENT_SECRET, or pass SHConfig(...) / cdse_config(...)")


# --------------------------------------------------------------------------- configuration

def cdse_config(client_id: str, client_secret: str, **settings: Any):
    """An ``SHConfig`` for the Copernicus Data Space Ecosystem's Sentinel Hub endpoints.

    Parameters
    ----------
    client_id, client_secret : an OAuth client registered at https://shapps.dataspace.copernicus.eu
    **settings : any other ``SHConfig`` field (e.g. ``max_download_attempts=6``).

    Examples
    --------
    >>> cfg = cdse_config("my-id", "my-secret")
    >>> cfg.sh_base_url
    'https://sh.dataspace.copernicus.eu'
    >>> src = SentinelHubSource(cfg)            # doctest: +SKIP
    """
    from sentinelhub import SHConfig

    return SHConfig(sh_client_id=client_id, sh_client_secret=client_secret,
                    sh_base_url=CDSE_BASE_URL, sh_token_url=CDSE_TOKEN_URL, **settings)


def _prepared_config(config):
    """A copy of ``config`` (or the user's sentinelhub-py configuration) with finite 429 retries."""
    from sentinelhub import SHConfig

    cfg = config.copy() if config is not None else SHConfig()
    if cfg.max_retries is None:  # sentinelhub-py would retry 429s for ever
        cfg.max_retries = MAX_RATE_LIMIT_RETRIES
    return cfg


# --------------------------------------------------------------------------- secrets in logs

# OAuth material in any text a library may log: "access_token": "…", client_secret=…,
# "Authorization": "Bearer …", and any JWT (every Sentinel Hub / CDSE token is one)
_SECRET_PATTERNS = (
    re.compile(r"""((?:access|refresh|id)_token|client_secret)(["']?\s*[:=]\s*["']?)"""
               r"""([^"'&,\s}]+)""", re.IGNORECASE),
    re.compile(r"(Bearer\s+)([^\s\"',}]+)", re.IGNORECASE),
    re.compile(r"()()(eyJ[\w-]+\.[\w-]+\.[\w-]*)"),
)
_SECRET_HINTS = ("token", "bearer", "secret", "eyj")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with OAuth tokens, bearer headers, client secrets and ``secrets`` replaced by ***.

    >>> redact("Obtained token {'access_token': 'eyJa.eyJb.c', 'expires_in': 3600}")
    "Obtained token {'access_token': '***', 'expires_in': 3600}"
    >>> redact("grant_type=client_credentials&client_secret=hunter2")
    'grant_type=client_credentials&client_secret=***'
    """
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    lowered = text.lower()
    if any(h in lowered for h in _SECRET_HINTS):
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return text


class _RedactSecrets(logging.Filter):
    """Rewrite log records so no token or secret reaches any handler."""

    def __init__(self):
        super().__init__("agri_3s-redact")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001  (a malformed third-party record: the handler reports it)
            return True
        clean = redact(text, tuple(self.secrets))
        if clean != text:
            record.msg, record.args = clean, None
        return True


_REDACT = _RedactSecrets()
#: Loggers (and their children) that see OAuth traffic. A logger's filter only applies to records
#: created on that very logger, so it is attached to every existing child as well.
_REDACTED_LOGGERS = ("requests_oauthlib", "oauthlib", "urllib3", "requests", "sentinelhub",
                     __name__, f"{__name__}_stats")


def _protect_secret(secret: str) -> None:
    """Register ``secret`` and attach the redacting filter to every logger of OAuth traffic."""
    import oauthlib.oauth2  # noqa: F401  (create the loggers now, so the filter reaches them)
    import requests_oauthlib  # noqa: F401

    if secret:
        _REDACT.secrets.add(secret)
    names = [n for n in logging.Logger.manager.loggerDict
             if any(n == p or n.startswith(p + ".") for p in _REDACTED_LOGGERS)]
    for name in {*names, *_REDACTED_LOGGERS}:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


def _mask_id(client_id: str) -> str:
    return (client_id[:4] + "…") if len(client_id) > 4 else "…"


def _scrub(text: str, config) -> str:
    """``text`` without the client secret or any token (third-party messages are echoed)."""
    return redact(text, (getattr(config, "sh_client_secret", "") or "",))


def _http_status(exc: BaseException) -> int | None:
    req_exc = getattr(exc, "request_exception", None) or exc
    response = getattr(req_exc, "response", None)
    return getattr(response, "status_code", None)


# --------------------------------------------------------------------------- rate limit

def retry_after_s(value: str | None, default_s: float) -> float:
    """Seconds to wait for a 429's ``Retry-After`` header, read as Sentinel Hub sends it.

    Sentinel Hub gives milliseconds (https://docs.sentinel-hub.com/api/latest/api/overview/
    rate-limiting/: "Retry-After: Time until the next request is available. In milliseconds");
    the wait is capped at :data:`MAX_RETRY_AFTER_S`. A missing or non-numeric value (e.g. an
    HTTP date from a proxy) waits ``default_s`` (also capped).

    >>> retry_after_s("55408", 30.0)
    55.408
    >>> retry_after_s("3600000", 30.0)   # an hour asked: capped
    60.0
    >>> retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 30.0)
    30.0
    """
    try:
        wait = float(value) / 1000.0 if value is not None else default_s
    except ValueError:
        wait = default_s
    if not math.isfinite(wait) or wait < 0:
        wait = default_s
    if wait > MAX_RETRY_AFTER_S:
        LOGGER.info("Sentinel Hub asked to wait %.0f s (Retry-After %s ms); waiting %.0f s",
                    wait, value, MAX_RETRY_AFTER_S)
    return min(wait, MAX_RETRY_AFTER_S)


class _RateLimit:
    """sentinelhub-py's rate-limit interface (``register_next``, ``update``), shared by all
    requests of a connection so one 429 slows every thread, with a capped ``Retry-After``."""

    def __init__(self, min_wait_s: float = 0.05):
        self.min_wait_s = min_wait_s
        self.next_download_time = time.monotonic()
        self._lock = threading.Lock()

    def register_next(self) -> float:
        with self._lock:
            now = time.monotonic()
            wait = max(self.next_download_time - now, 0.0)
            if wait == 0:
                self.next_download_time = max(now + self.min_wait_s, self.next_download_time)
            return wait

    def update(self, headers, *, default: float) -> None:
        # sentinelhub-py passes its default retry time in milliseconds
        wait = retry_after_s(headers.get("Retry-After"), default / 1000.0)
        with self._lock:
            self.next_download_time = max(time.monotonic() + wait, self.next_download_time)


# --------------------------------------------------------------------------- connection

class _Connection:
    """One Sentinel Hub deployment + OAuth session, shared by all requests of a source.

    The session is created on first use; a 401 from an API endpoint replaces it once, and the
    request that got the 401 is retried — alone.
    """

    def __init__(self, config=None):
        self._user_config = config
        self._config = None
        self._session = None
        self._lock = threading.Lock()
        self._rate = _RateLimit()

    def __getstate__(self):  # picklable for dask schedulers that ship tasks to processes
        return {"_user_config": self._user_config}

    def __setstate__(self, state):
        self.__init__(state["_user_config"])

    @property
    def config(self):
        if self._config is None:
            self._config = _prepared_config(self._user_config)
        return self._config

    def describe(self) -> dict:
        cfg = self.config
        return {"base_url": cfg.sh_base_url, "token_url": cfg.sh_token_url,
                "client_id": _mask_id(cfg.sh_client_id) if cfg.sh_client_id else None,
                "max_retry_after_s": MAX_RETRY_AFTER_S}

    def session(self, *, stale=None):
        """The current session; with ``stale``, a new one unless another thread already
        replaced ``stale`` (so concurrent 401s fetch one token, not one each)."""
        from sentinelhub import SentinelHubSession
        from sentinelhub.exceptions import DownloadFailedException

        with self._lock:
            if self._session is not None and (stale is None or self._session is not stale):
                return self._session
            cfg = self.config
            if not (cfg.sh_client_id and cfg.sh_client_secret):
                raise InputError("no Sentinel Hub credentials are configured.",
                                 source="sentinelhub", fix=_CREDENTIALS_FIX)
            _protect_secret(cfg.sh_client_secret)
            try:
                self._session = SentinelHubSession(config=cfg)
            except DownloadFailedException as exc:
                status = _http_status(exc)
                if status in (400, 401, 403):
                    raise self._rejected(cfg) from None
                raise ImageryError(f"Sentinel Hub authentication at {cfg.sh_token_url} failed: "
                                   f"{_scrub(str(exc), cfg)}") from None
            except Exception as exc:  # oauthlib raises its own errors for invalid_client etc.
                if not type(exc).__module__.startswith("oauthlib"):
                    raise
                if getattr(exc, "error", "") in _REJECTED_OAUTH_ERRORS:
                    raise self._rejected(cfg) from None
                raise ImageryError(f"Sentinel Hub authentication at {cfg.sh_token_url} failed: "
                                   f"{_scrub(str(exc), cfg)}") from None
            return self._session

    @staticmethod
    def _rejected(cfg) -> InputError:
        return InputError(
            f"Sentinel Hub rejected the OAuth client credentials (client id "
            f"{_mask_id(cfg.sh_client_id)}) at {cfg.sh_token_url}.", source="sentinelhub",
            fix="check the client id and secret (and that they belong to this deployment: "
                "sentinel-hub.com and dataspace.copernicus.eu clients differ); " + _CREDENTIALS_FIX)

    def client(self, kind: str = "plain", session=None):
        from sentinelhub import SentinelHubDownloadClient, SentinelHubStatisticalDownloadClient

        cls = SentinelHubStatisticalDownloadClient if kind == "stats" else SentinelHubDownloadClient
        client = cls(config=self.config, session=session or self.session())
        client.rate_limit = self._rate  # one capped, thread-safe rate limit for the connection
        return client

    def call(self, label: str, fn: Callable[[Any], Any], kind: str = "plain"):
        """Run ``fn(client)``; renew the token once on 401; turn failures into ImageryError."""
        from sentinelhub.exceptions import DownloadFailedException, OutOfRequestsException

        for attempt in (0, 1):
            session = self.session()
            try:
                return fn(self.client(kind, session))
            except (InputError, ImageryError):
                raise
            except OutOfRequestsException:  # a DownloadFailedException subclass: first
                raise ImageryError(
                    f"Sentinel Hub kept answering 429 (rate limit) for {label} after "
                    f"{self.config.max_retries} attempts; retry later or lower the concurrency."
                ) from None
            except DownloadFailedException as exc:
                status = _http_status(exc)
                if status == 401 and attempt == 0:
                    LOGGER.info("Sentinel Hub token rejected (401) for %s; fetching a new one", label)
                    self.session(stale=session)
                    continue
                if status in (401, 403):
                    raise InputError(f"Sentinel Hub refused access for {label} (HTTP {status}).",
                                     source="sentinelhub",
                                     fix="check that the OAuth client may use this API and "
                                         "collection") from None
                raise ImageryError(f"Sentinel Hub request for {label} failed after retries: "
                                   f"{_scrub(str(exc), self.config)}") from None
            # an undecodable body or unexpected payload may surface as any decoder's exception
            # type; each must become an ImageryError naming the date/tile, never a gap
            except Exception as exc:  # noqa: BLE001
                raise ImageryError(
                    f"Sentinel Hub response for {label} could not be used "
                    f"({type(exc).__name__}: {_scrub(str(exc), self.config)}).") from None
        raise AssertionError("unreachable")

    def each(self, labels: Sequence[str], requests: Sequence, *, kind: str = "plain",
             max_threads: int = 4) -> list:
        """Download each request on its own (``max_threads`` at a time): its decoded response,
        or the :class:`ImageryError` it ended with. Retries, 429 waits and a 401's token renewal
        apply to that request only; an :class:`InputError` (credentials, access) is raised."""
        def one(i: int):
            try:
                return self.call(labels[i], lambda c: c.download(
                    [requests[i]], max_threads=1, decode_data=True)[0], kind=kind)
            except ImageryError as exc:
                return exc

        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(max_threads, len(requests)))) as pool:
            return list(pool.map(one, range(len(requests))))

    def catalog_times(self, collection, bbox_wgs84: tuple, start: dt.date,
                      end: dt.date) -> list[dt.datetime]:
        """Acquisition times (UTC, sorted, unique) the Catalog API lists over the box."""
        from sentinelhub import CRS as ShCRS
        from sentinelhub import BBox, SentinelHubCatalog

        def search(client):
            catalog = SentinelHubCatalog(config=self.config)
            catalog.client = client  # the session we manage (token renewal, redaction)
            found = catalog.search(collection, bbox=BBox(bbox_wgs84, crs=ShCRS.WGS84),
                                   time=(start, end),
                                   fields={"include": ["id", "properties.datetime"], "exclude": []})
            return found.get_timestamps()

        times = self.call(f"catalog search {start}..{end}", search)
        utc = {t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t for t in times}
        return sorted(t for t in utc if start <= t.date() <= end)


def _collection(collection):
    from sentinelhub import DataCollection

    if isinstance(collection, DataCollection):
        return collection
    if str(collection).lower() in ("sentinel-2-l2a", "s2l2a", "sentinel2_l2a"):
        return DataCollection.SENTINEL2_L2A
    raise InputError(f"unsupported Sentinel Hub collection {collection!r}.", source="collection",
                     fix="use 'sentinel-2-l2a' (agri_3s needs the L2A scene classification SCL)")


def _input_data(collection, t0: dt.datetime, t1: dt.datetime):
    from sentinelhub import MosaickingOrder, SentinelHubRequest

    # leastRecent: the earliest acquisition of the day wins and later ones fill its gaps,
    # exactly like LocalSource's solar-day mosaic. The result is returned as a plain dict on
    # purpose: sentinelhub-py's DataCollection.SENTINEL2_L2A carries
    # service_url=services.sentinel-hub.com, which would override SHConfig.sh_base_url and send
    # Copernicus Data Space (or any other deployment's) requests to sentinel-hub.com.
    return dict(SentinelHubRequest.input_data(
        collection, time_interval=(t0, t1), mosaicking_order=MosaickingOrder.LEAST_RECENT,
        other_args={"processing": {"harmonizeValues": True}}))


# --------------------------------------------------------------------------- Process API cube

def cube_evalscript(bands: Sequence[str]) -> str:
    """Evalscript returning ``bands`` (harmonised DN) then SCL and dataMask as one UINT16 TIFF."""
    spectral = [b for b in bands if b != "SCL"]
    inputs = json.dumps(spectral + ["SCL", "dataMask"])
    values = ", ".join(f"s.{b}" for b in spectral + ["SCL", "dataMask"])
    return f"""//VERSION=3
{CUBE_MARKER} bands={','.join(spectral)}
function setup() {{
  return {{
    input: [{{bands: {inputs}, units: "DN"}}],
    output: {{id: "default", bands: {len(spectral) + 2}, sampleType: "UINT16"}},
    mosaicking: "SIMPLE"
  }};
}}
function evaluatePixel(s) {{
  return [{values}];
}}
"""


def _cube_geobox(bounds, crs) -> GeoBox:
    """A 10 m UTM grid aligned to multiples of 10 m (as Sentinel-2 tiles are) around ``bounds``."""
    src = ProjCRS.from_user_input(crs)
    to_ll = Transformer.from_crs(src, 4326, always_xy=True)
    lon, lat = to_ll.transform((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    utm = utm_crs_for(lon, lat)
    tr = Transformer.from_crs(src, utm, always_xy=True)
    xs, ys = tr.transform([bounds[0], bounds[2], bounds[0], bounds[2]],
                          [bounds[1], bounds[1], bounds[3], bounds[3]])
    r = RESOLUTION_M
    left = math.floor((min(xs) - CUBE_MARGIN_M) / r) * r
    right = math.ceil((max(xs) + CUBE_MARGIN_M) / r) * r
    bottom = math.floor((min(ys) - CUBE_MARGIN_M) / r) * r
    top = math.ceil((max(ys) + CUBE_MARGIN_M) / r) * r
    shape = (round((top - bottom) / r), round((right - left) / r))
    return GeoBox(shape, Affine(r, 0, left, 0, -r, top), utm)


def split_tiles(shape: tuple[int, int], tile_size_px: int) -> list[tuple[slice, slice]]:
    """Row/column slices of tiles at most ``tile_size_px`` a side covering ``shape``.

    >>> split_tiles((5, 3), 2)[:2]
    [(slice(0, 2, None), slice(0, 2, None)), (slice(0, 2, None), slice(2, 3, None))]
    """
    h, w = shape
    return [(slice(r, min(r + tile_size_px, h)), slice(c, min(c + tile_size_px, w)))
            for r in range(0, h, tile_size_px) for c in range(0, w, tile_size_px)]


@dataclass(frozen=True)
class _Day:
    label: str
    start: dt.datetime
    end: dt.datetime
    time: np.datetime64


class SentinelHubSource:
    """Sentinel-2 L2A cubes from Sentinel Hub's Process API (see module docstring).

    Parameters
    ----------
    config : ``sentinelhub.SHConfig``; None → sentinelhub-py's configuration file / environment
        (``SH_CLIENT_ID``, ``SH_CLIENT_SECRET``), read only when data is first requested.
        Use :func:`cdse_config` for the Copernicus Data Space Ecosystem.
    collection : only ``"sentinel-2-l2a"`` (SCL is needed).
    tile_size_px : largest request side in pixels (Sentinel Hub allows 2500).
    max_threads : parallel requests per date.
    cache : optional mapping (e.g. a dict) keeping decoded responses by request, so reading a
        date twice costs one request.

    Examples
    --------
    >>> src = SentinelHubSource(cdse_config("id", "secret"))           # doctest: +SKIP
    >>> cube = src.load(parcels.total_bounds, parcels.crs, dt.date(2025, 4, 1),
    ...                 dt.date(2025, 6, 30))                           # doctest: +SKIP
    """

    def __init__(self, config=None, *, collection="sentinel-2-l2a", tile_size_px: int = 2500,
                 max_threads: int = 4, cache: MutableMapping | None = None):
        if not 1 <= int(tile_size_px) <= 2500:
            raise InputError(f"tile_size_px={tile_size_px} is outside 1..2500.",
                             source="SentinelHubSource",
                             fix="Sentinel Hub's Process API returns at most 2500×2500 pixels")
        self._conn = _Connection(config)
        self.collection = collection
        self.tile_size_px = int(tile_size_px)
        self.max_threads = int(max_threads)
        self.cache = cache

    def describe(self) -> dict:
        """What the run manifest records (no secrets)."""
        return {"kind": "sentinelhub", "api": "process", "collection": str(self.collection),
                "tile_size_px": self.tile_size_px, "harmonize_values": True,
                **self._conn.describe()}

    def acquisition_days(self, bounds, crs, start: dt.date, end: dt.date) -> list[_Day]:
        """Catalog acquisitions over ``bounds`` grouped by solar day."""
        collection = _collection(self.collection)
        geobox = _cube_geobox(bounds, crs)
        ll = geobox.extent.to_crs(4326).boundingbox
        lon = geobox.extent.centroid.to_crs(4326).coords[0][0]
        times = self._conn.catalog_times(collection, (ll.left, ll.bottom, ll.right, ll.top),
                                         start, end)
        days: dict[dt.date, list[dt.datetime]] = {}
        for t in times:
            days.setdefault(solar_day(np.datetime64(t, "s"), lon), []).append(t)
        return [_Day(str(d), min(ts), max(ts) + dt.timedelta(seconds=1),
                     np.datetime64(min(ts), "ns")) for d, ts in sorted(days.items())]

    def load(self, bounds, crs, start: dt.date, end: dt.date, *,
             bands: Sequence[str] = DEFAULT_BANDS) -> xr.Dataset:
        """The cube contract over ``bounds`` (in ``crs``) for acquisitions in ``[start, end]``.

        The catalog search runs now; each date's pixels are requested when first computed.
        """
        unknown = [b for b in bands if b not in BAND_NAMES]
        if unknown:
            raise InputError(f"unknown band(s) {unknown}.", source="bands",
                             fix=f"choose from {sorted(BAND_NAMES)}")
        spectral = [b for b in bands if b != "SCL"]
        geobox = _cube_geobox(bounds, crs)
        days = self.acquisition_days(bounds, crs, start, end)
        if not days:
            raise ImageryError(f"Sentinel Hub catalog lists no {self.collection} acquisition over "
                               f"the parcels between {start} and {end}.")
        names = [BAND_NAMES[b] for b in spectral] + ["scl"]
        arrays: dict[str, list] = {n: [] for n in names}
        for day in days:
            got = dask.delayed(self._read_day, pure=True)(day, spectral, geobox)
            for name in names:
                dtype = np.uint8 if name == "scl" else np.float32
                arrays[name].append(da.from_delayed(got[name], shape=geobox.shape, dtype=dtype))
        return cube_from_arrays({n: da.stack(v) for n, v in arrays.items()},
                                [d.time for d in days], geobox, attrs={
                                    "source": "sentinelhub", "api": "process",
                                    "base_url": self._conn.config.sh_base_url,
                                    "acquisitions": json.dumps([d.label for d in days])})

    def _read_day(self, day: _Day, spectral: list[str], geobox: GeoBox) -> dict[str, np.ndarray]:
        """All tiles of one date → {variable: 2-D array} (float32 reflectance, uint8 scl)."""
        from sentinelhub import CRS as ShCRS
        from sentinelhub import BBox, SentinelHubRequest

        collection = _collection(self.collection)
        evalscript = cube_evalscript(spectral)
        h, w = geobox.shape
        nb = len(spectral) + 2
        stack = np.zeros((nb, h, w), np.uint16)
        tiles = split_tiles(geobox.shape, self.tile_size_px)
        todo, where = [], []
        for k, (rs, cs) in enumerate(tiles):
            tb = geobox[rs, cs]
            bb = tb.boundingbox
            key = (self._conn.config.sh_base_url, day.label, tuple(spectral), tuple(bb),
                   tb.crs.to_epsg())
            if self.cache is not None and key in self.cache:
                stack[:, rs, cs] = self.cache[key]
                continue
            req = SentinelHubRequest(
                evalscript=evalscript, input_data=[_input_data(collection, day.start, day.end)],
                responses=[SentinelHubRequest.output_response("default", "tiff")],
                bbox=BBox(tuple(bb), crs=ShCRS(tb.crs.to_epsg())), size=(tb.shape[1], tb.shape[0]),
                config=self._conn.config)
            todo.append(req.download_list[0])
            where.append((k, rs, cs, tb.shape, key))
        if todo:
            labels = [f"date {day.label}, tile {k + 1}/{len(tiles)}" for k, *_ in where]
            results = self._conn.each(labels, todo, max_threads=self.max_threads)
            failed = [r for r in results if isinstance(r, ImageryError)]
            if failed:  # a date is used whole or not at all
                raise failed[0]
            for (_, rs, cs, shape, key), img, label in zip(where, results, labels):
                arr = _tile_array(img, shape, nb, label)
                stack[:, rs, cs] = arr
                if self.cache is not None:
                    self.cache[key] = arr
        valid = stack[-1] == 1
        out = {}
        for i, band in enumerate(spectral):
            refl = stack[i].astype(np.float32) / np.float32(L2A_QUANTIFICATION)
            refl[~valid] = np.nan
            out[BAND_NAMES[band]] = refl
        out["scl"] = np.where(valid, stack[-2], 0).astype(np.uint8)
        return out


def _tile_array(img, shape: tuple[int, int], nb: int, label: str) -> np.ndarray:
    """A decoded TIFF (h, w, bands) → (bands, h, w) uint16, checking it is complete."""
    arr = np.asarray(img) if img is not None else None
    if arr is not None and arr.ndim == 2 and nb == 1:
        arr = arr[..., None]
    if arr is None or arr.shape != (shape[0], shape[1], nb):
        got = None if arr is None else arr.shape
        raise ImageryError(f"Sentinel Hub returned an incomplete image for {label}: expected "
                           f"{shape[0]}×{shape[1]}×{nb} pixels, got {got}.")
    return np.moveaxis(arr.astype(np.uint16), -1, 0)


# --------------------------------------------------------------------------- Statistical APIs

#: Names kept importable from here; they live in :mod:`agri_3s.sources.sentinelhub_stats`.
_STATS_NAMES = ("statistical_series", "batch_statistical_series", "BatchStorage", "FolderStorage",
                "stats_evalscript", "stats_calculations", "PERCENTILES")


def __getattr__(name: str):
    # lazy: sentinelhub_stats imports this module, so it cannot be imported at the top
    if name in _STATS_NAMES:
        from . import sentinelhub_stats

        return getattr(sentinelhub_stats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
