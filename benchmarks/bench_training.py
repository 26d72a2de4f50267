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
noise), the per-epoch extras (checkpoint + DVCLive log) as a share of a full NYUv2 epoch
(795 images), validation images/s and, on CUDA, the peak GPU memory of the training. Weights are
random (no ImageNet download): speed does not depend on them.

It then estimates, from these speeds, what the configuration's full protocol costs
(benchmarks/protocol_estimate.py): each model's training (its epochs of the whole training split
and its validations) and evaluation, and the whole DAG's wall time one job at a time and under
the default profile (profiles/default/config.yaml: as many jobs at once as its gpu_mem_gb allows,
or --gpu-mem-gb), assuming that jobs sharing the GPU do not slow each other down unless
--slowdown says by how much (benchmarks/gpu_check.sh measures it).

With ``--study FILE`` (a study preset, config/studies/*.yaml, merged over each configuration) it
measures every job of the study's variants instead (mbmt.plan.Plan.study_members: the main models the
variants share and the jobs they add, each with its variant's params) and estimates the study's
protocol: all its jobs, and the jobs it adds beyond the main models.

    python benchmarks/bench_training.py [--configs paper demo tiny] [--models st_ss mtnet ...]
        [--study config/studies/backbones.yaml]
        [--steps 4] [--repeats 3] [--num-workers N] [--device cpu|cuda] [--threads N]
        [--amp on|off] [--compile none|default|reduce-overhead] [--sync-every auto|N]
        [--gpu-mem-gb GB] [--slowdown F]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml

from mbmt.config import deep_merge, load_params, model_settings, validate
from mbmt.plan import Plan
from mbmt.data.hdf5 import MODALITIES, RENDERED, SplitWriter
from mbmt.data.synthetic import generate
from mbmt.device import to_device
from mbmt.losses import compute_losses
from mbmt.models import create_model, save_model
from mbmt.paths import model_file, split_file
from mbmt.training import distributed
from mbmt.training.checkpoint import save_checkpoint
from mbmt.stages.train import unpack as train_job
from mbmt.training.live import LIVE_DIR, log_epoch, open_live
from mbmt.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol_estimate import (  # noqa: E402
    NYUV2_TEST,
    NYUV2_TRAIN,
    ModelSpeed,
    dag_seconds,
    duration,
    profile_gpu_memory,
    training_seconds,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"paper": [REPO / "params.yaml"], "demo": [REPO / "params.yaml", REPO / "config" / "demo.yaml"],
           "tiny": [REPO / "params.yaml", REPO / "tests" / "tiny.yaml"]}
DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"
MODELS = ("st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial", "mbmt_full_pretrained", "mbmt_full_scratch", "mtan")


def benchmark_params(config: str, steps: int, num_workers: int | None, device: str, train: dict | None = None,
                     study: Path | None = None) -> dict:
    """The configuration (and the ``study`` preset) with random weights and epochs of ``steps`` steps
    (fit() is never called: the timed blocks call train_epoch and validate themselves), and the
    ``train`` settings given."""
    params = load_params(config_files(config, study))
    overrides = {
        "train": {"steps_per_epoch": steps, "val_every": 1, "epochs": 1000, "device": device},
        "models": {name: {"pretrained": False} for name, entry in params["models"].items() if "pretrained" in entry},
    }
    if num_workers is not None:
        overrides["train"]["num_workers"] = num_workers
    overrides["train"].update(train or {})
    params = deep_merge(params, overrides)
    validate(params, source=f"{config} benchmark settings")
    return params


def config_files(config: str, study: Path | None = None) -> list[Path]:
    return CONFIGS[config] + ([Path(study)] if study else [])


def study_jobs(params: dict) -> list[str]:
    """Every training of the studies' variants, in DAG order (mbmt.plan.Plan.trained_jobs): a job
    that evaluates another job's training (a variant changing only `evaluate`) trains nothing."""
    plan = Plan(params)
    members = {plan.training(job) for name in plan.studies for jobs in plan.study_members(name).values()
               for job in jobs.values()}
    return [name for name in plan.trained_jobs if name in members]


def write_project(params: dict, images: int) -> None:
    """Synthetic splits in the current directory, and random ST-Nets for MBMT-Net's init_from."""
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    height, width = params["data"]["height"], params["data"]["width"]
    for split, count in (("train", images), ("test", images)):
        with SplitWriter(split_file(split), count, height, width, split=split, source="synthetic",
                         modalities=dict.fromkeys(MODALITIES, RENDERED)) as writer:
            for index, sample in enumerate(generate(count, height, width, 0, split=split)):
                writer.add(sample, f"{split}[{index}]")
    plan = Plan(params)
    for name in ("st_ss", "st_de", "st_snp", *(job for job in plan.trained_jobs
                                                if job in plan.study_jobs and len(plan.model_tasks(job)) == 1)):
        model = model_settings(plan.job_params(name), name)
        save_model(model_file(name, params["seeds"][0]), create_model(model, load_init=False), settings=model)


def bare_step(model, optimizer: torch.optim.Optimizer, batch: dict, *, device_type: str, amp: bool,
              cuda_graphs: bool = False) -> None:
    """One bare training step, as this benchmark and bench_memory.py measure it: forward (under bf16
    autocast where ``amp``), the summed task losses, backward, the optimiser's step; nothing read back.
    ``cuda_graphs``: the model is compiled with reduce-overhead (its previous outputs are consumed).
    Its outputs and loss are freed on return, as when Trainer.train_step returns: the next forward
    starts with the same free memory."""
    if cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        outputs = model(batch["image"])
    total = sum(compute_losses({t: o.float() for t, o in outputs.items()}, batch).values())
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()


def bare_steps(trainer: Trainer, batch: dict, steps: int) -> float:
    """Seconds per bare_step on a batch in memory (compiled as the trainer's step is, under train.compile)."""
    trainer.model.train()
    sync = torch.cuda.synchronize if trainer.context.cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        bare_step(trainer.forward, trainer.optimizer, batch, device_type=trainer.context.device.type,
                  amp=trainer.amp, cuda_graphs=trainer.compile_mode == "reduce-overhead")
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
    """Seconds per batch of the training batches alone (reading or gathering, augmenting, collating): the part
    of the trainer's step that the bare step does not do, measured without the model's noise."""
    sync = torch.cuda.synchronize if trainer.context.cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for step, _ in enumerate(trainer.train_loader(epoch)):
        if step + 1 == steps:
            break
    sync()  # batches of a device-held split are built by the GPU, asynchronously
    return (time.perf_counter() - start) / steps


def epoch_extras(trainer: Trainer, live, record: dict) -> float:
    """Seconds of what fit() adds once per epoch: the checkpoint and the log."""
    start = time.perf_counter()
    save_checkpoint(trainer.checkpoint_path, trainer.state_dict())
    log_epoch(live, record)
    return time.perf_counter() - start


def validation_image_seconds(trainer: Trainer, repeats: int) -> float:
    """Seconds per test image of `Trainer.validate` (the fastest of ``repeats`` passes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.validate()
        times.append((time.perf_counter() - start) / len(trainer.val_set))
    return min(times)


def measure(name: str, params: dict, context, steps: int, repeats: int) -> dict:
    if context.cuda:
        gc.collect()  # the previous model's memory back to the allocator, then count from here
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(context.device)
    trainer = Trainer(train_job(Plan(params).job_params(name), name), context, seed=params["seeds"][0], progress=False)
    batch = to_device(next(iter(trainer.train_loader(0))), context.device, trainer.channels_last)
    live = open_live(trainer.run_dir / LIVE_DIR, trainer.history)
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
    memory = torch.cuda.max_memory_allocated(context.device) / 2**30 if context.cuda else None
    val_image = validation_image_seconds(trainer, repeats)
    # The fastest block of each: interference from other processes only ever adds time.
    bare_s, full_s = min(bare), min(full)
    batch_size = params["train"]["batch_size"]
    return {"bare": bare_s, "trainer": full_s, "overhead": full_s / bare_s - 1, "images_s": batch_size / full_s,
            "data": data, "data_share": data / bare_s,
            "extras": extras, "extras_share": extras / (NYUV2_TRAIN / batch_size * full_s),
            "val_images_s": 1 / val_image, "memory_gib": memory,
            "speed": ModelSpeed(step_s=full_s, val_image_s=val_image, extras_s=extras)}


def split_sizes(params: dict) -> tuple[int, int]:
    """(train, test) images of the configuration's dataset."""
    data = params["data"]
    if data["source"] == "synthetic":
        return data["synthetic"]["train_size"], data["synthetic"]["test_size"]
    return NYUV2_TRAIN, NYUV2_TEST


def print_estimate(config: str, params: dict, speeds: dict[str, ModelSpeed], gpu_memory: float | None,
                   requests: dict[str, float], slowdown: float) -> None:
    """The configuration's full protocol, from the measured speeds (benchmarks/protocol_estimate.py)."""
    train, evaluate = params["train"], params["evaluate"]
    train_images, test_images = split_sizes(params)
    trainings = {name: training_seconds(speed, train, train_images, test_images) for name, speed in speeds.items()}
    evaluations = {name: test_images * speed.val_image_s for name, speed in speeds.items()}
    plan = Plan(params)
    init_from = {name: [dep for dep in plan.init_from(name) if dep in speeds] for name in speeds}
    print(f"\nEstimated full protocol, {config}: {train['epochs']} epochs of {train_images} images in batches of "
          f"{train['batch_size']}, validation every {train['val_every'] or 'never'} epoch(s) on {test_images} "
          f"images, evaluation on {test_images} (at the validation's speed; evaluate.batch_size "
          f"{evaluate['batch_size']}).\n")
    print("| model | train img/s | val img/s | training (h:mm:ss) | evaluation |")
    print("| --- | --- | --- | --- | --- |")
    for name, speed in speeds.items():
        print(f"| {name} | {train['batch_size'] / speed.step_s:.2f} | {1 / speed.val_image_s:.2f} "
              f"| {duration(trainings[name])} | {duration(evaluations[name])} |")
    parts = [("Whole DAG", list(speeds))]
    if plan.studies:
        parts = [("The study's jobs", list(speeds)),
                 ("The jobs the study adds beyond the main models", [n for n in speeds if n in plan.study_jobs])]
    for title, names in parts:
        times = {name: trainings[name] for name in names}, {name: evaluations[name] for name in names}
        deps = {name: [dep for dep in init_from[name] if dep in names] for name in names}
        serial = dag_seconds(*times, deps)
        print(f"\n{title} ({len(names)} trainings and evaluations; data preparation and the report not included):")
        print(f"- one job at a time: {duration(serial)}")
        if gpu_memory is None:
            print("- the profile runs one job at a time")
            continue
        shared = dag_seconds(*times, deps, gpu_memory, requests, slowdown)
        assumption = (f"each job {slowdown:g}x slower when sharing the GPU" if slowdown != 1
                      else "if jobs sharing the GPU did not slow each other down: a lower bound")
        print(f"- default profile, gpu_mem_gb={gpu_memory:g} (trainings {requests['train']:g}, evaluations "
              f"{requests['evaluate']:g} each): {duration(shared)}, {assumption}")


def auto_or_int(value: str) -> str | int:
    return value if value == "auto" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--study", type=Path, help="a study preset (config/studies/*.yaml): measure its jobs instead "
                        "of --models and estimate the study's protocol")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed block (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating bare/trainer blocks, the fastest "
                        "of each counts (default 3)")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default: the configuration's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads; 1 on a shared machine "
                        "avoids OpenMP oversubscription stalls)")
    parser.add_argument("--amp", choices=("on", "off"), help="bf16 autocast on CUDA (default: the configuration's)")
    parser.add_argument("--compile", choices=("none", "default", "reduce-overhead"),
                        help="train.compile (default: the configuration's)")
    parser.add_argument("--sync-every", type=auto_or_int,
                        help="train.sync_every: auto or a number of steps (default: the configuration's)")
    parser.add_argument("--gpu-mem-gb", type=float, help="the GPU memory the estimate's scheduler shares "
                        "(default: profiles/default/config.yaml's gpu_mem_gb)")
    parser.add_argument("--slowdown", type=float, default=1.0, help="how much slower each job runs when jobs "
                        "share the GPU, for the estimate (default 1: not at all, a lower bound)")
    args = parser.parse_args()
    gpu_memory, requests = profile_gpu_memory(DEFAULT_PROFILE)
    if args.gpu_mem_gb is not None:
        gpu_memory = args.gpu_mem_gb
    if args.threads:
        torch.set_num_threads(args.threads)

    context = distributed.setup(args.device)
    print(f"device: {args.device} ({torch.get_num_threads()} threads), steps per block {args.steps}, "
          f"repeats {args.repeats}, torch {torch.__version__}\n")
    settings = {"amp": None if args.amp is None else args.amp == "on", "compile": args.compile,
                "sync_every": args.sync_every}
    overrides = {key: value for key, value in settings.items() if value is not None}
    for config in args.configs:
        params = benchmark_params(config, args.steps, args.num_workers, args.device, overrides, args.study)
        names = study_jobs(params) if args.study else args.models
        train = params["train"]
        print(f"{config}: train.compile {train['compile']}, sync_every {train['sync_every']}, split_on_device "
              f"{train['split_on_device']}, val_batch_size {train['val_batch_size']}\n")
        print("| config | model | size | batch | workers | amp | bare s/step | trainer s/step | overhead | train img/s "
              "| data s/step (share of bare) | checkpoint+log s/epoch (share of a 795-image epoch) | val img/s "
              "| peak GPU memory GiB |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        with tempfile.TemporaryDirectory(prefix=f"bench_training_{config}_") as root:
            cwd = os.getcwd()
            os.chdir(root)
            try:
                write_project(params, train["batch_size"] * args.steps)
                speeds = {}
                for name in names:
                    r = measure(name, params, context, args.steps, args.repeats)
                    speeds[name] = r["speed"]
                    memory = "n/a" if r["memory_gib"] is None else f"{r['memory_gib']:.2f}"
                    amp = "bf16" if train["amp"] and context.cuda else "off"
                    print(f"| {config} | {name} | {params['data']['height']}x{params['data']['width']} "
                          f"| {train['batch_size']} | {train['num_workers']} | {amp} "
                          f"| {r['bare']:.3f} | {r['trainer']:.3f} "
                          f"| {r['overhead']:+.1%} | {r['images_s']:.2f} | {r['data']:.4f} ({r['data_share']:.1%}) "
                          f"| {r['extras']:.2f} ({r['extras_share']:.2%}) | {r['val_images_s']:.2f} | {memory} |",
                          flush=True)
            finally:
                os.chdir(cwd)
        # The configuration as the workflow runs it, not the benchmark's short epochs.
        print_estimate(config, load_params(config_files(config, args.study)), speeds, gpu_memory, requests,
                       args.slowdown)
        print(flush=True)


if __name__ == "__main__":
    main()
