"""Published schemas of the exports, versioned with :data:`~agri_3s.types.SCHEMA_VERSION`.

Per export (``verdicts``, ``claims``, ``parcels_report``) this folder ships

* ``<export>.schema.json`` — a JSON Schema (draft 2020-12) of one row of the CSV / one feature's
  ``properties`` in GeoJSON, GeoPackage and GeoParquet;
* ``<export>.tableschema.json`` — a Frictionless Table Schema (Data Package v2) of the CSV,
  listing every column agri_3s may write (``fieldsMatch: partial``: a file holds those that
  apply plus the user's own columns).

The jobs write both beside their outputs; the Table Schema written there lists exactly the
file's columns, in order. The files here are built from :mod:`.fields` (``python -m
agri_3s.outputs.schemas`` rewrites them).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from functools import cache
from importlib import resources

from ...types import SCHEMA_VERSION, TEXT_MAX_LENGTH
from . import fields

EXPORTS = tuple(fields.EXPORTS)
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
TABLE_SCHEMA_PROFILE = "https://datapackage.org/profiles/2.0/tableschema.json"
#: Columns holding personal data: masked unless a job is run with ``include_pii``.
PII_FIELDS = ("farmer_name", "farmer_id_number")
#: A user's own column, passed through: any scalar, text at most TEXT_MAX_LENGTH characters.
PASS_THROUGH = {"type": ["string", "number", "integer", "boolean", "null"],
                "maxLength": TEXT_MAX_LENGTH,
                "description": "a column of the user's parcel file, passed through"}
_UNMASKED = {"farmer_name": "the farmer's name, NOT masked (written with --include-pii)",
             "farmer_id_number": "the farmer's ID number, NOT masked (written with "
                                 "--include-pii)"}


def schema_id(export: str) -> str:
    """The schema's ``$id``: a URN naming the export and the schema version.

    >>> schema_id("claims") == f"urn:agri_3s:schema:claims:{SCHEMA_VERSION}"
    True
    """
    return f"urn:agri_3s:schema:{export}:{SCHEMA_VERSION}"


def _spec(export: str) -> dict:
    if export not in fields.EXPORTS:
        raise ValueError(f"unknown export {export!r}; one of {', '.join(EXPORTS)}")
    return fields.EXPORTS[export]


def build_json_schema(export: str) -> dict:
    """The JSON Schema of ``export`` built from :mod:`.fields` (what the shipped file holds)."""
    spec = _spec(export)
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id(export),
            "title": f"{spec['title']} (schema {SCHEMA_VERSION})",
            "description": spec["description"].replace("TEXT_MAX_LENGTH", str(TEXT_MAX_LENGTH)),
            "type": "object", "properties": copy.deepcopy(spec["properties"]),
            "required": list(dict.fromkeys(spec["required"])),
            "additionalProperties": dict(PASS_THROUGH)}


def _xsd_pattern(pattern: str) -> str:
    """A ``^…$`` JSON Schema pattern as Table Schema wants it (XML Schema regexes are anchored)."""
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ValueError(f"pattern {pattern!r} must be anchored at both ends")
    return pattern[1:-1]


def _table_field(name: str, prop: dict) -> dict:
    """One Table Schema field from a JSON Schema property."""
    types = [prop["type"]] if isinstance(prop["type"], str) else list(prop["type"])
    kinds = [t for t in types if t != "null"]
    kind = kinds[0] if len(kinds) == 1 else "string"  # pass-through: text in a CSV
    if kind == "string" and prop.get("format") == "date":
        kind = "date"
    field = {"name": name, "type": kind, "description": prop.get("description", "")}
    constraints: dict = {}
    if "null" not in types:
        constraints["required"] = True
    if "enum" in prop:
        constraints["enum"] = [v for v in prop["enum"] if v not in ("", None)]
    if "pattern" in prop:
        constraints["pattern"] = _xsd_pattern(prop["pattern"])
    for key in ("minimum", "maximum") if kind in ("number", "integer") else ():
        if key in prop:
            constraints[key] = prop[key]
    for key in ("minLength", "maxLength") if kind == "string" else ():
        if key in prop:
            constraints[key] = prop[key]
    if constraints:
        field["constraints"] = constraints
    return field


def build_table_schema(export: str, columns: Sequence[str] | None = None, *,
                       schema: dict | None = None) -> dict:
    """A Table Schema of ``export``'s CSV from its JSON Schema (``schema``, default: built from
    :mod:`.fields`): every column agri_3s may write (``columns`` None: what the shipped file
    holds) or exactly ``columns``, in order (unknown ones as passed-through text)."""
    schema = schema or build_json_schema(export)
    props = schema["properties"]
    names = list(props) if columns is None else list(columns)
    table = {"$schema": TABLE_SCHEMA_PROFILE, "title": schema["title"],
             "description": schema["description"] + " Cells that would start a spreadsheet "
             "formula (= + - @ TAB CR) carry a leading ' in the CSV only.",
             "version": SCHEMA_VERSION,
             "fields": [_table_field(c, props.get(c, PASS_THROUGH)) for c in names],
             "missingValues": [""]}
    if columns is None:
        table["fieldsMatch"] = "partial"
    if "row_number" in names:
        table["primaryKey"] = ["row_number"]
    return table


def shipped_texts() -> dict[str, str]:
    """File name → text of every schema file this folder should ship (built fresh)."""
    texts = {}
    for export in EXPORTS:
        texts[f"{export}.schema.json"] = _dumps(build_json_schema(export))
        texts[f"{export}.tableschema.json"] = _dumps(build_table_schema(export))
    return texts


def _dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"


@cache
def _shipped(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def json_schema(export: str, *, include_pii: bool = False) -> dict:
    """The published JSON Schema of one row / feature of ``export``.

    Parameters
    ----------
    export : ``verdicts`` | ``claims`` | ``parcels_report``.
    include_pii : describe an export written with ``include_pii`` (names and ID numbers not
        masked): the masking patterns are dropped and the descriptions say so.

    Examples
    --------
    >>> s = json_schema("claims")
    >>> s["$schema"], s["properties"]["status"]["enum"][:2]
    ('https://json-schema.org/draft/2020-12/schema', ['estimated', 'below_threshold'])
    """
    _spec(export)
    schema = json.loads(_shipped(f"{export}.schema.json"))
    if include_pii:
        schema["description"] += (" This copy describes a file written with --include-pii: "
                                  "farmer names and ID numbers are NOT masked (personal data).")
        for name in PII_FIELDS:
            prop = schema["properties"].get(name)
            if prop:
                prop.pop("pattern", None)
                prop["description"] = _UNMASKED[name]
    return schema


def table_schema(export: str, columns: Sequence[str] | None = None, *,
                 include_pii: bool = False) -> dict:
    """The Frictionless Table Schema of ``export``'s CSV.

    ``columns`` None gives the published one (every column agri_3s may write); a CSV header
    gives the schema of that file: its columns, in order.

    Examples
    --------
    >>> [f["name"] for f in table_schema("verdicts", ["row_number", "status", "my_note"])["fields"]]
    ['row_number', 'status', 'my_note']
    """
    if columns is None and not include_pii:
        _spec(export)
        return json.loads(_shipped(f"{export}.tableschema.json"))
    return build_table_schema(export, columns,
                              schema=json_schema(export, include_pii=include_pii))


def text_limits(export: str, columns: Sequence[str]) -> dict[str, int]:
    """Column → the most characters its text may have in ``export`` (``maxLength``); columns
    the schema does not know get :data:`~agri_3s.types.TEXT_MAX_LENGTH`.

    >>> text_limits("claims", ["claim_id", "reasons_en", "my_note"])
    {'claim_id': 200, 'reasons_en': 4000, 'my_note': 200}
    """
    props = json_schema(export)["properties"]
    return {c: props.get(c, PASS_THROUGH).get("maxLength", TEXT_MAX_LENGTH) for c in columns}
