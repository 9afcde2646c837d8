"""Exports written block by block: the same bytes as one write, and resumable after a kill."""

import datetime as dt
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from agri_3s.outputs import streaming
from agri_3s.outputs.export import write_table


def _table(n: int = 11) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(3)
    return gpd.GeoDataFrame({
        "parcel_id": [f"p{i}" for i in range(n)],
        "status": rng.choice(["green", "yellow", "red"], n),
        "reasons_zh": ["出苗偏晚"] * (n - 1) + ["=1+1\r\n甲"],
        "confidence": np.where(np.arange(n) % 4 == 1, np.nan, rng.uniform(0, 1, n)),
        # whole numbers in every block but the last: the column is not an integer column
        "unit_n_parcels": [*range(n - 1), 2.5],
        "emergence_date": [dt.date(2025, 3, 1 + i % 20) if i % 3 else None for i in range(n)]},
        geometry=[shapely.box(116 + i / 1000, 36, 116.0005 + i / 1000, 36.0005)
                  for i in range(n)], crs=4326)


@pytest.mark.parametrize("suffix", [".csv", ".geojson"])
def test_blocks_give_the_bytes_of_one_block(tmp_path, monkeypatch, suffix):
    """Cut into blocks of 3 rows, a file is byte for byte the file written as one block (the
    per-column decisions are made on the whole table, not per block)."""
    table = _table()
    whole = write_table(table, tmp_path / "whole" / f"verdicts{suffix}", export="verdicts")
    monkeypatch.setattr(streaming, "BLOCK", 3)
    cut = write_table(table, tmp_path / "cut" / f"verdicts{suffix}", export="verdicts")
    assert cut.read_bytes() == whole.read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux")
@pytest.mark.parametrize("suffix", [".csv", ".geojson"])
def test_worker_processes_give_the_bytes_of_one_process(tmp_path, monkeypatch, caplog, suffix):
    """A big table's blocks encoded by two forked workers make the same file as one process,
    and what the workers log (a text cut to the schema's length) reaches the job's log, once."""
    table = _table(14)
    table.loc[9, "reasons_zh"] = "长" * 5000
    monkeypatch.setattr(streaming, "BLOCK", 3)
    one = write_table(table, tmp_path / "one" / f"verdicts{suffix}", export="verdicts")
    monkeypatch.setattr(streaming, "PARALLEL_ROWS", 0)
    monkeypatch.setattr(streaming, "local_workers", lambda: 2)
    caplog.clear()
    said = logging.FileHandler(tmp_path / "said.log")  # a handler the workers inherit
    logging.getLogger().addHandler(said)
    try:
        with caplog.at_level(logging.WARNING):
            two = write_table(table, tmp_path / "two" / f"verdicts{suffix}", export="verdicts")
    finally:
        logging.getLogger().removeHandler(said)
        said.close()
    assert two.read_bytes() == one.read_bytes()
    assert (tmp_path / "said.log").read_text().count("column reasons_zh longer than") == 1
    cut = [r for r in caplog.records if "column reasons_zh longer than" in r.getMessage()]
    assert len(cut) == 1 and "rows 9" in cut[0].getMessage()
    assert cut[0].process != os.getpid()  # it came from a worker
    assert streaming._FORKED is None


class _FailingPool:
    """A process pool that cannot start (``start``), or whose blocks from 2 on are lost."""

    def __init__(self, *args, start: bool = True, **kwargs):
        if not start:
            raise OSError("[Errno 12] Cannot allocate memory")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, i):
        done = Future()
        if i >= 2:
            done.set_exception(BrokenProcessPool("a worker was killed"))
        else:
            done.set_result(fn(i))
        return done


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux")
@pytest.mark.parametrize("start", [False, True])
def test_workers_that_fail_leave_the_rest_to_the_job(tmp_path, monkeypatch, caplog, start):
    """No fork (memory), or a worker killed mid-file: the job encodes the blocks it does not
    have itself, and the file is whole."""
    table = _table(14)
    monkeypatch.setattr(streaming, "BLOCK", 3)
    one = write_table(table, tmp_path / "one" / "v.geojson")
    monkeypatch.setattr(streaming, "PARALLEL_ROWS", 0)
    monkeypatch.setattr(streaming, "local_workers", lambda: 2)
    monkeypatch.setattr(streaming, "ProcessPoolExecutor", functools.partial(_FailingPool,
                                                                            start=start))
    with caplog.at_level(logging.WARNING):
        two = write_table(table, tmp_path / "two" / "v.geojson")
    assert two.read_bytes() == one.read_bytes()
    said = [r.getMessage() for r in caplog.records if "encoding workers failed" in r.getMessage()]
    assert len(said) == 1 and f"remaining {5 - 2 * start} block(s)" in said[0]


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_killed_job_leaves_no_encoding_worker(tmp_path):
    """The job's process killed (SIGKILL) while its workers encode: they exit by themselves."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from pathlib import Path
        import pandas as pd
        from agri_3s.outputs import streaming

        def slow(rows):
            time.sleep(0.2)
            return rows

        streaming.BLOCK, streaming.PARALLEL_ROWS = 10, 0
        blocks = streaming.csv_blocks(pd.DataFrame({"a": range(10_000)}), slow)
        streaming.write_blocks(blocks, Path(sys.argv[1]), workers=2)
    """))
    job = subprocess.Popen([sys.executable, str(script), str(tmp_path / "a.csv")],
                           stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(job.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    deadline = time.monotonic() + 10
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _running(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left


def test_csv_is_pandas_csv_of_the_table(tmp_path, monkeypatch):
    """Against pandas writing the whole (formula-neutralised) frame in one call."""
    monkeypatch.setattr(streaming, "BLOCK", 4)
    table = _table()
    path = write_table(table, tmp_path / "t.csv")
    frame = pd.DataFrame(table.drop(columns="geometry"))
    frame["reasons_zh"] = frame["reasons_zh"].where(~frame["reasons_zh"].str.startswith("="),
                                                    "'" + frame["reasons_zh"])
    expected = frame.to_csv(index=False, date_format="%Y-%m-%d", lineterminator="\r\n")
    assert path.read_bytes() == ("\ufeff" + expected).encode("utf-8")


def test_geojson_blocks_join_into_one_collection(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK", 4)
    table = _table()
    doc = json.loads(write_table(table, tmp_path / "t.geojson").read_text(encoding="utf-8"))
    assert [f["properties"]["parcel_id"] for f in doc["features"]] == table["parcel_id"].tolist()
    assert doc["features"][4]["properties"]["emergence_date"] == "2025-03-05"
    empty = json.loads(write_table(table.iloc[:0], tmp_path / "e.geojson").read_text())
    assert empty["features"] == [] and empty["name"] == "e"


def test_geojson_features_hold_their_own_properties_and_shapes(tmp_path, monkeypatch):
    """Text that looks like the encoder's own record boundaries, a column named like its row
    key, line separators, a missing shape and a table with no properties: every feature
    parses back to its row's values and shape."""
    monkeypatch.setattr(streaming, "BLOCK", 2)
    tricky = ['},{"__row__":1,"x":2}', '},{"__row___":1,', "a\u2028b\nc", None, "}", "{"]
    table = gpd.GeoDataFrame(
        {"note": tricky, "__row__": [f"r{i}" for i in range(6)], "v": [0.1, None, 2, 3, 4, 5]},
        geometry=[shapely.Point(i, -i) if i != 3 else None for i in range(6)], crs=4326)
    doc = json.loads(write_table(table, tmp_path / "t.geojson").read_text(encoding="utf-8"))
    assert [f["properties"]["note"] for f in doc["features"]] == tricky
    assert [f["properties"]["__row__"] for f in doc["features"]] == table["__row__"].tolist()
    assert [f["properties"]["v"] for f in doc["features"]] == [0.1, None, 2, 3, 4, 5]
    assert [f["geometry"] for f in doc["features"]] == [
        None if i == 3 else {"type": "Point", "coordinates": [i, -i]} for i in range(6)]
    bare = json.loads(write_table(table[["geometry"]], tmp_path / "b.geojson").read_text())
    assert [f["properties"] for f in bare["features"]] == [{}] * 6
    assert bare["features"][5]["geometry"]["coordinates"] == [5, -5]


class Killed(Exception):
    pass


@pytest.mark.parametrize("suffix", [".csv", ".geojson"])
def test_an_interrupted_write_goes_on_from_its_last_block(tmp_path, monkeypatch, suffix):
    """Killed while encoding block 3 of 4 (rows 9–11), the rerun with the same key encodes only
    blocks 3 and 4 and gives the bytes of an uninterrupted write; another key starts over."""
    monkeypatch.setattr(streaming, "BLOCK", 3)
    table = _table(12)
    expected = write_table(table, tmp_path / "once" / f"v{suffix}").read_bytes()
    parts = tmp_path / "parts"
    encoded = []
    real = streaming.Blocks.__init__

    def counting(self, head, block, count, tail):
        def tracked(i):
            encoded.append(i)
            if kill_at is not None and i == kill_at:
                raise Killed
            return block(i)
        real(self, head, tracked, count, tail)

    monkeypatch.setattr(streaming.Blocks, "__init__", counting)
    kill_at = 2
    with pytest.raises(Killed):
        write_table(table, tmp_path / "run1" / f"v{suffix}", resume=(parts, "k1"))
    assert (parts / f"v{suffix}.partial").exists() and not (tmp_path / "run1" / f"v{suffix}").exists()
    encoded.clear()
    kill_at = None
    path = write_table(table, tmp_path / "run2" / f"v{suffix}", resume=(parts, "k1"))
    assert encoded == [2, 3] and path.read_bytes() == expected
    assert list(parts.iterdir()) == []  # the partial file became the output
    # a torn tail past the last recorded block (the kill came mid-write) is cut off
    kill_at = 3
    with pytest.raises(Killed):
        write_table(table, tmp_path / "run3" / f"v{suffix}", resume=(parts, "k2"))
    with open(parts / f"v{suffix}.partial", "ab") as f:
        f.write(b"half a block")
    encoded.clear()
    kill_at = None
    assert write_table(table, tmp_path / "run4" / f"v{suffix}", resume=(parts, "k2")
                       ).read_bytes() == expected and encoded == [3]
    # the same partial under another key (another job's table) is not taken
    kill_at = 3
    with pytest.raises(Killed):
        write_table(table, tmp_path / "run5" / f"v{suffix}", resume=(parts, "k3"))
    encoded.clear()
    kill_at = None
    assert write_table(table, tmp_path / "run6" / f"v{suffix}", resume=(parts, "other")
                       ).read_bytes() == expected and encoded == [0, 1, 2, 3]

    # a rerun whose blocks are encoded by worker processes goes on from the last block alike
    kill_at = 2
    with pytest.raises(Killed):
        write_table(table, tmp_path / "run7" / f"v{suffix}", resume=(parts, "k4"))
    kill_at = None
    monkeypatch.setattr(streaming, "PARALLEL_ROWS", 0)
    monkeypatch.setattr(streaming, "local_workers", lambda: 2)
    assert write_table(table, tmp_path / "run8" / f"v{suffix}", resume=(parts, "k4")
                       ).read_bytes() == expected
