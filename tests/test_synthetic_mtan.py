"""The one writer of synthetic scenes in MTAN's layout (mbmt.data.synthetic.mtan), behind both
`mbmt fetch` (data.source synthetic) and `mbmt synth --format mtan`, writes the files the two
writers it replaced wrote: the digests below were taken from their output (3 train and 2 test
scenes of seed 5 at 32 x 32), the raw .npy files and the arrays preprocess stores from them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py

from mbmt.cli import main
from mbmt.data.fetch import fetch
from mbmt.data.preprocess import preprocess
from mbmt.data.settings import DataSettings, NyuSources, SyntheticScenes

RAW_SHA256 = "d13e3f21a60964ef5b81bafbd6e1061d2f93bf1b9c4dafd2e7cdcdd46547f8bb"
PROCESSED_SHA256 = {"train": "2599820317cc3f87480ee31c4cfc43eb4bfe894f20e7a4ead3a252749c764712",
                    "test": "5317a32b235f977977a16631f49f9d041e193345df5b6474b48ff0b5325ca8d7"}
SEED, SIZE, COUNTS = 5, 32, {"train": 3, "test": 2}


def tree_sha256(root: Path) -> str:
    """One sha256 over every .npy file under ``root``: its relative path and its bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.npy")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def arrays_sha256(path: Path) -> str:
    """One sha256 over the four stored arrays of a split file: name, dtype, shape and values."""
    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for name in ("image", "semantic", "depth", "normal"):
            array = f[name][()]
            digest.update(f"{name} {array.dtype.str} {array.shape}\0".encode() + array.tobytes())
    return digest.hexdigest()


def test_fetch_and_synth_write_the_scenes_as_before(project):
    data = DataSettings(source="synthetic", height=SIZE, width=SIZE,
                        nyuv2=NyuSources(sources=("unused",), sha256={}, local_path=None),
                        synthetic=SyntheticScenes(seed=SEED, train_size=COUNTS["train"], test_size=COUNTS["test"]),
                        real_images=None)
    fetch(data, raw_dir=project / "raw", download_dir=project / "downloads")
    assert tree_sha256(project / "raw") == RAW_SHA256
    preprocess(data, raw_dir=project / "raw", out_dir=project / "processed")
    assert {split: arrays_sha256(project / "processed" / f"{split}.h5") for split in COUNTS} == PROCESSED_SHA256

    for split, count in COUNTS.items():
        assert main(["synth", "--out", "synth", "--split", split, "--count", str(count), "--height", str(SIZE),
                     "--width", str(SIZE), "--seed", str(SEED), "--format", "mtan", "--workers", "1"]) == 0
    assert tree_sha256(project / "synth") == RAW_SHA256
