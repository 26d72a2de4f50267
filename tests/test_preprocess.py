"""`mbmt preprocess`: MTAN layout -> HDF5 within the storage bounds, errors naming the bad file,
resizing, and the import of real NYU frames."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from mbmt.cli import main
from mbmt.config import deep_merge
from mbmt.data import mtan_layout
from mbmt.data.hdf5 import ERROR_BOUNDS, MODALITIES, decode, read_attrs
from mbmt.tasks import CLASS_NAMES

EPS = 1e-6  # float32 arithmetic in decode/resize, far below the storage bounds


def set_params(project: Path, **data) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, {"data": data}), sort_keys=False))


def fetch_folder(project: Path, write) -> None:
    """`mbmt fetch` of the MTAN root that ``write(root)`` fills (a local folder, as a user's copy)."""
    root = project / "incoming" / "nyuv2"
    write(root)
    set_params(project, source="nyuv2", nyuv2={"local_path": str(root)})
    assert main(["fetch"]) == 0


def stored_samples(path: Path) -> list[dict]:
    """Every sample of a split file, decoded, channel-last like the inputs."""
    with h5py.File(path) as f:
        arrays = [decode({name: f[name][i] for name in MODALITIES}) for i in range(len(f["image"]))]
    return [{"image": a["image"].transpose(1, 2, 0), "semantic": a["semantic"], "depth": a["depth"][0],
             "normal": a["normal"].transpose(1, 2, 0)} for a in arrays]


def assert_within_storage_bounds(got: dict, expected: dict) -> None:
    assert np.abs(got["image"] - expected["image"]).max() <= ERROR_BOUNDS["image"]["absolute"] + EPS
    np.testing.assert_array_equal(got["semantic"], expected["semantic"])
    depth = np.asarray(expected["depth"], np.float64)
    assert np.all(np.abs(got["depth"] - depth) <= ERROR_BOUNDS["depth"]["relative"] * depth + EPS)
    np.testing.assert_array_equal(got["depth"] == 0, depth == 0)  # missing stays missing
    assert np.abs(got["normal"] - expected["normal"]).max() <= ERROR_BOUNDS["normal"]["absolute"] + EPS
    np.testing.assert_array_equal(np.any(got["normal"] != 0, -1), np.any(expected["normal"] != 0, -1))


def test_round_trip_within_storage_bounds(project, make_mtan_root):
    samples = {}
    fetch_folder(project, lambda root: samples.update(make_mtan_root(root, {"train": 3, "test": 2})))
    assert main(["preprocess"]) == 0
    processed = project / "data" / "processed"
    for split, expected in samples.items():
        attrs = read_attrs(processed / f"{split}.h5")
        assert (attrs["split"], attrs["count"], attrs["source"]) == (split, len(expected), "nyuv2")
        assert attrs["modalities"] == dict.fromkeys(MODALITIES, "ground_truth")
        for got, want in zip(stored_samples(processed / f"{split}.h5"), expected, strict=True):
            assert_within_storage_bounds(got, want)
    manifest = json.loads((processed / "manifest.json").read_text())
    assert manifest["class_names"] == list(CLASS_NAMES)
    assert {s: (e["count"], e["from"], e["resized"]) for s, e in manifest["splits"].items()} == {
        "train": (3, "data/raw/train", False), "test": (2, "data/raw/val", False)}
    assert manifest["splits"]["test"]["shapes"]["depth"] == [2, 1, 64, 64]
    assert {n: s["dtype"] for n, s in manifest["storage"].items()} == {
        "image": "uint8", "semantic": "int8", "depth": "float16", "normal": "float16"}
    assert manifest["source"]["origin"] == "local folder"
    assert manifest["params"]["data"]["height"] == 64


def test_inputs_digest_follows_the_raw_files(project, make_mtan_root):
    fetch_folder(project, make_mtan_root)
    manifest = project / "data" / "processed" / "manifest.json"

    def digests():
        assert main(["preprocess"]) == 0
        return {split: entry["inputs_sha256"] for split, entry in json.loads(manifest.read_text())["splits"].items()}

    first = digests()
    assert digests() == first
    depth_file = project / "data/raw/val/depth/1.npy"
    np.save(depth_file, np.load(depth_file) * 1.01)
    changed = digests()
    assert changed["train"] == first["train"] and changed["test"] != first["test"]


def _set(path: Path, edit) -> None:
    array = np.load(path)
    np.save(path, edit(array))


BAD_INPUTS = {
    # case: (file in data/raw, edit of its array, words of the error)
    "nan depth": ("val/depth/1.npy", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, np.nan, a),
                  "non-finite"),
    "label 13": ("val/label/0.npy", lambda a: np.where(a == a.flat[0], 13, a), "semantic labels [13]"),
    "fractional label": ("train/label/2.npy", lambda a: a + 0.5, "whole numbers"),
    "wrong shape": ("train/normal/2.npy", lambda a: a[..., :2], "shape (64, 64, 2)"),
    "image above 1": ("train/image/0.npy", lambda a: a * 2, "image values span"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_names_its_file_and_writes_nothing(project, make_mtan_root, capsys, case):
    rel, edit, words = BAD_INPUTS[case]
    fetch_folder(project, make_mtan_root)
    _set(project / "data" / "raw" / rel, edit)
    assert main(["preprocess"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"mbmt preprocess: error: {Path('data/raw') / rel}:") and words in error
    assert not (project / "data" / "processed").exists()
    assert not list(project.glob("data/.processed*"))  # no temporary directory left over


def test_resize_never_mixes_valid_with_missing(project):
    """128x128 raw -> 64x64: each output pixel is one 2x2 block of the input."""
    size = 128
    rows, cols = np.mgrid[0:size, 0:size]
    image = np.stack([(rows % 4) / 3, (cols % 4) / 3, ((rows + cols) % 2).astype(float)], -1)
    semantic = (rows // 2 + 3 * cols) % 14 - 1
    depth = np.full((size, size), 2.0)
    depth[0:2, 0:2] = [[1, 2], [3, 0]]  # 3 of 4 valid -> their mean, 2
    depth[0:2, 2:4] = [[4, 0], [0, 0]]  # 1 of 4 valid -> missing
    depth[0:2, 4:6] = [[5, 7], [0, 0]]  # 2 of 4 valid -> 6
    normal = np.zeros((size, size, 3))
    normal[..., 2] = 1
    normal[2:4, 0:2] = [[[1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 0, 0]]]  # -> (1, 1, 0) / sqrt(2)
    normal[2:4, 2:4] = [[[1, 0, 0], [-1, 1e-7, 0]], [[0, 0, 0], [0, 0, 0]]]  # opposite: no direction -> missing
    normal[2:4, 4:6] = [[[0, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]  # 1 of 4 valid -> missing
    sample = {"image": image, "semantic": semantic, "depth": depth, "normal": normal}

    def write(root):
        for split in ("train", "test"):
            mtan_layout.write_sample(mtan_layout.split_dir(root, split), 0, sample)
    fetch_folder(project, write)
    assert main(["preprocess"]) == 0

    blocks = lambda a: a.reshape(64, 2, 64, 2, *a.shape[2:]).mean(axis=(1, 3))  # noqa: E731
    expected_depth = blocks(depth)
    expected_depth[0, :3] = [2, 0, 6]
    expected_normal = blocks(normal)
    expected_normal[1, :3] = [[2 ** -0.5, 2 ** -0.5, 0], [0, 0, 0], [0, 0, 0]]
    expected = {"image": blocks(image), "semantic": semantic[1::2, 1::2],  # nearest: the centre's pixel
                "depth": expected_depth, "normal": expected_normal}
    [got] = stored_samples(project / "data/processed/test.h5")
    assert_within_storage_bounds(got, expected)
    entry = json.loads((project / "data/processed/manifest.json").read_text())["splits"]["train"]
    assert entry["resized"] is True and entry["raw_sizes"] == [[128, 128]]


def test_raw_data_of_another_source_is_refused(project, make_mtan_root, capsys):
    fetch_folder(project, make_mtan_root)
    set_params(project, source="synthetic")
    assert main(["preprocess"]) == 2
    assert "params data.source is 'synthetic'; re-run `mbmt fetch`" in capsys.readouterr().err


def test_missing_raw_data_says_to_fetch(project, capsys):
    assert main(["preprocess"]) == 2
    assert "data/raw/SOURCE.json: not found; run `mbmt fetch` first" in capsys.readouterr().err


def test_real_frames_are_imported_with_ground_truth_units(project, make_mtan_root, real_images):
    from mbmt.data.dataset import NYUv2Dataset

    set_params(project, height=96, width=128, real_images=str(real_images))  # 480x640 / 5
    fetch_folder(project, lambda root: make_mtan_root(root, {"train": 1, "test": 1}, height=96, width=128))
    assert main(["preprocess"]) == 0
    path = project / "data/processed/real.h5"
    dataset = NYUv2Dataset(path)
    assert len(dataset) == 10
    assert dataset.attrs["modalities"] == {"image": "ground_truth", "semantic": "ground_truth",
                                           "depth": "ground_truth", "normal": "absent"}
    centres = np.arange(2, 640, 5)  # nearest neighbour of a 5x reduction: the centre of each 5x5 block
    blocks = lambda a: a.reshape(96, 5, 128, 5, *a.shape[2:]).mean(axis=(1, 3))  # noqa: E731
    labels_seen = set()
    for k in range(10):
        item = dataset[k]
        label13 = np.asarray(Image.open(real_images / f"{k}_label13.png")).astype(np.int64)
        np.testing.assert_array_equal(item["semantic"].numpy(), label13[centres[:96]][:, centres] - 1)
        labels_seen |= set(np.unique(item["semantic"].numpy()).tolist())
        depth_mm = np.asarray(Image.open(real_images / f"{k}_depth_mm.png")).astype(np.float64)
        assert depth_mm.min() > 0  # holes filled: every 5x5 block is a plain mean
        np.testing.assert_allclose(item["depth"][0].numpy(), blocks(depth_mm) / 1000,
                                   rtol=ERROR_BOUNDS["depth"]["relative"] + EPS)
        rgb = np.asarray(Image.open(real_images / f"{k}_rgb.png")).astype(np.float64) / 255
        assert np.abs(item["image"].numpy().transpose(1, 2, 0) - blocks(rgb)).max() <= 0.5 / 255 + EPS
        assert not item["normal"].any()
    assert -1 in labels_seen and max(labels_seen) <= 12  # 0 = unlabelled -> -1; 1..13 -> 0..12
    entry = json.loads((project / "data/processed/manifest.json").read_text())["splits"]["real"]
    with open(real_images / "index.csv", newline="") as f:
        assert entry["provenance"] == list(csv.DictReader(f))
    assert entry["frames"] == list(range(10)) and "normals are absent" in entry["note"]


@pytest.mark.parametrize("case", ["missing folder", "missing file"])
def test_real_images_missing_input_is_named(project, make_mtan_root, real_images, capsys, case):
    folder = project / "frames"
    if case == "missing file":  # frame 3 without its labels
        folder.mkdir()
        for name in ("3_rgb.png", "3_depth_mm.png"):
            shutil.copy(real_images / name, folder / name)
    fetch_folder(project, make_mtan_root)
    set_params(project, real_images=str(folder))
    assert main(["preprocess"]) == 2
    expected = folder / "3_label13.png" if case == "missing file" else folder
    assert f"{expected}" in capsys.readouterr().err
    assert not (project / "data" / "processed").exists()
