"""Province-scale jobs, tried as an operator would on the sample: killed with SIGKILL at random
points and run again, run over a finished job, run twice on one folder, rerun with changed
inputs — and the same partitioned job on a dask.distributed cluster that loses a worker.

Every job here is the real ``agri3s underwrite`` command in a child process, on a subset of
the sample (every third acquisition of the wheat season, 4 partitions of 256 px)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agri_3s.outputs.export import file_sha256
from agri_3s.outputs.publish import work_folder

SEASON = "2024-10-01/2025-06-15"
#: run.json entries that differ between two runs of the same job (when, and what was resumed)
VOLATILE = ("started", "finished", "partitions")


@pytest.fixture(scope="module")
def small(sample, tmp_path_factory):
    """(imagery folder, parcels): every third acquisition of the wheat season (links)."""
    root = tmp_path_factory.mktemp("resume")
    imagery = root / "imagery"
    imagery.mkdir()
    days = sorted(p for p in Path(sample.imagery).iterdir()
                  if p.is_dir() and "2024-09-01" <= p.name[:10] <= "2025-06-15")
    for day in days[::3]:
        (imagery / day.name).symlink_to(day)
    return imagery, Path(sample.parcels_wheat)


def _command(small, out: Path, *more: str, partition_px: int = 256) -> list[str]:
    imagery, parcels = small
    return [sys.executable, "-m", "agri_3s.cli", "underwrite", str(parcels), "--imagery",
            f"local:{imagery}", "--season", SEASON, "--out", str(out), "--partition-px",
            str(partition_px), *more]


def _run(small, out: Path, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(small, out, *more), capture_output=True, text=True,
                          timeout=600)


def _start(small, out: Path, *more: str) -> subprocess.Popen:
    return subprocess.Popen(_command(small, out, *more), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _kill(job: subprocess.Popen) -> str:
    job.send_signal(signal.SIGKILL)
    _, err = job.communicate(timeout=60)
    return err


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


def _manifest(out: Path) -> dict:
    return {k: v for k, v in json.loads((out / "run.json").read_text()).items()
            if k not in VOLATILE}


def _consistent(out: Path) -> dict:
    """``run.json`` describes exactly the files beside it (names and hashes); returns it."""
    manifest = json.loads((out / "run.json").read_text())
    listed = {entry["path"] for entry in manifest["outputs"].values()} | {"run.json"}
    assert set(_files(out)) == listed
    for entry in manifest["outputs"].values():
        assert file_sha256(out / entry["path"]) == entry["sha256"], entry["path"]
    assert not any(part.startswith(".") for name in listed for part in Path(name).parts)
    return manifest


def _wait_for(condition, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the job did not get there")
        time.sleep(0.05)


def _parts(out: Path) -> list[Path]:
    return sorted((work_folder(out) / "parts").glob("part-*.json"))


def test_killed_at_random_points_a_rerun_resumes_to_byte_identical_outputs(small, tmp_path):
    reference = tmp_path / "reference"
    t0 = time.monotonic()
    done = _run(small, reference)
    duration = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    reference_files = _files(reference)
    out = tmp_path / "out"
    rng = random.Random(2026)
    said = []
    for k in range(4):
        job = _start(small, out)
        if k % 2:  # while partitions are being made: after a random number of parts
            n_parts = rng.randint(1, 3)
            try:
                _wait_for(lambda n=n_parts, j=job: len(_parts(out)) >= n or j.poll() is not None)
            except TimeoutError:
                pass
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # anywhere in the run
            time.sleep(rng.uniform(0.15, 0.95) * duration)
        said.append(_kill(job))
        if out.exists():  # a job killed after publishing: its set is whole
            _consistent(out)
    final = _run(small, out)
    assert final.returncode == 0, final.stderr
    said.append(final.stderr)
    assert any("resuming:" in text for text in said), said  # the test exercised a resume
    files = _files(out)
    assert {k: v for k, v in files.items() if k != "run.json"} == {
        k: v for k, v in reference_files.items() if k != "run.json"}
    assert _manifest(out) == _manifest(reference)
    _consistent(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "reference"]  # no stray file


def test_killed_after_its_decisions_a_rerun_reuses_them_and_the_files_written(small, tmp_path):
    """The decisions (which need the whole batch) and each finished output file are
    checkpointed: a rerun after a kill there decides nothing again and rewrites only what was
    missing — to the same bytes; a changed parameter decides afresh."""
    reference = tmp_path / "reference"
    assert _run(small, reference).returncode == 0
    out = tmp_path / "out"
    parts = work_folder(out) / "parts"
    job = _start(small, out)
    _wait_for(lambda: (parts / "outputs" / "verdicts.csv.json").exists() or job.poll() is not None)
    _kill(job)
    assert (parts / "decided.json").exists(), "the job finished before it could be killed"
    rerun = _run(small, out)
    assert rerun.returncode == 0, rerun.stderr
    text = " ".join(rerun.stderr.split())
    assert "decisions of the interrupted run are reused" in text, text
    assert "verdicts.csv" in text.split("decisions of the interrupted run are reused")[1], text
    assert _data(out) == _data(reference)
    _consistent(out)
    # killed there again, then rerun without the crop model: nothing of the first job is reused
    job = _start(small, out)
    _wait_for(lambda: (parts / "decided.json").exists() or job.poll() is not None)
    _kill(job)
    assert (parts / "decided.json").exists(), "the job finished before it could be killed"
    changed = _run(small, out, "--crop-model", "none")
    assert changed.returncode == 0, changed.stderr
    assert "of the interrupted run" not in changed.stderr, changed.stderr
    import pandas as pd

    decided_by = pd.read_csv(out / "verdicts.csv")["decided_by"].dropna()
    assert len(decided_by) and not decided_by.str.contains("crop_model").any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "reference"]  # no stray file


def _data(out: Path) -> dict[str, bytes]:
    """The files of a run, run.json without its volatile entries."""
    files = {k: v for k, v in _files(out).items()
             if k != "run.json" and not k.startswith("eval")}
    files["run.json"] = json.dumps(_manifest(out), sort_keys=True).encode()
    return files


def test_a_job_killed_over_a_finished_one_never_leaves_a_mixed_set(small, tmp_path):
    old_set, new_set = tmp_path / "old", tmp_path / "new"
    for folder, more in ((old_set, ()), (new_set, ("--include-pii",))):
        done = _run(small, folder, *more)
        assert done.returncode == 0, done.stderr
    old, new = _data(old_set), _data(new_set)
    assert old != new
    out = tmp_path / "out"
    assert _run(small, out).returncode == 0
    (out / "eval").mkdir()  # the user's own folder (agri3s evaluate --out out/eval)
    (out / "eval" / "evaluation.json").write_text("{}")
    rng = random.Random(7)
    seen = []
    for _ in range(3):  # another job (names unmasked) on the same folder, killed
        job = _start(small, out, "--include-pii")
        time.sleep(rng.uniform(0.5, 8.0))
        _kill(job)
        now = _data(out)
        assert now in (old, new)  # the whole old set or the whole new one
        _consistent_with_user_files(out)
        seen.append("old" if now == old else "new")
    done = _run(small, out, "--include-pii")
    assert done.returncode == 0, done.stderr
    assert _data(out) == new
    assert (out / "eval" / "evaluation.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old", "out"]


def _consistent_with_user_files(out: Path) -> None:
    manifest = json.loads((out / "run.json").read_text())
    listed = {entry["path"] for entry in manifest["outputs"].values()} | {"run.json"}
    assert set(_files(out)) - listed == {"eval/evaluation.json"}
    for entry in manifest["outputs"].values():
        assert file_sha256(out / entry["path"]) == entry["sha256"], entry["path"]


def test_a_second_job_on_the_same_folder_is_refused_naming_the_first(small, tmp_path):
    out = tmp_path / "out"
    first = _start(small, out)
    lock = work_folder(out) / "lock"

    def locked() -> bool:
        try:
            return json.loads(lock.read_text()).get("pid") == first.pid
        except (OSError, ValueError):
            return first.poll() is not None

    _wait_for(locked)
    second = _run(small, out, "--crop-model", "none")
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    text = " ".join(second.stderr.split())
    assert f"pid {first.pid}" in text and "started 20" in text, text
    _consistent(out)  # the first job's whole set
    # and a job killed does not keep the folder locked
    job = _start(small, out)
    _wait_for(lambda: lock.exists() or job.poll() is not None)
    time.sleep(1.0)
    _kill(job)
    again = _run(small, out)
    assert again.returncode == 0, again.stderr
    _consistent(out)


def test_changed_parcels_or_partitions_restart_what_they_affect_and_say_so(small, tmp_path):
    import geopandas as gpd
    import shapely

    out = tmp_path / "out"
    job = _start(small, out)
    _wait_for(lambda: len(_parts(out)) >= 3 or job.poll() is not None)
    _kill(job)
    assert len(_parts(out)) >= 3, "the job finished before it could be killed"
    # one parcel redrawn: the partitions holding it restart, the others resume
    imagery, parcels = small
    edited = gpd.read_file(parcels)
    edited.loc[0, "geometry"] = shapely.affinity.translate(edited.geometry[0], 0.0001, 0.0)
    edited_file = tmp_path / "edited.geojson"
    edited.to_file(edited_file, driver="GeoJSON")
    rerun = subprocess.run(_command((imagery, edited_file), out), capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    text = " ".join(rerun.stderr.split())
    assert "resuming:" in text and "partition(s) changed: recomputing them" in text, text
    # another partition size: every partition restarts
    job = _start(small, out, "--crop-model", "none")
    _wait_for(lambda: len(_parts(out)) >= 1 or job.poll() is not None)
    _kill(job)
    resized = subprocess.run(_command(small, out, "--crop-model", "none", partition_px=400),
                             capture_output=True, text=True, timeout=600)
    assert resized.returncode == 0, resized.stderr
    assert "partition size changed: restarting all" in " ".join(resized.stderr.split())
    # --restart: no resume at all
    job = _start(small, out)
    _wait_for(lambda: len(_parts(out)) >= 1 or job.poll() is not None)
    _kill(job)
    fresh = _run(small, out, "--restart")
    assert fresh.returncode == 0, fresh.stderr
    assert "--restart" in fresh.stderr and "resuming" not in fresh.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.geojson", "out"]


def test_partitions_on_a_cluster_equal_the_threaded_run_and_survive_a_killed_worker(
        small, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from agri_3s import partition_job as partitions
    from agri_3s.pipeline import load_parcels, open_source

    imagery, parcels_file = small
    parcels = load_parcels(parcels_file)
    source = open_source(f"local:{imagery}")
    start, end = np.datetime64("2024-09-01").item(), np.datetime64("2025-06-15").item()
    threaded = partitions.partitioned_series(parcels, source, start, end, partition_px=128)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    writes: list[int] = []
    real_write = partitions.PartStore.write
    try:
        with distributed.Client(cluster) as client:
            pids = list(client.run(os.getpid).values())

            def write(store, part, arrays):
                writes.append(part.number)
                if len(writes) == 1:  # a worker dies while the others' tasks run
                    os.kill(pids[0], signal.SIGKILL)
                real_write(store, part, arrays)

            monkeypatch.setattr(partitions.PartStore, "write", write)
            on_cluster = partitions.partitioned_series(
                parcels, source, start, end, partition_px=128, work=tmp_path / "parts",
                scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    assert len(writes) == len(set(writes)) > 4  # every partition written once, none lost
    assert sorted(writes) == sorted(int(p.stem.split("-")[1])
                                    for p in (tmp_path / "parts").glob("part-*.nc"))
    for var in threaded.data_vars:
        np.testing.assert_array_equal(on_cluster[var].values, threaded[var].values, err_msg=var)


def test_an_assessment_resumes_past_its_claims_and_not_with_other_verdicts(sample, tmp_path,
                                                                           monkeypatch):
    """The loss assessment checkpoints its claims like underwriting its verdicts; the
    underwriting verdicts it checks the claims against are part of the key."""
    from agri_3s import pipeline

    imagery = f"local:{sample.imagery}"

    def assess(out, **more):
        said = []
        pipeline.assess(sample.parcels_wheat, imagery, sample.hail_event, out=out,
                        log=said.append, **more)
        return " ".join(said)

    reference = tmp_path / "reference"
    assess(reference)
    out = tmp_path / "out"
    real = pipeline.write_outputs

    def crash(*args, **kwargs):  # the job dies after its claims, before its files
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_outputs", crash)
    with pytest.raises(KeyboardInterrupt):
        assess(out)
    monkeypatch.setattr(pipeline, "write_outputs", real)
    said = assess(out)
    assert "decisions of the interrupted run are reused" in said
    assert "map imagery of the interrupted run reused" in said  # (made before the files)
    assert _data(out) == _data(reference)
    # killed after writing claims.csv, then run against underwriting verdicts that reject
    # every parcel: that claims.csv must not be taken back
    maps = pipeline.map_or_skip
    monkeypatch.setattr(pipeline, "map_or_skip", crash)
    with pytest.raises(KeyboardInterrupt):
        assess(out)
    monkeypatch.setattr(pipeline, "map_or_skip", maps)
    import pandas as pd

    claims = pd.read_csv(out / "claims.csv", dtype={"parcel_id": str})
    verdicts = tmp_path / "verdicts.csv"
    pd.DataFrame({"parcel_id": claims["parcel_id"], "status": "red",
                  "reasons": "NOT_PLANTED"}).to_csv(verdicts, index=False)
    assert "of the interrupted run" not in assess(out, verdicts=verdicts)
    flagged = pd.read_csv(out / "claims.csv")
    assert flagged["reasons"].str.contains("UNDERWRITING_REJECTED").any()


def test_a_resumed_job_takes_back_its_checked_parcels_only_from_the_same_file(small, tmp_path,
                                                                            monkeypatch):
    """The parcels as read and checked are checkpointed (a province's validation is slower
    than reading them back): a job stopped after reading them takes them back — with the same
    outputs as a job that never stopped — but not once the file's bytes changed in place."""
    import shutil

    import geopandas as gpd
    import pandas as pd
    import shapely

    from agri_3s import pipeline

    imagery, given = small
    parcels = tmp_path / "parcels.geojson"
    shutil.copy(given, parcels)

    def underwrite(out, crash=None):
        said = []
        if crash:  # the job dies in this step (after reading the parcels)
            def stop(*args, **kwargs):
                raise KeyboardInterrupt
            monkeypatch.setattr(pipeline, crash, stop)
        try:
            pipeline.underwrite(str(parcels), f"local:{imagery}", SEASON, out=out,
                                crop_model=None, partition_px=256, log=said.append)
        finally:
            monkeypatch.undo()
        return " ".join(said)

    reference = tmp_path / "reference"
    underwrite(reference)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        underwrite(out, crash="job_series")
    assert "parcels as the interrupted run read and checked them" in underwrite(out)
    assert _data(out) == _data(reference)
    # the same path, one parcel redrawn after the decisions: the parcels are read and checked
    # afresh, and decided afresh (the decisions' key holds the parcels' key)
    with pytest.raises(KeyboardInterrupt):
        underwrite(out, crash="write_outputs")
    edited = gpd.read_file(parcels)
    edited.loc[0, "geometry"] = shapely.affinity.scale(edited.geometry[0], 0.5, 0.5)
    edited.to_file(parcels, driver="GeoJSON")
    said = underwrite(out)
    assert "parcels as the interrupted run" not in said and "decisions of the" not in said
    area = pd.read_csv(out / "verdicts.csv", dtype={"parcel_id": str}).set_index("parcel_id")
    before = pd.read_csv(reference / "verdicts.csv", dtype={"parcel_id": str}).set_index(
        "parcel_id")
    first = str(edited["parcel_id"][0])
    for column in ("area_mu", "parcel_area_mu"):  # the parcel's own, and as decided
        assert area.loc[first, column] == pytest.approx(before.loc[first, column] / 4, rel=0.01)


def test_a_job_resumed_past_its_decisions_and_series_does_not_assemble_them(small, tmp_path,
                                                                           monkeypatch):
    """Killed while writing its tables, after its decisions and series.nc: the rerun neither
    plans, computes nor assembles the series (a province's take seconds) and still ends with the
    outputs and run.json of a job that never stopped; its result reads them back. (A batch
    too big for one map, as a province: a map needs the series.)"""
    import shutil

    from agri_3s import job_outputs, partition_job, pipeline

    given, parcels = small
    imagery = tmp_path / "imagery"  # (its own: a day of it is rewritten below)
    imagery.mkdir()
    for day in given.iterdir():
        (imagery / day.name).symlink_to(day.resolve())
    monkeypatch.setattr(job_outputs, "MAP_MAX_PARCELS", 10)

    def underwrite(out):
        said = []
        result = pipeline.underwrite(str(parcels), f"local:{imagery}", SEASON, out=out,
                                     crop_model=None, partition_px=256, log=said.append)
        return result, " ".join(said)

    reference, _ = underwrite(tmp_path / "reference")
    out = tmp_path / "out"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(job_outputs, "write_table", crash)
        with pytest.raises(KeyboardInterrupt):
            underwrite(out)

    def assembled(*args, **kwargs):
        raise AssertionError("the series were assembled again")

    with monkeypatch.context() as m:
        m.setattr(partition_job, "plan_series", assembled)
        m.setattr(partition_job, "run_series", assembled)
        result, said = underwrite(out)
    assert "decisions of the interrupted run are reused" in said
    assert "series.nc of the interrupted run reused" in said
    assert _data(out) == _data(tmp_path / "reference")
    # run.json: the partitions its interrupted run planned (and made), none computed again
    planned = json.loads((tmp_path / "reference" / "run.json").read_text())["partitions"]
    assert json.loads((out / "run.json").read_text())["partitions"] == {
        **planned, "resumed": planned["partitions"], "computed": 0}
    assert list(result.series["parcel_id"].values) == list(reference.series["parcel_id"].values)
    assert np.array_equal(result.series["ndvi_mean"].values, reference.series["ndvi_mean"].values,
                          equal_nan=True)
    # killed there again, then an imagery file rewritten: the series' key (the job's
    # fingerprint) changes, so nothing decided before is reused
    with monkeypatch.context() as m:
        m.setattr(job_outputs, "write_table", crash)
        with pytest.raises(KeyboardInterrupt):
            underwrite(out)
    day = sorted(imagery.iterdir())[-1]
    real = day.resolve()
    day.unlink()
    shutil.copytree(real, day, copy_function=shutil.copy)  # the same bytes, new files
    _, said = underwrite(out)
    assert "imagery changed" in said and "of the interrupted run" not in said, said


def test_a_shapefiles_companions_are_part_of_its_identity(tmp_path):
    """A shapefile is read with its .dbf, .prj and .cpg: a changed encoding declaration is a
    changed input, a file of another name beside it is not."""
    from agri_3s.checkpoint import file_identity

    for ext, text in ((".shp", "geometry"), (".dbf", "table"), (".cpg", "UTF-8")):
        (tmp_path / f"fields{ext}").write_text(text)
    before = file_identity(tmp_path / "fields.shp")
    (tmp_path / "other.cpg").write_text("GBK")
    assert file_identity(tmp_path / "fields.shp") == before
    (tmp_path / "fields.cpg").write_text("GBK")
    assert file_identity(tmp_path / "fields.shp") != before
