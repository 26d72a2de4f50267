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

Two resamplings, chosen by params train.augment (`augmentation`): ``mtan-like`` (also written
``true``; the project's default) and ``mtan`` (MTAN's exact resampling). Both draw the same scale,
window and flip from the same generator; they differ only in how the window is resized.

Choices of ``mtan-like`` (MTAN's, except where said):

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

``mtan``: what MTAN's code computes (lorenmt/mtan, im2im_pred/create_dataset.py: RandomScaleCrop,
then the flip in NYUv2.__getitem__), equal to it bit for bit for the same scale, window and flip
and the same float32 maps on the CPU: the image and the normals resized bilinearly with
``align_corners=True``; labels and depth by PyTorch's legacy ``nearest`` (output pixel y reads
window row floor(y * h / H), the scale computed in float32), depth divided by the scale; the
flip as above (MTAN also negates the flipped normals' x component). Normals are then not unit
vectors near creases and blend with all-zero (missing) ones at hole borders, and the image and
the targets are offset by up to half a source pixel: MTAN's choices, reproduced.
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
TARGETS = ("semantic", "depth", "normal")  # resampled by nearest neighbour (mtan-like)
# How `scale_crop` resizes the window: the project's (the default) and MTAN's exact one.
RESAMPLINGS = ("mtan-like", "mtan")
# params train.augment -> resampling; false (no augmentation) is not here. `true` was the only way
# to turn augmentation on before `mtan` existed, so it keeps meaning the project's default.
AUGMENT_MODES = {True: "mtan-like", "mtan-like": "mtan-like", "mtan": "mtan"}


def augment_mode(augment: bool | str) -> str | None:
    """The resampling that params train.augment selects (None: no augmentation)."""
    if augment is False:
        return None
    try:
        return AUGMENT_MODES[augment]
    except (KeyError, TypeError):
        choices = ", ".join(["false", "true", *(repr(k) for k in AUGMENT_MODES if k is not True)])
        raise ValueError(f"train.augment must be one of {choices}, not {augment!r}") from None


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


@functools.lru_cache(maxsize=64)
def _legacy_nearest_offsets(length: int, size: int, device: torch.device) -> torch.Tensor:
    """Offset in a window of ``length`` pixels read by each of ``size`` output pixels under PyTorch's
    legacy ``nearest`` (MTAN's labels and depth). Taken from F.interpolate itself, on a float32 ramp
    on the CPU as MTAN runs it, so its float32 arithmetic and special cases (equal size, doubling)
    are PyTorch's own; kept on ``device``."""
    ramp = torch.arange(length, dtype=torch.float32).view(1, 1, length, 1)
    offsets = F.interpolate(ramp, size=(size, 1), mode="nearest").view(size)
    return offsets.long().to(device)


def _gather(maps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, width: int) -> torch.Tensor:
    """``maps[..., rows, :][..., cols]`` of (..., H, W) maps, for output-size index vectors."""
    # One gather from the flattened map: several times faster than 2-D advanced indexing.
    pixels = (rows[:, None] * width + cols[None, :]).flatten()
    return maps.flatten(-2).index_select(-1, pixels).view(*maps.shape[:-2], len(rows), len(cols))


def scale_crop(sample: Sample, top: int, left: int, crop_height: int, crop_width: int, scale: float,
               resampling: str = "mtan-like") -> Sample:
    """Resize the window [top, top+crop_height) x [left, left+crop_width) back to the full size.

    ``mtan-like``: image bilinear (pixel centres); semantic, depth and normal nearest by pixel
    centre. ``mtan``: image and normal bilinear with corners aligned; semantic and depth legacy
    nearest. Depth divided by ``scale`` in both.
    """
    height, width = sample["image"].shape[-2:]
    if not (0 <= top <= height - crop_height and 0 <= left <= width - crop_width):
        raise ValueError(f"crop window {crop_height}x{crop_width} at ({top}, {left}) exceeds the {height}x{width} sample")
    if resampling == "mtan":
        return _mtan_scale_crop(sample, top, left, crop_height, crop_width, scale)
    if resampling != "mtan-like":
        raise ValueError(f"resampling must be one of {RESAMPLINGS}, not {resampling!r}")
    window = sample["image"][None, :, top:top + crop_height, left:left + crop_width]
    out = dict(sample)
    out["image"] = F.interpolate(window, size=(height, width), mode="bilinear", align_corners=False)[0]
    device = sample["image"].device
    rows = _nearest_source(top, crop_height, height, device)
    cols = _nearest_source(left, crop_width, width, device)
    for name in TARGETS:
        out[name] = _gather(sample[name], rows, cols, width)
    out["depth"].div_(scale)  # a new tensor: the input sample is left untouched
    return out


def _mtan_scale_crop(sample: Sample, top: int, left: int, crop_height: int, crop_width: int, scale: float) -> Sample:
    """MTAN's resampling of the window (lorenmt/mtan, im2im_pred/create_dataset.py, RandomScaleCrop)."""
    height, width = sample["image"].shape[-2:]
    window = (slice(top, top + crop_height), slice(left, left + crop_width))
    out = dict(sample)
    for name in ("image", "normal"):
        out[name] = F.interpolate(sample[name][None, :, window[0], window[1]], size=(height, width),
                                  mode="bilinear", align_corners=True)[0]
    # Legacy nearest is a gather too: the indices F.interpolate would read (the same values, for
    # int64 labels that F.interpolate does not take, and without a float copy of them).
    device = sample["image"].device
    rows = _legacy_nearest_offsets(crop_height, height, device) + top
    cols = _legacy_nearest_offsets(crop_width, width, device) + left
    for name in ("semantic", "depth"):
        out[name] = _gather(sample[name], rows, cols, width)
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
    resampling: str = "mtan-like"

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[-2:]
        scale = float(self.scales[rng.integers(len(self.scales))])
        crop_height, crop_width = crop_size(height, width, scale)
        top = int(rng.integers(height - crop_height + 1))
        left = int(rng.integers(width - crop_width + 1))
        if crop_height == height and crop_width == width:
            # Scale 1: the window is the whole sample, and both resamplings are the identity at
            # equal size (MTAN resizes anyway; tests/test_augment.py checks it changes nothing).
            return sample
        return scale_crop(sample, top, left, crop_height, crop_width, scale, self.resampling)


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


def training_augmentation(resampling: str = "mtan-like") -> Compose:
    """MTAN's training augmentation: random scale crop, then horizontal flip."""
    if resampling not in RESAMPLINGS:
        raise ValueError(f"resampling must be one of {RESAMPLINGS}, not {resampling!r}")
    return Compose((RandomScaleCrop(resampling=resampling), RandomHorizontalFlip()))


def augmentation(augment: bool | str) -> Compose | None:
    """The training augmentation that params train.augment selects, or None (false)."""
    mode = augment_mode(augment)
    return None if mode is None else training_augmentation(mode)
