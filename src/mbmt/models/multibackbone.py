"""MBMT-Net's multi-backbone encoder: several task-specialised backbones fused per scale.

CBNet composes *identical* backbones; MBMT-Net fuses backbones of *different* widths (three
EfficientNet-b2 encoders of the single-task nets, optionally a b5): at each of the 4 scales every
backbone's features are projected (1 x 1 conv + norm) to a common width and fused, by a sum or
by concatenation and a 1 x 1 convolution. The result feeds the same two-way FPN as MT-Net.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mbmt.models.encoder import STRIDES, Encoder
from mbmt.models.layers import ConvNormAct

FUSIONS = ("sum", "concat")


class MultiBackboneEncoder(nn.Module):
    """``backbones`` (the ST-pretrained encoders) and an optional ``extra`` encoder -> 4 fused levels.

    ``freeze`` ("partial" training) fixes the backbones entirely: no gradients, and their
    BatchNorm layers stay in eval mode, so their running statistics keep the values the
    single-task nets learned however the model is switched between train and eval.
    """

    def __init__(self, backbones: Sequence[Encoder], extra: Encoder | None, *, channels: int,
                 fusion: str, freeze: bool, norm: str):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; expected one of {', '.join(FUSIONS)}")
        self.backbones = nn.ModuleList(backbones)
        self.extra = extra
        self.fusion = fusion
        self.freeze = freeze
        encoders = self.encoders()
        self.projections = nn.ModuleList(
            nn.ModuleList(ConvNormAct(c, channels, 1, norm=norm) for c in encoder.channels) for encoder in encoders)
        self.fuse = None
        if fusion == "concat":
            self.fuse = nn.ModuleList(ConvNormAct(len(encoders) * channels, channels, 1, norm=norm) for _ in STRIDES)
        self.channels: tuple[int, ...] = (channels,) * len(STRIDES)
        if freeze:
            self.backbones.requires_grad_(False)
            self.backbones.eval()

    def encoders(self) -> list[Encoder]:
        return [*self.backbones, *([self.extra] if self.extra is not None else [])]

    def train(self, mode: bool = True) -> MultiBackboneEncoder:
        super().train(mode)
        if self.freeze:
            self.backbones.eval()
        return self

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        per_scale: list[list[torch.Tensor]] = [[] for _ in STRIDES]
        for encoder, projections in zip(self.encoders(), self.projections):
            for level, (project, x) in enumerate(zip(projections, encoder(image))):
                per_scale[level].append(project(x))
        if self.fuse is None:
            return [torch.stack(xs).sum(dim=0) for xs in per_scale]
        return [fuse(torch.cat(xs, dim=1)) for fuse, xs in zip(self.fuse, per_scale)]
