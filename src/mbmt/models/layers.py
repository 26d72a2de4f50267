"""Small building blocks shared by the decoders: norm factory, conv-norm-act, separable conv."""

from __future__ import annotations

import math

from torch import nn

NORMS = ("batchnorm", "groupnorm")
GROUPNORM_GROUPS = 32  # Wu & He's default; narrower layers use as many groups as divide the width


def create_norm(kind: str, channels: int) -> nn.Module:
    """The decoder's normalisation layer (params ``decoder.norm``).

    GroupNorm keeps per-sample statistics, for batches too small for BatchNorm; it has the same
    2 parameters per channel, so parameter counts do not depend on the choice.
    """
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "groupnorm":
        return nn.GroupNorm(math.gcd(GROUPNORM_GROUPS, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")


def activation() -> nn.Module:
    # EfficientPS uses in-place activated BatchNorm with leaky ReLU (slope 0.01).
    return nn.LeakyReLU(0.01, inplace=True)


class ConvNormAct(nn.Sequential):
    """k x k convolution (no bias: the norm has one), normalisation, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, norm: str,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, act: bool = True):
        dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        padding = tuple(d * (kernel_size - 1) // 2 for d in dilation)  # keeps the spatial size
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                      groups=groups, bias=False),
            create_norm(norm, out_channels),
            activation() if act else nn.Identity(),
        )


class SeparableConvNormAct(nn.Sequential):
    """Depthwise k x k then pointwise 1 x 1 convolution, each followed by norm and activation.

    The layout of mmcv's DepthwiseSeparableConvModule, which EfficientPS builds its FPN outputs
    and semantic head from: about 1/9 of the parameters of a dense 3 x 3 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, norm: str,
                 dilation: int | tuple[int, int] = 1):
        super().__init__(
            ConvNormAct(in_channels, in_channels, kernel_size, norm=norm, dilation=dilation, groups=in_channels),
            ConvNormAct(in_channels, out_channels, 1, norm=norm),
        )
