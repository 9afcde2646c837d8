"""A run's outputs published as one set: the lock, the swap, the user's own files kept, and a
publication cut short by a kill finished or undone by the next job."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agri_3s.errors import InputError
from agri_3s.outputs.export import atomic_path, file_sha256, write_manifest
from agri_3s.outputs.publish import acquire_lock, exchange, open_run, publish, work_folder


def _write_set(folder, tag: str, names=("verdicts.csv", "series.nc")):
    """A complete run in ``folder`` (a staging folder): files whose content is ``tag``."""
    import datetime as dt

    files = {}
    for name in names:
        (folder / name).write_text(f"{tag} {name}")
        files[name] = folder / name
    write_manifest(folder, job="underwrite", inputs={}, parameters={"tag": tag}, imagery={},
                   outputs=files, started=dt.datetime.now(dt.timezone.utc))


def _consistent(out) -> str:
    """The tag of the complete set in ``out``; fails on a mixed or incomplete set."""
    manifest = json.loads((out / "run.json").read_text())
    tag = manifest["parameters"]["tag"]
    for name, entry in manifest["outputs"].items():
        assert file_sha256(out / entry["path"]) == entry["sha256"], name
        assert (out / entry["path"]).read_text() == f"{tag} {name}"
    return tag


def test_a_held_lock_names_the_job_and_a_dead_holder_does_not_keep_it(tmp_path):
    lock = tmp_path / "lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from agri_3s.outputs.publish import acquire_lock
        acquire_lock(Path({str(lock)!r}), "underwrite", Path("."))
        print("locked", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError) as refused:
            acquire_lock(lock, "assess", tmp_path)
        text = str(refused.value)
        assert f"pid {holder.pid}" in text and "started 20" in text and "underwrite" in text
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    taken = acquire_lock(lock, "assess", tmp_path)  # the kernel released the dead job's lock
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    os.close(taken.fd)


def test_publish_replaces_the_old_set_and_keeps_the_users_entries(tmp_path):
    out = tmp_path / "wheat"
    with open_run(out, job="underwrite") as run:
        _write_set(run.staging, "old", names=("verdicts.csv", "verdicts.gpkg", "series.nc"))
        publish(run)
    (out / "notes.txt").write_text("mine")
    (out / "eval").mkdir()
    (out / "eval" / "evaluation.json").write_text("{}")
    with open_run(out, job="underwrite") as run:
        _write_set(run.staging, "new")
        publish(run)
    assert _consistent(out) == "new"
    assert not (out / "verdicts.gpkg").exists()  # the old run's output, not in the new set
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "eval" / "evaluation.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheat"]  # no work folder left


def test_a_job_that_fails_leaves_the_old_set_and_nothing_else(tmp_path):
    out = tmp_path / "wheat"
    with open_run(out, job="underwrite") as run:
        _write_set(run.staging, "old")
        publish(run)
    with pytest.raises(RuntimeError), open_run(out, job="underwrite") as run:
        _write_set(run.staging, "new")
        raise RuntimeError("the decisions failed")
    assert _consistent(out) == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheat"]


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


KILLED_PUBLISH = """
import os, sys
from pathlib import Path
from agri_3s.outputs import publish as P
sys.path.insert(0, {tests!r})
from test_publish import _write_set
out, step = Path({out!r}), {step!r}
if step == "fallback":
    P.exchange = lambda a, b: False
    real = os.rename
    def rename(a, b):
        real(a, b)
        if Path(b).name == "old":
            os._exit(9)  # killed between the two renames
    P.os.rename = rename
elif step == "journal":
    P.exchange = lambda a, b: os._exit(9)  # killed right before the swap
else:
    P._carry_over = lambda old, new: os._exit(9)  # killed right after the swap
with P.open_run(out, job="underwrite") as run:
    _write_set(run.staging, "new")
    P.publish(run)
"""


@pytest.mark.parametrize("step", ["journal", "swap", "fallback"])
def test_a_publication_cut_short_is_finished_or_undone_by_the_next_job(tmp_path, step):
    out = tmp_path / "wheat"
    with open_run(out, job="underwrite") as run:
        _write_set(run.staging, "old")
        publish(run)
    (out / "notes.txt").write_text("mine")
    script = KILLED_PUBLISH.format(tests=os.path.dirname(__file__), out=str(out), step=step)
    killed = subprocess.run([sys.executable, "-c", script])
    assert killed.returncode == 9
    if out.exists():  # what a reader sees right after the kill: one whole set, never a mix
        assert _consistent(out) in ("old", "new")
    else:
        assert step == "fallback"
    with open_run(out, job="underwrite") as run:  # the next job recovers first
        recovered = _consistent(out)
        assert recovered == ("old" if step == "journal" else "new")
        _write_set(run.staging, "third")
        publish(run)
    assert _consistent(out) == "third"
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheat"]


def test_atomic_writes_leave_no_temporary_name_and_clean_up_after_a_killed_writer(tmp_path):
    target = tmp_path / "verdicts.geojson"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from agri_3s.outputs.export import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("half")
            os._exit(9)
        """)])
    assert writer.wait() == 9
    # and what earlier versions left: a hidden temporary file named by the dead writer's pid
    (tmp_path / f".verdicts.tmp-{writer.pid}.csv").write_text("older version's")
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 2 and not target.exists()
    with atomic_path(target) as tmp:
        assert tmp.name == "verdicts.geojson"  # a GeoJSON layer is named after the file
        tmp.write_text("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["verdicts.geojson"]


def test_the_work_folder_sits_beside_out():
    from pathlib import Path

    assert work_folder(Path("maps/wheat")) == Path("maps/.wheat.agri3s")


def test_a_second_job_waits_for_no_one(tmp_path):
    """The refusal is immediate: a job never blocks on another's lock."""
    out = tmp_path / "wheat"
    with open_run(out, job="underwrite"):
        t0 = time.perf_counter()
        with pytest.raises(InputError, match="another agri3s job is writing to this folder"):
            with open_run(out, job="assess"):
                pass
        assert time.perf_counter() - t0 < 3
