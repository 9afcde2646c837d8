"""Job files: one TOML file that says what ``agri3s underwrite`` or ``agri3s assess`` would be
told on the command line (``agri3s run JOB.toml``), checked key by key before any work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

from .decisions.indemnity import PolicyTerms
from .decisions.loss import LossParams
from .decisions.planting import PlantingRules
from .errors import InputError
from .pipeline import Progress, RunResult, assess, underwrite
from .timeseries.screening import ScreenRules
from .tomlfile import check_keys, read_toml, settings


def _resolve(value: str, base: Path) -> str:
    """Job-file paths are relative to the job file; ``sample:NAME`` is the embedded sample."""
    prefix = ""
    if value.startswith("local:"):
        prefix, value = "local:", value[len("local:"):]
    if value.startswith("sample:"):
        from .sample import ensure_sample

        return prefix + str(ensure_sample().root / value[len("sample:"):])
    path = Path(value)
    return prefix + str(path if path.is_absolute() else (base / path).resolve())


def _model_option(value, base: Path):
    """A job file's ``crop_model``: "auto", "none" / false (rules only) or a model file."""
    if value in (False, None, "none", ""):
        return None
    return "auto" if value in (True, "auto") else _resolve(str(value), base)


#: Keys of every job file; then each job's own keys. Tables are checked by :func:`settings`.
_JOB_KEYS = {"job", "parcels", "imagery", "out", "crs", "columns", "encoding", "layer",
             "calendar", "include_pii", "lang", "scheduler", "partition_px"}
_JOB_ONLY = {"underwrite": {"season", "region", "pool_units", "crop_model", "save_crop_model",
                            "calibration", "series", "rules", "screen"},
             "assess": {"event", "policy", "loss"}}
_TABLES = {"rules": PlantingRules, "screen": ScreenRules, "policy": PolicyTerms,
           "loss": LossParams}
_TEXT = ((str,), "a text in quotes", '"…"')
_FLAG = ((bool,), "true or false", "true")
#: TOML types of the top-level values: (types, as a user reads them, an example).
#: ``columns`` may be a table (``[columns]`` then ``"地块号" = "parcel_id"`` lines).
_JOB_TYPES = {**{k: _TEXT for k in ("parcels", "imagery", "out", "encoding", "layer",
                                    "calendar", "lang", "scheduler", "season", "region",
                                    "save_crop_model", "calibration", "series", "event")},
              "crs": ((str, int), "an EPSG code or a CRS name", '"EPSG:4326"'),
              "columns": ((str, dict), "a text or a table", '"地块号=parcel_id,亩数=declared_area_mu"'),
              "include_pii": _FLAG, "pool_units": _FLAG,
              "crop_model": ((str, bool), '"auto", "none", false or a model file', '"auto"')}


def _check_job(job: dict, kind: str, path: Path) -> None:
    """Every key known to this kind of job, every value of its TOML type, every table's keys
    known (a typo would otherwise run silently with a default)."""
    other = next(k for k in _JOB_ONLY if k != kind)
    top = _JOB_KEYS | _JOB_ONLY[kind]
    homes: dict[str, list[str]] = {}
    for table in sorted(_JOB_ONLY[kind] & set(_TABLES)):
        for f in fields(_TABLES[table]):
            homes.setdefault(f.name, []).append(f"[{table}]")
    in_table = {name: "in " + " or ".join(tables) for name, tables in homes.items()}
    check_keys(job, top, where=f"an {kind} job file", source=path,
               elsewhere={**in_table, **{k: f'in an {other} job (job = "{other}")'
                                         for k in _JOB_ONLY[other] - top}})
    for key, value in job.items():
        types, kind_text, example = _JOB_TYPES.get(key, ((object,), "", ""))
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise InputError(f"{key} = {value!r} is not {kind_text}.", source=path,
                             fix=f"write it like {key} = {example}")
    for table in _JOB_ONLY[kind] & set(_TABLES):
        if isinstance(job.get(table), dict):  # keys at the top level written under the table
            check_keys(job[table], [f.name for f in fields(_TABLES[table])],
                       where=f"[{table}]", source=path,
                       elsewhere={k: "at the top of the job file, before any [table]"
                                  for k in top})
    from .outputs.webmap import LANGS

    if job.get("lang", "zh") not in LANGS:
        raise InputError(f"lang = {job['lang']!r} is not a map language.", source=path,
                         fix=f"write lang = \"{LANGS[0]}\" or \"{LANGS[1]}\"")


def run_job(path: str | Path, progress: Progress | None = None, *, restart: bool = False,
            log: Callable[[str], None] | None = None) -> RunResult:
    """Run a job file: ``job = "underwrite" | "assess"`` plus the same inputs as the CLI.

    Unknown keys (top level or in ``[rules]`` / ``[screen]`` / ``[policy]`` / ``[loss]``) and
    values of the wrong type are refused with an :class:`InputError` naming the key and the
    closest known one.

    Examples
    --------
    >>> run_job("pipelines/underwrite_wheat_sample.toml")                # doctest: +SKIP
    """
    path = Path(path)
    job = read_toml(path, "job file")
    base = path.parent
    kind = job.get("job")
    if kind not in _JOB_ONLY:
        raise InputError(f"job = {kind!r}; expected \"underwrite\" or \"assess\".", source=path,
                         fix='write job = "underwrite" or job = "assess" at the top')
    _check_job(job, kind, path)
    needed = ["parcels", "out"] + (["imagery"] if kind == "assess" or "series" not in job else [])
    needed += ["season"] if kind == "underwrite" else ["event"]
    for key in needed:
        if key not in job:
            example = {"season": '"2024-10-01/2025-06-15"', "event": '"events/hail.toml"',
                       "imagery": '"local:/data/s2"'}.get(key, '"…"')
            raise InputError(f"the job file has no '{key}'.", source=path,
                             fix=f"add {key} = {example}")
    tables = {name: settings(cls, job.get(name, {}), where=f"[{name}]", source=path)
              for name, cls in _TABLES.items() if name in _JOB_ONLY[kind]}
    for key in ("calendar", "calibration", "series", "event", "crop_model"):
        value = job.get(key)  # checked now, not after the series of a province is made
        if isinstance(value, str) and value not in ("auto", "none", ""):
            if not Path(_resolve(value, base)).is_file():
                raise InputError(f"{key} = {value!r}: no such file ({_resolve(value, base)}).",
                                 source=path, fix="paths in a job file are relative to the "
                                                  "job file's folder")
    read = {"crs": job.get("crs"), "columns": job.get("columns"),
            "encoding": job.get("encoding"), "layer": job.get("layer")}
    common = dict(out=_resolve(job["out"], base), **read,
                  calendar=_resolve(job["calendar"], base) if job.get("calendar") else None,
                  include_pii=job.get("include_pii", False), lang=job.get("lang", "zh"),
                  scheduler=job.get("scheduler"), progress=progress, restart=restart, log=log,
                  partition_px=job.get("partition_px"))
    parcels = _resolve(job["parcels"], base)
    imagery = _resolve(job["imagery"], base) if "imagery" in job else None
    if kind == "underwrite":
        rules, screen = tables["rules"], tables["screen"]
        if "min_clear_fraction" not in job.get("screen", {}):  # [rules]' applies to both
            screen = replace(screen, min_clear_fraction=rules.min_clear_fraction)
        return underwrite(parcels, imagery, job["season"], region=job.get("region"),
                          rules=rules, screen=screen, pool_units=job.get("pool_units", False),
                          crop_model=_model_option(job.get("crop_model", "auto"), base),
                          save_crop_model=_resolve(job["save_crop_model"], base)
                          if job.get("save_crop_model") else None,
                          calibration=_resolve(job["calibration"], base)
                          if job.get("calibration") else None,
                          series=_resolve(job["series"], base) if job.get("series") else None,
                          **common)
    return assess(parcels, imagery, _resolve(job["event"], base), terms=tables["policy"],
                  params=tables["loss"], **common)
