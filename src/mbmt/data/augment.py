"""MTAN's training augmentation: random scale crop and horizontal flip, on one sample.

A sample here is what `mbmt.data.dataset.NYUv2Dataset` (on the CPU) and
`mbmt.data.device_split.DeviceSplit` (on the training device) work on: channel-first tensors
``image`` (3,H,W) float, ``semantic`` (H,W) int, ``depth`` (1,H,W) float metres (0 = missing),
``normal`` (3,H,W) float unit vectors (all-zero = missing). A transform is a callable
``transform(sample, rng) -> sample`` that draws all its randomness from ``rng``, a
``numpy.random.Generator``; the dataset seeds ``rng`` from (seed, epoch, index) alone, so an
augmented sample does not depend on the number of workers or processes, or on resumption. The
random draws and the resampling indices are computed on the host; the pixels are moved on the
sample's device, so the same functions augment a sample held on a GPU.

Choices (MTAN's, except where said):

- Scale crop: scale s drawn uniformly from {1.0, 1.2, 1.5}; a window of int(H/s) x int(W/s) at a
  uniformly random position is resized back to H x W. Zooming in by s brings the scene s times
  closer, so depth is divided by s (MTAN); normals are directions and do not change.
- Pixel-centre sampling for every map: output pixel y reads the crop at (y + 0.5) * h / H - 0.5.
  The image is resized bilinearly (``align_corners=False``); the target maps take the crop pixel
  whose centre is nearest to that point. Image and targets therefore stay aligned to a fraction
  of a pixel (MTAN resizes the image with ``align_corners=True`` and the labels with legacy
  nearest, which are offset from each other by up to half a source pixel).
- Labels, depth and normals are all resampled by nearest neighbour, on the same grid. Nothing is
  interpolated, so no class id, depth or normal is invented between two surfaces (no "flying"
  depths across an occlusion edge), a valid pixel never blends with a missing one (depth 0,
  all-zero normal), normals stay unit vectors, and the label, depth and normal of an output
  pixel come from the same scene point, as in the source. MTAN interpolates normals bilinearly,
  which mixes all-zero vectors into the valid ones at hole borders and shortens vectors at
  creases; at the scales used (upsampling by at most 1.5) nearest costs no detail.
- Horizontal flip with probability 0.5: every map is mirrored and the normal's x component (the
  image's rightward axis) changes sign, so normals still point out of the mirrored surfaces.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Sample = dict[str, torch.Tensor]
Transform = Callable[[Sample, np.random.Generator], Sample]

SCALES = (1.0, 1.2, 1.5)
TARGETS = ("semantic", "depth", "normal")  # resampled by nearest neighbour


def crop_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The crop window (h, w) for ``scale``: int(H/s) x int(W/s), as MTAN."""
    return int(height / scale), int(width / scale)


@functools.lru_cache(maxsize=64)
def _nearest_offsets(length: int, size: int, device: torch.device) -> torch.Tensor:
    """Offset in a window of ``length`` pixels read by each of ``size`` output pixels (pixel centres).

    Computed once on the host in float64 and kept on ``device`` (never modified): the same indices
    on every device, and no host-to-device copy per sample.
    """
    centres = (np.arange(size) + 0.5) * (length / size)
    return torch.from_numpy(np.floor(centres).astype(np.int64)).to(device)


def _nearest_source(start: int, length: int, size: int, device: torch.device) -> torch.Tensor:
    """Source index, in [start, start + length), of each of ``size`` output pixels."""
    return _nearest_offsets(length, size, device) + start


def scale_crop(sample: Sample, top: int, left: int, crop_height: int, crop_width: int, scale: float) -> Sample:
    """Resize the window [top, top+crop_height) x [left, left+crop_width) back to the full size.

    Image bilinear; semantic, depth and normal nearest; depth divided by ``scale``.
    """
    height, width = sample["image"].shape[-2:]
    if not (0 <= top <= height - crop_height and 0 <= left <= width - crop_width):
        raise ValueError(f"crop window {crop_height}x{crop_width} at ({top}, {left}) exceeds the {height}x{width} sample")
    window = sample["image"][None, :, top:top + crop_height, left:left + crop_width]
    out = dict(sample)
    out["image"] = F.interpolate(window, size=(height, width), mode="bilinear", align_corners=False)[0]
    device = sample["image"].device
    rows = _nearest_source(top, crop_height, height, device)
    cols = _nearest_source(left, crop_width, width, device)
    # One gather from the flattened map: several times faster than 2-D advanced indexing.
    pixels = (rows[:, None] * width + cols[None, :]).flatten()
    for name in TARGETS:
        out[name] = sample[name].flatten(-2).index_select(-1, pixels).view(sample[name].shape)
    out["depth"].div_(scale)  # a new tensor: the input sample is left untouched
    return out


def hflip(sample: Sample) -> Sample:
    """Mirror every map left-right and negate the normal's x component."""
    out = {name: value.flip(-1) if name in ("image", *TARGETS) else value for name, value in sample.items()}
    out["normal"][0].neg_()  # flip() made a copy: the input sample is left untouched
    return out


@dataclass(frozen=True)
class RandomScaleCrop:
    """Crop a random 1/s window, s drawn from ``scales``, and resize it back (see `scale_crop`)."""

    scales: Sequence[float] = SCALES

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[-2:]
        scale = float(self.scales[rng.integers(len(self.scales))])
        crop_height, crop_width = crop_size(height, width, scale)
        top = int(rng.integers(height - crop_height + 1))
        left = int(rng.integers(width - crop_width + 1))
        if crop_height == height and crop_width == width:
            return sample  # scale 1: the window is the whole sample, resizing is the identity
        return scale_crop(sample, top, left, crop_height, crop_width, scale)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """`hflip` with probability ``p``."""

    p: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return hflip(sample) if rng.random() < self.p else sample


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    transforms: Sequence[Transform]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


def sample_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that augments sample ``index`` in epoch ``epoch``: a function of those alone."""
    return np.random.default_rng([seed, epoch, index])


def training_augmentation() -> Compose:
    """MTAN's training augmentation: random scale crop, then horizontal flip."""
    return Compose((RandomScaleCrop(), RandomHorizontalFlip()))
