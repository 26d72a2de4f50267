"""Task weighting strategies: DWA against a hand computation, equal weighting, resumption."""

from __future__ import annotations

import io
import math

import pytest
import torch

from mbmt.errors import MbmtError, ParamsError
from mbmt.training.weighting import DWA, WEIGHTINGS, EqualWeighting, build_weighting, weighting_from_params

TASKS = ("semantic", "depth", "normal")
HISTORY = {0: {"semantic": 2.0, "depth": 1.0, "normal": 0.5}, 1: {"semantic": 1.0, "depth": 1.0, "normal": 0.6}}


def recorded(weighting, history=HISTORY):
    for epoch, losses in history.items():
        weighting.record(epoch, losses)
    return weighting


def test_dwa_weights_are_one_in_the_first_two_epochs():
    dwa = DWA(TASKS, temperature=2.0)
    assert dwa.weights(0) == dwa.weights(1) == dict.fromkeys(TASKS, 1.0)


def test_dwa_matches_a_hand_computation():
    weights = recorded(DWA(TASKS, temperature=2.0)).weights(2)
    # w = L(1) / L(0) = (0.5, 1.0, 1.2); lambda_k = 3 exp(w_k / 2) / sum_j exp(w_j / 2)
    # exp(0.25) = 1.284025, exp(0.5) = 1.648721, exp(0.6) = 1.822119; sum = 4.754866
    assert weights == pytest.approx({"semantic": 3 * 1.284025 / 4.754866, "depth": 3 * 1.648721 / 4.754866,
                                     "normal": 3 * 1.822119 / 4.754866}, abs=1e-5)
    assert sum(weights.values()) == pytest.approx(3)
    # A higher temperature flattens the weights towards 1.
    flat = recorded(DWA(TASKS, temperature=100.0)).weights(2)
    assert max(abs(v - 1) for v in flat.values()) < max(abs(v - 1) for v in weights.values())


def test_dwa_uses_the_two_previous_epochs():
    dwa = recorded(DWA(TASKS), {**HISTORY, 2: {"semantic": 1.0, "depth": 2.0, "normal": 0.6}})
    weights = dwa.weights(3)  # ratios 1, 2, 1: depth, whose loss rose, weighs most
    e1, e2 = math.exp(1 / 2), math.exp(2 / 2)
    assert weights == pytest.approx({"semantic": 3 * e1 / (2 * e1 + e2), "depth": 3 * e2 / (2 * e1 + e2),
                                     "normal": 3 * e1 / (2 * e1 + e2)})
    with pytest.raises(RuntimeError, match="epochs 2 and 3"):
        dwa.weights(4)


def test_dwa_edge_cases_stay_finite():
    huge = {0: {"semantic": 1e-6, "depth": 1.0}, 1: {"semantic": 1e4, "depth": 0.0}}
    weights = recorded(DWA(("semantic", "depth"), temperature=0.5), huge).weights(2)
    assert weights == pytest.approx({"semantic": 2.0, "depth": 0.0})
    zero = {0: {"semantic": 0.0, "depth": 1.0}, 1: {"semantic": 0.0, "depth": 1.0}}
    assert recorded(DWA(("semantic", "depth")), zero).weights(2) == pytest.approx({"semantic": 1.0, "depth": 1.0})


def test_total_loss_is_the_weighted_sum():
    dwa = recorded(DWA(TASKS))
    losses = {task: torch.tensor(value, requires_grad=True) for task, value in zip(TASKS, (1.0, 2.0, 3.0))}
    weights = dwa.weights(2)
    total = dwa.total_loss(losses, 2)
    assert total.item() == pytest.approx(weights["semantic"] + 2 * weights["depth"] + 3 * weights["normal"])
    total.backward()
    assert losses["depth"].grad.item() == pytest.approx(weights["depth"])
    assert dwa.parameters() == []


def test_equal_weighting():
    equal = recorded(EqualWeighting(TASKS))
    assert equal.weights(0) == equal.weights(7) == dict.fromkeys(TASKS, 1.0)


def test_resumed_dwa_continues_identically():
    uninterrupted = recorded(DWA(TASKS))
    buffer = io.BytesIO()
    torch.save(uninterrupted.state_dict(), buffer)  # as the trainer's checkpoint would
    buffer.seek(0)
    resumed = DWA(TASKS)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for weighting in (uninterrupted, resumed):
        weighting.record(2, {"semantic": 0.9, "depth": 0.7, "normal": 0.55})
    assert resumed.weights(3) == uninterrupted.weights(3)
    assert resumed.weights(2) == uninterrupted.weights(2)
    with pytest.raises(ValueError, match="does not fit"):
        EqualWeighting(TASKS).load_state_dict(uninterrupted.state_dict())


def test_record_rejects_missing_tasks_and_divergence():
    dwa = DWA(TASKS)
    with pytest.raises(ValueError, match="lack tasks"):
        dwa.record(0, {"semantic": 1.0})
    with pytest.raises(MbmtError, match="diverged"):
        dwa.record(0, {"semantic": 1.0, "depth": float("nan"), "normal": 1.0})


def test_registry_and_params(tiny_params):
    assert {"dwa", "equal"} <= set(WEIGHTINGS)
    assert isinstance(build_weighting("equal", TASKS), EqualWeighting)
    assert build_weighting("dwa", TASKS, temperature=3.0).temperature == 3.0
    with pytest.raises(ParamsError, match="train.weighting"):
        build_weighting("gradnorm", TASKS)
    train = {**tiny_params["train"], "weighting": "dwa", "dwa_temperature": 4.0}
    dwa = weighting_from_params(TASKS, train)
    assert isinstance(dwa, DWA) and dwa.temperature == 4.0 and dwa.tasks == TASKS
    assert isinstance(weighting_from_params(TASKS, {**train, "weighting": "equal"}), EqualWeighting)
