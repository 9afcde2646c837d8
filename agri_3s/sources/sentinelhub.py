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

Errors. sentinelhub-py's own download client is used, configured so that

* HTTP 429 waits for the ``Retry-After`` header (Sentinel Hub sends it in **milliseconds**;
  sentinelhub-py reads it that way) up to ``config.max_retries`` times (set to 10 when unset,
  because sentinelhub-py's default ``None`` retries for ever);
* 5xx, timeouts, dropped connections and truncated bodies are retried
  ``config.max_download_attempts`` times with exponential back-off (×3, starting at
  ``config.download_sleep_time``);
* a 401 (token expired or revoked server-side) fetches a new token once and retries;
* anything still failing raises :class:`~agri_3s.errors.ImageryError` naming the date and tile
  (or parcel) — a date is never silently left out.

Missing or rejected credentials raise :class:`~agri_3s.errors.InputError` with the fix; the client
secret never appears in a message, and a log filter redacts it from requests-oauthlib's DEBUG log
(which otherwise prints the token request body, secret included).

Credentials are read only when a request is made, never at import.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS as ProjCRS
from pyproj import Transformer

from ..crs import require_crs, utm_crs_for
from ..errors import ImageryError, InputError
from .base import (
    BAND_NAMES,
    DEFAULT_BANDS,
    INVALID_SCL,
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


class _RedactSecret(logging.Filter):
    """Replace known secrets in log records (requests-oauthlib logs the token request body)."""

    def __init__(self):
        super().__init__("agri_3s-redact")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for s in self.secrets:
                text = text.replace(s, "***")
            record.msg, record.args = text, None
        return True


_REDACT = _RedactSecret()
_REDACTED_LOGGERS = ("requests_oauthlib.oauth2_session", "oauthlib", "urllib3.connectionpool",
                     "sentinelhub")


def _protect_secret(secret: str) -> None:
    """Register ``secret`` for redaction (lazily, when a session is first created)."""
    if not secret:
        return
    _REDACT.secrets.add(secret)
    for name in _REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


def _mask_id(client_id: str) -> str:
    return (client_id[:4] + "…") if len(client_id) > 4 else "…"


def _scrub(text: str, config) -> str:
    """Remove the client secret from ``text`` (defence in depth for third-party messages)."""
    secret = getattr(config, "sh_client_secret", "") or ""
    return text.replace(secret, "***") if secret else text


def _http_status(exc: BaseException) -> int | None:
    req_exc = getattr(exc, "request_exception", None) or exc
    response = getattr(req_exc, "response", None)
    return getattr(response, "status_code", None)


class _Connection:
    """One Sentinel Hub deployment + OAuth session, shared by all requests of a source.

    The session is created on first use; a 401 from an API endpoint replaces it once.
    """

    def __init__(self, config=None):
        self._user_config = config
        self._config = None
        self._session = None
        self._lock = threading.Lock()

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
                "client_id": _mask_id(cfg.sh_client_id) if cfg.sh_client_id else None}

    def session(self, *, renew: bool = False):
        from sentinelhub import SentinelHubSession
        from sentinelhub.exceptions import DownloadFailedException

        with self._lock:
            if self._session is not None and not renew:
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

    def client(self, kind: str = "plain"):
        from sentinelhub import SentinelHubDownloadClient, SentinelHubStatisticalDownloadClient

        cls = SentinelHubStatisticalDownloadClient if kind == "stats" else SentinelHubDownloadClient
        return cls(config=self.config, session=self.session())

    def call(self, label: str, fn: Callable[[Any], Any], kind: str = "plain"):
        """Run ``fn(client)``; renew the token once on 401; turn failures into ImageryError."""
        from sentinelhub.exceptions import DownloadFailedException, OutOfRequestsException

        for attempt in (0, 1):
            try:
                return fn(self.client(kind))
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
                    self.session(renew=True)
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
            label = f"date {day.label}, {len(todo)} tile(s) of {len(tiles)}"
            results = self._conn.call(label, lambda c: c.download(
                todo, max_threads=self.max_threads, decode_data=True))
            for (k, rs, cs, shape, key), img in zip(where, results):
                arr = _tile_array(img, shape, nb, f"date {day.label}, tile {k + 1}/{len(tiles)}")
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


# --------------------------------------------------------------------------- Statistical API

def stats_evalscript() -> str:
    """NDVI, vegetated (NDVI ≥ 0.4) and water (NDWI > 0) flags over clear pixels.

    ``dataMask`` is 0 for no data, SCL classes 0, 1, 3, 8, 9, 10 and where B04 + B08 ≤ 0, so the
    service counts those pixels in ``noDataCount`` and leaves them out of every statistic.
    """
    return f"""//VERSION=3
{STATS_MARKER}
function setup() {{
  return {{
    input: [{{bands: ["B03", "B04", "B08", "SCL", "dataMask"], units: "DN"}}],
    output: [
      {{id: "ndvi", bands: 1, sampleType: "FLOAT32"}},
      {{id: "vegetated", bands: 1, sampleType: "UINT8"}},
      {{id: "water", bands: 1, sampleType: "UINT8"}},
      {{id: "dataMask", bands: 1}}
    ]
  }};
}}
const INVALID_SCL = {json.dumps(list(INVALID_SCL))};
function evaluatePixel(s) {{
  const sum = s.B08 + s.B04;
  const clear = s.dataMask == 1 && INVALID_SCL.indexOf(s.SCL) < 0 && sum > 0;
  const ndvi = clear ? (s.B08 - s.B04) / sum : NaN;
  const ndwi = (s.B03 + s.B08) > 0 ? (s.B03 - s.B08) / (s.B03 + s.B08) : 0;
  return {{ndvi: [ndvi], vegetated: [ndvi >= 0.4 ? 1 : 0], water: [ndwi > 0 ? 1 : 0],
          dataMask: [clear ? 1 : 0]}};
}}
"""


STATS_CALCULATIONS = {"ndvi": {"statistics": {"default": {"percentiles": {"k": [25, 50, 75]}}}}}


def _utm_parcels(parcels: gpd.GeoDataFrame, inward_buffer_m: float):
    """Parcels in their UTM zone, shrunk by ``inward_buffer_m`` (kept whole if nothing remains)."""
    if "parcel_id" not in parcels.columns:
        raise InputError("the parcels have no parcel_id column.", source="parcels",
                         fix="add a unique parcel_id column")
    require_crs(parcels)
    ll = parcels.to_crs(4326).total_bounds
    utm = utm_crs_for((ll[0] + ll[2]) / 2, (ll[1] + ll[3]) / 2)
    geoms = parcels.geometry.to_crs(utm).values
    measured, rules = [], []
    for g in geoms:
        if g is None or g.is_empty:
            measured.append(None)
            rules.append("none")
            continue
        shrunk = g.buffer(-inward_buffer_m) if inward_buffer_m > 0 else g
        if shrunk.is_empty or shrunk.area < RESOLUTION_M ** 2:
            measured.append(g)
            rules.append("unbuffered")
        else:
            measured.append(shrunk)
            rules.append("buffered")
    return utm, measured, rules


def _interval_day(interval: dict) -> dt.date:
    return dt.datetime.fromisoformat(interval["from"].replace("Z", "+00:00")).date()


def _series_from_stats(parcel_ids: Sequence[str], responses: Sequence[dict | None],
                       rules: Sequence[str], times_by_day: dict[dt.date, dt.datetime],
                       api: str, inward_buffer_m: float) -> xr.Dataset:
    """Statistical API responses (one per parcel, ``None`` = no geometry) → parcel series."""
    per_parcel: list[dict[dt.date, dict]] = []
    for pid, resp in zip(parcel_ids, responses):
        rows: dict[dt.date, dict] = {}
        for entry in (resp or {}).get("data", []):
            day = _interval_day(entry["interval"])
            if "error" in entry:
                raise ImageryError(f"Sentinel Hub {api} failed for parcel {pid} on {day}: "
                                   f"{entry['error']}")
            rows[day] = entry["outputs"]
        per_parcel.append(rows)
    days = sorted({d for rows in per_parcel for d in rows})
    n, n_t = len(parcel_ids), len(days)
    names = ["ndvi_mean", "ndvi_p25", "ndvi_p50", "ndvi_p75", "clear_fraction", "n_pixels",
             "vegetated_fraction", "water_fraction"]
    out = {k: np.full((n, n_t), np.nan, np.float32) for k in names}
    counted = np.zeros(n, np.int64)

    def stats(outputs, name):
        return outputs[name]["bands"]["B0"]["stats"]

    for i, rows in enumerate(per_parcel):
        for j, day in enumerate(days):
            if day not in rows:
                continue  # the service returned no interval for this parcel: stays NaN (unknown)
            s = stats(rows[day], "ndvi")
            total = int(s["sampleCount"])
            clear = total - int(s["noDataCount"])
            counted[i] = max(counted[i], total)
            out["clear_fraction"][i, j] = clear / total if total else np.nan
            out["n_pixels"][i, j] = clear
            if clear >= 1:
                out["ndvi_mean"][i, j] = float(s["mean"])
                pct = {float(k): float(v) for k, v in s.get("percentiles", {}).items()}
                for name, q in (("ndvi_p25", 25.0), ("ndvi_p50", 50.0), ("ndvi_p75", 75.0)):
                    out[name][i, j] = pct.get(q, np.nan)
                out["vegetated_fraction"][i, j] = float(stats(rows[day], "vegetated")["mean"])
                out["water_fraction"][i, j] = float(stats(rows[day], "water")["mean"])
    times = [np.datetime64(times_by_day.get(d, dt.datetime.combine(d, dt.time())), "ns")
             for d in days]
    return xr.Dataset(
        {k: (("parcel", "time"), v) for k, v in out.items()},
        coords={"parcel_id": ("parcel", np.asarray(parcel_ids, dtype=str)),
                "time": np.asarray(times, dtype="datetime64[ns]"),
                "full_pixels": ("parcel", counted),
                "weight_sum": ("parcel", counted.astype(np.float32)),
                "pixel_rule": ("parcel", np.asarray(rules, dtype=str)),
                "small_parcel": ("parcel", counted < 4)},
        attrs={"pixel_rule": f"Sentinel Hub {api}: pixels of the service's own rasterisation of "
                             f"the parcel shrunk by {inward_buffer_m:g} m, each counted whole "
                             f"(no coverage weighting); unbuffered polygon when less than one "
                             f"pixel remains; no cloud-edge dilation",
               "inward_buffer_m": inward_buffer_m, "vegetated_ndvi": 0.4,
               "cloud_dilation_px": 0, "quantile_method": f"Sentinel Hub {api} percentiles",
               "time_grouping": "UTC day (P1D intervals)", "source": "sentinelhub"})


def _times_by_day(conn: _Connection, collection, utm, geoms, start, end) -> dict:
    """UTC day → first acquisition time, from the catalog (so times match the cube's)."""
    present = [g for g in geoms if g is not None]
    if not present:
        return {}
    minx, miny, maxx, maxy = shapely.GeometryCollection(present).bounds
    tr = Transformer.from_crs(utm, 4326, always_xy=True)
    lons, lats = tr.transform([minx, maxx, minx, maxx], [miny, miny, maxy, maxy])
    times = conn.catalog_times(collection, (min(lons), min(lats), max(lons), max(lats)),
                               start, end)
    out: dict[dt.date, dt.datetime] = {}
    for t in times:
        out.setdefault(t.date(), t)
    return out


def _stat_requests(conn, collection, utm, geoms, start, end, resolution, data_filter_start=None):
    from sentinelhub import CRS as ShCRS
    from sentinelhub import Geometry, SentinelHubStatistical

    t0 = dt.datetime.combine(start, dt.time())
    t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    aggregation = SentinelHubStatistical.aggregation(
        evalscript=stats_evalscript(), time_interval=(t0, t1), aggregation_interval="P1D",
        resolution=(resolution, resolution))
    reqs = []
    for g in geoms:
        if g is None:
            reqs.append(None)
            continue
        reqs.append(SentinelHubStatistical(
            aggregation=aggregation, input_data=[_input_data(collection, t0, t1)],
            geometry=Geometry(g, crs=ShCRS(utm.to_epsg())), calculations=STATS_CALCULATIONS,
            config=conn.config))
    return reqs, aggregation


def statistical_series(parcels: gpd.GeoDataFrame, start: dt.date, end: dt.date, *, config=None,
                       max_concurrency: int = 4, resolution: float = RESOLUTION_M,
                       inward_buffer_m: float = 5.0, collection="sentinel-2-l2a") -> xr.Dataset:
    """Parcel series from Sentinel Hub's Statistical API, without downloading images.

    One request per parcel (geometry in its UTM zone, shrunk by ``inward_buffer_m`` like
    :func:`agri_3s.timeseries.zonal.pixel_weights`), ``max_concurrency`` at a time, each returning
    one statistic per UTC day with an acquisition. Returns the parcel-series contract
    (``ndvi_mean``, ``ndvi_p25/p50/p75``, ``clear_fraction``, ``n_pixels``, plus
    ``vegetated_fraction`` and ``water_fraction``; dims ``parcel, time``; coord ``parcel_id``).

    What the API cannot give exactly as :func:`~agri_3s.timeseries.zonal.parcel_series` does:
    pixels are counted whole by the service's own rasterisation (no partial-coverage weights),
    so ``n_pixels`` is an integer count; percentiles are the service's, not weighted; clouds
    are masked per pixel without the 2-pixel dilation (an evalscript sees one pixel at a time);
    intervals are UTC days, which equal solar days wherever the overpass does not cross UTC
    midnight (true for China). Every input parcel appears in the output; a parcel with no
    geometry gets NaN and ``pixel_rule = "none"``.

    Examples
    --------
    >>> series = statistical_series(parcels, dt.date(2025, 4, 1), dt.date(2025, 6, 30),
    ...                             config=cdse_config("id", "secret"))   # doctest: +SKIP
    >>> series["ndvi_mean"].sel(parcel=0)                                  # doctest: +SKIP
    """
    conn = _Connection(config)
    coll = _collection(collection)
    utm, geoms, rules = _utm_parcels(parcels, inward_buffer_m)
    pids = parcels["parcel_id"].astype(str).tolist()
    reqs, _ = _stat_requests(conn, coll, utm, geoms, start, end, resolution)
    todo = [(i, r.download_list[0]) for i, r in enumerate(reqs) if r is not None]
    responses: list[dict | None] = [None] * len(pids)
    if todo:
        results = conn.call(
            f"statistics of {len(todo)} parcel(s) {start}..{end}",
            lambda c: c.download([d for _, d in todo], max_threads=max_concurrency,
                                 decode_data=True), kind="stats")
        for (i, _), res in zip(todo, results):
            if not isinstance(res, dict) or "data" not in res:
                raise ImageryError(f"Sentinel Hub Statistical API returned no statistics for "
                                   f"parcel {pids[i]} ({type(res).__name__}).")
            responses[i] = res
    times = _times_by_day(conn, coll, utm, geoms, start, end)
    return _series_from_stats(pids, responses, rules, times, "Statistical API", inward_buffer_m)


# --------------------------------------------------------------------------- Batch Statistical

class BatchStorage(Protocol):
    """Where Batch Statistical input features go and results come from (an S3 bucket in the
    real service). ``features``/``output`` return Sentinel Hub access specifications
    (``{"s3": {"url": ..., "accessKey": ..., ...}}``)."""

    def features(self, job: str, gpkg: bytes) -> dict: ...

    def output(self, job: str) -> dict: ...

    def read_results(self, job: str) -> dict[str, dict]: ...


class FolderStorage:
    """A local folder standing in for an S3 bucket: ``root/<bucket>/<job>/...``.

    Used with the local fake server, which writes results into the same folder. For the real
    service implement :class:`BatchStorage` on your bucket (e.g. with ``s3fs``): upload the
    GeoPackage, return ``SentinelHubBatchStatistical.s3_specification(url, key, secret)``, and
    read ``<output>/*.json`` back.
    """

    def __init__(self, root: str | Path, bucket: str = "agri3s"):
        self.root, self.bucket = Path(root), bucket

    def _spec(self, key: str) -> dict:
        return {"s3": {"url": f"s3://{self.bucket}/{key}", "iamRoleARN": "local"}}

    def features(self, job: str, gpkg: bytes) -> dict:
        path = self.root / self.bucket / job / "features.gpkg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gpkg)
        return self._spec(f"{job}/features.gpkg")

    def output(self, job: str) -> dict:
        return self._spec(f"{job}/output")

    def read_results(self, job: str) -> dict[str, dict]:
        folder = self.root / self.bucket / job / "output"
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _features_gpkg(ids: Sequence[int], pids: Sequence[str], geoms, utm) -> bytes:
    """The Batch Statistical input GeoPackage: integer ``id``, ``identifier``, geometry (UTM)."""
    gdf = gpd.GeoDataFrame({"id": list(ids), "identifier": list(pids)}, geometry=list(geoms),
                           crs=utm)
    buf = io.BytesIO()
    gdf.to_file(buf, driver="GPKG", layer="features")
    return buf.getvalue()


def batch_statistical_series(parcels: gpd.GeoDataFrame, start: dt.date, end: dt.date, *,
                             storage: BatchStorage, config=None, job: str | None = None,
                             resolution: float = RESOLUTION_M, inward_buffer_m: float = 5.0,
                             poll_interval_s: float = 30.0, timeout_s: float = 6 * 3600,
                             collection="sentinel-2-l2a") -> xr.Dataset:
    """Parcel series for very large parcel sets via the Batch Statistical API.

    Writes the parcels (UTM, shrunk like :func:`statistical_series`) as a GeoPackage through
    ``storage``, creates and starts the batch request, polls its status every
    ``poll_interval_s`` until ``DONE`` (``FAILED``/``STOPPED`` or ``timeout_s`` →
    :class:`ImageryError`), then reads one result per parcel back from ``storage``. A parcel
    without a result, or with a failed interval, raises :class:`ImageryError` naming it.
    Same contract and caveats as :func:`statistical_series`.

    Examples
    --------
    >>> series = batch_statistical_series(parcels, start, end, storage=my_s3_storage,
    ...                                   config=cfg)                     # doctest: +SKIP
    """
    from sentinelhub import SentinelHubBatchStatistical

    conn = _Connection(config)
    coll = _collection(collection)
    utm, geoms, rules = _utm_parcels(parcels, inward_buffer_m)
    pids = parcels["parcel_id"].astype(str).tolist()
    idx = [i for i, g in enumerate(geoms) if g is not None]
    job = job or f"agri3s-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    responses: list[dict | None] = [None] * len(pids)
    if idx:
        features = storage.features(job, _features_gpkg([i + 1 for i in idx],
                                                        [pids[i] for i in idx],
                                                        [geoms[i] for i in idx], utm))
        reqs, aggregation = _stat_requests(conn, coll, utm, [geoms[idx[0]]], start, end,
                                           resolution)
        input_data = reqs[0].payload["input"]["data"]

        def batch(client):
            b = SentinelHubBatchStatistical(config=conn.config)
            b.client = client
            return b

        request = conn.call(f"batch statistics job {job} (create)", lambda c: batch(c).create(
            input_features=features, input_data=input_data, aggregation=aggregation,
            calculations=STATS_CALCULATIONS, output=storage.output(job)))
        rid = request.request_id
        conn.call(f"batch statistics {rid} (start)", lambda c: batch(c).start_job(rid))
        deadline = time.monotonic() + timeout_s
        while True:
            info = conn.call(f"batch statistics {rid} (status)",
                             lambda c: batch(c).get_request(rid))
            status = info.status.value
            if status == "DONE":
                break
            if status in ("FAILED", "STOPPED"):
                raise ImageryError(f"Sentinel Hub batch statistics request {rid} ended "
                                   f"{status}: {info.error or 'no reason given'}.")
            if time.monotonic() > deadline:
                raise ImageryError(f"Sentinel Hub batch statistics request {rid} still "
                                   f"{status} after {timeout_s:g} s; poll it later with "
                                   f"SentinelHubBatchStatistical().get_request('{rid}').")
            time.sleep(poll_interval_s)
        results = storage.read_results(job)
        by_key = {}
        for key, res in results.items():
            by_key[str(res.get("identifier", key))] = res
            by_key[str(res.get("id", key))] = res
        missing = [pids[i] for i in idx if pids[i] not in by_key and str(i + 1) not in by_key]
        if missing:
            raise ImageryError(f"Sentinel Hub batch statistics request {rid} returned no result "
                               f"for parcel(s) {', '.join(missing[:10])}"
                               f"{' …' if len(missing) > 10 else ''}.")
        for i in idx:
            res = by_key.get(pids[i]) or by_key[str(i + 1)]
            resp = res.get("response", res)
            if resp.get("status") not in (None, "OK") and "data" not in resp:
                raise ImageryError(f"Sentinel Hub batch statistics failed for parcel {pids[i]}: "
                                   f"{resp.get('error') or resp.get('status')}.")
            responses[i] = resp
    times = _times_by_day(conn, coll, utm, geoms, start, end)
    return _series_from_stats(pids, responses, rules, times, "Batch Statistical API",
                              inward_buffer_m)
