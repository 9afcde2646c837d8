"""The map's data as compact columns: quantised geometry, coded values, an NDVI matrix.

The page receives numbers and codes, never markup: popups, charts and the legend are built in
the page from them (``app.js``), so a county of 10⁵ parcels stays a few hundred bytes a parcel.
Everything goes into one binary container, gzip-compressed and base64-encoded into the page::

    b"A3M1" | header length (uint32 LE) | header (JSON, UTF-8) | zero padding to 8 | arrays

The header describes each column; a column's array is ``{"o": offset, "n": count, "y": type}``
into the arrays section (8-byte aligned, little endian).

Geometry is projected to web mercator (EPSG:3857, what Leaflet draws), simplified by a quarter
metre, and quantised to 0.1 m steps; each ring drops its closing vertex and is written as
zig-zag varint deltas (the first vertex of a ring from the previous ring's first vertex).
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Sequence

import numpy as np
import pandas as pd
import shapely

#: EPSG:3857 metres per stored integer step.
UNIT_M = 0.1
#: Simplification tolerance (EPSG:3857 metres) applied before quantising.
SIMPLIFY_M = 0.25
MAGIC = b"A3M1"
_TYPES = {np.dtype("<u1"): "u8", np.dtype("<i1"): "i8", np.dtype("<u2"): "u16",
          np.dtype("<i2"): "i16", np.dtype("<u4"): "u32", np.dtype("<i4"): "i32",
          np.dtype("<f4"): "f32", np.dtype("<f8"): "f64"}


def varint(values: np.ndarray) -> bytes:
    """Unsigned LEB128 bytes of non-negative integers (array code, no loop over values).

    >>> varint(np.array([1, 300, 0])).hex()
    '01ac0200'
    """
    v = np.asarray(values, dtype=np.uint64).ravel()
    if v.size == 0:
        return b""
    nbytes = np.ones(v.size, np.int64)
    for k in range(1, 10):
        nbytes += v >= (np.uint64(1) << np.uint64(7 * k))
    out = np.zeros(int(nbytes.sum()), np.uint8)
    start = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    for k in range(int(nbytes.max())):
        has = nbytes > k
        byte = (v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (nbytes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[start[has] + k] = (byte | more).astype(np.uint8)
    return out.tobytes()


def zigzag(values: np.ndarray) -> np.ndarray:
    """Signed → unsigned integers (0, -1, 1, -2 … → 0, 1, 2, 3 …) for :func:`varint`.

    >>> zigzag(np.array([0, -1, 1, -2])).tolist()
    [0, 1, 2, 3]
    """
    v = np.asarray(values, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


class Container:
    """Arrays and a JSON header packed as the page's data (see the module docstring)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, array: np.ndarray | bytes) -> dict:
        """Append an array (or raw bytes); returns its reference for the header."""
        if isinstance(array, (bytes, bytearray)):
            data, kind, n = bytes(array), "u8", len(array)
        else:
            a = np.ascontiguousarray(array)
            a = a.astype(a.dtype.newbyteorder("<"), copy=False)
            kind = _TYPES[a.dtype]
            data, n = a.tobytes(), a.size
        ref = {"o": self._size, "n": n, "y": kind}
        pad = (-len(data)) % 8
        self._parts.append(data + b"\0" * pad)
        self._size += len(data) + pad
        return ref

    def pack(self, header: dict, level: int = 6) -> bytes:
        """The gzip-compressed container."""
        head = json.dumps(header, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
        first = MAGIC + struct.pack("<I", len(head)) + head
        first += b"\0" * ((-len(first)) % 8)
        return gzip.compress(first + b"".join(self._parts), compresslevel=level, mtime=0)


def unpack(data: bytes) -> tuple[dict, bytes]:
    """Header and arrays section of a packed container (what the page decodes; for tests)."""
    raw = gzip.decompress(data)
    if raw[:4] != MAGIC:
        raise ValueError("not an agri_3s map container")
    (n,) = struct.unpack("<I", raw[4:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    start = 8 + n + (-(8 + n)) % 8
    return header, raw[start:]


def read_array(body: bytes, ref: dict) -> np.ndarray:
    """An array of the arrays section by its header reference (for tests)."""
    dtype = {v: k for k, v in _TYPES.items()}[ref["y"]]
    return np.frombuffer(body, dtype=dtype, count=ref["n"], offset=ref["o"])


def encode_geometry(geoms_3857: np.ndarray, box: Container) -> dict:
    """Parcel polygons (EPSG:3857 shapely array, None / empty allowed) as varint streams.

    Returns the header entry: ``rings`` (per parcel, varint), ``verts`` (per ring, varint),
    ``xy`` (zig-zag varint deltas, x then y), ``unit`` and ``area`` (float32 m², mercator).
    """
    geoms = np.asarray(geoms_3857, dtype=object)
    n = len(geoms)
    ok = ~(pd.isna(geoms) | shapely.is_empty(np.where(pd.isna(geoms), None, geoms)))
    clean = np.where(ok, geoms, None)
    clean = shapely.simplify(clean, SIMPLIFY_M, preserve_topology=True)
    # exteriors one way, holes the other: the page fills with the non-zero rule
    clean = shapely.orient_polygons(clean)
    polys, pidx = shapely.get_parts(clean, return_index=True)
    rings, ridx = shapely.get_rings(polys, return_index=True)
    ring_parcel = pidx[ridx]
    xy, vidx = shapely.get_coordinates(rings, return_index=True)
    nv = np.bincount(vidx, minlength=len(rings))
    # drop the closing vertex of every ring
    last = np.cumsum(nv) - 1
    keep = np.ones(len(xy), bool)
    keep[last[nv > 0]] = False
    xy, vidx = xy[keep], vidx[keep]
    nv = np.bincount(vidx, minlength=len(rings))
    q = np.rint(xy / UNIT_M).astype(np.int64)
    first = np.concatenate([[0], np.cumsum(nv)[:-1]])
    prev = np.arange(len(q)) - 1
    starts = first[nv > 0]
    prev_first = np.concatenate([[-1], starts[:-1]])
    prev[starts] = prev_first
    base = np.where(prev[:, None] >= 0, q[np.maximum(prev, 0)], 0)
    delta = (q - base).ravel()
    rings_per_parcel = np.bincount(ring_parcel, minlength=n)
    area = np.where(ok, shapely.area(clean), 0.0).astype(np.float32)
    return {"unit": UNIT_M, "n": n,
            "rings": box.add(varint(rings_per_parcel)), "verts": box.add(varint(nv)),
            "xy": box.add(varint(zigzag(delta))), "area": box.add(area)}


def decode_geometry(header: dict, body: bytes) -> list[list[np.ndarray]]:
    """The rings of each parcel in EPSG:3857 metres (the page's decoding, for tests)."""

    def unvarint(ref: dict) -> np.ndarray:
        raw = read_array(body, ref).astype(np.uint64)
        out, cur, shift = [], 0, 0
        for b in raw.tolist():
            cur |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                out.append(cur)
                cur, shift = 0, 0
        return np.array(out, dtype=np.uint64)

    rings, verts = unvarint(header["rings"]), unvarint(header["verts"])
    z = unvarint(header["xy"]).astype(np.int64)
    deltas = ((z >> 1) ^ -(z & 1)).reshape(-1, 2)
    out, k, ring_first, pos = [], 0, np.zeros(2, np.int64), 0
    for nr in rings.tolist():
        parcel = []
        for _ in range(nr):
            nv = int(verts[k])
            k += 1
            pts = np.zeros((nv, 2), np.int64)
            for j in range(nv):
                pts[j] = (ring_first if j == 0 else pts[j - 1]) + deltas[pos]
                pos += 1
            if nv:
                ring_first = pts[0]
            parcel.append(pts * header["unit"])
        out.append(parcel)
    return out


def _present(values: Sequence) -> np.ndarray:
    s = pd.Series(list(values) if not isinstance(values, pd.Series) else values, dtype=object)
    return ~s.isna().to_numpy() & (s.astype(str).str.strip() != "").to_numpy()


def text_column(values: Sequence) -> dict:
    """Free text (ids): a JSON list, null where missing."""
    s = pd.Series(values, dtype=object)
    ok = _present(s)
    return {"t": "s", "v": [str(v) if k else None for v, k in zip(s.tolist(), ok)]}


def category_column(values: Sequence, box: Container) -> dict:
    """Repeated text (statuses, reason texts): a dictionary and a code per parcel."""
    s = pd.Series(values, dtype=object)
    ok = _present(s)
    s = s.where(ok, None).map(lambda v: None if v is None else str(v))
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    d = [None, *[str(u) for u in uniques]]
    codes = codes + 1
    dtype = np.uint8 if len(d) <= 256 else np.uint16 if len(d) <= 65536 else np.uint32
    return {"t": "c", "d": d, "a": box.add(codes.astype(dtype))}


def number_column(values: Sequence, box: Container, decimals: int) -> dict:
    """Numbers rounded to ``decimals`` as integers (NaN: the type's smallest value)."""
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
    q = np.rint(x * 10.0 ** decimals)
    fin = np.isfinite(q)
    lo, hi = (q[fin].min(), q[fin].max()) if fin.any() else (0.0, 0.0)
    dtype = np.int16 if -32767 <= lo and hi <= 32767 else np.int32
    sentinel = np.iinfo(dtype).min
    q = np.clip(q, np.iinfo(dtype).min + 1, np.iinfo(dtype).max)
    return {"t": "n", "k": 10.0 ** -decimals, "a": box.add(np.where(fin, q, sentinel)
                                                           .astype(dtype))}


def date_column(values: Sequence, box: Container) -> dict:
    """Dates as days since 1970-01-01 (int32; missing: the smallest int32)."""
    t = pd.to_datetime(pd.Series(values), errors="coerce", utc=True)
    days = (t.dt.tz_localize(None).to_numpy("datetime64[D]").astype(np.int64))
    ok = t.notna().to_numpy()
    return {"t": "d", "a": box.add(np.where(ok, days, np.iinfo(np.int32).min).astype(np.int32))}


def ndvi_matrix(ndvi: np.ndarray, used: np.ndarray) -> np.ndarray:
    """(parcel × time) uint8: NDVI −0.2…1 in 250 steps on used looks, 255 elsewhere.

    >>> ndvi_matrix(np.array([[0.4, np.nan, 1.3]]), np.array([[True, True, False]])).tolist()
    [[125, 255, 255]]
    """
    v = np.asarray(ndvi, np.float64)
    q = np.rint((np.clip(v, -0.2, 1.0) + 0.2) / 1.2 * 250.0)
    return np.where(np.asarray(used, bool) & np.isfinite(v), q, 255).astype(np.uint8)
