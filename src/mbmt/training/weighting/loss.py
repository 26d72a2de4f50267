"""Loss-based weightings: the step's gradient is that of one scalar built from the task losses.

- ``equal``: lambda_k = 1.
- ``dwa``: Dynamic Weight Average (Liu et al., MTAN, CVPR 2019) with temperature T: lambda_k = 1 in
  epochs 0 and 1; afterwards w_k = L_k(t-1) / L_k(t-2) and lambda_k = K exp(w_k/T) / sum_j exp(w_j/T),
  where L_k(t) is the mean training loss of task k in epoch t.
- ``uncertainty``: uncertainty weighting (Kendall et al., CVPR 2018) in LibMTL's form: learned
  s_k = log sigma_k^2, total = sum_k L_k / (2 exp(s_k)) + s_k / 2, s_k starting at -0.5;
  lambda_k = 1 / (2 exp(s_k)).
- ``gls``: geometric loss strategy (Chennupati et al., CVPR-W 2019): total = (prod_k L_k)^(1/K).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from mbmt.training.weighting.base import TaskWeighting


class EqualWeighting(TaskWeighting):
    """lambda_k = 1 for every task."""

    name = "equal"
    summary = "lambda_k = 1"
    params_keys = ()

    def weights(self, epoch: int) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0)


class DWA(TaskWeighting):
    """Dynamic Weight Average: a task whose loss fell less in the last epoch weighs more."""

    name = "dwa"
    summary = "Dynamic Weight Average (Liu et al., CVPR 2019; MTAN)"
    defaults = {"temperature": 2.0}
    params_keys = ("dwa_temperature",)

    def __init__(self, tasks: Iterable[str], *, temperature: float = 2.0):
        super().__init__(tasks)
        if not temperature > 0:
            raise ValueError(f"DWA temperature must be positive, not {temperature}")
        self.temperature = float(temperature)

    @classmethod
    def options_from_train(cls, train: Mapping) -> dict:
        # The paper's setting, named in params.yaml since the first release.
        return {"temperature": train["dwa_temperature"]}

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


class UncertaintyWeighting(TaskWeighting):
    """Learned homoscedastic uncertainty: a noisier task (larger s_k) weighs less."""

    name = "uncertainty"
    summary = "uncertainty weighting (Kendall et al., CVPR 2018), LibMTL's form"
    defaults = {"initial_log_variance": -0.5}  # LibMTL's start

    def __init__(self, tasks: Iterable[str], *, initial_log_variance: float = -0.5):
        super().__init__(tasks)
        self.log_variance = torch.nn.Parameter(torch.full((len(self.tasks),), float(initial_log_variance)))

    def prepare(self, module: torch.nn.Module, device: torch.device) -> None:
        # In place, so the optimiser (built after prepare) and the checkpoint see one tensor.
        self.log_variance.data = self.log_variance.data.to(device)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_variance]

    def weights(self, epoch: int) -> dict[str, float]:
        scale = (0.5 * torch.exp(-self.log_variance.detach())).tolist()
        return dict(zip(self.tasks, scale))

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        stacked = torch.stack([losses[task] for task in self.tasks])
        return (stacked / (2 * torch.exp(self.log_variance)) + self.log_variance / 2).sum()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "log_variance": self.log_variance.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_variance.copy_(state["log_variance"])


class GeometricLossStrategy(TaskWeighting):
    """The geometric mean of the task losses: its gradient is sum_k G / (K L_k) grad L_k, where G is
    the geometric mean, so a task with a smaller loss weighs more.

    The step back-propagates sum_k lambda_k L_k with lambda_k = G / (K L_k) computed from the
    global batch's losses (detached): on one process this is exactly the gradient of (prod L_k)^(1/K),
    and under DistributedDataParallel, where each rank holds only its share of every loss, the
    averaged gradients are still those of the global batch's geometric mean.
    """

    name = "gls"
    summary = "geometric loss strategy (Chennupati et al., CVPR-W 2019)"

    def weights(self, epoch: int) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0 / len(self.tasks))  # G / (K L_k) when the losses are equal

    def step_weights(self, global_losses: torch.Tensor) -> torch.Tensor:
        losses = global_losses.detach().clamp_min(torch.finfo(global_losses.dtype).tiny)
        geometric_mean = torch.exp(torch.log(losses).mean())
        return geometric_mean / (len(self.tasks) * losses)

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        stacked = torch.stack([losses[task] for task in self.tasks])
        return torch.pow(stacked.prod(), 1.0 / len(self.tasks))

    def backward(self, losses, epoch, *, global_losses=None) -> None:
        stacked = torch.stack([losses[task] for task in self.tasks])
        values = stacked.detach() if global_losses is None else global_losses.to(stacked.dtype)
        weights = self.step_weights(values)
        self.observe(weights)
        (weights * stacked).sum().backward()
