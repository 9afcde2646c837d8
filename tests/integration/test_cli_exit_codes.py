"""README's exit codes, as an operator's shell sees them: 0 done, 1 failed, 2 bad input, 130
interrupted. Ctrl-C: the real ``agri3s`` process gets SIGINT while it waits on an imagery service
and prints one line, exits 130 (128 + SIGINT, what shells report) and shows no traceback;
nothing is published."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from agri_3s import pipeline
from agri_3s.cli import main
from agri_3s.errors import ImageryError, InputError

SEASON = "2024-10-01/2025-06-15"
SAID = "interrupted (Ctrl-C). Run the same command again"


def _parcels(tmp_path: Path) -> Path:
    path = tmp_path / "parcels.geojson"
    gpd.GeoDataFrame({"parcel_id": ["A", "B"], "crop": "winter_wheat", "declared_area_mu": 1.3},
                     geometry=[shapely.box(116.3000, 37.4000, 116.3010, 37.4008),
                               shapely.box(116.3020, 37.4000, 116.3030, 37.4008)],
                     crs=4326).to_file(path)
    return path


class _SilentService:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a job asking it
    for imagery waits until it is interrupted. ``asked`` is set once a connection came in."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.asked = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.conns.append(conn)
            self.asked.set()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_sigint_mid_job_prints_one_line_and_exits_130(tmp_path):
    pytest.importorskip("pystac_client")
    service = _SilentService()
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "agri_3s.cli", "underwrite", str(_parcels(tmp_path)), "--imagery",
         f"stac:http://127.0.0.1:{service.port}/", "--season", SEASON, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert service.asked.wait(timeout=120), "the job never asked the imagery service"
        time.sleep(0.2)  # the request is sent: the child is blocked reading the answer
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        service.close()
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout and "KeyboardInterrupt" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(SAID), stderr
    assert not (out / "verdicts.csv").exists()


#: What the job raises → README's exit code and the lines on stderr (written out by hand).
OUTCOMES = {
    "interrupted": (KeyboardInterrupt(), 130, [
        "interrupted (Ctrl-C). Run the same command again: underwrite, assess and run resume "
        "from their checkpoints."]),
    "imagery service down": (ImageryError("STAC API http://x: search failed after 5 retries."),
                             1, ["failed: STAC API http://x: search failed after 5 retries."]),
    "bad input": (InputError("no acquisition folder.", source="s2", fix="point --imagery at "
                             "it"), 2, ["bad input: s2: no acquisition folder.",
                                        "Fix: point --imagery at it"]),
}


@pytest.mark.parametrize("case", OUTCOMES, ids=list(OUTCOMES))
def test_what_a_job_raises_becomes_readmes_exit_code(case, tmp_path, monkeypatch, capsys):
    raised, code, said = OUTCOMES[case]

    def job(*args, **kwargs):
        raise raised

    monkeypatch.setattr(pipeline, "underwrite", job)
    got = main(["underwrite", str(_parcels(tmp_path)), "--imagery", "local:x", "--season",
                SEASON, "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert got == code
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.strip().splitlines() == said


def test_a_job_done_exits_0(tmp_path, capsys):
    assert main(["parcels", "check", str(_parcels(tmp_path)), "--out", str(tmp_path / "o")]) == 0
    assert "Traceback" not in capsys.readouterr().err
