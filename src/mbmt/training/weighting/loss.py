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


class _LearnedScalarizer(TaskWeighting):
    """A torchjd scalarizer (an nn.Module) whose state lives on the model's device."""

    scalarizer: torch.nn.Module

    def prepare(self, module: torch.nn.Module, device: torch.device) -> None:
        self.scalarizer.to(device)  # in place: its parameters stay the objects the optimiser holds


class FAMO(_LearnedScalarizer):
    """FAMO (Liu et al., NeurIPS 2023): torchjd.scalarization.FAMO. The step back-propagates
    c sum_k z_k log L_k with z = softmax(w) (c normalises the update to a convex combination of the
    tasks' gradients); after the update the trainer recomputes the batch's losses and FAMO takes one
    Adam step on its logits w towards the tasks whose log-loss fell least."""

    name = "famo"
    summary = "FAMO (Liu et al., NeurIPS 2023; torchjd)"
    # The paper's (and LibMTL's, LibMTL/config.py) logit learning rate and regularisation.
    defaults = {"lr": 0.025, "weight_decay": 0.001}
    recomputes_losses = True
    distributed = False
    distributed_refusal = "each rank would weigh the log of its own share of the losses, not of the global batch's"

    def __init__(self, tasks: Iterable[str], *, lr: float = 0.025, weight_decay: float = 0.001):
        super().__init__(tasks)
        from torchjd.scalarization import FAMO as TorchjdFAMO

        self.scalarizer = TorchjdFAMO(len(self.tasks), lr=float(lr), weight_decay=float(weight_decay))

    def task_weights(self) -> torch.Tensor:
        return torch.softmax(self.scalarizer._w.detach(), dim=0)  # z, the logits' task weights

    def weights(self, epoch: int) -> dict[str, float]:
        return dict(zip(self.tasks, self.task_weights().tolist()))

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        return self.scalarizer(torch.stack([losses[task] for task in self.tasks]))

    def backward(self, losses, epoch, *, global_losses=None) -> None:
        self.observe(self.task_weights())
        self.total_loss(losses, epoch).backward()

    def after_update(self, losses: torch.Tensor, epoch: int) -> None:
        self.scalarizer.update(losses.to(self.scalarizer._w.dtype))

    def state_dict(self) -> dict:
        optimizer = self.scalarizer._optimizer
        return {**super().state_dict(), "logits": self.scalarizer._w.detach().cpu().clone(),
                "adam": None if optimizer is None else optimizer.state_dict()}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.scalarizer._w.copy_(state["logits"])
        self.scalarizer._optimizer = None
        if state["adam"] is not None:
            self.scalarizer._optimizer = torch.optim.Adam([self.scalarizer._w], lr=self.scalarizer.lr,
                                                          weight_decay=self.scalarizer.weight_decay)
            self.scalarizer._optimizer.load_state_dict(state["adam"])


class STCH(TaskWeighting):
    """Smooth Tchebycheff scalarisation (Lin et al., ICML 2024) in its authors' multi-task form
    (STCH_MTL/LibMTL/weighting/STCH.py of Xi-L/STCH): in epochs before ``warmup_epochs`` the step
    minimises sum_k log L_k; during epoch ``warmup_epochs`` it does so and averages the losses into
    the nadir point n; from then on it minimises K * STCH_mu(log(L_k / n_k)) with torchjd's
    `torchjd.scalarization.STCH` (unit preferences, no reference point)."""

    name = "stch"
    summary = "STCH (Lin et al., ICML 2024; torchjd), with its authors' warm-up and nadir normalisation"
    defaults = {"mu": 1.0, "warmup_epochs": 4}  # LibMTL's STCH_mu, STCH_warmup_epoch
    distributed = False
    distributed_refusal = "each rank would weigh the log of its own share of the losses, not of the global batch's"

    def __init__(self, tasks: Iterable[str], *, mu: float = 1.0, warmup_epochs: int = 4):
        super().__init__(tasks)
        from torchjd.scalarization import STCH as TorchjdSTCH

        self.mu, self.warmup_epochs = float(mu), int(warmup_epochs)
        self.scalarizer = TorchjdSTCH(self.mu, weights=torch.ones(len(self.tasks)))
        self.loss_sum: torch.Tensor | None = None  # the warm-up epoch's summed step losses
        self.loss_count = 0
        self.nadir: torch.Tensor | None = None

    def weights(self, epoch: int) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0)  # the weight on each task's log-loss before smoothing

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        stacked = torch.stack([losses[task] for task in self.tasks])
        if epoch <= self.warmup_epochs:
            if epoch == self.warmup_epochs:
                values = stacked.detach().double()
                self.loss_sum = values if self.loss_sum is None else self.loss_sum + values
                self.loss_count += 1
            return torch.log(stacked + 1e-20).sum()
        if self.nadir is None:
            if self.loss_sum is None:
                raise RuntimeError(f"STCH at epoch {epoch} needs the losses of warm-up epoch {self.warmup_epochs}")
            self.nadir = self.loss_sum / self.loss_count
        normalised = torch.log(stacked / self.nadir.to(stacked.device, stacked.dtype) + 1e-20)
        self.scalarizer.weights = self.scalarizer.weights.to(stacked.device, stacked.dtype)
        return len(self.tasks) * self.scalarizer(normalised)

    def state_dict(self) -> dict:
        def cpu(tensor):
            return None if tensor is None else tensor.detach().cpu().clone()
        return {**super().state_dict(), "loss_sum": cpu(self.loss_sum), "loss_count": self.loss_count,
                "nadir": cpu(self.nadir)}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.loss_sum, self.loss_count, self.nadir = state["loss_sum"], int(state["loss_count"]), state["nadir"]


class IMTLL(_LearnedScalarizer):
    """IMTL-L (Liu et al., ICLR 2021): torchjd.scalarization.IMTLL, sum_k (exp(s_k) L_k - s_k) with
    learned s_k (starting at 0), trained by the model's optimiser; lambda_k = exp(s_k). Linear in
    each rank's share of the losses, so exact under DistributedDataParallel (s_k's gradients are
    averaged over ranks as the model's are)."""

    name = "imtl_l"
    summary = "IMTL-L (Liu et al., ICLR 2021; torchjd)"

    def __init__(self, tasks: Iterable[str]):
        super().__init__(tasks)
        from torchjd.scalarization import IMTLL as TorchjdIMTLL

        self.scalarizer = TorchjdIMTLL(len(self.tasks))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.scalarizer.log_scale]

    def weights(self, epoch: int) -> dict[str, float]:
        return dict(zip(self.tasks, torch.exp(self.scalarizer.log_scale.detach()).tolist()))

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        return self.scalarizer(torch.stack([losses[task] for task in self.tasks]))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "log_scale": self.scalarizer.log_scale.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.scalarizer.log_scale.copy_(state["log_scale"])


class ConstantWeighting(TaskWeighting):
    """Fixed task weights (torchjd.scalarization.Constant): sum_k w_k L_k with train.weighting_options.
    constant.weights {task: w_k}; a task not named weighs 1. Linear: exact under DDP."""

    name = "constant"
    summary = "fixed task weights (torchjd Constant)"
    defaults = {"weights": {}}

    def __init__(self, tasks: Iterable[str], *, weights: Mapping[str, float] | None = None):
        super().__init__(tasks)
        from torchjd.scalarization import Constant

        given = dict(weights or {})
        unknown = sorted(set(given) - set(self.tasks))
        if unknown:
            raise ValueError(f"train.weighting_options.constant.weights names tasks {unknown} the model does not "
                             f"have; name some of {list(self.tasks)}")
        self.fixed = {task: float(given.get(task, 1.0)) for task in self.tasks}
        self.scalarizer = Constant(torch.tensor([self.fixed[task] for task in self.tasks]))

    def weights(self, epoch: int) -> dict[str, float]:
        return dict(self.fixed)

    def total_loss(self, losses: Mapping[str, torch.Tensor], epoch: int) -> torch.Tensor:
        stacked = torch.stack([losses[task] for task in self.tasks])
        self.scalarizer.weights = self.scalarizer.weights.to(stacked.device, stacked.dtype)
        return self.scalarizer(stacked)
