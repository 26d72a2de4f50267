"""Train one model of params.yaml (ST-Net, MT-Net, an MBMT-Net variant or MTAN) with MTAN's protocol.

Writes models/MODEL/seedSEED/model.pt and models/MODEL/seedSEED/live/ (the DVCLive log: per-epoch
losses, task weights, learning rate and validation metrics); an MBMT-Net variant with init_from
starts from the ST-Nets trained with the same seed. The resumable state lives in
runs/MODEL/FINGERPRINT/ (the seed is part of the fingerprint), keyed by a hash of the training code and every setting that determines
the result: running the same command again resumes an interrupted run from its last epoch, and
republishes a finished one without training; after a code or params edit it trains a new run.
A loss, weight, buffer or validation metric that stops being finite stops the run with one error
before anything of that epoch is saved. With train.device auto and no CUDA device visible, a
params profile whose training would take hours on the CPU (the paper's) stops before it starts,
saying so; train.device: cpu goes on deliberately. Started by torchrun (WORLD_SIZE > 1) it trains with DDP, e.g.
    torchrun --standalone --nproc-per-node 4 -m mbmt train mtnet --seed 0
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the stage's --help stays fast
    from mbmt.training.cost import PlannedTraining
    from mbmt.training.trainer import TrainJob


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model name of params.yaml `models` (e.g. st_ss, mtnet, mbmt_partial, mtan) "
                        "or a study job (mtnet-weighting-equal: docs/workflow.md, \"Studies\")")
    parser.add_argument("--seed", type=int, help="one of params seeds (default: the only one)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the saved state of this run and train from scratch (after a change the "
                        "run's identity cannot see, e.g. another torch or timm version)")
    parser.add_argument("--no-progress", action="store_true", help="no per-step progress bar (one line per epoch remains)")


def unpack(params: Mapping, model: str) -> TrainJob:
    """The training job of model ``model`` under ``params`` (the job's own: a study job's variant
    included), unpacked at this boundary: its model entry and params ``decoder``, params ``train``
    (every key: mbmt.config.TRAIN_KEYS) and the provenance labels."""
    from mbmt.config import TrainSettings, model_settings
    from mbmt.stages import provenance_labels
    from mbmt.training.trainer import TrainJob

    return TrainJob(model_settings(params, model), TrainSettings.from_train(params["train"]),
                    provenance_labels(params))


def planned_training(params: Mapping) -> PlannedTraining:
    """What the CPU-cost estimate (mbmt.training.cost) needs of ``params``: every model once per seed."""
    from mbmt.training.cost import PlannedTraining, training_images

    train, data = params["train"], params["data"]
    return PlannedTraining(
        profile=params.get("profile", "?"), models=tuple(params["models"]), seeds=len(params["seeds"]),
        epochs=train["epochs"], batch_size=train["batch_size"], steps_per_epoch=train["steps_per_epoch"],
        height=data["height"], width=data["width"], device=train["device"],
        images=training_images(data["source"], data["synthetic"]["train_size"]))


def main(args: argparse.Namespace) -> int:
    from mbmt.config import job_seed, model_params
    from mbmt.stages import job_params

    # A study job (mbmt.plan.Plan.study_jobs) runs with its variant's params, its models named as its jobs.
    params = job_params(args)
    model_params(params, args.model)  # an unknown name or seed fails here, before torch is imported
    seed = job_seed(params, args.seed)
    from mbmt.errors import ParamsError
    from mbmt.training.cost import cpu_training_refusal

    refusal = cpu_training_refusal(planned_training(params), source=" + ".join(args.params or ["params.yaml"]))
    if refusal:
        raise ParamsError(refusal)

    from mbmt.training.trainer import train

    train(unpack(params, args.model), seed=seed, restart=args.restart, progress=not args.no_progress)
    return 0
