"""A training process killed after its first epoch resumes to exactly the uninterrupted result;
a checkpoint that does not fit the model is one clear error."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mbmt import cli
from mbmt.paths import live_dir, model_file
from mbmt.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

MODEL = "mtnet"  # multi-task: the DWA weights of epoch 3 depend on the recorded losses of epochs 1 and 2
# Long enough epochs that the process is surely killed inside epoch 2, not after it.
SETTINGS = {"epochs": 3, "train_size": 24}


def write_params(root: Path, sync_every: str | int) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = SETTINGS["epochs"]
    params["train"]["sync_every"] = sync_every
    params["data"]["synthetic"]["train_size"] = SETTINGS["train_size"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def published(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The model file's weights and the DVCLive log (every metric but the timing) of ``root``."""
    weights = torch.load(root / model_file(MODEL, 0), weights_only=True)["state_dict"]
    log = {}
    for tsv in sorted((root / live_dir(MODEL, 0) / "plots" / "metrics").rglob("*.tsv")):
        if tsv.stem != "images_per_second":
            with open(tsv) as f:
                log[str(tsv.relative_to(root))] = [row for row in csv.reader(f, delimiter="\t")]
    return weights, log


def epochs_trained(output: str, model: str = MODEL) -> list[int]:
    """The epochs a training process of ``model`` trained, from the line it prints after each
    ("mtnet epoch 2/3: loss 3.1413 (...)", not the progress bar's "mtnet epoch 2/3:  8%|...")."""
    return [int(epoch) for epoch in re.findall(rf"\b{model} epoch (\d+)/\d+: loss ", output)]


# auto: on CPU the losses read back every step; 3: the device-side guard with fused Adam.
@pytest.mark.parametrize("sync_every", ["auto", 3])
def test_killed_run_resumes_to_the_uninterrupted_result(project, processed_data, tmp_path_factory, monkeypatch, capsys,
                                                        sync_every):
    write_params(project, sync_every)
    processed_data()
    reference = tmp_path_factory.mktemp("uninterrupted")
    shutil.copy(project / "params.yaml", reference / "params.yaml")
    shutil.copytree(project / "data", reference / "data")

    # Interrupted: a real `mbmt train` process, killed (SIGKILL, no clean-up) as soon as the
    # checkpoint of epoch 1 appears.
    process = subprocess.Popen([sys.executable, "-m", "mbmt", "train", MODEL, "--no-progress"], cwd=project,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = None
    deadline = time.monotonic() + 300  # a hung training fails the test (pytest-timeout would only interrupt it)
    while process.poll() is None and checkpoint is None and time.monotonic() < deadline:
        checkpoint = next((project / "runs" / MODEL).glob(f"*/{CHECKPOINT_FILE}"), None)
        time.sleep(0.01)
    process.kill()
    _, stderr = process.communicate(timeout=60)
    assert checkpoint is not None, f"the training process ended without a checkpoint: {stderr.decode()[-2000:]}"
    assert load_checkpoint(checkpoint)["epoch"] == 1, "killed too late: make the epochs longer"
    assert not (project / model_file(MODEL, 0)).parent.exists()

    # Resumed in this process, from epoch 2: it trains epochs 2 and 3 only (a restart from scratch
    # ends with the same weights, training being deterministic; its log shows epoch 1 again).
    capsys.readouterr()
    assert cli.main(["train", MODEL, "--no-progress"]) == 0
    assert epochs_trained(capsys.readouterr().out) == [2, 3]
    state = load_checkpoint(checkpoint)
    assert state["epoch"] == 3 and [e["epoch"] for e in state["history"]] == [0, 1, 2]
    assert state["history"][2]["metrics"]["train/weight/semantic"] != 1.0  # DWA was active after resuming

    monkeypatch.chdir(reference)
    assert cli.main(["train", MODEL, "--no-progress"]) == 0
    assert epochs_trained(capsys.readouterr().out) == [1, 2, 3]

    resumed_weights, resumed_log = published(project)
    weights, log = published(reference)
    assert resumed_weights.keys() == weights.keys()
    assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights)
    assert len(log["models/mtnet/seed0/live/plots/metrics/val/normal/mean.tsv"]) == 1 + 3  # header + 3 epochs
    assert resumed_log == log


def test_checkpoint_that_does_not_fit_is_one_clear_error(project, processed_data, capsys):
    """What the run's fingerprint cannot see (another timm version, a replaced file) may leave a
    checkpoint the model does not fit: one line naming the file, what differs and the fix."""
    processed_data()
    assert cli.main(["train", "st_de", "--no-progress"]) == 0
    [checkpoint] = (project / "runs" / "st_de").glob(f"*/{CHECKPOINT_FILE}")
    state = load_checkpoint(checkpoint)
    state.pop("format")
    removed = list(state["model"])[-1]
    del state["model"][removed]
    stem = "encoder.body.conv_stem.weight"
    state["model"][stem] = state["model"][stem][:1]
    save_checkpoint(checkpoint, state)
    capsys.readouterr()

    assert cli.main(["train", "st_de", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert error[0].startswith(f"mbmt train: error: {checkpoint.relative_to(project)}: the checkpoint does not fit model st_de")
    assert f"1 missing (e.g. {removed})" in error[0]
    assert f"1 of another shape (e.g. {stem} is {tuple(state['model'][stem].shape)} in the file" in error[0]
    assert f"delete {checkpoint.parent.relative_to(project)} or run `mbmt train st_de --seed 0 --restart`" in error[0]

    assert cli.main(["train", "st_de", "--no-progress", "--restart"]) == 0
    assert load_checkpoint(checkpoint)["model"].keys() == torch.load(
        project / model_file("st_de", 0), weights_only=True)["state_dict"].keys()
