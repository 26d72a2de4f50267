"""Multi-task weighting: how one step's task losses become one update (LibMTL's "weighting" part).

A strategy is a `TaskWeighting` (base.py, the trainer's whole interface to it), registered here by
its train.weighting name. Loss-based strategies (loss.py: equal, dwa, uncertainty, gls, famo, stch, imtl_l, constant) back-
propagate one scalar; gradient methods (gradient.py: torchjd's aggregators) combine the tasks'
gradients on the shared parameters (sdmgrad and modo from three independent batches per update:
``TaskWeighting.batches_per_update``). A single-task model weighs 1 whatever the setting ("equal").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mbmt.errors import ParamsError
from mbmt.training.weighting.base import TaskWeighting
from mbmt.training.weighting.gradient import GRADIENT_METHODS, GradientWeighting, leaf_parameters
from mbmt.training.weighting.loss import (DWA, FAMO, IMTLL, STCH, ConstantWeighting, EqualWeighting,
                                         GeometricLossStrategy, UncertaintyWeighting)

LOSS_METHODS: dict[str, type[TaskWeighting]] = {cls.name: cls for cls in (
    DWA, EqualWeighting, UncertaintyWeighting, GeometricLossStrategy, FAMO, STCH, IMTLL, ConstantWeighting)}
WEIGHTINGS: dict[str, type[TaskWeighting]] = {**LOSS_METHODS, **GRADIENT_METHODS}

__all__ = ["DWA", "GRADIENT_METHODS", "LOSS_METHODS", "WEIGHTINGS", "EqualWeighting", "GeometricLossStrategy",
           "GradientWeighting", "TaskWeighting", "UncertaintyWeighting", "build_weighting", "leaf_parameters",
           "weighting_from_params", "weighting_name", "weighting_options"]


def build_weighting(name: str, tasks: Iterable[str], **options) -> TaskWeighting:
    """The strategy ``name`` of `WEIGHTINGS` for ``tasks``, with its constructor ``options``."""
    if name not in WEIGHTINGS:
        raise ParamsError(f"train.weighting: unknown weighting {name!r}; choose one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](tasks, **options)


def weighting_name(tasks: Iterable[str], train: Mapping) -> str:
    """The strategy a model with ``tasks`` trains with: ``train["weighting"]`` (params["train"]) for
    several tasks; a single task weighs 1 whatever the strategy ("equal")."""
    return train["weighting"] if len(tuple(tasks)) > 1 else "equal"


def weighting_options(name: str, train: Mapping) -> dict:
    """The options strategy ``name`` is built with from params["train"] (part of a run's identity)."""
    if name not in WEIGHTINGS:
        raise ParamsError(f"train.weighting: unknown weighting {name!r}; choose one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name].options_from_train(train)


def weighting_from_params(tasks: Iterable[str], train: Mapping) -> TaskWeighting:
    """The strategy of ``weighting_name`` for ``tasks``, with the options params.yaml gives it."""
    tasks = tuple(tasks)
    name = weighting_name(tasks, train)
    return build_weighting(name, tasks, **weighting_options(name, train))
