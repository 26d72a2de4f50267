"""What every model is to the rest of the package: image in, one dense map per task out."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

MIN_DEPTH_M = 1.0e-3  # softplus rounds to 0 in float32 below about -100; depth must stay strictly positive
NORM_EPS = 1.0e-12


def positive_depth(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x) + MIN_DEPTH_M


def unit_normal(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise over channels. An all-zero vector (e.g. MTAN at a pixel where its ReLU features
    are all 0: its biases start at 0) becomes +z without gradient, where plain normalisation would
    give 0 (or NaN) with a gradient of 1/eps."""
    norm = x.norm(dim=1, keepdim=True)
    fallback = torch.zeros_like(x)
    fallback[:, -1] = 1.0
    return torch.where(norm > NORM_EPS, x / norm.clamp_min(NORM_EPS), fallback)


def logits(x: torch.Tensor) -> torch.Tensor:
    """Identity: a head's raw output as it is."""
    return x


# task -> what turns a head's raw output into the task's prediction
OUTPUT_ACTIVATIONS = {"semantic": logits, "depth": positive_depth, "normal": unit_normal}


class TaskModel(nn.Module):
    """``forward(image)``: RGB (B, 3, H, W) in [0, 1] -> {task: (B, C, H, W)} for ``tasks``.

    semantic: 13 logits; depth: 1 channel, positive metres; normal: 3 channels, unit length.
    Input normalisation happens inside the model.
    """

    tasks: tuple[str, ...]


def resize_like(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to ``size`` (H, W); a 2x downsampling equals 2 x 2 average pooling."""
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PredictionLayers(nn.Sequential):
    """The last layers of one task in every model: ``layers``, a bilinear resize to the input size,
    and the task's output activation, all in float32 whatever the autocast.

    Under bf16 autocast they would round depth to steps of ~0.4 % (bf16 keeps 8 significant bits),
    and the logits and normals alike, before the float32 losses. The features coming in are cast
    up; everything before stays in the autocast dtype, so only these few layers pay for precision.
    ``forward(x, size)``: features (B, C, h, w) -> the task's prediction (B, channels, *size), float32.
    """

    def __init__(self, *layers: nn.Module, activation: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__(*layers)
        self.activation = activation

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:  # type: ignore[override]
        with torch.autocast(x.device.type, enabled=False):
            return self.activation(resize_like(super().forward(x.float()), size))

    def extra_repr(self) -> str:
        return f"activation={self.activation.__name__}"


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str | None:
    """How the state dict ``found`` fails to fit a module whose own is ``expected``, in one line
    (counts and an example of each kind, where torch lists every key); None when it fits."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    reshaped = [f"{key} is {tuple(found[key].shape)} in the file, {tuple(value.shape)} in the model"
                for key, value in expected.items() if key in found and found[key].shape != value.shape]
    parts = [f"{len(items)} {kind} (e.g. {items[0]})"
             for kind, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if items]
    return "; ".join(parts) or None


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                 mismatch: Callable[[str], Exception]) -> None:
    """``module.load_state_dict(state_dict)``, or raise ``mismatch(detail)``: the caller's error, naming
    its file and the fix, around one line saying how the weights do not fit (state_dict_mismatch, or
    torch's message folded onto one line when the keys and shapes fit)."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        detail = state_dict_mismatch(module.state_dict(), state_dict) or " ".join(str(exc).split())
        raise mismatch(detail) from None
