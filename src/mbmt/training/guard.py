"""The finiteness guard of the training step: no update is made from a step whose loss is not
finite, nor from any later step, and the trainer stops at the next read-back of the losses
(``DivergenceChecks``, which also checks the weights after an epoch and the validation metrics,
and says in one error what happened, what is kept and what to do).

Two implementations of one job, chosen by train.sync_every (Trainer reads the losses back every
``sync_every`` steps):

- ``HostGuard`` (sync_every 1): the step's losses come back to the host, which skips the update
  itself; plain Adam.
- ``DeviceGuard`` (sync_every > 1): the losses stay on the device, where flags record the first
  bad step, and fused Adam skips every update from it on (its ``found_inf``), without a
  synchronisation; the same algorithm as plain Adam, other rounding.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import torch

from mbmt.device import non_finite_tensors
from mbmt.errors import MbmtError
from mbmt.evaluation import non_finite_metrics


class DivergedError(MbmtError):
    """A loss, weight, buffer or validation metric is no longer finite. Raised before the update
    or the checkpoint of that epoch, so the last good checkpoint stays and nothing is published."""


class LossGuard(ABC):
    """What the trainer asks of the guard: which Adam to build, where to sum the losses, whether a
    step may update, and, at a read-back, the first bad step since."""

    # torch.optim.Adam's ``fused`` argument for this guard.
    fused_adam: bool | None

    @abstractmethod
    def loss_device(self, device: torch.device) -> torch.device | str:
        """Where the step losses are summed: where this guard leaves them."""

    @abstractmethod
    def before_update(self, values: torch.Tensor, step: int, optimizer: torch.optim.Optimizer
                      ) -> tuple[torch.Tensor, bool]:
        """The step's task losses (summed over ranks, so equal on every rank), before its update:
        (the losses where this guard keeps them, whether the trainer makes the update)."""

    @abstractmethod
    def first_bad(self) -> tuple[int, torch.Tensor] | None:
        """At a read-back: (the first step with a non-finite loss, its losses on the host), or None."""


class HostGuard(LossGuard):
    """sync_every 1: the losses are read back every step and a bad step's update skipped on the host."""

    fused_adam = None

    def __init__(self) -> None:
        self.bad: tuple[int, torch.Tensor] | None = None

    def loss_device(self, device: torch.device) -> str:
        return "cpu"

    def before_update(self, values, step, optimizer):
        values = values.cpu()  # the one host synchronisation of the step
        finite = bool(torch.isfinite(values).all())
        if not finite and self.bad is None:
            self.bad = (step, values)
        return values, finite

    def first_bad(self):
        return self.bad


class DeviceGuard(LossGuard):
    """sync_every > 1: flags on the device record the first bad step; fused Adam skips the updates."""

    fused_adam = True

    def __init__(self, device: torch.device, tasks: int) -> None:
        # False from the first step with a non-finite loss on.
        self.healthy = torch.ones((), dtype=torch.bool, device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.first_bad_values = torch.zeros(tasks, device=device)

    def loss_device(self, device: torch.device) -> torch.device:
        return device

    def before_update(self, values, step, optimizer):
        newly_bad = self.healthy & ~torch.isfinite(values).all()
        self.first_bad_step.copy_(torch.where(newly_bad, step, self.first_bad_step))
        self.first_bad_values.copy_(torch.where(newly_bad, values, self.first_bad_values))
        self.healthy &= ~newly_bad
        optimizer.found_inf = (~self.healthy).float()
        return values, True

    def first_bad(self):
        if bool(self.healthy):  # the read-back
            return None
        return int(self.first_bad_step), self.first_bad_values.cpu()


def loss_guard(sync_every: int, device: torch.device, tasks: int) -> LossGuard:
    """The guard for reading the losses back every ``sync_every`` steps."""
    return HostGuard() if sync_every == 1 else DeviceGuard(device, tasks)


class DivergenceChecks:
    """The finiteness checks of one training run (model ``model``, ``seed``, ``epochs``, ``tasks``,
    its checkpoint at ``checkpoint_path``), each raising DivergedError. ``completed``: the epochs
    completed (and checkpointed) when the check runs."""

    def __init__(self, model: str, seed: int, epochs: int, tasks: tuple[str, ...], checkpoint_path: Path):
        self.model, self.seed, self.epochs, self.tasks = model, seed, epochs, tasks
        self.checkpoint_path = checkpoint_path

    def losses(self, values: torch.Tensor, epoch: int, step: int, steps: int, completed: int) -> None:
        """The step's task losses (on the host)."""
        if torch.isfinite(values).all():
            return
        task, value = next((t, float(v)) for t, v in zip(self.tasks, values) if not math.isfinite(v))
        raise self.error(f"the {task} loss is {value} at epoch {epoch + 1} of {self.epochs}, step {step + 1} of "
                         f"{steps}; training stopped before that update", completed)

    def state(self, state_dict: dict[str, torch.Tensor], epoch: int, completed: int) -> None:
        """Weights and buffers after an epoch: in training mode BatchNorm normalises with batch
        statistics, so its running statistics can overflow while every loss stays finite."""
        bad = non_finite_tensors(state_dict)
        if bad:
            raise self.error(f"after epoch {epoch + 1} of {self.epochs} weights or buffers are not finite ({len(bad)} "
                             f"tensors, e.g. {', '.join(bad[:3])}); training stopped", completed)

    def metrics(self, val: dict[str, dict[str, dict[str, float | None]]], epoch: int, completed: int) -> None:
        """The validation metrics after an epoch, in both averagings."""
        bad = [*non_finite_metrics(val["pixel"]), *(f"batch-averaged {m}" for m in non_finite_metrics(val["batch"]))]
        if bad:
            raise self.error(f"the validation metrics after epoch {epoch + 1} of {self.epochs} are not finite "
                             f"({', '.join(bad[:3])}); training stopped", completed)

    def error(self, what: str, completed: int) -> DivergedError:
        """DivergedError: ``what`` happened; what is kept and what to do."""
        if self.checkpoint_path.is_file():
            kept = (f"the last good checkpoint {self.checkpoint_path} (after epoch {completed}) is kept; nothing was "
                    f"published. Check the data or lower train.lr, or re-run `mbmt train {self.model} --seed "
                    f"{self.seed}` to resume from it (add --restart to start over)")
        else:
            kept = "no checkpoint had been written yet; nothing was published. Check the data or lower train.lr"
        return DivergedError(f"model {self.model}: {what} and {kept}")
