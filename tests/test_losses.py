"""Task losses against hand-computed values, and the no-valid-pixel case."""

from __future__ import annotations

import math

import pytest
import torch

from mbmt.losses import LOSSES, compute_losses, depth_loss, normal_loss, semantic_loss

LOG4 = math.log(4)


def one_hot_logits(predicted: list[list[int]], classes: int = 13) -> torch.Tensor:
    """Logits ln 4 at the predicted class, 0 elsewhere: cross-entropy is ln 16 - ln 4 = ln 4 when
    the prediction is right and ln(4 + 12) = 2 ln 4 when it is wrong."""
    labels = torch.tensor(predicted)
    logits = torch.zeros(labels.shape[0], classes, *labels.shape[1:])
    logits.scatter_(1, labels[:, None], LOG4)
    return logits.requires_grad_()


def test_semantic_loss_ignores_unlabelled_pixels():
    logits = one_hot_logits([[[0, 1, 1, 2]]])
    target = torch.tensor([[[0, 0, 1, -1]]])
    # right, wrong, right; the unlabelled pixel (a wrong prediction) is ignored
    assert semantic_loss(logits, target).item() == pytest.approx((LOG4 + 2 * LOG4 + LOG4) / 3)


def test_depth_loss_is_l1_over_measured_pixels():
    pred = torch.tensor([[[[1.5, 2.0, 7.0, 3.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.0, 2.0, 0.0, 4.0]]]])
    assert depth_loss(pred, target).item() == pytest.approx((0.5 + 0 + 1) / 3)
    # A non-finite prediction where the depth is missing does not leak into the loss.
    pred_nan = torch.tensor([[[[1.5, 2.0, float("nan"), 3.0]]]], requires_grad=True)
    loss = depth_loss(pred_nan, target)
    loss.backward()
    assert loss.item() == pytest.approx(0.5) and torch.isfinite(pred_nan.grad).all()


def unit(angle_deg: float) -> list[float]:
    angle = math.radians(angle_deg)
    return [math.cos(angle), math.sin(angle), 0.0]


def normal_maps(pairs: list[tuple[list[float], list[float]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) of shape (1,3,1,N) from N (pred, target) vectors."""
    pred = torch.tensor([p for p, _ in pairs]).T[None, :, None, :]
    target = torch.tensor([t for _, t in pairs]).T[None, :, None, :]
    return pred.contiguous(), target.contiguous()


def test_normal_loss_is_one_minus_cosine_over_pixels_with_a_normal():
    pred, target = normal_maps([
        (unit(0), unit(0)),
        (unit(60), unit(0)),
        (unit(90), [0.0, 0.0, 0.0]),  # no ground truth
        (unit(180), unit(0)),
        # components summing to zero are still a valid normal (MTAN's sum != 0 test would drop it)
        (unit(45), [math.sqrt(0.5), -math.sqrt(0.5), 0.0]),
    ])
    expected = ((1 - 1) + (1 - 0.5) + (1 - (-1)) + (1 - 0)) / 4
    assert normal_loss(pred, target).item() == pytest.approx(expected, abs=1e-6)


def test_normal_loss_is_a_true_cosine_for_unnormalised_vectors():
    pred, target = normal_maps([([2.0, 0.0, 0.0], unit(60))])
    assert normal_loss(pred, target).item() == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("task", ["semantic", "depth", "normal"])
def test_no_valid_pixel_gives_a_zero_loss_connected_to_the_graph(task):
    shape = {"semantic": (2, 13, 3, 4), "depth": (2, 1, 3, 4), "normal": (2, 3, 3, 4)}[task]
    pred = torch.randn(shape, requires_grad=True)
    target = torch.full((2, 3, 4), -1) if task == "semantic" else torch.zeros(shape)
    loss = LOSSES[task](pred, target)
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros(shape))


def test_compute_losses_covers_the_tasks_of_the_outputs():
    batch = {"semantic": torch.tensor([[[0, 1]]]), "depth": torch.tensor([[[[2.0, 0.0]]]]),
             "normal": torch.zeros(1, 3, 1, 2)}
    outputs = {"semantic": one_hot_logits([[[0, 0]]]), "depth": torch.tensor([[[[1.0, 5.0]]]])}
    losses = compute_losses(outputs, batch)
    assert set(losses) == {"semantic", "depth"}
    assert losses["semantic"].item() == pytest.approx((LOG4 + 2 * LOG4) / 2)
    assert losses["depth"].item() == pytest.approx(1.0)
