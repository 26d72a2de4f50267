"""What the trainer asks of a multi-task weighting strategy (`TaskWeighting`).

The trainer calls only these methods, so a strategy is a subclass registered in
`mbmt.training.weighting.WEIGHTINGS` (and named in the schema's train.weighting), with no change
to the trainer:

- ``prepare(module, device)``: once, after the model is placed (learnable weights move to the
  device; gradient methods find the shared parameters);
- ``backward(losses, epoch, global_losses=...)``: fill the ``.grad`` of every trainable tensor for
  one step. Loss-based strategies back-propagate ``total_loss(losses, epoch)``; gradient methods
  combine the tasks' gradients on the shared parameters;
- ``after_update(losses, epoch)``: where ``recomputes_losses`` (FAMO), the batch's losses again
  after the optimiser's step;
- ``backward_batch(index, losses, epoch)``: instead of ``backward``, where ``batches_per_update``
  is more than 1 (SDMGrad, MoDo): the trainer draws that many consecutive batches of the epoch's
  order for one update and hands their losses over one batch at a time, in order; the last call
  fills the ``.grad``;
- ``parameters()``: learnable tensors the trainer adds to its optimiser (uncertainty weighting);
- ``weights(epoch)``: the lambda_k known before epoch ``epoch`` (the progress line);
- ``logged_weights(epoch)``: the lambda_k the epoch is logged with: ``weights(epoch)`` for fixed
  per-epoch weights, the mean over the epoch's steps where the weights change every step;
- ``record(epoch, mean_losses)``: the epoch's mean training loss of each task, after the epoch;
- ``state_dict()`` / ``load_state_dict()``: history and learned or solver state, saved in the
  checkpoint, so a resumed run continues exactly as the uninterrupted run would.

Class attributes tell the trainer what a strategy needs: ``host_sync`` (it reads values back to
the host every step, e.g. a QP solver: the trainer then uses the host guard, sync_every 1),
``distributed`` (it is correct under DistributedDataParallel) and ``compilable`` (it works on a
torch.compile'd step).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from mbmt.errors import MbmtError


class NonFiniteGradient(MbmtError):
    """The step's losses are finite but a task's gradient is not: the trainer stops with the guard's
    divergence error (no update is made from that step)."""


class TaskWeighting(ABC):
    """Base strategy: keeps the history of mean losses; subclasses define `weights`."""

    name: ClassVar[str]
    # One line for docs and errors: what the strategy does and where it comes from.
    summary: ClassVar[str] = ""
    # The strategy's options: constructor option -> its default. params.yaml gives the values
    # under train.weighting_options.<name> (DWA's temperature: train.dwa_temperature).
    defaults: ClassVar[dict[str, Any]] = {}
    # The train keys options_from_train reads (the run identity records the options themselves).
    params_keys: ClassVar[tuple[str, ...]] = ("weighting_options",)
    host_sync: ClassVar[bool] = False
    distributed: ClassVar[bool] = True
    # Why it is refused under DDP where ``distributed`` is False (the trainer's one error says it).
    distributed_refusal: ClassVar[str] = "each rank would balance its own share of the batch's gradients, not the global batch's"
    compilable: ClassVar[bool] = True  # its backward works on a torch.compile'd step
    # It learns from the batch's losses recomputed after the update (FAMO): the trainer then calls
    # after_update once per step, at the cost of one more forward pass.
    recomputes_losses: ClassVar[bool] = False
    # Independent mini-batches one update draws (SDMGrad, MoDo: 3, from the papers' stochastic
    # algorithms): the trainer then calls backward_batch once per batch instead of backward.
    batches_per_update: ClassVar[int] = 1

    def __init__(self, tasks: Iterable[str]):
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError("a task weighting needs at least one task")
        self.history: dict[int, dict[str, float]] = {}
        # Per-step weights summed over the current epoch (strategies whose weights change per step).
        self._step_weights: torch.Tensor | None = None
        self._steps = 0

    @classmethod
    def options_from_train(cls, train: Mapping) -> dict[str, Any]:
        """The constructor options as params["train"] sets them (each option's default where unset)."""
        given = (train.get("weighting_options") or {}).get(cls.name) or {}
        return {**cls.defaults, **given}

    @abstractmethod
    def weights(self, epoch: int) -> dict[str, float]:
        """lambda_k as known before epoch ``epoch``."""

    def prepare(self, module: torch.nn.Module, device: torch.device) -> None:
        """Called once the model is on ``device``; nothing to do for a fixed strategy."""

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        weights = self.weights(epoch)
        return sum(weights[task] * losses[task] for task in self.tasks)

    def backward(self, losses: Mapping[str, torch.Tensor], epoch: int, *,
                 global_losses: torch.Tensor | None = None) -> None:
        """Accumulate this step's gradients. ``global_losses``: the tasks' losses over the global
        batch, detached (equal on every rank), for strategies whose weights depend on them."""
        self.total_loss(losses, epoch).backward()

    def backward_batch(self, index: int, losses: Mapping[str, torch.Tensor], epoch: int) -> None:
        """Batch ``index`` (0 .. batches_per_update - 1) of one update, its task losses with their
        graph; called only where ``batches_per_update`` > 1."""
        raise NotImplementedError(f"weighting {self.name} draws one batch per update: the trainer calls backward")

    def after_update(self, losses: torch.Tensor, epoch: int) -> None:
        """The step's task losses (in task order, detached) recomputed on its batch after the update;
        called only where ``recomputes_losses``."""

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    # -- per-step weights ------------------------------------------------------------------

    def start_epoch(self, epoch: int) -> None:
        """Forget the previous epoch's per-step weights."""
        self._step_weights, self._steps = None, 0

    def observe(self, step_weights: torch.Tensor) -> None:
        """Add one step's lambda_k (in task order) to the epoch's sum; stays on the device."""
        step_weights = step_weights.detach().double()
        self._step_weights = step_weights if self._step_weights is None else self._step_weights + step_weights
        self._steps += 1

    def logged_weights(self, epoch: int) -> dict[str, float]:
        if self._step_weights is None:
            return self.weights(epoch)
        mean = (self._step_weights / self._steps).tolist()  # one read-back per epoch
        return dict(zip(self.tasks, mean))

    # -- history and state -----------------------------------------------------------------

    def record(self, epoch: int, mean_losses: Mapping[str, float]) -> None:
        """Remember the mean training loss of each task in ``epoch`` (replacing an earlier record)."""
        missing = [task for task in self.tasks if task not in mean_losses]
        if missing:
            raise ValueError(f"mean losses of epoch {epoch} lack tasks {missing}")
        losses = {task: float(mean_losses[task]) for task in self.tasks}
        bad = {task: loss for task, loss in losses.items() if not math.isfinite(loss)}
        if bad:
            raise MbmtError(f"training diverged: mean loss {bad} in epoch {epoch}; lower train.lr or disable train.amp")
        self.history[epoch] = losses

    def state_dict(self) -> dict:
        return {"name": self.name, "tasks": list(self.tasks),
                "history": {epoch: dict(losses) for epoch, losses in self.history.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        if state["name"] != self.name or tuple(state["tasks"]) != self.tasks:
            raise ValueError(f"state of weighting {state['name']!r} for tasks {state['tasks']} "
                             f"does not fit {self.name!r} for tasks {list(self.tasks)}")
        self.history = {int(epoch): {task: float(v) for task, v in losses.items()}
                        for epoch, losses in state["history"].items()}
