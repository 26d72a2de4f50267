"""A word before weeks of work (mbmt.training.cost): the paper's profile with train.device auto
and no CUDA device stops before the first training (Snakemake before any job, `mbmt train` as
DVC's train stage runs it), saying what would happen."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from test_workflow_project import copy_project, run

from mbmt.config import load_params
from mbmt.stages.train import planned_training
from mbmt.training.cost import MEASURED_STEP_S, cpu_training_refusal
from mbmt.training.cost import cpu_training_seconds as seconds_of
from conftest import REPO


def cpu_training_seconds(params: dict) -> float:
    return seconds_of(planned_training(params))


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_params([REPO / "params.yaml"])


def test_the_estimate_is_the_measured_steps_times_the_protocol(paper):
    # 8 models: 1.678 + 4.043 + 3.983 + 8.574 + 7.118 + 13.266 + 13.548 + 80.103 = 132.313 s per step
    # of each; ceil(795 / 2) = 398 steps per epoch, 200 epochs, one seed, at the measured size.
    assert sum(MEASURED_STEP_S.values()) == pytest.approx(132.313)
    assert cpu_training_seconds(paper) == pytest.approx(132.313 * 398 * 200)
    half = copy.deepcopy(paper)
    half["data"]["height"], half["seeds"], half["train"]["steps_per_epoch"] = 144, [0, 1, 2], 10
    assert cpu_training_seconds(half) == pytest.approx(132.313 / 2 * 10 * 200 * 3)


def test_only_an_unasked_hours_long_cpu_run_is_refused(paper, tiny_params, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = cpu_training_refusal(planned_training(paper), source="params.yaml")
    assert message.startswith("params.yaml (profile paper) would train 8 models x 1 seed x 200 epochs at 288x384 "
                              "on the CPU: train.device is auto and no CUDA device is visible")
    assert "about 122 days of training" in message and message.endswith(
        "to train on the CPU deliberately, set train.device: cpu (in params.yaml or a preset)")
    deliberate = copy.deepcopy(paper)
    deliberate["train"]["device"] = "cpu"
    assert cpu_training_refusal(planned_training(deliberate)) is None
    small = copy.deepcopy(tiny_params)
    small["train"]["device"] = "auto"
    assert cpu_training_refusal(planned_training(small)) is None  # minutes: nothing to ask
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_training_refusal(planned_training(paper)) is None


def test_snakemake_and_the_dvc_train_stage_stop_before_the_first_job(tmp_path):
    """With no CUDA device visible (hidden from the commands, whatever this machine has):
    Snakemake with the paper's params.yaml stops at once, before any job, even fetch; the training
    command of dvc.yaml's first train stage stops before training, with the same message.

    `dvc repro` itself is not run: DVC has no hook before its stages, so it would run fetch (the
    dataset's servers) and preprocess first; then its train stage's command, run here as
    dvc.yaml gives it, stops it."""
    root = copy_project(tmp_path / "project", preset=None)
    no_cuda = {"CUDA_VISIBLE_DEVICES": ""}  # torch sees no CUDA device (nothing is fetched either way)
    train_stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["train"]
    item = dict(zip(("model", "seed"), next(iter(train_stage["foreach"])).rsplit("-", 1)))
    command = train_stage["do"]["cmd"].replace("${item.model}", item["model"]).replace("${item.seed}", item["seed"])
    assert command == "mbmt train st_ss --seed 0"
    train = run(command.split(), root, check=False, env=no_cuda)
    assert train.returncode == 2 and "would train 8 models x 1 seed x 200 epochs" in train.stderr
    assert not (root / "runs" / "st_ss").exists()  # no run started (runs/ holds the stage locks)
    snakemake = run(["snakemake", "--cores", "1"], root, check=False, env=no_cuda)
    assert snakemake.returncode != 0
    assert "would train 8 models x 1 seed x 200 epochs" in snakemake.stdout + snakemake.stderr
    assert not (root / "data").exists() and not (root / "logs").exists()  # not even fetch ran
