"""The ``agri3s`` command (DESIGN.md). Exit codes: 0 done, 1 failed, 2 bad input (usage errors
included: one or two lines with the fix, no traceback), 130 interrupted (Ctrl-C: one line)."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .errors import Agri3sError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="agri_3s: Sentinel-2 underwriting verification and loss assessment.")
parcels_app = typer.Typer(no_args_is_help=True, help="Parcel file checks.")
app.add_typer(parcels_app, name="parcels")
err = Console(stderr=True)
CRS_HELP = ("CRS of the coordinates when the file has none or states it wrongly: EPSG:4326, "
            "EPSG:4490, EPSG:4527…, gcj02 (Amap/Tencent apps), bd09 (Baidu)")
IMAGERY_HELP = "local:PATH | sentinelhub | sentinelhub:cdse | stac:URL"
SCHEDULER_HELP = ("dask.distributed scheduler address (tcp://host:8786); default: this machine. "
                  "Workers must reach the imagery.")
COLUMNS_HELP = "header mapping, e.g. 地块号=parcel_id,亩数=declared_area_mu"
ENCODING_HELP = "DBF/CSV text encoding (default: detected)"
LAYER_HELP = "GeoPackage/KML layer or XLSX sheet"
out = Console()


def _map_language(value: str) -> str:
    """``--lang``: refused before any work, not after the run when the map is drawn."""
    from .outputs.webmap import LANGS

    if value not in LANGS:
        raise typer.BadParameter(f"{value!r} is not a map language; use {' or '.join(LANGS)}.")
    return value


def _columns_option():
    return typer.Option(None, help=COLUMNS_HELP)


def _encoding_option():
    return typer.Option(None, help=ENCODING_HELP)


def _layer_option():
    return typer.Option(None, help=LAYER_HELP)


@contextlib.contextmanager
def _progress():
    """A rich progress display; yields the ``progress(step, done, total)`` callback jobs take.
    The display starts with the first step, so an input error before it prints no blank line."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err,
                   transient=False)
    tasks: dict = {}

    def report(step: str, done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        if step not in tasks or bar.tasks[tasks[step]].finished:
            tasks[step] = bar.add_task(step, total=total)
        bar.update(tasks[step], completed=done)

    try:
        yield report
    finally:
        if bar.live.is_started:
            bar.stop()


RESTART_HELP = ("start afresh: discard the checkpoints a stopped job on this --out left (by "
                "default the same command resumes from them)")
PARTITION_HELP = ("side of the spatial partitions, the unit of checkpointing, in imagery pixels "
                  "(default 2048; a multiple of the imagery's tile size)")


def _say(message: str) -> None:
    """A job's messages (resuming, restarting, what was skipped), above the progress bars."""
    err.print(escape(message))


def _written(files: dict) -> None:
    for name, path in files.items():
        out.print(f"  {name}: {path}")


@app.command()
def demo(out_dir: Path = typer.Option(Path("maps/demo"), "--out", help="output folder"),
         sample: Path | None = typer.Option(None, help="sample folder (default "
                                               "sample_data/generated, made on first use)"),
         lang: str = typer.Option("zh", help="map language: zh | en", callback=_map_language)):
    """Sample data → underwriting + loss assessment + maps; prints what it wrote."""
    from .sample.demo import demo as run_demo

    t0 = time.perf_counter()
    with _progress() as report:
        files = run_demo(out_dir, sample_dir=sample, lang=lang, progress=report)
    out.print(f"[bold]agri_3s demo[/bold] wrote ({time.perf_counter() - t0:.0f} s):")
    _written(files)
    out.print(Path(files["summary.txt"]).read_text(encoding="utf-8"))


@app.command("sample-data")
def sample_data(out_dir: Path | None = typer.Option(None, "--out",
                help="folder (default sample_data/generated)")):
    """(Re)generate the synthetic sample county (deterministic)."""
    from .sample import ensure_sample, generate_sample

    paths = generate_sample(out_dir) if out_dir else ensure_sample()
    out.print(f"sample written to {paths.root}")


@app.command()
def underwrite(parcels: Path, imagery: str | None = typer.Option(None, help=IMAGERY_HELP),
               season: str = typer.Option(..., help="START/END, e.g. 2024-10-01/2025-06-15"),
               out_dir: Path = typer.Option(Path("maps/underwrite"), "--out"),
               calendar: Path | None = typer.Option(None, help="crop calendar TOML"),
               region: str | None = typer.Option(None, help="calendar region"),
               crs: str | None = typer.Option(None, help=CRS_HELP),
               columns: str | None = _columns_option(),
               encoding: str | None = _encoding_option(),
               layer: str | None = _layer_option(),
               include_pii: bool = typer.Option(False, help="keep farmer names / id numbers"),
               lang: str = typer.Option("zh", help="map language: zh | en",
                                        callback=_map_language),
               pool_units: bool = typer.Option(
                   False, help="judge plots too small to measure with the same household's "
                               "adjacent plots of the same crop (连片)"),
               scheduler: str | None = typer.Option(None, help=SCHEDULER_HELP),
               crop_model: str = typer.Option(
                   "auto", help="auto: learn the crops from this batch's declarations "
                                "(cross-fitted); none: rules only; or a model file saved "
                                "with --save-crop-model"),
               save_crop_model: Path | None = typer.Option(
                   None, help="save the crop model learnt from this batch (apply it to "
                              "another batch with --crop-model FILE)"),
               calibration: Path | None = typer.Option(
                   None, exists=True, dir_okay=False,
                   help="confidence calibration table from `agri3s evaluate "
                        "--fit-calibration`"),
               series: Path | None = typer.Option(
                   None, exists=True, dir_okay=False,
                   help="a parcel series already made (NetCDF, e.g. series.nc) "
                        "instead of --imagery"),
               restart: bool = typer.Option(False, help=RESTART_HELP),
               partition_px: int | None = typer.Option(None, help=PARTITION_HELP)):
    """Underwriting verification: a green / yellow / red verdict per parcel."""
    from .pipeline import underwrite as run

    if imagery is None and series is None:
        raise InputError("give --imagery (or a parcel series with --series).",
                         source="agri3s underwrite", fix=f"--imagery {IMAGERY_HELP}")
    model = None if crop_model == "none" else crop_model
    if model not in (None, "auto") and not Path(model).is_file():  # before the series is made
        raise InputError("crop model file not found.", source=f"--crop-model {model}",
                         fix="give auto, none or a file written by --save-crop-model")
    with _progress() as report:
        result = run(parcels, imagery, season, out=out_dir, calendar=calendar, region=region,
                     crs=crs, include_pii=include_pii, lang=lang, pool_units=pool_units,
                     scheduler=scheduler, crop_model=model, save_crop_model=save_crop_model,
                     calibration=calibration, series=series, columns=columns,
                     encoding=encoding, layer=layer, progress=report, restart=restart,
                     partition_px=partition_px, log=_say)
    out.print(f"verdicts: {result.table['status'].value_counts().to_dict()}")
    _written(result.files)


@app.command()
def assess(parcels: Path, imagery: str = typer.Option(..., help=IMAGERY_HELP),
           event: Path = typer.Option(..., help="event TOML"),
           out_dir: Path = typer.Option(Path("maps/assess"), "--out"),
           calendar: Path | None = typer.Option(None, help="crop calendar TOML"),
           payout_threshold: float = typer.Option(0.30, help="no payout below this loss rate"),
           total_loss_at: float = typer.Option(0.80, help="paid as total loss from this rate"),
           deductible: float = typer.Option(0.0, help="absolute deductible rate"),
           crs: str | None = typer.Option(None, help=CRS_HELP),
           columns: str | None = _columns_option(),
           encoding: str | None = _encoding_option(),
           layer: str | None = _layer_option(),
           include_pii: bool = typer.Option(False, help="keep farmer names / id numbers"),
           lang: str = typer.Option("zh", help="map language: zh | en", callback=_map_language),
           scheduler: str | None = typer.Option(None, help=SCHEDULER_HELP),
           restart: bool = typer.Option(False, help=RESTART_HELP),
           partition_px: int | None = typer.Option(None, help=PARTITION_HELP),
           verdicts: Path | None = typer.Option(
               None, help="underwriting result of these parcels (its --out folder): claims on "
                          "parcels it rejected get the reason UNDERWRITING_REJECTED")):
    """Loss assessment: loss rate, damaged area and indemnity per parcel for one event."""
    from .decisions.indemnity import PolicyTerms
    from .pipeline import assess as run

    terms = PolicyTerms(payout_threshold, total_loss_at, deductible)
    with _progress() as report:
        result = run(parcels, imagery, event, out=out_dir, terms=terms, calendar=calendar,
                     crs=crs, include_pii=include_pii, lang=lang, scheduler=scheduler,
                     columns=columns, encoding=encoding, layer=layer, progress=report,
                     restart=restart, partition_px=partition_px, log=_say,
                     verdicts=verdicts)
    t = result.table
    out.print(f"claims: {t['status'].value_counts().to_dict()}; "
              f"indemnity total {t['indemnity_cny'].sum():,.2f} CNY")
    _written(result.files)


@app.command("map")
def map_cmd(results: list[Path], out_file: Path = typer.Option(Path("maps/map.html"), "--out"),
            lang: str = typer.Option("zh", help="zh | en", callback=_map_language),
            photos: Path | None = typer.Option(None, help="photos.geojson from `agri3s photos`"),
            show_pii: bool = typer.Option(False, help="show farmer names (internal use only)"),
            force: bool = typer.Option(
                False, help="map results whose parcels, crops or seasons do not match (the "
                            "map lists what did not)")):
    """An adjuster map from one or more result folders (one offline HTML file; a province
    is split into one map per partition plus an index map)."""
    from .pipeline import map_results

    path = map_results(results, out_file, lang=lang, show_pii=show_pii, photos=photos,
                       force=force)
    out.print(f"map: {path}")


@app.command("evaluate")
def evaluate_cmd(result: Path, truth: Path,
                 out_dir: Path | None = typer.Option(
                     None, "--out", help="write evaluation.json, confusion.csv, summary.csv, "
                                         "reliability.csv here"),
                 by: str = typer.Option("crop", help="group figures by this result column; "
                                                     "'none' for overall figures only"),
                 fit_calibration: Path | None = typer.Option(
                     None, help="also fit a confidence calibration table on these inspections "
                                "and write it here (use it with underwrite --calibration)")):
    """Back-test verdicts or claims against field inspections (验标 / 查勘 results)."""
    from rich.table import Table

    from .decisions.evaluate import evaluate, fit_confidence_calibration
    from .outputs.evaluation import report_tables

    if fit_calibration is not None:
        fitted = fit_confidence_calibration(result, truth, fit_calibration)
        out.print(f"calibration fitted on {fitted['parcels']} parcels: {fitted['path']}")

    report = evaluate(result, truth, out=out_dir, by=None if by.lower() == "none" else by)
    out.print(f"[bold]{report['kind']}[/bold] of {escape(report['inputs']['result']['path'])} "
              f"against {escape(str(truth))} ({report['n']} parcels evaluated)")
    for title, frame in report_tables(report).items():
        table = Table(title=title, title_justify="left")
        for col in frame.columns:
            table.add_column(str(col))
        for row in frame.itertuples(index=False):
            table.add_row(*(escape(str(v)) for v in row))  # parcel ids are user text
        out.print(table)
    _written(report.get("files", {}))


@app.command()
def run(job: Path, restart: bool = typer.Option(False, help=RESTART_HELP)):
    """Run a job file (pipelines/*.toml)."""
    from .jobfile import run_job

    with _progress() as report:
        result = run_job(job, progress=report, restart=restart, log=_say)
    _written(result.files)


@app.command()
def notice(result: Path, out_dir: Path = typer.Option(Path("maps/notices"), "--out"),
           by: str | None = typer.Option(
               None, help="column naming each parcel's village or township (default: village "
                          "/ 行政村 / 村 / township / 乡镇, else the household id's prefix)"),
           event: str | None = typer.Option(None, help="event id, when the claims hold several"),
           lang: str = typer.Option("zh", help="list language: zh | en")):
    """The village posting list (理赔公示) from a claims result: XLSX + CSV per village."""
    from .outputs.notice import posting_lists

    s = posting_lists(result, out_dir, by=by, event=event, lang=lang)
    out.print(escape(f"posting lists: {s['villages']} village(s) by {s['grouped_by']}, "
                     f"{s['households']} household(s), indemnity {s['indemnity_cny']:,.2f} CNY"))
    out.print(f"  villages: {escape(str(s['summary']))}")
    for village, files in s["files"].items():  # village names are user text
        out.print(escape(f"  {village}: {files['xlsx']} · {files['csv']}"))


@parcels_app.command("check")
def parcels_check(parcels: Path, out_dir: Path = typer.Option(Path("maps/parcels_check"), "--out"),
                  crs: str | None = typer.Option(None, help=CRS_HELP),
                  columns: str | None = typer.Option(
                      None, help="header mapping, e.g. 地块号=parcel_id,亩数=declared_area_mu"),
                  encoding: str | None = typer.Option(
                      None, help="DBF/CSV text encoding (default: detected)"),
                  layer: str | None = typer.Option(None, help="GeoPackage/KML layer or XLSX sheet"),
                  area_tolerance: float = typer.Option(
                      0.15, help="declared vs measured area tolerance (AREA_MISMATCH)"),
                  include_pii: bool = typer.Option(
                      False, help="keep farmer names / ID numbers in the report (internal use "
                                  "only; masked by default)")):
    """Validate a parcel file: a status and reasons per row; exits 2 only if nothing is usable."""
    from .outputs.export import write_csv_schemas
    from .parcels.validate import check_parcels_file

    try:
        s = check_parcels_file(parcels, out_dir, crs=crs, layer=layer, columns=columns,
                               encoding=encoding, area_tolerance=area_tolerance,
                               include_pii=include_pii)
    finally:  # the report is written even when no row is usable: publish its schema too
        report = out_dir / "parcels_report.csv"
        schemas = (write_csv_schemas(report, "parcels_report", include_pii=include_pii)
                   if report.is_file() else {})
    s["files"].update(schemas)
    out.print(escape(f"parcels: {s['rows_in']} rows — ok {s['ok']}, repaired {s['repaired']}, "
                     f"rejected {s['rejected']}, overlapping another {s['overlapping']} "
                     f"(CRS {s['source_crs']}, columns {s['column_mapping']})"))
    if s["absent_columns"]:
        out.print(escape(f"no {', '.join(s['absent_columns'])} in the file: geometry checked; "
                         f"underwrite / assess need them (add them, or map with --columns)"))
    _written(s["files"])


@parcels_app.command("overlaps")
def parcels_overlaps(parcels: Path,
                     register: Path | None = typer.Option(
                         None, help="GeoPackage register of parcels accepted in earlier batches"),
                     season: str | None = typer.Option(None, help="only compare this season"),
                     accept: str | None = typer.Option(
                         None, help="batch id: add this batch's usable parcels to the register"),
                     min_share: float = typer.Option(0.05, help="smallest overlap share reported"),
                     out_dir: Path = typer.Option(Path("maps/overlaps"), "--out"),
                     crs: str | None = typer.Option(None, help=CRS_HELP),
                     columns: str | None = _columns_option(),
                     encoding: str | None = _encoding_option(),
                     layer: str | None = _layer_option()):
    """Overlapping and duplicate-insured parcels, within the batch and against a register."""
    from .outputs.export import write_table
    from .parcels.overlap import Register, find_overlaps, overlap_summary
    from .pipeline import load_parcels

    gdf = load_parcels(parcels, crs, columns=columns, encoding=encoding, layer=layer,
                       require=("parcel_id",))  # no crop / area needed here
    usable = gdf[gdf["validity"] != "rejected"]
    pairs = find_overlaps(usable, register=register, season=season, min_share=min_share)
    files = {"overlaps": write_table(pairs, out_dir / "overlaps.csv"),
             "summary": write_table(overlap_summary(usable, pairs), out_dir / "overlap_summary.csv")}
    out.print(f"{len(pairs)} overlapping pair(s) among {len(usable)} usable parcels "
              f"({len(gdf) - len(usable)} rejected on input)")
    if accept:
        if register is None:
            raise InputError("--accept needs --register.", source="--accept")
        Register(register).accept(usable, accept, season=season)
        out.print(f"accepted {len(usable)} parcels into {register} as batch {accept}")
    _written(files)


@parcels_app.command("from-track")
def parcels_from_track(tracks: list[Path],
                       out_file: Path = typer.Option(Path("maps/tracks.geojson"), "--out"),
                       max_hdop: float = typer.Option(5.0, help="drop fixes with a larger HDOP")):
    """Parcel polygons from walked GNSS tracks (GPX or NMEA), one per file, with a fix report."""
    import json

    import geopandas as gpd

    from .outputs.export import write_table
    from .parcels.gnss import polygon_from_track

    rows = []
    for track in tracks:
        polygon, report = polygon_from_track(track, max_hdop=max_hdop)
        rows.append({"parcel_id": track.stem, "geometry": polygon,
                     **{k: json.dumps(v, ensure_ascii=False, default=str)
                        if isinstance(v, (dict, list)) else v for k, v in report.items()}})
    write_table(gpd.GeoDataFrame(rows, crs=4326), out_file)
    out.print(f"{len(rows)} polygon(s): {out_file}")


@app.command()
def photos(folder: Path, parcels: Path,
           photo_crs: str = typer.Option("wgs84", "--photo-crs",
                                         help="coordinates in the photos' EXIF: wgs84 | gcj02"),
           max_distance_m: float = typer.Option(200.0, help="farthest nearest-parcel match"),
           out_file: Path = typer.Option(Path("maps/photos.geojson"), "--out"),
           crs: str | None = typer.Option(None, help=CRS_HELP),
           columns: str | None = _columns_option(),
           encoding: str | None = _encoding_option(),
           layer: str | None = _layer_option()):
    """Geotagged field photos matched to the containing or nearest parcel (for `map --photos`)."""
    from .outputs.export import write_table
    from .parcels.gnss import photos_to_parcels
    from .pipeline import load_parcels

    gdf = load_parcels(parcels, crs, columns=columns, encoding=encoding, layer=layer,
                       require=("parcel_id",))  # no crop / area needed here
    matched = photos_to_parcels(folder, gdf, crs=photo_crs, max_distance_m=max_distance_m)
    write_table(matched, out_file)
    out.print(f"photos: {matched['match'].value_counts().to_dict()}: {out_file}")


def _command_at(argv: list[str]) -> tuple[str, object]:
    """The command path and click command ``argv`` names (usage errors raised while parsing
    an option's value carry no context)."""
    command, path = typer.main.get_command(app), ["agri3s"]
    for arg in argv:
        sub = getattr(command, "commands", {}).get(arg)
        if sub is None:
            break
        command, path = sub, [*path, arg]
    return " ".join(path), command


def _usage_fix(exc: typer.TyperException, path: str, command: object) -> str:
    """What to type instead: the option's own help, the arguments, or the commands."""
    listed = f"`{path} --help` lists the options"
    param = getattr(exc, "param", None)
    if param is None and getattr(exc, "option_name", None):
        param = next((p for p in getattr(command, "params", [])
                      if exc.option_name in getattr(p, "opts", ())), None)
    if param is not None and getattr(param, "help", None):
        return f"{'/'.join(param.opts)}: {param.help} ({listed})"
    if param is not None:  # an argument
        names = [p.name.upper() + ("…" if p.nargs == -1 else "")
                 for p in getattr(command, "params", []) if p.param_type_name == "argument"]
        return f"{path} {' '.join(names)} [OPTIONS] ({listed})"
    if isinstance(getattr(command, "commands", None), dict) and not getattr(
            exc, "option_name", None):  # an unknown command
        return f"one of {', '.join(sorted(command.commands))} (`{path} --help` says what each does)"
    return f"check the spelling; {listed}"


def _bad_input(problem: str, fix: str) -> None:
    err.print(f"[red]bad input:[/red] {escape(problem)}", soft_wrap=True, highlight=False)
    if fix:
        err.print(f"Fix: {escape(fix)}", soft_wrap=True, highlight=False)


#: Exit status of a run stopped with Ctrl-C: 128 + SIGINT, what shells report for it.
INTERRUPTED = 130


def _interrupted() -> int:
    err.print("interrupted (Ctrl-C). Run the same command again: underwrite, assess and run "
              "resume from their checkpoints.", soft_wrap=True, highlight=False)
    return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps errors to exit codes (0 done, 1 failed, 2 bad input, 130 interrupted).

    Bad input — a usage error (unknown option or command, missing argument, bad value) or an
    :class:`InputError` — prints one line saying what is wrong and one with the fix, no
    traceback. Usage errors come from typer's own (vendored) click since typer 0.29. Ctrl-C
    prints one line and exits 130, without a traceback.

    Examples
    --------
    >>> main(["underwrite", "parcels.geojson", "--calender", "x.toml"])  # doctest: +SKIP
    bad input: agri3s underwrite: No such option: --calender (Possible options: --calendar)
    Fix: check the spelling; `agri3s underwrite --help` lists the options
    2
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        result = app(args=args, prog_name="agri3s", standalone_mode=False)
        if result == INTERRUPTED:  # typer turns a KeyboardInterrupt into a silent Exit(130)
            return _interrupted()
        return result if isinstance(result, int) else 0  # `--help` returns its exit code
    except KeyboardInterrupt:  # outside typer's own handling (parsing, a typer that re-raises)
        return _interrupted()
    except InputError as exc:
        _bad_input(exc.problem, exc.fix)
        return 2
    except Agri3sError as exc:
        err.print(f"[red]failed:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return 1
    except typer.Exit as exc:
        return _interrupted() if exc.exit_code == INTERRUPTED else exc.exit_code
    except typer.Abort:
        err.print("aborted.")
        return 1
    except typer.TyperException as exc:  # click's usage errors, as typer ≥ 0.29 vendors them
        if type(exc).__name__ == "NoArgsIsHelpError":  # `agri3s` alone: the help
            exc.show()
            return 2
        ctx = getattr(exc, "ctx", None)
        path, command = ((ctx.command_path, ctx.command) if ctx is not None
                         else _command_at(args))
        _bad_input(f"{path}: {exc.format_message()}", _usage_fix(exc, path, command))
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
