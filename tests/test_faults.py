"""Faults end to end, through the real front ends in a git + DVC copy of the project (tiny preset).

One model (MT-Net) and its evaluation, trained once without interruption by Snakemake (the
module-scoped baseline); each test works on a copy of that project:

- Snakemake or `dvc repro` killed with SIGKILL during the training job, then run again as the
  README says: the run resumes and ends with the baseline's weights and metrics;
- an edit of the training code (a scaled depth loss in the copy's src/mbmt/losses.py) trains a
  fresh run, with new weights and metrics, through either front end; a docs edit re-runs nothing;
- a diverging training (lr 1e8, admitted by lifting the copy's schema bound) stops with one clear
  error in the job's log; nothing is published.

The copy's commands import the copy's src/ (PYTHONPATH), so its code edits take effect.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_resume import epochs_trained
from test_workflow_project import (ENV, REPO, SNAKEMAKE_FAST, commit, copy_of, copy_project, dry_run_jobs, init_git_dvc,
                                   run)

from mbmt.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

pytestmark = pytest.mark.slow

MODEL = "mtnet"  # multi-task: scaling one task's loss changes the weights (Adam alone would not see a scale)
TARGETS = [f"models/{MODEL}/seed0/model.pt", f"metrics/{MODEL}/seed0.json"]
DVC_TARGET = f"evaluate@{MODEL}-0"
STAGES = {f"train@{MODEL}-0", f"evaluate@{MODEL}-0"}
# Epochs long enough (12 steps) that a process killed when epoch 1's checkpoint appears is inside epoch 2.
SETTINGS = {"epochs": 3, "train_size": 24}
LOSS_EDIT = ("error = torch.where(valid, (pred.float() - target).abs(), 0.0)",
             "error = 2.0 * torch.where(valid, (pred.float() - target).abs(), 0.0)")


def env_of(root: Path) -> dict[str, str]:
    """The environment of the copy's commands: its own src/ first."""
    return {"PYTHONPATH": str(root / "src")}


def snakemake(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # The targets first: --set-threads takes every word after it.
    return run(["snakemake", *TARGETS, *SNAKEMAKE_FAST, *args], root, check=check, env=env_of(root))


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run(["dvc", *args], root, env=env_of(root))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """MT-Net trained and evaluated by Snakemake without interruption; only the data stages are
    recorded by DVC (a recorded training would be restored from DVC's run cache, not run)."""
    root = copy_project(tmp_path_factory.mktemp("faults") / "project")
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy2(REPO / "README.md", root / "README.md")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = SETTINGS["epochs"]
    params["data"]["synthetic"]["train_size"] = SETTINGS["train_size"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    init_git_dvc(root)
    snakemake(root)
    dvc(root, "commit", "--no-relink", "--force", "--quiet", "--with-deps", "preprocess")
    commit(root, "data")
    return root


@pytest.fixture
def project(baseline, tmp_path) -> Path:
    """A copy of the baseline (modification times kept) that a test may change."""
    return copy_of(baseline, tmp_path / "project")


def untrained(root: Path) -> Path:
    """``root`` without MT-Net's outputs and run state: the front ends will train it."""
    for path in (root / "models" / MODEL, root / "runs"):
        shutil.rmtree(path)
    (root / TARGETS[1]).unlink()
    return root


def run_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "runs" / MODEL).iterdir())


def weights(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / TARGETS[0], weights_only=True)["state_dict"]


def metrics(root: Path) -> dict:
    """The metric blocks of the metrics file (the context names times and paths)."""
    return {key: value for key, value in json.loads((root / TARGETS[1]).read_text()).items() if key != "context"}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_during_training(command: list[str], root: Path) -> None:
    """Start ``command`` in a process group of its own and SIGKILL the whole group (the front end
    and its training job, as a crash would) as soon as epoch 1's checkpoint appears."""
    with open(root / "killed.log", "w") as log:
        process = subprocess.Popen(command, cwd=root, env={**ENV, **env_of(root)}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        checkpoint = None
        deadline = time.monotonic() + 600  # a front end that hangs before epoch 1's checkpoint fails the test
        try:
            while process.poll() is None and checkpoint is None and time.monotonic() < deadline:
                checkpoint = next((root / "runs" / MODEL).glob(f"*/{CHECKPOINT_FILE}"), None)
                time.sleep(0.01)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert checkpoint is not None, f"no checkpoint before {command[0]} ended: {(root / 'killed.log').read_text()[-3000:]}"
    assert load_checkpoint(checkpoint)["epoch"] == 1, "killed too late: make the epochs longer"
    assert not (root / TARGETS[0]).exists()


def assert_baseline_result(root: Path, baseline: Path) -> None:
    """The same run directory (same identity), weights and metrics as the uninterrupted run."""
    assert run_dirs(root) == run_dirs(baseline)
    assert same_weights(weights(root), weights(baseline))
    assert metrics(root) == metrics(baseline)


def test_killed_snakemake_resumes_to_the_uninterrupted_result(baseline, project):
    untrained(project)
    kill_during_training(["snakemake", *TARGETS, *SNAKEMAKE_FAST], project)
    # Snakemake's lock survives SIGKILL: it refuses to start until `snakemake --unlock` (README).
    refused = snakemake(project, check=False)
    assert refused.returncode != 0 and "Directory cannot be locked" in refused.stdout + refused.stderr
    run(["snakemake", "--unlock"], project, env=env_of(project))
    snakemake(project)  # the default profile sets --rerun-incomplete
    # Resumed, not restarted (training being deterministic, a restart would end equal too): the
    # rerun job's log (the job writes it anew) trains epochs 2 and 3 alone.
    log = (project / "logs" / "train" / MODEL / "seed0.log").read_text()
    assert epochs_trained(log, MODEL) == [2, 3], log[-3000:]
    assert_baseline_result(project, baseline)


def test_killed_dvc_repro_resumes_to_the_uninterrupted_result(baseline, project):
    untrained(project)
    kill_during_training(["dvc", "repro", DVC_TARGET], project)
    output = dvc(project, "repro", DVC_TARGET).stdout
    assert set(re.findall(r"Running stage '([^']+)'", output)) == STAGES
    assert epochs_trained(output, MODEL) == [2, 3], output[-3000:]  # resumed, not restarted
    assert_baseline_result(project, baseline)


def edit_loss(root: Path) -> None:
    losses = root / "src" / "mbmt" / "losses.py"
    text = losses.read_text()
    assert text.count(LOSS_EDIT[0]) == 1
    losses.write_text(text.replace(*LOSS_EDIT))


def assert_new_result(root: Path, baseline: Path) -> None:
    """A fresh run beside the baseline's, new weights, new metrics (normal angles: not a loss)."""
    [old] = run_dirs(baseline)
    assert len(run_dirs(root)) == 2 and old in run_dirs(root)
    assert not same_weights(weights(root), weights(baseline))
    assert metrics(root)["normal"]["mean"] != metrics(baseline)["normal"]["mean"]


def test_loss_edit_trains_anew_with_snakemake(baseline, project):
    edit_loss(project)
    planned = dry_run_jobs(snakemake(project, "--dry-run").stdout)
    assert set(planned) - {"all"} == STAGES
    snakemake(project)
    assert_new_result(project, baseline)


def test_loss_edit_trains_anew_with_dvc(baseline, project):
    dvc(project, "commit", "--no-relink", "--force", "--quiet", "--with-deps", DVC_TARGET)
    edit_loss(project)
    output = dvc(project, "repro", DVC_TARGET).stdout
    assert set(re.findall(r"Running stage '([^']+)'", output)) == STAGES
    assert_new_result(project, baseline)


def test_docs_edit_reruns_nothing(project):
    dvc(project, "commit", "--no-relink", "--force", "--quiet", "--with-deps", DVC_TARGET)
    for doc in (project / "README.md", project / "docs" / "training.md"):
        doc.write_text(doc.read_text() + "\nAn added line.\n")
    assert set(dry_run_jobs(snakemake(project, "--dry-run").stdout)) - {"all"} == set()
    assert json.loads(dvc(project, "status", "--json", DVC_TARGET).stdout) == {}


def test_diverging_training_stops_with_one_error_and_publishes_nothing(baseline, project):
    """lr 1e8: the training loss stays finite while BatchNorm's running variances overflow."""
    for schema in (project / "src" / "mbmt" / "schemas" / "params.schema.yaml",
                   project / "workflow" / "schemas" / "params.schema.yaml"):
        text = schema.read_text()
        schema.write_text(re.sub(r"(\n      lr:\n(?:        .*\n)*?)        maximum: 1\n", r"\1", text, count=1))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lr"] = 1.0e8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    result = snakemake(project, check=False)
    assert result.returncode != 0
    last_line = (project / "logs" / "train" / MODEL / "seed0.log").read_text().strip().splitlines()[-1]
    assert last_line.startswith(f"mbmt train: error: model {MODEL}: after epoch 1 of 3 weights or buffers are not finite")
    assert "running_var" in last_line and "nothing was published" in last_line
    assert not (project / TARGETS[0]).parent.exists()
    # The diverged run wrote no checkpoint; the baseline's finished run is untouched.
    [old] = run_dirs(baseline)
    [new] = [name for name in run_dirs(project) if name != old]
    assert not (project / "runs" / MODEL / new / CHECKPOINT_FILE).exists()
    assert load_checkpoint(project / "runs" / MODEL / old / CHECKPOINT_FILE)["epoch"] == SETTINGS["epochs"]
