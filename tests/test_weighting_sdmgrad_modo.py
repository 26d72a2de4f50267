"""SDMGrad and MoDo: task weights from A = J_1 J_2^T, the Jacobians of two independent mini-batches,
the update J_3^T lambda on a third. Each method's update on the tiny two-task problem of
test_weighting_methods_2025.py against its definition, worked out by hand and by a small numpy
implementation of the paper's update (not torchjd's code); in the trainer: an epoch is the same
batches as under every other method, in the same order (DWA's unchanged), three per update; a
resumed run equals an uninterrupted one bit for bit; DDP refused; a non-finite Jacobian stops with
the guard's error.

Batch k's gradients on the shared theta = (1, 2): G_k (one row per task); each head h_a = 3, h_b = 0.5
adds h^2 to its own task's loss.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_weighting_methods_2025 import CONFLICTING, ORTHOGONAL, TASKS, TwoTasks, logged, trainer
from weighting_helpers import stop_in_epoch_2

from mbmt.errors import ParamsError
from mbmt.training import distributed
from mbmt.training.guard import DivergedError
from mbmt.training.trainer import Trainer
from mbmt.training.weighting import GRADIENT_METHODS, WEIGHTINGS, build_weighting
from mbmt.training.weighting.base import NonFiniteGradient

IDENTITY = ([1.0, 0.0], [0.0, 1.0])


def update(weighting, batches, dtype=torch.float32) -> tuple[list[float], list[float]]:
    """One update of ``weighting`` from ``batches`` (each a pair of task gradients) on a fresh model in
    ``dtype``: (theta's gradient, the heads' gradients)."""
    model = TwoTasks().to(dtype)
    weighting.prepare(model, torch.device("cpu"))
    weighting.shared = None  # a fresh model: find its shared parameters again
    for index, (g_a, g_b) in enumerate(batches):
        losses = {"a": torch.tensor(g_a, dtype=dtype) @ model.theta + model.head_a ** 2,
                  "b": torch.tensor(g_b, dtype=dtype) @ model.theta + model.head_b ** 2}
        weighting.backward_batch(index, losses, 0)
    return model.theta.grad.tolist(), [model.head_a.grad.item(), model.head_b.grad.item()]


def simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (Duchi et al., ICML 2008, by sorting)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > cumulative - 1)[0][-1]
    return np.maximum(v - (cumulative[rho] - 1) / (rho + 1), 0)


def sdmgrad(A, w, *, lr=10.0, momentum=0.5, n_iter=20, lam=0.3):
    """SDMGrad's weights (Xiao et al., NeurIPS 2023, Algorithm 1 with the official code's scale
    normalisation of A by the mean of sqrt(diag A)): projected SGD with momentum on
    w -> 1/2 |A^(1/2) (w + lam w~)|^2, whose gradient is A (w + lam w~); (new w, the update's weights)."""
    m = len(w)
    tilde = np.full(m, 1 / m)
    a = A / (np.sqrt(np.clip(np.diag(A), 0, None)).mean() ** 2 + 1e-8)
    velocity = np.zeros(m)
    for _ in range(n_iter):
        velocity = momentum * velocity + a @ (w + lam * tilde)
        w = simplex(w - lr * velocity)
    return w, (w + lam * tilde) / (1 + lam)


def test_both_are_registered_from_torchjd_with_the_published_options():
    import torchjd.aggregation

    assert {"sdmgrad", "modo"} <= set(GRADIENT_METHODS) and {"sdmgrad", "modo"} <= set(WEIGHTINGS)
    sdm, modo = build_weighting("sdmgrad", TASKS), build_weighting("modo", TASKS)
    assert isinstance(sdm.aggregator, torchjd.aggregation.SDMGradWeighting)
    assert isinstance(modo.aggregator, torchjd.aggregation.MoDoWeighting)
    assert sdm.options == {"lr": 10.0, "momentum": 0.5, "n_iter": 20, "lambda_": 0.3}
    assert modo.options == {"gamma": 0.001, "rho": 0.1}
    assert sdm.batches_per_update == modo.batches_per_update == 3
    assert build_weighting("dwa", TASKS).batches_per_update == 1
    assert all(GRADIENT_METHODS[name].batches_per_update == 1 for name in GRADIENT_METHODS if name not in ("sdmgrad", "modo"))


def test_modo_takes_one_projected_step_on_the_product_of_two_batches_jacobians():
    # A = G_1 G_2^T = diag(1, 2) (batches ORTHOGONAL, IDENTITY); lambda_0 = (1/2, 1/2); gamma = rho = 0.1:
    # lambda_0 - gamma (A lambda_0 + rho lambda_0) = (0.5, 0.5) - 0.1 (0.55, 1.05) = (0.445, 0.395), projected
    # onto the simplex (+0.08 each): (0.525, 0.475). (From G_1 G_1^T = diag(1, 4): (0.575, 0.425).)
    weighting = build_weighting("modo", TASKS, gamma=0.1, rho=0.1)
    weighting.start_epoch(0)
    theta, heads = update(weighting, (ORTHOGONAL, IDENTITY, CONFLICTING))
    # The update on batch 3: 0.525 g_a + 0.475 g_b; each head its own task's gradient 2h.
    assert theta == pytest.approx([0.525 - 0.475, 0.475], rel=1e-6)
    assert heads == pytest.approx([6.0, 1.0])
    assert weighting.logged_weights(0) == pytest.approx({"a": 0.525, "b": 0.475}, rel=1e-6)
    # Step 2 starts from lambda_1: (0.525, 0.475) - 0.1 (0.5775, 0.9975) = (0.46725, 0.37525), +0.07875 each.
    second = build_weighting("modo", TASKS, gamma=0.1, rho=0.1)
    second.load_state_dict(weighting.state_dict())  # the state alone carries lambda_1
    theta, _ = update(second, (ORTHOGONAL, IDENTITY, CONFLICTING))
    assert theta == pytest.approx([0.546 - 0.454, 0.454], rel=1e-6)
    assert update(weighting, (ORTHOGONAL, IDENTITY, CONFLICTING))[0] == pytest.approx(theta, rel=1e-6)


def test_sdmgrad_first_inner_step_by_hand():
    # A = diag(1, 2), scale = mean(1, sqrt 2) = 1.2071, a = A / scale^2; w + lambda w~ = (0.65, 0.65);
    # w - 10 a (0.65, 0.65) = (0.5 - 4.4609, 0.5 - 8.9218): projected onto the simplex, (1, 0).
    # The update's weights: ((1, 0) + 0.3 (1/2, 1/2)) / 1.3 = (1.15, 0.15) / 1.3.
    theta, heads = update(build_weighting("sdmgrad", TASKS, n_iter=1), (ORTHOGONAL, IDENTITY, CONFLICTING))
    w_a, w_b = 1.15 / 1.3, 0.15 / 1.3
    assert theta == pytest.approx([w_a - w_b, w_b], rel=1e-6)
    assert heads == pytest.approx([6.0, 1.0])


@pytest.mark.parametrize("batches", [(ORTHOGONAL, IDENTITY, CONFLICTING), (CONFLICTING, ([2.0, 1.0], [0.5, 3.0]), ORTHOGONAL)])
def test_sdmgrad_equals_a_numpy_implementation_of_its_update_over_two_steps(batches):
    """The published defaults (20 inner iterations, lr 10, momentum 0.5, lambda 0.3), two updates: the
    second starts its inner solver from the first's w (the warm start, kept in the checkpoint). In
    float64 (a model in float64): twenty steps of 10 x the gradient carry float32's rounding of A into
    the fourth digit (5e-4 relative in float32 here, 1e-12 in float64)."""
    G = [np.array(gradients) for gradients in batches]
    A = G[0] @ G[1].T
    weighting = build_weighting("sdmgrad", TASKS)
    w = np.full(2, 0.5)
    for _ in range(2):
        w, weights = sdmgrad(A, w)
        theta, _ = update(weighting, batches, torch.float64)
        assert theta == pytest.approx((G[2].T @ weights).tolist(), rel=1e-9, abs=1e-9)
    state = weighting.state_dict()["aggregator"]["weights"]
    assert state.tolist() == pytest.approx(w.tolist(), abs=1e-9)
    assert update(build_weighting("sdmgrad", TASKS), batches)[0] == pytest.approx(
        (G[2].T @ sdmgrad(A, np.full(2, 0.5))[1]).tolist(), rel=2e-3)  # float32


def test_the_state_round_trip_gives_a_fresh_weighting_the_uninterrupted_next_step():
    for name, options in (("sdmgrad", {}), ("modo", {"gamma": 0.5})):
        uninterrupted = build_weighting(name, TASKS, **options)
        update(uninterrupted, (ORTHOGONAL, IDENTITY, CONFLICTING))
        restored = build_weighting(name, TASKS, **options)
        restored.prepare(TwoTasks(), torch.device("cpu"))
        restored.load_state_dict(uninterrupted.state_dict())
        fresh = build_weighting(name, TASKS, **options)
        batches = (CONFLICTING, ORTHOGONAL, CONFLICTING)
        expected = update(uninterrupted, batches)
        assert update(restored, batches) == expected
        assert update(fresh, batches) != expected, name  # the state matters


@pytest.mark.parametrize("name", ["sdmgrad", "modo"])
@pytest.mark.parametrize("index", [0, 1])
def test_a_non_finite_jacobian_of_either_batch_raises_naming_task_and_batch(name, index):
    weighting = build_weighting(name, TASKS)
    model = TwoTasks()
    weighting.prepare(model, torch.device("cpu"))
    for i in range(index + 1):
        losses = model.losses(*CONFLICTING)
        if i == index:
            # A finite loss, an infinite derivative; autograd's zero cotangent for a's row meets it too (0 * inf).
            losses["b"] = losses["b"] + torch.sqrt(model.theta[1] - 2.0)
            assert torch.isfinite(losses["b"])
            with pytest.raises(NonFiniteGradient,
                               match=rf"not finite \(tasks a, b, batch {index + 1} of 3; the losses are finite"):
                weighting.backward_batch(i, losses, 0)
        else:
            weighting.backward_batch(i, losses, 0)
    assert model.theta.grad is None


def test_a_non_finite_gradient_of_the_update_batch_reaches_no_parameter():
    weighting = build_weighting("modo", TASKS)
    model = TwoTasks()
    weighting.prepare(model, torch.device("cpu"))
    weighting.backward_batch(0, model.losses(*CONFLICTING), 0)
    weighting.backward_batch(1, model.losses(*CONFLICTING), 0)
    losses = model.losses(*CONFLICTING)
    losses["a"] = losses["a"] + torch.sqrt(model.theta[0] - 1.0)
    with pytest.raises(NonFiniteGradient, match=r"not finite \(tasks a, b weighted together, batch 3 of 3"):
        weighting.backward_batch(2, losses, 0)
    assert model.theta.grad is None and model.head_a.grad is None


def test_distributed_is_refused_naming_the_method():
    two_ranks = distributed.DistributedContext(torch.device("cpu"), rank=0, local_rank=0, world_size=2)
    for name in ("sdmgrad", "modo"):
        rank = SimpleNamespace(name="mtnet", context=two_ranks, compile_mode="none",
                               weighting=build_weighting(name, ("semantic", "depth")))
        with pytest.raises(ParamsError, match=rf"train.weighting: {name} is not supported on several processes "
                                              r"\(WORLD_SIZE 2\): each rank would .*; train on one process"):
            Trainer.check_weighting_fits(rank)


def test_an_epoch_of_fewer_batches_than_one_update_names_steps_per_epoch():
    def steps(name, cap, images=8):
        rank = SimpleNamespace(name="mtnet", train_sampler=range(images), local_batch=2,
                               train_settings=SimpleNamespace(steps_per_epoch=cap), weighting=build_weighting(name, TASKS))
        return Trainer.steps_in_epoch(rank)

    assert steps("dwa", None) == 4 and steps("dwa", 2) == 2
    assert steps("sdmgrad", None) == 1 and steps("modo", 7) == 1 and steps("modo", 6, images=20) == 2
    with pytest.raises(ParamsError, match=r"train.weighting: sdmgrad draws 3 batches per update, and an epoch has 2 "
                                          r".*set train.steps_per_epoch to at least 3 or null"):
        steps("sdmgrad", 2)


# --- in the trainer -----------------------------------------------------------------------------

def test_an_epoch_is_the_loaders_batches_in_order_for_dwa_one_each_for_sdmgrad_three_per_update(
        project, processed_data, tmp_path):
    """DWA's steps get exactly the batches of the epoch's loader (the order every method had before
    multi-batch methods), one per update; SDMGrad's updates get the same batches, in the same order,
    three per update (the fourth batch of the 4-batch epoch left out)."""
    processed_data()
    seen = {}
    for name in ("dwa", "sdmgrad"):
        run = trainer(tmp_path / name, weighting=name, epochs=1, val_every=0)
        expected = [batch["image"].clone() for batch in run.train_loader(0)]
        got = []
        step, group = run.train_step, run.train_update

        def one(batch, epoch, index, step=step):
            got.append([batch["image"].clone()])
            return step(batch, epoch, index)

        def several(batches, epoch, index, group=group):
            got.append([batch["image"].clone() for batch in batches])
            return group(batches, epoch, index)

        run.train_step, run.train_update = one, several
        run.fit()
        seen[name] = got
        assert len(expected) == 4
        if name == "dwa":  # the weights of the loop as it was: train_step on each of the loader's batches
            before = trainer(tmp_path / "before", weighting=name, epochs=1, val_every=0)
            before.model.train()
            for index, batch in enumerate(before.train_loader(0)):
                before.train_step(batch, 0, index)
            for key, value in before.module.state_dict().items():
                assert torch.equal(value, run.module.state_dict()[key]), key
    assert [len(update) for update in seen["dwa"]] == [1, 1, 1, 1]
    assert [len(update) for update in seen["sdmgrad"]] == [3]
    dwa = [images for update in seen["dwa"] for images in update]
    sdm = [images for update in seen["sdmgrad"] for images in update]
    assert all(torch.equal(a, b) for a, b in zip(dwa, expected)) and len(dwa) == 4
    assert all(torch.equal(a, b) for a, b in zip(sdm, expected[:3]))


def test_a_resumed_sdmgrad_run_continues_bit_for_bit(project, processed_data, tmp_path):
    processed_data()
    uninterrupted = trainer(tmp_path / "uninterrupted", weighting="sdmgrad", val_every=0)
    uninterrupted.fit()
    stop_in_epoch_2(tmp_path / "resumed", weighting="sdmgrad", val_every=0)
    resumed = trainer(tmp_path / "resumed", weighting="sdmgrad", val_every=0)
    assert resumed.epoch == 1
    assert resumed.weighting.aggregator._w is not None  # the first update's w, from the checkpoint
    resumed.fit()
    for key, value in uninterrupted.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert logged(resumed) == logged(uninterrupted)
    assert torch.equal(uninterrupted.weighting.aggregator._w, resumed.weighting.aggregator._w)
    assert "train/weight/semantic" in logged(resumed)[-1]


def test_a_non_finite_jacobian_stops_modo_training_with_the_guards_error(project, processed_data, tmp_path):
    processed_data()
    run = trainer(tmp_path / "run", weighting="modo")
    losses = run.global_batch_losses
    shared = next(p for p in run.module.parameters() if p.requires_grad)

    def poisoned(outputs, batch):
        values = losses(outputs, batch)
        values["depth"] = values["depth"] + torch.sqrt(shared.sum() * 0.0)  # + 0 to the loss, nan to its gradient
        return values

    run.global_batch_losses = poisoned
    with pytest.raises(DivergedError, match=r"not finite \(tasks .*depth.*, batch 1 of 3; the losses are finite\) at "
                                            r"epoch 1 of \d+, step 1 of 1; training stopped before that update and"):
        run.fit()
