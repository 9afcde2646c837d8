"""No personal data or secret leaves a run: every output file and every log line of
``underwrite``, ``assess``, ``map`` and ``parcels check`` on the sample, run through the CLI at
DEBUG logging with a Sentinel Hub secret planted in the environment, is searched for the
sample's farmer names (3+ characters), ID numbers (whole, or the part masking hides) and the
secret (as is, and inside a Basic-auth header).

Text is searched after undoing the encodings a file may use (JSON ``\\uXXXX`` escapes, HTML
entities, URL quoting); GeoParquet, GeoPackage and NetCDF files are read back and every text
value searched, besides their raw bytes; base64 blocks (a map page's gzipped data) are
decoded and searched too.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import html
import io
import json
import logging
import re
import urllib.parse
from pathlib import Path

import geopandas as gpd
import pytest

from agri_3s.cli import main
from tests.export_schemas import validate_folder

SECRET = "PLANTED-sh-secret-9f3c1e77b2d44a0c"
CLIENT_ID = "planted-client-id-5e21"
WHEAT_SEASON = "2024-10-01/2025-06-15"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture(scope="module")
def run(sample, tmp_path_factory):
    """The four commands, once, with the secret planted and every logger at DEBUG."""
    out = tmp_path_factory.mktemp("pii")
    collect = _Collect()
    root = logging.getLogger()
    old_level = root.level
    stdout, stderr = io.StringIO(), io.StringIO()
    codes = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SH_CLIENT_SECRET", SECRET)
        mp.setenv("SH_CLIENT_ID", CLIENT_ID)
        root.addHandler(collect)
        root.setLevel(logging.DEBUG)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                codes["underwrite"] = main([
                    "underwrite", str(sample.parcels_wheat), "--imagery",
                    f"local:{sample.imagery}", "--season", WHEAT_SEASON,
                    "--out", str(out / "underwrite")])
                codes["assess"] = main([
                    "assess", str(sample.parcels_wheat), "--imagery", f"local:{sample.imagery}",
                    "--event", str(sample.hail_event), "--out", str(out / "assess")])
                codes["map"] = main(["map", str(out / "underwrite"), str(out / "assess"),
                                     "--out", str(out / "map" / "map.html")])
                codes["parcels check"] = main(["parcels", "check", str(sample.parcels_wheat),
                                               "--out", str(out / "check")])
                # a Sentinel Hub source set up from the environment (no request is made)
                from agri_3s.pipeline import open_source

                source = open_source("sentinelhub")
                logging.getLogger("agri_3s.test").debug("source %r: %s", source,
                                                        source.describe())
        finally:
            root.removeHandler(collect)
            root.setLevel(old_level)
    return {"out": out, "codes": codes, "logs": "\n".join(collect.lines),
            "console": stdout.getvalue() + stderr.getvalue()}


@pytest.fixture(scope="module")
def personal(sample):
    """The sample's names of 3+ characters and its ID numbers (both seasons' files)."""
    names, ids = set(), set()
    for f in (sample.parcels_wheat, sample.parcels_maize):
        given = gpd.read_file(f)
        names |= {n for n in given["farmer_name"].dropna() if len(n) >= 3}
        ids |= set(given["farmer_id_number"].dropna())
    assert len(names) >= 200 and len(ids) >= 300  # the sample has them to leak
    return names, ids


def _decoded(text: str) -> str:
    """``text`` plus its JSON-unescaped, HTML-unescaped and URL-unquoted forms."""
    unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return "\n".join({text, unescaped, html.unescape(unescaped),
                      urllib.parse.unquote(html.unescape(unescaped))})


def _blobs(text: str) -> list[str]:
    """The content of base64 blocks in ``text`` (gunzipped when gzip): how a page embeds data."""
    found = []
    for block in re.findall(r"[A-Za-z0-9+/]{200,}={0,2}", text):
        try:
            data = base64.b64decode(block + "=" * (-len(block) % 4))
        except ValueError:
            continue
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        found.append(data.decode("utf-8", errors="ignore"))
    return found


def _texts(path: Path) -> str:
    """Everything a reader of ``path`` could see, as text."""
    raw = path.read_bytes()
    parts = [raw.decode("utf-8", errors="ignore")]
    parts += _blobs(parts[0])
    if path.suffix in (".parquet", ".gpkg"):
        table = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
        parts += [str(c) for c in table.columns]
        for col in table.columns:
            if table[col].dtype == object or str(table[col].dtype) in ("str", "string"):
                parts += table[col].dropna().astype(str).tolist()
    elif path.suffix == ".nc":
        import xarray as xr

        ds = xr.load_dataset(path, engine="scipy")
        parts.append(repr(ds.attrs))
        for name in list(ds.variables):
            parts.append(f"{name} {ds[name].attrs}")
            if ds[name].dtype.kind in "OUS":
                parts += [str(v) for v in ds[name].values.ravel()]
    return _decoded("\n".join(parts))


def _leaks(text: str, names: set[str], ids: set[str]) -> list[str]:
    found = []
    lengths = sorted({len(n) for n in names})
    for run in re.findall(r"[^\x00-\x7f*]{3,}|[A-Za-z][A-Za-z .·-]{2,}", text):
        for k in lengths:  # every substring of a non-ASCII run that is a name
            found += [run[i:i + k] for i in range(len(run) - k + 1) if run[i:i + k] in names]
    hidden = {i[:-4] for i in ids if len(i) > 4}  # the part masking hides
    for digits in re.findall(r"[0-9Xx]{14,}", text):
        found += [digits[i:i + 14] for i in range(len(digits) - 13) if digits[i:i + 14] in hidden]
    if SECRET in text:
        found.append("the Sentinel Hub secret")
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    if basic in text or base64.b64encode(SECRET.encode()).decode() in text:
        found.append("the secret in base64")
    return sorted(set(found))


def test_the_commands_ran(run):
    assert run["codes"] == {"underwrite": 0, "assess": 0, "map": 0, "parcels check": 0}
    assert len(run["logs"].splitlines()) > 0  # DEBUG logging was on


@pytest.mark.parametrize("job", ["underwrite", "assess", "map", "check"])
def test_no_name_id_number_or_secret_in_any_output_file(run, personal, job):
    files = [p for p in sorted((run["out"] / job).rglob("*")) if p.is_file()]
    assert files
    leaks = {p.name: found for p in files if (found := _leaks(_texts(p), *personal))}
    assert not leaks, {k: v[:5] for k, v in leaks.items()}


def test_no_name_id_number_or_secret_in_logs_or_console(run, personal):
    assert not _leaks(_decoded(run["logs"]), *personal)
    assert not _leaks(_decoded(run["console"]), *personal)


def test_the_search_finds_what_it_looks_for(personal):
    """The checks above can fail: each planted form is found."""
    names, ids = personal
    name, idn = sorted(names)[0], sorted(ids)[0]
    for text in (f"x{name}y", f'"\\u{ord(name[0]):04x}{name[1:]}"', html.escape(name),
                 "".join(f"&#{ord(c)};" for c in name), urllib.parse.quote(name)):
        assert _leaks(_decoded(text), names, ids) == [name], text
    assert _leaks(idn[:-4] + "****", names, ids) == [idn[:-4]]
    assert _leaks(f"token={SECRET}", names, ids) == ["the Sentinel Hub secret"]
    auth = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert _leaks(f"Authorization: Basic {auth}", names, ids) == ["the secret in base64"]
    data = json.dumps({"farmer_name": [name], "area": list(range(400))}, ensure_ascii=False)
    packed = base64.b64encode(gzip.compress(data.encode()))
    page = f"<script>const data = '{packed.decode()}';</script>"
    assert _leaks(_decoded("".join(_blobs(page))), names, ids) == [name]


def test_the_exports_of_the_run_follow_their_schemas(run):
    for job in ("underwrite", "assess", "check"):
        assert validate_folder(run["out"] / job)
