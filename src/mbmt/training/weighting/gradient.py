"""Gradient-balancing methods, taken from torchjd (a maintained library of these aggregators).

A gradient method does not weigh losses: it looks at the tasks' gradients on the parameters they
share and combines them (projecting away conflicts, solving a small QP, ...). The step here:

1. the shared parameters are those reached by the losses of two or more tasks (found once, by
   walking the first step's autograd graph: the encoder, the FPN, MBMT-Net's fusion);
2. ``torchjd.autojac.backward`` computes the Jacobian of the task losses on them, one backward
   per task (``parallel_chunk_size=1``: no vmap, so no extra memory for K graphs at once);
3. ``torchjd.autojac.jac_to_grad`` aggregates the rows into their ``.grad`` with the method's
   aggregator, and returns the task weights where the aggregator is a weighted one (all but
   GradDrop), which the training log records as the epoch's mean;
4. every other trainable parameter (one task's head) gets its own task's gradient, as under equal
   weighting, which is what LibMTL does for task-specific parameters.

SDMGrad and MoDo weigh from the Jacobians of two independent batches and update on a third
(`_IndependentBatchesBase`): the trainer hands them three batches per update.

torchjd's aggregators normalise differently from a weighted sum: most weigh the rows so that
non-conflicting gradients give about their mean (UPGrad, DualProj, Aligned-MTL: mean preference;
MGDA, IMTL-G, random: weights on the simplex), where equal weighting sums them. That is each
method's definition, kept as published.

Not under DistributedDataParallel: each rank would aggregate its own Jacobian, and the average of
aggregates is not the aggregate of the global batch's Jacobian (the trainer refuses). Every step
reads values back to the host (quadprog, cvxpy, the graph walk's first step), so the trainer uses
the host guard (sync_every 1): a step with a non-finite loss is never aggregated.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from mbmt.training.weighting.base import NonFiniteGradient, TaskWeighting


def load_quadprog() -> None:
    """Load quadprog (UPGrad's and DualProj's QP solver) so that it calls its own routines.

    quadprog exports plain names (``dot``, ``axpy``, ``cholesky``) and calls them through the
    dynamic linker; pulp, which Snakemake imports, loads HiGHS's extension into the global symbol
    scope, and HiGHS exports a ``dot`` of its own, so a quadprog loaded after it in the same process
    calls HiGHS's ``dot`` and crashes (a segmentation fault in its first solve). RTLD_DEEPBIND makes
    quadprog prefer its own symbols whatever was loaded before it. Where the platform has no
    RTLD_DEEPBIND (not Linux) the import is a plain one.
    """
    if "quadprog" in sys.modules:
        return
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | deepbind)
    try:
        import quadprog  # noqa: F401
    finally:
        sys.setdlopenflags(flags)


# Now, before anything imports torchjd.aggregation (its qpsolvers imports quadprog plainly).
load_quadprog()


def leaf_parameters(loss: torch.Tensor) -> set[torch.Tensor]:
    """The leaf tensors (parameters) that ``loss`` was computed from, by walking its autograd graph."""
    leaves, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf tensor
        if variable is not None:
            leaves.add(variable)
        stack.extend(child for child, _ in node.next_functions)
    return leaves


class GradientWeighting(TaskWeighting):
    """A torchjd aggregator applied to the Jacobian of the task losses on the shared parameters."""

    host_sync = True
    distributed = False
    compilable = False  # a compiled step does not expose each task's backward
    # torchjd.aggregation's class name; options are passed to it (and ``n_tasks`` where it asks).
    aggregator_name: ClassVar[str]
    needs_n_tasks: ClassVar[bool] = False

    def __init__(self, tasks: Iterable[str], **options: Any):
        super().__init__(tasks)
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"weighting {self.name} has no options {unknown}; it has {sorted(self.defaults) or 'none'}")
        self.options = {**self.defaults, **options}
        self.aggregator = self.make_aggregator()
        self.module: torch.nn.Module | None = None
        self.shared: list[torch.Tensor] | None = None
        self.specific: list[torch.Tensor] | None = None

    def make_aggregator(self):
        import torchjd.aggregation

        cls = getattr(torchjd.aggregation, self.aggregator_name)
        extra = {"n_tasks": len(self.tasks)} if self.needs_n_tasks else {}
        return cls(**extra, **self.options)

    def weights(self, epoch: int) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0)  # not known before the steps; logged_weights has them

    def logged_weights(self, epoch: int) -> dict[str, float]:
        return super().logged_weights(epoch) if self._step_weights is not None else {}

    def prepare(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module = module

    def split_parameters(self, losses: list[torch.Tensor]) -> None:
        """Shared (reached by >= 2 tasks' losses) and task-specific trainable parameters, in the
        module's order (so the Jacobian's columns and the result are the same in every run)."""
        reached = [leaf_parameters(loss) for loss in losses]
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        counts = [sum(p in leaves for leaves in reached) for p in trainable]
        self.shared = [p for p, n in zip(trainable, counts) if n >= 2]
        self.specific = [p for p, n in zip(trainable, counts) if n == 1]
        if not self.shared:
            raise ValueError(f"weighting {self.name}: the tasks {list(self.tasks)} share no trainable parameter, "
                             f"so there is nothing to balance; use train.weighting: equal")

    def backward(self, losses: Mapping[str, torch.Tensor], epoch: int, *, global_losses=None) -> None:
        from torchjd.autojac import backward, jac_to_grad

        ordered = [losses[task] for task in self.tasks]
        if self.shared is None:
            self.split_parameters(ordered)
        if self.specific:  # each head gets its own task's gradient; the graph stays for the Jacobian
            torch.autograd.backward(torch.stack(ordered).sum(), inputs=self.specific, retain_graph=True)
        backward(ordered, inputs=self.shared, parallel_chunk_size=1)
        self.check_finite_jacobian()
        step_weights = jac_to_grad(self.shared, self.aggregator)
        if step_weights is not None:
            self.observe(step_weights)

    def check_finite_jacobian(self) -> None:
        """Raise NonFiniteGradient where a task's gradient on the shared parameters is not finite
        (finite losses can have one, e.g. an overflow in a backward pass): the solvers (SVD, eigh,
        cvxpy, scipy) would fail with their own errors, or aggregate it into the weights."""
        finite = torch.stack([torch.isfinite(p.jac).all() for p in self.shared]).all(dim=0)
        if not bool(finite):  # host_sync: this step reads back anyway
            rows = torch.stack([torch.isfinite(p.jac.flatten(1)).all(dim=1) for p in self.shared]).all(dim=0)
            bad = [task for task, ok in zip(self.tasks, rows.tolist()) if not ok]
            for p in self.shared:  # nothing of this step reaches .grad
                del p.jac
            raise NonFiniteGradient(f"the gradients of the task losses on the shared parameters are not finite "
                                    f"(tasks {', '.join(bad)}; the losses are finite)")

    def aggregator_state(self) -> dict[str, Any]:
        """State the aggregator carries from step to step (Nash-MTL's, GradVac's, ExcessMTL's)."""
        return {}

    def load_aggregator_state(self, state: Mapping[str, Any]) -> None:
        pass

    def state_dict(self) -> dict:
        return {**super().state_dict(), "aggregator": self.aggregator_state()}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.load_aggregator_state(state["aggregator"])


def _method(name: str, aggregator: str, summary: str, *, defaults: Mapping[str, Any] | None = None,
            n_tasks: bool = False, base: type[GradientWeighting] = GradientWeighting) -> type[GradientWeighting]:
    """A GradientWeighting subclass for torchjd's ``aggregator``."""
    return type(f"{aggregator}Weighting", (base,), {
        "name": name, "aggregator_name": aggregator, "summary": summary,
        "defaults": dict(defaults or {}), "needs_n_tasks": n_tasks, "__module__": __name__,
        "__doc__": f"{summary}: torchjd.aggregation.{aggregator} on the shared parameters."})


class _NashMTLBase(GradientWeighting):
    """Nash-MTL keeps its last solution (the QP's warm start), the step count and the Gramian's
    normalisation between steps; they go into the checkpoint so a resumed run solves the same QPs."""

    def backward(self, losses, epoch, *, global_losses=None) -> None:
        with warnings.catch_warnings():
            # cvxpy's note that torchjd's problem is not DPP (no faster re-solves), once per step.
            warnings.filterwarnings("ignore", message="You are solving a parameterized problem that is not DPP")
            super().backward(losses, epoch, global_losses=global_losses)

    def aggregator_state(self) -> dict[str, Any]:
        weighting = self.aggregator.weighting
        return {"step": float(weighting.step),
                "prvs_alpha": torch.from_numpy(np.array(weighting.prvs_alpha)),
                "normalization_factor": torch.from_numpy(np.array(weighting.normalization_factor))}

    def load_aggregator_state(self, state: Mapping[str, Any]) -> None:
        weighting = self.aggregator.weighting
        weighting.prvs_alpha = state["prvs_alpha"].numpy().copy()
        weighting.normalization_factor = state["normalization_factor"].numpy().copy()
        weighting.step = float(state["step"])
        if weighting.step > 0:
            # torchjd builds its cvxpy problem at step 0 only; a resumed run starts later.
            weighting._init_optim_problem()


class _GradVacBase(GradientWeighting):
    """GradVac keeps its EMA of the tasks' pairwise cosine similarities (the targets phi-hat)."""

    def aggregator_state(self) -> dict[str, Any]:
        phi = self.aggregator.gramian_weighting._phi_t
        return {"phi_t": None if phi is None else phi.detach().cpu().clone()}

    def load_aggregator_state(self, state: Mapping[str, Any]) -> None:
        weighting = self.aggregator.gramian_weighting
        phi = state["phi_t"]
        weighting._phi_t = None if phi is None else phi.clone()
        weighting._state_key = None if phi is None else (phi.shape[0], phi.dtype)


class _ExcessMTLBase(GradientWeighting):
    """ExcessMTL keeps its task weights, the running sum of squared gradients (an m x n tensor on
    the shared parameters), the baseline excess risks and its step count."""

    _STATE = ("_weights", "_sq_grad_sum", "_initial_w", "_warmup_w_sum")

    def aggregator_state(self) -> dict[str, Any]:
        weighting = self.aggregator.weighting
        state = {key: None if getattr(weighting, key) is None else getattr(weighting, key).detach().cpu().clone()
                 for key in self._STATE}
        return {**state, "n_steps": int(weighting._n_steps)}

    def load_aggregator_state(self, state: Mapping[str, Any]) -> None:
        weighting = self.aggregator.weighting
        device = next((p.device for p in self.module.parameters()), None) if self.module is not None else None
        for key in self._STATE:
            value = state[key]
            setattr(weighting, key, None if value is None else value.to(device).clone())
        weighting._n_steps = int(state["n_steps"])
        total = weighting._sq_grad_sum
        # torchjd re-initialises its state when this key differs from the Jacobian's (m, n, dtype, device).
        weighting._state_key = None if total is None else (*total.shape, total.dtype, total.device)


class _IndependentBatchesBase(GradientWeighting):
    """SDMGrad and MoDo: stochastic methods whose task weights come from ``A = J_1 J_2^T``, the product
    of the Jacobians (on the shared parameters) of two independent mini-batches xi and xi', not from
    one batch's Gramian (whose expectation is biased, which the papers' convergence proofs avoid); the
    update is ``J_3^T lambda`` on a third batch zeta. Three batches per update, as SDMGrad's
    algorithm, LibMTL's SDMGrad and MoDo and MoDo's official ``three_grads`` trainer draw them.

    The trainer hands over one batch's losses at a time (``backward_batch``): batch 1's Jacobian is
    kept, batch 2's multiplied into A and dropped, each graph freed after its Jacobian, so the memory
    is one K x n Jacobian more than a single-batch gradient method's. The update batch back-propagates
    one weighted sum (``sum_k lambda_k L_k`` on the shared parameters, torchjd's own example: no third
    Jacobian), and each task's head gets its own task's gradient on that batch, as under every other
    gradient method. The torchjd weighting carries its weights from step to step (the warm start of
    SDMGrad's inner solver; MoDo's lambda, updated by one projected step per update): checkpointed.
    """

    batches_per_update = 3
    distributed_refusal = ("each rank would weigh by the product of its own shares of two batches' Jacobians, "
                           "not by the global batches' product")

    def __init__(self, tasks: Iterable[str], **options: Any):
        super().__init__(tasks, **options)
        self._first: tuple[torch.Tensor, ...] | None = None  # batch 1's Jacobian, until batch 2's
        self._update_weights: torch.Tensor | None = None  # lambda for the update batch

    def make_aggregator(self):
        import torchjd.aggregation

        return getattr(torchjd.aggregation, self.aggregator_name)(**self.options)

    def backward(self, losses, epoch, *, global_losses=None) -> None:
        raise NotImplementedError(f"weighting {self.name} draws {self.batches_per_update} batches per update: "
                                  f"the trainer calls backward_batch")

    def backward_batch(self, index: int, losses: Mapping[str, torch.Tensor], epoch: int) -> None:
        from torchjd.autojac import jac

        ordered = [losses[task] for task in self.tasks]
        if self.shared is None:
            self.split_parameters(ordered)
        if index < self.batches_per_update - 1:  # xi, then xi': a Jacobian each, the graph freed
            jacobians = jac(ordered, self.shared, parallel_chunk_size=1)
            self.check_finite_rows(jacobians, index)
            if index == 0:
                self._first = jacobians
                return
            first, self._first = self._first, None
            matrix = sum(a.flatten(1) @ b.flatten(1).T for a, b in zip(first, jacobians))
            self._update_weights = self.aggregator(matrix).detach()
            return
        weights, self._update_weights = self._update_weights, None
        if self.specific:  # each head gets its own task's gradient; the graph stays for the shared part
            torch.autograd.backward(torch.stack(ordered).sum(), inputs=self.specific, retain_graph=True)
        torch.autograd.backward(torch.stack(ordered) @ weights.to(ordered[0].dtype), inputs=self.shared)
        if not bool(torch.stack([torch.isfinite(p.grad).all() for p in self.shared]).all()):
            for p in [*self.shared, *(self.specific or [])]:  # nothing of this step reaches the update
                p.grad = None
            raise NonFiniteGradient(f"the gradients of the task losses on the shared parameters are not finite "
                                    f"(tasks {', '.join(self.tasks)} weighted together, batch {index + 1} of "
                                    f"{self.batches_per_update}; the losses are finite)")
        self.observe(weights)

    def check_finite_rows(self, jacobians: tuple[torch.Tensor, ...], index: int) -> None:
        """NonFiniteGradient naming the tasks whose row of batch ``index``'s Jacobian is not finite."""
        rows = torch.stack([torch.isfinite(j.flatten(1)).all(dim=1) for j in jacobians]).all(dim=0)
        if not bool(rows.all()):
            self._first = None
            bad = [task for task, ok in zip(self.tasks, rows.tolist()) if not ok]
            raise NonFiniteGradient(f"the gradients of the task losses on the shared parameters are not finite "
                                    f"(tasks {', '.join(bad)}, batch {index + 1} of {self.batches_per_update}; "
                                    f"the losses are finite)")

    # The torchjd weighting's state: its weights (SDMGrad's w, MoDo's lambda), None before the first update.
    _STATE: ClassVar[str]

    def aggregator_state(self) -> dict[str, Any]:
        value = getattr(self.aggregator, self._STATE)
        return {"weights": None if value is None else value.detach().cpu().clone()}

    def load_aggregator_state(self, state: Mapping[str, Any]) -> None:
        value = state["weights"]
        device = next((p.device for p in self.module.parameters()), None) if self.module is not None else None
        value = None if value is None else value.to(device or "cpu").clone()
        setattr(self.aggregator, self._STATE, value)
        # torchjd restarts from uniform weights where this key differs from A's (m, dtype, device).
        self.aggregator._state_key = None if value is None else (value.shape[0], value.dtype, value.device)


class _SDMGradBase(_IndependentBatchesBase):
    _STATE = "_w"


class _MoDoBase(_IndependentBatchesBase):
    _STATE = "_lambda"


GRADIENT_METHODS: dict[str, type[GradientWeighting]] = {cls.name: cls for cls in (
    _method("upgrad", "UPGrad", "UPGrad (Quinton & Rey, 2024; torchjd)"),
    _method("mgda", "MGDA", "MGDA (Sener & Koltun, NeurIPS 2018)", defaults={"epsilon": 0.001, "max_iters": 100}),
    _method("pcgrad", "PCGrad", "PCGrad (Yu et al., NeurIPS 2020)"),
    _method("cagrad", "CAGrad", "CAGrad (Liu et al., NeurIPS 2021)", defaults={"c": 0.4}),
    _method("nash_mtl", "NashMTL", "Nash-MTL (Navon et al., ICML 2022)", n_tasks=True, base=_NashMTLBase,
            defaults={"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20}),
    _method("imtl_g", "IMTLG", "IMTL-G (Liu et al., ICLR 2021)"),
    _method("aligned_mtl", "AlignedMTL", "Aligned-MTL (Senushkin et al., CVPR 2023)", defaults={"scale_mode": "min"}),
    _method("graddrop", "GradDrop", "GradDrop (Chen et al., NeurIPS 2020)"),
    _method("dualproj", "DualProj", "DualProj (Quinton & Rey, 2024; torchjd)"),
    _method("random", "Random", "random weighting (Lin et al., TMLR 2022)"),
    # The field's recent methods (torchjd >= 0.18), with LibMTL's defaults (LibMTL/config.py).
    _method("fairgrad", "FairGrad", "FairGrad (Ban & Ji, ICML 2024)", defaults={"alpha": 1.0, "max_iters": None}),
    _method("gradvac", "GradVac", "GradVac (Wang et al., ICLR 2021)", defaults={"beta": 0.5, "eps": 1e-8},
            base=_GradVacBase),
    _method("config", "ConFIG", "ConFIG (Liu et al., ICLR 2025)"),
    _method("excess_mtl", "ExcessMTL", "ExcessMTL (He et al., ICML 2024)",
            defaults={"robust_step_size": 0.01, "n_warmup_steps": 0}, base=_ExcessMTLBase),
    # Three independent batches per update (_IndependentBatchesBase). SDMGrad: the official
    # implementation's inner solver (lr 10, momentum 0.5, 20 iterations; torchjd's defaults) with
    # lambda 0.3, as its own experiments and LibMTL set it; MoDo: LibMTL's gamma 1e-3 and rho 0.1.
    _method("sdmgrad", "SDMGradWeighting", "SDMGrad (Xiao et al., NeurIPS 2023)", base=_SDMGradBase,
            defaults={"lr": 10.0, "momentum": 0.5, "n_iter": 20, "lambda_": 0.3}),
    _method("modo", "MoDoWeighting", "MoDo (Chen et al., NeurIPS 2023)", base=_MoDoBase,
            defaults={"gamma": 0.001, "rho": 0.1}),
)}

