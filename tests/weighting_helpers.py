"""What the weighting-method tests share in the trainer (test_weighting_methods.py and
test_weighting_methods_2025.py): a trainer of one model on the project's params with train keys
overridden, the exception a test raises to stop a run part-way, and a run's logged metrics."""

from __future__ import annotations

from mbmt.config import load_params
from mbmt.stages.train import unpack as train_job
from mbmt.training import distributed
from mbmt.training.trainer import Trainer

MODEL = "mtnet"


def trainer(root, **train) -> Trainer:
    params = load_params(["params.yaml"])
    params["train"].update(train)
    return Trainer(train_job(params, MODEL), distributed.setup("cpu"), seed=params["seeds"][0], run_root=root, progress=False)


class Interrupted(Exception):
    pass


def stop_in_epoch_2(root, **train) -> None:
    """Train a run in ``root`` until the checkpoint of its first epoch, then stop it, as a killed
    process would stop (the resume tests then continue it and compare with an uninterrupted run)."""
    import pytest

    run = trainer(root, **train)
    fit_epoch = run.train_epoch

    def stop(epoch, weights):
        if epoch == 1:
            raise Interrupted  # after the checkpoint of epoch 1
        return fit_epoch(epoch, weights)

    run.train_epoch = stop
    with pytest.raises(Interrupted):
        run.fit()


def logged(run: Trainer) -> list[dict]:
    """The metrics of every epoch but the throughput, which differs from run to run."""
    return [{k: v for k, v in entry["metrics"].items() if k != "train/images_per_second"} for entry in run.history]
