"""Multi-task loss weighting: the total loss of a step is sum_k lambda_k L_k.

A strategy is a `TaskWeighting`; the trainer only calls its methods, so a new strategy (e.g.
uncertainty weighting, whose log-variances are learned) is a subclass added to `WEIGHTINGS`
(and to the schema's train.weighting), with no change to the trainer:

- ``total_loss(losses, epoch)``: the weighted sum the trainer back-propagates;
- ``parameters()``: learnable tensors the trainer adds to its optimiser (none here);
- ``record(epoch, mean_losses)``: the epoch's mean training loss of each task, after the epoch;
- ``state_dict()`` / ``load_state_dict()``: the recorded history (and any learned state), saved
  in the checkpoint, so a resumed run gets exactly the weights the uninterrupted run would.

Built-in: ``equal`` (lambda_k = 1) and ``dwa``, Dynamic Weight Average (Liu et al., MTAN, CVPR
2019) with temperature T: lambda_k = 1 in epochs 0 and 1; afterwards
w_k = L_k(t-1) / L_k(t-2) and lambda_k = K exp(w_k/T) / sum_j exp(w_j/T), where L_k(t) is the
mean training loss of task k in epoch t.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import ClassVar

import torch

from mbmt.errors import MbmtError, ParamsError


class TaskWeighting(ABC):
    """Base strategy: keeps the history of mean losses; subclasses define `weights`."""

    name: ClassVar[str]
    # Constructor option -> its key under params["train"] (see `weighting_from_params`).
    params_keys: ClassVar[dict[str, str]] = {}

    def __init__(self, tasks: Iterable[str]):
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError("a task weighting needs at least one task")
        self.history: dict[int, dict[str, float]] = {}

    @abstractmethod
    def weights(self, epoch: int) -> dict[str, float]:
        """lambda_k for every step of ``epoch``."""

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        weights = self.weights(epoch)
        return sum(weights[task] * losses[task] for task in self.tasks)

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

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


class EqualWeighting(TaskWeighting):
    """lambda_k = 1 for every task."""

    name = "equal"

    def weights(self, epoch: int) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0)


class DWA(TaskWeighting):
    """Dynamic Weight Average: a task whose loss fell less in the last epoch weighs more."""

    name = "dwa"
    params_keys = {"temperature": "dwa_temperature"}

    def __init__(self, tasks: Iterable[str], *, temperature: float = 2.0):
        super().__init__(tasks)
        if not temperature > 0:
            raise ValueError(f"DWA temperature must be positive, not {temperature}")
        self.temperature = float(temperature)

    def weights(self, epoch: int) -> dict[str, float]:
        if epoch < 2:
            return dict.fromkeys(self.tasks, 1.0)
        try:
            last, before = self.history[epoch - 1], self.history[epoch - 2]
        except KeyError:
            raise RuntimeError(f"DWA weights of epoch {epoch} need the mean losses of epochs "
                               f"{epoch - 2} and {epoch - 1}; record() them first") from None
        # A task with a zero loss two epochs ago (nothing left to learn) counts as unchanged.
        ratios = [last[t] / before[t] if before[t] > 0 else 1.0 for t in self.tasks]
        # Softmax of ratio / T, shifted by its maximum so exp() cannot overflow.
        top = max(ratios)
        scores = [math.exp((r - top) / self.temperature) for r in ratios]
        total = sum(scores)
        return {task: len(self.tasks) * score / total for task, score in zip(self.tasks, scores)}


WEIGHTINGS: dict[str, type[TaskWeighting]] = {"dwa": DWA, "equal": EqualWeighting}


def build_weighting(name: str, tasks: Iterable[str], **options) -> TaskWeighting:
    """The strategy ``name`` of `WEIGHTINGS` for ``tasks``, with its constructor ``options``."""
    if name not in WEIGHTINGS:
        raise ParamsError(f"train.weighting: unknown weighting {name!r}; choose one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](tasks, **options)


def weighting_name(tasks: Iterable[str], train: Mapping) -> str:
    """The strategy a model with ``tasks`` trains with: ``train["weighting"]`` (params["train"]) for
    several tasks; a single task weighs 1 whatever the strategy ("equal")."""
    return train["weighting"] if len(tuple(tasks)) > 1 else "equal"


def weighting_from_params(tasks: Iterable[str], train: Mapping) -> TaskWeighting:
    """The strategy of ``weighting_name`` for ``tasks``, with the options it declares."""
    tasks = tuple(tasks)
    name = weighting_name(tasks, train)
    declared = WEIGHTINGS[name].params_keys if name in WEIGHTINGS else {}
    return build_weighting(name, tasks, **{option: train[key] for option, key in declared.items()})
