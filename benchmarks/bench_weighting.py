"""What each train.weighting method costs per training step, as a ratio to DWA's step.

Gradient methods (torchjd) back-propagate once per task through the shared part (the Jacobian of
the task losses on the shared parameters) and then solve a small problem on the host, where a
loss-based weighting back-propagates one weighted sum; this measures what that costs on the models
of the weighting study, and what it makes of the full protocol's training time.

For each model and method, in a temporary project with synthetic data and random weights, it times
steps of `Trainer.train_epoch` (the whole training step: batches, forward, the method's backward,
Adam, the per-step loss read-back; FAMO's second forward after the update), side by side in one process, blocks alternating between the
methods against drift, the fastest block of each kept. It prints seconds per step, the ratio to
DWA's step of the same model, and the protocol's training time of that model under the method
(a step is a batch: SDMGrad and MoDo update once per 3 batches, and their seconds per batch are an
epoch's cost against DWA's)
(benchmarks/protocol_estimate.py: the configuration's epochs over NYUv2's 795 training images,
validation left out as it does not depend on the method).

    python benchmarks/bench_weighting.py [--config paper|demo|tiny] [--models mtnet mbmt_partial]
        [--methods dwa upgrad ...] [--steps 2] [--repeats 2] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import CONFIGS, benchmark_params, write_project  # noqa: E402
from protocol_estimate import NYUV2_TRAIN, ModelSpeed, duration, training_seconds  # noqa: E402

from mbmt.config import load_params  # noqa: E402
from mbmt.stages.train import unpack as train_job  # noqa: E402
from mbmt.training import distributed  # noqa: E402
from mbmt.training.trainer import Trainer  # noqa: E402
from mbmt.training.weighting import WEIGHTINGS  # noqa: E402

BASELINE = "dwa"
# The published options but for STCH's warm-up: the timed epochs (1, 2, ...) are then STCH's own
# steps, not its warm-up's plain sum of log-losses (the warm-up step costs what equal's does).
OPTIONS = {"stch": {"warmup_epochs": 0}}


def step_seconds(trainer: Trainer, epoch: int) -> float:
    sync = torch.cuda.synchronize if trainer.context.cuda else (lambda: None)
    trainer.weighting.start_epoch(epoch)
    sync()
    start = time.perf_counter()
    stats = trainer.train_epoch(epoch, trainer.weighting.weights(epoch))
    sync()
    # Per batch: SDMGrad and MoDo make one update per 3 batches (an epoch is the same batches for every
    # method, docs/training.md), so their seconds per batch are what an epoch costs against DWA's.
    seconds = (time.perf_counter() - start) / (trainer.steps_in_epoch() * trainer.weighting.batches_per_update)
    trainer.weighting.record(epoch, stats.mean_losses)  # DWA needs the history from epoch 2 on
    return seconds


def measure(model: str, methods: list[str], config: str, steps: int, repeats: int, device: str) -> dict[str, float]:
    """Seconds per step of ``model`` under each method (the fastest of ``repeats`` blocks)."""
    context = distributed.setup(device)
    trainers = {}
    for method in methods:
        params = benchmark_params(config, steps, 0, device, train={"weighting": method, "val_every": 0,
                                                                   "weighting_options": OPTIONS})
        trainers[method] = Trainer(train_job(params, model), context, seed=params["seeds"][0],
                                   run_root=Path("runs") / method, progress=False)
        step_seconds(trainers[method], 0)  # warm-up: allocator, kernels, the method's solver set-up
    times: dict[str, list[float]] = {method: [] for method in methods}
    for repeat in range(repeats):
        order = methods if repeat % 2 == 0 else methods[::-1]
        for method in order:
            times[method].append(step_seconds(trainers[method], 1 + repeat))
    return {method: min(values) for method, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="paper", choices=["paper", "demo", "tiny"])
    parser.add_argument("--models", nargs="+", default=["mtnet", "mbmt_partial"])
    parser.add_argument("--methods", nargs="+", default=list(WEIGHTINGS), choices=list(WEIGHTINGS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [BASELINE] + [m for m in args.methods if m != BASELINE]
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        params = benchmark_params(args.config, args.steps, 0, args.device)
        write_project(params, images=max(4, args.steps * params["train"]["batch_size"]))
        height, width = params["data"]["height"], params["data"]["width"]
        device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"# train.weighting step cost: config {args.config} ({height}x{width}, batch "
              f"{params['train']['batch_size']}), {device_name}, torch {torch.__version__}, "
              f"{args.steps} steps x {args.repeats} blocks, fastest block")
        results = {model: measure(model, methods, args.config, args.steps, args.repeats, args.device)
                   for model in args.models}
    train = load_params(CONFIGS[args.config])["train"]  # the protocol's epochs, whole split (the timed run caps them)
    several = [m for m in methods if WEIGHTINGS[m].batches_per_update > 1]
    if several:
        print(f"# s/step: seconds per batch; {', '.join(several)} update once per "
              f"{WEIGHTINGS[several[0]].batches_per_update} batches (--steps: a multiple of that)")
    header = "| method | " + " | ".join(f"{m} s/step | {m} / dwa | {m} protocol" for m in args.models) + " |"
    print(header)
    print("|" + "---|" * (1 + 3 * len(args.models)))
    for method in methods:
        cells = []
        for model in args.models:
            seconds = results[model][method]
            protocol = training_seconds(ModelSpeed(step_s=seconds, val_image_s=0.0), {**train, "val_every": 0},
                                        train_images=NYUV2_TRAIN)  # validation left out: the same for every method
            cells += [f"{seconds:.3f}", f"{seconds / results[model][BASELINE]:.2f}", duration(protocol)]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
