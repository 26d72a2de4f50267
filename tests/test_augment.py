"""Geometry of MTAN's augmentation: scale crop and horizontal flip on coordinate test patterns;
the project's resampling (the default) and MTAN's exact one (train.augment: mtan)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mbmt.data.augment import (
    SCALES,
    RandomHorizontalFlip,
    RandomScaleCrop,
    augmentation,
    crop_size,
    hflip,
    scale_crop,
    training_augmentation,
)

H, W = 24, 36


def coordinate_sample(height: int = H, width: int = W) -> dict[str, torch.Tensor]:
    """Every map encodes where a pixel comes from.

    semantic = the pixel's id row * W + col (nearest resampling must copy ids); image = row and
    column ramps (bilinear must interpolate them linearly); depth = 1 + id (metres); normal = a
    unit vector whose x component also encodes the column. A 4x6 block of missing depth and
    normals tests that valid and missing pixels never mix.
    """
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ids = rows * width + cols
    image = torch.stack([rows / (height - 1), cols / (width - 1), torch.full((height, width), 0.5)]).float()
    depth = (1.0 + ids.double())[None].float()
    x = (cols.double() - width / 2) / width
    normal = torch.stack([x, torch.zeros_like(x), -torch.sqrt(1 - x**2)]).float()
    depth[:, 8:12, 10:16] = 0
    normal[:, 8:12, 10:16] = 0
    return {"image": image, "semantic": ids, "depth": depth, "normal": normal}


def source_of(out: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) in the original of every output pixel, read from the semantic ids."""
    return out["semantic"] // W, out["semantic"] % W


@pytest.mark.parametrize("scale", [1.2, 1.5])
def test_scale_crop_reads_the_window_resized_to_full_size(scale):
    sample = coordinate_sample()
    h, w = crop_size(H, W, scale)
    assert (h, w) == (int(H / scale), int(W / scale))
    top, left = 3, 5
    before = {k: v.clone() for k, v in sample.items()}
    out = scale_crop(sample, top, left, h, w, scale)
    assert all(torch.equal(sample[k], before[k]) for k in sample), "the input sample must not change"

    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in sample.items()}
    rows, cols = source_of(out)
    # The corners of the output come from the corners of the window, every pixel from inside it.
    assert (int(rows[0, 0]), int(cols[0, 0])) == (top, left)
    assert (int(rows[-1, -1]), int(cols[-1, -1])) == (top + h - 1, left + w - 1)
    assert rows.min() == top and rows.max() == top + h - 1 and cols.min() == left and cols.max() == left + w - 1
    # Nearest by pixel centre: output row y reads window row floor((y + 0.5) * h / H).
    y = torch.arange(H)
    assert torch.equal(rows[:, 0], top + torch.floor((y + 0.5) * h / H).long())
    # Rows are separable: each output row reads one source row across its whole width.
    assert (rows == rows[:, :1]).all() and (cols == cols[:1, :]).all()


def test_scale_crop_image_is_bilinear_on_the_window():
    sample = coordinate_sample()
    scale, top, left = 1.5, 4, 7
    h, w = crop_size(H, W, scale)
    out = scale_crop(sample, top, left, h, w, scale)
    # A linear ramp stays linear under bilinear resampling, at pixel-centre coordinates clamped
    # to the window.
    y = torch.clamp((torch.arange(H) + 0.5) * h / H - 0.5, 0, h - 1)
    x = torch.clamp((torch.arange(W) + 0.5) * w / W - 0.5, 0, w - 1)
    torch.testing.assert_close(out["image"][0, :, 0], (top + y) / (H - 1))
    torch.testing.assert_close(out["image"][1, 0, :], (left + x) / (W - 1))
    assert out["image"].min() >= 0 and out["image"].max() <= 1


@pytest.mark.parametrize("scale", [1.2, 1.5])
def test_scale_crop_targets_copy_source_pixels_depth_divided_by_scale(scale):
    sample = coordinate_sample()
    h, w = crop_size(H, W, scale)
    out = scale_crop(sample, 2, 4, h, w, scale)
    rows, cols = source_of(out)

    # Labels: only values of the original, each with its own source pixel.
    assert set(out["semantic"].unique().tolist()) <= set(sample["semantic"].unique().tolist())
    # Depth: the source pixel's depth divided by the scale, missing stays exactly 0.
    source_depth = sample["depth"][0, rows, cols]
    torch.testing.assert_close(out["depth"][0], source_depth / scale)
    assert torch.equal(out["depth"][0] == 0, source_depth == 0)
    # Normals: copied from the same source pixel (unit), all-zero exactly where depth is missing.
    source_normal = sample["normal"][:, rows, cols]
    assert torch.equal(out["normal"], source_normal)
    valid = (out["normal"] != 0).any(0)
    assert torch.equal(valid, out["depth"][0] != 0)
    torch.testing.assert_close(out["normal"].norm(dim=0)[valid], torch.ones(int(valid.sum())))
    assert (~valid).any(), "the missing block must be inside this window for the test to mean anything"


def test_scale_crop_rejects_a_window_outside_the_sample():
    with pytest.raises(ValueError, match="exceeds"):
        scale_crop(coordinate_sample(), 5, 0, H - 4, W, 1.2)


def test_random_scale_crop_draws_every_scale_and_position_within_bounds():
    sample = coordinate_sample()
    crop = RandomScaleCrop()
    scales = set()
    for seed in range(60):
        out = crop(sample, np.random.default_rng(seed))
        rows, cols = source_of(out)
        h = int(rows[-1, -1] - rows[0, 0]) + 1
        w = int(cols[-1, -1] - cols[0, 0]) + 1
        scale = {crop_size(H, W, s): s for s in (1.0, 1.2, 1.5)}[(h, w)]
        scales.add(scale)
        assert 0 <= rows[0, 0] <= H - h and 0 <= cols[0, 0] <= W - w
        torch.testing.assert_close(out["depth"][0] * scale, sample["depth"][0, rows, cols])
    assert scales == {1.0, 1.2, 1.5}


def test_scale_one_is_the_identity():
    sample = coordinate_sample()
    assert scale_crop(sample, 0, 0, H, W, 1.0)["semantic"].equal(sample["semantic"])
    torch.testing.assert_close(scale_crop(sample, 0, 0, H, W, 1.0)["image"], sample["image"])


def test_hflip_mirrors_every_map_and_negates_normal_x():
    sample = coordinate_sample()
    out = hflip(sample)
    rows, cols = source_of(out)
    assert torch.equal(cols, W - 1 - torch.arange(W).expand(H, W))
    for name in ("image", "depth"):
        assert torch.equal(out[name], sample[name].flip(-1))
    mirrored = sample["normal"].flip(-1)
    assert torch.equal(out["normal"][0], -mirrored[0])
    assert torch.equal(out["normal"][1:], mirrored[1:])
    # Missing normals stay all-zero.
    assert torch.equal((out["normal"] != 0).any(0), (mirrored != 0).any(0))


def test_hflip_twice_is_the_identity():
    sample = coordinate_sample()
    twice = hflip(hflip(sample))
    for name, value in sample.items():
        assert torch.equal(twice[name], value), name


def test_random_flip_probability_and_determinism():
    sample = coordinate_sample()
    flip = RandomHorizontalFlip()
    flipped = [not torch.equal(flip(sample, np.random.default_rng(s))["semantic"], sample["semantic"]) for s in range(200)]
    assert 70 < sum(flipped) < 130
    assert RandomHorizontalFlip(p=0.0)(sample, np.random.default_rng(0)) is sample
    assert torch.equal(training_augmentation()(sample, np.random.default_rng(7))["image"],
                       training_augmentation()(sample, np.random.default_rng(7))["image"])


# --- train.augment: mtan, MTAN's exact resampling (lorenmt/mtan, im2im_pred/create_dataset.py) ---
#
# A 4x6 sample, scale 1.5: the window is int(4/1.5) x int(6/1.5) = 2x4, here at (top, left) = (1, 1),
# so rows 1-2 and columns 1-4 of the source. Worked out by hand:
# - legacy nearest (labels, depth): output row y reads window row floor(y * 2/4) = 0, 0, 1, 1, and
#   output column x reads window column floor(x * 4/6) = 0, 0, 1, 2, 2, 3 (float32: 3 * 0.6666667 = 2).
# - bilinear, align_corners=True (image, normals): output row y samples window row y * (2-1)/(4-1)
#   = 0, 1/3, 2/3, 1, and column x samples window column x * (4-1)/(6-1) = 0, 0.6, 1.2, 1.8, 2.4, 3.
SMALL_H, SMALL_W = 4, 6
NEAREST_ROWS = [1, 1, 2, 2]
NEAREST_COLS = [1, 1, 2, 3, 3, 4]


def small_sample() -> dict[str, torch.Tensor]:
    rows, cols = torch.meshgrid(torch.arange(SMALL_H), torch.arange(SMALL_W), indexing="ij")
    ids = rows * SMALL_W + cols
    # image: channel 0 = row, 1 = column, 2 = row * column (bilinear is not linear in it).
    image = torch.stack([rows, cols, rows * cols]).float()
    normal = torch.zeros(3, SMALL_H, SMALL_W)
    normal[0] = 1.0  # (1, 0, 0) everywhere ...
    normal[:, 1, 2] = 0  # ... except one missing pixel
    depth = (10.0 + ids)[None].float()
    return {"image": image, "semantic": ids, "depth": depth, "normal": normal}


def test_mtan_resampling_of_labels_and_depth_is_legacy_nearest_by_hand():
    out = scale_crop(small_sample(), 1, 1, 2, 4, 1.5, "mtan")
    expected_ids = torch.tensor([[r * SMALL_W + c for c in NEAREST_COLS] for r in NEAREST_ROWS])
    assert torch.equal(out["semantic"], expected_ids)
    assert out["semantic"].dtype == torch.int64
    # Depth: the same pixels, divided by the scale in float32 as MTAN's `depth_ / sc`.
    assert torch.equal(out["depth"][0], (10.0 + expected_ids).float() / 1.5)
    # The project's default reads other pixels: row floor((y + 0.5) / 2), column floor((x + 0.5) * 4/6).
    default = scale_crop(small_sample(), 1, 1, 2, 4, 1.5)
    assert torch.equal(default["semantic"][:, 0], torch.tensor([1, 1, 2, 2]) * SMALL_W + 1)
    assert torch.equal(default["semantic"][0], SMALL_W + torch.tensor([1, 2, 2, 3, 4, 4]))


def test_mtan_resampling_of_image_and_normals_is_bilinear_with_aligned_corners_by_hand():
    out = scale_crop(small_sample(), 1, 1, 2, 4, 1.5, "mtan")
    y = 1 + torch.tensor([0, 1 / 3, 2 / 3, 1], dtype=torch.float64)
    x = 1 + torch.tensor([0, 0.6, 1.2, 1.8, 2.4, 3.0], dtype=torch.float64)
    tight = {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(out["image"][0].double(), y[:, None].expand(4, 6), **tight)
    torch.testing.assert_close(out["image"][1].double(), x[None, :].expand(4, 6), **tight)
    # row * column between the four neighbours (r0, c0), (r0, c0+1), (r0+1, c0), (r0+1, c0+1):
    # output (1, 2) samples (4/3, 2.2): 1*2 * 2/3*0.8 + 1*3 * 2/3*0.2 + 2*2 * 1/3*0.8 + 2*3 * 1/3*0.2 = 2.9333...
    assert out["image"][2, 1, 2].item() == pytest.approx(2.0 * 0.8 * 2 / 3 + 3.0 * 0.2 * 2 / 3 + 4.0 * 0.8 / 3
                                                         + 6.0 * 0.2 / 3, rel=1e-6)
    # The missing normal (1, 2) weighs 2/3 * 0.8 in output (1, 2): x = 1 - 0.5333 (not a unit vector,
    # MTAN's blending of a valid with a missing normal), and output pixels that do not reach it stay (1, 0, 0).
    assert out["normal"][0, 1, 2].item() == pytest.approx(1 - 2 / 3 * 0.8, rel=1e-6)
    assert torch.equal(out["normal"][:, 3], torch.tensor([1.0, 0, 0])[:, None].expand(3, 6))
    assert torch.equal(out["normal"][1:], torch.zeros(2, 4, 6))


def mtan_reference(sample: dict, top: int, left: int, h: int, w: int, scale: float, flip: bool) -> dict:
    """What MTAN's create_dataset.py computes for this scale, window and flip, written from its
    description (F.interpolate on the float32 maps; labels as float, as MTAN loads them)."""
    height, width = sample["image"].shape[-2:]

    def resize(maps, **mode):
        return F.interpolate(maps[None, :, top:top + h, left:left + w], size=(height, width), **mode)[0]

    out = {"image": resize(sample["image"], mode="bilinear", align_corners=True),
           "semantic": resize(sample["semantic"][None].float(), mode="nearest")[0].long(),
           "depth": resize(sample["depth"], mode="nearest") / scale,
           "normal": resize(sample["normal"], mode="bilinear", align_corners=True)}
    if flip:
        out = {name: value.flip(-1) for name, value in out.items()}
        out["normal"][0] = -out["normal"][0]
    return out


@pytest.mark.parametrize("seed", range(12))
def test_mtan_augmentation_equals_mtans_computation_bit_for_bit(seed):
    sample = coordinate_sample()
    rng = np.random.default_rng(seed)
    out = training_augmentation("mtan")(sample, np.random.default_rng(seed))
    # The draws, in RandomScaleCrop's and RandomHorizontalFlip's order.
    scale = SCALES[rng.integers(len(SCALES))]
    h, w = crop_size(H, W, scale)
    top, left = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
    expected = mtan_reference(sample, top, left, h, w, scale, bool(rng.random() < 0.5))
    for name, value in expected.items():
        assert out[name].dtype == value.dtype and torch.equal(out[name], value), name


def test_mtan_at_scale_one_is_the_identity_as_mtans_resize_is():
    sample = coordinate_sample()
    sample["normal"][0, 0, 0] = -0.0
    resized = mtan_reference(sample, 0, 0, H, W, 1.0, flip=False)
    for name, value in sample.items():
        assert torch.equal(resized[name], value) and torch.equal(resized[name].signbit(), value.signbit()), name
        assert torch.equal(scale_crop(sample, 0, 0, H, W, 1.0, "mtan")[name], value), name


def test_augment_modes():
    assert augmentation(False) is None
    assert augmentation(True) == augmentation("mtan-like") == training_augmentation()
    assert augmentation("mtan") == training_augmentation("mtan") != training_augmentation()
    with pytest.raises(ValueError, match="train.augment must be one of false, true, 'mtan-like', 'mtan', not 'MTAN'"):
        augmentation("MTAN")
    with pytest.raises(ValueError, match="resampling must be one of"):
        scale_crop(small_sample(), 1, 1, 2, 4, 1.5, "bicubic")
