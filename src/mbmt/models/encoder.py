"""Any timm backbone as a feature pyramid at strides 4, 8, 16 and 32.

The backbone is created with timm's ``features_only`` API and the levels are chosen by
``feature_info.reduction()``, so EfficientNet, ConvNeXt, ResNet, ... plug in by name. ImageNet
weights are read from data/weights/, which the weights stage fills (mbmt.models.pretrained), never
downloaded here: a training run on a cluster node must not depend on the network, and it starts
from the bytes the DAG versioned, not from whatever timm's cache holds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import timm
import torch
from timm.models.efficientnet import EfficientNetFeatures
from torch import nn

from mbmt.errors import MbmtError

STRIDES = (4, 8, 16, 32)


def pretrained_weights(name: str) -> Path:
    """The ImageNet weight file of backbone ``name``, as the DAG's weights stage recorded it."""
    from mbmt.models.pretrained import weight_file

    return weight_file(name)


def _weights_kwargs(weights: Path | None) -> dict:
    if weights is None:
        return {"pretrained": False}
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}


@functools.lru_cache(maxsize=None)
def backbone_layout(name: str) -> tuple[tuple[int, ...], bool]:
    """For timm backbone ``name``: the positions in its feature_info of the (deepest) features at
    each of STRIDES, and whether it is an EfficientNet (has a spatial final 1 x 1 conv)."""
    try:
        # Leaves the global RNG as it was: building a model must not depend on whether this is cached.
        with torch.random.fork_rng(devices=[]):
            probe = timm.create_model(name, features_only=True)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise MbmtError(f"backbone {name!r}: {exc} (see timm.list_models())") from None
    except Exception as exc:
        raise MbmtError(f"backbone {name!r} does not support timm's features_only API: {exc}") from None
    reductions = probe.feature_info.reduction()
    missing = [s for s in STRIDES if s not in reductions]
    if missing:
        raise MbmtError(f"backbone {name!r} has feature levels at strides {reductions}, "
                        f"but the decoder needs strides {list(STRIDES)}; choose another backbone")
    indices = tuple(max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES)
    return indices, isinstance(probe, EfficientNetFeatures)


class Encoder(nn.Module):
    """Backbone ``name`` -> features at strides 4, 8, 16, 32 of an RGB image in [0, 1].

    The image is normalised with the backbone's own pretrained mean/std. With ``head_conv``,
    EfficientNet's final 1 x 1 convolution (``conv_head`` + ``bn2``, e.g. 352 -> 1408 channels
    for b2) is applied to the stride-32 level, as EfficientPS implementations do; backbones
    without such a layer ignore it (``uses_head_conv`` tells). ``weights``: ImageNet weight file,
    or None for random initialisation.
    """

    def __init__(self, name: str, *, head_conv: bool, weights: Path | None = None):
        super().__init__()
        self.name = name
        kwargs = _weights_kwargs(weights)
        indices, is_efficientnet = backbone_layout(name)
        self.body = timm.create_model(name, features_only=True, out_indices=indices, **kwargs)
        channels = list(self.body.feature_info.channels())
        self.head: nn.Module | None = None
        if head_conv and is_efficientnet:
            full = timm.create_model(name, num_classes=0, **kwargs)
            self.head = nn.Sequential(full.conv_head, full.bn2)
            channels[-1] = full.num_features
        self.channels: tuple[int, ...] = tuple(channels)
        cfg = self.body.pretrained_cfg
        # Not persistent: a property of the backbone, not learned state.
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)

    @property
    def uses_head_conv(self) -> bool:
        return self.head is not None

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.body((image - self.mean) / self.std)
        if self.head is not None:
            features[-1] = self.head(features[-1])
        return features
