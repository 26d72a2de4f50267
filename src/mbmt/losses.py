"""Task losses (MTAN's), each averaged over the valid pixels of the batch.

| task | loss | valid pixel |
| --- | --- | --- |
| semantic | cross-entropy of the 13 logits | label != -1 |
| depth | L1, mean |pred - target| in metres | target != 0 |
| normal | 1 - cosine similarity | target not all-zero |

A batch without a single valid pixel for a task gives a loss of exactly 0 that is still part of
the graph (backward yields zero gradients), not NaN as MTAN's 0/0 would: nothing is learned from
it and training goes on. Losses are computed in float32 whatever the autocast dtype.
The sums and counts are exposed (`*_terms`) so that `mbmt.metrics` averages over a whole set
with exactly the same per-pixel definitions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mbmt.tasks import IGNORE_LABEL


def semantic_valid(target: torch.Tensor) -> torch.Tensor:
    """(B,H,W) bool: labelled pixels."""
    return target != IGNORE_LABEL


def depth_valid(target: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) bool: pixels with a depth measurement."""
    return target != 0


def normal_valid(target: torch.Tensor) -> torch.Tensor:
    """(B,H,W) bool: pixels whose normal is not the all-zero vector."""
    return (target != 0).any(dim=1)


def cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,H,W) cosine between (B,3,H,W) normal maps; 0 where either vector is zero."""
    return (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(dim=1)


def semantic_terms(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the per-pixel cross-entropy over labelled pixels, number of labelled pixels)."""
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_LABEL, reduction="sum")
    return total, semantic_valid(target).sum()


def depth_terms(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of |pred - target| over measured pixels, number of measured pixels)."""
    valid = depth_valid(target)
    # where(), not a product with the mask: a non-finite prediction at a missing pixel stays out.
    error = torch.where(valid, (pred.float() - target).abs(), 0.0)
    return error.sum(), valid.sum()


def normal_terms(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of 1 - cosine over pixels with a normal, number of such pixels)."""
    valid = normal_valid(target)
    error = torch.where(valid, 1.0 - cosine(pred.float(), target), 0.0)
    return error.sum(), valid.sum()


def _mean(terms: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    total, count = terms
    # Without a valid pixel the sum is an exact 0 that still depends on the prediction.
    return total / count.clamp(min=1)


def semantic_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B,13,H,W) logits against (B,H,W) labels, ignoring -1."""
    return _mean(semantic_terms(logits, target))


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (metres) of (B,1,H,W) depth over pixels where the target is not 0."""
    return _mean(depth_terms(pred, target))


def normal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cosine similarity of (B,3,H,W) normals over pixels where the target is not all-zero."""
    return _mean(normal_terms(pred, target))


LOSSES = {"semantic": semantic_loss, "depth": depth_loss, "normal": normal_loss}
LOSS_TERMS = {"semantic": semantic_terms, "depth": depth_terms, "normal": normal_terms}


def compute_losses(outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
    """The loss of every task in ``outputs`` against the same-named target in ``batch``."""
    return {task: LOSSES[task](prediction, batch[task]) for task, prediction in outputs.items()}
