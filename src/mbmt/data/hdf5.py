"""The processed dataset layout: one HDF5 file per split, written by preprocess and synth.

A sample in memory (what readers of raw data produce, MTAN's channel-last convention)::

    image     (H, W, 3) float   RGB in [0, 1]
    semantic  (H, W)    int     class 0..12, -1 = unlabelled
    depth     (H, W)    float   metres, 0 = no measurement
    normal    (H, W, 3) float   unit vector, all-zero = no ground truth

On disk, channel-first, one chunk per sample (a training step reads whole samples at random)::

    image     uint8   (N, 3, H, W)   round(255 * rgb)      |error| <= 0.5/255
    semantic  int8    (N, H, W)      exact
    depth     float16 (N, 1, H, W)   metres                |error| <= 2**-11 * depth (relative)
    normal    float16 (N, 3, H, W)                         |error| <= 2**-11 per component

float16 keeps 11 significant bits: 0.05 % of a depth (5 mm at 10 m, below the Kinect's noise)
and <= 0.048 degrees of normal direction, at half the size of float32. tests/test_hdf5.py checks
these bounds. File attributes describe the split (see SplitWriter).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from mbmt.errors import DataError
from mbmt.io import atomic_path
from mbmt.tasks import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES

LAYOUT_VERSION = 1
MODALITIES = ("image", "semantic", "depth", "normal")
STORAGE = {  # name -> (dtype, channels or None for a 2-D map)
    "image": (np.uint8, 3),
    "semantic": (np.int8, None),
    "depth": (np.float16, 1),
    "normal": (np.float16, 3),
}
# What the models see of each stored modality: (dtype, divisor or None). decode (numpy) and
# mbmt.data.dataset.decode_tensors (torch, on any device) both follow it.
DECODED = {
    "image": ("float32", 255.0),
    "semantic": ("int64", None),
    "depth": ("float32", None),
    "normal": ("float32", None),
}
# Worst-case |stored - original| per modality (absolute, or relative to the value); proved by
# tests/test_hdf5.py and recorded in data/processed/manifest.json.
ERROR_BOUNDS = {
    "image": {"absolute": 0.5 / 255},
    "semantic": {"absolute": 0.0},
    "depth": {"relative": 2.0**-11},  # for depth >= 2**-14 m (float16's smallest normal number)
    "normal": {"absolute": 2.0**-11},
}
# How each modality relates to the real scene; recorded per split in the file and the manifest.
GROUND_TRUTH, DERIVED, ABSENT, RENDERED = "ground_truth", "derived", "absent", "rendered"
MAX_DEPTH_M = 1000.0  # far beyond any indoor scene; also keeps float16 (max 65504) safe


def validate_sample(sample: dict, height: int, width: int, where: str) -> None:
    """Raise DataError naming ``where`` unless ``sample`` is a well-formed sample of size (height, width)."""
    expected = {"image": (height, width, 3), "semantic": (height, width),
                "depth": (height, width), "normal": (height, width, 3)}
    for name in MODALITIES:
        if name not in sample:
            raise DataError(f"{where}: missing modality {name!r}")
        array = np.asarray(sample[name])
        if array.shape != expected[name]:
            raise DataError(f"{where}: {name} has shape {array.shape}, expected {expected[name]}")
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise DataError(f"{where}: {name} has non-finite or non-numeric values")
    image = np.asarray(sample["image"])
    if image.min() < -1e-6 or image.max() > 1 + 1e-6:
        raise DataError(f"{where}: image values span [{image.min():.4g}, {image.max():.4g}], expected RGB in [0, 1]")
    semantic = np.asarray(sample["semantic"])
    if not np.array_equal(semantic, np.round(semantic)):
        raise DataError(f"{where}: semantic labels are not whole numbers")
    bad = (semantic < IGNORE_LABEL) | (semantic >= NUM_CLASSES)
    if bad.any():
        values = sorted(set(np.unique(semantic[bad]).tolist()))[:5]
        raise DataError(f"{where}: semantic labels {values} outside {IGNORE_LABEL}..{NUM_CLASSES - 1}")
    depth = np.asarray(sample["depth"])
    if depth.min() < 0 or depth.max() >= MAX_DEPTH_M:
        raise DataError(f"{where}: depth spans [{depth.min():.4g}, {depth.max():.4g}] m, expected 0 (missing) or positive metres")
    normal = np.asarray(sample["normal"])
    if np.abs(normal).max() > 1 + 1e-3:
        raise DataError(f"{where}: normal components reach {np.abs(normal).max():.4g}, expected unit vectors in [-1, 1]")


def encode(sample: dict) -> dict[str, np.ndarray]:
    """Channel-last float sample -> channel-first storage arrays (see the module docstring)."""
    return {
        "image": np.clip(np.rint(np.asarray(sample["image"], np.float64) * 255), 0, 255).astype(np.uint8).transpose(2, 0, 1),
        "semantic": np.asarray(sample["semantic"]).astype(np.int8),
        "depth": np.asarray(sample["depth"], np.float32).astype(np.float16)[None],
        "normal": np.asarray(sample["normal"], np.float32).astype(np.float16).transpose(2, 0, 1),
    }


def decode(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Storage arrays of one sample -> channel-first float32/int64 arrays (what the models see)."""
    decoded = {}
    for name, (dtype, divisor) in DECODED.items():
        array = stored[name].astype(dtype)
        decoded[name] = array / np.float32(divisor) if divisor else array
    return decoded


class SplitWriter:
    """Write a split of exactly ``count`` samples to ``path`` atomically.

    Use as a context manager; ``add`` validates and appends one sample. The file appears at
    ``path`` only if the block finishes with all ``count`` samples written.
    """

    def __init__(self, path: str | Path, count: int, height: int, width: int, *, split: str,
                 source: str, modalities: dict[str, str], attrs: dict | None = None):
        self.path, self.count, self.height, self.width = Path(path), count, height, width
        self.split, self.source, self.modalities = split, source, dict(modalities)
        self.attrs = dict(attrs or {})
        self.written = 0

    def __enter__(self) -> "SplitWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w")
        for name, (dtype, channels) in STORAGE.items():
            shape = (self.height, self.width) if channels is None else (channels, self.height, self.width)
            self._file.create_dataset(name, shape=(self.count, *shape), dtype=dtype, chunks=(1, *shape))
        attrs = self._file.attrs
        attrs["layout_version"] = LAYOUT_VERSION
        attrs["split"], attrs["source"] = self.split, self.source
        attrs["height"], attrs["width"], attrs["count"] = self.height, self.width, self.count
        attrs["class_names"] = json.dumps(CLASS_NAMES)
        attrs["modalities"] = json.dumps(self.modalities)
        for key, value in self.attrs.items():
            attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
        return self

    def add(self, sample: dict, where: str) -> None:
        if self.written >= self.count:
            raise DataError(f"{where}: more samples than the {self.count} declared for split {self.split!r}")
        validate_sample(sample, self.height, self.width, where)
        for name, array in encode(sample).items():
            self._file[name][self.written] = array
        self.written += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._file.close()
        if exc_type is None and self.written != self.count:
            exc = DataError(f"{self.path}: wrote {self.written} of {self.count} samples of split {self.split!r}")
            self._atomic.__exit__(DataError, exc, None)
            raise exc
        self._atomic.__exit__(exc_type, exc, tb)
        return False


def read_attrs(path: str | Path) -> dict:
    """The split's attributes, JSON values decoded; a clear error if the file is not a split."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: processed split not found (run `mbmt preprocess` or `mbmt synth` first)")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            missing = [m for m in MODALITIES if m not in f]
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc}); delete it and re-run preprocess") from None
    if missing or attrs.get("layout_version") != LAYOUT_VERSION:
        raise DataError(f"{path}: not an mbmt split of layout version {LAYOUT_VERSION} "
                        f"(missing {missing or 'nothing'}, version {attrs.get('layout_version')}); re-run preprocess")
    # SplitWriter stores non-scalar attributes as JSON text.
    for key, value in attrs.items():
        if isinstance(value, str) and value[:1] in "[{":
            attrs[key] = json.loads(value)
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
