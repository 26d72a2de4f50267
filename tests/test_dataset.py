"""NYUv2Dataset over an HDF5 split: content, determinism of augmentation, workers, pickling."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mbmt.data.dataset import NYUv2Dataset
from mbmt.data.hdf5 import MODALITIES, SplitWriter, decode
from mbmt.errors import DataError

COUNT, H, W = 6, 16, 24


def random_sample(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A valid canonical sample with unlabelled pixels and holes in depth and normals."""
    normal = rng.normal(size=(H, W, 3))
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    depth = rng.uniform(0.5, 9.5, size=(H, W))
    hole = rng.random((H, W)) < 0.1
    depth[hole], normal[hole] = 0, 0
    semantic = rng.integers(-1, 13, size=(H, W))
    return {"image": rng.random((H, W, 3)), "semantic": semantic, "depth": depth, "normal": normal}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """(path, the samples written) of a tiny split file."""
    path = tmp_path_factory.mktemp("split") / "train.h5"
    rng = np.random.default_rng(0)
    samples = [random_sample(rng) for _ in range(COUNT)]
    modalities = dict.fromkeys(("image", "semantic", "depth", "normal"), "ground_truth")
    with SplitWriter(path, COUNT, H, W, split="train", source="test", modalities=modalities) as writer:
        for i, sample in enumerate(samples):
            writer.add(sample, f"sample {i}")
    return path, samples


def test_sample_is_channel_first_tensors_matching_what_was_written(split):
    path, samples = split
    dataset = NYUv2Dataset(path)
    assert len(dataset) == COUNT and dataset.attrs["split"] == "train" and dataset.attrs["height"] == H
    for i in (0, COUNT - 1):
        item = dataset[i]
        assert item["index"] == i
        assert {k: (tuple(v.shape), v.dtype) for k, v in item.items() if k != "index"} == {
            "image": ((3, H, W), torch.float32), "semantic": ((H, W), torch.int64),
            "depth": ((1, H, W), torch.float32), "normal": ((3, H, W), torch.float32)}
        original = samples[i]
        # Within the storage precision documented in mbmt.data.hdf5.
        np.testing.assert_allclose(item["image"].numpy(), original["image"].transpose(2, 0, 1), atol=0.5 / 255 + 1e-6)
        np.testing.assert_array_equal(item["semantic"].numpy(), original["semantic"])
        np.testing.assert_allclose(item["depth"][0].numpy(), original["depth"], rtol=2**-11)
        np.testing.assert_allclose(item["normal"].numpy(), original["normal"].transpose(2, 0, 1), atol=2**-11)
    assert dataset[-1]["index"] == COUNT - 1
    # Exactly the arrays of the layout's own decoder.
    with h5py.File(path) as f:
        expected = decode({name: f[name][2] for name in MODALITIES})
    item = dataset[2]
    for name, array in expected.items():
        assert item[name].dtype == torch.from_numpy(array).dtype
        np.testing.assert_array_equal(item[name].numpy(), array)
    with pytest.raises(IndexError):
        dataset[COUNT]


def test_augmentation_depends_only_on_seed_epoch_and_index(split):
    path, _ = split
    a, b = NYUv2Dataset(path, augment=True, seed=3), NYUv2Dataset(path, augment=True, seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    for i in reversed(range(COUNT)):  # order of access does not matter
        for name in ("image", "semantic", "depth", "normal"):
            assert torch.equal(a[i][name], b[i][name])
    plain = NYUv2Dataset(path)
    assert any(not torch.equal(a[i]["image"], plain[i]["image"]) for i in range(COUNT))
    other_epoch = [a[i]["image"] for i in range(COUNT)]
    a.set_epoch(6)
    assert any(not torch.equal(x, a[i]["image"]) for i, x in enumerate(other_epoch))
    other_seed = NYUv2Dataset(path, augment=True, seed=4)
    other_seed.set_epoch(6)
    assert any(not torch.equal(other_seed[i]["image"], a[i]["image"]) for i in range(COUNT))


def batches(dataset, workers: int, **kwargs) -> list[dict]:
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=workers, **kwargs)
    return list(loader)


def assert_same_batches(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for x, y in zip(left, right):
        assert x.keys() == y.keys()
        for name in x:
            assert torch.equal(x[name], y[name]), name


def test_two_workers_return_exactly_what_the_main_process_returns(split):
    path, _ = split
    dataset = NYUv2Dataset(path, augment=True, seed=1)
    dataset.set_epoch(2)
    dataset[0]  # the main process holds an open handle when the workers fork
    serial = batches(dataset, 0)
    assert_same_batches(batches(dataset, 2), serial)


def test_persistent_workers_follow_set_epoch(split):
    path, _ = split
    dataset = NYUv2Dataset(path, augment=True, seed=1)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        epochs.append(list(loader))
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        assert_same_batches(epochs[epoch], list(DataLoader(dataset, batch_size=3)))
    assert not torch.equal(epochs[0][0]["image"], epochs[1][0]["image"])


def test_pickles_without_its_open_handle(split):
    path, _ = split
    dataset = NYUv2Dataset(path, augment=True, seed=2)
    dataset.set_epoch(3)
    expected = dataset[1]
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._file is None and copy.epoch == 3
    for name in ("image", "semantic", "depth", "normal"):
        assert torch.equal(copy[1][name], expected[name])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="run `mbmt preprocess`"):
        NYUv2Dataset(tmp_path / "absent.h5")
