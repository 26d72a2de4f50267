"""Train any model of params.yaml with one loop: MTAN's protocol, resumable, on 1..N processes.

Every model, single- or multi-task, goes through the same steps: Adam over the trainable
parameters, StepLR per epoch, a task-weighting strategy (mbmt.training.weighting: DWA, a
loss-based or a gradient method; a single task gets weight 1), a validation pass every ``train.val_every`` epochs, a checkpoint after every epoch.

Reproducibility: the model is built after seeding, the sample order of epoch e comes from a
generator seeded with (seed, e) (DistributedSampler), and augmentation depends only on
(seed, epoch, index), so on CPU two runs with the same settings give identical weights, and a
run resumed from a checkpoint (which holds every generator's state) continues exactly as if it
had never stopped. On CUDA cuDNN picks the fastest, not bitwise reproducible, kernels.

Distributed: started by torchrun with WORLD_SIZE > 1, each process takes train.batch_size /
WORLD_SIZE samples per step, gradients are averaged by DistributedDataParallel, losses and
metrics are summed over ranks, and rank 0 alone writes. The log replays, on resume, from the
history stored in the checkpoint, so it always matches the weights.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from mbmt.config import ModelSettings, TrainSettings
from mbmt.data.dataset import NYUv2Dataset
from mbmt.data.device_split import DeviceSplit
from mbmt.device import to_device
from mbmt.errors import MbmtError, ParamsError
from mbmt.evaluation import accumulate_metrics
from mbmt.evaluation.protocol import VAL_METRIC_BATCH, val_record
from mbmt.io import atomic_path
from mbmt.losses import LOSS_TERMS
from mbmt.metrics import AVERAGINGS
from mbmt.models import create_model, save_model
from mbmt.models.base import load_weights
from mbmt.paths import RUNS_DIR, run_dir, split_file
from mbmt.provenance import ProvenanceLabels
from mbmt.training import distributed
from mbmt.training.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    rng_state,
    run_directory,
    run_settings,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_settings,
)
from mbmt.training.compile import CompileRecord, compile_errors, compiled
from mbmt.training.distributed import DistributedContext, ShardSampler
from mbmt.training.guard import DivergenceChecks, loss_guard
from mbmt.training.live import LIVE_DIR, describe_epoch, end_live, log_epoch, open_live
from mbmt.training.weighting import weighting_from_params
from mbmt.training.weighting.base import NonFiniteGradient

# train.sync_every and train.val_batch_size `auto` on CUDA: at the paper's batch of 2 a step is
# bound by kernel launches and host synchronisation, not by arithmetic (docs/training.md).
CUDA_SYNC_EVERY = 50
CUDA_VAL_BATCH = 16


class CheckpointMismatchError(MbmtError):
    """The run's checkpoint does not fit the model, optimiser or weighting the code now builds."""


@dataclass(frozen=True)
class TrainJob:
    """What a training job is given, unpacked from params by the train stage (mbmt.stages.train):
    the model, params `train` and the labels its provenance records."""

    model: ModelSettings
    train: TrainSettings
    labels: ProvenanceLabels

    @property
    def name(self) -> str:
        return self.model.name


@dataclass
class EpochStats:
    """One epoch's training numbers, reduced over ranks."""

    mean_losses: dict[str, float]  # unweighted, per task: the mean of the step losses
    total_loss: float  # the weighted sum the optimiser saw, averaged over steps
    images: int
    seconds: float


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator for epoch ``epoch`` alone (DataLoader worker seeds), independent of resumption."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class Trainer:
    """Train the model of ``job`` in this process (one rank of ``context``).

    ``fit()`` trains the remaining epochs of the run directory (resuming its checkpoint) and,
    on rank 0, publishes models/<name>/seed<seed>/{model.pt, live/}. ``run_root`` is where run
    directories live (default runs/).
    """

    def __init__(self, job: TrainJob, context: DistributedContext, *, seed: int,
                 run_root: str | Path = RUNS_DIR, restart: bool = False, progress: bool = True):
        self.job, self.name, self.context, self.progress = job, job.name, context, progress
        self.seed = seed
        # The phases' order is part of the result: the generators are seeded before the model is
        # built and again, per rank, once everything is built (nothing in between draws from them).
        self._resolve_settings(job.train)
        seed_everything(self.seed)  # same initial weights on every rank and in every run
        self._prepare_model()
        self._prepare_run_directory(run_root, restart)
        self._place_model()
        self._prepare_optimizer()
        self._prepare_data()
        self.epoch = 0  # completed epochs
        self.history: list[dict[str, Any]] = []  # per epoch: the logged metrics
        self.summary: dict[str, Any] | None = None
        self.train_seconds = 0.0  # training and validation, summed over resumptions
        seed_everything(self.seed + context.rank)  # per-rank streams (dropout) from here on
        if self.checkpoint_path.is_file():
            self.resume(load_checkpoint(self.checkpoint_path))

    # -- construction, in phases ----------------------------------------------------------

    def _resolve_settings(self, train: TrainSettings) -> None:
        """The train settings as this process uses them (``auto`` resolved for its device)."""
        context = self.context
        self.train_settings = train
        self.epochs = train.epochs
        self.local_batch = distributed.per_rank_batch_size(train.batch_size, context.world_size)
        self.amp = bool(train.amp and context.cuda)
        self.channels_last = bool(train.execution.channels_last)
        self.split_on_device = bool(train.split_on_device)
        self.sync_every = resolve_auto(train.sync_every, cpu=1, cuda=CUDA_SYNC_EVERY, context=context)
        self.val_batch = resolve_auto(train.val_batch_size, cpu=self.local_batch, cuda=CUDA_VAL_BATCH,
                                      context=context)
        self.compile_mode = train.compile
        if context.cuda:
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels

    def _prepare_model(self) -> None:
        """The model with its initial weights (ImageNet, or the ST-Nets of init_from)."""
        self.model = create_model(self.job.model, seed=self.seed)
        self.tasks: tuple[str, ...] = tuple(self.model.tasks)

    def _prepare_run_directory(self, run_root: str | Path, restart: bool) -> None:
        """The run's identity, decided on rank 0 and shared, and its directory (emptied by ``restart``)."""
        context, seed = self.context, self.seed
        settings = None
        if context.is_main:
            settings = run_settings(self.job.model, self.job.train, seed=seed, tasks=self.tasks,
                                    device_type=context.device.type, world_size=context.world_size)
        self.settings = distributed.broadcast_object(settings, context)
        self.run_dir = run_directory(self.name, self.settings, run_root)
        self.checkpoint_path = self.run_dir / CHECKPOINT_FILE
        self.checks = DivergenceChecks(self.name, seed, self.epochs, self.tasks, self.checkpoint_path)
        if context.is_main:
            if restart and self.run_dir.exists():
                shutil.rmtree(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_settings(self.run_dir, self.settings)
        distributed.barrier(context)

    def _place_model(self) -> None:
        """The model on the device, in its memory format; wrapped for DistributedDataParallel on N ranks."""
        context = self.context
        self.model.to(context.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.module = self.model  # the bare model: state dicts, validation, publishing
        if context.distributed:
            if context.cuda:
                from timm.layers import convert_sync_batchnorm  # also converts timm's BatchNormAct2d

                self.module = self.model = convert_sync_batchnorm(self.model)
            self.model = DistributedDataParallel(self.module, device_ids=[context.device.index] if context.cuda else None)

    def _prepare_optimizer(self) -> None:
        """Task weighting, the finiteness guard, Adam (the guard's kind), the schedule, the compiled step."""
        train, context = self.train_settings, self.context
        # A single task weighs 1 whatever the strategy; learnable weightings bring their parameters.
        self.weighting = weighting_from_params(self.tasks, train.weighting_keys())
        self.check_weighting_fits()
        self.weighting.prepare(self.module, context.device)
        if self.weighting.host_sync:
            # It reads values back every step anyway (a QP solver); the host guard then also keeps
            # a non-finite step's Jacobian away from the solver. The same results (docs/training.md).
            self.sync_every = 1
        trainable = [p for p in self.module.parameters() if p.requires_grad] + list(self.weighting.parameters())
        self.guard = loss_guard(self.sync_every, context.device, len(self.tasks))
        self.optimizer = torch.optim.Adam(trainable, lr=train.lr, weight_decay=train.weight_decay,
                                          fused=self.guard.fused_adam)
        self.forward = compiled(self.model, self.compile_mode)
        self.compile_record = CompileRecord(self.compile_mode, context.device)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=train.lr_step, gamma=train.lr_gamma)

    def check_weighting_fits(self) -> None:
        """One error naming train.weighting and the fix where the strategy cannot run as set up."""
        name = self.weighting.name
        if self.context.distributed and not self.weighting.distributed:
            raise ParamsError(f"model {self.name}: train.weighting: {name} is not supported on several processes "
                              f"(WORLD_SIZE {self.context.world_size}): {self.weighting.distributed_refusal}; train on "
                              f"one process (one GPU), or use a weighting exact under DDP (dwa, equal, uncertainty, "
                              f"gls, imtl_l, constant)")
        if not self.weighting.compilable and self.compile_mode != "none":
            raise ParamsError(f"model {self.name}: train.weighting: {name} differentiates every task separately, "
                              f"which a torch.compile'd step does not expose; set train.compile: none")

    def _prepare_data(self) -> None:
        """The training and test splits (on the device, or read by DataLoader workers) and the sampler."""
        train, context = self.train_settings, self.context
        augment = train.value("augment")
        if self.split_on_device:
            self.train_set = DeviceSplit(split_file("train"), context.device, augment=augment, seed=self.seed)
            self.val_set = DeviceSplit(split_file("test"), context.device) if train.val_every else None
        else:
            self.train_set = NYUv2Dataset(split_file("train"), augment=augment, seed=self.seed)
            self.val_set = NYUv2Dataset(split_file("test")) if train.val_every else None
        self.train_sampler = DistributedSampler(self.train_set, num_replicas=context.world_size, rank=context.rank,
                                                shuffle=True, seed=self.seed, drop_last=False)

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs; RNG states of every rank, in rank order."""
        return {
            "epoch": self.epoch,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "weighting": self.weighting.state_dict(),
            "rng": distributed.all_gather_object(rng_state(), self.context),
            "history": self.history,
            "settings": self.settings,
            "summary": self.summary,
            "train_seconds": self.train_seconds,
        }

    def resume(self, state: dict[str, Any]) -> None:
        """Load the run's checkpoint, or raise one CheckpointMismatchError naming it and the fix.

        The fingerprint covers the code and the settings, so this fails only when something it
        cannot see changed what the model is (e.g. another timm version) or the file was replaced.
        """
        def mismatch(detail: str) -> CheckpointMismatchError:
            return CheckpointMismatchError(
                f"{self.checkpoint_path}: the checkpoint does not fit model {self.name} as this code builds it "
                f"({detail}); delete {self.run_dir} or run "
                f"`mbmt train {self.name} --seed {self.seed} --restart` to train it afresh")

        load_weights(self.module, state.get("model", {}), mismatch)
        try:
            self.load_training_state(state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise mismatch(" ".join(str(exc).split())) from None

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Everything of a checkpoint but the model's weights: optimiser, schedule, weighting, generators, log."""
        self.optimizer.load_state_dict(with_fused(state["optimizer"], self.optimizer))
        self.scheduler.load_state_dict(state["scheduler"])
        self.weighting.load_state_dict(state["weighting"])
        set_rng_state(state["rng"][self.context.rank])
        self.epoch, self.history, self.summary = state["epoch"], list(state["history"]), state["summary"]
        self.train_seconds = state["train_seconds"]

    @property
    def finished(self) -> bool:
        return self.epoch >= self.epochs

    # -- loops ---------------------------------------------------------------------------

    def train_loader(self, epoch: int) -> Iterable[dict[str, Any]]:
        """The batches of epoch ``epoch``: the same from the device-held split as from the DataLoader."""
        self.train_sampler.set_epoch(epoch)
        if self.split_on_device:
            return self.train_set.batches(self.train_sampler, self.local_batch, epoch)
        self.train_set.set_epoch(epoch)
        return DataLoader(self.train_set, batch_size=self.local_batch, sampler=self.train_sampler,
                          num_workers=self.train_settings.execution.num_workers, persistent_workers=False,
                          pin_memory=self.context.cuda, generator=epoch_generator(self.seed, epoch))

    def steps_in_epoch(self) -> int:
        """The epoch's updates: one per batch, or one per ``batches_per_update`` batches (SDMGrad,
        MoDo), so an epoch is the same batches for every method (train.steps_per_epoch caps batches)."""
        steps = math.ceil(len(self.train_sampler) / self.local_batch)
        cap = self.train_settings.steps_per_epoch
        batches = min(steps, cap) if cap else steps
        per_update = self.weighting.batches_per_update
        if batches < per_update:
            raise ParamsError(f"model {self.name}: train.weighting: {self.weighting.name} draws {per_update} batches "
                              f"per update, and an epoch has {batches} (train.steps_per_epoch {cap}, "
                              f"{len(self.train_sampler)} training images, batch {self.local_batch}); set "
                              f"train.steps_per_epoch to at least {per_update} or null")
        return batches // per_update

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> torch.Tensor:
        """Forward, loss, backward, update; returns the task losses summed over ranks.

        No update is made from a step with a non-finite loss, nor (sync_every > 1) from any later
        step; train_epoch then raises DivergedError on every rank alike (mbmt.training.guard: with
        sync_every 1 the losses come back to the host and the update is skipped there; otherwise
        they stay on the device, where the guard records the first bad step and fused Adam skips
        the update; `check_healthy` raises at the next read-back).
        """
        batch = to_device(batch, self.context.device, self.channels_last)
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are consumed
        with self.compile_errors(), torch.autocast(self.context.device.type, dtype=torch.bfloat16, enabled=self.amp):
            outputs = self.forward(batch["image"])
        losses = self.global_batch_losses(outputs, batch)
        values = torch.stack([losses[task].detach() for task in self.tasks])
        values = distributed.all_reduce_sum(values, self.context)  # equal on every rank: so is the guard
        # The global batch's losses (gls weighs by them); on one process the sum itself, so the
        # launch-bound step gains no kernel (the guards leave this tensor as it is).
        global_losses = values / self.context.world_size if self.context.distributed else values
        values, update = self.guard.before_update(values, step, self.optimizer)
        if not update:
            return values
        self.optimizer.zero_grad(set_to_none=True)
        with self.compile_errors():  # the compiled backward may be compiled only now
            try:
                self.weighting.backward(losses, epoch, global_losses=global_losses)
            except NonFiniteGradient as exc:
                self.diverged(f"{exc} at epoch {epoch + 1} of {self.epochs}, step {step + 1} of "
                              f"{self.steps_in_epoch()}; training stopped before that update")
        self.average_weighting_gradients()
        self.optimizer.step()
        if self.weighting.recomputes_losses:
            self.after_update(batch, epoch)
        return values

    def train_update(self, batches: list[dict[str, Any]], epoch: int, step: int) -> torch.Tensor:
        """One update from the weighting's ``batches_per_update`` consecutive batches (SDMGrad, MoDo):
        each batch's forward and losses, checked by the guard, handed to ``weighting.backward_batch``
        in order (the last fills the ``.grad``), then Adam's step. Returns the batches' mean task
        losses. On one process (refused under DDP), eager (refused under train.compile) and with
        the host guard (host_sync): no update is made from a group with a non-finite loss."""
        self.optimizer.zero_grad(set_to_none=True)
        values = []
        for index, batch in enumerate(batches):
            batch = to_device(batch, self.context.device, self.channels_last)
            with torch.autocast(self.context.device.type, dtype=torch.bfloat16, enabled=self.amp):
                outputs = self.forward(batch["image"])
            losses = self.global_batch_losses(outputs, batch)
            checked, update = self.guard.before_update(torch.stack([losses[task].detach() for task in self.tasks]),
                                                       step, self.optimizer)
            values.append(checked)
            if not update:
                return checked
            try:
                self.weighting.backward_batch(index, losses, epoch)
            except NonFiniteGradient as exc:
                self.diverged(f"{exc} at epoch {epoch + 1} of {self.epochs}, step {step + 1} of "
                              f"{self.steps_in_epoch()}; training stopped before that update")
        self.optimizer.step()
        return torch.stack(values).mean(dim=0)

    def after_update(self, batch: dict[str, Any], epoch: int) -> None:
        """The batch's losses again, after the update, for a weighting that learns from their change
        (FAMO): without gradients and in training mode, as FAMO's own NYUv2 trainer recomputes them."""
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad(), self.compile_errors(), \
                torch.autocast(self.context.device.type, dtype=torch.bfloat16, enabled=self.amp):
            outputs = self.forward(batch["image"])
        with torch.no_grad():
            losses = self.global_batch_losses(outputs, batch)
        self.weighting.after_update(torch.stack([losses[task].detach() for task in self.tasks]), epoch)

    def average_weighting_gradients(self) -> None:
        """Learned task weights live outside the DDP module: average their gradients over ranks
        as DDP does the model's (each rank's loss is its share of the global batch's)."""
        if not self.context.distributed:
            return
        for parameter in self.weighting.parameters():
            if parameter.grad is not None:
                parameter.grad = distributed.all_reduce_sum(parameter.grad, self.context) / self.context.world_size

    def compile_errors(self):
        """A failure of torch.compile on this training's step as one CompileError (mbmt.training.compile)."""
        return compile_errors(self.compile_mode, self.name)

    def global_batch_losses(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Each task's loss over the valid pixels of the global batch (all ranks' shares together).

        A rank's loss is its sum over its valid pixels divided by the valid pixels of every rank,
        times the world size: DDP averages gradients over ranks, so the update is that of the
        global batch on one process (exact up to float summation order), even when ranks hold
        different numbers of valid pixels. On one process it is mbmt.losses' per-batch mean.
        """
        terms = {task: LOSS_TERMS[task](outputs[task], batch[task]) for task in self.tasks}
        counts = distributed.all_reduce_sum(torch.stack([count for _, count in terms.values()]), self.context)
        world = self.context.world_size
        return {task: total / count.clamp(min=1) * world for (task, (total, _)), count in zip(terms.items(), counts)}

    def train_epoch(self, epoch: int, weights: dict[str, float]) -> EpochStats:
        self.model.train()
        steps = self.steps_in_epoch()
        # Summed where the guard leaves the losses: on the host when read back every step, else on the device.
        loss_sum = torch.zeros(len(self.tasks), dtype=torch.float64, device=self.guard.loss_device(self.context.device))
        images, start = 0, time.perf_counter()
        bar = tqdm(total=steps, desc=f"{self.name} epoch {epoch + 1}/{self.epochs}", unit="step",
                   disable=not (self.progress and self.context.is_main), leave=False, dynamic_ncols=True)
        with bar:
            per_update = self.weighting.batches_per_update
            loader = self.train_loader(epoch)
            for step, batch in enumerate(loader if per_update == 1 else batch_groups(loader, per_update)):
                if step == steps:
                    break
                if per_update == 1:
                    values = self.train_step(batch, epoch, step) / self.context.world_size
                else:  # SDMGrad, MoDo: a group of batches per update (one process)
                    values = self.train_update(batch, epoch, step)
                loss_sum += values.double()
                images += (len(batch["index"]) if per_update == 1 else sum(len(one["index"]) for one in batch)) \
                    * self.context.world_size
                if (step + 1) % self.sync_every == 0 or step + 1 == steps:
                    self.check_healthy(epoch, steps)
                    total = sum(weights[task] * float(v) for task, v in zip(self.tasks, values))
                    bar.set_postfix(loss=f"{total:.4f}", img_s=f"{images / (time.perf_counter() - start):.1f}",
                                    refresh=False)
                bar.update(1)
        mean = (loss_sum / steps).tolist()
        mean_losses = dict(zip(self.tasks, mean))
        return EpochStats(mean_losses=mean_losses,
                          total_loss=sum(weights[task] * mean_losses[task] for task in self.tasks),
                          images=images, seconds=time.perf_counter() - start)

    def check_healthy(self, epoch: int, steps: int) -> None:
        """The guard's read-back (every sync_every steps): raise if a step since the last one had a
        non-finite loss. That step and every later one made no update."""
        bad = self.guard.first_bad()
        if bad is not None:
            step, values = bad
            self.checks.losses(values / self.context.world_size, epoch, step, steps, self.epoch)

    def diverged(self, what: str) -> None:
        """Raise DivergedError: ``what`` happened (mbmt.training.guard.DivergenceChecks says what is kept)."""
        raise self.checks.error(what, self.epoch)

    def validate(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """Metrics of the test split (DESIGN §3 keys), summed over ranks' shards, in both averagings:
        {averaging: {task: {metric: value}}}; the batch averages over MTAN's test batches (VAL_METRIC_BATCH)."""
        # Ranks take whole batches of VAL_METRIC_BATCH images, so the batches are those of one process.
        sampler = ShardSampler(len(self.val_set), self.context.rank, self.context.world_size, block=VAL_METRIC_BATCH)
        if self.split_on_device:
            loader = self.val_set.batches(sampler, self.val_batch)
        else:
            loader = DataLoader(self.val_set, batch_size=self.val_batch, sampler=sampler,
                                num_workers=self.train_settings.execution.num_workers, pin_memory=self.context.cuda,
                                generator=torch.Generator().manual_seed(self.seed))  # never the global RNG
        accumulator = accumulate_metrics(self.module, loader, self.tasks, device=self.context.device,
                                         channels_last=self.channels_last, batch_images=VAL_METRIC_BATCH)
        accumulator.all_reduce()
        return {averaging: accumulator.compute(averaging) for averaging in AVERAGINGS}

    # -- the run -------------------------------------------------------------------------

    def epoch_record(self, epoch: int, weights: dict[str, float], lr: float, stats: EpochStats,
                     val: dict[str, dict[str, dict[str, float | None]]] | None) -> dict[str, float]:
        record = {f"train/loss/{task}": loss for task, loss in stats.mean_losses.items()}
        record["train/loss/total"] = stats.total_loss
        record.update({f"train/weight/{task}": weight for task, weight in weights.items()})
        record["train/lr"] = lr
        record["train/images_per_second"] = stats.images / stats.seconds
        record.update(val_record(val or {}))
        return record

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, publish the model, return the training summary."""
        live = open_live(self.run_dir / LIVE_DIR, self.history) if self.context.is_main else None
        for epoch in range(self.epoch, self.epochs):
            start = time.perf_counter()
            self.weighting.start_epoch(epoch)
            lr = self.scheduler.get_last_lr()[0]
            stats = self.train_epoch(epoch, self.weighting.weights(epoch))
            # Per-step weights (gls, gradient methods) are known only now: their epoch mean.
            weights = self.weighting.logged_weights(epoch)
            stats.total_loss = sum(weights.get(task, 1.0) * stats.mean_losses[task] for task in self.tasks)
            distributed.broadcast_buffers(self.module, self.context)  # every rank validates rank 0's model
            self.checks.state(self.module.state_dict(), epoch, self.epoch)
            self.weighting.record(epoch, stats.mean_losses)
            self.scheduler.step()
            every = self.train_settings.val_every
            val = self.validate() if every and (epoch + 1) % every == 0 else None
            if val is not None:
                self.checks.metrics(val, epoch, self.epoch)
            record = self.epoch_record(epoch, weights, lr, stats, val)
            self.history.append({"epoch": epoch, "metrics": record})
            self.epoch = epoch + 1
            self.train_seconds += time.perf_counter() - start
            if self.finished and self.context.is_main:
                self.summary = self.training_summary()
            state = self.state_dict()  # collective (RNG states of every rank)
            if live is not None:
                log_epoch(live, record)
                save_checkpoint(self.checkpoint_path, state)
                tqdm.write(describe_epoch(self.name, epoch, self.epochs, record))
        if live is not None:
            end_live(live)
            self.publish()
        distributed.barrier(self.context)
        return self.summary

    def training_summary(self) -> dict[str, Any]:
        from mbmt.provenance import collect_for

        attrs = self.train_set.attrs
        summary = {
            "input_size": [int(attrs["height"]), int(attrs["width"])],
            "epochs": self.epochs,
            "train_seconds": round(self.train_seconds, 1),
            "final": self.history[-1]["metrics"],
            "run": {"directory": str(self.run_dir), "settings": self.settings},
            "world_size": self.context.world_size,
            "compile": self.compile_record.summary(),
            "provenance": collect_for(self.job.labels, str(self.context.device)),
        }
        # Plain JSON types only (torch.__version__ is a str subclass): files load with weights_only.
        return json.loads(json.dumps(summary))

    def publish(self) -> None:
        """models/<name>/seed<seed>/{model.pt, live/}, replaced together in one rename."""
        with atomic_path(run_dir(self.name, self.seed), directory=True) as tmp:
            save_model(tmp / "model.pt", self.module, settings=self.job.model, extra=self.summary)
            shutil.copytree(self.run_dir / LIVE_DIR, tmp / LIVE_DIR)


def with_fused(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Optimiser state ``saved`` with ``optimizer``'s own ``fused`` flags (this run's train.sync_every)
    in its parameter groups, for ``optimizer.load_state_dict``.

    load_state_dict places each parameter's ``step`` by the *loaded* groups' ``fused`` flag (torch/optim/
    optimizer.py, _process_value_according_to_param_policy): on the parameter's device for fused Adam,
    on the host otherwise, and it takes the flag itself from them too. sync_every is not part of the run's
    identity, so a checkpoint may come from the other kind of Adam: with its flag, fused Adam on CUDA would
    get host ``step`` tensors (and fail), plain Adam device ones (a read-back per parameter and step).
    """
    own = {index: group["fused"] for index, group in enumerate(optimizer.param_groups)}
    groups = [{**group, "fused": own.get(index, group.get("fused"))} for index, group in enumerate(saved["param_groups"])]
    return {**saved, "param_groups": groups}


def batch_groups(batches: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups of ``size`` batches, in the loader's order; a last, smaller group is left out."""
    group: list[dict[str, Any]] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


def resolve_auto(value: int | str, *, cpu: int, cuda: int, context: DistributedContext) -> int:
    """A train setting that may be `auto`: ``cpu`` (the exact computation) on CPU, ``cuda`` on CUDA."""
    if value != "auto":
        return int(value)
    return cuda if context.cuda else cpu


def train(job: TrainJob, *, seed: int, restart: bool = False, progress: bool = True,
          run_root: str | Path = RUNS_DIR) -> dict[str, Any]:
    """Train (or resume, or just republish) the model of ``job`` with ``seed``; returns its training summary."""
    context = distributed.setup(job.train.execution.device)
    try:
        trainer = Trainer(job, context, seed=seed, run_root=run_root, restart=restart, progress=progress)
        return trainer.fit()
    finally:
        distributed.teardown(context)
