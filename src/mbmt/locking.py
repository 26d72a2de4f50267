"""Locks that keep two runs from writing the same outputs at once.

Snakemake locks its working directory against a second Snakemake, and DVC its repository against
a second DVC, but neither sees the other. Two locks close the gap:

- Every stage command (mbmt.cli) holds an exclusive lock on what it writes (``stage_lock``): a
  second command that would write the same files, whichever front end started it, fails at once
  with a message naming the holder. The lock is ``flock(2)`` on a file in runs/.locks/: the kernel
  releases it when its process ends, however it ends (kill -9 included), so a crashed run never
  leaves a stale lock behind; the pid and command written in the file only serve the message.
  (A pid file checked with kill(pid, 0) would instead need stale-lock detection, and a reused pid
  would keep it locked.) On NFS, Linux implements flock with the server's byte-range locks, so
  it also holds across the nodes of a cluster.
- A whole Snakemake run registers every output of the DAG as being written, in DVC's own lock
  table (``dvc_write_lock``). DVC deletes a stage's outputs before running its command, so a
  stage-level lock alone would come too late; registered this way, `dvc repro` (and every DVC
  command that reads or writes an output) refuses to start while Snakemake runs, naming its pid
  and command, and Snakemake refuses to start while DVC is writing an output.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from mbmt import paths
from mbmt.errors import MbmtError

LOCK_DIR = paths.RUNS_DIR / ".locks"
FRONT_ENDS = ("snakemake", "dvc")


class LockError(MbmtError):
    """Another process is writing the same outputs."""


def stage_lock(stage: str, model: str | None = None, seed: int | None = None) -> tuple[str, list[Path]] | None:
    """The lock a stage command holds: its name and the paths it guards, or None (reads only).

    A model's training and evaluation with one seed share one lock: evaluate reads what train
    writes, and both write under the model's name and seed (models/<m>/seed<S>/, its runs/ state,
    metrics/<m>/seed<S>.*). Other seeds of the same model run alongside (their runs/ state lies in
    other run directories: the seed is part of the run's fingerprint).
    """
    if stage in ("train", "evaluate"):
        return f"model-{model}-seed{seed}", [paths.run_dir(model, seed), paths.RUNS_DIR / model,
                                             paths.metrics_file(model, seed), paths.per_image_file(model, seed)]
    # weights takes none: its jobs (one per backbone) run side by side, and each file it writes is
    # replaced atomically with the same bytes whoever writes it.
    guarded = {"fetch": paths.RAW_DIR, "preprocess": paths.PROCESSED_DIR, "report": paths.REPORTS_DIR}.get(stage)
    return (str(guarded).replace("/", "-"), [guarded]) if guarded else None


def describe_process(pid: int | None = None) -> dict:
    """pid, command line and the front end (the nearest snakemake or dvc ancestor) of a process."""
    import psutil

    process = psutil.Process(pid)
    info = {"pid": process.pid, "command": _command(process.cmdline()), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for parent in process.parents():
        try:
            command = _command(parent.cmdline())
        except psutil.Error:
            continue
        if command.split(" ", 1)[0] in FRONT_ENDS:
            info["front_end"] = {"pid": parent.pid, "command": command}
            break
    return info


def _command(argv: list[str]) -> str:
    """A command line as typed: the program's name, not its path; a Python interpreter dropped."""
    argv = list(argv)
    if argv and Path(argv[0]).name.startswith("python") and len(argv) > 1:
        argv = argv[2:] if argv[1] == "-m" else argv[1:]
    if argv:
        argv[0] = Path(argv[0]).name
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def holder_text(info: dict) -> str:
    if not info:
        return "another process (it has not written its pid yet)"
    text = f"pid {info['pid']} (`{info['command']}`"
    if "front_end" in info:
        text += f", run by `{info['front_end']['command']}`, pid {info['front_end']['pid']}"
    return text + f") on {info['host']} since {info['since']}"


class OutputLock:
    """An exclusive, non-blocking lock on the outputs ``guarded``, held by this process."""

    def __init__(self, name: str, guarded: Iterable[str | os.PathLike], lock_dir: Path = LOCK_DIR):
        self.path = Path(lock_dir) / f"{name}.lock"
        self.guarded = [str(p) for p in guarded]
        self._file = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The file is never deleted: a process that removed it while another waited to open it
        # would leave two processes holding locks on two different files.
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            try:
                holder = json.loads(file.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            file.close()
            raise LockError(
                f"{', '.join(self.guarded)} {'is' if len(self.guarded) == 1 else 'are'} being written by "
                f"{holder_text(holder)}; wait for it to finish or stop it, then run again "
                f"(lock: {self.path}; two runs, e.g. `snakemake` and `dvc repro`, must not write the same outputs)"
            ) from None
        # Ours: what the file says about an earlier holder (a process that died) is stale.
        file.seek(0)
        file.truncate()
        file.write(json.dumps(describe_process()))
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.truncate(0)
            self._file.close()  # closing the last descriptor releases the flock
            self._file = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(name: str, lock_dir: Path = LOCK_DIR) -> dict | None:
    """Who holds lock ``name`` now (what it wrote in the lock file), or None if nobody does.

    Reads the file without locking it: a probe with flock would make a concurrent acquire fail.
    A holder empties the file when it releases the lock; one that was killed left its pid behind,
    which no longer runs.
    """
    import psutil

    path = Path(lock_dir) / f"{name}.lock"
    try:
        info = json.loads(path.read_text() or "null")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return info if info and psutil.pid_exists(info["pid"]) else None


@contextlib.contextmanager
def dvc_write_lock(root: Path, outputs: Iterable[str | os.PathLike], command: str) -> Iterator[None]:
    """Register ``outputs`` (relative to the DVC repository ``root``) as written by this process
    in DVC's lock table, .dvc/tmp/rwlock, for the duration of the block.

    DVC checks that table before it reads or writes an output and refuses, naming our pid and
    ``command``; it drops the entries of a process that no longer exists. The table's format is
    DVC's (dvc.rwlock, the version pinned in pyproject.toml).
    """
    import tqdm
    from dvc.lock import LockError as DvcLockError
    from dvc.repo import Repo
    from dvc.rwlock import rwlock

    # DVC's lock opens a (hidden) tqdm bar, whose first instance starts tqdm's monitor thread; inside
    # Snakemake's onsuccess hook that Thread.start() was seen to hang for good. The bar needs no monitor.
    tqdm.tqdm.monitor_interval = 0

    with Repo(str(root)) as repo:
        tmp_dir, fs, hardlink = repo.tmp_dir, repo.fs, repo.config["core"].get("hardlink_lock", False)
    os.makedirs(tmp_dir, exist_ok=True)
    written = [str(Path(root).resolve() / p) for p in outputs]
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(rwlock(tmp_dir, fs, command, [], written, hardlink))
        except DvcLockError as exc:
            raise LockError(_dvc_blockers(str(exc), root)) from None
        yield


def _dvc_blockers(message: str, root: Path) -> str:
    """DVC's "'PATH' is busy, it is being blocked by: (PID n): CMD ..." as one line."""
    busy = re.search(r"'(.+?)' is busy", message)
    path = os.path.relpath(busy[1], Path(root).resolve()) if busy else "an output"
    holders = dict.fromkeys(f"pid {pid} (`{_command(cmd.split())}`)" for pid, cmd in re.findall(r"\(PID (\d+)\): (.+)", message))
    return (f"DVC is using this project's outputs ({path}): {', '.join(holders) or message}; "
            "wait for it to finish or stop it, then run again")
