"""Distributed training: torchrun with 2 gloo processes equals 1 process with the same global batch,
and every rank validates the same model."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
import subprocesses
import torch
import yaml

from mbmt import cli
from mbmt.errors import ParamsError
from mbmt.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from mbmt.training.distributed import ShardSampler, per_rank_batch_size

MODEL = "mtnet"
LR = 1.0e-7
# GroupNorm everywhere (decoder and timm's GroupNorm test backbone): a sample's forward pass does
# not depend on the other samples of its rank's batch, so only float summation order differs.
# Adam's first update of an element is lr * sign(gradient); where the true gradient is ~0 (e.g.
# parameters just before a normalisation) float noise picks the sign, so such elements may differ
# by up to 2 * lr per step. A tiny lr keeps that from amplifying rounding into the losses and the
# gradients (at 1e-6 those few elements moved the normal loss by 1.7e-4 (relative) over 8 steps, at
# 1e-7 by 4e-6); it also makes the weights themselves uninformative (every update is about lr), so
# the gradients are compared through Adam's moments (assert_same_moments).

# Adam's moments of one parameter may differ by this fraction of their norm (assert_same_moments).
# Measured on CPU (2 gloo ranks against 1 process, the three weightings below): rounding (the ranks
# sum in another order; conv-weight gradients are sums over pixels that largely cancel) moves them
# by at most 5.4e-3; with DDP's all-reduce switched off (each rank keeps its own sample's gradient)
# the median parameter's moment moves by 0.92 and the largest by 4.2, 867 of 894 above 0.05.
MOMENT_RTOL = 5.0e-2
COUNTED = ("miou", "pix_acc", "median", "within_11_25", "within_22_5", "within_30")
PRESET = {"decoder": {"norm": "groupnorm"}, "models": {MODEL: {"backbone": "test_efficientnet_gn"}},
          "train": {"lr": LR}}


def checkpoint_of(root) -> dict:
    [path] = (root / "runs" / MODEL).glob(f"*/{CHECKPOINT_FILE}")
    return load_checkpoint(path)


# dwa: fixed weights per epoch; gls: per-step weights from the global batch's losses (all-reduced);
# uncertainty: learned weights outside the DDP module, their gradients averaged by the trainer.
@pytest.mark.parametrize("weighting", ["dwa", "gls", "uncertainty"])
def test_two_gloo_processes_match_one_process(project, processed_data, tmp_path_factory, monkeypatch, weighting):
    (project / "ddp.yaml").write_text(yaml.safe_dump({**PRESET, "train": {**PRESET["train"], "weighting": weighting}}))
    processed_data()
    single = tmp_path_factory.mktemp("single")
    for name in ("params.yaml", "ddp.yaml"):
        shutil.copy(project / name, single / name)
    shutil.copytree(project / "data", single / "data")

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "mbmt", "train", MODEL, "--no-progress", "-p", "params.yaml", "-p", "ddp.yaml"]
    result = subprocesses.run(command, timeout=300, cwd=project,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]

    monkeypatch.chdir(single)
    assert cli.main(["train", MODEL, "--no-progress", "-p", "params.yaml", "-p", "ddp.yaml"]) == 0

    two, one = checkpoint_of(project), checkpoint_of(single)
    assert two["settings"]["world_size"] == 2 and one["settings"]["world_size"] == 1
    assert len(two["rng"]) == 2 and len(one["rng"]) == 1  # every rank's generators are resumable
    assert_same_moments(two["optimizer"], one["optimizer"])
    for epoch_two, epoch_one in zip(two["history"], one["history"], strict=True):
        for key, value in epoch_one["metrics"].items():
            if key == "train/images_per_second":
                continue
            # Pixel counts (mIoU, accuracy, "within" rates, the median's histogram) may move by a
            # pixel or two whose class or angle sits on a boundary: 0.05 points is ~8 of 16384 pixels.
            counted = key.split("/")[-1] in COUNTED
            assert epoch_two["metrics"][key] == pytest.approx(value, rel=1e-4, abs=0.05 if counted else 0), key
    if weighting == "uncertainty":
        # The learned log-variances (the optimiser's last parameter) live outside the DDP module:
        # the trainer averages their gradients. Three numbers, no cancelling sums: tight.
        moment_two, moment_one = (max(c["optimizer"]["state"].items())[1]["exp_avg"] for c in (two, one))
        assert moment_one.shape == (3,) and moment_one.abs().min() > 0
        assert torch.allclose(moment_two, moment_one, rtol=1e-4, atol=0)


def assert_same_moments(two: dict, one: dict, rtol: float = MOMENT_RTOL, floor: float = 0.0) -> None:
    """Adam's first and second moments of every parameter (running means of its gradients and their
    squares over every step) in optimiser state ``two`` those of ``one`` up to ``rtol`` of each
    moment's norm.

    Unlike the tiny-lr weights, whose updates are lr x sign(gradient), the moments are the
    gradients themselves. Compared per parameter, in norm (elements whose gradient is float noise,
    ~0, would fail an elementwise relative test while carrying no information). A parameter whose
    first moment is below ``floor`` of the whole model's (a BatchNorm bias whose output goes into
    another normalisation: its true gradient is 0, float noise is all it gets) is compared against ``floor`` of the whole model's
    (``floor`` squared for the second moment).
    """
    assert one["state"].keys() == two["state"].keys() and len(one["state"]) > 10
    for moment, power in (("exp_avg", 1), ("exp_avg_sq", 2)):
        whole = torch.cat([state[moment].flatten() for state in one["state"].values()]).norm()
        for index, state in one["state"].items():
            expected, got = state[moment], two["state"][index][moment]
            assert expected.norm() > 0, (index, moment)  # every parameter gets a gradient
            error = float((got - expected).norm() / torch.maximum(expected.norm(), floor ** power * whole))
            assert error <= rtol, (f"Adam's {moment} of parameter {index} {tuple(expected.shape)} differs "
                                   f"by {error:.3g} of its norm")


def test_ranks_validate_the_batchnorm_statistics_of_rank_0(project, processed_data):
    """With BatchNorm on CPU (gloo has no SyncBatchNorm) each rank's running statistics follow its
    own samples; every rank validates rank 0's, so the logged metrics are those of the checkpointed
    (and published) model over the whole test split."""
    from mbmt.config import load_params
    from mbmt.data.dataset import NYUv2Dataset
    from mbmt.evaluation import accumulate_metrics
    from mbmt.config import model_settings
    from mbmt.models import create_model
    from mbmt.paths import split_file
    from mbmt.evaluation.protocol import VAL_METRIC_BATCH, val_curve

    processed_data()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "mbmt", "train", "st_de", "--no-progress"]
    result = subprocesses.run(command, timeout=300, cwd=project,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]

    [path] = (project / "runs" / "st_de").glob(f"*/{CHECKPOINT_FILE}")
    state = load_checkpoint(path)
    model = create_model(model_settings(load_params(), "st_de"), load_init=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    model.load_state_dict(state["model"])
    dataset = NYUv2Dataset(split_file("test"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset))
    accumulator = accumulate_metrics(model, loader, ("depth",), device=torch.device("cpu"), batch_images=VAL_METRIC_BATCH)
    logged = state["history"][-1]["metrics"]
    # Both averagings: the ranks' shares of MTAN's test batches are the batches of one process.
    for averaging in ("pixel", "batch"):
        for key, value in accumulator.compute(averaging)["depth"].items():
            assert logged[val_curve("depth", key, averaging)] == pytest.approx(value, rel=1e-5), (averaging, key)


def test_global_batch_must_divide_over_processes():
    assert per_rank_batch_size(8, 4) == 2
    with pytest.raises(ParamsError, match="train.batch_size 6 .* 4 processes"):
        per_rank_batch_size(6, 4)


def test_evaluation_shards_cover_every_image_once():
    shards = [list(ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]
    # In blocks (the pairs of batch-averaged validation): whole, in order, the last one short.
    assert [list(ShardSampler(11, rank, 3, block=2)) for rank in range(3)] == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10]]
