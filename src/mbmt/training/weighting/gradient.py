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

from mbmt.training.weighting.base import TaskWeighting


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
        step_weights = jac_to_grad(self.shared, self.aggregator)
        if step_weights is not None:
            self.observe(step_weights)

    def aggregator_state(self) -> dict[str, Any]:
        """State the aggregator carries from step to step (none but Nash-MTL's)."""
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
)}

