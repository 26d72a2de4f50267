"""The MTAN baseline: SegNet with task-specific attention modules (Liu et al., CVPR 2019).

Written from the paper and the layout of its reference code (github.com/lorenmt/mtan,
im2im_pred/model_segnet_mtan.py). A shared SegNet (5 encoder and 5 decoder stages, max-pool
indices reused for unpooling) computes the features; each task owns a chain of attention modules
that, at every stage, predicts a sigmoid mask from the shared features and its own previous
output and multiplies the shared features by it. Shared between tasks (as in MTAN) are the
3 x 3 convolutions that carry the attended features from one stage to the next.

Deliberately as MTAN (so its published numbers are comparable): no input normalisation
(images in [0, 1]), xavier-normal initialisation, and the depth prediction is the raw output of
its last convolution (not forced positive; the L1 loss on valid pixels drives it). Semantic
outputs are logits (MTAN's log-softmax is applied by the loss) and normals are L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mbmt.models.base import PredictionLayers, TaskModel, logits, unit_normal
from mbmt.tasks import TASK_CHANNELS, TASKS

# As MTAN: logits, the raw depth convolution (unconstrained), unit normals
MTAN_ACTIVATIONS = {"semantic": logits, "depth": logits, "normal": unit_normal}


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class AttentionMask(nn.Sequential):
    """MTAN's attention module: 1 x 1 conv-BN-ReLU, 1 x 1 conv-BN, sigmoid -> a mask in (0, 1)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__(nn.Conv2d(in_channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())


def conv_stack(channels: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*(ConvBNReLU(channels, channels) for _ in range(depth)))


class SegNetMTAN(TaskModel):
    """``filters``: the widths of the 5 stages (MTAN: 64, 128, 256, 512, 512)."""

    STAGE_DEPTHS = (1, 1, 2, 2, 2)  # 3 x 3 layers after each stage's first one, as SegNet/MTAN

    def __init__(self, filters: Sequence[int], tasks: Sequence[str] = TASKS):
        super().__init__()
        f = list(filters)
        if len(f) != 5:
            raise ValueError(f"MTAN has 5 stages; got filters {f}")
        self.tasks = tuple(tasks)
        below = [f[0]] + f[:-1]  # the width one stage closer to the image (stage 0: its own)
        # Shared SegNet. Encoder stage i: in -> f[i], then depth-1 more layers; decoder stage i: f[i] -> below[i].
        self.encoder_first = nn.ModuleList(ConvBNReLU(c_in, c) for c_in, c in zip([3] + f[:-1], f))
        self.encoder_rest = nn.ModuleList(conv_stack(c, d) for c, d in zip(f, self.STAGE_DEPTHS))
        self.decoder_first = nn.ModuleList(ConvBNReLU(c, b) for c, b in zip(f, below))
        self.decoder_rest = nn.ModuleList(conv_stack(b, d) for b, d in zip(below, self.STAGE_DEPTHS))
        # Attention: per task, a mask per encoder stage (from the stage's first features and the
        # task's previous output) and per decoder stage (from the unpooled input and the previous output).
        self.encoder_attention = nn.ModuleList(
            nn.ModuleList(AttentionMask(c if i == 0 else 2 * c, c) for i, c in enumerate(f)) for _ in self.tasks)
        self.decoder_attention = nn.ModuleList(
            nn.ModuleList(AttentionMask(c + b, b) for c, b in zip(f, below)) for _ in self.tasks)
        # Shared by the tasks: carry attended features to the next encoder stage (its width; the last
        # stays) and to the next decoder stage (to the width of the decoder output it is multiplied with).
        self.encoder_transfer = nn.ModuleList(ConvBNReLU(c, c_next) for c, c_next in zip(f, f[1:] + f[-1:]))
        self.decoder_transfer = nn.ModuleList(ConvBNReLU(c, b) for c, b in zip(f, below))
        self.predict = nn.ModuleDict({
            t: PredictionLayers(nn.Conv2d(f[0], f[0], 3, padding=1), nn.Conv2d(f[0], TASK_CHANNELS[t], 1),
                                activation=MTAN_ACTIVATIONS[t])
            for t in self.tasks})
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        # Shared SegNet, keeping what the attention modules read.
        enc_first, enc_out, indices, x = [], [], [], image
        for first, rest in zip(self.encoder_first, self.encoder_rest):
            enc_first.append(first(x))
            enc_out.append(rest(enc_first[-1]))
            x, idx = self.pool(enc_out[-1])
            indices.append(idx)
        unpooled, dec_out = [], []
        for stage in reversed(range(5)):
            unpooled.append(self.unpool(x, indices[stage], output_size=enc_out[stage].shape[-2:]))
            x = self.decoder_rest[stage](self.decoder_first[stage](unpooled[-1]))
            dec_out.append(x)

        outputs = {}
        for t, task in enumerate(self.tasks):
            a = None
            for stage in range(5):
                inputs = enc_first[stage] if a is None else torch.cat([enc_first[stage], a], dim=1)
                attended = self.encoder_attention[t][stage](inputs) * enc_out[stage]
                a = F.max_pool2d(self.encoder_transfer[stage](attended), 2, 2)
            for step, stage in enumerate(reversed(range(5))):
                a = F.interpolate(a, size=unpooled[step].shape[-2:], mode="bilinear", align_corners=True)  # as MTAN
                a = self.decoder_transfer[stage](a)
                a = self.decoder_attention[t][stage](torch.cat([unpooled[step], a], dim=1)) * dec_out[step]
            outputs[task] = self.predict[task](a, image.shape[-2:])
        return outputs
