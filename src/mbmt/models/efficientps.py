"""EfficientPS-style dense prediction (Mohan & Valada, IJCV 2021): two-way FPN and task heads.

ST-Net (one backbone, one head), MT-Net (one shared backbone, three heads) and MBMT-Net (a
multi-backbone encoder, three heads) are all an ``EfficientPS`` over a different encoder; see
docs/architecture.md for every layer and where the paper's parameter counts led the choices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mbmt.models.base import OUTPUT_ACTIVATIONS, PredictionLayers, TaskModel, resize_like
from mbmt.models.layers import ConvNormAct, SeparableConvNormAct
from mbmt.tasks import TASK_CHANNELS


class TwoWayFPN(nn.Module):
    """Top-down and bottom-up feature pyramid paths, summed per scale.

    Each path has its own 1 x 1 lateral convolutions (input channels -> ``channels``); the
    top-down path upsamples coarse context into fine levels, the bottom-up path downsamples fine
    detail into coarse levels; their sum passes a 3 x 3 separable convolution per scale.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, *, norm: str):
        super().__init__()
        self.top_down_laterals = nn.ModuleList(ConvNormAct(c, channels, 1, norm=norm) for c in in_channels)
        self.bottom_up_laterals = nn.ModuleList(ConvNormAct(c, channels, 1, norm=norm) for c in in_channels)
        self.outputs = nn.ModuleList(SeparableConvNormAct(channels, channels, norm=norm) for _ in in_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        bottom_up: list[torch.Tensor] = []
        for lateral, x in zip(self.bottom_up_laterals, features):
            y = lateral(x)
            bottom_up.append(y + resize_like(bottom_up[-1], y.shape[-2:]) if bottom_up else y)
        top_down: list[torch.Tensor] = []
        for lateral, x in zip(reversed(self.top_down_laterals), reversed(features)):
            y = lateral(x)
            top_down.append(y + resize_like(top_down[-1], y.shape[-2:]) if top_down else y)
        top_down.reverse()
        return [conv(b + t) for conv, b, t in zip(self.outputs, bottom_up, top_down)]


class DensePredictionCell(nn.Module):
    """Large-scale context (Chen et al., NeurIPS 2018): five separable 3 x 3 convolutions with the
    searched dilation rates, concatenated and projected by a 1 x 1 convolution."""

    DILATIONS = ((1, 6), (1, 1), (6, 21), (18, 15), (6, 3))

    def __init__(self, channels: int, out_channels: int, *, norm: str):
        super().__init__()
        first, *parallel, chained = self.DILATIONS
        self.first = SeparableConvNormAct(channels, channels, norm=norm, dilation=first)
        self.parallel = nn.ModuleList(SeparableConvNormAct(channels, channels, norm=norm, dilation=d) for d in parallel)
        self.chained = SeparableConvNormAct(channels, channels, norm=norm, dilation=chained)  # on the last branch
        self.project = ConvNormAct(channels * len(self.DILATIONS), out_channels, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        branches = [x] + [branch(x) for branch in self.parallel]
        branches.append(self.chained(branches[-1]))
        return self.project(torch.cat(branches, dim=1))


class LargeScaleFeatures(nn.Sequential):
    """Fine detail at strides 4 and 8 (EfficientPS' LSFE): two separable 3 x 3 convolutions."""

    def __init__(self, channels: int, out_channels: int, *, norm: str):
        super().__init__(SeparableConvNormAct(channels, out_channels, norm=norm),
                         SeparableConvNormAct(out_channels, out_channels, norm=norm))


class MismatchCorrection(nn.Module):
    """Two separable 3 x 3 convolutions that adapt coarse features before they are added to the
    next finer level (EfficientPS' MC module), then an upsampling to that level."""

    def __init__(self, channels: int, *, norm: str):
        super().__init__()
        self.convs = LargeScaleFeatures(channels, channels, norm=norm)

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return resize_like(self.convs(x), size)


def prediction_layer(task: str, in_channels: int, hidden_channels: int) -> PredictionLayers:
    """The last layers of a head: logits by one 1 x 1 convolution (as EfficientPS); depth and
    normals by a 3 x 3 then a 1 x 1 convolution (MTAN's prediction layer), which is what the
    paper's ST-SS/DE/SNP parameter counts imply (docs/architecture.md); then the task's output
    activation, all in float32."""
    out_channels = TASK_CHANNELS[task]
    if task == "semantic":
        layers = [nn.Conv2d(in_channels, out_channels, 1)]
    else:
        layers = [nn.Conv2d(in_channels, hidden_channels, 3, padding=1), nn.Conv2d(hidden_channels, out_channels, 1)]
    return PredictionLayers(*layers, activation=OUTPUT_ACTIVATIONS[task])


class EfficientPSHead(nn.Module):
    """One task's head on the FPN outputs (strides 4, 8, 16, 32): context cells at 16/32, detail
    modules at 4/8, mismatch correction from coarse to fine, everything upsampled to stride 4 and
    concatenated, the prediction layers, a bilinear upsampling to the input size and the output
    activation (the last three in float32)."""

    def __init__(self, task: str, in_channels: int, channels: int, *, norm: str):
        super().__init__()
        self.context16 = DensePredictionCell(in_channels, channels, norm=norm)
        self.context32 = DensePredictionCell(in_channels, channels, norm=norm)
        self.detail4 = LargeScaleFeatures(in_channels, channels, norm=norm)
        self.detail8 = LargeScaleFeatures(in_channels, channels, norm=norm)
        self.correct16 = MismatchCorrection(channels, norm=norm)
        self.correct8 = MismatchCorrection(channels, norm=norm)
        self.predict = prediction_layer(task, 4 * channels, in_channels)

    def forward(self, pyramid: Sequence[torch.Tensor], size: torch.Size) -> torch.Tensor:
        p4, p8, p16, p32 = pyramid
        c32 = self.context32(p32)
        c16 = self.context16(p16)
        d8 = self.detail8(p8) + self.correct16(c16 + resize_like(c32, c16.shape[-2:]), p8.shape[-2:])
        d4 = self.detail4(p4) + self.correct8(d8, p4.shape[-2:])
        stride4 = d4.shape[-2:]
        x = torch.cat([d4] + [resize_like(f, stride4) for f in (d8, c16, c32)], dim=1)
        return self.predict(x, size)


class EfficientPS(TaskModel):
    """``encoder`` (anything with ``channels`` giving 4 feature levels) + two-way FPN + one head per task."""

    def __init__(self, encoder: nn.Module, tasks: Sequence[str], *, fpn_channels: int, head_channels: int, norm: str):
        super().__init__()
        self.tasks = tuple(tasks)
        self.encoder = encoder
        self.fpn = TwoWayFPN(encoder.channels, fpn_channels, norm=norm)
        self.heads = nn.ModuleDict({t: EfficientPSHead(t, fpn_channels, head_channels, norm=norm) for t in self.tasks})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        pyramid = self.fpn(self.encoder(image))
        size = image.shape[-2:]
        return {t: head(pyramid, size) for t, head in self.heads.items()}
