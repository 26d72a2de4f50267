"""DeviceSplit gives the DataLoader's batches: same samples, same order, same augmentation, bit for bit."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from test_dataset import COUNT, H, W, random_sample
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from mbmt.data.augment import SCALES, crop_size, sample_generator
from mbmt.data.dataset import NYUv2Dataset
from mbmt.data.device_split import DeviceSplit
from mbmt.data.hdf5 import SplitWriter

SEED = 3
EPOCHS = 8  # with COUNT samples: every scale and both flips occur (asserted below)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("device_split") / "train.h5"
    rng = np.random.default_rng(1)
    with SplitWriter(path, COUNT, H, W, split="train", source="test",
                     modalities=dict.fromkeys(("image", "semantic", "depth", "normal"), "ground_truth")) as writer:
        for i in range(COUNT):
            writer.add(random_sample(rng), f"sample {i}")
    return path


def loader_batches(path, epoch: int, batch_size: int, *, augment: bool, num_workers: int = 0) -> list[dict]:
    """What the trainer's DataLoader yields in ``epoch``."""
    dataset = NYUv2Dataset(path, augment=augment, seed=SEED)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=SEED)
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    return list(DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers))


def device_batches(split_on_device: DeviceSplit, epoch: int, batch_size: int) -> list[dict]:
    sampler = DistributedSampler(split_on_device, num_replicas=1, rank=0, shuffle=True, seed=SEED)
    sampler.set_epoch(epoch)
    return list(split_on_device.batches(sampler, batch_size, epoch))


def assert_same_batches(expected: list[dict], actual: list[dict]) -> None:
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
            assert torch.equal(got[name].cpu(), want[name]), name


@pytest.mark.parametrize("batch_size", [2, 4])  # 4: the last batch of 6 samples is smaller
def test_augmented_batches_equal_the_dataloaders_bit_for_bit(split, batch_size):
    on_device = DeviceSplit(split, torch.device("cpu"), augment=True, seed=SEED)
    drawn = set()
    for epoch in range(EPOCHS):
        expected = loader_batches(split, epoch, batch_size, augment=True)
        assert_same_batches(expected, device_batches(on_device, epoch, batch_size))
        drawn |= {drawn_augmentation(epoch, index) for batch in expected for index in batch["index"].tolist()}
    # The comparison covered every scale, flipped and not: not only the identity.
    assert drawn == {(scale, flip) for scale in SCALES for flip in (False, True)}


def test_mtan_resampling_batches_equal_the_dataloaders_bit_for_bit(split):
    """train.augment: mtan goes through both paths the same way, and differs from the default."""
    on_device = DeviceSplit(split, torch.device("cpu"), augment="mtan", seed=SEED)
    differs = False
    for epoch in range(EPOCHS):
        expected = loader_batches(split, epoch, 2, augment="mtan")
        assert_same_batches(expected, device_batches(on_device, epoch, 2))
        default = loader_batches(split, epoch, 2, augment="mtan-like")
        differs |= any(not torch.equal(a["normal"], b["normal"]) for a, b in zip(expected, default))
    assert differs


def drawn_augmentation(epoch: int, index: int) -> tuple[float, bool]:
    """(scale, flip) that RandomScaleCrop and RandomHorizontalFlip draw for the sample, in their order."""
    rng = sample_generator(SEED, epoch, index)
    scale = SCALES[rng.integers(len(SCALES))]
    crop_height, crop_width = crop_size(H, W, scale)
    rng.integers(H - crop_height + 1), rng.integers(W - crop_width + 1)
    return scale, bool(rng.random() < 0.5)


def test_batches_with_workers_equal_too(split):
    on_device = DeviceSplit(split, torch.device("cpu"), augment=True, seed=SEED)
    assert_same_batches(loader_batches(split, 2, 2, augment=True, num_workers=2), device_batches(on_device, 2, 2))


def test_unaugmented_batches_in_a_fixed_order(split):
    on_device = DeviceSplit(split, torch.device("cpu"))
    expected = list(DataLoader(NYUv2Dataset(split), batch_size=4))
    assert_same_batches(expected, list(on_device.batches(range(COUNT), 4)))
    assert on_device.stored["image"].dtype == torch.uint8 and on_device.stored["depth"].dtype == torch.float16


def test_augmented_targets_are_what_the_augmentation_computed_before_it_ran_on_devices(split):
    """The labels, depths and normals of 8 augmented epochs, hashed: the digest was computed with
    the CPU-only augmentation this module's device support replaced. (Gathers and a division are
    exact on any machine; the bilinear image is left out, its last bit may depend on the CPU.)"""
    dataset = NYUv2Dataset(split, augment=True, seed=SEED)
    digest = hashlib.sha256()
    for epoch in range(EPOCHS):
        dataset.set_epoch(epoch)
        for index in range(COUNT):
            sample = dataset[index]
            for name in ("semantic", "depth", "normal"):
                digest.update(sample[name].numpy().tobytes())
    assert digest.hexdigest() == "c1db6e069fc521b48fa1ffee06c406e5e3d5fecb2f20a8023f09685aed2f8fef"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_targets_are_exact_and_images_within_rounding(split):
    on_device = DeviceSplit(split, torch.device("cuda"), augment=True, seed=SEED)
    for epoch in range(EPOCHS):
        for want, got in zip(loader_batches(split, epoch, 2, augment=True), device_batches(on_device, epoch, 2)):
            for name in ("semantic", "depth", "normal", "index"):
                assert torch.equal(got[name].cpu(), want[name]), name
            torch.testing.assert_close(got["image"].cpu(), want["image"], rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mtan_resampling_on_cuda_exact_targets_and_bilinear_maps_within_rounding(split):
    """train.augment: mtan on the device: the legacy-nearest labels and depths are gathers (exact);
    the image and the normals are resized bilinearly in the GPU's arithmetic."""
    on_device = DeviceSplit(split, torch.device("cuda"), augment="mtan", seed=SEED)
    for epoch in range(EPOCHS):
        for want, got in zip(loader_batches(split, epoch, 2, augment="mtan"), device_batches(on_device, epoch, 2)):
            for name in ("semantic", "depth", "index"):
                assert torch.equal(got[name].cpu(), want[name]), name
            for name in ("image", "normal"):
                torch.testing.assert_close(got[name].cpu(), want[name], rtol=0, atol=1e-6)
