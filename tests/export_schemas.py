"""Check export files against the schemas a job wrote beside them, with the ``jsonschema`` library.

A CSV is read as a platform would: its header must be exactly the fields of the Table Schema
beside it, each cell is cast by that field's type (``""`` is missing), and every row is then
validated against the JSON Schema; GeoJSON properties, GeoPackage and GeoParquet rows (NaN read
as missing) are validated directly.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import jsonschema

EXPORT_SUFFIXES = (".csv", ".geojson", ".gpkg", ".parquet")


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _cast(value: str, kind: str):
    """A CSV cell by its Table Schema type (the spec's lexical forms)."""
    if value == "":
        return None
    if kind == "integer":
        return int(value)  # "2.0" is not an integer in a Table Schema: let it fail
    if kind == "number":
        return float(value)
    if kind == "boolean":
        if value in ("true", "True", "TRUE", "1"):
            return True
        if value in ("false", "False", "FALSE", "0"):
            return False
        raise ValueError(f"{value!r} is not a Table Schema boolean")
    return value


def _plain(value):
    """A value read by pandas as JSON would carry it (NaN / NA → None, numpy → Python)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return value


def export_rows(path: Path) -> list[dict]:
    """The rows / feature properties of an export file, as plain Python values."""
    path = Path(path)
    if path.suffix == ".geojson":
        return [f["properties"] for f in json.loads(path.read_text(encoding="utf-8"))["features"]]
    if path.suffix == ".csv":
        table = json.loads(path.with_name(f"{path.stem}.tableschema.json").read_text("utf-8"))
        kinds = {f["name"]: f["type"] for f in table["fields"]}
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            assert header == [f["name"] for f in table["fields"]], (
                f"{path.name}: header differs from its Table Schema")
            return [{k: _cast(v, kinds[k]) for k, v in row.items()} for row in reader]
    import geopandas as gpd

    gdf = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    frame = gdf.drop(columns=gdf.geometry.name)
    return [{k: _plain(v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def validate_export(path: Path, schema: dict | None = None) -> int:
    """Validate every row of ``path`` against ``schema`` (default: ``<stem>.schema.json``
    beside it); returns the number of rows. Raises AssertionError with the first errors."""
    path = Path(path)
    if schema is None:
        schema = json.loads(path.with_name(f"{path.stem}.schema.json").read_text("utf-8"))
    validator = _validator(schema)
    rows = export_rows(path)
    errors = [f"row {i + 1}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
              for i, row in enumerate(rows) for e in validator.iter_errors(row)]
    assert not errors, f"{path.name}: {len(errors)} schema error(s), e.g.\n" + "\n".join(
        errors[:10])
    return len(rows)


def validate_folder(folder: Path) -> dict[str, int]:
    """Validate every export in ``folder`` that has a schema beside it: file name → rows."""
    checked = {}
    for schema_file in sorted(Path(folder).glob("*.schema.json")):
        export = schema_file.name[: -len(".schema.json")]
        for suffix in EXPORT_SUFFIXES:
            f = schema_file.with_name(export + suffix)
            if f.exists():
                checked[f.name] = validate_export(f)
    assert checked, f"no export with a schema beside it in {folder}"
    return checked
