"""A job's outputs published as one set: a lock on ``--out``, a staging folder, one swap.

A job writing to ``--out DIR`` works in ``.DIR.agri3s`` beside it (the *work folder*):

* ``lock`` — held with ``flock`` while the job runs; the kernel releases it when the process
  ends, however it ends, so a crashed job never leaves the folder locked. It names the job, its
  pid, host and start time, which a second job on ``DIR`` is told when it is refused.
* ``parts/`` — the partitions' checkpoints (:mod:`agri_3s.partition_job`), kept when a job stops
  before publishing so that the same command resumes.
* ``staging/`` — the new outputs, written under their final names (``run.json`` last).

Publishing swaps ``staging`` and ``DIR`` with one ``renameat2(RENAME_EXCHANGE)`` (Linux), so
a reader sees the whole old set or the whole new set, never a mix; where the exchange is not
available, two renames, between which ``DIR`` is briefly absent (never mixed). Entries of the
old ``DIR`` that were not the old run's outputs (the user's own files, an ``eval/`` folder)
are moved into the new one, and the work folder is removed. A publication cut short by a kill
is finished (or undone) by the next job on ``DIR``, before anything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .export import (
    atomic_path,
    file_sha256,
    fsync_path,
    make_folder,
    remove_stale_temporaries,
)

Log = Callable[[str], None]
JOURNAL = "publish.json"


def work_folder(out: str | Path) -> Path:
    """The work folder of a job on ``out``: ``.NAME.agri3s`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.agri3s"


@dataclass
class RunFolder:
    """Where a job writes: ``staging`` (its outputs), ``parts`` (checkpoints), under ``work``."""

    out: Path
    work: Path
    lock: _Lock
    published: bool = False

    @property
    def staging(self) -> Path:
        return self.work / "staging"

    @property
    def parts(self) -> Path:
        return self.work / "parts"


@dataclass
class _Lock:
    fd: int
    path: Path
    info: dict


# --- the lock --------------------------------------------------------------------------------

def acquire_lock(path: Path, job: str, out: Path) -> _Lock:
    """Hold the lock file ``path`` for this process, or raise :class:`InputError` naming the
    job that holds it (its pid, host and start time)."""
    import fcntl

    for attempt in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_info(fd)
            os.close(fd)
            if not holder and attempt < 99:  # its holder has not written its name yet
                time.sleep(0.02)
                continue
            raise InputError(
                f"another agri3s job is writing to this folder: {holder.get('job', '?')} "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                f"{holder.get('started', '?')}).", source=out,
                fix="wait until it has finished or give another --out (a job that crashed "
                    "or was killed does not keep the folder locked)") from None
        try:  # the file may have been removed by a job that just finished: lock the new one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        info = {"job": job, "pid": os.getpid(), "host": platform.node(),
                "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)}
        data = json.dumps(info).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return _Lock(fd, path, info)
    raise InputError("could not take the lock of the output folder.", source=out,
                     fix="retry; if it persists, check that the folder is not on a file "
                         "system without file locks")


def _read_info(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 65536, 0) or b"{}")
    except ValueError:
        return {}


def _release(lock: _Lock, remove: bool) -> None:
    if remove:
        lock.path.unlink(missing_ok=True)  # while still held: nobody locks a dying file
    os.close(lock.fd)


# --- the run ---------------------------------------------------------------------------------

@contextlib.contextmanager
def open_run(out: str | Path, *, job: str, restart: bool = False,
             log: Log | None = None) -> Iterator[RunFolder]:
    """Lock ``out`` for a job and give it a fresh staging folder; publish with
    :func:`publish`. A job that stops before publishing keeps its checkpoints (the same
    command resumes) and leaves the old outputs as they were.

    Examples
    --------
    >>> with open_run("out/wheat", job="underwrite") as run:     # doctest: +SKIP
    ...     write_table(table, run.staging / "verdicts.csv")
    ...     publish(run)
    """
    say = log or (lambda _msg: None)
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()
    if out.exists() and not out.is_dir():
        raise InputError("--out is a file, not a folder.", source=out,
                         fix="give a folder (it is created if missing)")
    work = work_folder(out)
    make_folder(out.parent)  # a file in the way of --out: bad input naming it
    make_folder(work)
    run = RunFolder(out, work, acquire_lock(work / "lock", job, out))
    try:
        _recover(run, say)
        remove_stale_temporaries(work)
        if out.is_dir():
            remove_stale_temporaries(out)  # what older versions left when killed
        if restart and run.parts.exists():
            say("--restart: the checkpoints of the earlier run are discarded.")
            shutil.rmtree(run.parts)
        shutil.rmtree(run.staging, ignore_errors=True)
        run.staging.mkdir()
        yield run
    finally:
        if not run.published:
            shutil.rmtree(run.staging, ignore_errors=True)
            keep = run.parts.is_dir() and any(run.parts.iterdir())
            if not keep:
                shutil.rmtree(run.parts, ignore_errors=True)
            _release(run.lock, remove=not keep)
            if not keep:
                with contextlib.suppress(OSError):
                    work.rmdir()


def publish(run: RunFolder) -> None:
    """Put the staging folder's complete set (``run.json`` written) in place of ``run.out``
    at once, keep the user's own entries of the old folder, and remove the work folder."""
    staging, out = run.staging, run.out
    if not (staging / "run.json").is_file():
        raise RuntimeError("publish() before run.json was written")
    # run.json's hashes tell a reader whether files survived a power cut; the big files are
    # not forced to disk (that would cost more than writing them), the manifest and the
    # folders are
    fsync_path(staging / "run.json")
    fsync_path(staging)
    with atomic_path(run.work / JOURNAL, sync=True) as tmp:
        tmp.write_text(json.dumps({"run_json_sha256": file_sha256(staging / "run.json")}))
    old = None
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.rename(staging, out)  # (onto an empty folder: replaces it)
    elif exchange(staging, out):
        old = staging  # now holds the old set
    else:
        os.rename(out, run.work / "old")
        os.rename(staging, out)
        old = run.work / "old"
    fsync_path(out.parent)
    if old is not None:
        _carry_over(old, out)
        shutil.rmtree(old)
    (run.work / JOURNAL).unlink()
    shutil.rmtree(run.parts, ignore_errors=True)
    remove_stale_temporaries(run.work)
    run.published = True
    _release(run.lock, remove=True)
    with contextlib.suppress(OSError):
        run.work.rmdir()


def _recover(run: RunFolder, say: Log) -> None:
    """Finish or undo a publication that a kill cut short (under the lock, before anything)."""
    journal, old = run.work / JOURNAL, run.work / "old"
    if not journal.exists():
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        new = json.loads(journal.read_text())["run_json_sha256"]
    except (OSError, ValueError, KeyError):
        new = None
    out, staging = run.out, run.staging

    def holds_new(folder: Path) -> bool:
        f = folder / "run.json"
        return new is not None and f.is_file() and file_sha256(f) == new

    if holds_new(out):  # the new set is in place: finish moving the user's entries
        left = old if old.exists() else staging if staging.exists() else None
        if left is not None:
            _carry_over(left, out)
            shutil.rmtree(left)
        say(f"the interrupted job's outputs had been published in {out}; finished that.")
    elif not out.exists() and old.exists():  # cut between the two renames
        if holds_new(staging):
            os.rename(staging, out)
            _carry_over(old, out)
            shutil.rmtree(old)
            say(f"finished publishing the interrupted job's outputs in {out}.")
        else:
            os.rename(old, out)
    journal.unlink(missing_ok=True)
    shutil.rmtree(old, ignore_errors=True)


def _carry_over(old: Path, new: Path) -> None:
    """Move the entries of the replaced folder ``old`` that were not its run's outputs (the
    user's own files and folders) into ``new``, unless ``new`` has an entry of that name."""
    ours = {"run.json"}
    try:
        manifest = json.loads((old / "run.json").read_text(encoding="utf-8"))
        for name, entry in manifest.get("outputs", {}).items():
            path = Path(str(entry.get("path", name)) if isinstance(entry, dict) else name)
            ours.add(path.name if path.is_absolute() else path.parts[0])
            ours.add(Path(name).parts[0])
    except (OSError, ValueError, AttributeError, IndexError):
        pass
    ours |= {f"{Path(n).stem}.schema.json" for n in list(ours)}
    for entry in old.iterdir():
        if entry.name in ours or os.path.lexists(new / entry.name):
            continue
        os.rename(entry, new / entry.name)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
