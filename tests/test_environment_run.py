"""Drift from the lock, end to end: an installed package at another version than the lock stops
Snakemake and `dvc repro` before their first job, with one message naming it, both versions and the
fix; with MBMT_ENV_DRIFT=allow the run goes on, and the training record and the metrics file say so.

The drift is made without touching the environment: a metadata folder of numpy at another version,
first on PYTHONPATH, is what importlib.metadata (and so the check) sees as installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mbmt.environment import REINSTALL
from test_workflow_project import copy_project, init_git_dvc, run

pytestmark = pytest.mark.slow

DRIFT = "numpy 2.4.5 (locked 2.4.6)"


def drifted(folder: Path) -> dict[str, str]:
    info = folder / "numpy-2.4.5.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 2.4.5\n")
    return {"PYTHONPATH": str(folder)}


def assert_stopped(result, root: Path) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the installed environment differs from the lock" in output and DRIFT in output
    assert REINSTALL in output and "MBMT_ENV_DRIFT=allow" in output
    assert not (root / "data").exists() and not (root / "logs").exists()  # no job ran


def test_drift_stops_both_front_ends_and_the_override_is_recorded(tmp_path):
    root = copy_project(tmp_path / "project")
    init_git_dvc(root)
    env = drifted(tmp_path / "site")
    assert_stopped(run(["snakemake", "--cores", "1"], root, check=False, env=env), root)
    assert_stopped(run(["dvc", "repro"], root, check=False, env=env), root)

    allow = {**env, "MBMT_ENV_DRIFT": "allow"}
    run(["snakemake", "--cores", "1", "data/raw"], root, env=allow)  # goes on: the first job runs
    assert (root / "data" / "raw").is_dir()
    run(["dvc", "repro", "evaluate@st_ss-0"], root, env=allow)
    metrics = json.loads((root / "metrics" / "st_ss" / "seed0.json").read_text())
    for record in (metrics["context"]["provenance"], metrics["context"]["training_provenance"]):
        assert record["environment"]["matches_lock"] is False and record["environment"]["override"] is True
        assert record["environment"]["drift"] == [DRIFT]
