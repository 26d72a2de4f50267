"""Two runs on one checkout: the output locks (mbmt.locking) and what each front end does when
the other is running. The end-to-end tests run the real `snakemake`, `dvc repro` and `mbmt`
commands in a git + DVC copy of the project on the tiny preset; the first run's training holds
its lock until the second front end has been checked (tests/hold_lock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import subprocesses
from test_workflow_project import ENV, copy_project, init_git_dvc, run

from mbmt.locking import LOCK_DIR, LockError, OutputLock, holder, stage_lock

TARGET = "models/st_ss/seed0/model.pt"
SNAKEMAKE = ["snakemake", TARGET, "--cores", "2", "--resources", "gpu=1"]
DVC_REPRO = ["dvc", "repro", "train@st_ss-0"]
LOCKED = "models/st_ss/seed0, runs/st_ss, metrics/st_ss/seed0.json, metrics/st_ss/seed0.images.npz"


# --- the lock itself -------------------------------------------------------------------------------

def test_a_second_holder_is_refused_with_the_first_ones_pid_and_command(tmp_path):
    with OutputLock("model-st_ss", ["models/st_ss"], tmp_path):
        info = holder("model-st_ss", tmp_path)
        assert info["pid"] == os.getpid()
        with pytest.raises(LockError) as refused:
            OutputLock("model-st_ss", ["models/st_ss"], tmp_path).acquire()
        assert f"models/st_ss is being written by pid {os.getpid()} (`" in str(refused.value)
        assert info["command"] in str(refused.value)
        OutputLock("model-st_de", ["models/st_de"], tmp_path).acquire()  # another model: another lock
    assert holder("model-st_ss", tmp_path) is None


def test_the_kernel_releases_the_lock_of_a_killed_process(tmp_path):
    """kill -9 runs no cleanup code: the flock goes with the process, so nothing is left stale."""
    code = ("import sys, time; from mbmt.locking import OutputLock; "
            f"lock = OutputLock('data-raw', ['data/raw'], {str(tmp_path)!r}); lock.acquire(); print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert child.stdout.readline() == "held\n"
        with pytest.raises(LockError, match=f"being written by pid {child.pid} "):
            OutputLock("data-raw", ["data/raw"], tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    with OutputLock("data-raw", ["data/raw"], tmp_path):
        assert holder("data-raw", tmp_path)["pid"] == os.getpid()


def test_a_lock_file_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "reports.lock").write_text(json.dumps({"pid": dead.pid, "command": "mbmt report", "host": "h", "since": "t"}))
    assert holder("reports", tmp_path) is None
    with OutputLock("reports", ["reports"], tmp_path):
        assert holder("reports", tmp_path)["pid"] == os.getpid()


def test_stage_commands_lock_what_they_write():
    """One lock per model and seed: a model's seeds train side by side."""
    assert stage_lock("train", "st_ss", 0) == stage_lock("evaluate", "st_ss", 0) != stage_lock("train", "st_de", 0)
    assert stage_lock("train", "st_ss", 0)[0] != stage_lock("train", "st_ss", 1)[0]
    assert stage_lock("train", "st_ss", 1)[1] == [Path("models/st_ss/seed1"), Path("runs/st_ss"),
                                                  Path("metrics/st_ss/seed1.json"), Path("metrics/st_ss/seed1.images.npz")]
    assert {stage_lock(s)[0] for s in ("fetch", "preprocess", "report")} == {"data-raw", "data-processed", "reports"}
    assert stage_lock("predict") is None and stage_lock("config") is None


def test_a_stage_command_refuses_while_its_outputs_are_locked(project, capsys):
    from mbmt.cli import main

    with OutputLock(*stage_lock("train", "st_ss", 0)):
        assert main(["evaluate", "st_ss"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mbmt evaluate: error: {LOCKED} are being written by pid {os.getpid()}")
    assert err.count("\n") == 1


# --- the two front ends ----------------------------------------------------------------------------
# The first front end's training holds st_ss's lock until the test releases it (tests/hold_lock), after
# the second front end was checked: the second provably meets the first, however long either takes.

HOLD_LOCK = Path(__file__).resolve().parent / "hold_lock"
HELD_LOCK = stage_lock("train", "st_ss", 0)[0]  # model-st_ss-seed0
FIRST_RUN_TIMEOUT = 300


@pytest.fixture
def project(tmp_path) -> Path:
    """The tiny project, committed to git and DVC."""
    root = copy_project(tmp_path / "project")
    init_git_dvc(root)
    return root


@pytest.fixture
def first(project, tmp_path):
    """Factory: ``first(args)`` starts the first front end in ``project``; its `mbmt train st_ss`
    holds st_ss's lock until the test calls ``finish(process)``. Whatever still runs when the test ends is
    released and killed, with its jobs."""
    started = []

    def start(args: list[str]) -> subprocess.Popen:
        log = tmp_path / "first.log"
        env = {**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(HOLD_LOCK), ENV.get("PYTHONPATH")])),
               "MBMT_TEST_HOLD_LOCK": HELD_LOCK, "MBMT_TEST_RELEASE": str(tmp_path / "release")}
        with log.open("w") as out:
            process = subprocesses.start(args, FIRST_RUN_TIMEOUT, cwd=project, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        process.log, process.release = log, tmp_path / "release"
        started.append(process)
        return process

    yield start
    for process in started:
        process.release.touch()
        if process.poll() is None:
            subprocesses.stop(process)


def wait_for_training(root: Path, process: subprocess.Popen, front_end: str) -> dict:
    """The holder of st_ss's lock once ``process`` trains it (started by ``front_end``)."""
    deadline = time.monotonic() + FIRST_RUN_TIMEOUT
    while time.monotonic() < deadline:
        info = holder(HELD_LOCK, root / LOCK_DIR)
        if info and info.get("front_end", {}).get("command", "").startswith(front_end):
            return info
        if process.poll() is not None:
            pytest.fail(f"{front_end} ended before training st_ss:\n{process.log.read_text()[-3000:]}")
        time.sleep(0.2)
    subprocesses.stop(process)
    pytest.fail(f"{front_end} did not start training st_ss in {FIRST_RUN_TIMEOUT} s:\n{process.log.read_text()[-3000:]}")


def finish(process: subprocess.Popen) -> str:
    """Release the first run, which the second met holding its lock, and wait for it to end."""
    assert process.poll() is None, f"the first run ended before it was released:\n{process.log.read_text()[-3000:]}"
    process.release.touch()
    returncode = subprocesses.wait(process, process.log.read_text)
    output = process.log.read_text()
    assert returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_a_second_snakemake_refuses_and_nothing_is_lost(project, first):
    run_one = first(SNAKEMAKE)
    wait_for_training(project, run_one, "snakemake")
    second = run(SNAKEMAKE, project, check=False)
    assert second.returncode != 0
    assert "cannot be locked" in second.stdout + second.stderr
    # A part of the DAG is not recorded for DVC (what the rest of dvc.lock would say is unknown).
    assert "Not recorded for DVC: this run built only some targets" in finish(run_one)
    assert (project / TARGET).is_file() and (project / "data/processed/train.h5").is_file()
    assert "Nothing to be done" in run(["snakemake", TARGET, "-n"], project).stdout


@pytest.mark.slow
def test_dvc_refuses_while_snakemake_runs(project, first):
    """`dvc repro` stops before it deletes anything, naming the Snakemake run; a stage command
    started by hand stops at the lock, naming the command that holds it; Snakemake finishes."""
    run_one = first(SNAKEMAKE)
    training = wait_for_training(project, run_one, "snakemake")
    dvc = run(DVC_REPRO, project, check=False)
    assert dvc.returncode != 0
    assert f"(PID {run_one.pid}): snakemake {TARGET}" in dvc.stderr
    by_hand = run(["mbmt", "train", "st_ss"], project, check=False)
    assert by_hand.returncode == 2
    assert by_hand.stderr.startswith(
        f"mbmt train: error: {LOCKED} are being written by pid {training['pid']} "
        f"(`mbmt train st_ss --seed 0`, run by `snakemake {TARGET}")
    finish(run_one)
    assert "Nothing to be done" in run(["snakemake", TARGET, "-n"], project).stdout


@pytest.mark.slow
def test_snakemake_refuses_while_dvc_repro_runs(project, first):
    run_one = first(DVC_REPRO)
    wait_for_training(project, run_one, "dvc")
    second = run(SNAKEMAKE, project, check=False)
    assert second.returncode != 0
    output = second.stdout + second.stderr
    assert "DVC is using this project's outputs (models/st_ss/seed0/" in output
    assert f"pid {run_one.pid} (`dvc repro train@st_ss-0`); wait for it to finish" in output
    finish(run_one)
    assert run(["dvc", "status", "train@st_ss-0"], project).stdout.strip() == "Data and pipelines are up to date."
