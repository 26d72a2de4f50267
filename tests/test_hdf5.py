"""The HDF5 storage layout: its error bounds hold, and a split file is complete or absent."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from mbmt.data.hdf5 import ERROR_BOUNDS, SplitWriter, decode, encode, read_attrs
from mbmt.errors import DataError

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # decode's float32 arithmetic adds at most this (relative)


def round_trip(**arrays) -> dict:
    """encode -> decode of a 1-row sample holding ``arrays`` (other modalities blank)."""
    width = len(next(iter(arrays.values())))
    sample = {"image": np.zeros((1, width, 3)), "semantic": np.zeros((1, width), np.int64),
              "depth": np.zeros((1, width)), "normal": np.zeros((1, width, 3))}
    sample.update({name: value[None] for name, value in arrays.items()})
    return decode(encode(sample))


def test_image_uint8_error_is_at_most_half_a_level():
    # Every value 0..1 in steps far finer than 1/255, including the exact ties (k + 0.5) / 255.
    values = np.concatenate([np.linspace(0, 1, 255 * 64 + 1), (np.arange(255) + 0.5) / 255])
    image = np.repeat(values[:, None], 3, axis=1)
    error = np.abs(round_trip(image=image)["image"][:, 0].T - image)
    bound = ERROR_BOUNDS["image"]["absolute"]
    assert bound == 0.5 / 255
    assert error.max() <= bound * (1 + FLOAT32_EPS) + FLOAT32_EPS
    assert error.max() > 0.99 * bound  # the bound is reached: it is rounding, not truncation (1/255)


def test_semantic_int8_is_exact():
    labels = np.arange(-1, 13)
    assert np.array_equal(round_trip(semantic=labels)["semantic"][0], labels)


def test_depth_float16_relative_error():
    # Log-spaced depths over float16's normal range up to the validated maximum, plus the exact
    # midpoints between neighbouring float16 values (the worst case of rounding).
    depth = np.geomspace(2.0**-14, 999.0, 200_001).astype(np.float32)
    grid = np.arange(np.float16(2.0**-14).view(np.uint16), np.float16(999).view(np.uint16), dtype=np.uint16)
    lower = grid.view(np.float16).astype(np.float32)
    upper = (grid + 1).view(np.float16).astype(np.float32)
    ties = (lower + upper) / 2
    depth = np.concatenate([depth, ties])
    stored = round_trip(depth=depth)["depth"][0, 0]
    relative = np.abs(stored.astype(np.float64) - depth) / depth
    assert ERROR_BOUNDS["depth"]["relative"] == 2.0**-11
    assert relative.max() <= 2.0**-11
    assert relative.max() > 0.9 * 2.0**-11  # float16 keeps 11 significant bits, not more
    # At 10 m (the far end of NYUv2) the error stays below 5 mm.
    assert abs(float(np.float16(9.99)) - 9.99) < 0.005


def test_depth_float16_below_the_normal_range_is_absolute():
    depth = np.linspace(1e-7, 2.0**-14, 10_001).astype(np.float32)  # float16 subnormals
    stored = round_trip(depth=depth)["depth"][0, 0]
    assert np.abs(stored.astype(np.float64) - depth).max() <= 2.0**-25


def test_normal_float16_component_and_angle_error():
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(100_000, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.concatenate([normal, np.eye(3), -np.eye(3)]).astype(np.float32)
    stored = round_trip(normal=normal)["normal"][:, 0].T
    component = np.abs(stored.astype(np.float64) - normal)
    bound = ERROR_BOUNDS["normal"]["absolute"]
    assert bound == 2.0**-11
    assert component.max() <= bound
    # Each component is off by <= 2**-11, so the vector by <= sqrt(3) * 2**-11 and the direction
    # by <= asin(sqrt(3) * 2**-11) = 0.0485 degrees (what the loss and the angle metrics see).
    angle_bound = math.degrees(math.asin(math.sqrt(3) * bound))
    cosine = np.sum(stored * normal, axis=1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(normal, axis=1)
    angles = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    assert angles.max() <= angle_bound < 0.05
    assert angles.max() > 0.005  # float16 does move directions measurably (it is not float32)


def valid_sample(height: int, width: int, value: float = 0.5) -> dict:
    return {"image": np.full((height, width, 3), value), "semantic": np.zeros((height, width), np.int64),
            "depth": np.full((height, width), 2.0), "normal": np.dstack([np.zeros((height, width, 2)), np.ones((height, width))])}


def writer(path, count):
    return SplitWriter(path, count, 32, 32, split="train", source="test",
                       modalities={"image": "rendered", "semantic": "rendered", "depth": "rendered", "normal": "rendered"},
                       attrs={"note": "x", "frames": [1, 2]})


def test_split_writer_writes_a_complete_file(tmp_path):
    path = tmp_path / "train.h5"
    with writer(path, 2) as w:
        w.add(valid_sample(32, 32, 0.25), where="a")
        w.add(valid_sample(32, 32, 0.75), where="b")
    attrs = read_attrs(path)
    assert (attrs["split"], attrs["count"], attrs["height"], attrs["frames"]) == ("train", 2, 32, [1, 2])
    with h5py.File(path) as f:
        assert f["image"].shape == (2, 3, 32, 32) and f["image"].chunks == (1, 3, 32, 32)
        assert f["image"][:, 0, 0, 0].tolist() == [round(0.25 * 255), round(0.75 * 255)]
    assert list(tmp_path.iterdir()) == [path]


def test_split_writer_leaves_nothing_after_an_exception(tmp_path):
    path = tmp_path / "train.h5"
    with pytest.raises(RuntimeError), writer(path, 3) as w:
        w.add(valid_sample(32, 32), where="a")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_split_writer_rejects_too_few_samples(tmp_path):
    path = tmp_path / "train.h5"
    with pytest.raises(DataError, match="wrote 2 of 3 samples"), writer(path, 3) as w:
        w.add(valid_sample(32, 32), where="a")
        w.add(valid_sample(32, 32), where="b")
    assert list(tmp_path.iterdir()) == []


def test_split_writer_rejects_an_invalid_sample_by_name(tmp_path):
    bad = valid_sample(32, 32)
    bad["depth"][3, 4] = np.nan
    with pytest.raises(DataError, match="frame-7.*depth"), writer(tmp_path / "train.h5", 1) as w:
        w.add(bad, where="frame-7")
    assert list(tmp_path.iterdir()) == []
