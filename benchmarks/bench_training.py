"""Training speed of every model, and the trainer's overhead over a bare training step.

For each configuration (``paper``: params.yaml, 288x384, batch 2; ``demo``: params.yaml +
config/demo.yaml) and model, in a temporary project with synthetic data, this times side by side
in one process, alternating blocks:

- bare: forward, the plain sum of mbmt.losses.compute_losses, backward and Adam step of the
  model on one batch already in memory;
- trainer: the same number of steps through `Trainer.train_epoch` (DataLoader and augmentation,
  global-batch losses, task weighting, the per-step finiteness check and progress bar);

and prints seconds per step, their ratio (the overhead), training images/s, the DataLoader's
time per batch alone (the main work the trainer adds, measured without the model's timing
noise), and the per-epoch extras (checkpoint + DVCLive log) as a share of a full NYUv2 epoch
(795 images). Weights are random (no ImageNet download): speed does not depend on them.

    python benchmarks/bench_training.py [--configs paper demo] [--models st_ss mtnet ...]
        [--steps 4] [--repeats 3] [--num-workers N] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml

from mbmt.config import deep_merge, load_params, validate
from mbmt.data.hdf5 import MODALITIES, RENDERED, SplitWriter
from mbmt.data.synthetic import generate
from mbmt.evaluation import to_device
from mbmt.losses import compute_losses
from mbmt.models import create_model, save_model
from mbmt.paths import model_file, split_file
from mbmt.training import distributed
from mbmt.training.checkpoint import save_checkpoint
from mbmt.training.trainer import Trainer, log_epoch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"paper": [REPO / "params.yaml"], "demo": [REPO / "params.yaml", REPO / "config" / "demo.yaml"]}
MODELS = ("st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial", "mbmt_full_pretrained", "mbmt_full_scratch", "mtan")
NYUV2_TRAIN = 795


def benchmark_params(config: str, steps: int, num_workers: int | None, device: str) -> dict:
    """The configuration with random weights, no validation and epochs of ``steps`` steps."""
    params = load_params(CONFIGS[config])
    overrides = {
        "train": {"steps_per_epoch": steps, "val_every": 0, "epochs": 1000, "device": device},
        "models": {name: {"pretrained": False} for name, entry in params["models"].items() if "pretrained" in entry},
    }
    if num_workers is not None:
        overrides["train"]["num_workers"] = num_workers
    params = deep_merge(params, overrides)
    validate(params, source=f"{config} benchmark settings")
    return params


def write_project(params: dict, images: int) -> None:
    """Synthetic splits in the current directory, and random ST-Nets for MBMT-Net's init_from."""
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    height, width = params["data"]["height"], params["data"]["width"]
    for split, count in (("train", images), ("test", 1)):
        with SplitWriter(split_file(split), count, height, width, split=split, source="synthetic",
                         modalities=dict.fromkeys(MODALITIES, RENDERED)) as writer:
            for index, sample in enumerate(generate(count, height, width, 0, split=split)):
                writer.add(sample, f"{split}[{index}]")
    for name in ("st_ss", "st_de", "st_snp"):
        save_model(model_file(name, params["seeds"][0]), create_model(name, params, load_init=False), name=name, params=params)


def bare_steps(trainer: Trainer, batch: dict, steps: int) -> float:
    """Seconds per step of forward + summed losses + backward + Adam on a batch in memory."""
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    sync = torch.cuda.synchronize if trainer.context.cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(trainer.context.device.type, dtype=torch.bfloat16, enabled=trainer.amp):
            outputs = model(batch["image"])
        total = sum(compute_losses({t: o.float() for t, o in outputs.items()}, batch).values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        del outputs, total  # as when train_step returns: the next forward starts with the same free memory
    sync()
    return (time.perf_counter() - start) / steps


def trainer_steps(trainer: Trainer, epoch: int, steps: int) -> tuple[float, dict]:
    """Seconds per step of `Trainer.train_epoch` (its per-step loss read-back synchronises), and
    the epoch's log record."""
    weights = trainer.weighting.weights(epoch)
    start = time.perf_counter()
    stats = trainer.train_epoch(epoch, weights)
    seconds = time.perf_counter() - start
    trainer.weighting.record(epoch, stats.mean_losses)  # DWA needs the history from epoch 2 on
    return seconds / steps, trainer.epoch_record(epoch, weights, trainer.scheduler.get_last_lr()[0], stats, None)


def loader_steps(trainer: Trainer, epoch: int, steps: int) -> float:
    """Seconds per batch of the training DataLoader alone (reading, augmenting, collating): the part
    of the trainer's step that the bare step does not do, measured without the model's noise."""
    start = time.perf_counter()
    for step, _ in enumerate(trainer.train_loader(epoch)):
        if step + 1 == steps:
            break
    return (time.perf_counter() - start) / steps


def epoch_extras(trainer: Trainer, live, record: dict) -> float:
    """Seconds of what fit() adds once per epoch: the checkpoint and the log."""
    start = time.perf_counter()
    save_checkpoint(trainer.checkpoint_path, trainer.state_dict())
    log_epoch(live, record)
    return time.perf_counter() - start


def measure(name: str, params: dict, context, steps: int, repeats: int) -> dict:
    trainer = Trainer(name, params, context, seed=params["seeds"][0], progress=False)
    batch = to_device(next(iter(trainer.train_loader(0))), context.device, trainer.channels_last)
    live = trainer.open_live()
    trainer_steps(trainer, 0, steps)  # warm-up: allocator, kernels, page cache
    bare_steps(trainer, batch, 1)
    bare, full = [], []
    for repeat in range(repeats):  # alternate which block goes first, against drift
        if repeat % 2 == 0:
            bare.append(bare_steps(trainer, batch, steps))
        seconds, record = trainer_steps(trainer, 1 + repeat, steps)
        full.append(seconds)
        if repeat % 2 == 1:
            bare.append(bare_steps(trainer, batch, steps))
    extras = epoch_extras(trainer, live, record)
    data = min(loader_steps(trainer, epoch, steps) for epoch in range(repeats))
    # The fastest block of each: interference from other processes only ever adds time.
    bare_s, full_s = min(bare), min(full)
    batch_size = params["train"]["batch_size"]
    return {"bare": bare_s, "trainer": full_s, "overhead": full_s / bare_s - 1, "images_s": batch_size / full_s,
            "data": data, "data_share": data / bare_s,
            "extras": extras, "extras_share": extras / (NYUV2_TRAIN / batch_size * full_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, default=4, help="steps per timed block (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating bare/trainer blocks, the fastest "
                        "of each counts (default 3)")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default: the configuration's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads; 1 on a shared machine "
                        "avoids OpenMP oversubscription stalls)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    context = distributed.setup(args.device)
    print(f"device: {args.device} ({torch.get_num_threads()} threads), steps per block {args.steps}, "
          f"repeats {args.repeats}, torch {torch.__version__}\n")
    print("| config | model | size | batch | workers | bare s/step | trainer s/step | overhead | train img/s "
          "| data s/step (share of bare) | checkpoint+log s/epoch (share of a 795-image epoch) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for config in args.configs:
        params = benchmark_params(config, args.steps, args.num_workers, args.device)
        train = params["train"]
        with tempfile.TemporaryDirectory(prefix=f"bench_training_{config}_") as root:
            cwd = os.getcwd()
            os.chdir(root)
            try:
                write_project(params, train["batch_size"] * args.steps)
                for name in args.models:
                    r = measure(name, params, context, args.steps, args.repeats)
                    print(f"| {config} | {name} | {params['data']['height']}x{params['data']['width']} "
                          f"| {train['batch_size']} | {train['num_workers']} | {r['bare']:.3f} | {r['trainer']:.3f} "
                          f"| {r['overhead']:+.1%} | {r['images_s']:.2f} | {r['data']:.4f} ({r['data_share']:.1%}) "
                          f"| {r['extras']:.2f} ({r['extras_share']:.2%}) |", flush=True)
            finally:
                os.chdir(cwd)


if __name__ == "__main__":
    main()
